//! How a run ends: the summary, written last; a `failed` summary when the file itself cannot
//! be used; the estimate a dry run answers instead. And the summary an earlier run ended with.

use super::job::{Estimate, JobReport, Outcome};
use super::paths::{OutputPaths, REPORT_SUFFIX};
use super::report::{Profile, render};
use super::run::Run;
use super::scan::Scan;
use super::summary::{
    LeadspaceCounts, OutputInfo, Reused, RowCounts, RunStatus, SourceInfo, Summary, billing_guarantee, now_utc,
};
use crate::chain::error_chain;
use crate::error::{JobError, RunError};
use crate::storage::ObjectStore;

pub fn summary(
    run: &Run<'_>,
    status: RunStatus,
    error: Option<String>,
    rows: RowCounts,
    leadspace: LeadspaceCounts,
    scan: Option<&Scan>,
) -> Summary {
    Summary {
        enrichment_name: run.app.config.enrichment_name.clone(),
        status,
        error,
        source: SourceInfo {
            bucket: run.job.bucket.clone(),
            key: run.job.key.clone(),
            etag: run.meta.etag.clone(),
            version_id: run.meta.version_id.clone(),
            size: run.meta.size,
            encoding: scan.map(|s| s.encoding),
        },
        output: OutputInfo {
            bucket: run.paths.bucket.clone(),
            key: run.paths.output_key.clone(),
            format: run.format_label.clone(),
        },
        field_mapping: scan.map_or(serde_json::Value::Null, |s| s.mapping.description().to_json()),
        started_at: run.started_at.clone(),
        finished_at: now_utc(),
        rows,
        unique_companies: scan.map_or(0, |s| s.companies.len() as u64),
        billing_guarantee: billing_guarantee(run.app.config.answer_max_age_days, leadspace.ambiguous_retries),
        leadspace,
        reused: Reused::default(),
        cache: None,
        execution: run.execution.clone(),
    }
}

/// The report, then the summary, last. The report is a view of the summary: if it cannot be
/// written, the summary still is (and says what happened), and the next run writes both.
pub async fn write_summary(run: &Run<'_>, summary: &Summary, profile: &Profile) -> Result<(), JobError> {
    run.ensure_lease()?;
    let report = render(summary, profile).into_bytes();
    let report_key = format!("{}{REPORT_SUFFIX}", run.paths.output_key);
    if let Err(error) = run.app.store.put(&run.paths.bucket, &report_key, report, "text/html; charset=utf-8").await {
        tracing::warn!(error = %error_chain(&error), "could not write the report; the summary follows");
    }
    let body = summary.to_json()?;
    run.app.store.put(&run.paths.bucket, &run.paths.summary_key, body, "application/json").await?;
    let status = serde_json::to_value(summary.status).ok();
    let status = status.as_ref().and_then(serde_json::Value::as_str).unwrap_or_default();
    let about = [("Bucket", summary.source.bucket.as_str()), ("Key", summary.source.key.as_str()), ("Status", status)];
    crate::metrics::emit_about(&summary.metrics(run.elapsed_ms()), &about);
    Ok(())
}

/// Removes the summary of the results a forced run is about to replace, before anything is
/// cleared or bought: until the new summary is written, no delivery takes the old one for this
/// version's.
pub async fn invalidate(run: &Run<'_>) -> Result<(), JobError> {
    run.app.store.delete(&run.paths.bucket, &run.paths.summary_key).await?;
    Ok(())
}

/// What a run that stopped on `error` answers: a `failed` summary when the file cannot be
/// used, the error itself when a retry may succeed.
pub async fn stopped(run: &Run<'_>, error: RunError, scan: Option<&Scan>) -> Result<JobReport, JobError> {
    match error {
        RunError::Unusable(why) => fail(run, &why, scan).await,
        RunError::Job(error) => Err(error),
    }
}

/// A `failed` summary: the file could not be processed; nothing was sent for it.
pub async fn fail(run: &Run<'_>, why: &str, scan: Option<&Scan>) -> Result<JobReport, JobError> {
    // `why` may quote the file's first line (a CSV without a header): summary and answer
    // only, never the logs.
    tracing::warn!("the file could not be enriched; the summary says why");
    let mut rows = RowCounts::default();
    if let Some(scan) = scan {
        rows.total = scan.rows;
        rows.invalid_input = scan.rows_without_company;
        rows.not_attempted = scan.rows - scan.rows_without_company;
    }
    let summary =
        summary(run, RunStatus::Failed, Some(why.to_string()), rows.clone(), LeadspaceCounts::default(), scan);
    // A dry run writes nothing, not even a failed summary over a complete one.
    if !run.job.dry_run {
        write_summary(run, &summary, &Profile::default()).await?;
    }
    Ok(JobReport {
        status: Some(RunStatus::Failed),
        summary_key: Some(run.paths.summary_key.clone()),
        rows: Some(rows),
        message: Some(why.to_string()),
        ..JobReport::new(run.job, Outcome::Failed)
    })
}

/// What a dry run answers: what enriching would cost, from pass 1 alone.
pub fn estimate(run: &Run<'_>, scan: &Scan) -> JobReport {
    let estimate = Estimate {
        rows: scan.rows,
        unique_companies: scan.companies.len() as u64,
        rows_without_company_name: scan.rows_without_company,
        credits_at_most: scan.companies.len() as u64,
    };
    JobReport {
        estimate: Some(estimate),
        message: Some("dry run: nothing was sent or written".into()),
        ..JobReport::new(run.job, Outcome::Skipped)
    }
}

/// The summary beside the object's output, if there is one this version can read.
pub async fn read_summary(store: &dyn ObjectStore, paths: &OutputPaths) -> Result<Option<Summary>, JobError> {
    let Some(bytes) = store.get_small(&paths.bucket, &paths.summary_key).await? else {
        return Ok(None);
    };
    // A summary this version cannot read is treated as absent: the object is enriched again.
    Ok(serde_json::from_slice(&bytes).ok())
}
