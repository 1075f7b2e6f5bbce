//! Step 3, assemble: the original file read again, in order, and the output and summary written
//! from the version's answer journal, exactly as an inline run writes them.

use std::sync::Arc;

use super::input::{ExecutionInput, MapError, PartStats};
use crate::cache::CacheCounts;
use crate::chain::error_chain;
use crate::error::JobError;
use crate::mapping::FieldMapping;
use crate::pipeline::App;
use crate::pipeline::book::AnswerBook;
use crate::pipeline::close;
use crate::pipeline::close::read_summary;
use crate::pipeline::job::{Job, JobReport};
use crate::pipeline::journal::Journal;
use crate::pipeline::lease::{Acquired, Lease};
use crate::pipeline::output::{Enriched, finish};
use crate::pipeline::paths::{OutputPaths, work_prefix};
use crate::pipeline::progress::ProgressCell;
use crate::pipeline::run::Run;
use crate::pipeline::scan::scan;
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
    let report = assemble_job(app, &job, &input).await;
    // The staged companies are customer data: they go whatever happened, unless the error is
    // one a retry of this step should find them for.
    if report.as_ref().is_ok() {
        delete_work_files(app.store.as_ref(), &input.work_bucket, &work).await;
    }
    report
}

async fn assemble_job(app: &App, job: &Job, input: &ExecutionInput) -> Result<JobReport, JobError> {
    let Some(meta) = app.store.head(&job.bucket, &job.key).await? else {
        return Ok(JobReport::ignored(job, "the object no longer exists"));
    };
    if meta.etag != input.etag {
        return Ok(JobReport::not_started(
            job,
            "the object was replaced while the workflow ran; its new version is enriched by its own event",
        ));
    }
    let paths = OutputPaths::for_object(&app.config, &job.bucket, &job.key);
    let lease = Lease::acquire(
        app.store.clone(),
        &paths.bucket,
        &paths.lease_key(),
        &meta.etag,
        app.config.lease_heartbeat,
        assembling(&job.bucket, &job.key, input),
    )
    .await?;
    let Acquired::Held(lease) = lease else {
        return Err(JobError::Workflow {
            action: "assemble the output",
            transient: true,
            source: "another invocation holds the lease on this object; the step is retried".into(),
        });
    };
    // A retried or redriven last step finds its own summary, and any step may find the version
    // completed by another run: either way the journal behind it is deleted by now, and the
    // output must not be replaced by one of not_attempted rows.
    let done = read_summary(app.store.as_ref(), &paths).await;
    if let Ok(Some(done)) = done
        && done.source.etag == input.etag
        && (done.execution.as_deref() == Some(input.run.as_str()) || done.is_complete_for(&input.etag))
    {
        lease.release().await;
        return Ok(JobReport::already_done(job, &paths, done, "this version's results are already written"));
    }
    let mut run = Run::new(app, job, meta, paths, Some(input.run.clone()));
    run.lease = lease.watch();
    let result = assemble_run(&run, input).await;
    lease.release().await;
    result
}

/// The output and summary from the journal, after pass 1 again with the mapping the hand-off
/// resolved.
async fn assemble_run(run: &Run<'_>, input: &ExecutionInput) -> Result<JobReport, JobError> {
    let format = match run.format() {
        Ok(format) => format,
        Err(error) => return close::stopped(run, error, None).await,
    };
    let mapping = run.job.field_mapping.as_ref().or(run.app.config.field_mapping.as_ref());
    let scan = match scan(run, format, mapping).await {
        Ok(scan) => scan,
        Err(error) => return close::stopped(run, error, None).await,
    };
    if (scan.rows, scan.companies.len() as u64) != (input.rows, input.companies) {
        let why = format!(
            "the file read differently at the end of the workflow ({} rows and {} companies, against {} and {} when it \
             started), so its answers cannot be matched to its rows safely; enrich it again",
            scan.rows,
            scan.companies.len(),
            input.rows,
            input.companies
        );
        return close::fail(run, &why, Some(&scan)).await;
    }
    // The journal holds every answer of this version: the batches', an earlier attempt's,
    // and those the hand-off carried over from the previous version.
    let journal = Journal::new(run.app.store.clone(), &input.work_bucket, &input.journal_prefix, &input.run);
    let mut book = AnswerBook::new(scan.companies.len());
    let in_flight = journal.recall(&scan.companies, &mut book).await?;
    if !in_flight.is_empty() {
        // Left for the next run, which collects them before buying anything.
        tracing::warn!(bulks = in_flight.len(), "bulks still in flight at the end of the workflow");
    }
    let (leadspace, cache, batch_stop) = read_batch_figures(run.app.store.as_ref(), input).await?;
    tracing::info!(elapsed_ms = run.elapsed_ms(), "answers read");
    let reused = book.reused();
    let (answers, bought_at) = book.finish();
    let stopped = match (batch_stop, &input.map_error) {
        (Some(why), _) => Some(format!("the workflow stopped before every batch was enriched: {why}")),
        (None, map_error) => map_error.as_ref().map(MapError::describe),
    };
    let enriched = Enriched { answers, bought_at, stopped, leadspace, cache, reused };
    finish(run, format, &scan, enriched, &journal).await
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

/// The last step's progress: what the hand-off scanned; answers come from the journal at once.
fn assembling(bucket: &str, key: &str, input: &ExecutionInput) -> Arc<ProgressCell> {
    let progress = ProgressCell::new(bucket, key);
    progress.scanned(input.rows, input.companies);
    Arc::new(progress)
}
