//! The Leadspace enrichment API: serde model, HTTP client (retries, pacing, polling), and the
//! `Enricher` trait the pipeline depends on.

pub mod client;
pub mod model;
pub mod pacer;
pub mod poll_timing;
pub mod retry;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

pub use client::LeadspaceClient;
use model::{EnrichRequest, EnrichmentResult};

use crate::secrets::SecretError;

/// How companies are sent (LEADSPACE_MODE): one request each, bulk jobs, or bulk once there are
/// more than a handful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Bulk,
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum LeadspaceError {
    #[error("Leadspace rejected the input as invalid (400): {reason}")]
    Rejected { reason: String },
    #[error(
        "Leadspace reports insufficient credits or an invalid program id (427); enrichment stopped so no more credits are spent"
    )]
    CreditsExhausted,
    #[error(
        "Leadspace rejected the token (401), also after re-reading the secret; store a valid token in the secret named by LEADSPACE_SECRET_ID"
    )]
    TokenRejected,
    #[error("Leadspace still failed after {attempts} attempts ({last})")]
    RetriesExhausted { attempts: u32, last: String },
    #[error("Leadspace answered HTTP {status} to {endpoint}, which means this client sent something wrong")]
    Unexpected { status: u16, endpoint: &'static str },
    #[error(
        "Leadspace answered HTTP {status} to {endpoint}, a redirect to {location}; redirects are not followed, since \
         they would send the mapped fields elsewhere: check LEADSPACE_BASE_URL"
    )]
    Redirected { status: u16, endpoint: &'static str, location: String },
    #[error("the bulk job's results did not arrive within {seconds} s")]
    PollTimedOut { seconds: u64 },
    #[error("Leadspace no longer knows the bulk job (404 while polling)")]
    BulkNotFound,
    #[error("Leadspace's answer could not be read: {0}")]
    Decode(String),
    #[error(
        "Leadspace pointed the results of a bulk job at {origin}, which is not LEADSPACE_BASE_URL's origin; the token is sent nowhere else, so the job was given up"
    )]
    ForeignResultUrl { origin: String },
    #[error(
        "the answer journal could not be written; enrichment stopped so that no answer is bought without being kept"
    )]
    JournalUnavailable(#[source] crate::storage::StorageError),
    #[error("the run stopped before the Lambda deadline, leaving time to write what is done")]
    DeadlineReached,
    #[error(
        "the run lost its lease on the object to another invocation, which enriches it now; this run stopped buying"
    )]
    LeaseLost,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl LeadspaceError {
    /// Errors after which no further request may be sent in this run.
    pub fn stops_the_run(&self) -> bool {
        matches!(
            self,
            LeadspaceError::CreditsExhausted
                | LeadspaceError::TokenRejected
                | LeadspaceError::DeadlineReached
                | LeadspaceError::LeaseLost
                | LeadspaceError::JournalUnavailable(_)
                | LeadspaceError::Secret(_)
        )
    }

    /// Failures that say Leadspace (or the way to it) is down, rather than anything about
    /// the records: worth Lambda's retry when nothing at all got through.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            LeadspaceError::RetriesExhausted { .. }
                | LeadspaceError::PollTimedOut { .. }
                | LeadspaceError::BulkNotFound
        )
    }
}

/// Leadspace traffic of one run, reported in its summary.
#[derive(Debug, Default)]
pub struct CallStats {
    pub requests: AtomicU64,
    pub records_sent: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    /// Records sent again because Leadspace lost, never finished or no longer keeps a bulk
    /// they were in: Leadspace may have billed them the first time.
    pub resubmitted: AtomicU64,
    /// Retries of a submission that may already have reached Leadspace (a timeout or a
    /// connection cut after the request left): the one way a company can be billed twice.
    pub ambiguous_retries: AtomicU64,
}

impl CallStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One run's view of Leadspace: its traffic counters, and the moment after which no request,
/// retry or poll may start (the Lambda deadline less the time needed to write the output).
#[derive(Debug, Default)]
pub struct CallContext {
    /// Shared: a run's progress reads the requests as they are made.
    pub stats: std::sync::Arc<CallStats>,
    pub stop_at: Option<tokio::time::Instant>,
    /// Set when the run lost its lease on the object: no further purchase is made.
    pub lease_lost: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl CallContext {
    /// Why no request that takes `wait` may start now, if none may: the lease is lost (checked
    /// only for `purchase`s; a poll of what is bought is still collected) or the stop time is near.
    pub fn check(&self, wait: std::time::Duration, purchase: bool) -> Result<(), LeadspaceError> {
        if purchase && self.lease_lost.as_ref().is_some_and(|lost| lost.load(Ordering::SeqCst)) {
            return Err(LeadspaceError::LeaseLost);
        }
        if self.would_overrun(wait) {
            return Err(LeadspaceError::DeadlineReached);
        }
        Ok(())
    }

    /// Whether something taking `wait` from now would end past the stop time.
    pub fn would_overrun(&self, wait: std::time::Duration) -> bool {
        self.stop_at.is_some_and(|stop| tokio::time::Instant::now() + wait >= stop)
    }
}

/// A finished bulk's results. While they are held, they keep one of the client's places for
/// results in memory (`RESULTS_IN_MEMORY`): the caller drops them once they are written down,
/// and only then may another bulk's results be read.
#[derive(Debug)]
pub struct BulkResults {
    pub records: Vec<EnrichmentResult>,
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl BulkResults {
    pub fn new(records: Vec<EnrichmentResult>) -> Self {
        BulkResults { records, _place: None }
    }

    pub fn holding(records: Vec<EnrichmentResult>, place: tokio::sync::OwnedSemaphorePermit) -> Self {
        BulkResults { records, _place: Some(place) }
    }
}

/// Leadspace as the pipeline sees it. A bulk is two steps so that the caller can write the bulk
/// down between them: Leadspace bills the records at submission, and a bulk id that is not
/// kept is a bulk bought twice.
#[async_trait]
pub trait Enricher: Send + Sync {
    /// One company through the synchronous API.
    async fn single(&self, record: &EnrichRequest, call: &CallContext) -> Result<EnrichmentResult, LeadspaceError>;
    /// Submits up to 500 companies to the bulk API; returns the job's path to poll.
    async fn submit_bulk(&self, records: &[EnrichRequest], call: &CallContext) -> Result<String, LeadspaceError>;
    /// Polls a submitted bulk until its results are ready and returns them, in whatever order
    /// Leadspace gives them: `BulkNotFound` when Leadspace no longer knows the job,
    /// `PollTimedOut` when it is still processing after the poll timeout.
    async fn collect_bulk(&self, bulk: &str, call: &CallContext) -> Result<BulkResults, LeadspaceError>;
    /// Gets ready to be called (reads the token) while the run does something else; a failure
    /// here is met again, and reported, by the first call.
    async fn prepare(&self) {}
}
