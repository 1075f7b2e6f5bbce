//! The scale scenarios: one file, one fresh function process, one emulator each. For each it
//! prints rows/s, the function's peak RSS, Leadspace requests and 429s, the emulator's floor
//! and the throughput against it (floor / seconds, 1.00 at best), what limited the run, and the
//! function's S3 requests by kind, results and input apart from working state (the answer
//! journal, the kept answers and the leases under `_state/`). `BENCH_RUNS=N` repeats each
//! scenario and adds the median and range.
//!
//! The S3 requests are counted by a proxy in this process (`s3_tally.rs`) that the function's
//! `AWS_ENDPOINT_URL` names. `BENCH_S3_PROXY=0` leaves it out (the function talks to moto
//! directly), to see what the extra hop costs the headline figures.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use leadspace_emulator::{Emulator, Knobs, Stats};
use serde_json::json;

use crate::runtime::{Answer, Function};
use crate::s3_tally::{Area, Counts, S3Tally, Tally};
use crate::{Bench, Error, TOKEN, bulk_ready_seconds, floor_seconds, mib, selected};

/// The stand-in the issue measures against: a bulk is ready 0.5 s after submission plus 1 ms
/// per record (1.0 s for 500 records), at 30 TPS.
fn leadspace_30_tps(polls_count: bool) -> Knobs {
    Knobs {
        tps_limit: Some(30),
        bulk_ready_after_ms: 500,
        bulk_ready_per_record_us: 1_000,
        polls_count,
        ..Knobs::default()
    }
}

struct Scale {
    /// What `scripts/bench.sh <prefix>` matches, and the start of the printed name.
    tag: &'static str,
    title: &'static str,
    rows: u64,
    companies: u64,
    mode: &'static str,
    function_tps: u32,
    knobs: Knobs,
    /// Extra environment for the function.
    env: &'static [(&'static str, &'static str)],
    /// Peak RSS (MiB) and function CPU (CPU-s) aimed at, printed beside the figures.
    targets: Option<(f64, f64)>,
}

impl Scale {
    fn name(&self) -> String {
        format!("{}: {}", self.tag, self.title)
    }

    /// A key-safe form of the tag: "a'-np" is "a-prime-np".
    fn file_tag(&self) -> String {
        self.tag.replace('\'', "-prime")
    }
}

fn scenarios() -> Vec<Scale> {
    // The function's switch for a contract that excludes polls (ignored by a function that
    // does not know it yet).
    const POLLS_NOT_COUNTED: &[(&str, &str)] = &[("LEADSPACE_COUNT_POLLS", "false")];
    let bulk = |tag, title, companies, polls_count: bool| Scale {
        tag,
        title,
        rows: companies,
        companies,
        mode: "bulk",
        function_tps: 30,
        knobs: leadspace_30_tps(polls_count),
        env: if polls_count { &[] } else { POLLS_NOT_COUNTED },
        targets: None,
    };
    vec![
        // First: the bench's first figure should come in seconds.
        bulk("a", "20,000 companies, bulk, 30 TPS", 20_000, true),
        bulk("a'", "100,000 companies, bulk, 30 TPS", 100_000, true),
        bulk("a-np", "20,000 companies, bulk, polls not counted", 20_000, false),
        bulk("a'-np", "100,000 companies, bulk, polls not counted", 100_000, false),
        Scale {
            tag: "b",
            title: "1,000 companies, single, 30 TPS, 100 ms",
            rows: 1_000,
            companies: 1_000,
            mode: "single",
            function_tps: 30,
            knobs: Knobs { tps_limit: Some(30), latency_ms: 100, ..Knobs::default() },
            env: &[],
            targets: None,
        },
        Scale {
            tag: "c",
            title: "1,000,000 rows, 200,000 companies, instant",
            rows: 1_000_000,
            companies: 200_000,
            mode: "bulk",
            function_tps: 10_000,
            knobs: Knobs::default(),
            env: &[],
            targets: Some((128.0, 3.5)),
        },
    ]
}

/// A CSV of `rows` rows over `companies` distinct companies (with websites and cities, and a
/// notes column that is never sent).
pub fn input(rows: u64, companies: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(rows as usize * 100);
    writeln!(out, "Id,Company Name,Website,City,Notes")?;
    let cities = ["Paris", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague"];
    for i in 0..rows {
        let c = (i * 7_919) % companies;
        writeln!(
            out,
            "{i},Bench Company {c},bench{c}.example.com,{},\"Renewal due, call back in Q{} about seats\"",
            cities[(c % 8) as usize],
            i % 4 + 1
        )?;
    }
    Ok(out)
}

/// The table's header, shared with scenario d.
pub fn print_header() {
    println!(
        "{:<52} {:>9} {:>8} {:>8} {:>8} {:>5} {:>5} {:>6} {:>8}",
        "scenario", "rows", "seconds", "rows/s", "peak MiB", "reqs", "429s", "floor", "vs floor"
    );
}

/// One row of the table. `floor` is the emulator's least time; "vs floor" is floor / seconds.
pub fn print_row(name: &str, rows: u64, answer: &Answer, stats: &Stats, floor: Option<f64>) {
    let seconds = answer.seconds();
    let (floor, ratio) = match floor {
        Some(floor) => (format!("{floor:.2}"), format!("{:.2}", floor / seconds)),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{name:<52} {rows:>9} {seconds:>8.2} {:>8.0} {:>8.1} {:>5} {:>5} {floor:>6} {ratio:>8}",
        rows as f64 / seconds,
        mib(answer.peak_rss_kib),
        stats.requests,
        stats.throttled
    );
}

/// Which limit the run met, from its figures: the TPS limit when the requests it counted need
/// most of the time at that rate; else bulk readiness (bulk mode under a limit) unless a
/// process was busy most of the time; else the function's CPU, or this harness's (the
/// emulator's and the proxy's: a figure about the bench, not the function); else what is left,
/// moto and the shared cores.
pub fn limited_by(mode: &str, knobs: &Knobs, stats: &Stats, answer: &Answer) -> String {
    let seconds = answer.seconds();
    let cpu = answer.function_cpu;
    if let Some(tps) = knobs.tps_limit {
        let counted = if knobs.polls_count { stats.requests } else { stats.requests.saturating_sub(stats.polls) };
        let needed = counted as f64 / f64::from(tps);
        let what = if knobs.polls_count { "requests" } else { "requests, polls not counted" };
        if needed >= 0.6 * seconds {
            return format!(
                "limited by Leadspace's {tps} TPS ({counted} {what} need {needed:.1} s of the {seconds:.1} s)"
            );
        }
        let harness_bound = answer.harness_cpu >= 0.8 * seconds;
        if cpu < 0.8 * seconds && !harness_bound && mode == "bulk" {
            let ready = bulk_ready_seconds(crate::BULK_SIZE, knobs);
            return format!(
                "limited by bulk readiness (a bulk of 500 is ready {ready:.1} s after submission; the {counted} {what} \
                 need {needed:.1} s of the {seconds:.1} s at {tps} TPS)"
            );
        }
    }
    if cpu >= 0.8 * seconds {
        format!("limited by the function's CPU ({cpu:.1} CPU-s of {seconds:.1} s)")
    } else if answer.harness_cpu >= 0.8 * seconds {
        format!(
            "limited by this harness (the emulator and the S3 proxy used {:.1} CPU-s of {seconds:.1} s; the function \
             {cpu:.1})",
            answer.harness_cpu
        )
    } else {
        format!(
            "limited by S3 (moto) and the shared cores (the function used {cpu:.1} CPU-s, the emulator and harness \
             {:.1}, of {seconds:.1} s)",
            answer.harness_cpu
        )
    }
}

/// The S3 requests of one run, as the proxy counted them. `since_proxy` is the time from the
/// proxy's start to the event's delivery, from which the timeline counts.
fn print_tally(tally: &Tally, since_proxy: Duration, invocation: Duration) {
    let state = tally.state();
    println!(
        "    S3 requests{:<18} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9}",
        "", "GET", "PUT", "LIST", "DELETE", "HEAD", "total", "not 2xx", "MiB sent", "summed s"
    );
    let row = |label: &str, c: &Counts| {
        println!(
            "      {:<27} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>9.2} {:>9.2}",
            label,
            c.get,
            c.put,
            c.list,
            c.delete,
            c.head,
            c.requests(),
            c.not_ok,
            c.bytes_sent as f64 / 1048576.0,
            c.busy.as_secs_f64()
        );
    };
    row("results and input", &tally.results);
    row("working state (_state/)", &state);
    row("  journal", &tally.journal);
    row("  kept answers", &tally.kept);
    row("  leases", &tally.other_state);
    println!(
        "      other (Secrets Manager): {} requests, {:.2} s",
        tally.other.requests(),
        tally.other.busy.as_secs_f64()
    );
    println!(
        "    working state: {} S3 requests, {:.2} MiB written, {:.2} s of request time summed ({:.2} s with at least \
         one in flight); they overlap one another and the rest of the run: an upper bound of the time they add",
        state.requests(),
        state.bytes_sent as f64 / 1048576.0,
        state.busy.as_secs_f64(),
        tally.state_in_flight().as_secs_f64()
    );
    // When, in the invocation's seconds: shows which of that time stands alone (a burst after the
    // last result, say) rather than beside the enrichment.
    let at = |d: Duration| d.saturating_sub(since_proxy).as_secs_f64();
    let windows: Vec<String> = tally
        .state_windows()
        .iter()
        .map(|w| {
            let area = match w.area {
                Area::Journal => "journal",
                Area::Kept => "kept answers",
                _ => "leases",
            };
            format!("{area} {} x{} {:.1}-{:.1} s", w.kind.name(), w.requests, at(w.first), at(w.last))
        })
        .collect();
    println!(
        "    working state, from each group's first request to its last, in the invocation's {:.1} s: {}",
        invocation.as_secs_f64(),
        windows.join(", ")
    );
}

/// The figures `BENCH_RUNS` summarises.
struct Measured {
    seconds: f64,
    ratio: Option<f64>,
    cpu: f64,
    peak_mib: f64,
}

/// Median and range of one figure over the runs.
fn spread(values: impl Iterator<Item = f64>) -> Option<(f64, f64, f64)> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let (first, last) = (*values.first()?, *values.last()?);
    Some((values[values.len() / 2], first, last))
}

fn print_median(runs: &[Measured]) {
    let show = |values: Option<(f64, f64, f64)>, unit: &str, digits: usize| match values {
        Some((median, min, max)) => format!("{median:.digits$}{unit} ({min:.digits$}-{max:.digits$})"),
        None => "-".into(),
    };
    let ratios = runs.iter().filter_map(|m| m.ratio);
    println!(
        "    median of {} runs (min-max): {}, vs floor {}, function CPU {}, peak {}",
        runs.len(),
        show(spread(runs.iter().map(|m| m.seconds)), " s", 2),
        show(spread(ratios), "", 2),
        show(spread(runs.iter().map(|m| m.cpu)), " CPU-s", 1),
        show(spread(runs.iter().map(|m| m.peak_mib)), " MiB", 1)
    );
}

async fn run_once(bench: &Bench, scenario: &Scale, body: &[u8], run: usize) -> Result<Measured, Error> {
    let emulator = Emulator::start(Knobs { token: TOKEN.into(), ..scenario.knobs.clone() }).await?;
    // A key per run: a second run of the same key would find the first one's output and skip.
    let key = format!("incoming/{}-{run}.csv", scenario.file_tag());
    bench.moto.put_object(&bench.bucket, &key, body.to_vec()).await?;
    // The function reaches moto through the counting proxy (unless BENCH_S3_PROXY=0).
    let proxy = if bench.count_s3 { Some(S3Tally::start(bench.moto.endpoint()).await?) } else { None };
    let aws_endpoint = proxy.as_ref().map_or_else(|| bench.moto.endpoint().to_string(), S3Tally::endpoint);
    let mut extra =
        vec![("LEADSPACE_TPS", scenario.function_tps.to_string()), ("LEADSPACE_MODE", scenario.mode.into())];
    extra.extend(scenario.env.iter().map(|(k, v)| (*k, v.to_string())));
    let env = bench.env(&emulator.base_url(), &aws_endpoint, &extra);

    let mut function = Function::start(&bench.binary, &env).await?;
    let answer = function.invoke(json!({"action": "enrich", "bucket": bench.bucket, "key": key})).await?;
    drop(function);

    let stats = emulator.stats();
    let result = &answer.response["results"][0];
    let rows = result["rows"]["total"].as_u64().unwrap_or(0);
    let floor = floor_seconds(scenario.mode, scenario.companies, &scenario.knobs);
    print_row(&scenario.name(), rows, &answer, &stats, floor);
    println!("    {}", limited_by(scenario.mode, &scenario.knobs, &stats, &answer));
    let targets = match scenario.targets {
        Some((rss, cpu)) => format!(
            "; peak RSS {:.1} MiB (target <= {rss:.0} MiB), function CPU {:.1} CPU-s (target <= {cpu}; {:.1} of it \
             in the kernel)",
            mib(answer.peak_rss_kib),
            answer.function_cpu,
            answer.function_system_cpu
        ),
        None => String::new(),
    };
    println!(
        "    input {:.1} MiB; status {}; {} records sent for {} companies; CPU: function {:.1} s, emulator and \
         harness{} {:.1} s{targets}",
        body.len() as f64 / 1048576.0,
        result["status"].as_str().unwrap_or("?"),
        stats.records_received,
        scenario.companies,
        answer.function_cpu,
        if proxy.is_some() { " (with the S3 proxy)" } else { "" },
        answer.harness_cpu
    );
    match &proxy {
        Some(proxy) => {
            let tally = proxy.tally();
            let invocation = answer.answered_at - answer.delivered_at;
            print_tally(&tally, answer.delivered_at.saturating_duration_since(proxy.started()), invocation);
            // BENCH_S3_TRACE=DIR writes every S3 request of each scenario to DIR/<scenario>.csv.
            if let Ok(dir) = std::env::var("BENCH_S3_TRACE") {
                let path = Path::new(&dir).join(format!("{}-{run}.csv", scenario.file_tag()));
                tally.write_csv(&path)?;
                println!("    every S3 request: {}", path.display());
            }
        }
        None => println!("    S3 requests not counted (BENCH_S3_PROXY=0: the function talks to moto directly)"),
    }
    if result["status"] != "complete" {
        println!("    response: {}", answer.response);
    }
    Ok(Measured {
        seconds: answer.seconds(),
        ratio: floor.map(|f| f / answer.seconds()),
        cpu: answer.function_cpu,
        peak_mib: mib(answer.peak_rss_kib),
    })
}

/// Every selected scale scenario, `runs` times each.
pub async fn run_all(bench: &Bench, only: Option<&str>, runs: usize) -> Result<(), Error> {
    let chosen: Vec<Scale> = scenarios().into_iter().filter(|s| selected(only, s.tag)).collect();
    if chosen.is_empty() {
        return Ok(());
    }
    print_header();
    for scenario in chosen {
        let body = input(scenario.rows, scenario.companies)?;
        let mut measured = Vec::with_capacity(runs);
        for run in 1..=runs {
            measured.push(run_once(bench, &scenario, &body, run).await?);
        }
        if runs > 1 {
            print_median(&measured);
        }
    }
    Ok(())
}
