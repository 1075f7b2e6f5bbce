//! Error classes at the Lambda boundary. A permanent problem with one file never surfaces here:
//! it becomes a `failed` summary and a successful invocation, so Lambda does not retry it. What
//! reaches this module is either transient (worth Lambda's retry and on-failure destination) or
//! an invocation Lambda should not retry (a payload this function does not understand).

use lambda_runtime::Diagnostic;

use crate::leadspace::LeadspaceError;
use crate::records::ReadError;
use crate::secrets::SecretError;
use crate::storage::StorageError;

/// A failure of one job that a later attempt may not see: S3 or Secrets Manager unavailable,
/// the body stream cut off.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("reading s3://{bucket}/{key} failed")]
    Read {
        bucket: String,
        key: String,
        #[source]
        source: ReadError,
    },
    #[error("Leadspace is unavailable ({0}); its rows are written as failed, and a retry sends only those")]
    LeadspaceUnavailable(String),
    #[error(
        "the answer journal could not be written; what was bought is in the output and a retry collects it, buying \
         only what is missing"
    )]
    JournalUnavailable(#[source] StorageError),
    #[error("could not {action} in Step Functions")]
    Workflow {
        action: &'static str,
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the Lambda deadline came before s3://{bucket}/{key} was started; Lambda's retry enriches it (objects \
         already complete are skipped)"
    )]
    OutOfTime { bucket: String, key: String },
    #[error("s3://{bucket}/{key} is held by another invocation ({why}); this delivery is retried, so it is never lost")]
    Busy { bucket: String, key: String, why: &'static str },
    #[error(
        "the refresh could not finish {} objects for a reason that may pass (an outage, the Lambda deadline); a retry \
         skips what is complete and tries them again: {}",
        keys.len(),
        listed(keys)
    )]
    RefreshIncomplete { keys: Vec<String> },
    #[error("could not encode {what} as JSON")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the output for s3://{bucket}/{key} failed")]
    Write {
        bucket: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl JobError {
    /// Whether Lambda's retry may succeed: outages yes; missing objects or permissions no.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Storage(e) => e.is_transient(),
            JobError::Secret(e) => e.is_transient(),
            JobError::Workflow { transient, .. } => *transient,
            JobError::Encode { .. } => false,
            JobError::Read { .. }
            | JobError::Write { .. }
            | JobError::LeadspaceUnavailable(_)
            | JobError::JournalUnavailable(_)
            | JobError::Busy { .. }
            | JobError::OutOfTime { .. }
            | JobError::RefreshIncomplete { .. } => true,
        }
    }
}

/// The first keys of a long list, and how many more: an error message stays readable.
fn listed(keys: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = keys.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        text.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    text
}

/// Why a run stopped short of its report: the file itself cannot be used (a `failed` summary
/// says why, and Lambda does not retry), or a job error that a later attempt may not meet.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl From<crate::storage::DeleteFailed> for JobError {
    fn from(error: crate::storage::DeleteFailed) -> Self {
        JobError::Storage(error.first)
    }
}

impl From<StorageError> for RunError {
    fn from(error: StorageError) -> Self {
        RunError::Job(JobError::Storage(error))
    }
}

/// The `errorType` of a failed invocation: the state machine's Retry and Catch match on these
/// (template.yaml), and the template tests hold it to them.
pub mod error_type {
    /// Worth a retry: S3, Secrets Manager, Leadspace or Step Functions may be back.
    pub const TRANSIENT: &str = "Retryable.TransientFailure";
    /// A payload this function does not understand.
    pub const INVALID_EVENT: &str = "NonRetryable.InvalidEvent";
    /// Credits ran out or the token was refused: every other batch would meet the same.
    pub const LEADSPACE_STOPPED: &str = "NonRetryable.LeadspaceStopped";
    /// Denied, missing or misconfigured: someone has to fix the deployment.
    pub const CONFIGURATION_OR_PERMISSIONS: &str = "NonRetryable.ConfigurationOrPermissions";
}

/// How a run's Leadspace work ended, for what the invocation answers once everything bought
/// is safe.
pub enum Ended {
    /// It finished, or stopped on something the summary states (credits, a refused token, the
    /// deadline): the stop, if any, for the caller to judge.
    Done(Option<LeadspaceError>),
    /// It stopped on a failure a later attempt may get past (Secrets Manager unavailable, the
    /// journal unwritable): the error that gets the invocation retried.
    Retry(JobError),
}

pub fn judge_stop(stop: Option<LeadspaceError>) -> Ended {
    match stop {
        Some(LeadspaceError::Secret(secret)) if secret.is_transient() => Ended::Retry(JobError::Secret(secret)),
        Some(LeadspaceError::JournalUnavailable(why)) => Ended::Retry(JobError::JournalUnavailable(why)),
        other => Ended::Done(other),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    InvalidEvent(String),
    /// A large file's batch met credits running out or a refused token: the workflow stops.
    #[error("{0}")]
    LeadspaceStopped(String),
    /// `message` is the whole cause chain, so `error` is not a `source`: it would be told twice.
    #[error("{message}")]
    Job { error: JobError, message: String },
}

impl HandlerError {
    pub fn job(error: JobError) -> Self {
        let message = error_chain(&error);
        HandlerError::Job { error, message }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Job { error, .. } if error.is_transient())
    }
}

pub use crate::chain::error_chain;

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let (error_type, error_message) = match &error {
            HandlerError::InvalidEvent(message) => (error_type::INVALID_EVENT, message.clone()),
            HandlerError::LeadspaceStopped(message) => (error_type::LEADSPACE_STOPPED, message.clone()),
            HandlerError::Job { error, message } if error.is_transient() => (error_type::TRANSIENT, message.clone()),
            HandlerError::Job { message, .. } => (error_type::CONFIGURATION_OR_PERMISSIONS, message.clone()),
        };
        Diagnostic { error_type: error_type.to_string(), error_message }
    }
}
