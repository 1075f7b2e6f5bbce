//! `leadspace-bench`: the project's measured figures. The function's release binary runs the
//! way Lambda runs it (a separate process polling a Runtime API served here, `runtime.rs`)
//! against moto and the Leadspace emulator, on each scenario in turn:
//!
//! - a, a', a-np, a'-np, b, c (`scale.rs`): seconds, rows/s, peak RSS, Leadspace requests and
//!   429s, the time against the emulator's floor, what limited the run, and the function's S3
//!   requests by kind (`s3_tally.rs`);
//! - d (`throttle.rs`): one warm process given a file under a 3 TPS limit, then one at 30 TPS:
//!   how soon its request rate recovers;
//! - cold start and binary size;
//! - faults (`faults.rs`): 20% 5xx and a 5 TPS limit under a function set to 25 TPS.
//!
//! Run through `scripts/bench.sh` (`make bench`), which builds the function's release binary and
//! this one, starts moto, and passes its arguments on: `leadspace-bench c` runs only the
//! scenarios whose tag starts with `c`.

mod faults;
mod moto;
mod runtime;
mod s3_tally;
mod scale;
mod throttle;

#[path = "../../tests/support/forward.rs"]
mod forward;

use std::path::PathBuf;

use leadspace_emulator::Knobs;
use serde_json::json;

use moto::Moto;
use runtime::Function;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The token the emulators accept and the secret holds.
const TOKEN: &str = "bench-token";
/// Records per bulk, the function's default BATCH_SIZE and the emulator's limit.
const BULK_SIZE: u64 = 500;

/// What every scenario shares: moto, the bucket and secret made there, the function's binary.
pub struct Bench {
    moto: Moto,
    bucket: String,
    secret: String,
    binary: PathBuf,
    /// Whether the scale scenarios put the counting S3 proxy between the function and moto.
    count_s3: bool,
}

impl Bench {
    /// The function's environment: the emulator at `leadspace`, S3 and Secrets Manager at
    /// `aws_endpoint` (moto or the counting proxy), then `extra` (which may override).
    fn env(
        &self,
        leadspace: &str,
        aws_endpoint: &str,
        extra: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("LEADSPACE_SECRET_ID", self.secret.clone()),
            ("LEADSPACE_BASE_URL", leadspace.to_string()),
            ("LEADSPACE_ALLOW_HTTP", "true".into()),
            ("DATA_SHARING_CONSENT", "true".into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_ENDPOINT_URL", aws_endpoint.to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ];
        env.extend(extra.iter().cloned());
        env
    }
}

/// The least time the emulator's limits allow for `companies` companies in `mode`; `None`
/// without a TPS limit. Single: one request per company within the limit. Bulk with polls
/// counted: a submission and one poll per bulk within the limit (and no less than one bulk's
/// readiness). Bulk with polls not counted: the submissions within the limit, then the last
/// bulk's readiness.
pub fn floor_seconds(mode: &str, companies: u64, knobs: &Knobs) -> Option<f64> {
    let tps = f64::from(knobs.tps_limit?);
    if mode == "single" {
        return Some((companies as f64 / tps).max(knobs.latency_ms as f64 / 1000.0));
    }
    let bulks = companies.div_ceil(BULK_SIZE);
    let ready = bulk_ready_seconds(companies.min(BULK_SIZE), knobs);
    let floor = if knobs.polls_count { ((2 * bulks) as f64 / tps).max(ready) } else { bulks as f64 / tps + ready };
    Some(floor)
}

/// How long a bulk of `records` takes to be ready at the emulator.
pub fn bulk_ready_seconds(records: u64, knobs: &Knobs) -> f64 {
    (knobs.bulk_ready_after_ms as f64 / 1000.0 + (records * knobs.bulk_ready_per_record_us) as f64 / 1e6)
        .max(knobs.latency_ms as f64 / 1000.0)
}

/// Whether the command line selected `tag` (no argument selects everything).
fn selected(only: Option<&str>, tag: &str) -> bool {
    only.is_none_or(|o| tag.starts_with(o))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Process start to the first answer, on an invocation that reads one summary.
async fn cold_start(bench: &Bench) -> Result<(), Error> {
    let env = bench.env("http://127.0.0.1:9", bench.moto.endpoint(), &[]);
    let mut colds = Vec::new();
    for _ in 0..5 {
        let mut function = Function::start(&bench.binary, &env).await?;
        let answer = function.invoke(json!({"action": "status", "bucket": bench.bucket})).await?;
        let init = function.init().unwrap_or_default();
        colds.push((answer.answered_at - function.started(), init, answer.peak_rss_kib));
    }
    colds.sort_by_key(|c| c.0);
    let (cold, init, rss) = colds[colds.len() / 2];
    println!(
        "cold start (median of 5): {:.1} ms to ready (init), {:.1} ms to the first answer (a status call); peak {:.1} MiB",
        init.as_secs_f64() * 1000.0,
        cold.as_secs_f64() * 1000.0,
        mib(rss)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::var("MOTO_ENDPOINT").map_err(|_| "set MOTO_ENDPOINT (scripts/bench.sh does)")?;
    let binary = PathBuf::from(
        std::env::var("BENCH_FUNCTION_BINARY").map_err(|_| "set BENCH_FUNCTION_BINARY (scripts/bench.sh does)")?,
    );
    if !binary.is_file() {
        return Err(
            format!("BENCH_FUNCTION_BINARY={} is not a file: build the function first", binary.display()).into()
        );
    }
    let only: Option<String> = std::env::args().nth(1);
    let runs: usize = match std::env::var("BENCH_RUNS") {
        Err(_) => 1,
        Ok(text) => {
            text.parse().ok().filter(|n| *n > 0).ok_or(format!("BENCH_RUNS={text:?} is not a number of runs"))?
        }
    };
    if let Some(cpus) = runtime::cpu_limit()? {
        println!("the function is limited to {cpus} CPU (BENCH_CPU_LIMIT)");
    }
    let moto = Moto::new(&endpoint)?;
    let bucket = format!("bench-{}", std::process::id());
    moto.create_bucket(&bucket).await?;
    let secret = format!("bench-token-{}", std::process::id());
    moto.create_secret(&secret, TOKEN).await?;
    let bench =
        Bench { moto, bucket, secret, binary, count_s3: !std::env::var("BENCH_S3_PROXY").is_ok_and(|v| v == "0") };

    scale::run_all(&bench, only.as_deref(), runs).await?;
    if selected(only.as_deref(), "d") {
        throttle::run(&bench).await?;
    }
    cold_start(&bench).await?;
    println!(
        "release binary: {:.1} MiB ({})",
        std::fs::metadata(&bench.binary)?.len() as f64 / 1048576.0,
        bench.binary.display()
    );
    if selected(only.as_deref(), "faults") {
        faults::run(&bench).await?;
    }
    Ok(())
}
