//! HTTP client for Leadspace. Every request passes the shared rate limiter, carries a timeout,
//! and goes through the one retry loop in `send`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::model::{BulkAccepted, BulkRequest, EnrichRequest, EnrichmentResult, read_bulk_results, read_single_result};
use super::pacer::Pacer;
use super::poll_timing::PollTiming;
use super::retry::RetryPolicy;
use super::{BulkResults, CallContext, CallStats, Enricher, LeadspaceError};
use crate::secrets::TokenSource;

/// Bulks whose results may be in memory at once, from the poll that reads them until the
/// caller has written them down. Each is about 0.75 MB for 500 records (the body and what is
/// read from it); without a bound, every bulk in flight (up to 100) could be read at once.
/// Sixteen bulks with half a second each from poll to journal still take 32 bulks a second,
/// more than a 60 TPS contract's 30.
pub const RESULTS_IN_MEMORY: usize = 16;

const SINGLE_PATH: &str = "/enrichment/enrich/single";
const BULK_PATH: &str = "/enrichment/enrich/bulk";

pub struct LeadspaceClient {
    http: reqwest::Client,
    base_url: String,
    tokens: Arc<dyn TokenSource>,
    pacer: Pacer,
    /// Whether polls take a place in the pace (LEADSPACE_COUNT_POLLS).
    count_polls: bool,
    policy: RetryPolicy,
    poll_timing: PollTiming,
    results_in_memory: Arc<tokio::sync::Semaphore>,
}

/// What `send` hands back: statuses the caller interprets itself (2xx, and 404 for polls).
struct Reply {
    status: StatusCode,
    body: bytes::Bytes,
    /// When the request that got this answer left, after pacing.
    sent_at: Instant,
}

/// A URL as far as its path: a query may carry what is not ours to log.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

impl LeadspaceClient {
    pub fn new(
        base_url: &str,
        tokens: Arc<dyn TokenSource>,
        tps: u32,
        count_polls: bool,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("leadspace-enrich/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the mapped customer fields (307, 308) to wherever it names.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let pacer = Pacer::new(tps);
        let poll_timing = PollTiming::new(policy.poll_first_delay, policy.poll_max_delay);
        Ok(LeadspaceClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            tokens,
            pacer,
            count_polls,
            policy,
            poll_timing,
            results_in_memory: Arc::new(tokio::sync::Semaphore::new(RESULTS_IN_MEMORY)),
        })
    }

    /// Sends one logical request, retrying what is worth retrying. `build` is called once per
    /// attempt with the current token.
    async fn send(
        &self,
        endpoint: &'static str,
        call: &CallContext,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<Reply, LeadspaceError> {
        let started = Instant::now();
        let mut token_refreshed = false;
        let mut attempt = 0u32;
        let mut paced = Duration::ZERO;
        let stats = &call.stats;
        // Submissions are billed; a retry after a request may have got through is counted.
        let billed = endpoint != "poll";
        let paced_endpoint = billed || self.count_polls;
        loop {
            attempt += 1;
            call.check(Duration::ZERO, billed)?;
            let queued = Instant::now();
            // Polls skip the pace only where the contract does not count them.
            let slot = if paced_endpoint { Some(self.pacer.until_ready().await) } else { None };
            // Waiting for our own pacer is not Leadspace failing: it does not use up the budget.
            paced += queued.elapsed();
            // The pacer may have held us long after the check above.
            call.check(Duration::ZERO, billed)?;
            let token = self.tokens.token().await?;
            CallStats::add(&stats.requests, 1);
            let sent_at = Instant::now();
            let outcome = build(&self.http, token.expose_secret()).send().await;
            let mut maybe_processed = false;
            let failure = match outcome {
                Ok(response) => {
                    let status = response.status();
                    match status.as_u16() {
                        200..=299 | 404 => match response.bytes().await {
                            Ok(body) => {
                                if let Some(slot) = &slot {
                                    self.pacer.answered(slot);
                                }
                                return Ok(Reply { status, body, sent_at });
                            }
                            Err(e) => {
                                // Leadspace answered: the request was processed.
                                maybe_processed = true;
                                describe(&e)
                            }
                        },
                        401 if !token_refreshed => {
                            // Rotated tokens are the usual cause after months of service.
                            tracing::warn!(endpoint, "Leadspace rejected the token; re-reading the secret once");
                            self.tokens.refresh().await?;
                            token_refreshed = true;
                            CallStats::add(&stats.retries, 1);
                            continue;
                        }
                        401 => return Err(LeadspaceError::TokenRejected),
                        427 => return Err(LeadspaceError::CreditsExhausted),
                        400 => {
                            let body = response.bytes().await.unwrap_or_default();
                            return Err(LeadspaceError::Rejected { reason: rejection_reason(&body) });
                        }
                        429 => {
                            CallStats::add(&stats.throttled, 1);
                            match &slot {
                                Some(slot) => self.pacer.throttled(slot),
                                None => tracing::warn!(
                                    "Leadspace throttled a poll: the contract seems to count polls; \
                                     set LEADSPACE_COUNT_POLLS=true"
                                ),
                            }
                            "429 rate limit exceeded".to_string()
                        }
                        500..=599 => format!("HTTP {}", status.as_u16()),
                        300..=399 => {
                            let location = response.headers().get(reqwest::header::LOCATION);
                            let location = location.and_then(|l| l.to_str().ok()).map(without_query);
                            return Err(LeadspaceError::Redirected {
                                status: status.as_u16(),
                                endpoint,
                                location: location.unwrap_or_else(|| "nowhere (no Location header)".into()),
                            });
                        }
                        other => return Err(LeadspaceError::Unexpected { status: other, endpoint }),
                    }
                }
                Err(e) => {
                    // A connection that was never made carried nothing; any other failure may
                    // have come after Leadspace received the request.
                    maybe_processed = !e.is_connect();
                    describe(&e)
                }
            };
            let delay = self.policy.backoff(attempt);
            if attempt >= self.policy.max_attempts
                || started.elapsed().saturating_sub(paced) + delay > self.policy.budget
            {
                return Err(LeadspaceError::RetriesExhausted { attempts: attempt, last: failure });
            }
            if call.would_overrun(delay) {
                return Err(LeadspaceError::DeadlineReached);
            }
            tracing::debug!(endpoint, attempt, delay_ms = delay.as_millis() as u64, failure = %failure, "retrying Leadspace request");
            CallStats::add(&stats.retries, 1);
            if billed && maybe_processed {
                tracing::warn!(endpoint, "retrying a request that may have reached Leadspace; it may be billed twice");
                CallStats::add(&stats.ambiguous_retries, 1);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Where `path` (a path, or a URL Leadspace handed back) points. The token goes with the
    /// request, so a URL on another origin than LEADSPACE_BASE_URL's is refused.
    fn url(&self, path: &str) -> Result<String, LeadspaceError> {
        if !(path.starts_with("http://") || path.starts_with("https://")) {
            return Ok(format!("{}/{}", self.base_url, path.trim_start_matches('/')));
        }
        let origin = origin_of(path);
        if origin.eq_ignore_ascii_case(origin_of(&self.base_url)) {
            Ok(path.to_string())
        } else {
            Err(LeadspaceError::ForeignResultUrl { origin: origin.to_string() })
        }
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// A transport failure in words, without the URL's query or anything from the request body.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "request timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        "connection failed while reading the answer".into()
    }
}

/// Leadspace's 400 body is `{error, tracking_id, request_timestamp, details}`. Only `error` and
/// the tracking id are kept: `details` may quote the customer's input back.
fn rejection_reason(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = json.get("error").and_then(|e| e.as_str()).unwrap_or("bad or insufficient input");
    let error: String = error.chars().take(200).collect();
    match json.get("tracking_id").and_then(|t| t.as_str()) {
        Some(id) => format!("{error} (tracking id {id})"),
        None => error,
    }
}

fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, LeadspaceError> {
    decoded(serde_json::from_slice(body), what)
}

/// A decoding result, its error named after what was read.
fn decoded<T>(result: Result<T, serde_json::Error>, what: &str) -> Result<T, LeadspaceError> {
    result.map_err(|e| LeadspaceError::Decode(format!("{what}: {e}")))
}

impl LeadspaceClient {
    /// Submits a bulk and returns the path to poll.
    async fn submit(&self, records: &[EnrichRequest], call: &CallContext) -> Result<String, LeadspaceError> {
        let url = self.url(BULK_PATH)?;
        let external_bulk_id = format!("bulk-{:016x}", rand::random::<u64>());
        let body = BulkRequest { data: records, external_bulk_id: &external_bulk_id };
        CallStats::add(&call.stats.records_sent, records.len() as u64);
        let answer = self.send("bulk", call, |http, token| http.post(&url).bearer_auth(token).json(&body)).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(LeadspaceError::Unexpected { status: 404, endpoint: "bulk" });
        }
        Ok(decode::<BulkAccepted>(&answer.body, "bulk submission answer")?.id)
    }

    /// Polls a bulk until its results are ready (200), it is lost (404) or the poll timeout,
    /// at the times `PollTiming` has learned.
    async fn poll(&self, id: &str, call: &CallContext) -> Result<BulkResults, LeadspaceError> {
        let poll_url = self.url(id)?;
        let started = Instant::now();
        let probing = self.poll_timing.start();
        let mut last = Duration::ZERO;
        for polls in 0.. {
            // Other bulks may move the plan while this one waits: it is read again after each wait.
            loop {
                let at = self.poll_timing.next_poll(polls, last, probing);
                let Some(wait) = at.checked_sub(started.elapsed()).filter(|wait| !wait.is_zero()) else {
                    break;
                };
                if call.would_overrun(wait) {
                    return Err(LeadspaceError::DeadlineReached);
                }
                tokio::time::sleep(wait).await;
            }
            // A poll may bring the results: it waits for a place for them first.
            let place = self
                .results_in_memory
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| LeadspaceError::Decode("the client's places for bulk results were closed".into()))?;
            let answer = self.send("poll", call, |http, token| http.get(&poll_url).bearer_auth(token)).await?;
            let sent = answer.sent_at.saturating_duration_since(started);
            match answer.status {
                StatusCode::OK => {
                    self.poll_timing.ready(sent);
                    // Record by record: only a body that is no list of results fails the bulk.
                    let records = decoded(read_bulk_results(&answer.body), "bulk results")?;
                    return Ok(BulkResults::holding(records, place));
                }
                StatusCode::NOT_FOUND => return Err(LeadspaceError::BulkNotFound),
                _ if started.elapsed() >= self.policy.poll_timeout => break,
                _ => {
                    // 204: still processing
                    self.poll_timing.processing(sent);
                    last = sent;
                }
            }
        }
        Err(LeadspaceError::PollTimedOut { seconds: self.policy.poll_timeout.as_secs() })
    }
}

#[async_trait]
impl Enricher for LeadspaceClient {
    async fn prepare(&self) {
        // The token is cached once read; the first request reports a secret it cannot read.
        let _ = self.tokens.token().await;
    }

    async fn single(&self, record: &EnrichRequest, call: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
        let url = self.url(SINGLE_PATH)?;
        CallStats::add(&call.stats.records_sent, 1);
        let answer = self.send("single", call, |http, token| http.post(&url).bearer_auth(token).json(record)).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(LeadspaceError::Unexpected { status: 404, endpoint: "single" });
        }
        let mut result = decoded(read_single_result(&answer.body), "single enrichment result")?;
        // The answer to a synchronous call is this record's, whether or not it echoes the id
        // (an error envelope may not).
        result.external_id.get_or_insert_with(|| record.external_id.as_str().into());
        Ok(result)
    }

    async fn submit_bulk(&self, records: &[EnrichRequest], call: &CallContext) -> Result<String, LeadspaceError> {
        self.submit(records, call).await
    }

    async fn collect_bulk(&self, bulk: &str, call: &CallContext) -> Result<BulkResults, LeadspaceError> {
        self.poll(bulk, call).await
    }
}
