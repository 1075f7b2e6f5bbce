//! Scenario d, after a throttle: one warm function process (as a warm Lambda container keeps
//! its pacer between invocations) is given a file while Leadspace allows 3 TPS, which answers
//! 429 and drives its pacer down; then the limit is raised to 30 TPS and it is given a second
//! file. What matters is the second file: its time against the floor, its 429s, its peak
//! request rate, and how soon after its start the rate first reaches 90% of what the function
//! is set to send (LEADSPACE_TPS / 1.05, the pacer's margin). The target is within 10 s.

use std::time::{Duration, Instant};

use leadspace_emulator::{Arrival, Emulator, Knobs};
use serde_json::json;

use crate::runtime::Function;
use crate::scale::{input, limited_by, print_header, print_row};
use crate::{Bench, Error, TOKEN, floor_seconds};

const FUNCTION_TPS: u32 = 30;
const THROTTLED_TPS: u32 = 3;
const THROTTLED_COMPANIES: u64 = 3_000;
const COMPANIES: u64 = 20_000;

/// The largest number of requests within any one second (a sliding window over the arrivals,
/// which are in order), and the end of the first window that held at least `target`, measured
/// from `start`.
fn peak_and_first_reaching(arrivals: &[Instant], start: Instant, target: f64) -> (usize, Option<Duration>) {
    let mut peak = 0;
    let mut reached = None;
    let mut first = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        let in_window = last + 1 - first;
        peak = peak.max(in_window);
        if reached.is_none() && in_window as f64 >= target {
            reached = Some(at.duration_since(start));
        }
    }
    (peak, reached)
}

pub async fn run(bench: &Bench) -> Result<(), Error> {
    let knobs = Knobs {
        token: TOKEN.into(),
        tps_limit: Some(THROTTLED_TPS),
        bulk_ready_after_ms: 500,
        bulk_ready_per_record_us: 1_000,
        ..Knobs::default()
    };
    let emulator = Emulator::start(knobs.clone()).await?;
    let throttled_key = "incoming/d-throttled.csv";
    let key = "incoming/d-after.csv";
    bench.moto.put_object(&bench.bucket, throttled_key, input(THROTTLED_COMPANIES, THROTTLED_COMPANIES)?).await?;
    bench.moto.put_object(&bench.bucket, key, input(COMPANIES, COMPANIES)?).await?;
    let extra = [("LEADSPACE_TPS", FUNCTION_TPS.to_string()), ("LEADSPACE_MODE", "bulk".to_string())];
    let env = bench.env(&emulator.base_url(), bench.moto.endpoint(), &extra);
    let mut function = Function::start(&bench.binary, &env).await?;

    let first = function.invoke(json!({"action": "enrich", "bucket": bench.bucket, "key": throttled_key})).await?;
    let throttled = emulator.stats();
    println!(
        "d: after a throttle: first {THROTTLED_COMPANIES} companies under a {THROTTLED_TPS} TPS limit (function at \
         {FUNCTION_TPS}): {:.1} s, {} requests, {} 429s, status {}{}",
        first.seconds(),
        throttled.requests,
        throttled.throttled,
        first.response["results"][0]["status"].as_str().unwrap_or("?"),
        if throttled.throttled == 0 {
            " (no 429: the pacer was not driven down, this run measures nothing)"
        } else {
            ""
        }
    );

    emulator.set_tps_limit(Some(FUNCTION_TPS));
    let before = emulator.stats();
    let second = function.invoke(json!({"action": "enrich", "bucket": bench.bucket, "key": key})).await?;
    drop(function);
    let stats = emulator.stats().since(&before);
    let arrivals: Vec<Instant> = emulator
        .arrivals()
        .iter()
        .filter(|a: &&Arrival| a.at >= second.delivered_at && a.at <= second.answered_at)
        .map(|a| a.at)
        .collect();
    let after = Knobs { tps_limit: Some(FUNCTION_TPS), ..knobs };
    let rows = second.response["results"][0]["rows"]["total"].as_u64().unwrap_or(0);
    print_header();
    print_row(
        "d: 20,000 companies, bulk, 30 TPS, warm after 3 TPS",
        rows,
        &second,
        &stats,
        floor_seconds("bulk", COMPANIES, &after),
    );
    let target = 0.9 * f64::from(FUNCTION_TPS) / 1.05;
    let (peak, reached) = peak_and_first_reaching(&arrivals, second.delivered_at, target);
    match reached {
        Some(_) => println!("    {}", limited_by("bulk", &after, &stats, &second)),
        // Leadspace allowed 30 TPS and the function never came near: its own pacing held it.
        None => println!(
            "    limited by the function's pacing after the throttle (at most {peak} requests in one second, with \
             {FUNCTION_TPS} allowed)"
        ),
    }
    let reached = match reached {
        Some(at) => format!("after {:.1} s", at.as_secs_f64()),
        None => format!("never, in its {:.1} s", second.seconds()),
    };
    println!(
        "    peak {peak} requests/s; 90% of {:.1}/s ({target:.1} requests in one second) reached: {reached} \
         (target: within 10 s); status {}",
        f64::from(FUNCTION_TPS) / 1.05,
        second.response["results"][0]["status"].as_str().unwrap_or("?")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_read_over_a_sliding_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 2 in the first half second, then 4 within 300 ms from 1.5 s.
        let arrivals = [at(100), at(400), at(1_500), at(1_600), at(1_700), at(1_800)];
        assert_eq!(peak_and_first_reaching(&arrivals, t0, 3.0), (4, Some(Duration::from_millis(1_700))));
        assert_eq!(peak_and_first_reaching(&arrivals, t0, 5.0), (4, None));
        assert_eq!(peak_and_first_reaching(&[], t0, 1.0), (0, None));
    }
}
