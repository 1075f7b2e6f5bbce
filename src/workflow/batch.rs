//! Step 2, one batch of the Distributed Map: its companies' answers (what an earlier attempt of
//! the batch bought, the cache, then Leadspace, paced at the batch's share of LEADSPACE_TPS),
//! each bulk journalled in the batch's own folder as it is bought, and its figures.

use serde::Serialize;

use super::input::{BatchEvent, PartStats, write_stats};
use crate::company::CompanyTable;
use crate::error::{Ended, JobError, judge_stop};
use crate::leadspace::{CallContext, LeadspaceError};
use crate::pipeline::App;
use crate::pipeline::answers::book::AnswerBook;
use crate::pipeline::answers::journal::{Journal, is_final};
use crate::pipeline::answers::{Answers, answer_companies};
use crate::pipeline::summary::LeadspaceCounts;

/// What a batch answers the Map (the state machine reads nothing of it; it shows in the console).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchAnswer {
    pub companies: usize,
    pub records_sent: u64,
    pub requests: u64,
}

/// Why a batch ends in an error: Step Functions retries the transient ones (the template's
/// Retry on `Retryable.TransientFailure`) and stops the Map on the others.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Credits ran out or the token was refused: every other batch would meet the same.
    #[error("{0}")]
    LeadspaceStopped(String),
    #[error(transparent)]
    Job(#[from] JobError),
}

/// One batch of the Map: its companies' answers (what an earlier attempt of the batch bought,
/// the cache, then Leadspace), each bulk journalled as it is bought, and its figures.
pub async fn enrich_batch(
    app: &App,
    batch: BatchEvent,
    stop_at: Option<tokio::time::Instant>,
) -> Result<BatchAnswer, BatchError> {
    if !app.config.data_sharing_consent {
        // Consent withdrawn by a deploy while an execution runs stops it here.
        return Err(BatchError::LeadspaceStopped(
            "DATA_SHARING_CONSENT is not set to true: no customer data was sent to Leadspace".into(),
        ));
    }
    let Some(first) = batch.items.first().map(|c| c.company) else {
        return Ok(BatchAnswer::default());
    };
    let store = app.store.as_ref();
    let input = &batch.input;
    let stats_key = format!("{}{first:010}.json", input.answers_prefix);
    let journal = Journal::new(app.store.clone(), &input.work_bucket, &input.journal_prefix, &input.run)
        .part(&format!("b{first:010}"));
    let mut companies = CompanyTable::default();
    for item in batch.items {
        companies.intern(&item.query());
    }
    // A retried batch (the Map's Retry, Lambda's) collects what its earlier attempt bought.
    let earlier_stats = match store.get_small(&input.work_bucket, &stats_key).await.map_err(JobError::from)? {
        Some(body) => serde_json::from_slice::<PartStats>(&body).unwrap_or_default(),
        None => PartStats::default(),
    };
    let mut book = AnswerBook::new(companies.len());
    let pending = journal.recall(&companies, &mut book).await.map_err(JobError::from)?;
    let earlier = book.known();

    // A batch holds no lease: the execution that started it owns the file version.
    let call = CallContext { stats: std::sync::Arc::default(), stop_at, lease_lost: None };
    let Answers { answers, stopped_by, leadspace_down, cache, .. } =
        answer_companies(app, app.batch_enricher.as_ref(), &journal, &companies, book, pending, &call).await;

    let mut leadspace = LeadspaceCounts::from(call.stats.as_ref());
    leadspace.add(&earlier_stats.leadspace);
    let cache = match (cache, earlier_stats.cache) {
        (Some(mut now), Some(before)) => {
            now.add(&before);
            Some(now)
        }
        (now, before) => now.or(before),
    };
    let stopped = match &stopped_by {
        Some(LeadspaceError::DeadlineReached) | None => None,
        Some(stop) => Some(crate::chain::error_chain(stop)),
    };
    let answered = answers.iter().filter(|a| is_final(a.status)).count() as u64;
    let stats = PartStats { leadspace, cache, stopped, answered };
    write_stats(store, &input.work_bucket, &stats_key, &stats).await?;
    tracing::info!(companies = answers.len(), earlier, requests = stats.leadspace.requests, "batch answered");

    match judge_stop(stopped_by) {
        Ended::Retry(error) => Err(error.into()),
        Ended::Done(Some(stop)) if !matches!(stop, LeadspaceError::DeadlineReached) => {
            Err(BatchError::LeadspaceStopped(stop.to_string()))
        }
        _ if leadspace_down => Err(JobError::LeadspaceUnavailable("every request of this batch failed".into()).into()),
        _ => Ok(BatchAnswer {
            companies: answers.len(),
            records_sent: stats.leadspace.records_sent,
            requests: stats.leadspace.requests,
        }),
    }
}
