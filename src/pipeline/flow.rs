//! The one order every run of a file takes, whoever asked for it: the object's version, whether
//! its results are already written, the lease, who owns the version, pass 1, the answers, pass 2
//! and the summary. Where the answers come from is the only difference between the ways a file
//! is processed: bought here (inline, or handed to the large-file workflow when the file is
//! large), or read from the journal the workflow's batches wrote (its last step). `runner` and
//! `workflow::assemble` only say which.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::App;
use super::answers::book::AnswerBook;
use super::answers::journal::Journal;
use super::answers::{Answering, Answers, HandedOver};
use super::close::{self, read_summary};
use super::job::{Job, JobReport, Outcome};
use super::lease::{Acquired, Lease};
use super::output::{Enriched, finish};
use super::paths::{OutputPaths, ignore_reason};
use super::progress::ProgressCell;
use super::run::Run;
use super::scan::{Scan, scan};
use super::summary::{LeadspaceCounts, Summary};
use crate::cache::CacheCounts;
use crate::chain::error_chain;
use crate::error::{Ended, JobError, judge_stop};
use crate::records::Format;

const ALREADY_ENRICHED: &str = "already enriched: the summary is complete for this ETag; pass force to redo";

const FORCE_WHILE_RUNNING: &str = "force refused: another invocation is enriching this version of the object right now, \
                                   and forcing would throw away what it buys; force again once it has finished";

/// The large-file workflow, as the skeleton sees it: who owns a version, and the hand-off.
#[async_trait]
pub trait LargeFiles: Send + Sync {
    /// Whether a file of `size` bytes and `rows` rows goes to the workflow.
    fn is_large(&self, size: u64, rows: u64) -> bool;
    /// The execution enriching this version of the object, if one is running: it owns the
    /// version until it ends, since its last step builds the output from the journal.
    async fn running(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<String>, JobError>;
    /// What a delivery of a version that `execution` is enriching answers.
    fn being_enriched_by(&self, job: &Job, execution: String) -> JobReport;
    /// Stages the companies still without an answer (`book`, less those `held` in bulks an
    /// earlier run left in flight) and starts an execution. `cost` is what was spent so far.
    async fn hand_off(
        &self,
        run: &Run<'_>,
        scan: &Scan,
        journal: &Journal,
        book: AnswerBook,
        held: &HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<JobReport, JobError>;
}

/// Where a run's answers come from.
pub enum Source<'a> {
    /// Bought here after what earlier runs left, until `stop_at`; a large file goes to `large`.
    Buy { stop_at: Option<Instant>, large: Option<&'a dyn LargeFiles> },
    /// The workflow's last step: every answer is in the journal its batches wrote.
    Journal(&'a Assembly),
}

/// What the workflow's last step knows of its execution.
pub struct Assembly {
    /// The execution's name.
    pub execution: String,
    /// The version the execution enriched.
    pub etag: String,
    pub journal_bucket: String,
    pub journal_prefix: String,
    /// What pass 1 found when the file was handed off: the file must read the same.
    pub rows: u64,
    pub companies: u64,
    /// What the hand-off and the batches spent, summed.
    pub leadspace: LeadspaceCounts,
    pub cache: Option<CacheCounts>,
    /// Why the workflow stopped before every batch was enriched, if it did.
    pub stopped: Option<String>,
}

impl Source<'_> {
    fn execution(&self) -> Option<String> {
        match self {
            Source::Buy { .. } => None,
            Source::Journal(assembly) => Some(assembly.execution.clone()),
        }
    }

    fn already_written(&self) -> &'static str {
        match self {
            Source::Buy { .. } => ALREADY_ENRICHED,
            Source::Journal(_) => "this version's results are already written",
        }
    }

    /// Whether `done` already speaks for this version: complete for it, or the very summary
    /// this execution wrote (a retried or redriven last step, whose journal is gone by now).
    fn is_written(&self, done: &Summary, etag: &str) -> bool {
        done.is_complete_for(etag)
            || matches!(self, Source::Journal(assembly)
                if done.source.etag == assembly.etag && done.execution.as_deref() == Some(assembly.execution.as_str()))
    }
}

/// Runs one file, its answers from `source`.
pub async fn run_file(app: &App, job: &Job, source: Source<'_>) -> Result<JobReport, JobError> {
    let config = &app.config;
    if let Some(why) = ignore_reason(config, &job.bucket, &job.key) {
        return Ok(JobReport::ignored(job, why));
    }
    let Some(meta) = app.store.head(&job.bucket, &job.key).await? else {
        return Ok(JobReport::ignored(job, "the object no longer exists"));
    };
    if let Source::Journal(assembly) = &source
        && meta.etag != assembly.etag
    {
        return Ok(JobReport::not_started(
            job,
            "the object was replaced while the workflow ran; its new version is enriched by its own event",
        ));
    }
    let paths = OutputPaths::for_object(config, &job.bucket, &job.key);
    tracing::info!(size = meta.size, "starting");
    let unforced;
    let job = if job.force && force_spent(app, &paths, &meta.etag, job).await? {
        tracing::info!("a retry of a forced request whose force is spent: what it bought is collected");
        unforced = Job { force: false, ..job.clone() };
        &unforced
    } else {
        job
    };

    // Results already written for this version mean nothing to do; checked before the lease
    // so a redelivery costs one GET, and again once the lease is held.
    if !job.force
        && !job.dry_run
        && let Some(done) = read_summary(app.store.as_ref(), &paths).await?
        && source.is_written(&done, &meta.etag)
    {
        return Ok(JobReport::already_done(job, &paths, done, source.already_written()));
    }

    let mut run = Run::new(app, job, meta, paths, source.execution());
    let progress = Arc::new(ProgressCell::new(&job.bucket, &job.key));
    if let Source::Journal(assembly) = &source {
        // The last step's progress: what the hand-off scanned; answers come at once.
        progress.scanned(assembly.rows, assembly.companies);
    }
    if job.dry_run {
        return process(&run, &source, &progress).await;
    }
    let (bucket, lease_key) = (&run.paths.bucket, run.paths.lease_key());
    let lease =
        Lease::acquire(app.store.clone(), bucket, &lease_key, &run.meta.etag, config.lease_heartbeat, progress.clone())
            .await?;
    let lease = match (lease, &source) {
        (Acquired::Held(lease), _) => {
            run.lease = lease.watch();
            lease
        }
        (Acquired::SameVersionBusy, _) if job.force => {
            return Ok(JobReport::force_refused(job, FORCE_WHILE_RUNNING.into(), None));
        }
        (Acquired::SameVersionBusy, Source::Buy { .. }) => {
            tracing::info!("a live invocation is enriching this very version; skipping");
            return Ok(JobReport {
                message: Some("another invocation is enriching this version of the object right now".into()),
                ..JobReport::new(job, Outcome::Skipped)
            });
        }
        (Acquired::OtherBusy(why), Source::Buy { .. }) => {
            return Err(JobError::Busy { bucket: job.bucket.clone(), key: job.key.clone(), why });
        }
        (_, Source::Journal(_)) => {
            return Err(JobError::Workflow {
                action: "assemble the output",
                transient: true,
                source: "another invocation holds the lease on this object; the step is retried".into(),
            });
        }
    };
    let result = held(&run, &source, &progress).await;
    lease.release().await;
    result
}

/// The run once the lease is held: unless another run has finished or owns this version.
async fn held(run: &Run<'_>, source: &Source<'_>, progress: &ProgressCell) -> Result<JobReport, JobError> {
    let (app, job) = (run.app, run.job);
    // Another invocation may have finished this version between our first look and the lease.
    if !job.force
        && let Some(done) = read_summary(app.store.as_ref(), &run.paths).await?
        && source.is_written(&done, &run.meta.etag)
    {
        return Ok(JobReport::already_done(job, &run.paths, done, source.already_written()));
    }
    // A running execution owns its version until it ends, whatever the journal holds.
    if let Source::Buy { large: Some(large), .. } = source
        && let Some(arn) = large.running(&job.bucket, &job.key, &run.meta.etag).await?
    {
        if job.force {
            let why = format!(
                "force refused: the Step Functions execution {arn} is enriching this version of the object, and \
                 forcing would throw away the answers its batches bought; force again once it has ended (status \
                 shows it running)"
            );
            return Ok(JobReport::force_refused(job, why, Some(arn)));
        }
        return Ok(large.being_enriched_by(job, arn));
    }
    if job.force {
        // The old results stop speaking for this version before anything replaces them: a run
        // stopped halfway leaves no complete summary beside a new, partial output.
        close::invalidate(run).await?;
    }
    process(run, source, progress).await
}

/// Whether `job` is Lambda's retry of a forced request that already cleared this version's
/// journal (`known_answers` records it).
async fn force_spent(app: &App, paths: &OutputPaths, etag: &str, job: &Job) -> Result<bool, JobError> {
    let Some(request) = &job.request_id else { return Ok(false) };
    Ok(app.store.head(&paths.bucket, &paths.force_spent_key(etag, request)).await?.is_some())
}

/// Pass 1, then the answers from their source, then pass 2 and the summary.
async fn process(run: &Run<'_>, source: &Source<'_>, progress: &ProgressCell) -> Result<JobReport, JobError> {
    let (job, config) = (run.job, &run.app.config);
    let format = match run.format() {
        Ok(format) => format,
        Err(error) => return close::stopped(run, error, None).await,
    };
    if matches!(source, Source::Buy { .. }) && run.meta.size > config.max_input_bytes {
        let why = format!(
            "the object is {} bytes, more than MAX_INPUT_BYTES ({}); split it into smaller files or raise \
             MAX_INPUT_BYTES",
            run.meta.size, config.max_input_bytes
        );
        return close::fail(run, &why, None).await;
    }
    let mapping = job.field_mapping.as_ref().or(config.field_mapping.as_ref());
    let scan = match scan(run, format, mapping).await {
        Ok(scan) => scan,
        Err(error) => return close::stopped(run, error, None).await,
    };
    tracing::info!(
        rows = scan.rows,
        unique_companies = scan.companies.len(),
        rows_without_company = scan.rows_without_company,
        elapsed_ms = run.elapsed_ms(),
        "scanned"
    );
    progress.scanned(scan.rows, scan.companies.len() as u64);
    if job.dry_run {
        return Ok(close::estimate(run, &scan));
    }
    match *source {
        Source::Buy { stop_at, large } => buy(run, format, scan, stop_at, large, progress).await,
        Source::Journal(assembly) => assemble(run, format, scan, assembly).await,
    }
}

/// Answers an earlier run bought are collected before anything is bought (unless `force`);
/// then a large file is handed off, or the rest is bought here.
async fn buy(
    run: &Run<'_>,
    format: Format,
    scan: Scan,
    stop_at: Option<Instant>,
    large: Option<&dyn LargeFiles>,
    progress: &ProgressCell,
) -> Result<JobReport, JobError> {
    let app = run.app;
    if !app.config.data_sharing_consent {
        let why = "DATA_SHARING_CONSENT is not set to true: no customer data was sent to Leadspace. \
                   Set DATA_SHARING_CONSENT=true to record consent to send the mapped fields outside this AWS account";
        return close::fail(run, why, Some(&scan)).await;
    }
    let answering = Answering::open(run, &scan, stop_at, progress).await?;
    if let Some(large) = large
        && large.is_large(run.meta.size, scan.rows)
        && answering.has_more_to_buy()
    {
        let HandedOver { journal, book, held, cost } = answering.hand_over();
        return large.hand_off(run, &scan, &journal, book, &held, cost).await;
    }
    let (answered, journal, call) = answering.buy_the_rest(progress).await;
    tracing::info!(elapsed_ms = run.elapsed_ms(), "answers ready");
    let Answers { answers, bought_at, stopped_by, leadspace_down, cache, reused } = answered;
    let enriched = Enriched {
        answers,
        bought_at,
        stopped: stopped_by.as_ref().map(|stop| error_chain(stop)),
        leadspace: LeadspaceCounts::from(call.stats.as_ref()),
        cache,
        reused,
    };
    let report = finish(run, format, &scan, enriched, &journal).await?;
    // Everything is written (answers kept, summary partial); when the cause is passing,
    // Lambda's retry collects what was bought and sends only the rows without an answer.
    if let Ended::Retry(error) = judge_stop(stopped_by) {
        return Err(error);
    }
    if leadspace_down {
        return Err(JobError::LeadspaceUnavailable(report.message.unwrap_or_default()));
    }
    Ok(report)
}

/// The output and summary from the journal, once the file reads as it did at the hand-off.
async fn assemble(run: &Run<'_>, format: Format, scan: Scan, assembly: &Assembly) -> Result<JobReport, JobError> {
    if (scan.rows, scan.companies.len() as u64) != (assembly.rows, assembly.companies) {
        let why = format!(
            "the file read differently at the end of the workflow ({} rows and {} companies, against {} and {} when it \
             started), so its answers cannot be matched to its rows safely; enrich it again",
            scan.rows,
            scan.companies.len(),
            assembly.rows,
            assembly.companies
        );
        return close::fail(run, &why, Some(&scan)).await;
    }
    // The journal holds every answer of this version: the batches', an earlier attempt's,
    // and those the hand-off carried over from the previous version.
    let journal =
        Journal::new(run.app.store.clone(), &assembly.journal_bucket, &assembly.journal_prefix, &assembly.execution);
    let mut book = AnswerBook::new(scan.companies.len());
    let in_flight = journal.recall(&scan.companies, &mut book).await?;
    if !in_flight.is_empty() {
        // Left for the next run, which collects them before buying anything.
        tracing::warn!(bulks = in_flight.len(), "bulks still in flight at the end of the workflow");
    }
    tracing::info!(elapsed_ms = run.elapsed_ms(), "answers read");
    let reused = book.reused();
    let (answers, bought_at) = book.finish();
    let enriched = Enriched {
        answers,
        bought_at,
        stopped: assembly.stopped.clone(),
        leadspace: assembly.leadspace.clone(),
        cache: assembly.cache,
        reused,
    };
    finish(run, format, &scan, enriched, &journal).await
}
