//! The Lambda handler: event in, one job per object, a JSON report out.

use serde_json::{Value, json};
use tracing::Instrument;

use crate::error::HandlerError;
use crate::pipeline::{App, run_job};
use crate::trigger::jobs_from_event;

/// Runs every job the event asks for, one after another (each is internally concurrent).
/// A transient failure returns an error so Lambda retries; jobs finished before it are
/// skipped on the retry, because their summaries are complete for the same ETag.
pub async fn handle(app: &App, event: Value) -> Result<Value, HandlerError> {
    let jobs = jobs_from_event(&event).map_err(|e| HandlerError::InvalidEvent(e.to_string()))?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let span = tracing::info_span!("job", bucket = %job.bucket, key = %job.key);
        let report = run_job(app, job).instrument(span).await.map_err(|error| {
            let error = HandlerError::job(error);
            tracing::error!(bucket = %job.bucket, key = %job.key, error = %error, "job failed; Lambda may retry");
            error
        })?;
        results.push(report);
    }
    Ok(json!({ "results": results }))
}
