//! Scale and cost figures: the release binary of the function, run the way Lambda runs it (a
//! separate process polling a Runtime API, served here), against moto and the Leadspace
//! emulator. For each scenario it prints rows/s, the function's peak RSS, Leadspace requests,
//! 429s, and the time against the emulator's theoretical minimum; then the function's S3
//! requests by kind, for results and input apart from working state (the answer journal, the
//! kept answers and the leases under `_state/`), with the bytes and the time working state cost.
//! Then cold start and binary size. Run through `scripts/bench.sh` (`make bench`), which builds
//! the binary and starts moto.
//!
//! Measuring a separate process keeps the emulator's and this harness's memory out of the
//! function's peak RSS, which is read from the kernel (`VmHWM`) when the invocation answers.
//!
//! The S3 requests are counted by a proxy in this process (`bench/s3_tally.rs`) that the
//! function's `AWS_ENDPOINT_URL` names. `BENCH_S3_PROXY=0` leaves it out (the function talks to
//! moto directly), to see what the extra hop costs the headline figures.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use leadspace_emulator::{Emulator, Knobs};
use serde_json::{Value, json};

#[path = "../tests/support/forward.rs"]
mod forward;
#[path = "bench/s3_tally.rs"]
mod s3_tally;

use s3_tally::{Area, Counts, S3Tally, Tally};

type Error = Box<dyn std::error::Error + Send + Sync>;

const TOKEN: &str = "bench-token";
const BULK_SIZE: u64 = 500;

/// A minimal Lambda Runtime API: hands out one event, records when the function asked for it
/// and when it answered.
#[derive(Default)]
struct Invocation {
    event: Option<Value>,
    asked_at: Option<Instant>,
    delivered_at: Option<Instant>,
    answered: Option<(Instant, Value)>,
}

type Shared = Arc<Mutex<Invocation>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Invocation> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next(State(shared): State<Shared>) -> (HeaderMap, String) {
    let event = {
        let mut invocation = lock(&shared);
        invocation.asked_at.get_or_insert_with(Instant::now);
        invocation.event.take()
    };
    let Some(event) = event else {
        // One invocation per process: the second poll waits until the process is stopped.
        std::future::pending::<()>().await;
        unreachable!()
    };
    lock(&shared).delivered_at = Some(Instant::now());
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(900);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "bench-request".to_string()),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench".into()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, event.to_string())
}

async fn answer(State(shared): State<Shared>, UrlPath(_id): UrlPath<String>, body: String) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    lock(&shared).answered = Some((Instant::now(), value));
    "{}"
}

async fn init_error(State(shared): State<Shared>, body: String) -> &'static str {
    lock(&shared).answered = Some((Instant::now(), json!({"init_error": body})));
    "{}"
}

async fn runtime_api(event: Value) -> Result<(SocketAddr, Shared), Error> {
    let shared: Shared = Arc::new(Mutex::new(Invocation { event: Some(event), ..Invocation::default() }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(answer))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(answer))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, shared))
}

/// One run of the function binary on one event.
struct Run {
    init: Duration,
    cold_start: Duration,
    invocation: Duration,
    peak_rss_kib: u64,
    /// CPU seconds used by the function's process, and by this harness (the emulator) while
    /// the function ran.
    function_cpu: f64,
    harness_cpu: f64,
    response: Value,
    /// When the event was handed to the function.
    delivered_at: Instant,
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`: on a
/// shared machine, wall time alone cannot tell the function's cost from its neighbours'.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// BENCH_CPU_LIMIT=0.3 runs the function on that many CPUs, as a Lambda function gets about one
/// vCPU per 1,769 MB of memory (so 0.3 is about 512 MB, 0.6 about 1,024 MB).
fn cpu_limit() -> Result<Option<f64>, Error> {
    match std::env::var("BENCH_CPU_LIMIT") {
        Err(_) => Ok(None),
        Ok(text) => match text.parse::<f64>() {
            Ok(cpus) if cpus > 0.0 => Ok(Some(cpus)),
            _ => Err(format!("BENCH_CPU_LIMIT={text:?} is not a positive number of CPUs (for example 0.3)").into()),
        },
    }
}

/// Moves the function's process into a CPU-limited cgroup (the cgroup-v1 cpu controller, or
/// cgroup v2's cpu.max), which throttles it to `cpus` of one CPU's time.
fn confine(pid: u32, cpus: f64) -> Result<(), Error> {
    let period = 100_000_u64;
    let quota = (cpus * period as f64).round() as u64;
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    let (group, limits): (PathBuf, Vec<(&str, String)>) = if v1.join("cpu.cfs_quota_us").exists() {
        let group = v1.join(format!("leadspace-bench-{quota}"));
        (group, vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.to_string())])
    } else {
        let group = Path::new("/sys/fs/cgroup").join(format!("leadspace-bench-{quota}"));
        (group, vec![("cpu.max", format!("{quota} {period}"))])
    };
    let failed = |what: &str, e: std::io::Error| -> Error {
        format!("BENCH_CPU_LIMIT needs a writable cgroup ({what} {}: {e}); run as root", group.display()).into()
    };
    std::fs::create_dir_all(&group).map_err(|e| failed("creating", e))?;
    for (file, value) in limits {
        std::fs::write(group.join(file), value).map_err(|e| failed(file, e))?;
    }
    std::fs::write(group.join("cgroup.procs"), pid.to_string()).map_err(|e| failed("cgroup.procs", e))?;
    Ok(())
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

async fn run_function(binary: &Path, env: &HashMap<&str, String>, event: Value) -> Result<Run, Error> {
    let (addr, shared) = runtime_api(event).await?;
    let show_log = std::env::var("BENCH_LOG").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let harness_cpu_before = cpu_seconds("self");
    let mut child: Child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "leadspace-enrich")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        // BENCH_LOG=1 shows the function's own log (INFO), to see where the time goes.
        .env("AWS_LAMBDA_LOG_LEVEL", if show_log { "INFO" } else { "WARN" })
        .stdout(if show_log { Stdio::inherit() } else { Stdio::null() })
        .stderr(Stdio::inherit())
        .spawn()?;
    if let Some(cpus) = cpu_limit()? {
        confine(child.id(), cpus)?;
    }
    let answered = loop {
        if let Some((at, value)) = lock(&shared).answered.take() {
            break (at, value);
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("the function exited with {status} before answering").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let peak_rss_kib = peak_rss_kib(child.id());
    let function_cpu = cpu_seconds(&child.id().to_string());
    let harness_cpu = cpu_seconds("self") - harness_cpu_before;
    child.kill()?;
    child.wait()?;
    let invocation = lock(&shared);
    let asked = invocation.asked_at.unwrap_or(started);
    let delivered = invocation.delivered_at.unwrap_or(asked);
    Ok(Run {
        init: asked - started,
        cold_start: answered.0 - started,
        invocation: answered.0 - delivered,
        peak_rss_kib,
        function_cpu,
        harness_cpu,
        response: answered.1,
        delivered_at: delivered,
    })
}

struct Scenario {
    name: &'static str,
    rows: u64,
    companies: u64,
    mode: &'static str,
    function_tps: u32,
    knobs: Knobs,
}

impl Scenario {
    /// The least time the emulator's limits allow: bulk needs a submission and one poll per 500
    /// companies, single one request per company, all within its TPS; and no bulk answers
    /// before it is ready.
    fn ceiling_seconds(&self) -> Option<f64> {
        let tps = f64::from(self.knobs.tps_limit?);
        let requests = if self.mode == "single" { self.companies } else { 2 * self.companies.div_ceil(BULK_SIZE) };
        let floor = self.knobs.bulk_ready_after_ms.max(self.knobs.latency_ms) as f64 / 1000.0;
        Some((requests as f64 / tps).max(floor))
    }
}

/// A CSV of `rows` rows over `companies` distinct companies (with websites and cities, and a
/// notes column that is never sent), streamed to a file.
fn write_input(path: &Path, rows: u64, companies: u64) -> Result<u64, Error> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
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
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn sdk(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "bench",
        )))
        .build()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "c" for "c: 1,000,000 rows...", "a-prime" for "a': ...".
fn scenario_tag(name: &str) -> String {
    name.split(':').next().unwrap_or("x").replace('\'', "-prime")
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

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::var("MOTO_ENDPOINT").map_err(|_| "set MOTO_ENDPOINT (scripts/bench.sh does)")?;
    let binary = PathBuf::from(
        std::env::var("BENCH_FUNCTION_BINARY").map_err(|_| "set BENCH_FUNCTION_BINARY (scripts/bench.sh does)")?,
    );
    let only: Option<String> = std::env::args().nth(1);
    let count_s3 = !std::env::var("BENCH_S3_PROXY").is_ok_and(|v| v == "0");
    if let Some(cpus) = cpu_limit()? {
        println!("the function is limited to {cpus} CPU (BENCH_CPU_LIMIT)");
    }
    let sdk = sdk(&endpoint);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = format!("bench-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await?;
    let secret = format!("bench-token-{}", std::process::id());
    aws_sdk_secretsmanager::Client::new(&sdk).create_secret().name(&secret).secret_string(TOKEN).send().await?;
    let work = tempfile::tempdir()?;

    let bulk_30 = Knobs { tps_limit: Some(30), bulk_ready_after_ms: 1_000, ..Knobs::default() };
    let scenarios = [
        Scenario {
            name: "a: 20,000 companies, bulk, 30 TPS",
            rows: 20_000,
            companies: 20_000,
            mode: "bulk",
            function_tps: 30,
            knobs: bulk_30.clone(),
        },
        Scenario {
            name: "a': 100,000 companies, bulk, 30 TPS",
            rows: 100_000,
            companies: 100_000,
            mode: "bulk",
            function_tps: 30,
            knobs: bulk_30,
        },
        Scenario {
            name: "b: 1,000 companies, single, 30 TPS, 100 ms",
            rows: 1_000,
            companies: 1_000,
            mode: "single",
            function_tps: 30,
            knobs: Knobs { tps_limit: Some(30), latency_ms: 100, ..Knobs::default() },
        },
        Scenario {
            name: "c: 1,000,000 rows, 200,000 companies, instant",
            rows: 1_000_000,
            companies: 200_000,
            mode: "bulk",
            function_tps: 10_000,
            knobs: Knobs::default(),
        },
    ];

    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7}",
        "scenario", "rows", "seconds", "rows/s", "peak MiB", "reqs", "429s", "minimum", "ratio"
    );
    for scenario in scenarios {
        if only.as_deref().is_some_and(|o| !scenario.name.starts_with(o)) {
            continue;
        }
        let emulator = Emulator::start(Knobs { token: TOKEN.into(), ..scenario.knobs.clone() }).await?;
        let key = format!("incoming/{}.csv", scenario_tag(scenario.name));
        let path = work.path().join("input.csv");
        let size = write_input(&path, scenario.rows, scenario.companies)?;
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&path).await?;
        s3.put_object().bucket(&bucket).key(&key).body(body).send().await?;
        // The function reaches moto through the counting proxy (unless BENCH_S3_PROXY=0).
        let proxy = if count_s3 { Some(S3Tally::start(&endpoint).await?) } else { None };
        let function_endpoint = proxy.as_ref().map_or_else(|| endpoint.clone(), S3Tally::endpoint);
        let env: HashMap<&str, String> = HashMap::from([
            ("LEADSPACE_SECRET_ID", secret.clone()),
            ("LEADSPACE_BASE_URL", emulator.base_url()),
            ("LEADSPACE_ALLOW_HTTP", "true".into()),
            ("DATA_SHARING_CONSENT", "true".into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_ENDPOINT_URL", function_endpoint),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("LEADSPACE_TPS", scenario.function_tps.to_string()),
            ("LEADSPACE_MODE", scenario.mode.into()),
        ]);

        let run = run_function(&binary, &env, json!({"action": "enrich", "bucket": bucket, "key": key})).await?;

        let stats = emulator.stats();
        let result = &run.response["results"][0];
        let rows = result["rows"]["total"].as_u64().unwrap_or(0);
        let seconds = run.invocation.as_secs_f64();
        let (minimum, ratio) = match scenario.ceiling_seconds() {
            Some(min) => (format!("{min:.1}"), format!("{:.2}x", seconds / min)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<46} {:>9} {:>9.1} {:>9.0} {:>9.1} {:>6} {:>8} {:>8} {:>7}",
            scenario.name,
            rows,
            seconds,
            rows as f64 / seconds,
            mib(run.peak_rss_kib),
            stats.requests,
            stats.throttled,
            minimum,
            ratio
        );
        println!(
            "    input {:.1} MiB; status {}; {} records sent for {} companies; CPU: function {:.1} s, emulator and \
             harness{} {:.1} s",
            size as f64 / 1048576.0,
            result["status"].as_str().unwrap_or("?"),
            stats.records_received,
            scenario.companies,
            run.function_cpu,
            if proxy.is_some() { " (with the S3 proxy)" } else { "" },
            run.harness_cpu
        );
        match &proxy {
            Some(proxy) => {
                let tally = proxy.tally();
                print_tally(&tally, run.delivered_at.saturating_duration_since(proxy.started()), run.invocation);
                // BENCH_S3_TRACE=DIR writes every S3 request of each scenario to DIR/<scenario>.csv.
                if let Ok(dir) = std::env::var("BENCH_S3_TRACE") {
                    let path = Path::new(&dir).join(format!("{}.csv", scenario_tag(scenario.name)));
                    tally.write_csv(&path)?;
                    println!("    every S3 request: {}", path.display());
                }
            }
            None => println!("    S3 requests not counted (BENCH_S3_PROXY=0: the function talks to moto directly)"),
        }
        if result["status"] != "complete" {
            println!("    response: {}", run.response);
        }
    }

    // Cold start: process start to the first answer, on an invocation that reads one summary.
    let env: HashMap<&str, String> = HashMap::from([
        ("LEADSPACE_SECRET_ID", secret.clone()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]);
    let mut colds = Vec::new();
    for _ in 0..5 {
        colds.push(run_function(&binary, &env, json!({"action": "status", "bucket": bucket})).await?);
    }
    colds.sort_by_key(|r| r.cold_start);
    let median = &colds[colds.len() / 2];
    println!(
        "cold start (median of 5): {:.1} ms to ready (init), {:.1} ms to the first answer (a status call); peak {:.1} MiB",
        median.init.as_secs_f64() * 1000.0,
        median.cold_start.as_secs_f64() * 1000.0,
        mib(median.peak_rss_kib)
    );
    println!("release binary: {:.1} MiB ({})", std::fs::metadata(&binary)?.len() as f64 / 1048576.0, binary.display());
    Ok(())
}
