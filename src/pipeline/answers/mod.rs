//! Every company's answer, from the cheapest place that has it: this version's answer journal
//! (bought by an earlier run), the answers kept from the file's previous version (younger than
//! ANSWER_MAX_AGE_DAYS), bulks an earlier run left in flight, the cross-run cache, and only then
//! Leadspace. Fresh final answers go to the journal as they arrive and to the cache at the end.
//! Answers stay unjudged here; MIN_CONFIDENCE is applied when they are written.
//!
//! Everything about answers lives in this folder: `book` (what is known of each company),
//! `journal` (every purchase written down as it arrives), `kept` (the answers kept for the next
//! version), `enrich` (buying from Leadspace in bounded bulks); this module is their entry point.

pub mod book;
pub mod enrich;
pub mod journal;
pub mod kept;

use std::collections::HashSet;

use self::book::{AnswerBook, Origin};
use self::enrich::{Collected, EnrichPlan, collect_pending, enrich_companies};
use self::journal::version_id;
use self::journal::{AnswerJournal, Journal, PendingBulk, now_seconds};
use self::kept::KeptFilter;
use super::App;
use super::progress::ProgressCell;
use super::run::Run;
use super::scan::Scan;
use super::summary::{LeadspaceCounts, Reused};
use crate::cache::CacheCounts;
use crate::company::Companies;
use crate::enrichment::{Enrichment, RowStatus};
use crate::error::JobError;
use crate::leadspace::{CallContext, CallStats, Enricher, LeadspaceError};

pub struct Answers {
    /// One per company, in company order, not yet judged against MIN_CONFIDENCE.
    pub answers: Vec<Enrichment>,
    /// When each answer was bought (seconds since the epoch; 0 where there is none).
    pub bought_at: Vec<i64>,
    /// Why Leadspace work stopped early, if it did.
    pub stopped_by: Option<LeadspaceError>,
    /// Nothing got through to Leadspace, and not for anything the records did.
    pub leadspace_down: bool,
    /// `None` when the cache is off.
    pub cache: Option<CacheCounts>,
    pub reused: Reused,
}

/// A run's answers from start to end, the one way in: `open` reads what earlier runs left and
/// collects the bulks they left in flight; then either `hand_over` (a large file, to the
/// workflow) or `buy_the_rest`.
pub struct Answering<'r, 'a> {
    run: &'r Run<'a>,
    scan: &'r Scan,
    journal: Journal,
    book: AnswerBook,
    collected: Collected,
    call: CallContext,
}

/// What a hand-off takes over: what is known, and what Leadspace still holds.
pub struct HandedOver {
    pub journal: Journal,
    pub book: AnswerBook,
    pub held: HashSet<usize>,
    /// What collecting earlier bulks cost.
    pub cost: LeadspaceCounts,
}

impl<'r, 'a> Answering<'r, 'a> {
    /// This version's journal, the previous version's kept answers and the bulks earlier runs
    /// left in flight, collected before anything is bought; Leadspace calls stop at `stop_at`.
    /// `progress` follows the answers as they arrive.
    pub async fn open(
        run: &'r Run<'a>,
        scan: &'r Scan,
        stop_at: Option<tokio::time::Instant>,
        progress: &ProgressCell,
    ) -> Result<Self, JobError> {
        let app = run.app;
        let journal = journal_of(run, scan, &format!("run-{:016x}", rand::random::<u64>()));
        // The token is read while the journal is: the first request then goes without waiting.
        let (known, ()) = tokio::join!(known_answers(run, scan, &journal), app.enricher.prepare());
        let (mut book, pending) = known?;
        let call = run.call_context(stop_at);
        progress.follow(book.known() as u64, journal.written(), call.stats.clone());
        let collected = collect_earlier_bulks(app, &journal, &scan.companies, pending, &call, &mut book).await;
        Ok(Answering { run, scan, journal, book, collected, call })
    }

    /// Whether companies are left to buy and nothing stopped the run from buying them.
    pub fn has_more_to_buy(&self) -> bool {
        self.collected.stopped_by.is_none() && self.book.known() < self.book.len()
    }

    pub fn hand_over(self) -> HandedOver {
        let cost = LeadspaceCounts::from(self.call.stats.as_ref());
        HandedOver { journal: self.journal, book: self.book, held: self.collected.held, cost }
    }

    /// The cache, then Leadspace for the rest; every answer, the journal it is in, and the
    /// calls' figures.
    pub async fn buy_the_rest(self, progress: &ProgressCell) -> (Answers, Journal, CallContext) {
        let Answering { run, scan, journal, book, collected, call } = self;
        let app = run.app;
        let answers =
            answer_the_rest(app, app.enricher.as_ref(), &journal, &scan.companies, book, collected, &call).await;
        progress.stop_following();
        (answers, journal, call)
    }
}

/// What an unanswered company in a bulk still in flight is told.
const IN_FLIGHT: &str = "bought by an earlier run and still being processed by Leadspace; the next run collects the \
                         answer instead of buying it again";

/// Answers `companies` through `enricher`: `book` holds what earlier runs left (journal,
/// previous version), `pending` the bulks they left in flight, which are collected before
/// anything is submitted. Every fresh answer goes through `journal` before it is used.
pub async fn answer_companies(
    app: &App,
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    mut book: AnswerBook,
    pending: Vec<PendingBulk>,
    call: &CallContext,
) -> Answers {
    let collected = collect_pending(enricher, journal, companies, pending, plan_of(app), call, &mut book).await;
    answer_the_rest(app, enricher, journal, companies, book, collected, call).await
}

fn plan_of(app: &App) -> EnrichPlan {
    let config = &app.config;
    EnrichPlan { mode: config.mode, bulk_size: config.bulk_size, max_in_flight: config.max_in_flight }
}

/// Collects the bulks an earlier run left in flight (see `enrich::collect_pending`).
async fn collect_earlier_bulks(
    app: &App,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    pending: Vec<PendingBulk>,
    call: &CallContext,
    book: &mut AnswerBook,
) -> Collected {
    collect_pending(app.enricher.as_ref(), journal, companies, pending, plan_of(app), call, book).await
}

/// `answer_companies` once earlier bulks are collected: the cache, then Leadspace for what is
/// neither known nor still held by Leadspace in a bulk of an earlier run.
pub async fn answer_the_rest(
    app: &App,
    enricher: &dyn Enricher,
    journal: &dyn AnswerJournal,
    companies: &(impl Companies + ?Sized),
    mut book: AnswerBook,
    collected: Collected,
    call: &CallContext,
) -> Answers {
    let plan = plan_of(app);
    let mut stopped_by = collected.stopped_by;
    // A company in a bulk that is still Leadspace's is not bought again in this run.
    let held: HashSet<usize> = collected.held;

    let now = now_seconds();
    let mut wanted: Vec<usize> = book.missing().into_iter().filter(|i| !held.contains(i)).collect();
    let mut cache_counts = app.cache.as_ref().map(|_| CacheCounts::default());
    if let (Some(cache), Some(counts)) = (&app.cache, cache_counts.as_mut())
        && !wanted.is_empty()
    {
        for (company, answer, enriched_at) in cache.recall(companies, &wanted, now, counts).await {
            book.offer(company, answer, enriched_at, Origin::Cache);
        }
        wanted.retain(|&i| !book.is_known(i));
        tracing::info!(hits = counts.hits, to_send = wanted.len(), "cache consulted");
    }

    let mut leadspace_down = false;
    if stopped_by.is_none() && !wanted.is_empty() {
        let to_send = wanted.len();
        let slots = book.lend_slots();
        let enriched = enrich_companies(enricher, journal, companies, Some(wanted.clone()), slots, plan, call).await;
        tracing::info!(companies = to_send, requests = CallStats::get(&call.stats.requests), "enrichment finished");
        if let (Some(cache), Some(counts)) = (&app.cache, cache_counts.as_mut()) {
            cache.remember(companies, &enriched.answers, &wanted, now, counts).await;
        }
        leadspace_down = enriched.leadspace_down();
        stopped_by = enriched.stopped_by;
        book.take_back_slots(enriched.answers, &wanted, now_seconds());
    }
    if matches!(stopped_by, Some(LeadspaceError::CreditsExhausted)) {
        crate::metrics::credits_exhausted();
    }

    let reused = book.reused();
    let (mut answers, bought_at) = book.finish();
    for &company in &held {
        if answers[company].status == RowStatus::NotAttempted {
            answers[company] = Enrichment::without_attributes(RowStatus::NotAttempted, Some(IN_FLIGHT.into()));
        }
    }
    Answers { answers, bought_at, stopped_by, leadspace_down, cache: cache_counts, reused }
}

/// The answer journal of this version of the object, read with the mapping pass 1 resolved,
/// from this LEADSPACE_BASE_URL; `writer` names this run's entries.
fn journal_of(run: &Run<'_>, scan: &Scan, writer: &str) -> Journal {
    let version = version_id(&run.meta.etag, scan.mapping.description(), &run.app.config.base_url);
    Journal::new(run.app.store.clone(), &run.paths.bucket, &run.paths.journal_prefix(&version), writer)
}

/// What earlier runs left: this version's journal (and the bulks it has in flight), then the
/// previous version's kept answers. `force` starts a new journal and reuses nothing.
async fn known_answers(
    run: &Run<'_>,
    scan: &Scan,
    journal: &Journal,
) -> Result<(AnswerBook, Vec<PendingBulk>), JobError> {
    let mut book = AnswerBook::new(scan.companies.len());
    if run.job.force {
        let cleared = journal.clear().await?;
        tracing::info!(cleared, "force: a new answer journal, nothing reused");
        // From here on the force is spent: Lambda's retry of this request reuses what it buys.
        if let Some(request) = &run.job.request_id {
            let key = run.paths.force_spent_key(&run.meta.etag, request);
            run.app.store.put(&run.paths.bucket, &key, Vec::new(), "application/octet-stream").await?;
        }
        return Ok((book, Vec::new()));
    }
    // Both reads at once: the journal is read first only in what it offers the book.
    let (pending, kept) =
        tokio::join!(journal.recall(&scan.companies, &mut book), kept::fetch(run.app.store.as_ref(), &run.paths));
    let (pending, kept) = (pending?, kept?);
    let config = &run.app.config;
    let filter = KeptFilter {
        etag: &run.meta.etag,
        mapping: scan.mapping.description(),
        base_url: &config.base_url,
        max_age_seconds: config.answer_max_age_seconds(),
    };
    if let Some(kept) = kept {
        kept::offer(&kept, &filter, &scan.companies, &mut book);
    }
    Ok((book, pending))
}

/// Keeps this version's answers for the next one. Pass 2 runs beside it (`output::finish`), and
/// a failure of pass 2 does not stop it: the answers are still there for the next version.
pub async fn keep_answers(
    run: &Run<'_>,
    scan: &Scan,
    answers: &[Enrichment],
    bought_at: &[i64],
) -> Result<(), JobError> {
    kept::keep(
        run.app.store.clone(),
        &run.paths,
        &run.meta.etag,
        scan.mapping.description(),
        &run.app.config.base_url,
        &scan.companies,
        answers,
        bought_at,
    )
    .await
}
