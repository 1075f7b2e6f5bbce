//! A refresh (scheduled, or `{"action": "refresh"}`): every object under a prefix goes through
//! the normal job, which skips what is already complete for the object's current ETag, resumes
//! what is partial and redoes what failed. Only changed or unfinished files cost anything. An
//! object that fails does not stop the others; the refresh reports each outcome and, when some
//! failed for a reason that may pass, ends in a retryable error naming them.

use tokio::time::Instant;

use crate::error::JobError;
use crate::pipeline::{App, Job, JobReport, Outcome};
use crate::runner::run_in_time;

const FORCED_NOT_STARTED: &str = "not started before the Lambda deadline; a forced refresh is not retried (it would \
                                  force again what it finished): enrich this object with {\"action\": \"enrich\", \
                                  \"force\": true}, or refresh a narrower prefix";

pub async fn refresh(
    app: &App,
    bucket: &str,
    prefix: &str,
    force: bool,
    stop_at: Option<Instant>,
    request_id: Option<&str>,
) -> Result<Vec<JobReport>, JobError> {
    let objects = app.store.list(bucket, prefix).await?;
    tracing::info!(objects = objects.len(), "refreshing");
    let mut reports = Vec::with_capacity(objects.len());
    let mut retry = Vec::new();
    for object in objects.into_iter().filter(|o| !o.key.ends_with('/')) {
        let job = Job {
            bucket: bucket.to_string(),
            key: object.key,
            force,
            request_id: request_id.map(str::to_string),
            ..Job::default()
        };
        match run_in_time(app, &job, stop_at).await {
            Ok(report) => reports.push(report),
            // A retry of a forced refresh would force again what this one finished, paying for
            // it twice: what it could not start is said, not retried.
            Err(JobError::OutOfTime { .. }) if force => reports.push(JobReport::not_started(&job, FORCED_NOT_STARTED)),
            // One object never blocks the others: each is reported, and the refresh goes on.
            Err(error) => {
                if !matches!(error, JobError::OutOfTime { .. }) {
                    tracing::error!(error = %crate::error::error_chain(&error), transient = error.is_transient(), "an object of the refresh failed");
                }
                if error.is_transient() {
                    retry.push(job.key.clone());
                }
                reports.push(JobReport::could_not_run(&job, &error));
            }
        }
    }
    let enriched = reports.iter().filter(|r| r.outcome == Outcome::Enriched).count();
    tracing::info!(objects = reports.len(), enriched, failed = retry.len(), "refresh finished");
    if !retry.is_empty() {
        // After every other object is done: Lambda's retry (and the refresh's next run) skips
        // what is complete and tries these again.
        return Err(JobError::RefreshIncomplete { keys: retry });
    }
    Ok(reports)
}
