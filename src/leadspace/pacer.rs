//! Paces Leadspace requests: evenly spaced, never above the configured rate, and slower for a
//! while after Leadspace says 429 (additive increase, multiplicative decrease, as TCP does), so
//! a contract lower than LEADSPACE_TPS costs a few 429s rather than a storm of them.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The slowest the pacer goes after repeated 429s: one request every four seconds.
const MIN_RATE: f64 = 0.25;
/// Rate regained per answered request, in requests per second: ten answers buy one more TPS.
const RECOVERY_PER_SUCCESS: f64 = 0.1;

#[derive(Debug)]
struct State {
    ceiling: f64,
    rate: f64,
    next_slot: Instant,
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
        Pacer { state: Mutex::new(State { ceiling, rate: ceiling, next_slot: now, slowed_at: None }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for this request's slot and returns when it was, for `throttled`.
    pub async fn until_ready(&self) -> Instant {
        let slot = {
            let mut state = self.lock();
            let slot = state.next_slot.max(Instant::now());
            state.next_slot = slot + Duration::from_secs_f64(1.0 / state.rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
        slot
    }

    /// Leadspace answered a request sent at `sent_at` with 429: halve the rate, once per wave.
    pub fn throttled(&self, sent_at: Instant) {
        let mut state = self.lock();
        if state.slowed_at.is_none_or(|slowed_at| sent_at > slowed_at) {
            state.rate = (state.rate / 2.0).max(MIN_RATE);
            state.slowed_at = Some(Instant::now());
            tracing::info!(requests_per_second = state.rate, "Leadspace throttled; slowing down");
        }
    }

    /// Leadspace answered: creep back towards the ceiling.
    pub fn answered(&self) {
        let mut state = self.lock();
        state.rate = (state.rate + RECOVERY_PER_SUCCESS).min(state.ceiling);
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
    async fn a_wave_of_429s_halves_the_rate_once_and_answers_restore_it() {
        let pacer = Pacer::new(21);
        let sent: Vec<Instant> = futures::future::join_all((0..5).map(|_| pacer.until_ready())).await;
        for at in &sent {
            pacer.throttled(*at);
        }
        assert!((pacer.rate() - 10.0).abs() < 1e-9, "halved once for one wave: {}", pacer.rate());
        let later = pacer.until_ready().await;
        pacer.throttled(later);
        assert!((pacer.rate() - 5.0).abs() < 1e-9);
        for _ in 0..1000 {
            pacer.answered();
        }
        assert!((pacer.rate() - 20.0).abs() < 1e-9, "back to the ceiling, never above");
    }
}
