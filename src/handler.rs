//! The Lambda handler: event in, one job per object, a JSON response out. The one place where
//! a failed invocation is logged, with its whole cause chain: lambda_runtime returns the error
//! to Lambda without logging it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::delete::{DeleteReport, delete_enrichment};
use crate::error::HandlerError;
use crate::pipeline::{App, Job, JobReport};
use crate::refresh::refresh;
use crate::runner::run_in_time;
use crate::status::{EnrichmentStatus, enrichments};
use crate::trigger::{Invocation, parse_event};
use crate::workflow::assemble::assemble;
use crate::workflow::batch::{BatchAnswer, BatchError, enrich_batch};
use crate::workflow::trust::{check_assemble, check_batch};

/// What an invocation answers, serialised as the Lambda response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// One report per object: events, `enrich`, `refresh` and the workflow's last step.
    Reports {
        results: Vec<JobReport>,
    },
    /// A workflow batch's figures.
    Batch(BatchAnswer),
    Status {
        bucket: String,
        enrichments: Vec<EnrichmentStatus>,
    },
    /// What a delete removed, or would remove.
    Deleted(DeleteReport),
}

/// Answers one invocation. Jobs run one after another (each is internally concurrent). A
/// transient failure returns an error so Lambda retries; jobs finished before it are skipped on
/// the retry, because their summaries are complete for the same ETag.
pub async fn handle(app: &App, event: Value, deadline: Option<Instant>) -> Result<Response, HandlerError> {
    handle_request(app, event, deadline, None).await
}

/// `handle` for the Lambda request `request_id`: Lambda retries an asynchronous invocation
/// under the same id, which is how a retried force knows it was spent.
pub async fn handle_request(
    app: &App,
    event: Value,
    deadline: Option<Instant>,
    request_id: Option<&str>,
) -> Result<Response, HandlerError> {
    let stop_at = deadline.map(|deadline| stop_time(deadline, app.config.deadline_margin));
    let invocation = parse_event(&event).map_err(|e| HandlerError::InvalidEvent(e.to_string()));
    let response = match invocation {
        // Boxed: the whole run nested in the runtime's future overflows rustc's layout query
        // depth, and one allocation per invocation costs nothing.
        Ok(invocation) => Box::pin(answer(app, invocation, stop_at, request_id)).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &response {
        // The message is the whole cause chain, and never quotes customer values or the token.
        tracing::error!(error = %error, retryable = error.is_retryable(), "invocation failed");
    }
    response
}

async fn answer(
    app: &App,
    invocation: Invocation,
    stop_at: Option<Instant>,
    request_id: Option<&str>,
) -> Result<Response, HandlerError> {
    if let Some(why) = foreign_bucket(&app.config, &invocation) {
        return Err(HandlerError::InvalidEvent(why));
    }
    match invocation {
        Invocation::Jobs(jobs) => {
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                let job = Job { request_id: request_id.map(str::to_string), ..job };
                results.push(run_in_time(app, &job, stop_at).await.map_err(HandlerError::job)?);
            }
            Ok(Response::Reports { results })
        }
        Invocation::Refresh { bucket, prefix, force } => {
            let config = &app.config;
            let bucket = bucket.or_else(|| config.source_bucket.clone()).or_else(|| config.output_bucket.clone());
            let Some(bucket) = bucket else {
                return Err(HandlerError::InvalidEvent(
                    "a scheduled refresh needs SOURCE_BUCKET (or OUTPUT_BUCKET) set, or a \"bucket\" in the payload"
                        .into(),
                ));
            };
            let prefix = prefix.unwrap_or_else(|| config.input_prefix.clone());
            // Listing elsewhere would answer with key names that are not the function's to show.
            if !prefix.starts_with(config.input_prefix.as_str()) {
                return Err(HandlerError::InvalidEvent(format!(
                    "a refresh's \"prefix\" must lie under INPUT_PREFIX ({:?}); {prefix:?} does not",
                    config.input_prefix
                )));
            }
            let span = tracing::info_span!("refresh", bucket = %bucket, prefix = %prefix);
            let results = refresh(app, &bucket, &prefix, force, stop_at, request_id)
                .instrument(span)
                .await
                .map_err(HandlerError::job)?;
            Ok(Response::Reports { results })
        }
        Invocation::Batch(batch) => {
            // Without consent the batch refuses on its own, before it reads anything.
            if app.config.data_sharing_consent {
                check_batch(app, &batch.input).await.map_err(HandlerError::job)?;
            }
            let span = tracing::info_span!("batch", companies = batch.items.len());
            match enrich_batch(app, batch, stop_at).instrument(span).await {
                Ok(answer) => Ok(Response::Batch(answer)),
                Err(BatchError::LeadspaceStopped(why)) => Err(HandlerError::LeadspaceStopped(why)),
                Err(BatchError::Job(error)) => Err(HandlerError::job(error)),
            }
        }
        Invocation::Assemble(input) => {
            check_assemble(app, &input).await.map_err(HandlerError::job)?;
            let span = tracing::info_span!("assemble", bucket = %input.bucket, key = %input.key);
            let report = assemble(app, *input).instrument(span).await.map_err(HandlerError::job)?;
            Ok(Response::Reports { results: vec![report] })
        }
        Invocation::Delete { bucket, key, dry_run } => {
            let span = tracing::info_span!("delete", bucket = %bucket, key = %key, dry_run);
            let report =
                delete_enrichment(app, &bucket, &key, dry_run).instrument(span).await.map_err(HandlerError::job)?;
            Ok(Response::Deleted(report))
        }
        Invocation::Status { bucket, key } => {
            let found = enrichments(app, &bucket, key.as_deref()).await.map_err(HandlerError::job)?;
            Ok(Response::Status { bucket, enrichments: found })
        }
    }
}

/// Why the invocation names a bucket that is not the function's, if it does.
fn foreign_bucket(config: &crate::config::Config, invocation: &Invocation) -> Option<String> {
    let buckets: Vec<&str> = match invocation {
        Invocation::Jobs(jobs) => jobs.iter().map(|job| job.bucket.as_str()).collect(),
        Invocation::Refresh { bucket, .. } => bucket.iter().map(String::as_str).collect(),
        Invocation::Status { bucket, .. } | Invocation::Delete { bucket, .. } => vec![bucket.as_str()],
        Invocation::Batch(batch) => vec![batch.input.work_bucket.as_str()],
        Invocation::Assemble(input) => vec![input.bucket.as_str(), input.work_bucket.as_str()],
    };
    buckets.into_iter().find_map(|bucket| config.foreign_bucket(bucket))
}

/// When to stop starting Leadspace work: `margin` before the deadline, but never more than a
/// fifth of the time the invocation has, so a short timeout (a local emulator's, a small
/// function's) still leaves most of it for enriching.
pub fn stop_time(deadline: Instant, margin: Duration) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    deadline - margin.min(remaining / 5)
}

/// Deadlines below this (2001-09-09 in epoch milliseconds) are durations, not instants.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The invocation's deadline from the Lambda context (milliseconds since the epoch). Local
/// runtimes are not all faithful: `cargo lambda watch` sends the timeout itself (600000), which
/// is read as that long from now; a deadline already past at the start is ignored (warned)
/// rather than stopping all work at once.
pub fn deadline_of(context: &lambda_runtime::Context) -> Option<Instant> {
    deadline_from_millis(context.deadline, SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

fn deadline_from_millis(deadline_ms: u64, now_ms: u64) -> Option<Instant> {
    let remaining_ms = match deadline_ms {
        0 => return None,
        relative if relative < EPOCH_MS_FLOOR => relative,
        absolute if absolute > now_ms => absolute - now_ms,
        _ => {
            tracing::warn!(deadline_ms, now_ms, "the runtime's deadline is already past; running without a cut-off");
            return None;
        }
    };
    tracing::debug!(remaining_ms, "invocation deadline");
    Some(Instant::now() + Duration::from_millis(remaining_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_795_888_730_203;

    #[tokio::test(start_paused = true)]
    async fn an_epoch_deadline_is_the_time_left() {
        let deadline = deadline_from_millis(NOW_MS + 30_000, NOW_MS).unwrap();
        assert_eq!(deadline - Instant::now(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_runtime_sending_its_timeout_gets_that_long() {
        let deadline = deadline_from_millis(600_000, NOW_MS).unwrap();
        assert_eq!(deadline - Instant::now(), Duration::from_secs(600));
    }

    #[test]
    fn a_missing_or_past_deadline_sets_no_cut_off() {
        assert_eq!(deadline_from_millis(0, NOW_MS), None);
        assert_eq!(deadline_from_millis(NOW_MS - 1, NOW_MS), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_margin_never_takes_more_than_a_fifth_of_the_time_left() {
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(stop_time(deadline, Duration::from_secs(60)), deadline - Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(900);
        assert_eq!(stop_time(deadline, Duration::from_secs(60)), deadline - Duration::from_secs(60));
    }
}
