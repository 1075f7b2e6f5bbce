//! The Leadspace enrichment API: serde model, HTTP client (retries, pacing, polling), and the
//! `Enricher` trait the pipeline depends on.

pub mod client;
pub mod model;
pub mod pacer;
pub mod retry;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

pub use client::LeadspaceClient;
use model::{EnrichRequest, EnrichmentResult};

use crate::secrets::SecretError;

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
    #[error("the bulk job's results did not arrive within {seconds} s")]
    PollTimedOut { seconds: u64 },
    #[error("Leadspace no longer knows the bulk job (404 while polling)")]
    BulkNotFound,
    #[error("Leadspace's answer could not be read: {0}")]
    Decode(String),
    #[error("the run stopped before the Lambda deadline, leaving time to write what is done")]
    DeadlineReached,
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
    pub stats: CallStats,
    pub stop_at: Option<tokio::time::Instant>,
}

impl CallContext {
    /// Whether something taking `wait` from now would end past the stop time.
    pub fn would_overrun(&self, wait: std::time::Duration) -> bool {
        self.stop_at.is_some_and(|stop| tokio::time::Instant::now() + wait >= stop)
    }
}

#[async_trait]
pub trait Enricher: Send + Sync {
    /// One company through the synchronous API.
    async fn single(&self, record: &EnrichRequest, call: &CallContext) -> Result<EnrichmentResult, LeadspaceError>;
    /// Up to 500 companies through the bulk API: submit, poll until done, return the results
    /// (in whatever order Leadspace gives them). A bulk whose results never come (404, or
    /// still processing past the poll timeout) is submitted once more before giving up.
    async fn bulk(
        &self,
        records: &[EnrichRequest],
        call: &CallContext,
    ) -> Result<Vec<EnrichmentResult>, LeadspaceError>;
}
