//! The context the steps of one run share (the object, where its results go, the clock) and
//! how every run ends: a summary, or a `failed` summary when the file itself cannot be used.

use super::App;
use super::job::{Estimate, Job, JobReport, Outcome};
use super::paths::OutputPaths;
use super::scan::Scan;
use super::summary::{LeadspaceCounts, OutputInfo, Reused, RowCounts, RunStatus, SourceInfo, Summary, now_utc};
use crate::error::{JobError, RunError};
use crate::records::Format;
use crate::storage::ObjectMeta;

pub struct Run<'a> {
    pub app: &'a App,
    pub job: &'a Job,
    pub meta: ObjectMeta,
    pub paths: OutputPaths,
    format_label: String,
    started_at: String,
    /// For the phase timings in the log.
    clock: std::time::Instant,
    /// The Step Functions execution this run assembles, for a large file.
    execution: Option<String>,
}

impl<'a> Run<'a> {
    /// A run starting now; `execution` names the workflow it assembles, for a large file.
    pub fn new(app: &'a App, job: &'a Job, meta: ObjectMeta, paths: OutputPaths, execution: Option<String>) -> Self {
        Run {
            app,
            job,
            meta,
            paths,
            format_label: Format::detect(&job.key).map(|f| f.label().to_string()).unwrap_or_default(),
            started_at: now_utc(),
            clock: std::time::Instant::now(),
            execution,
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The file's format, from its name.
    pub fn format(&self) -> Result<Format, RunError> {
        Format::detect(&self.job.key).map_err(|unsupported| RunError::Unusable(unsupported.to_string()))
    }

    pub fn summary(
        &self,
        status: RunStatus,
        error: Option<String>,
        rows: RowCounts,
        leadspace: LeadspaceCounts,
        scan: Option<&Scan>,
    ) -> Summary {
        Summary {
            enrichment_name: self.app.config.enrichment_name.clone(),
            status,
            error,
            source: SourceInfo {
                bucket: self.job.bucket.clone(),
                key: self.job.key.clone(),
                etag: self.meta.etag.clone(),
                version_id: self.meta.version_id.clone(),
                size: self.meta.size,
                encoding: scan.map(|s| s.encoding),
            },
            output: OutputInfo {
                bucket: self.paths.bucket.clone(),
                key: self.paths.output_key.clone(),
                format: self.format_label.clone(),
            },
            field_mapping: scan.map_or(serde_json::Value::Null, |s| s.mapping.description().to_json()),
            started_at: self.started_at.clone(),
            finished_at: now_utc(),
            rows,
            unique_companies: scan.map_or(0, |s| s.companies.len() as u64),
            billing_guarantee: super::summary::billing_guarantee(
                self.app.config.answer_max_age_days,
                leadspace.ambiguous_retries,
            ),
            leadspace,
            reused: Reused::default(),
            cache: None,
            execution: self.execution.clone(),
        }
    }

    pub async fn write_summary(&self, summary: &Summary) -> Result<(), JobError> {
        let body = summary.to_json()?;
        self.app.store.put(&self.paths.bucket, &self.paths.summary_key, body, "application/json").await?;
        crate::metrics::emit(&summary.metrics(self.elapsed_ms()));
        Ok(())
    }

    /// What a run that stopped on `error` answers: a `failed` summary when the file cannot be
    /// used, the error itself when a retry may succeed.
    pub async fn stopped(&self, error: RunError, scan: Option<&Scan>) -> Result<JobReport, JobError> {
        match error {
            RunError::Unusable(why) => self.fail(&why, scan).await,
            RunError::Job(error) => Err(error),
        }
    }

    /// A `failed` summary: the file could not be processed; nothing was sent for it.
    pub async fn fail(&self, why: &str, scan: Option<&Scan>) -> Result<JobReport, JobError> {
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
            self.summary(RunStatus::Failed, Some(why.to_string()), rows.clone(), LeadspaceCounts::default(), scan);
        // A dry run writes nothing, not even a failed summary over a complete one.
        if !self.job.dry_run {
            self.write_summary(&summary).await?;
        }
        Ok(JobReport {
            status: Some(RunStatus::Failed),
            summary_key: Some(self.paths.summary_key.clone()),
            rows: Some(rows),
            message: Some(why.to_string()),
            ..JobReport::new(self.job, Outcome::Failed)
        })
    }

    /// What a dry run answers: what enriching would cost, from pass 1 alone.
    pub fn estimate(&self, scan: &Scan) -> JobReport {
        let estimate = Estimate {
            rows: scan.rows,
            unique_companies: scan.companies.len() as u64,
            rows_without_company_name: scan.rows_without_company,
            credits_at_most: scan.companies.len() as u64,
        };
        JobReport {
            estimate: Some(estimate),
            message: Some("dry run: nothing was sent or written".into()),
            ..JobReport::new(self.job, Outcome::Skipped)
        }
    }
}
