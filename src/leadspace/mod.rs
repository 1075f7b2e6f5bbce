//! The Leadspace enrichment API: serde model, HTTP client (retries, pacing, polling), and the
//! `Enricher` trait the pipeline depends on.

pub mod client;
pub mod model;
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
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl LeadspaceError {
    /// Errors after which no further request may be sent in this run.
    pub fn stops_the_run(&self) -> bool {
        matches!(self, LeadspaceError::CreditsExhausted | LeadspaceError::TokenRejected | LeadspaceError::Secret(_))
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

#[async_trait]
pub trait Enricher: Send + Sync {
    /// One company through the synchronous API.
    async fn single(&self, record: &EnrichRequest, stats: &CallStats) -> Result<EnrichmentResult, LeadspaceError>;
    /// Up to 500 companies through the bulk API: submit, poll until done, return the results
    /// (in whatever order Leadspace gives them).
    async fn bulk(&self, records: &[EnrichRequest], stats: &CallStats)
    -> Result<Vec<EnrichmentResult>, LeadspaceError>;
}
