//! Shared mutable state behind the server. Locked briefly; never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use crate::knobs::Knobs;

/// Counters a test can assert on. See each field for exactly what it counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Every HTTP request, whatever its fate.
    pub requests: u64,
    /// Single requests that reached endpoint logic (passed throttle, auth and fault injection).
    pub single_requests: u64,
    /// Bulk submissions that reached endpoint logic.
    pub bulk_submissions: u64,
    /// Polls that reached endpoint logic (204, 200 and 404 answers alike).
    pub polls: u64,
    /// Records received by endpoint logic (one per single body, one per bulk `data` element).
    pub records_received: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// 429 answers.
    pub throttled: u64,
    /// 427 answers.
    pub insufficient_credits: u64,
    /// Injected 500/503 answers.
    pub server_errors: u64,
    /// Credits charged (one per "Company Enriched" record).
    pub credits_used: u64,
}

impl Stats {
    /// What was counted after `earlier` (a snapshot taken before): the figures of one phase of
    /// a run, such as the second file given to a warm function.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            requests: self.requests.saturating_sub(earlier.requests),
            single_requests: self.single_requests.saturating_sub(earlier.single_requests),
            bulk_submissions: self.bulk_submissions.saturating_sub(earlier.bulk_submissions),
            polls: self.polls.saturating_sub(earlier.polls),
            records_received: self.records_received.saturating_sub(earlier.records_received),
            unauthorized: self.unauthorized.saturating_sub(earlier.unauthorized),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            insufficient_credits: self.insufficient_credits.saturating_sub(earlier.insufficient_credits),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            credits_used: self.credits_used.saturating_sub(earlier.credits_used),
        }
    }
}

/// One request as the TPS gate saw it: when, whether it was answered 429, whether it was a
/// poll. Kept for every request (24 bytes each), so a benchmark can draw the request rate
/// over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at: Instant,
    pub throttled: bool,
    pub poll: bool,
}

/// Requests in one second of a run: admitted, and answered 429.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    pub admitted: u32,
    pub throttled: u32,
}

/// The arrivals at or after `since`, counted per whole second from `since` (index 0 is the
/// first second); seconds without a request are zeros, up to the last arrival.
pub fn per_second(arrivals: &[Arrival], since: Instant) -> Vec<Second> {
    let mut seconds: Vec<Second> = Vec::new();
    for arrival in arrivals.iter().filter(|a| a.at >= since) {
        let i = arrival.at.duration_since(since).as_secs() as usize;
        if seconds.len() <= i {
            seconds.resize(i + 1, Second::default());
        }
        if arrival.throttled {
            seconds[i].throttled += 1;
        } else {
            seconds[i].admitted += 1;
        }
    }
    seconds
}

/// A submitted bulk; results are computed once, at the first poll after it is ready.
pub(crate) struct Job {
    /// Where its records are in `State::received`.
    pub records: Range<usize>,
    pub submitted: Instant,
    /// The serialised `{"results": [...]}` body and its number of results.
    pub results: Option<(Bytes, usize)>,
}

pub(crate) struct State {
    pub knobs: Knobs,
    pub stats: Stats,
    pub received: Vec<Value>,
    /// Arrival times of admitted requests within the last second (TPS window).
    pub window: VecDeque<Instant>,
    /// Every request the gate saw, in order.
    pub arrivals: Vec<Arrival>,
    /// Bulk jobs dropped so far under the `lose_first_bulks` knob.
    pub bulks_lost: u32,
    pub jobs: HashMap<String, Job>,
    pub rng: StdRng,
    pub log_requests: bool,
}

pub(crate) type Shared = Arc<Mutex<State>>;

impl State {
    pub fn new(knobs: Knobs) -> Self {
        let rng = StdRng::seed_from_u64(knobs.seed);
        State {
            knobs,
            stats: Stats::default(),
            received: Vec::new(),
            window: VecDeque::new(),
            arrivals: Vec::new(),
            bulks_lost: 0,
            jobs: HashMap::new(),
            rng,
            log_requests: false,
        }
    }

    /// Sliding-window limiter: admits the request (and remembers it) unless `tps_limit`
    /// requests were already admitted in the past second.
    pub fn admit(&mut self, now: Instant) -> bool {
        let Some(limit) = self.knobs.tps_limit else {
            return true;
        };
        while let Some(&t) = self.window.front() {
            if now.duration_since(t) >= Duration::from_secs(1) {
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.len() >= limit as usize {
            return false;
        }
        self.window.push_back(now);
        true
    }

    /// True with probability `p`; out-of-range or NaN probabilities are clamped (never panic).
    pub fn chance(&mut self, p: f64) -> bool {
        chance(&mut self.rng, p)
    }

    /// A random UUID-shaped id (from the seeded RNG, so runs are reproducible).
    pub fn uuid(&mut self) -> String {
        let n: u128 = self.rng.random();
        let hex = format!("{n:032x}");
        format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }

    /// Charges one credit for an enriched record (saturating: a balance lowered at runtime
    /// below what a bulk already reserved must not wrap).
    pub fn charge(&mut self) {
        if let Some(c) = self.knobs.credits.as_mut() {
            *c = c.saturating_sub(1);
        }
        self.stats.credits_used += 1;
    }
}

/// True with probability `p`, on a given RNG (lets callers borrow other `State` fields).
pub(crate) fn chance(rng: &mut StdRng, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || rng.random::<f64>() < p)
}

/// Locks the state, shrugging off poisoning: a panicked handler must not wedge the emulator.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_up_to_limit_then_slides() {
        let mut s = State::new(Knobs { tps_limit: Some(2), ..Knobs::default() });
        let t0 = Instant::now();
        assert!(s.admit(t0));
        assert!(s.admit(t0));
        assert!(!s.admit(t0 + Duration::from_millis(999)));
        assert!(s.admit(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn a_lowered_then_raised_limit_applies_at_once() {
        let mut s = State::new(Knobs { tps_limit: Some(1), ..Knobs::default() });
        let t0 = Instant::now();
        assert!(s.admit(t0));
        assert!(!s.admit(t0));
        s.knobs.tps_limit = Some(3);
        assert!(s.admit(t0));
        assert!(s.admit(t0));
        assert!(!s.admit(t0));
    }

    #[test]
    fn arrivals_are_counted_per_second_from_a_given_instant() {
        let t0 = Instant::now();
        let at = |ms: u64, throttled: bool| Arrival { at: t0 + Duration::from_millis(ms), throttled, poll: false };
        let arrivals = [at(0, false), at(100, false), at(500, true), at(999, false), at(2_500, true), at(3_000, false)];
        let from = |a, t| Second { admitted: a, throttled: t };
        assert_eq!(per_second(&arrivals, t0), [from(3, 1), from(0, 0), from(0, 1), from(1, 0)]);
        assert_eq!(per_second(&arrivals, t0 + Duration::from_millis(2_000)), [from(0, 1), from(1, 0)]);
    }

    #[test]
    fn a_phase_is_the_difference_of_two_snapshots() {
        let before = Stats { requests: 10, throttled: 4, polls: 3, ..Stats::default() };
        let after = Stats { requests: 25, throttled: 4, polls: 9, ..Stats::default() };
        assert_eq!(after.since(&before), Stats { requests: 15, polls: 6, ..Stats::default() });
    }

    #[test]
    fn chance_handles_edges() {
        let mut s = State::new(Knobs::default());
        assert!(!s.chance(0.0));
        assert!(!s.chance(f64::NAN));
        assert!(!s.chance(-1.0));
        assert!(s.chance(1.0));
        assert!(s.chance(7.0));
    }

    #[test]
    fn uuid_shape() {
        let mut s = State::new(Knobs::default());
        let id = s.uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, s.uuid());
    }
}
