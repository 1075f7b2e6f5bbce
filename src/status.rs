//! `{"action": "status"}`: the "My enrichments" view, read from the summaries under the output
//! prefix (the summaries are the record; nothing else is kept anywhere), and from the leases of
//! the runs in progress, whose heartbeats carry their progress (`"status": "running"`).
//! `{"action": "status", "bucket", "key"}` answers for one object.

use futures::StreamExt;
use serde::Serialize;

use crate::error::JobError;
use crate::pipeline::App;
use crate::pipeline::answers::journal::now_seconds;
use crate::pipeline::lease::running;
use crate::pipeline::paths::{OutputPaths, SUMMARY_SUFFIX, state_prefix};
use crate::pipeline::progress::{Progress, Source};
use crate::pipeline::summary::now_utc;
use crate::pipeline::summary::{RowCounts, RunStatus, Summary};
use crate::workflow::hand_off::recorded_executions;
use crate::workflow::input::PartStats;

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
    /// When the last run (the last refresh) of this object ended; none while one runs.
    pub finished_at: Option<String>,
    pub rows: RowCounts,
    pub unique_companies: u64,
    pub output: Location,
    pub summary: Location,
    pub error: Option<String>,
    /// How far the run in progress has got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// Every enrichment whose summary is under OUTPUT_PREFIX for sources in `source_bucket`, or
/// only that of `key`; a run in progress shows as `running`, with its progress.
pub async fn enrichments(app: &App, source_bucket: &str, key: Option<&str>) -> Result<Vec<EnrichmentStatus>, JobError> {
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
    for run in runs(app, source_bucket).await? {
        found.retain(|e| e.source.key != run.source.key);
        found.push(run);
    }
    if let Some(key) = key {
        found.retain(|e| e.source.key == key);
    }
    found.sort_by(|a, b| a.source.key.cmp(&b.source.key));
    Ok(found)
}

/// The runs in progress for sources in `source_bucket`, from the live leases.
async fn runs(app: &App, source_bucket: &str) -> Result<Vec<EnrichmentStatus>, JobError> {
    let bucket = app.config.output_bucket_for(source_bucket);
    let leases = format!("{}leases/", state_prefix(&app.config));
    let mut runs = Vec::new();
    for lease in app.store.list(bucket, &leases).await? {
        let held = running(app.store.as_ref(), bucket, &lease.key, app.config.lease_heartbeat).await?;
        let Some((source, progress)) = held.filter(|(source, _)| source.bucket == source_bucket) else {
            continue;
        };
        runs.push(running_status(app, source, progress));
    }
    runs.extend(workflow_runs(app, source_bucket).await?);
    Ok(runs)
}

/// Large files whose Step Functions execution is running, from the record each hand-off leaves
/// in its work folder and the figures its batches have written so far.
async fn workflow_runs(app: &App, source_bucket: &str) -> Result<Vec<EnrichmentStatus>, JobError> {
    let (store, bucket) = (app.store.as_ref(), app.config.output_bucket_for(source_bucket));
    let mut runs = Vec::new();
    // Running ones only: an ended execution's last step wrote the summary, which tells.
    for (record, _) in recorded_executions(app, source_bucket).await?.into_iter().filter(|(_, r)| *r == Some(true)) {
        let (mut answered, mut requests) = (0, 0);
        for part in store.list(bucket, &record.answers_prefix).await? {
            let Some(body) = store.get_small(bucket, &part.key).await? else { continue };
            if let Ok(stats) = serde_json::from_slice::<PartStats>(&body) {
                (answered, requests) = (answered + stats.answered, requests + stats.leadspace.requests);
            }
        }
        let elapsed = (now_seconds() - record.started_at_epoch_seconds).max(0) as f64;
        let left = record.companies_total.saturating_sub(record.companies_known + answered);
        let progress = Progress {
            rows_scanned: record.rows,
            companies_total: record.companies_total,
            companies_answered: record.companies_known + answered,
            requests,
            started_at: record.started_at,
            updated_at: now_utc(),
            eta_seconds: (answered > 0).then(|| (elapsed / answered as f64 * left as f64).ceil() as u64),
        };
        runs.push(running_status(app, record.source, progress));
    }
    Ok(runs)
}

fn running_status(app: &App, source: Source, progress: Progress) -> EnrichmentStatus {
    let paths = OutputPaths::for_object(&app.config, &source.bucket, &source.key);
    EnrichmentStatus {
        enrichment_name: app.config.enrichment_name.clone(),
        status: RunStatus::Running,
        started_at: progress.started_at.clone(),
        finished_at: None,
        rows: RowCounts { total: progress.rows_scanned, ..RowCounts::default() },
        unique_companies: progress.companies_total,
        output: Location { bucket: paths.bucket.clone(), key: paths.output_key },
        summary: Location { bucket: paths.bucket, key: paths.summary_key },
        source: Location { bucket: source.bucket, key: source.key },
        error: None,
        progress: Some(progress),
    }
}

fn status_of(summary: Summary, bucket: &str, key: String) -> EnrichmentStatus {
    EnrichmentStatus {
        enrichment_name: summary.enrichment_name,
        source: Location { bucket: summary.source.bucket, key: summary.source.key },
        status: summary.status,
        started_at: summary.started_at,
        finished_at: Some(summary.finished_at),
        rows: summary.rows,
        unique_companies: summary.unique_companies,
        output: Location { bucket: summary.output.bucket, key: summary.output.key },
        summary: Location { bucket: bucket.to_string(), key },
        error: summary.error,
        progress: None,
    }
}
