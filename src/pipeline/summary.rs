//! The run summary written beside each output: what happened, in counts a user can check.

use serde::{Deserialize, Serialize};

use crate::cache::CacheCounts;
use crate::enrichment::RowStatus;
use crate::records::TextEncoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
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
}

/// UTC now as `2026-11-28T12:00:09Z`.
pub fn now_utc() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc().format(&format).unwrap_or_default()
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
