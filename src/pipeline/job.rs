//! A job (one S3 object to enrich, and how) and the report each job adds to the invocation's
//! response.

use serde::Serialize;

use super::paths::OutputPaths;
use super::summary::{RowCounts, RunStatus, Summary};
use crate::error::{JobError, error_chain};
use crate::mapping::FieldMapping;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    pub bucket: String,
    pub key: String,
    pub force: bool,
    pub dry_run: bool,
    /// Overrides FIELD_MAPPING for this job (direct invocations).
    pub field_mapping: Option<FieldMapping>,
    /// The Lambda request that asked for the job. Lambda retries an asynchronous invocation
    /// under the same id, so a forced job records it once its journal is cleared: the retry
    /// finds the force spent and collects what the first attempt bought.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Enriched, or being enriched by the Step Functions workflow (with status `running`).
    Enriched,
    Skipped,
    Ignored,
    Failed,
}

/// What a dry run reports instead of enriching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub rows: u64,
    pub unique_companies: u64,
    pub rows_without_company_name: u64,
    pub credits_at_most: u64,
}

/// One entry of the invocation's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub bucket: String,
    pub key: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// The Step Functions execution enriching a large file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

impl JobReport {
    pub fn new(job: &Job, outcome: Outcome) -> Self {
        JobReport {
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            outcome,
            status: None,
            output_key: None,
            summary_key: None,
            rows: None,
            message: None,
            estimate: None,
            execution_arn: None,
        }
    }

    /// `skipped`, pointing at the results a previous run wrote.
    pub fn already_done(job: &Job, paths: &OutputPaths, done: Summary, why: &str) -> Self {
        tracing::info!(why, "skipping");
        JobReport {
            status: Some(done.status),
            output_key: Some(paths.output_key.clone()),
            summary_key: Some(paths.summary_key.clone()),
            rows: Some(done.rows),
            message: Some(why.to_string()),
            ..Self::new(job, Outcome::Skipped)
        }
    }

    /// `failed`: the job stopped on an error (which the summary, if one was written, also says).
    pub fn could_not_run(job: &Job, error: &JobError) -> Self {
        JobReport { message: Some(error_chain(error)), ..Self::new(job, Outcome::Failed) }
    }

    /// `failed`, without a summary: a force refused while another run owns the version, whose
    /// results stay as they are.
    pub fn force_refused(job: &Job, why: String, execution_arn: Option<String>) -> Self {
        tracing::info!("force refused: another run owns this version");
        JobReport { message: Some(why), execution_arn, ..Self::new(job, Outcome::Failed) }
    }

    pub fn not_started(job: &Job, why: &str) -> Self {
        JobReport { message: Some(why.to_string()), ..Self::new(job, Outcome::Skipped) }
    }

    pub fn ignored(job: &Job, why: &str) -> Self {
        tracing::info!(bucket = %job.bucket, key = %job.key, why, "ignoring object");
        JobReport { message: Some(why.to_string()), ..Self::new(job, Outcome::Ignored) }
    }
}
