//! The run summary written beside each output: what happened, in counts a user can check.

use serde::{Deserialize, Serialize};

use crate::cache::CacheCounts;
use crate::enrichment::RowStatus;
use crate::error::JobError;
use crate::leadspace::CallStats;
use crate::metrics::{Metric, Unit};
use crate::records::TextEncoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Being enriched: a large file handed to the workflow, which writes the summary when it ends.
    Running,
    Complete,
    Partial,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub total: u64,
    pub enriched: u64,
    pub not_matched: u64,
    pub low_confidence: u64,
    pub invalid_input: u64,
    pub failed: u64,
    pub not_attempted: u64,
}

impl RowCounts {
    pub fn count(&mut self, status: RowStatus) {
        self.total += 1;
        *match status {
            RowStatus::Enriched => &mut self.enriched,
            RowStatus::NotMatched => &mut self.not_matched,
            RowStatus::LowConfidence => &mut self.low_confidence,
            RowStatus::InvalidInput => &mut self.invalid_input,
            RowStatus::Failed => &mut self.failed,
            RowStatus::NotAttempted => &mut self.not_attempted,
        } += 1;
    }

    /// Rows without a final answer: what makes a run `partial`.
    pub fn unfinished(&self) -> u64 {
        self.failed + self.not_attempted
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub version_id: Option<String>,
    pub size: u64,
    /// How the text was decoded (the output is always UTF-8); null when it was never read.
    #[serde(default)]
    pub encoding: Option<TextEncoding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub bucket: String,
    pub key: String,
    pub format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadspaceCounts {
    pub requests: u64,
    pub records_sent: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Records sent again because Leadspace lost, never finished or no longer kept a bulk they
    /// were in.
    #[serde(default)]
    pub resubmitted: u64,
    /// Retries of a submission that may already have reached Leadspace: each may be billed
    /// twice.
    #[serde(default)]
    pub ambiguous_retries: u64,
}

impl From<&CallStats> for LeadspaceCounts {
    fn from(stats: &CallStats) -> Self {
        LeadspaceCounts {
            requests: CallStats::get(&stats.requests),
            records_sent: CallStats::get(&stats.records_sent),
            retries: CallStats::get(&stats.retries),
            throttled: CallStats::get(&stats.throttled),
            resubmitted: CallStats::get(&stats.resubmitted),
            ambiguous_retries: CallStats::get(&stats.ambiguous_retries),
        }
    }
}

impl LeadspaceCounts {
    pub fn add(&mut self, other: &LeadspaceCounts) {
        self.requests += other.requests;
        self.records_sent += other.records_sent;
        self.retries += other.retries;
        self.throttled += other.throttled;
        self.resubmitted += other.resubmitted;
        self.ambiguous_retries += other.ambiguous_retries;
    }
}

/// Answers used without buying them again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    /// Bought by an earlier run of this very version (its answer journal).
    pub journal: u64,
    /// Bought for the file's previous version, younger than ANSWER_MAX_AGE_DAYS.
    pub previous_version: u64,
    /// When the oldest reused answer was bought; null when none was reused.
    pub oldest_bought_at: Option<String>,
    /// Why answers kept from an earlier run were not used (another field mapping or Leadspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub enrichment_name: String,
    pub status: RunStatus,
    pub error: Option<String>,
    pub source: SourceInfo,
    pub output: OutputInfo,
    pub field_mapping: serde_json::Value,
    pub started_at: String,
    pub finished_at: String,
    pub rows: RowCounts,
    pub unique_companies: u64,
    pub leadspace: LeadspaceCounts,
    #[serde(default)]
    pub reused: Reused,
    /// What this run promises about billing, in one sentence a finance team can check.
    #[serde(default)]
    pub billing_guarantee: String,
    /// What the cross-run cache did; absent when ENRICHMENT_CACHE_TTL_DAYS is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheCounts>,
    /// The Step Functions execution that enriched a large file; absent for inline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl Summary {
    /// Whether this summary says the object's version `etag` needs nothing more.
    pub fn is_complete_for(&self, etag: &str) -> bool {
        self.status == RunStatus::Complete && self.source.etag == etag
    }

    pub fn to_json(&self) -> Result<Vec<u8>, JobError> {
        serde_json::to_vec_pretty(self).map_err(|source| JobError::Encode { what: "the summary", source })
    }

    /// The run's figures as CloudWatch metrics, emitted once its summary is written.
    pub fn metrics(&self, duration_ms: u64) -> Vec<Metric> {
        let rows = &self.rows;
        let leadspace = &self.leadspace;
        let cache = self.cache.unwrap_or_default();
        let is = |status: RunStatus| if self.status == status { 1.0 } else { 0.0 };
        vec![
            ("RowsTotal", Unit::Count, rows.total as f64),
            ("RowsEnriched", Unit::Count, rows.enriched as f64),
            ("RowsNotMatched", Unit::Count, rows.not_matched as f64),
            ("RowsLowConfidence", Unit::Count, rows.low_confidence as f64),
            ("RowsInvalidInput", Unit::Count, rows.invalid_input as f64),
            ("RowsFailed", Unit::Count, rows.failed as f64),
            ("RowsNotAttempted", Unit::Count, rows.not_attempted as f64),
            ("LeadspaceRequests", Unit::Count, leadspace.requests as f64),
            ("LeadspaceRecordsSent", Unit::Count, leadspace.records_sent as f64),
            ("LeadspaceRetries", Unit::Count, leadspace.retries as f64),
            ("LeadspaceThrottles", Unit::Count, leadspace.throttled as f64),
            ("LeadspaceResubmitted", Unit::Count, leadspace.resubmitted as f64),
            ("LeadspaceAmbiguousRetries", Unit::Count, leadspace.ambiguous_retries as f64),
            ("AnswersReused", Unit::Count, (self.reused.journal + self.reused.previous_version) as f64),
            ("CacheHits", Unit::Count, cache.hits as f64),
            ("CreditsSaved", Unit::Count, cache.credits_saved as f64),
            ("FilesComplete", Unit::Count, is(RunStatus::Complete)),
            ("FilesPartial", Unit::Count, is(RunStatus::Partial)),
            ("FilesFailed", Unit::Count, is(RunStatus::Failed)),
            ("JobDuration", Unit::Milliseconds, duration_ms as f64),
        ]
    }
}

/// The billing promise, with this deployment's figures.
pub fn billing_guarantee(max_age_days: u64, ambiguous_retries: u64) -> String {
    let across = if max_age_days == 0 {
        "answers are not reused across versions (ANSWER_MAX_AGE_DAYS=0)".to_string()
    } else {
        format!("at most once per {max_age_days} days (ANSWER_MAX_AGE_DAYS) across versions")
    };
    format!(
        "A company is billed at most once per version of a file, and {across}; the one exception is a request \
         that may have reached Leadspace before its connection failed, counted in leadspace.ambiguous_retries \
         ({ambiguous_retries} in this run)."
    )
}

/// UTC now as `2026-11-28T12:00:09Z`.
pub fn now_utc() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

/// Seconds since the epoch as `2026-11-28T12:00:09Z`.
pub fn utc_from_seconds(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds).map(timestamp).unwrap_or_default()
}

fn timestamp(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_to_the_total() {
        let mut rows = RowCounts::default();
        for status in [RowStatus::Enriched, RowStatus::Failed, RowStatus::NotAttempted, RowStatus::InvalidInput] {
            rows.count(status);
        }
        assert_eq!(rows.total, 4);
        assert_eq!(rows.unfinished(), 2);
    }

    #[test]
    fn timestamps_are_iso_8601_utc_to_the_second() {
        let now = now_utc();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T');
    }
}
