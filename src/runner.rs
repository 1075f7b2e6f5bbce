//! One job from start to end: whether the object is for this function, whether its version is
//! already done, the lease, then the run: pass 1, the answers earlier runs left, and either the
//! Step Functions hand-off (a large file) or Leadspace and pass 2 here.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Ended, JobError, judge_stop};
use crate::pipeline::answer::{Answers, answer_the_rest, collect_earlier_bulks, journal_of, known_answers};
use crate::pipeline::close;
use crate::pipeline::close::read_summary;
use crate::pipeline::lease::{Acquired, Lease};
use crate::pipeline::output::{Enriched, finish};
use crate::pipeline::paths::{OutputPaths, ignore_reason};
use crate::pipeline::progress::ProgressCell;
use crate::pipeline::run::Run;
use crate::pipeline::scan::scan;
use crate::pipeline::summary::LeadspaceCounts;
use crate::pipeline::{App, Job, JobReport, Outcome};
use crate::workflow::{self, hand_off::HandOff};

const ALREADY_ENRICHED: &str = "already enriched: the summary is complete for this ETag; pass force to redo";

/// Runs `job` unless the invocation is already past `stop_at`. A job not started is a
/// retryable error, never a `skipped` that Lambda would take as done.
pub async fn run_in_time(app: &App, job: &Job, stop_at: Option<Instant>) -> Result<JobReport, JobError> {
    if stop_at.is_some_and(|stop| Instant::now() >= stop) {
        return Err(JobError::OutOfTime { bucket: job.bucket.clone(), key: job.key.clone() });
    }
    let span = tracing::info_span!("job", bucket = %job.bucket, key = %job.key);
    run_job(app, job, stop_at).instrument(span).await
}

/// Runs one job. `stop_at` is when to stop starting Leadspace work (the Lambda deadline less a
/// margin for writing); `None` runs to completion.
pub async fn run_job(app: &App, job: &Job, stop_at: Option<Instant>) -> Result<JobReport, JobError> {
    let config = &app.config;
    if let Some(why) = ignore_reason(config, &job.bucket, &job.key) {
        return Ok(JobReport::ignored(job, why));
    }
    let Some(meta) = app.store.head(&job.bucket, &job.key).await? else {
        return Ok(JobReport::ignored(job, "the object no longer exists"));
    };
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

    // A complete run of this very version means nothing to do; checked before the lease so a
    // redelivery costs one GET, and again once the lease is held (another run may just have
    // finished).
    if !job.force && !job.dry_run {
        let previous = read_summary(app.store.as_ref(), &paths).await?;
        if let Some(done) = previous.filter(|p| p.is_complete_for(&meta.etag)) {
            return Ok(JobReport::already_done(job, &paths, done, ALREADY_ENRICHED));
        }
    }

    let mut run = Run::new(app, job, meta, paths, None);
    let progress = Arc::new(ProgressCell::new(&job.bucket, &job.key));
    if job.dry_run {
        return process(&run, stop_at, &progress).await;
    }
    let (bucket, lease_key) = (&run.paths.bucket, run.paths.lease_key());
    let heartbeat = config.lease_heartbeat;
    let lease =
        Lease::acquire(app.store.clone(), bucket, &lease_key, &run.meta.etag, heartbeat, progress.clone()).await?;
    let lease = match lease {
        Acquired::Held(lease) => {
            run.lease = lease.watch();
            lease
        }
        Acquired::SameVersionBusy if job.force => {
            return Ok(JobReport::force_refused(job, FORCE_WHILE_RUNNING.into(), None));
        }
        Acquired::SameVersionBusy => {
            tracing::info!("a live invocation is enriching this very version; skipping");
            return Ok(JobReport {
                message: Some("another invocation is enriching this version of the object right now".into()),
                ..JobReport::new(job, Outcome::Skipped)
            });
        }
        Acquired::OtherBusy(why) => {
            return Err(JobError::Busy { bucket: job.bucket.clone(), key: job.key.clone(), why });
        }
    };
    let result = run_held(&run, stop_at, &progress).await;
    lease.release().await;
    result
}

const FORCE_WHILE_RUNNING: &str = "force refused: another invocation is enriching this version of the object right now, \
                                   and forcing would throw away what it buys; force again once it has finished";

/// The run once the lease is held: unless another run has finished or owns this version.
async fn run_held(run: &Run<'_>, stop_at: Option<Instant>, progress: &ProgressCell) -> Result<JobReport, JobError> {
    let (app, job) = (run.app, run.job);
    // Another invocation may have finished this version between our first look and the lease.
    if !job.force
        && let Some(done) = read_summary(app.store.as_ref(), &run.paths).await?
        && done.is_complete_for(&run.meta.etag)
    {
        return Ok(JobReport::already_done(job, &run.paths, done, ALREADY_ENRICHED));
    }
    // A running execution owns its version until it ends, whatever the journal holds: its last
    // step builds the output from the journal as its batches left it.
    if let Some(step_functions) = &app.step_functions
        && let Some(arn) =
            workflow::hand_off::running_execution(step_functions, &job.bucket, &job.key, &run.meta.etag).await?
    {
        if job.force {
            let why = format!(
                "force refused: the Step Functions execution {arn} is enriching this version of the object, and \
                 forcing would throw away the answers its batches bought; force again once it has ended (status \
                 shows it running)"
            );
            return Ok(JobReport::force_refused(job, why, Some(arn)));
        }
        return Ok(workflow::hand_off::being_enriched_by(job, arn));
    }
    if job.force {
        // The old results stop speaking for this version before anything replaces them: a run
        // stopped halfway leaves no complete summary beside a new, partial output.
        close::invalidate(run).await?;
    }
    process(run, stop_at, progress).await
}

/// Whether `job` is Lambda's retry of a forced request that already cleared this version's
/// journal (`known_answers` records it).
async fn force_spent(app: &App, paths: &OutputPaths, etag: &str, job: &Job) -> Result<bool, JobError> {
    let Some(request) = &job.request_id else { return Ok(false) };
    Ok(app.store.head(&paths.bucket, &paths.force_spent_key(etag, request)).await?.is_some())
}

/// Reads, enriches and writes the object. Answers an earlier run bought are collected before
/// anything is bought (unless `force`).
async fn process(run: &Run<'_>, stop_at: Option<Instant>, progress: &ProgressCell) -> Result<JobReport, JobError> {
    let (app, job, config) = (run.app, run.job, &run.app.config);
    let format = match run.format() {
        Ok(format) => format,
        Err(error) => return close::stopped(run, error, None).await,
    };
    if run.meta.size > config.max_input_bytes {
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
    if !config.data_sharing_consent {
        let why = "DATA_SHARING_CONSENT is not set to true: no customer data was sent to Leadspace. \
                   Set DATA_SHARING_CONSENT=true to record consent to send the mapped fields outside this AWS account";
        return close::fail(run, why, Some(&scan)).await;
    }

    let journal = journal_of(run, &scan, &format!("run-{:016x}", rand::random::<u64>()));
    // The token is read while the journal is: the first request then goes without waiting.
    let (known, ()) = tokio::join!(known_answers(run, &scan, &journal), app.enricher.prepare());
    let (mut book, pending) = known?;
    let call = run.call_context(stop_at);
    progress.follow(book.known() as u64, journal.written(), call.stats.clone());
    // Before anything is bought, inline or by the workflow's batches.
    let collected = collect_earlier_bulks(app, &journal, &scan.companies, pending, &call, &mut book).await;

    if let Some(step_functions) = &app.step_functions
        && workflow::is_large(config, run.meta.size, scan.rows)
        && collected.stopped_by.is_none()
        && book.known() < book.len()
    {
        let hand_off = HandOff { run, step_functions, scan: &scan, journal: &journal };
        return hand_off.start(book, &collected.held, LeadspaceCounts::from(call.stats.as_ref())).await;
    }

    let answered = answer_the_rest(app, app.enricher.as_ref(), &journal, &scan.companies, book, collected, &call).await;
    progress.stop_following();
    tracing::info!(elapsed_ms = run.elapsed_ms(), "answers ready");
    let Answers { answers, bought_at, stopped_by, leadspace_down, cache, reused } = answered;
    let enriched = Enriched {
        answers,
        bought_at,
        stopped: stopped_by.as_ref().map(ToString::to_string),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::config::Config;
    use crate::leadspace::CallContext;
    use crate::leadspace::model::{EnrichRequest, EnrichmentResult};
    use crate::leadspace::{BulkResults, Enricher, LeadspaceError};
    use crate::storage::{MemoryStore, ObjectStore, Op};

    const BUCKET: &str = "b";

    /// These decisions are made before Leadspace is needed: being asked is the failure.
    struct NoLeadspace;

    #[async_trait]
    impl Enricher for NoLeadspace {
        async fn single(&self, _: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
            panic!("Leadspace was called")
        }
        async fn submit_bulk(&self, _: &[EnrichRequest], _: &CallContext) -> Result<String, LeadspaceError> {
            panic!("Leadspace was called")
        }
        async fn collect_bulk(&self, _: &str, _: &CallContext) -> Result<BulkResults, LeadspaceError> {
            panic!("Leadspace was called")
        }
    }

    fn app(store: Arc<MemoryStore>) -> App {
        let config = Config::from_lookup(|name| match name {
            "LEADSPACE_SECRET_ID" => Some("s".into()),
            "DATA_SHARING_CONSENT" => Some("true".into()),
            _ => None,
        })
        .expect("a configuration");
        App {
            config,
            store,
            enricher: Arc::new(NoLeadspace),
            batch_enricher: Arc::new(NoLeadspace),
            cache: None,
            step_functions: None,
        }
    }

    fn job(key: &str) -> Job {
        Job { bucket: BUCKET.into(), key: key.into(), ..Job::default() }
    }

    async fn put(store: &MemoryStore, key: &str, body: &str) {
        store.put(BUCKET, key, body.as_bytes().to_vec(), "text/csv").await.expect("a put");
    }

    #[tokio::test]
    async fn objects_outside_the_input_prefix_or_in_the_output_are_ignored_without_a_request() {
        let store = Arc::new(MemoryStore::new());
        let app = app(store.clone());
        for key in ["enriched/a.csv", "elsewhere/a.csv", "incoming/_state/a.csv", "incoming/folder/"] {
            let report = run_job(&app, &job(key), None).await.expect("a report");
            assert_eq!(report.outcome, Outcome::Ignored, "{key}");
        }
        assert_eq!(store.total_calls(), 0);
    }

    #[tokio::test]
    async fn a_version_whose_summary_is_complete_is_skipped_after_one_read() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.csv", "Company\nContoso\n").await;
        let etag = store.head(BUCKET, "incoming/a.csv").await.unwrap().unwrap().etag;
        let summary = serde_json::json!({
            "enrichment_name": "leadspace", "status": "complete", "error": null,
            "source": {"bucket": BUCKET, "key": "incoming/a.csv", "etag": etag, "size": 16},
            "output": {"bucket": BUCKET, "key": "enriched/a.csv", "format": "csv"},
            "field_mapping": {"company_name": "Company"}, "started_at": "", "finished_at": "",
            "rows": {"total": 1, "enriched": 1, "not_matched": 0, "low_confidence": 0, "invalid_input": 0,
                     "failed": 0, "not_attempted": 0},
            "unique_companies": 1, "billing_guarantee": "",
            "leadspace": {"requests": 1, "records_sent": 1, "retries": 0, "throttled": 0},
        });
        put(&store, "enriched/a.csv.summary.json", &summary.to_string()).await;
        let before = store.calls(Op::GetSmall);

        let report = run_job(&app(store.clone()), &job("incoming/a.csv"), None).await.expect("a report");

        assert_eq!(report.outcome, Outcome::Skipped, "{report:?}");
        assert_eq!(store.calls(Op::GetSmall) - before, 1, "one read of the summary");
        assert_eq!(store.calls(Op::PutIfAbsent), 0, "no lease taken");
    }

    #[tokio::test]
    async fn a_dry_run_estimates_from_pass_one_and_writes_nothing() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.csv", "Company,Email\nContoso,a@x\nCONTOSO ,b@x\n,c@x\nFabrikam,d@x\n").await;
        let keys_before = store.keys(BUCKET);

        let dry = Job { dry_run: true, ..job("incoming/a.csv") };
        let report = run_job(&app(store.clone()), &dry, None).await.expect("a report");

        let estimate = report.estimate.expect("an estimate");
        assert_eq!((estimate.rows, estimate.unique_companies, estimate.rows_without_company_name), (4, 2, 1));
        assert_eq!(estimate.credits_at_most, 2);
        assert_eq!(store.keys(BUCKET), keys_before, "nothing written, not even a lease");
    }

    #[tokio::test]
    async fn a_file_of_an_unsupported_format_gets_a_failed_summary_and_no_retry() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.xlsx", "PK\u{3}\u{4} not a CSV").await;

        let report = run_job(&app(store.clone()), &job("incoming/a.xlsx"), None).await.expect("not an error");

        assert_eq!(report.outcome, Outcome::Failed);
        let summary = store.peek(BUCKET, "enriched/a.xlsx.summary.json").expect("a summary");
        let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
        assert_eq!(summary["status"], "failed");
        assert!(store.keys(BUCKET).iter().all(|k| !k.contains("leases/")), "the lease is released");
    }

    #[tokio::test]
    async fn a_lease_held_for_another_version_is_a_retryable_error_never_a_skip() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.csv", "Company\nContoso\n").await;
        let marker = serde_json::json!({"renewed_at_epoch_seconds": crate::pipeline::journal::now_seconds(),
                                        "etag": "\"another version\""});
        store
            .put_if_absent(BUCKET, "enriched/_state/leases/a.csv.lease", marker.to_string().into_bytes())
            .await
            .unwrap();

        let error = run_job(&app(store.clone()), &job("incoming/a.csv"), None).await.expect_err("busy");

        assert!(matches!(error, JobError::Busy { .. }) && error.is_transient(), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_the_deadline_leaves_unstarted_is_a_retryable_error() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.csv", "Company\nContoso\n").await;
        let past = Instant::now() - std::time::Duration::from_secs(1);

        let error = run_in_time(&app(store.clone()), &job("incoming/a.csv"), Some(past)).await.expect_err("late");

        assert!(matches!(error, JobError::OutOfTime { .. }) && error.is_transient(), "{error}");
        assert_eq!(store.calls(Op::Head), 0, "not started at all");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_out_of_time_is_retried_unless_forced_when_a_retry_would_pay_twice() {
        let store = Arc::new(MemoryStore::new());
        put(&store, "incoming/a.csv", "Company\nContoso\n").await;
        put(&store, "incoming/b.csv", "Company\nFabrikam\n").await;
        let app = app(store.clone());
        let past = Some(Instant::now() - std::time::Duration::from_secs(1));

        let error = crate::refresh::refresh(&app, BUCKET, "incoming/", false, past, None).await.expect_err("retried");
        assert!(matches!(&error, JobError::RefreshIncomplete { keys } if keys.len() == 2) && error.is_transient());

        let reports = crate::refresh::refresh(&app, BUCKET, "incoming/", true, past, None).await.expect("not retried");
        assert!(reports.iter().all(|r| r.outcome == Outcome::Skipped), "{reports:?}");
        assert!(reports.iter().all(|r| r.message.as_deref().is_some_and(|m| m.contains("\"force\": true"))));
        assert_eq!(store.calls(Op::Head), 0, "nothing was started");
    }
}
