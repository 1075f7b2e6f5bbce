//! When to poll a bulk, learned from the bulks before it. Every poll is a request the contract
//! may count: one that comes before the results are ready is paid for in throughput, one that
//! comes long after costs time. Leadspace does not say when a bulk will be ready, so the
//! client keeps two bounds, the latest a poll found a bulk still processing (`not_ready`) and
//! the earliest one found it ready (`ready`), and polls new bulks at the ready bound. Now and
//! then one bulk is polled between the bounds instead, to find out whether bulks got faster:
//! the bounds close in on the real time, and such a probe costs at most one early poll.

use std::sync::Mutex;
use std::time::Duration;

/// One bulk in this many is polled between the bounds while they are far apart.
const PROBE_EVERY: u64 = 8;
/// Bounds closer than this share of the ready bound are close enough: no more probing.
const CLOSE_ENOUGH: f64 = 0.1;
/// Every this-many bulks the not-ready bound is moved a fifth earlier, so that a Leadspace
/// that got faster is noticed.
const FORGET_EVERY: u64 = 64;
/// Before any bulk was seen ready, a bulk still processing at `t` is next polled at `t` times
/// this.
const UNKNOWN_GROWTH: f64 = 1.5;

#[derive(Debug, Default)]
struct Bounds {
    not_ready: Option<Duration>,
    ready: Option<Duration>,
    bulks: u64,
}

#[derive(Debug)]
pub struct PollTiming {
    first: Duration,
    max_delay: Duration,
    bounds: Mutex<Bounds>,
}

impl PollTiming {
    /// `first` is the first poll's delay until a bulk has been seen ready; no delay grows past
    /// `max_delay`.
    pub fn new(first: Duration, max_delay: Duration) -> Self {
        PollTiming { first, max_delay, bounds: Mutex::new(Bounds::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounds> {
        self.bounds.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new bulk: whether it is the one polled early to probe.
    pub fn start(&self) -> bool {
        let mut bounds = self.lock();
        bounds.bulks += 1;
        if bounds.bulks.is_multiple_of(FORGET_EVERY) {
            bounds.not_ready = bounds.not_ready.map(|lower| lower.mul_f64(0.8));
        }
        match (bounds.not_ready, bounds.ready) {
            (_, None) => false,
            (lower, Some(upper)) => {
                let apart = upper.saturating_sub(lower.unwrap_or_default());
                bounds.bulks.is_multiple_of(PROBE_EVERY) && apart.as_secs_f64() > upper.as_secs_f64() * CLOSE_ENOUGH
            }
        }
    }

    /// How long after its submission a bulk is next polled, given `polls` earlier polls of it
    /// that found it processing, the last at `last` (after submission), and whether it probes.
    /// Read again after each wait: another bulk may have moved the bounds meanwhile.
    pub fn next_poll(&self, polls: u32, last: Duration, probing: bool) -> Duration {
        let bounds = self.lock();
        let at = match (bounds.not_ready, bounds.ready) {
            (lower, Some(upper)) if probing && polls == 0 => (lower.unwrap_or_default() + upper) / 2,
            (_, Some(upper)) if last < upper => upper,
            (Some(lower), None) if last < lower => lower.mul_f64(UNKNOWN_GROWTH),
            _ if polls == 0 => self.first,
            // Past every bound: back off from the last poll.
            _ => last + last.mul_f64(UNKNOWN_GROWTH - 1.0).max(self.first / 2),
        };
        // The first poll may wait as long as bulks are known to take; later ones are capped.
        if polls == 0 { at } else { at.min(last + self.max_delay) }
    }

    /// A poll sent `at` after its bulk's submission found it still processing.
    pub fn processing(&self, at: Duration) {
        let mut bounds = self.lock();
        if bounds.ready.is_some_and(|ready| at >= ready) {
            // Bulks got slower: what was ready then is no guide now.
            bounds.ready = None;
        }
        bounds.not_ready = Some(bounds.not_ready.map_or(at, |lower| lower.max(at)));
    }

    /// A poll sent `at` after its bulk's submission found its results.
    pub fn ready(&self, at: Duration) {
        let mut bounds = self.lock();
        if bounds.not_ready.is_some_and(|lower| at <= lower) {
            bounds.not_ready = None;
        }
        bounds.ready = Some(bounds.ready.map_or(at, |upper| upper.min(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Polls `bulks` bulks one after another, each ready `ready` after submission, as the
    /// client does; returns the polls each took.
    fn run(timing: &PollTiming, bulks: usize, ready: Duration) -> Vec<u32> {
        (0..bulks)
            .map(|_| {
                let probing = timing.start();
                let mut last = Duration::ZERO;
                for polls in 0.. {
                    let at = timing.next_poll(polls, last, probing);
                    assert!(at >= last, "never polls back in time: {at:?} after {last:?}");
                    if at >= ready {
                        timing.ready(at);
                        return polls + 1;
                    }
                    timing.processing(at);
                    last = at;
                }
                unreachable!()
            })
            .collect()
    }

    #[test]
    fn bulks_that_take_the_same_time_cost_about_one_poll_each() {
        let timing = PollTiming::new(500 * MS, 5000 * MS);
        let polls = run(&timing, 200, 1000 * MS);
        let total: u32 = polls.iter().sum();
        // The first bulk finds the time out (0.5 s, then 0.75 s later); probing costs one early
        // poll in about twenty bulks.
        assert!(total <= 200 + 12, "{total} polls for 200 bulks: {polls:?}");
        let upper = timing.lock().ready.unwrap_or_default();
        assert!(upper >= 1000 * MS && upper <= 1300 * MS, "learned {upper:?}");
    }

    #[test]
    fn bulks_that_get_faster_are_polled_sooner() {
        let timing = PollTiming::new(500 * MS, 5000 * MS);
        run(&timing, 50, 2000 * MS);
        run(&timing, 300, 600 * MS);
        let upper = timing.lock().ready.unwrap_or_default();
        assert!(upper < 1500 * MS, "still polling at {upper:?} for bulks ready at 600 ms");
    }

    #[test]
    fn bulks_that_get_slower_are_not_polled_over_and_over() {
        let timing = PollTiming::new(500 * MS, 5000 * MS);
        run(&timing, 50, 600 * MS);
        let polls = run(&timing, 50, 3000 * MS);
        let later: u32 = polls[5..].iter().sum();
        assert!(later <= 45 + 6, "{later} polls for 45 bulks: {polls:?}");
    }

    #[test]
    fn no_wait_is_longer_than_the_maximum_delay() {
        let timing = PollTiming::new(500 * MS, 5000 * MS);
        let polls = run(&timing, 3, 60_000 * MS);
        assert!(polls[0] >= 12, "{polls:?}");
        assert_eq!(polls[1..], [1, 1], "then it knows: {polls:?}");
        assert!(timing.next_poll(3, 10_000 * MS, false) <= 15_000 * MS);
    }
}
