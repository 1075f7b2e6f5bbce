//! Paces Leadspace requests: evenly spaced, never above the configured rate, and slower for a
//! while after Leadspace says 429 (multiplicative decrease, as TCP does), so a contract lower
//! than LEADSPACE_TPS costs a few 429s rather than a storm of them.
//!
//! The way back up is earned, not waited for: the rate grows by `GROWTH` each time Leadspace
//! answers a request that was sent at the current rate while the pacer was the bottleneck. So
//! it never runs more than one probing step above a rate Leadspace has just accepted, and a
//! warm container that was throttled in one file is back at the configured rate a few seconds
//! into the next, unthrottled one (about ten round trips from a tenth of the ceiling), instead
//! of climbing by a fixed step per second. After a 429, growth stops at the last rate that was
//! answered (or just under the throttled one) for `PROBE_AFTER`, so a contract that really is
//! lower is probed every few seconds rather than on every round trip.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The slowest the pacer goes after repeated 429s: one request every four seconds.
const MIN_RATE: f64 = 0.25;
/// What a 429 leaves of the rate (CUBIC's beta: gentler than halving, so the rate oscillates
/// close under the real limit).
const BACKOFF_FACTOR: f64 = 0.7;
/// The probing step: the rate after an answer to a request sent at the current rate.
pub const GROWTH: f64 = 1.5;
/// How close under a throttled rate growth pauses when no lower rate was accepted since.
const UNDER_LIMIT: f64 = 0.9;
/// How long after a 429 growth stays at the last accepted rate before probing past it.
const PROBE_AFTER: Duration = Duration::from_secs(4);
/// A request sent within this many intervals of the one before it found the pacer busy: its
/// answer says the current rate works. One sent after a lull says nothing about the rate.
const BUSY_SPACING: f64 = 1.5;

/// How much of a waiter's lateness the next slot makes up, in intervals.
const CATCH_UP: f64 = 0.1;

/// The slot after a request sent at `now` for the slot `planned`. Spacing is from the actual
/// send, so a request that goes late (after a lull, or behind a busy thread) pushes the next one
/// back rather than letting two go close together. A waiter woken late by the timer (a
/// millisecond or two, at every request) makes up that lateness, up to `CATCH_UP` of an
/// interval, or the pace would fall about 8% under the rate. Any n consecutive gaps therefore
/// span at least n intervals less one `CATCH_UP`: one more request than the rate allows never
/// fits into a second while the rate is 5% under LEADSPACE_TPS.
fn next_slot(now: Instant, planned: Instant, interval: Duration, waited: bool) -> Instant {
    let late = if waited { now.saturating_duration_since(planned) } else { Duration::ZERO };
    now + interval - late.min(interval.mul_f64(CATCH_UP))
}

/// A request's place in the pace: when it went, at what rate, and whether the pacer was busy.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub sent_at: Instant,
    rate: f64,
    busy: bool,
}

#[derive(Debug)]
struct State {
    ceiling: f64,
    rate: f64,
    next_slot: Instant,
    last_sent: Option<Instant>,
    /// Requests sent before the last slow-down do not slow it down again: they were already
    /// in flight when Leadspace first pushed back.
    slowed_at: Option<Instant>,
    /// The highest rate Leadspace answered since the last slow-down.
    accepted: Option<f64>,
    /// Where growth pauses after a slow-down (the last accepted rate), and until when.
    limit: Option<(f64, Instant)>,
}

#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

impl Pacer {
    /// At most `tps` requests per second, at 5% under it: a one-second window then never holds
    /// more than `tps` requests even when network jitter bunches a few together.
    pub fn new(tps: u32) -> Self {
        let ceiling = f64::from(tps.max(1)) / 1.05;
        let state = State {
            ceiling,
            rate: ceiling,
            next_slot: Instant::now(),
            last_sent: None,
            slowed_at: None,
            accepted: None,
            limit: None,
        };
        Pacer { state: Mutex::new(state) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a request may be sent. Slots are not reserved ahead: a waiter wakes, checks
    /// the current rate and tries again, so a slow-down applies at once to everyone waiting
    /// instead of after a queue of stale slots.
    pub async fn until_ready(&self) -> Slot {
        let mut waited = false;
        loop {
            let wake_at = {
                let mut state = self.lock();
                let now = Instant::now();
                let interval = Duration::from_secs_f64(1.0 / state.rate);
                if now >= state.next_slot {
                    state.next_slot = next_slot(now, state.next_slot, interval, waited);
                    let busy = state.last_sent.is_some_and(|last| now - last <= interval.mul_f64(BUSY_SPACING));
                    state.last_sent = Some(now);
                    return Slot { sent_at: now, rate: state.rate, busy };
                }
                state.next_slot
            };
            tokio::time::sleep_until(wake_at).await;
            waited = true;
        }
    }

    /// Leadspace answered the request of `slot` with 429: slow down, once per wave.
    pub fn throttled(&self, slot: &Slot) {
        let mut state = self.lock();
        if state.slowed_at.is_none_or(|slowed_at| slot.sent_at > slowed_at) {
            let now = Instant::now();
            // Pause at the rate that worked before this one, or just under this one.
            let pause_at = match state.accepted {
                Some(accepted) if accepted < slot.rate => accepted,
                _ => slot.rate * UNDER_LIMIT,
            };
            state.limit = Some((pause_at, now + PROBE_AFTER));
            state.accepted = None;
            state.rate = (state.rate * BACKOFF_FACTOR).max(MIN_RATE);
            state.slowed_at = Some(now);
            tracing::info!(requests_per_second = state.rate, "Leadspace throttled; slowing down");
        }
    }

    /// Leadspace answered the request of `slot`: if it was sent at the current rate with the
    /// pacer busy, that rate works, and the next one is a probing step above it.
    pub fn answered(&self, slot: &Slot) {
        let mut state = self.lock();
        let before_slow_down = state.slowed_at.is_some_and(|slowed_at| slot.sent_at <= slowed_at);
        if !slot.busy || before_slow_down {
            return;
        }
        state.accepted = Some(state.accepted.map_or(slot.rate, |accepted| accepted.max(slot.rate)));
        if slot.rate < state.rate || state.rate >= state.ceiling {
            return;
        }
        let mut next = slot.rate * GROWTH;
        if let Some((limit, probe_from)) = state.limit {
            if Instant::now() < probe_from {
                next = next.min(limit.max(slot.rate));
            } else if slot.rate >= limit {
                // Past the old limit: it no longer holds anything back.
                state.limit = None;
            }
        }
        if next > state.rate {
            state.rate = next.min(state.ceiling);
            tracing::debug!(requests_per_second = state.rate, "Leadspace keeps answering; speeding up");
        }
    }

    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_evenly_spaced_under_the_ceiling() {
        let pacer = Pacer::new(20);
        let start = Instant::now();
        for _ in 0..21 {
            pacer.until_ready().await;
        }
        // 21 requests span 20 intervals of 1.05/20 s: more than one second.
        assert!(start.elapsed() >= Duration::from_millis(1050), "{:?}", start.elapsed());
    }

    #[test]
    fn a_waiter_woken_late_makes_up_its_lateness_up_to_a_tenth_of_an_interval() {
        let start = Instant::now();
        let interval = Duration::from_millis(35);
        let ms = Duration::from_millis;
        assert_eq!(next_slot(start + ms(2), start, interval, true), start + ms(35));
        assert_eq!(next_slot(start + ms(20), start, interval, true), start + ms(20) + ms(35) - ms(35) / 10);
        // One that did not wait (it came after a lull) goes a full interval before the next.
        assert_eq!(next_slot(start + ms(2), start, interval, false), start + ms(37));
    }

    #[test]
    fn however_late_the_waiters_wake_n_gaps_span_n_intervals_less_a_tenth_of_one() {
        let interval = Duration::from_millis(35);
        let mut sent = vec![Instant::now()];
        let mut slot = sent[0] + interval;
        // Lateness from none to a third of an interval, in an irregular pattern.
        for i in 0..300_u64 {
            let now = slot + Duration::from_micros((i * 7919) % 12_000);
            slot = next_slot(now, slot, interval, true);
            sent.push(now);
        }
        for n in 1..=30 {
            for window in sent.windows(n + 1) {
                let span = window[n] - window[0];
                assert!(span + interval / 10 >= interval * n as u32, "{n} gaps span {span:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_pause_the_next_two_requests_are_still_a_full_interval_apart() {
        let pacer = Pacer::new(10);
        let interval = Duration::from_secs_f64(1.05 / 10.0);
        pacer.until_ready().await;
        tokio::time::advance(interval + interval / 2).await;
        let a = pacer.until_ready().await;
        let b = pacer.until_ready().await;
        assert!(b.sent_at - a.sent_at >= interval, "{:?}", b.sent_at - a.sent_at);
    }

    /// Sends back to back for `how_long`, each request answered at once (or throttled when
    /// `limit` says so); returns every slot's rate and whether it was throttled.
    async fn send_for(pacer: &Pacer, how_long: Duration, limit: Option<f64>) -> Vec<(f64, bool)> {
        let until = Instant::now() + how_long;
        let mut sent = Vec::new();
        while Instant::now() < until {
            let slot = pacer.until_ready().await;
            let throttled = limit.is_some_and(|limit| slot.rate > limit);
            if throttled {
                pacer.throttled(&slot)
            } else {
                pacer.answered(&slot)
            }
            sent.push((slot.rate, throttled));
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_of_429s_slows_down_once() {
        let pacer = Pacer::new(21);
        let sent: Vec<Slot> = futures::future::join_all((0..5).map(|_| pacer.until_ready())).await;
        for slot in &sent {
            pacer.throttled(slot);
        }
        assert!((pacer.rate() - 14.0).abs() < 1e-9, "slowed once for one wave: {}", pacer.rate());
        // Answers to requests sent before the slow-down say nothing about the new rate.
        pacer.answered(&sent[0]);
        assert!((pacer.rate() - 14.0).abs() < 1e-9);
        let later = pacer.until_ready().await;
        pacer.throttled(&later);
        assert!((pacer.rate() - 9.8).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_pacer_is_back_at_its_ceiling_within_ten_seconds_of_answers() {
        let pacer = Pacer::new(30);
        let throttled = send_for(&pacer, Duration::from_secs(20), Some(3.0)).await;
        assert!(pacer.rate() < 6.0, "held near a 3 TPS contract: {}", pacer.rate());
        assert!(throttled.iter().filter(|(_, t)| *t).count() >= 5);
        let started = Instant::now();
        let mut best_answered = pacer.rate();
        let until = started + Duration::from_secs(10);
        while Instant::now() < until && pacer.rate() < 30.0 / 1.05 {
            let slot = pacer.until_ready().await;
            // Never more than one probing step above what Leadspace last accepted.
            assert!(slot.rate <= best_answered * GROWTH + 1e-9, "{} after {}", slot.rate, best_answered);
            pacer.answered(&slot);
            best_answered = best_answered.max(slot.rate);
        }
        assert!((pacer.rate() - 30.0 / 1.05).abs() < 1e-9, "back at the ceiling: {}", pacer.rate());
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_steady_lower_contract_the_limit_is_probed_every_few_seconds_not_every_round_trip() {
        let pacer = Pacer::new(30);
        send_for(&pacer, Duration::from_secs(10), Some(5.0)).await;
        let sent = send_for(&pacer, Duration::from_secs(60), Some(5.0)).await;
        let throttled = sent.iter().filter(|(_, t)| *t).count();
        // About one probe per PROBE_AFTER and the round trips after it: well under one in ten.
        assert!(throttled * 10 < sent.len(), "{throttled} of {} throttled", sent.len());
        assert!(throttled >= 5, "it keeps probing: {throttled}");
        let answered = sent.iter().filter(|(_, t)| !*t).count() as f64 / 60.0;
        assert!(answered > 3.5, "runs close under the contract: {answered:.1} TPS answered");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_after_a_lull_does_not_speed_the_pacer_up() {
        let pacer = Pacer::new(30);
        let first = pacer.until_ready().await;
        pacer.throttled(&first);
        let slowed = pacer.rate();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(2)).await;
            let slot = pacer.until_ready().await;
            pacer.answered(&slot);
        }
        assert!((pacer.rate() - slowed).abs() < 1e-9, "one request now and then proves no rate: {}", pacer.rate());
    }
}
