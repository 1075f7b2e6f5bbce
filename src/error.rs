//! Error classes at the Lambda boundary. A permanent problem with one file never surfaces here:
//! it becomes a `failed` summary and a successful invocation, so Lambda does not retry it. What
//! reaches this module is either transient (worth Lambda's retry and on-failure destination) or
//! an invocation Lambda should not retry (a payload this function does not understand).

use lambda_runtime::Diagnostic;

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
        "the answer journal could not be written ({0}); what was bought is in the output and a retry collects it, \
         buying only what is missing"
    )]
    JournalUnavailable(String),
    #[error("could not {action} in Step Functions")]
    Workflow {
        action: &'static str,
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("s3://{bucket}/{key} is held by another invocation ({why}); this delivery is retried, so it is never lost")]
    Busy { bucket: String, key: String, why: &'static str },
    #[error("the refresh enriched every other object, but these failed for a reason that may pass and are retried: {}", keys.join(", "))]
    RefreshIncomplete { keys: Vec<String> },
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
            JobError::Read { .. }
            | JobError::Write { .. }
            | JobError::LeadspaceUnavailable(_)
            | JobError::JournalUnavailable(_)
            | JobError::Busy { .. }
            | JobError::RefreshIncomplete { .. } => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    InvalidEvent(String),
    /// A large file's batch met credits running out or a refused token: the workflow stops.
    #[error("{0}")]
    LeadspaceStopped(String),
    #[error("{error}")]
    Job {
        #[source]
        error: JobError,
        message: String,
    },
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

/// "outer: inner: root", so the Lambda response keeps the cause chain rather than its top line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let (error_type, error_message) = match &error {
            HandlerError::InvalidEvent(message) => ("NonRetryable.InvalidEvent", message.clone()),
            HandlerError::LeadspaceStopped(message) => ("NonRetryable.LeadspaceStopped", message.clone()),
            HandlerError::Job { error, message } if error.is_transient() => {
                ("Retryable.TransientFailure", message.clone())
            }
            HandlerError::Job { message, .. } => ("NonRetryable.ConfigurationOrPermissions", message.clone()),
        };
        Diagnostic { error_type: error_type.to_string(), error_message }
    }
}
