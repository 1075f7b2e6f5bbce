//! Paces Leadspace requests: evenly spaced, never above the configured rate, and slower for a
//! while after Leadspace says 429 (multiplicative decrease, additive increase over time, as TCP
//! does), so a contract lower than LEADSPACE_TPS costs a few 429s rather than a storm of them.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The slowest the pacer goes after repeated 429s: one request every four seconds.
const MIN_RATE: f64 = 0.25;
/// What a 429 leaves of the rate (CUBIC's beta: gentler than halving, so the rate oscillates
/// close under the real limit).
const BACKOFF_FACTOR: f64 = 0.7;
/// Rate regained per second while Leadspace keeps answering, in requests per second.
const RECOVERY_PER_SECOND: f64 = 1.0;

#[derive(Debug)]
struct State {
    ceiling: f64,
    rate: f64,
    next_slot: Instant,
    last_recovery: Instant,
    /// Requests sent before the last slow-down do not slow it down again: they were already
    /// in flight when Leadspace first pushed back.
    slowed_at: Option<Instant>,
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
        let now = Instant::now();
        Pacer {
            state: Mutex::new(State { ceiling, rate: ceiling, next_slot: now, last_recovery: now, slowed_at: None }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a request may be sent and returns when that was, for `throttled`. Slots are
    /// not reserved ahead: a waiter wakes, checks the current rate and tries again, so a
    /// slow-down applies at once to everyone waiting instead of after a queue of stale slots.
    pub async fn until_ready(&self) -> Instant {
        loop {
            let wake_at = {
                let mut state = self.lock();
                let now = Instant::now();
                let interval = Duration::from_secs_f64(1.0 / state.rate);
                if now >= state.next_slot {
                    // Spacing from the actual send, not the planned slot: two requests are never
                    // closer than one interval, so no one-second window can hold too many.
                    state.next_slot = now + interval;
                    return now;
                }
                state.next_slot
            };
            tokio::time::sleep_until(wake_at).await;
        }
    }

    /// Leadspace answered a request sent at `sent_at` with 429: slow down, once per wave.
    pub fn throttled(&self, sent_at: Instant) {
        let mut state = self.lock();
        if state.slowed_at.is_none_or(|slowed_at| sent_at > slowed_at) {
            let now = Instant::now();
            state.rate = (state.rate * BACKOFF_FACTOR).max(MIN_RATE);
            state.slowed_at = Some(now);
            state.last_recovery = now;
            tracing::info!(requests_per_second = state.rate, "Leadspace throttled; slowing down");
        }
    }

    /// Leadspace answered: creep back towards the ceiling, by the time since the last step.
    pub fn answered(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.last_recovery).as_secs_f64();
        state.rate = (state.rate + RECOVERY_PER_SECOND * elapsed).min(state.ceiling);
        state.last_recovery = now;
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

    #[tokio::test(start_paused = true)]
    async fn after_a_pause_the_next_two_requests_are_still_a_full_interval_apart() {
        let pacer = Pacer::new(10);
        let interval = Duration::from_secs_f64(1.05 / 10.0);
        pacer.until_ready().await;
        tokio::time::advance(interval + interval / 2).await;
        let a = pacer.until_ready().await;
        let b = pacer.until_ready().await;
        assert!(b - a >= interval, "{:?}", b - a);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_of_429s_slows_down_once_and_answers_over_time_restore_the_rate() {
        let pacer = Pacer::new(21);
        let sent: Vec<Instant> = futures::future::join_all((0..5).map(|_| pacer.until_ready())).await;
        for at in &sent {
            pacer.throttled(*at);
        }
        assert!((pacer.rate() - 14.0).abs() < 1e-9, "slowed once for one wave: {}", pacer.rate());
        let later = pacer.until_ready().await;
        pacer.throttled(later);
        assert!((pacer.rate() - 9.8).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(3)).await;
        pacer.answered();
        assert!((pacer.rate() - 12.8).abs() < 1e-6, "one TPS regained per second: {}", pacer.rate());
        tokio::time::advance(Duration::from_secs(60)).await;
        pacer.answered();
        assert!((pacer.rate() - 20.0).abs() < 1e-9, "back to the ceiling, never above");
    }
}
