//! Sends a file's unique companies to Leadspace in bounded batches and turns each answer into
//! an `Enrichment`. At most `max_in_flight` requests or bulk jobs are outstanding; an error
//! that stops the run (credits, token, deadline, the journal) stops new submissions at once,
//! and everything not yet answered stays `not_attempted`.
//!
//! Money first: a bulk is written to the answer journal as soon as Leadspace accepts it, and
//! every answer as soon as it arrives, before it is used. Bulks an earlier run left in flight
//! are collected (`collect_pending`) before anything new is submitted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tracing::Instrument;

use super::book::{AnswerBook, Origin};
use super::journal::{AnswerJournal, PendingBulk, now_seconds};
use crate::chain::error_chain;
use crate::company::{Companies, digest_of};
use crate::enrichment::{Enrichment, RowStatus};
use crate::leadspace::Mode;
use crate::leadspace::model::{EnrichRequest, EnrichmentResult, RECORD_INTERNAL_ERROR, RECORD_INVALID_INPUT};
use crate::leadspace::{BulkResults, CallContext, CallStats, Enricher, LeadspaceError};

/// `auto` uses the single API up to this many companies: a bulk's polling round trip costs
/// more time than a handful of paced single calls, and no more credits either way.
pub const AUTO_SINGLE_MAX_COMPANIES: usize = 20;

/// A bulk submitted longer ago than this is not polled again: its companies are sent anew
/// (counted in `leadspace.resubmitted`). How long Leadspace keeps results is not documented;
/// a week covers a file retried by the nightly refresh after a long outage.
pub const PENDING_BULK_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Single answers are written to the journal in groups of this many (and at the end): a crash
/// can lose at most a group's worth of single answers.
const SINGLE_ANSWERS_PER_ENTRY: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct EnrichPlan {
    pub mode: Mode,
    pub bulk_size: usize,
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
    /// The slots it was given, one per company in company order, the wanted ones answered and
    /// not yet judged against MIN_CONFIDENCE (see `Enrichment::judged`).
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

/// Sends of a record a finished bulk reported as an internal error (1100), the first included.
const RECORD_SENDS: u32 = 3;

/// The first error that stops the run, shared by the batches in flight.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    reason: Mutex<Option<LeadspaceError>>,
}

impl Stop {
    fn stop(&self, error: LeadspaceError) {
        self.stopped.store(true, Ordering::SeqCst);
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn journal_failed(&self, error: crate::storage::StorageError) {
        tracing::error!(error = %crate::error::error_chain(&error), "the answer journal could not be written");
        self.stop(LeadspaceError::JournalUnavailable(error));
    }

    fn into_reason(self) -> Option<LeadspaceError> {
        self.reason.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// One company's answer from a batch: (company, answer, worth sending again).
type Answered = (usize, Enrichment, bool);

/// Reads a batch's records: each finds its company by the digest in its external_id; the
/// first answer for a company counts, a repeated one or a stranger is ignored.
fn read_records(records: Vec<EnrichmentResult>, members: &HashMap<u128, usize>) -> Vec<Answered> {
    let mut answered = HashSet::with_capacity(members.len());
    let mut out = Vec::with_capacity(members.len());
    for record in records {
        match record.external_id.as_deref().and_then(digest_of).and_then(|d| members.get(&d)) {
            Some(&company) if answered.insert(company) => {
                let retry = record.error_code() == Some(RECORD_INTERNAL_ERROR);
                out.push((company, interpret(&record), retry));
            }
            _ => tracing::warn!("Leadspace returned a result for a record that was not in the batch"),
        }
    }
    out
}

/// The (digest, answer) pairs the journal keeps.
fn for_journal<'a>(answered: &'a [Answered], companies: &(impl Companies + ?Sized)) -> Vec<(u128, &'a Enrichment)> {
    answered.iter().map(|(company, answer, _)| (companies.digest(*company), answer)).collect()
}

/// A group of single answers as the journal takes them.
fn borrowed(group: &[(u128, Enrichment)]) -> Vec<(u128, &Enrichment)> {
    group.iter().map(|(digest, answer)| (*digest, answer)).collect()
}

/// A bulk of `batch` from submission to results. The submission is journalled before the first
/// poll; a bulk Leadspace loses or never finishes is forgotten and submitted once more. The
/// requests are built for each submission and dropped once it is sent.
async fn run_bulk(
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    batch: &[usize],
    digests: &[u128],
    call: &CallContext,
    stop: &Stop,
) -> Result<(String, BulkResults), LeadspaceError> {
    let mut resubmitted = false;
    loop {
        let requests: Vec<EnrichRequest> = batch.iter().map(|&i| companies.request(i)).collect();
        let submitted = enricher.submit_bulk(&requests, call).await;
        drop(requests);
        let bulk = submitted?;
        if let Err(error) = journal.submitted(&bulk, digests).await {
            // Bought but not written down: collect it, and buy nothing more.
            stop.journal_failed(error);
        }
        match enricher.collect_bulk(&bulk, call).await {
            Ok(results) => return Ok((bulk, results)),
            Err(lost @ (LeadspaceError::BulkNotFound | LeadspaceError::PollTimedOut { .. })) => {
                journal.forget(&bulk).await;
                if resubmitted || stop.is_stopped() {
                    return Err(lost);
                }
                // One more submission is worth its credits, a loop of them is not.
                tracing::warn!(error = %error_chain(&lost), records = batch.len(), "resubmitting a bulk once");
                CallStats::add(&call.stats.retries, 1);
                CallStats::add(&call.stats.resubmitted, batch.len() as u64);
                resubmitted = true;
            }
            // The deadline or a stop leaves the submission in the journal: the next run
            // collects it.
            Err(other) => return Err(other),
        }
    }
}

/// Enriches `companies[i]` for every `i` in `wanted` (all companies when `None`), writing each
/// answer into `answers[i]` (one slot per company; the caller's own, so that a file's answers
/// are held once), whose `not_attempted` value stays where nothing was learned. The other slots
/// are left as they are, and come back in the outcome.
pub async fn enrich_companies(
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    wanted: Option<Vec<usize>>,
    answers: Vec<Enrichment>,
    plan: EnrichPlan,
    call: &CallContext,
) -> EnrichOutcome {
    debug_assert_eq!(answers.len(), companies.count(), "one answer slot per company");
    let mut outcome = EnrichOutcome { answers, stopped_by: None, answered_batches: 0, outage_batches: 0 };
    let mut pending = wanted.unwrap_or_else(|| (0..companies.count()).collect());
    let bulk = plan.uses_bulk(pending.len());
    for send in 1..=RECORD_SENDS {
        if send > 1 {
            CallStats::add(&call.stats.retries, pending.len() as u64);
            tracing::info!(records = pending.len(), send, "resubmitting records Leadspace failed internally (1100)");
        }
        let retry = enrich_round(enricher, journal, companies, &pending, bulk, plan, call, &mut outcome).await;
        if retry.is_empty() || outcome.stopped_by.is_some() {
            break;
        }
        pending = retry;
    }
    outcome
}

/// One pass over `pending`; returns the companies worth resubmitting (record-level 1100).
#[allow(clippy::too_many_arguments)]
async fn enrich_round(
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    pending: &[usize],
    bulk: bool,
    plan: EnrichPlan,
    call: &CallContext,
    outcome: &mut EnrichOutcome,
) -> Vec<usize> {
    let bulk_size = if bulk { plan.bulk_size.max(1) } else { 1 };
    let stop = Stop::default();
    // Single answers waiting to be written to the journal as a group.
    let singles: Mutex<Vec<(u128, Enrichment)>> = Mutex::new(Vec::new());
    let take_group = |all: bool| -> Option<Vec<(u128, Enrichment)>> {
        let mut group = singles.lock().unwrap_or_else(|e| e.into_inner());
        (!group.is_empty() && (all || group.len() >= SINGLE_ANSWERS_PER_ENTRY)).then(|| std::mem::take(&mut *group))
    };

    let mut results = futures::stream::iter(pending.chunks(bulk_size))
        .map(|batch| {
            let (stop, singles, take_group) = (&stop, &singles, &take_group);
            async move {
                if stop.is_stopped() {
                    return (batch, None);
                }
                if let Err(stop_now) = call.check(Duration::ZERO, true) {
                    stop.stop(stop_now);
                    return (batch, None);
                }
                let digests: Vec<u128> = batch.iter().map(|&i| companies.digest(i)).collect();
                // Who is in the batch is looked up only once its results are in: a bulk waits
                // for Leadspace holding its companies' numbers and digests alone, not their
                // requests or a map (with a hundred bulks in flight, 16 MiB).
                let members =
                    || -> HashMap<u128, usize> { digests.iter().copied().zip(batch.iter().copied()).collect() };
                let span = tracing::debug_span!("batch", first = batch[0], records = batch.len());
                let result = async {
                    if bulk {
                        let (id, mut results) =
                            run_bulk(enricher, journal, companies, batch, &digests, call, stop).await?;
                        let answered = read_records(std::mem::take(&mut results.records), &members());
                        if let Err(error) = journal.answered(Some(&id), &for_journal(&answered, companies)).await {
                            stop.journal_failed(error);
                        }
                        // Written down: the place for another bulk's results is free.
                        drop(results);
                        Ok::<_, LeadspaceError>(answered)
                    } else {
                        let record = enricher.single(&companies.request(batch[0]), call).await?;
                        let answered = read_records(vec![record], &members());
                        singles.lock().unwrap_or_else(|e| e.into_inner()).extend(
                            for_journal(&answered, companies)
                                .into_iter()
                                .map(|(digest, answer)| (digest, answer.clone())),
                        );
                        if let Some(group) = take_group(false)
                            && let Err(error) = journal.answered(None, &borrowed(&group)).await
                        {
                            stop.journal_failed(error);
                        }
                        Ok(answered)
                    }
                }
                .instrument(span)
                .await;
                match result {
                    Err(error) if error.stops_the_run() => {
                        stop.stop(error);
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
            Some(Ok(answered)) => {
                outcome.answered_batches += 1;
                let complete = answered.len() == batch.len();
                for (company, answer, worth_retrying) in answered {
                    if worth_retrying {
                        retry.push(company);
                    }
                    answers[company] = answer;
                }
                if !complete {
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
                tracing::warn!(error = %error_chain(&error), companies = batch.len(), "Leadspace batch failed");
                let message = error.to_string();
                for &i in batch {
                    answers[i] = Enrichment::without_attributes(status, Some(message.clone()));
                }
            }
        }
    }
    drop(results);
    if let Some(group) = take_group(true)
        && let Err(error) = journal.answered(None, &borrowed(&group)).await
    {
        stop.journal_failed(error);
    }
    if let Some(reason) = stop.into_reason() {
        outcome.stopped_by.get_or_insert(reason);
    }
    retry
}

/// What collecting an earlier run's bulks left.
pub struct Collected {
    pub stopped_by: Option<LeadspaceError>,
    /// Companies in bulks that are still Leadspace's (not answered, not lost): not to be bought
    /// again in this run.
    pub held: HashSet<usize>,
}

/// Collects the bulks an earlier run submitted but never saw answered, before anything new is
/// submitted: their answers go to the journal and into `book`. A bulk Leadspace no longer knows
/// (404), never finished, or older than `PENDING_BULK_MAX_AGE` is forgotten, and its companies
/// are sent again (`leadspace.resubmitted`).
pub async fn collect_pending(
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    pending: Vec<PendingBulk>,
    plan: EnrichPlan,
    call: &CallContext,
    book: &mut AnswerBook,
) -> Collected {
    let stop = Stop::default();
    let mut held = HashSet::new();
    if pending.is_empty() {
        return Collected { stopped_by: None, held };
    }
    tracing::info!(bulks = pending.len(), "collecting bulks an earlier run left in flight");
    let now = now_seconds();
    let mut polls = futures::stream::iter(pending)
        .map(|bulk| {
            let stop = &stop;
            async move {
                let members: HashMap<u128, usize> =
                    bulk.companies.iter().filter_map(|&d| companies.find(d).map(|i| (d, i))).collect();
                let too_old = now.saturating_sub(bulk.submitted_at) > PENDING_BULK_MAX_AGE.as_secs() as i64;
                if members.is_empty() || too_old || stop.is_stopped() {
                    return (bulk, members, None);
                }
                let collected = enricher.collect_bulk(&bulk.bulk, call).await;
                (bulk, members, Some(collected))
            }
        })
        .buffer_unordered(plan.max_in_flight.max(1));
    while let Some((bulk, members, collected)) = polls.next().await {
        let unanswered = |book: &AnswerBook| members.values().filter(|&&i| !book.is_known(i)).count() as u64;
        match collected {
            Some(Ok(mut results)) => {
                let answered = read_records(std::mem::take(&mut results.records), &members);
                if let Err(error) = journal.answered(Some(&bulk.bulk), &for_journal(&answered, companies)).await {
                    stop.journal_failed(error);
                }
                drop(results);
                for (company, answer, _) in answered {
                    if super::journal::is_final(answer.status) {
                        book.offer(company, answer, bulk.submitted_at, Origin::Journal);
                    }
                }
            }
            Some(Err(error)) if error.stops_the_run() => {
                stop.stop(error);
                held.extend(members.values().copied());
            }
            Some(Err(LeadspaceError::BulkNotFound | LeadspaceError::PollTimedOut { .. })) | None
                if !stop.is_stopped() || members.is_empty() =>
            {
                // Gone, never finished, too old to ask about, or nothing of this file's.
                CallStats::add(&call.stats.resubmitted, unanswered(book));
                journal.forget_pending(&bulk).await;
            }
            None => held.extend(members.values().copied()),
            Some(Err(error)) => {
                // Leadspace may still answer it: its companies wait for the next run.
                tracing::warn!(error = %error_chain(&error), companies = members.len(), "an earlier bulk could not be collected");
                held.extend(members.values().copied());
            }
        }
    }
    drop(polls);
    held.retain(|&i| !book.is_known(i));
    Collected { stopped_by: stop.into_reason(), held }
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
    if record.is_failure() {
        // No code, or none that could be read: failed, but unlike 1100 not sent again in this run.
        let error = match record.error_message() {
            Some(message) => format!("Leadspace failed on this record ({message})"),
            None => "Leadspace failed on this record".to_string(),
        };
        return Enrichment::without_attributes(RowStatus::Failed, Some(error));
    }
    match record.data.as_ref().and_then(|d| d.company.as_ref()) {
        Some(company) if record.company_enriched() => Enrichment::matched(company),
        _ => Enrichment::without_attributes(RowStatus::NotMatched, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::CompanyQuery;
    use crate::leadspace::model::{EnrichedCompany, EnrichmentData, RecordError};
    use crate::storage::StorageError;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;

    /// Answers every record, in reverse order; names starting with "x" are not matched; the
    /// bulk numbered `credits_after` and later fail with 427. Bulks it was told to forget
    /// (`lost`) answer 404.
    #[derive(Default)]
    struct FakeLeadspace {
        bulks: AtomicUsize,
        singles: AtomicUsize,
        polls: AtomicUsize,
        credits_after: usize,
        submitted: Mutex<HashMap<String, Vec<EnrichRequest>>>,
        lost: Mutex<HashSet<String>>,
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
        async fn submit_bulk(&self, records: &[EnrichRequest], _: &CallContext) -> Result<String, LeadspaceError> {
            let n = self.bulks.fetch_add(1, Ordering::SeqCst);
            if n >= self.credits_after {
                return Err(LeadspaceError::CreditsExhausted);
            }
            let id = format!("/v3/enrichment/results/{n}");
            self.submitted.lock().unwrap().insert(id.clone(), records.to_vec());
            Ok(id)
        }
        async fn collect_bulk(&self, bulk: &str, _: &CallContext) -> Result<BulkResults, LeadspaceError> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.lost.lock().unwrap().contains(bulk) {
                return Err(LeadspaceError::BulkNotFound);
            }
            let records = self.submitted.lock().unwrap().get(bulk).cloned().ok_or(LeadspaceError::BulkNotFound)?;
            Ok(BulkResults::new(records.iter().rev().map(answer).collect()))
        }
    }

    fn fake(credits_after: usize) -> FakeLeadspace {
        FakeLeadspace { credits_after, ..Default::default() }
    }

    /// A group of answers as written: the bulk it came from, and (digest, answer) pairs.
    type JournalEntry = (Option<String>, Vec<(u128, Enrichment)>);

    /// The journal in memory; `fail_submissions` refuses every write of a submission.
    #[derive(Default)]
    struct MemoryJournal {
        submitted: Mutex<Vec<(String, Vec<u128>)>>,
        answered: Mutex<Vec<JournalEntry>>,
        forgotten: Mutex<Vec<String>>,
        fail_submissions: bool,
    }

    #[async_trait]
    impl AnswerJournal for MemoryJournal {
        async fn submitted(&self, bulk: &str, companies: &[u128]) -> Result<(), StorageError> {
            if self.fail_submissions {
                return Err(StorageError::Service {
                    operation: "PutObject",
                    bucket: "b".into(),
                    key: "journal".into(),
                    source: "503 SlowDown".into(),
                });
            }
            self.submitted.lock().unwrap().push((bulk.to_string(), companies.to_vec()));
            Ok(())
        }
        async fn answered(&self, bulk: Option<&str>, answers: &[(u128, &Enrichment)]) -> Result<(), StorageError> {
            let answers = answers.iter().map(|&(digest, answer)| (digest, answer.clone())).collect();
            self.answered.lock().unwrap().push((bulk.map(str::to_string), answers));
            Ok(())
        }
        async fn forget(&self, bulk: &str) {
            self.forgotten.lock().unwrap().push(bulk.to_string());
        }
    }

    impl MemoryJournal {
        fn answered_companies(&self) -> usize {
            self.answered.lock().unwrap().iter().map(|(_, answers)| answers.len()).sum()
        }
    }

    fn companies(names: &[&str]) -> Vec<CompanyQuery> {
        names.iter().map(|n| CompanyQuery { name: n.to_string(), ..Default::default() }).collect()
    }

    fn numbered(n: usize) -> Vec<CompanyQuery> {
        (0..n).map(|i| CompanyQuery { name: format!("co{i}"), ..Default::default() }).collect()
    }

    fn plan(mode: Mode, bulk_size: usize, max_in_flight: usize) -> EnrichPlan {
        EnrichPlan { mode, bulk_size, max_in_flight }
    }

    /// `enrich_companies` for every one of `names`, into fresh slots.
    async fn enrich_all(
        enricher: &dyn Enricher,
        journal: &dyn AnswerJournal,
        names: &[CompanyQuery],
        plan: EnrichPlan,
    ) -> EnrichOutcome {
        let slots = Enrichment::unanswered(names.len());
        enrich_companies(enricher, journal, names, None, slots, plan, &CallContext::default()).await
    }

    #[tokio::test]
    async fn bulk_results_in_any_order_reach_their_own_company() {
        let fake = fake(usize::MAX);
        let journal = MemoryJournal::default();
        let names = numbered(7);
        let out = enrich_all(&fake, &journal, &names[..], plan(Mode::Bulk, 3, 2)).await;
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 3);
        for (i, answer) in out.answers.iter().enumerate() {
            assert_eq!(answer.attribute(1), format!("CO{i}"));
        }
    }

    #[tokio::test]
    async fn every_bulk_is_written_down_when_submitted_and_its_answers_when_they_arrive() {
        let fake = fake(usize::MAX);
        let journal = MemoryJournal::default();
        let names = numbered(7);
        enrich_all(&fake, &journal, &names[..], plan(Mode::Bulk, 3, 2)).await;
        let submitted = journal.submitted.lock().unwrap().clone();
        assert_eq!(submitted.len(), 3);
        assert_eq!(submitted.iter().map(|(_, c)| c.len()).sum::<usize>(), 7);
        let answered = journal.answered.lock().unwrap();
        let mut ids: Vec<_> = answered.iter().map(|(bulk, _)| bulk.clone().unwrap()).collect();
        let mut submitted_ids: Vec<_> = submitted.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        submitted_ids.sort();
        assert_eq!(ids, submitted_ids, "each submitted bulk's answers are journalled under its id");
        drop(answered);
        assert_eq!(journal.answered_companies(), 7);
    }

    #[tokio::test]
    async fn single_answers_are_journalled_in_groups_and_what_is_left_at_the_end() {
        let fake = fake(usize::MAX);
        let journal = MemoryJournal::default();
        let names = numbered(25);
        enrich_all(&fake, &journal, &names[..], plan(Mode::Single, 500, 4)).await;
        let groups: Vec<usize> = journal.answered.lock().unwrap().iter().map(|(_, a)| a.len()).collect();
        assert_eq!(groups.iter().sum::<usize>(), 25, "{groups:?}");
        assert!(groups.len() == 3 && groups.iter().all(|&n| n <= SINGLE_ANSWERS_PER_ENTRY), "{groups:?}");
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_written_stops_buying_and_keeps_what_was_bought() {
        let fake = fake(usize::MAX);
        let journal = MemoryJournal { fail_submissions: true, ..Default::default() };
        let names = numbered(10);
        let out = enrich_all(&fake, &journal, &names[..], plan(Mode::Bulk, 2, 1)).await;
        assert!(matches!(out.stopped_by, Some(LeadspaceError::JournalUnavailable(_))), "{:?}", out.stopped_by);
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 1, "nothing more is bought once the journal fails");
        assert_eq!(out.answers[..2].iter().filter(|a| a.status == RowStatus::Enriched).count(), 2, "paid for, used");
        assert!(out.answers[2..].iter().all(|a| a.status == RowStatus::NotAttempted));
    }

    /// Answers the first record of every bulk twice and leaves the last one out.
    struct RepeatingLeadspace(FakeLeadspace);

    #[async_trait]
    impl Enricher for RepeatingLeadspace {
        async fn single(&self, record: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
            Ok(answer(record))
        }
        async fn submit_bulk(&self, records: &[EnrichRequest], call: &CallContext) -> Result<String, LeadspaceError> {
            self.0.submit_bulk(records, call).await
        }
        async fn collect_bulk(&self, bulk: &str, _: &CallContext) -> Result<BulkResults, LeadspaceError> {
            let records = self.0.submitted.lock().unwrap().get(bulk).cloned().unwrap_or_default();
            let mut results: Vec<EnrichmentResult> = records.iter().map(answer).collect();
            results.pop();
            results.push(answer(&records[0]));
            Ok(BulkResults::new(results))
        }
    }

    #[tokio::test]
    async fn only_the_wanted_slots_are_written_and_the_others_come_back_as_they_were() {
        let fake = fake(usize::MAX);
        let names = numbered(5);
        let known = Enrichment::with_attributes(RowStatus::NotMatched, None, ["kept"]);
        let mut slots = Enrichment::unanswered(5);
        slots[1] = known.clone();
        slots[3] = known.clone();

        let wanted = Some(vec![0, 2, 4]);
        let out = enrich_companies(
            &fake,
            &MemoryJournal::default(),
            &names[..],
            wanted,
            slots,
            plan(Mode::Bulk, 2, 2),
            &CallContext::default(),
        )
        .await;

        assert_eq!((&out.answers[1], &out.answers[3]), (&known, &known), "answers known before are left alone");
        for i in [0, 2, 4] {
            assert_eq!(
                (out.answers[i].status, out.answers[i].attribute(1)),
                (RowStatus::Enriched, format!("CO{i}").as_str())
            );
        }
        let sent: usize = fake.submitted.lock().unwrap().values().map(Vec::len).sum();
        assert_eq!(sent, 3, "only the wanted companies are sent");
    }

    #[tokio::test]
    async fn a_repeated_answer_does_not_hide_a_missing_one() {
        let out = enrich_all(
            &RepeatingLeadspace(fake(usize::MAX)),
            &MemoryJournal::default(),
            &companies(&["a", "b", "c"])[..],
            plan(Mode::Bulk, 3, 1),
        )
        .await;
        let statuses: Vec<_> = out.answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [RowStatus::Enriched, RowStatus::Enriched, RowStatus::Failed]);
    }

    #[tokio::test]
    async fn auto_mode_uses_single_calls_for_a_handful() {
        let fake = fake(usize::MAX);
        let out =
            enrich_all(&fake, &MemoryJournal::default(), &companies(&["a", "xb", "bad"])[..], plan(Mode::Auto, 500, 4))
                .await;
        assert_eq!((fake.singles.load(Ordering::SeqCst), fake.bulks.load(Ordering::SeqCst)), (3, 0));
        let statuses: Vec<_> = out.answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [RowStatus::Enriched, RowStatus::NotMatched, RowStatus::InvalidInput]);
    }

    #[tokio::test]
    async fn credits_running_out_stops_submissions_and_leaves_the_rest_not_attempted() {
        let fake = fake(1);
        let names = numbered(10);
        let out = enrich_all(&fake, &MemoryJournal::default(), &names[..], plan(Mode::Bulk, 2, 1)).await;
        assert!(matches!(out.stopped_by, Some(LeadspaceError::CreditsExhausted)));
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 2, "no submission after the 427");
        assert_eq!(out.answers[0].status, RowStatus::Enriched);
        assert!(out.answers[2..].iter().all(|a| a.status == RowStatus::NotAttempted));
    }

    /// A bulk an earlier run submitted, as its journal entry reads back.
    async fn left_in_flight(fake: &FakeLeadspace, names: &[CompanyQuery], submitted_at: i64) -> PendingBulk {
        let requests: Vec<EnrichRequest> = (0..names.len()).map(|i| names.request(i)).collect();
        let bulk = fake.submit_bulk(&requests, &CallContext::default()).await.unwrap();
        let entry = format!("journal/s-{bulk}.json");
        PendingBulk { bulk, submitted_at, companies: (0..names.len()).map(|i| names.digest(i)).collect(), entry }
    }

    #[tokio::test]
    async fn bulks_left_in_flight_are_collected_and_journalled_before_anything_is_bought() {
        let fake = fake(usize::MAX);
        let names = numbered(4);
        let pending = left_in_flight(&fake, &names[..3], now_seconds() - 60).await;
        let journal = MemoryJournal::default();
        let mut book = AnswerBook::new(names.len());
        let call = CallContext::default();

        let collected =
            collect_pending(&fake, &journal, &names[..], vec![pending], plan(Mode::Bulk, 500, 4), &call, &mut book)
                .await;

        assert!(collected.stopped_by.is_none() && collected.held.is_empty());
        assert_eq!(book.missing(), [3], "the three companies of the bulk are answered");
        assert_eq!(fake.bulks.load(Ordering::SeqCst), 1, "nothing new submitted");
        assert_eq!(journal.answered_companies(), 3, "collected answers are written down");
        assert_eq!(book.reused().journal, 3);
        assert_eq!(CallStats::get(&call.stats.resubmitted), 0);
    }

    #[tokio::test]
    async fn a_bulk_leadspace_no_longer_knows_or_too_old_is_forgotten_and_counted_as_resubmitted() {
        let fake = fake(usize::MAX);
        let names = numbered(4);
        let gone = left_in_flight(&fake, &names[..2], now_seconds() - 60).await;
        fake.lost.lock().unwrap().insert(gone.bulk.clone());
        let mut old = left_in_flight(&fake, &names, 0).await;
        old.companies.drain(..2);
        let journal = MemoryJournal::default();
        let mut book = AnswerBook::new(names.len());
        let call = CallContext::default();

        let collected =
            collect_pending(&fake, &journal, &names[..], vec![gone, old], plan(Mode::Bulk, 500, 4), &call, &mut book)
                .await;

        assert!(collected.held.is_empty(), "their companies may be bought again");
        assert_eq!(book.missing(), [0, 1, 2, 3]);
        assert_eq!(fake.polls.load(Ordering::SeqCst), 1, "a bulk older than the limit is not polled");
        assert_eq!(journal.forgotten.lock().unwrap().len(), 2);
        assert_eq!(CallStats::get(&call.stats.resubmitted), 4);
    }

    #[tokio::test]
    async fn a_bulk_still_processing_at_the_deadline_is_held_for_the_next_run() {
        struct Slow;
        #[async_trait]
        impl Enricher for Slow {
            async fn single(&self, _: &EnrichRequest, _: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
                unreachable!()
            }
            async fn submit_bulk(&self, _: &[EnrichRequest], _: &CallContext) -> Result<String, LeadspaceError> {
                unreachable!("nothing is submitted")
            }
            async fn collect_bulk(&self, _: &str, _: &CallContext) -> Result<BulkResults, LeadspaceError> {
                Err(LeadspaceError::DeadlineReached)
            }
        }
        let names = numbered(2);
        let pending = PendingBulk {
            bulk: "/v3/enrichment/results/x".into(),
            submitted_at: now_seconds(),
            companies: vec![names.digest(0)],
            entry: "journal/s-x.json".into(),
        };
        let journal = MemoryJournal::default();
        let mut book = AnswerBook::new(2);
        let collected = collect_pending(
            &Slow,
            &journal,
            &names[..],
            vec![pending],
            plan(Mode::Bulk, 500, 4),
            &CallContext::default(),
            &mut book,
        )
        .await;
        assert!(matches!(collected.stopped_by, Some(LeadspaceError::DeadlineReached)));
        assert_eq!(collected.held, HashSet::from([0]));
        assert!(journal.forgotten.lock().unwrap().is_empty(), "the next run still collects it");
    }
}
