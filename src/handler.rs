//! The Lambda handler: event in, one job per object, a JSON report out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::HandlerError;
use crate::pipeline::{App, run_job};
use crate::trigger::jobs_from_event;

/// Runs every job the event asks for, one after another (each is internally concurrent).
/// A transient failure returns an error so Lambda retries; jobs finished before it are
/// skipped on the retry, because their summaries are complete for the same ETag.
pub async fn handle(app: &App, event: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
    let stop_at = deadline.map(|deadline| stop_time(deadline, app.config.deadline_margin));
    let jobs = jobs_from_event(&event).map_err(|e| HandlerError::InvalidEvent(e.to_string()))?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let span = tracing::info_span!("job", bucket = %job.bucket, key = %job.key);
        let report = run_job(app, job, stop_at).instrument(span).await.map_err(|error| {
            let error = HandlerError::job(error);
            tracing::error!(bucket = %job.bucket, key = %job.key, error = %error, "job failed; Lambda may retry");
            error
        })?;
        results.push(report);
    }
    Ok(json!({ "results": results }))
}

/// When to stop starting Leadspace work: `margin` before the deadline, but never more than a
/// fifth of the time the invocation has, so a short timeout (a local emulator's, a small
/// function's) still leaves most of it for enriching.
pub fn stop_time(deadline: Instant, margin: Duration) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    deadline - margin.min(remaining / 5)
}

/// The invocation's deadline from the Lambda context (milliseconds since the epoch).
pub fn deadline_of(context: &lambda_runtime::Context) -> Option<Instant> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    (context.deadline > 0).then(|| Instant::now() + Duration::from_millis(context.deadline.saturating_sub(now_ms)))
}
