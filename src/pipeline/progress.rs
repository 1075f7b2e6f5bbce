//! What a run has done so far, carried by its lease's heartbeat (every LEASE_HEARTBEAT_SECONDS:
//! 30 s by default) so that `status` shows a file while it is being enriched.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::summary::now_utc;
use crate::leadspace::CallStats;

/// A run's progress, as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub rows_scanned: u64,
    pub companies_total: u64,
    /// Companies with an answer: from earlier runs, the cache, or bought by this one.
    pub companies_answered: u64,
    pub requests: u64,
    pub started_at: String,
    pub updated_at: String,
    /// At the pace of the answers so far; absent until there is a pace to go by.
    pub eta_seconds: Option<u64>,
}

/// The object a run enriches, named in its lease so that `status` can list it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub bucket: String,
    pub key: String,
}

/// What the heartbeat reads while Leadspace works: the answers known before buying, the count
/// of those written since, the requests.
type Live = (u64, Arc<AtomicU64>, Arc<CallStats>);

/// The run's side of the progress: updated as it works, read by the heartbeat.
#[derive(Debug)]
pub struct ProgressCell {
    source: Source,
    progress: Mutex<Progress>,
    /// When answers started to come in, and how many were known then: the pace of the rest.
    answering_since: Mutex<Option<(Instant, u64)>>,
    /// While Leadspace works, the counters to read.
    live: Mutex<Option<Live>>,
}

impl ProgressCell {
    pub fn new(bucket: &str, key: &str) -> Self {
        let progress = Progress { started_at: now_utc(), ..Progress::default() };
        ProgressCell {
            source: Source { bucket: bucket.into(), key: key.into() },
            progress: Mutex::new(progress),
            answering_since: Mutex::new(None),
            live: Mutex::new(None),
        }
    }

    fn with<T>(&self, change: impl FnOnce(&mut Progress) -> T) -> T {
        // A panic elsewhere while holding it leaves figures still worth showing.
        change(&mut self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Pass 1 has read `rows` rows holding `companies` companies.
    pub fn scanned(&self, rows: u64, companies: u64) {
        self.with(|p| (p.rows_scanned, p.companies_total) = (rows, companies));
    }

    /// `answered` companies have an answer; `requests` Leadspace requests were made.
    pub fn answered(&self, answered: u64, requests: u64) {
        let mut since = self.answering_since.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (start, known_then) = *since.get_or_insert((Instant::now(), answered));
        self.with(|p| {
            // A heartbeat's reading may land after the final one: figures only grow.
            let (answered, requests) = (answered.max(p.companies_answered), requests.max(p.requests));
            (p.companies_answered, p.requests) = (answered, requests);
            let (done, left) = (answered.saturating_sub(known_then), p.companies_total.saturating_sub(answered));
            let elapsed = start.elapsed().as_secs_f64();
            p.eta_seconds = (done > 0 && elapsed > 0.0).then(|| (elapsed / done as f64 * left as f64).ceil() as u64);
        });
    }

    /// Follows the buying as it goes: `known` answers before it, `written` the count of answers
    /// bought since, `stats` the requests.
    pub fn follow(&self, known: u64, written: Arc<AtomicU64>, stats: Arc<CallStats>) {
        self.answered(known, CallStats::get(&stats.requests));
        *self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((known, written, stats));
    }

    /// The buying is over: the figures stay as they are.
    pub fn stop_following(&self) {
        if let Some((known, written, stats)) = self.live.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.answered(known + written.load(Ordering::Relaxed), CallStats::get(&stats.requests));
        }
    }

    /// The figures now, stamped.
    pub fn snapshot(&self) -> Progress {
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some((known, written, stats)) = live {
            self.answered(known + written.load(Ordering::Relaxed), CallStats::get(&stats.requests));
        }
        self.with(|p| {
            p.updated_at = now_utc();
            p.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_the_pace_of_the_answers_bought_so_far() {
        let cell = ProgressCell::new("b", "incoming/a.csv");
        cell.scanned(1000, 100);
        cell.answered(20, 0);
        assert_eq!(cell.snapshot().eta_seconds, None, "no pace yet: 20 were known before buying");
        std::thread::sleep(std::time::Duration::from_millis(50));
        cell.answered(60, 4);
        let progress = cell.snapshot();
        assert_eq!((progress.companies_answered, progress.requests, progress.rows_scanned), (60, 4, 1000));
        // 40 answers in about 50 ms: 40 left take about as long again.
        assert!(progress.eta_seconds.is_some_and(|eta| eta <= 1), "{progress:?}");
        assert!(progress.updated_at.ends_with('Z') && progress.started_at.ends_with('Z'));
    }
}
