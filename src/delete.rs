//! `{"action": "delete", "bucket", "key", "dry_run"}`: removes everything the function wrote for
//! one input (its output, summary and report, and its working state: journals, kept answers,
//! lease, workflow files), never the input itself. Refused while a run of the object is in
//! progress: a live lease, or a Step Functions execution of any of its versions. The cross-run cache is shared by every file and is left alone.

use serde::Serialize;

use crate::error::JobError;
use crate::pipeline::App;
use crate::pipeline::lease::is_held;
use crate::pipeline::paths::{OutputPaths, REPORT_SUFFIX, SUMMARY_SUFFIX, ignore_reason, work_prefix};
use crate::records::Format;
use crate::storage::ObjectStore;
use crate::workflow::hand_off::{Slot, execution_base_name, find_slot, recorded_executions};

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
    if let Some(why) = not_an_input(store, bucket, key).await? {
        report.refused = Some(why);
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
    // A run may have taken the object while this listed what to remove.
    if let Some(why) = in_progress(app, &paths, bucket, key).await? {
        report.removed.clear();
        report.refused = Some(why);
        return Ok(report);
    }
    store.delete_many(out, &report.removed).await?;
    tracing::info!(removed = report.removed.len(), "enrichment deleted");
    Ok(report)
}

/// Why `key` is not an input whose results could be deleted, if it is not: results belong to
/// an existing object of a supported format, and a key named like a result (`x.csv.summary.json`)
/// would map onto another file's results (`x.csv`'s summary).
async fn not_an_input(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Option<String>, JobError> {
    if key.ends_with(SUMMARY_SUFFIX) || key.ends_with(REPORT_SUFFIX) {
        return Ok(Some(format!(
            "the key ends in {SUMMARY_SUFFIX} or {REPORT_SUFFIX}, a result's name: name the input whose results to delete"
        )));
    }
    if let Err(unsupported) = Format::detect(key) {
        return Ok(Some(format!("{unsupported}: such a file has no enrichment to delete")));
    }
    if store.head(bucket, key).await?.is_none() {
        return Ok(Some("the object does not exist: only an existing input's results are deleted".into()));
    }
    Ok(None)
}

/// Why the object cannot be deleted now, if it cannot: a live lease (an inline run, a workflow's
/// hand-off or last step), or a Step Functions execution enriching any of its versions.
async fn in_progress(app: &App, paths: &OutputPaths, bucket: &str, key: &str) -> Result<Option<String>, JobError> {
    let store: &dyn ObjectStore = app.store.as_ref();
    if is_held(store, &paths.bucket, &paths.lease_key(), app.config.lease_heartbeat).await? {
        return Ok(Some("a run of this object is in progress; delete it once the run has ended".into()));
    }
    let Some(step_functions) = &app.step_functions else { return Ok(None) };
    let running = |arn: &str| {
        format!("the Step Functions execution {arn} is enriching this object; delete it once the execution has ended")
    };
    if let Some(meta) = store.head(bucket, key).await? {
        let base = execution_base_name(bucket, key, &meta.etag);
        if let Slot::Running(arn) = find_slot(step_functions, &base).await? {
            return Ok(Some(running(&arn)));
        }
    }
    // An execution of an earlier version may still run (the file was uploaded again meanwhile):
    // each hand-off leaves a record in its work folder naming the file. One that cannot be
    // described counts as running: nothing is removed from under it.
    for (record, is_running) in recorded_executions(app, bucket).await? {
        if record.source.key == key && is_running != Some(false) {
            return Ok(Some(running(&record.execution_arn)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::config::Config;
    use crate::leadspace::model::{EnrichRequest, EnrichmentResult};
    use crate::leadspace::{BulkResults, CallContext, Enricher, LeadspaceError};
    use crate::storage::{MemoryStore, Op};

    /// A delete never asks Leadspace anything.
    struct NoLeadspace;

    #[async_trait]
    impl Enricher for NoLeadspace {
        async fn single(&self, _: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
            unreachable!("Leadspace was called")
        }
        async fn submit_bulk(&self, _: &[EnrichRequest], _: &CallContext) -> Result<String, LeadspaceError> {
            unreachable!("Leadspace was called")
        }
        async fn collect_bulk(&self, _: &str, _: &CallContext) -> Result<BulkResults, LeadspaceError> {
            unreachable!("Leadspace was called")
        }
    }

    fn app(store: Arc<MemoryStore>) -> App {
        let config = Config::from_lookup(|name| (name == "LEADSPACE_SECRET_ID").then(|| "s".to_string()))
            .expect("a configuration");
        let leadspace = Arc::new(NoLeadspace);
        App { config, store, enricher: leadspace.clone(), batch_enricher: leadspace, cache: None, step_functions: None }
    }

    #[tokio::test]
    async fn a_run_that_takes_the_object_while_delete_lists_it_keeps_everything() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", "incoming/a.csv", b"Company\nContoso\n".to_vec(), "text/csv").await.unwrap();
        store.put("b", "enriched/a.csv", b"out".to_vec(), "text/csv").await.unwrap();
        store.put("b", "enriched/a.csv.summary.json", b"{}".to_vec(), "application/json").await.unwrap();
        // A delivery takes the lease between delete's first look at it and the removal.
        let marker = format!(r#"{{"renewed_at_epoch_seconds": {}, "etag": "\"e\""}}"#, store.now());
        store.write_before_next(Op::List, "b", "enriched/_state/leases/a.csv.lease", marker.into_bytes());

        let report = delete_enrichment(&app(store.clone()), "b", "incoming/a.csv", false).await.unwrap();

        assert!(report.refused.is_some() && report.removed.is_empty(), "{report:?}");
        assert!(
            store.peek("b", "enriched/a.csv").is_some() && store.peek("b", "enriched/a.csv.summary.json").is_some()
        );
    }
}
