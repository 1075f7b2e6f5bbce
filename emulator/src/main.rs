//! `leadspace-emulator`: runs the emulator on a fixed port for the local demo.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;

use leadspace_emulator::{Emulator, Knobs};

const USAGE: &str = "\
leadspace-emulator: a loopback emulator of the Leadspace enrichment API

USAGE:
    leadspace-emulator [OPTIONS]

OPTIONS (each also read from env LEADSPACE_EMULATOR_<NAME>, e.g. LEADSPACE_EMULATOR_PORT;
a flag wins over the environment):
    --host ADDR                 address to bind            [default: 127.0.0.1]
    --port N                    port to bind (0 = any)     [default: 8787]
    --token T                   accepted bearer token      [default: test-token]
    --latency-ms N              delay before every answer  [default: 0]
    --tps N                     requests per second before 429 [default: unlimited]
    --credits N                 credit balance             [default: unlimited]
    --server-error-rate F       probability of 500/503     [default: 0]
    --record-error-rate F       probability of record error 1100 in a bulk [default: 0]
    --bulk-ready-ms N           bulk polls answer 204 this long [default: 0]
    --bulk-ready-per-record-us N  and this much longer per record of the bulk [default: 0]
    --polls-count BOOL          polls count against --tps (false: never 429) [default: true]
    --max-bulk-records N        largest bulk accepted      [default: 500]
    --seed N                    RNG seed                   [default: 42]
    -h, --help                  print this help
";

/// Every option takes a value; listed once so flags, env names and help stay in step.
const FLAGS: &[&str] = &[
    "host",
    "port",
    "token",
    "latency-ms",
    "tps",
    "credits",
    "server-error-rate",
    "record-error-rate",
    "bulk-ready-ms",
    "bulk-ready-per-record-us",
    "polls-count",
    "max-bulk-records",
    "seed",
];

struct Config {
    addr: SocketAddr,
    knobs: Knobs,
}

fn env_name(flag: &str) -> String {
    format!("LEADSPACE_EMULATOR_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// Returns `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
    // Environment first, then flags override.
    let mut values: Vec<(&str, String)> =
        FLAGS.iter().filter_map(|f| std::env::var(env_name(f)).ok().map(|v| (*f, v))).collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let Some(flag) = FLAGS.iter().find(|f| **f == name) else {
            return Err(format!("unknown flag `--{name}`"));
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("flag `--{name}` needs a value"))?,
        };
        values.push((flag, value));
    }

    let mut host = IpAddr::from([127, 0, 0, 1]);
    let mut port: u16 = 8787;
    let mut knobs = Knobs::default();
    for (flag, v) in values {
        match flag {
            "host" => host = parse(flag, &v)?,
            "port" => port = parse(flag, &v)?,
            "token" => knobs.token = v,
            "latency-ms" => knobs.latency_ms = parse(flag, &v)?,
            "tps" => knobs.tps_limit = Some(parse(flag, &v)?),
            "credits" => knobs.credits = Some(parse(flag, &v)?),
            "server-error-rate" => knobs.server_error_rate = parse_rate(flag, &v)?,
            "record-error-rate" => knobs.record_error_rate = parse_rate(flag, &v)?,
            "bulk-ready-ms" => knobs.bulk_ready_after_ms = parse(flag, &v)?,
            "bulk-ready-per-record-us" => knobs.bulk_ready_per_record_us = parse(flag, &v)?,
            "polls-count" => knobs.polls_count = parse(flag, &v)?,
            "max-bulk-records" => knobs.max_bulk_records = parse(flag, &v)?,
            "seed" => knobs.seed = parse(flag, &v)?,
            _ => return Err(format!("unknown flag `--{flag}`")),
        }
    }
    Ok(Some(Config { addr: SocketAddr::new(host, port), knobs }))
}

fn parse<T: FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("invalid value `{v}` for `--{flag}` (or {})", env_name(flag)))
}

fn parse_rate(flag: &str, v: &str) -> Result<f64, String> {
    let rate: f64 = parse(flag, v)?;
    if (0.0..=1.0).contains(&rate) { Ok(rate) } else { Err(format!("`--{flag}` must be between 0 and 1, got `{v}`")) }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("leadspace-emulator: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let emulator = match Emulator::start_on(config.addr, config.knobs).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("leadspace-emulator: cannot bind {}: {e}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    emulator.set_request_logging(true);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "leadspace-emulator listening on {}", emulator.base_url());
    let _ = out.flush();

    shutdown_signal().await;
    eprintln!("leadspace-emulator: shutting down");
    drop(emulator);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn flags_parse() {
        let c = parse_args(args(&[
            "--port=0",
            "--tps",
            "5",
            "--credits",
            "10",
            "--server-error-rate",
            "0.25",
            "--token",
            "abc",
            "--bulk-ready-per-record-us",
            "1000",
            "--polls-count=false",
        ]));
        let Ok(Some(c)) = c else {
            panic!("parse failed");
        };
        assert_eq!(c.addr.port(), 0);
        assert_eq!(c.knobs.tps_limit, Some(5));
        assert_eq!(c.knobs.credits, Some(10));
        assert_eq!(c.knobs.server_error_rate, 0.25);
        assert_eq!(c.knobs.token, "abc");
        assert_eq!(c.knobs.bulk_ready_per_record_us, 1000);
        assert!(!c.knobs.polls_count);
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse_args(args(&["--nope", "1"])).is_err());
        assert!(parse_args(args(&["--port"])).is_err());
        assert!(parse_args(args(&["--port", "x"])).is_err());
        assert!(parse_args(args(&["--record-error-rate", "2"])).is_err());
        assert!(parse_args(args(&["stray"])).is_err());
        assert!(parse_args(args(&["--polls-count", "maybe"])).is_err());
        assert!(matches!(parse_args(args(&["--help"])), Ok(None)));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("bulk-ready-ms"), "LEADSPACE_EMULATOR_BULK_READY_MS");
    }
}
