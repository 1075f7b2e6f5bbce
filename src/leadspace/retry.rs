//! The one retry policy: capped exponential backoff with full jitter, a maximum number of
//! attempts and an overall time budget (AWS Builders' Library, "Timeouts, retries and backoff
//! with jitter").

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub budget: Duration,
    pub request_timeout: Duration,
    /// The first poll's delay until bulks have been seen ready (see `PollTiming`).
    pub poll_first_delay: Duration,
    /// The longest wait between two polls of a bulk.
    pub poll_max_delay: Duration,
    /// A bulk still processing after this long is given up on.
    pub poll_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            budget: Duration::from_secs(90),
            request_timeout: Duration::from_secs(30),
            poll_first_delay: Duration::from_millis(500),
            poll_max_delay: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 for the first retry): uniformly random in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]`, so clients that failed together do not
    /// retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self.base_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exponential.min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_capped_exponential_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 1..12 {
            let ceiling = (policy.base_delay * 2u32.pow(retry - 1)).min(policy.max_delay);
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let policy = RetryPolicy::default();
        let delays: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(5)).collect();
        assert!(delays.len() > 10);
    }
}
