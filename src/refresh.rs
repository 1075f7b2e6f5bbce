//! A refresh (scheduled, or `{"action": "refresh"}`): every object under a prefix goes through
//! the normal job, which skips what is already complete for the object's current ETag, resumes
//! what is partial and redoes what failed. Only changed or unfinished files cost anything.

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::JobError;
use crate::pipeline::{App, Job, JobReport, Outcome, run_job};

pub async fn refresh(
    app: &App,
    bucket: &str,
    prefix: &str,
    force: bool,
    stop_at: Option<Instant>,
) -> Result<Vec<JobReport>, JobError> {
    let objects = app.store.list(bucket, prefix).await?;
    tracing::info!(objects = objects.len(), "refreshing");
    let mut reports = Vec::with_capacity(objects.len());
    for object in objects.into_iter().filter(|o| !o.key.ends_with('/')) {
        let job = Job { bucket: bucket.to_string(), key: object.key, force, ..Job::default() };
        if stop_at.is_some_and(|stop| Instant::now() >= stop) {
            reports.push(JobReport::not_started(
                &job,
                "not started before the Lambda deadline; the next refresh picks it up",
            ));
            continue;
        }
        let span = tracing::info_span!("job", bucket = %job.bucket, key = %job.key);
        reports.push(run_job(app, &job, stop_at).instrument(span).await?);
    }
    let enriched = reports.iter().filter(|r| r.outcome == Outcome::Enriched).count();
    tracing::info!(objects = reports.len(), enriched, "refresh finished");
    Ok(reports)
}
