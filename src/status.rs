//! `{"action": "status"}`: the "My enrichments" view, read from the summaries under the output
//! prefix (the summaries are the record; nothing else is kept anywhere).

use futures::StreamExt;
use serde::Serialize;

use crate::error::JobError;
use crate::pipeline::App;
use crate::pipeline::paths::SUMMARY_SUFFIX;
use crate::pipeline::summary::{RowCounts, RunStatus, Summary};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrichmentStatus {
    pub enrichment_name: String,
    pub source: Location,
    pub status: RunStatus,
    pub started_at: String,
    /// When the last run (the last refresh) of this object ended.
    pub finished_at: String,
    pub rows: RowCounts,
    pub unique_companies: u64,
    pub output: Location,
    pub summary: Location,
    pub error: Option<String>,
}

/// Every enrichment whose summary is under OUTPUT_PREFIX for sources in `source_bucket`.
pub async fn enrichments(app: &App, source_bucket: &str) -> Result<Vec<EnrichmentStatus>, JobError> {
    let bucket = app.config.output_bucket_for(source_bucket).to_string();
    let listed = app.store.list(&bucket, &app.config.output_prefix).await?;
    let keys: Vec<String> = listed.into_iter().map(|o| o.key).filter(|k| k.ends_with(SUMMARY_SUFFIX)).collect();
    let store = app.store.as_ref();
    let bucket = &bucket;
    let mut found: Vec<EnrichmentStatus> = futures::stream::iter(keys)
        .map(|key| async move {
            let bytes = store.get_small(bucket, &key).await?;
            // A summary that vanished or that this version cannot read is simply not listed.
            let summary = bytes.and_then(|b| serde_json::from_slice::<Summary>(&b).ok());
            Ok::<_, JobError>(summary.map(|s| status_of(s, bucket, key)))
        })
        .buffer_unordered(8)
        .filter_map(|entry| async move { entry.transpose() })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    found.retain(|e| e.source.bucket == source_bucket);
    found.sort_by(|a, b| a.source.key.cmp(&b.source.key));
    Ok(found)
}

fn status_of(summary: Summary, bucket: &str, key: String) -> EnrichmentStatus {
    EnrichmentStatus {
        enrichment_name: summary.enrichment_name,
        source: Location { bucket: summary.source.bucket, key: summary.source.key },
        status: summary.status,
        started_at: summary.started_at,
        finished_at: summary.finished_at,
        rows: summary.rows,
        unique_companies: summary.unique_companies,
        output: Location { bucket: summary.output.bucket, key: summary.output.key },
        summary: Location { bucket: bucket.to_string(), key },
        error: summary.error,
    }
}
