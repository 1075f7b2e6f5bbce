//! Sends a file's unique companies to Leadspace in bounded batches and turns each answer into
//! an `Enrichment`. At most `max_in_flight` requests or bulk jobs are outstanding; an error
//! that stops the run (credits, token) stops new submissions at once, and everything not yet
//! answered stays `not_attempted`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use tracing::Instrument;

use crate::config::{Confidence, Mode};
use crate::enrichment::{Enrichment, RowStatus};
use crate::leadspace::model::{EnrichRequest, EnrichmentResult, RECORD_INVALID_INPUT};
use crate::leadspace::{CallStats, Enricher, LeadspaceError};
use crate::mapping::CompanyQuery;

/// `auto` uses the single API up to this many companies: a bulk's polling round trip costs
/// more time than a handful of paced single calls, and no more credits either way.
pub const AUTO_SINGLE_MAX_COMPANIES: usize = 20;

#[derive(Debug, Clone, Copy)]
pub struct EnrichPlan {
    pub mode: Mode,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub min_confidence: Confidence,
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
    /// One per company, in company order.
    pub answers: Vec<Enrichment>,
    /// Why the run stopped early, if it did.
    pub stopped_by: Option<LeadspaceError>,
}

fn external_id(company: usize) -> String {
    format!("c{company}")
}

fn company_of(external_id: Option<&str>) -> Option<usize> {
    external_id?.strip_prefix('c')?.parse().ok()
}

pub async fn enrich_companies(
    enricher: &dyn Enricher,
    companies: &[CompanyQuery],
    plan: EnrichPlan,
    stats: &CallStats,
) -> EnrichOutcome {
    let not_attempted = Enrichment::without_attributes(RowStatus::NotAttempted, None);
    let mut answers = vec![not_attempted; companies.len()];
    let bulk = plan.uses_bulk(companies.len());
    let batch_size = if bulk { plan.batch_size.max(1) } else { 1 };
    let stopped = AtomicBool::new(false);
    let stop_reason: Mutex<Option<LeadspaceError>> = Mutex::new(None);

    let batches =
        (0..companies.len()).step_by(batch_size).map(|start| start..(start + batch_size).min(companies.len()));
    let mut results = futures::stream::iter(batches)
        .map(|range| {
            let (stopped, stop_reason) = (&stopped, &stop_reason);
            async move {
                if stopped.load(Ordering::SeqCst) {
                    return (range, None);
                }
                let requests: Vec<EnrichRequest> =
                    range.clone().map(|i| companies[i].to_request(external_id(i))).collect();
                let span = tracing::debug_span!("batch", first = range.start, records = requests.len());
                let result = async {
                    if bulk {
                        enricher.bulk(&requests, stats).await
                    } else {
                        enricher.single(&requests[0], stats).await.map(|r| vec![r])
                    }
                }
                .instrument(span)
                .await;
                match result {
                    Err(error) if error.stops_the_run() => {
                        stopped.store(true, Ordering::SeqCst);
                        let mut reason = stop_reason.lock().unwrap_or_else(|e| e.into_inner());
                        reason.get_or_insert(error);
                        (range, None)
                    }
                    other => (range, Some(other)),
                }
            }
        })
        .buffer_unordered(plan.max_in_flight.max(1));

    while let Some((range, result)) = results.next().await {
        match result {
            None => {} // stopped: these stay not_attempted
            Some(Ok(records)) => {
                for record in records {
                    match company_of(record.external_id.as_deref()) {
                        Some(i) if range.contains(&i) => answers[i] = interpret(&record, plan.min_confidence),
                        _ => tracing::warn!("Leadspace returned a result for a record that was not in the batch"),
                    }
                }
                for answer in &mut answers[range] {
                    if answer.status == RowStatus::NotAttempted {
                        *answer = Enrichment::without_attributes(
                            RowStatus::Failed,
                            Some("Leadspace returned no result for this company".into()),
                        );
                    }
                }
            }
            Some(Err(error)) => {
                let status = match error {
                    LeadspaceError::Rejected { .. } if !bulk => RowStatus::InvalidInput,
                    _ => RowStatus::Failed,
                };
                tracing::warn!(error = %error, companies = range.len(), "Leadspace batch failed");
                let message = error.to_string();
                for answer in &mut answers[range] {
                    *answer = Enrichment::without_attributes(status, Some(message.clone()));
                }
            }
        }
    }
    drop(results);
    let stopped_by = stop_reason.into_inner().unwrap_or_else(|e| e.into_inner());
    EnrichOutcome { answers, stopped_by }
}

fn interpret(record: &EnrichmentResult, min_confidence: Confidence) -> Enrichment {
    if let Some(code) = record.error_code() {
        let (status, what) = if code == RECORD_INVALID_INPUT {
            (RowStatus::InvalidInput, "Leadspace could not use this input")
        } else {
            (RowStatus::Failed, "Leadspace failed on this record")
        };
        return Enrichment::without_attributes(status, Some(format!("{what} (code {code})")));
    }
    match record.data.as_ref().and_then(|d| d.company.as_ref()) {
        Some(company) if record.company_enriched() => Enrichment::matched(company, min_confidence),
        _ => Enrichment::without_attributes(RowStatus::NotMatched, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadspace::model::{EnrichedCompany, EnrichmentData, RecordError};
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
                external_id: Some(request.external_id.clone()),
                error: Some(RecordError { code: Some(1200), message: None }),
                ..Default::default()
            };
        }
        let matched = !request.company.name.starts_with('x');
        EnrichmentResult {
            status: Some("success".into()),
            external_id: Some(request.external_id.clone()),
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
        async fn single(&self, record: &EnrichRequest, _: &CallStats) -> Result<EnrichmentResult, LeadspaceError> {
            self.singles.fetch_add(1, Ordering::SeqCst);
            Ok(answer(record))
        }
        async fn bulk(
            &self,
            records: &[EnrichRequest],
            _: &CallStats,
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
        EnrichPlan { mode, batch_size, max_in_flight, min_confidence: Confidence::Low }
    }

    #[tokio::test]
    async fn bulk_results_in_any_order_reach_their_own_company() {
        let fake = fake(usize::MAX);
        let names: Vec<String> = (0..7).map(|i| format!("co{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = enrich_companies(&fake, &companies(&names), plan(Mode::Bulk, 3, 2), &CallStats::default()).await;
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 3);
        for (i, answer) in out.answers.iter().enumerate() {
            assert_eq!(answer.attribute(1), format!("CO{i}"));
        }
    }

    #[tokio::test]
    async fn auto_mode_uses_single_calls_for_a_handful() {
        let fake = fake(usize::MAX);
        let out =
            enrich_companies(&fake, &companies(&["a", "xb", "bad"]), plan(Mode::Auto, 500, 4), &CallStats::default())
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
        let out = enrich_companies(&fake, &companies(&names), plan(Mode::Bulk, 2, 1), &CallStats::default()).await;
        assert!(matches!(out.stopped_by, Some(LeadspaceError::CreditsExhausted)));
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 2, "no submission after the 427");
        assert_eq!(out.answers[0].status, RowStatus::Enriched);
        assert!(out.answers[2..].iter().all(|a| a.status == RowStatus::NotAttempted));
    }
}
