//! What the workflow passes around, in the shapes the state machine (template.yaml) reads and
//! writes: the execution's input, the staged companies, a batch's event and figures.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::CacheCounts;
use crate::company::CompanyQuery;
use crate::error::JobError;
use crate::pipeline::progress::Source;
use crate::pipeline::summary::LeadspaceCounts;
use crate::storage::ObjectStore;

/// Companies per batch: a few bulks' worth, so that a batch is a few minutes at most.
pub const BULKS_PER_BATCH: usize = 4;
/// Step Functions passes at most 256 KiB to a Lambda function; a batch stays well below it.
/// The template's `MaxInputBytesPerBatch`, which the template tests hold to this.
pub const MAX_BATCH_INPUT_BYTES: u64 = 200 * 1024;

/// The execution's input, which is also the assemble step's payload (the Map passes its input
/// through). Serialised field names are the state machine's paths: keep them in step with
/// template.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInput {
    /// Always "assemble".
    pub action: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    /// The execution's name, unique per file version and attempt.
    pub run: String,
    /// Where the staged companies, the batches' figures and the answer journal are: the output
    /// bucket.
    pub work_bucket: String,
    pub companies_key: String,
    /// Where each batch writes its figures (requests, cache, why it stopped).
    pub answers_prefix: String,
    /// The answer journal of this version of the file; each batch journals in a folder of it.
    pub journal_prefix: String,
    /// For the ItemBatcher (MaxItemsPerBatchPath) and the Map (MaxConcurrencyPath).
    pub batch_size: u64,
    pub max_concurrency: u64,
    /// The mapping pass 1 resolved: the assemble step reads the file with exactly this one, so
    /// a deploy that changes FIELD_MAPPING mid-run cannot renumber the companies.
    pub field_mapping: Value,
    /// What pass 1 found; the assemble step refuses a file that reads differently.
    pub rows: u64,
    pub companies: u64,
    /// Added by the Map's Catch when a batch failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_error: Option<MapError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl MapError {
    /// What the summary says: the batch's own message when the cause is a Lambda error.
    pub fn describe(&self) -> String {
        let message = serde_json::from_str::<Value>(&self.cause)
            .ok()
            .and_then(|cause| cause.get("errorMessage").and_then(Value::as_str).map(str::to_string));
        match message {
            Some(message) => format!("the workflow stopped before every batch was enriched: {message}"),
            None => format!("the workflow stopped before every batch was enriched ({})", self.error),
        }
    }
}

/// One staged company: a line of the JSON Lines the Map reads, and an item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedCompany {
    /// The company's number in the file (first-seen order), how answers find their rows.
    pub company: u32,
    pub company_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

impl StagedCompany {
    pub fn new(company: u32, q: CompanyQuery) -> Self {
        StagedCompany {
            company,
            company_name: q.name,
            website: q.website,
            country: q.country,
            state: q.state,
            city: q.city,
            street: q.street,
            postal_code: q.postal_code,
        }
    }

    pub fn query(self) -> CompanyQuery {
        CompanyQuery {
            name: self.company_name,
            website: self.website,
            country: self.country,
            state: self.state,
            city: self.city,
            street: self.street,
            postal_code: self.postal_code,
        }
    }
}

/// What the Map hands each invocation: `Items` from the ItemReader, `BatchInput` from the
/// ItemBatcher.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchEvent {
    #[serde(rename = "BatchInput")]
    pub input: BatchInput,
    #[serde(rename = "Items")]
    pub items: Vec<StagedCompany>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchInput {
    pub work_bucket: String,
    pub answers_prefix: String,
    pub journal_prefix: String,
    /// The execution's name: answers its batches bought are this run's, not reused ones.
    pub run: String,
}

/// What a batch (or the hand-off) cost, in `answers_prefix`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PartStats {
    pub leadspace: LeadspaceCounts,
    #[serde(default)]
    pub cache: Option<CacheCounts>,
    /// Why the batch stopped early: the summary's reason, since a Distributed Map that fails
    /// reports only States.ExceedToleratedFailureThreshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Companies the batch has a final answer for, for the file's progress.
    #[serde(default)]
    pub answered: u64,
}

/// `running.json` in an execution's work folder: the file it enriches, for `status` while the
/// batches run (no lease is held then). Deleted with the work folder by the last step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRecord {
    pub source: Source,
    pub execution_arn: String,
    pub answers_prefix: String,
    pub rows: u64,
    pub companies_total: u64,
    /// Answered before the batches: earlier runs' answers and the previous version's.
    pub companies_known: u64,
    pub started_at: String,
    pub started_at_epoch_seconds: i64,
}

/// What the work folder's record is called.
pub const RUNNING_RECORD: &str = "running.json";

/// A failure of ours to build or read what the workflow passes around: never transient.
pub fn internal_error(action: &'static str, error: impl std::error::Error + Send + Sync + 'static) -> JobError {
    JobError::Workflow { action, transient: false, source: Box::new(error) }
}

/// Writes a batch's (or the hand-off's) figures where the last step sums them.
pub async fn write_stats(store: &dyn ObjectStore, bucket: &str, key: &str, stats: &PartStats) -> Result<(), JobError> {
    let body = serde_json::to_vec(stats).map_err(|e| internal_error("write a batch's figures", e))?;
    store.put(bucket, key, body, "application/json").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_error_from_the_map_is_told_in_its_own_words() {
        let error = MapError {
            error: "NonRetryable.LeadspaceStopped".into(),
            cause: r#"{"errorType":"NonRetryable.LeadspaceStopped","errorMessage":"credits exhausted (427)"}"#.into(),
        };
        assert!(error.describe().ends_with("credits exhausted (427)"), "{}", error.describe());
        let other = MapError {
            error: "States.ExceedToleratedFailureThreshold".into(),
            cause: "The specified tolerated failure threshold was exceeded".into(),
        };
        assert!(other.describe().contains("States.ExceedToleratedFailureThreshold"));
    }
}
