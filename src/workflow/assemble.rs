//! Step 3, assemble: the original file read again, in order, and the output and summary written
//! from the version's answer journal, exactly as an inline run writes them: the run itself is
//! `pipeline::flow`'s, its answers read from the journal the batches wrote.

use super::input::{ExecutionInput, MapError, PartStats};
use crate::cache::CacheCounts;
use crate::chain::error_chain;
use crate::error::JobError;
use crate::mapping::FieldMapping;
use crate::pipeline::App;
use crate::pipeline::flow::{Assembly, Source, run_file};
use crate::pipeline::job::{Job, JobReport};
use crate::pipeline::paths::work_prefix;
use crate::pipeline::summary::LeadspaceCounts;
use crate::storage::{ObjectStore, delete_prefix};

/// The workflow's last step: the output and summary, in input order, from the batches' answers.
pub async fn assemble(app: &App, input: ExecutionInput) -> Result<JobReport, JobError> {
    let field_mapping = FieldMapping::from_value(&input.field_mapping).map_err(|e| JobError::Workflow {
        action: "read the execution input",
        transient: false,
        source: Box::new(e),
    })?;
    let job = Job {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        field_mapping: Some(field_mapping),
        ..Job::default()
    };
    let work = work_prefix(&app.config, &input.run);
    let (leadspace, cache, batch_stop) = read_batch_figures(app.store.as_ref(), &input).await?;
    let stopped = match (batch_stop, &input.map_error) {
        (Some(why), _) => Some(format!("the workflow stopped before every batch was enriched: {why}")),
        (None, map_error) => map_error.as_ref().map(MapError::describe),
    };
    let assembly = Assembly {
        execution: input.run.clone(),
        etag: input.etag.clone(),
        journal_bucket: input.work_bucket.clone(),
        journal_prefix: input.journal_prefix.clone(),
        rows: input.rows,
        companies: input.companies,
        leadspace,
        cache,
        stopped,
    };
    let report = run_file(app, &job, Source::Journal(&assembly)).await;
    // The staged companies are customer data: they go whatever happened, unless the error is
    // one a retry of this step should find them for.
    if report.as_ref().is_ok() {
        delete_work_files(app.store.as_ref(), &input.work_bucket, &work).await;
    }
    report
}

/// What every batch (and the hand-off) cost, summed, and why a batch stopped, if one did.
async fn read_batch_figures(
    store: &dyn ObjectStore,
    input: &ExecutionInput,
) -> Result<(LeadspaceCounts, Option<CacheCounts>, Option<String>), JobError> {
    let mut leadspace = LeadspaceCounts::default();
    let mut cache: Option<CacheCounts> = None;
    let mut stopped = None;
    for part in store.list(&input.work_bucket, &input.answers_prefix).await? {
        let Some(body) = store.get_small(&input.work_bucket, &part.key).await? else { continue };
        let Ok(stats) = serde_json::from_slice::<PartStats>(&body) else { continue };
        leadspace.add(&stats.leadspace);
        if let Some(part_cache) = stats.cache {
            cache.get_or_insert_with(CacheCounts::default).add(&part_cache);
        }
        stopped = stopped.or(stats.stopped);
    }
    Ok((leadspace, cache, stopped))
}

/// Best effort: what is left is expired by the bucket's lifecycle rule.
async fn delete_work_files(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    if let Err(error) = delete_prefix(store, bucket, prefix).await {
        let first = &error.first;
        tracing::warn!(failed = error.failed, error = %error_chain(first), "some of the workflow's files could not be deleted; the lifecycle rule expires them");
    }
}
