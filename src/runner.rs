//! One job as an invocation asks for it: the deadline, the job's span, and the large-file
//! workflow when there is one. The run itself is `pipeline::flow`'s.

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::JobError;
use crate::pipeline::flow::{LargeFiles, Source, run_file};
use crate::pipeline::{App, Job, JobReport};
use crate::workflow::Workflow;

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
/// margin for writing); `None` runs to completion. A large file goes to the workflow, when
/// STATE_MACHINE_ARN is set.
pub async fn run_job(app: &App, job: &Job, stop_at: Option<Instant>) -> Result<JobReport, JobError> {
    let large = app.step_functions.as_ref().map(|step_functions| Workflow { config: &app.config, step_functions });
    let large = large.as_ref().map(|workflow| workflow as &dyn LargeFiles);
    run_file(app, job, Source::Buy { stop_at, large }).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::config::Config;
    use crate::error::JobError;
    use crate::leadspace::CallContext;
    use crate::leadspace::model::{EnrichRequest, EnrichmentResult};
    use crate::leadspace::{BulkResults, Enricher, LeadspaceError};
    use crate::pipeline::Outcome;
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
        let marker = serde_json::json!({"renewed_at_epoch_seconds": crate::pipeline::answers::journal::now_seconds(),
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
