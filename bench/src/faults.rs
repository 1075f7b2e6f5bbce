//! The resilience figures: one file enriched by the function's binary against an emulator that
//! fails 20% of requests with 5xx and throttles at 5 TPS, while the function is configured for
//! LEADSPACE_TPS=25. Prints requests, retries, 429s, 5xx, duration and the final row counts
//! (from the summary the function wrote).

use leadspace_emulator::{Emulator, Knobs};
use serde_json::json;

use crate::runtime::Function;
use crate::{Bench, Error, TOKEN};

struct Fault {
    name: &'static str,
    companies: usize,
    mode: &'static str,
}

pub async fn run(bench: &Bench) -> Result<(), Error> {
    println!("faults: emulator with 20% 5xx and a 5 TPS limit, LEADSPACE_TPS=25");
    println!("  scenario                      rows  status    requests  retries  429s  5xx  seconds");
    for fault in [
        Fault { name: "single, 200 companies", companies: 200, mode: "single" },
        Fault { name: "bulk, 5,000 companies", companies: 5_000, mode: "bulk" },
    ] {
        let knobs = Knobs {
            token: TOKEN.into(),
            tps_limit: Some(5),
            server_error_rate: 0.2,
            bulk_ready_after_ms: 1_000,
            ..Knobs::default()
        };
        let emulator = Emulator::start(knobs).await?;
        let name = format!("faults-{}.csv", fault.mode);
        let key = format!("incoming/{name}");
        let csv: String = std::iter::once("Company".to_string())
            .chain((0..fault.companies).map(|i| format!("Fault Run Company {i}")))
            .collect::<Vec<_>>()
            .join("\n");
        bench.moto.put_object(&bench.bucket, &key, csv.into_bytes()).await?;
        let extra = [("LEADSPACE_TPS", "25".to_string()), ("LEADSPACE_MODE", fault.mode.to_string())];
        let env = bench.env(&emulator.base_url(), bench.moto.endpoint(), &extra);
        let mut function = Function::start(&bench.binary, &env).await?;
        let answer = function.invoke(json!({"action": "enrich", "bucket": bench.bucket, "key": key})).await?;
        drop(function);

        let summary = bench.moto.get_json(&bench.bucket, &format!("enriched/{name}.summary.json")).await?;
        let stats = emulator.stats();
        println!(
            "  {:<28} {:>5}  {:<8} {:>9} {:>8} {:>5} {:>4} {:>8.1}",
            fault.name,
            // As text: a JSON value ignores the width.
            summary["rows"]["total"].to_string(),
            summary["status"].as_str().unwrap_or("?"),
            summary["leadspace"]["requests"].to_string(),
            summary["leadspace"]["retries"].to_string(),
            stats.throttled,
            stats.server_errors,
            answer.seconds()
        );
        if answer.response.get("errorType").is_some() || answer.response.get("init_error").is_some() {
            println!("    (the invocation answered with an error: {})", answer.response);
        }
        println!("    rows: {}", summary["rows"]);
        if !summary["error"].is_null() {
            println!("    error: {}", summary["error"]);
        }
    }
    Ok(())
}
