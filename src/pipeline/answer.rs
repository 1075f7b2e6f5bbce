//! Every company's answer, from the cheapest place that has it: a partial run's output (resume),
//! then the cross-run cache, then Leadspace. Fresh final answers go back into the cache, and
//! MIN_CONFIDENCE is applied last, so that the cache keeps whole answers.

use super::App;
use super::companies::Companies;
use super::enrich::{EnrichPlan, enrich_companies};
use crate::cache::CacheCounts;
use crate::enrichment::Enrichment;
use crate::leadspace::{CallContext, CallStats, Enricher, LeadspaceError};

pub struct Answers {
    /// One per company, in company order, judged against MIN_CONFIDENCE.
    pub answers: Vec<Enrichment>,
    /// Why Leadspace work stopped early, if it did.
    pub stopped_by: Option<LeadspaceError>,
    /// Nothing got through to Leadspace, and not for anything the records did.
    pub leadspace_down: bool,
    /// `None` when the cache is off.
    pub cache: Option<CacheCounts>,
}

/// Answers `companies` through `enricher`; `known[i]` is company `i`'s answer from a partial
/// run, if any.
pub async fn answer_companies(
    app: &App,
    enricher: &dyn Enricher,
    companies: &(impl Companies + ?Sized),
    mut known: Vec<Option<Enrichment>>,
    call: &CallContext,
) -> Answers {
    let config = &app.config;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut wanted: Vec<usize> = (0..known.len()).filter(|&i| known[i].is_none()).collect();
    let mut cache_counts = app.cache.as_ref().map(|_| CacheCounts::default());
    if let (Some(cache), Some(counts)) = (&app.cache, cache_counts.as_mut()) {
        for (company, answer) in cache.recall(companies, &wanted, now, counts).await {
            known[company] = Some(answer);
        }
        wanted.retain(|&i| known[i].is_none());
        tracing::info!(hits = counts.hits, to_send = wanted.len(), "cache consulted");
    }

    let plan = EnrichPlan { mode: config.mode, batch_size: config.batch_size, max_in_flight: config.max_in_flight };
    let to_send = wanted.len();
    let enriched = enrich_companies(enricher, companies, Some(wanted.clone()), plan, call).await;
    tracing::info!(companies = to_send, requests = CallStats::get(&call.stats.requests), "enrichment finished");
    if let (Some(cache), Some(counts)) = (&app.cache, cache_counts.as_mut()) {
        cache.remember(companies, &enriched.answers, &wanted, now, counts).await;
    }

    if matches!(enriched.stopped_by, Some(LeadspaceError::CreditsExhausted)) {
        crate::metrics::credits_exhausted();
    }
    let leadspace_down = enriched.leadspace_down();
    let answers = enriched
        .answers
        .into_iter()
        .zip(known)
        .map(|(fresh, known)| known.unwrap_or(fresh).judged(config.min_confidence))
        .collect();
    Answers { answers, stopped_by: enriched.stopped_by, leadspace_down, cache: cache_counts }
}
