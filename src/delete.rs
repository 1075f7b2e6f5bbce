//! `{"action": "delete", "bucket", "key", "dry_run"}`: removes everything the function wrote for
//! one input (its output, summary and report, and its working state: journals, kept answers,
//! lease, workflow files), never the input itself. Refused while a run of the object is in
//! progress. The cross-run cache is shared by every file and is left alone.

use serde::Serialize;

use crate::error::JobError;
use crate::pipeline::App;
use crate::pipeline::lease::is_held;
use crate::pipeline::paths::{OutputPaths, REPORT_SUFFIX, ignore_reason, work_prefix};
use crate::storage::ObjectStore;
use crate::workflow::hand_off::{Slot, execution_base_name, find_slot};

/// What a delete answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteReport {
    pub bucket: String,
    pub key: String,
    pub dry_run: bool,
    /// The keys removed, or that would be with `dry_run`, in the output bucket.
    pub removed: Vec<String>,
    /// Why nothing was removed, when a run of the object is in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Removes (or, with `dry_run`, lists) what the function wrote for `bucket`/`key`.
pub async fn delete_enrichment(app: &App, bucket: &str, key: &str, dry_run: bool) -> Result<DeleteReport, JobError> {
    let config = &app.config;
    let store = app.store.as_ref();
    let paths = OutputPaths::for_object(config, bucket, key);
    let mut report =
        DeleteReport { bucket: bucket.into(), key: key.into(), dry_run, removed: Vec::new(), refused: None };
    // Only an input has results: any other key would name another file's, or the state itself.
    if let Some(why) = ignore_reason(config, bucket, key) {
        report.refused = Some(format!("{why}: it has no enrichment to delete"));
        return Ok(report);
    }
    if let Some(why) = in_progress(app, &paths, bucket, key).await? {
        report.refused = Some(why);
        return Ok(report);
    }
    let out = &paths.bucket;
    // The lease is not ours to remove: a stale one does no harm, and a run that took the object
    // a moment ago must keep it.
    let singles = [
        paths.output_key.clone(),
        paths.summary_key.clone(),
        format!("{}{REPORT_SUFFIX}", paths.output_key),
        paths.kept_answers_key(),
    ];
    for single in singles {
        if store.head(out, &single).await?.is_some() {
            report.removed.push(single);
        }
    }
    // Journals are `<journals>/<16 hex version>/...`: `a.csv/b.csv`'s journals share the listing
    // of `a.csv/` but not that shape.
    let journals = paths.journals_prefix();
    let versioned = |rest: &str| {
        rest.split_once('/')
            .is_some_and(|(version, _)| version.len() == 16 && version.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for object in store.list(out, &journals).await? {
        if object.key.strip_prefix(journals.as_str()).is_some_and(versioned) {
            report.removed.push(object.key);
        }
    }
    // A large file's work files are `<execution base>-<attempt>/...` for its current version;
    // older versions' expire by the bucket's lifecycle rule (7 days).
    if let Some(meta) = store.head(bucket, key).await? {
        let base = work_prefix(config, &format!("{}-", execution_base_name(bucket, key, &meta.etag)));
        let base = base.trim_end_matches('/');
        let attempt = |rest: &str| {
            rest.split_once('/').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        for object in store.list(out, base).await? {
            if object.key.strip_prefix(base).is_some_and(attempt) {
                report.removed.push(object.key);
            }
        }
    }
    if dry_run {
        return Ok(report);
    }
    store.delete_many(out, &report.removed).await?;
    tracing::info!(removed = report.removed.len(), "enrichment deleted");
    Ok(report)
}

/// Why the object cannot be deleted now, if it cannot: a live lease (an inline run, a workflow's
/// hand-off or last step), or a Step Functions execution enriching its current version.
async fn in_progress(app: &App, paths: &OutputPaths, bucket: &str, key: &str) -> Result<Option<String>, JobError> {
    let store: &dyn ObjectStore = app.store.as_ref();
    if is_held(store, &paths.bucket, &paths.lease_key(), app.config.lease_heartbeat).await? {
        return Ok(Some("a run of this object is in progress; delete it once the run has ended".into()));
    }
    if let (Some(step_functions), Some(meta)) = (&app.step_functions, store.head(bucket, key).await?) {
        let base = execution_base_name(bucket, key, &meta.etag);
        if let Slot::Running(arn) = find_slot(step_functions, &base).await? {
            return Ok(Some(format!(
                "the Step Functions execution {arn} is enriching this object; delete it once the execution has ended"
            )));
        }
    }
    Ok(None)
}
