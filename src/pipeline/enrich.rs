//! Sends a file's unique companies to Leadspace in bounded batches and turns each answer into
//! an `Enrichment`. At most `max_in_flight` requests or bulk jobs are outstanding; an error
//! that stops the run (credits, token) stops new submissions at once, and everything not yet
//! answered stays `not_attempted`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tracing::Instrument;

use super::companies::Companies;
use crate::config::Mode;
use crate::enrichment::{Enrichment, RowStatus};
use crate::leadspace::model::{EnrichRequest, EnrichmentResult, RECORD_INTERNAL_ERROR, RECORD_INVALID_INPUT};
use crate::leadspace::{CallContext, CallStats, Enricher, LeadspaceError};

/// `auto` uses the single API up to this many companies: a bulk's polling round trip costs
/// more time than a handful of paced single calls, and no more credits either way.
pub const AUTO_SINGLE_MAX_COMPANIES: usize = 20;

#[derive(Debug, Clone, Copy)]
pub struct EnrichPlan {
    pub mode: Mode,
    pub batch_size: usize,
    pub max_in_flight: usize,
}

impl EnrichPlan {
    fn uses_bulk(&self, companies: usize) -> bool {
        match self.mode {
            Mode::Single => false,
            Mode::Bulk => true,
            Mode::Auto => companies > AUTO_SINGLE_MAX_COMPANIES,
        }
    }
}

pub struct EnrichOutcome {
    /// One per company, in company order, not yet judged against MIN_CONFIDENCE (see
    /// `Enrichment::judged`).
    pub answers: Vec<Enrichment>,
    /// Why the run stopped early, if it did.
    pub stopped_by: Option<LeadspaceError>,
    /// Batches Leadspace answered, and batches lost to an outage (retries exhausted, bulks
    /// that never finished): all lost and none answered means Leadspace is down.
    pub answered_batches: usize,
    pub outage_batches: usize,
}

impl EnrichOutcome {
    pub fn leadspace_down(&self) -> bool {
        self.answered_batches == 0 && self.outage_batches > 0
    }
}

/// Rounds of resubmission for records a finished bulk reported as internal errors (1100).
const RECORD_RETRY_ROUNDS: u32 = 3;

fn external_id(company: usize) -> String {
    format!("c{company}")
}

fn company_of(external_id: Option<&str>) -> Option<usize> {
    external_id?.strip_prefix('c')?.parse().ok()
}

/// Enriches `companies[i]` for every `i` in `wanted` (all companies when `None`); the others
/// keep `not_attempted` in the returned answers, for the caller to fill from elsewhere.
pub async fn enrich_companies(
    enricher: &dyn Enricher,
    companies: &(impl Companies + ?Sized),
    wanted: Option<Vec<usize>>,
    plan: EnrichPlan,
    call: &CallContext,
) -> EnrichOutcome {
    let not_attempted = Enrichment::without_attributes(RowStatus::NotAttempted, None);
    let mut outcome = EnrichOutcome {
        answers: vec![not_attempted; companies.count()],
        stopped_by: None,
        answered_batches: 0,
        outage_batches: 0,
    };
    let mut pending = wanted.unwrap_or_else(|| (0..companies.count()).collect());
    let bulk = plan.uses_bulk(pending.len());
    for round in 0..RECORD_RETRY_ROUNDS {
        if round > 0 {
            CallStats::add(&call.stats.retries, pending.len() as u64);
            tracing::info!(records = pending.len(), round, "resubmitting records Leadspace failed internally (1100)");
        }
        let retry = enrich_round(enricher, companies, &pending, bulk, plan, call, &mut outcome).await;
        if retry.is_empty() || outcome.stopped_by.is_some() {
            break;
        }
        pending = retry;
    }
    outcome
}

/// One pass over `pending`; returns the companies worth resubmitting (record-level 1100).
async fn enrich_round(
    enricher: &dyn Enricher,
    companies: &(impl Companies + ?Sized),
    pending: &[usize],
    bulk: bool,
    plan: EnrichPlan,
    call: &CallContext,
    outcome: &mut EnrichOutcome,
) -> Vec<usize> {
    let batch_size = if bulk { plan.batch_size.max(1) } else { 1 };
    let stopped = AtomicBool::new(false);
    let stop_reason: Mutex<Option<LeadspaceError>> = Mutex::new(None);
    let stop = |error: LeadspaceError| {
        stopped.store(true, Ordering::SeqCst);
        stop_reason.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
    };

    let mut results = futures::stream::iter(pending.chunks(batch_size))
        .map(|batch| {
            let (stopped, stop) = (&stopped, &stop);
            async move {
                if stopped.load(Ordering::SeqCst) {
                    return (batch, None);
                }
                if call.would_overrun(Duration::ZERO) {
                    stop(LeadspaceError::DeadlineReached);
                    return (batch, None);
                }
                let requests: Vec<EnrichRequest> =
                    batch.iter().map(|&i| companies.request(i, external_id(i))).collect();
                let span = tracing::debug_span!("batch", first = batch[0], records = requests.len());
                let result = async {
                    if bulk {
                        enricher.bulk(&requests, call).await
                    } else {
                        enricher.single(&requests[0], call).await.map(|r| vec![r])
                    }
                }
                .instrument(span)
                .await;
                match result {
                    Err(error) if error.stops_the_run() => {
                        stop(error);
                        (batch, None)
                    }
                    other => (batch, Some(other)),
                }
            }
        })
        .buffer_unordered(plan.max_in_flight.max(1));

    let mut retry = Vec::new();
    let answers = &mut outcome.answers;
    while let Some((batch, result)) = results.next().await {
        match result {
            None => {} // stopped: these stay not_attempted
            Some(Ok(records)) => {
                outcome.answered_batches += 1;
                let mut answered = std::collections::HashSet::with_capacity(batch.len());
                for record in records {
                    match company_of(record.external_id.as_deref()) {
                        // The first answer for a company counts; a repeated one is ignored.
                        Some(i) if batch.contains(&i) && answered.insert(i) => {
                            if record.error_code() == Some(RECORD_INTERNAL_ERROR) {
                                retry.push(i);
                            }
                            answers[i] = interpret(&record);
                        }
                        _ => tracing::warn!("Leadspace returned a result for a record that was not in the batch"),
                    }
                }
                if answered.len() < batch.len() {
                    for &i in batch {
                        if answers[i].status == RowStatus::NotAttempted {
                            answers[i] = Enrichment::without_attributes(
                                RowStatus::Failed,
                                Some("Leadspace returned no result for this company".into()),
                            );
                        }
                    }
                }
            }
            Some(Err(error)) => {
                if error.is_outage() {
                    outcome.outage_batches += 1;
                }
                let status = match error {
                    LeadspaceError::Rejected { .. } if !bulk => RowStatus::InvalidInput,
                    _ => RowStatus::Failed,
                };
                tracing::warn!(error = %error, companies = batch.len(), "Leadspace batch failed");
                let message = error.to_string();
                for &i in batch {
                    answers[i] = Enrichment::without_attributes(status, Some(message.clone()));
                }
            }
        }
    }
    drop(results);
    if let Some(reason) = stop_reason.into_inner().unwrap_or_else(|e| e.into_inner()) {
        outcome.stopped_by.get_or_insert(reason);
    }
    retry
}

fn interpret(record: &EnrichmentResult) -> Enrichment {
    if let Some(code) = record.error_code() {
        let (status, what) = if code == RECORD_INVALID_INPUT {
            (RowStatus::InvalidInput, "Leadspace could not use this input")
        } else {
            (RowStatus::Failed, "Leadspace failed on this record")
        };
        return Enrichment::without_attributes(status, Some(format!("{what} (code {code})")));
    }
    match record.data.as_ref().and_then(|d| d.company.as_ref()) {
        Some(company) if record.company_enriched() => Enrichment::matched(company),
        _ => Enrichment::without_attributes(RowStatus::NotMatched, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadspace::model::{EnrichedCompany, EnrichmentData, RecordError};
    use crate::mapping::CompanyQuery;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;

    /// Answers every record, in reverse order; names starting with "x" are not matched; the
    /// bulk numbered `credits_after` and later fail with 427.
    struct FakeLeadspace {
        bulks: AtomicUsize,
        singles: AtomicUsize,
        credits_after: usize,
    }

    fn answer(request: &EnrichRequest) -> EnrichmentResult {
        if request.company.name == "bad" {
            return EnrichmentResult {
                external_id: Some(request.external_id.as_str().into()),
                error: Some(RecordError { code: Some(1200), message: None }),
                ..Default::default()
            };
        }
        let matched = !request.company.name.starts_with('x');
        EnrichmentResult {
            status: Some("success".into()),
            external_id: Some(request.external_id.as_str().into()),
            data: Some(EnrichmentData {
                enrichment_status: Some(if matched { "Company Enriched" } else { "Not Enriched" }.into()),
                company: Some(EnrichedCompany {
                    name: Some(request.company.name.to_uppercase().into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[async_trait]
    impl Enricher for FakeLeadspace {
        async fn single(&self, record: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
            self.singles.fetch_add(1, Ordering::SeqCst);
            Ok(answer(record))
        }
        async fn bulk(
            &self,
            records: &[EnrichRequest],
            _: &CallContext,
        ) -> Result<Vec<EnrichmentResult>, LeadspaceError> {
            if self.bulks.fetch_add(1, Ordering::SeqCst) >= self.credits_after {
                return Err(LeadspaceError::CreditsExhausted);
            }
            Ok(records.iter().rev().map(answer).collect())
        }
    }

    fn fake(credits_after: usize) -> FakeLeadspace {
        FakeLeadspace { bulks: AtomicUsize::new(0), singles: AtomicUsize::new(0), credits_after }
    }

    fn companies(names: &[&str]) -> Vec<CompanyQuery> {
        names.iter().map(|n| CompanyQuery { name: n.to_string(), ..Default::default() }).collect()
    }

    fn plan(mode: Mode, batch_size: usize, max_in_flight: usize) -> EnrichPlan {
        EnrichPlan { mode, batch_size, max_in_flight }
    }

    #[tokio::test]
    async fn bulk_results_in_any_order_reach_their_own_company() {
        let fake = fake(usize::MAX);
        let names: Vec<String> = (0..7).map(|i| format!("co{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let out =
            enrich_companies(&fake, &companies(&names)[..], None, plan(Mode::Bulk, 3, 2), &CallContext::default())
                .await;
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 3);
        for (i, answer) in out.answers.iter().enumerate() {
            assert_eq!(answer.attribute(1), format!("CO{i}"));
        }
    }

    /// Answers the first record of every bulk twice and leaves the last one out.
    struct RepeatingLeadspace;

    #[async_trait]
    impl Enricher for RepeatingLeadspace {
        async fn single(&self, record: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
            Ok(answer(record))
        }
        async fn bulk(
            &self,
            records: &[EnrichRequest],
            _: &CallContext,
        ) -> Result<Vec<EnrichmentResult>, LeadspaceError> {
            let mut results: Vec<EnrichmentResult> = records.iter().map(answer).collect();
            results.pop();
            results.push(answer(&records[0]));
            Ok(results)
        }
    }

    #[tokio::test]
    async fn a_repeated_answer_does_not_hide_a_missing_one() {
        let out = enrich_companies(
            &RepeatingLeadspace,
            &companies(&["a", "b", "c"])[..],
            None,
            plan(Mode::Bulk, 3, 1),
            &CallContext::default(),
        )
        .await;
        let statuses: Vec<_> = out.answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [RowStatus::Enriched, RowStatus::Enriched, RowStatus::Failed]);
    }

    #[tokio::test]
    async fn auto_mode_uses_single_calls_for_a_handful() {
        let fake = fake(usize::MAX);
        let out = enrich_companies(
            &fake,
            &companies(&["a", "xb", "bad"])[..],
            None,
            plan(Mode::Auto, 500, 4),
            &CallContext::default(),
        )
        .await;
        assert_eq!((fake.singles.load(Ordering::SeqCst), fake.bulks.load(Ordering::SeqCst)), (3, 0));
        let statuses: Vec<_> = out.answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [RowStatus::Enriched, RowStatus::NotMatched, RowStatus::InvalidInput]);
    }

    #[tokio::test]
    async fn credits_running_out_stops_submissions_and_leaves_the_rest_not_attempted() {
        let fake = fake(1);
        let names: Vec<String> = (0..10).map(|i| format!("co{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let out =
            enrich_companies(&fake, &companies(&names)[..], None, plan(Mode::Bulk, 2, 1), &CallContext::default())
                .await;
        assert!(matches!(out.stopped_by, Some(LeadspaceError::CreditsExhausted)));
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 2, "no submission after the 427");
        assert_eq!(out.answers[0].status, RowStatus::Enriched);
        assert!(out.answers[2..].iter().all(|a| a.status == RowStatus::NotAttempted));
    }
}
