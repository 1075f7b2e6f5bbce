//! Resilience figures: one file enriched against an emulator that fails 20% of requests with
//! 5xx and throttles at 5 TPS, while the function is configured for LEADSPACE_TPS=25. Prints
//! requests, retries, 429s, duration and the final row counts. Run through `scripts/bench.sh`
//! (which starts moto and sets MOTO_ENDPOINT).

use std::collections::HashMap;
use std::time::Instant;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use leadspace_emulator::{Emulator, Knobs};
use leadspace_enrich::bootstrap::build_app_with;
use leadspace_enrich::config::Config;
use leadspace_enrich::handler::handle;
use serde_json::{Value, json};

const TOKEN: &str = "fault-run-token";

struct Scenario {
    name: &'static str,
    companies: usize,
    mode: &'static str,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let endpoint = std::env::var("MOTO_ENDPOINT").map_err(|_| "set MOTO_ENDPOINT (scripts/bench.sh does)")?;
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "bench",
        )))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = format!("fault-run-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await?;
    let secret = format!("fault-run-token-{}", std::process::id());
    aws_sdk_secretsmanager::Client::new(&sdk).create_secret().name(&secret).secret_string(TOKEN).send().await?;

    println!("scenario                      rows  status    requests  retries  429s  5xx  seconds");
    for scenario in [
        Scenario { name: "single, 200 companies", companies: 200, mode: "single" },
        Scenario { name: "bulk, 5,000 companies", companies: 5_000, mode: "bulk" },
    ] {
        let knobs = Knobs {
            token: TOKEN.into(),
            tps_limit: Some(5),
            server_error_rate: 0.2,
            bulk_ready_after_ms: 1_000,
            ..Knobs::default()
        };
        let emulator = Emulator::start(knobs).await?;
        let vars: HashMap<&str, String> = HashMap::from([
            ("LEADSPACE_SECRET_ID", secret.clone()),
            ("LEADSPACE_BASE_URL", emulator.base_url()),
            ("LEADSPACE_ALLOW_HTTP", "true".into()),
            ("DATA_SHARING_CONSENT", "true".into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("LEADSPACE_TPS", "25".into()),
            ("LEADSPACE_MODE", scenario.mode.into()),
        ]);
        let config = Config::from_lookup(|name| vars.get(name).cloned())?;
        let app = build_app_with(config, &sdk)?;
        let key = format!("incoming/{}.csv", scenario.mode);
        let csv: String = std::iter::once("Company".to_string())
            .chain((0..scenario.companies).map(|i| format!("Fault Run Company {i}")))
            .collect::<Vec<_>>()
            .join("\n");
        s3.put_object().bucket(&bucket).key(&key).body(csv.into_bytes().into()).send().await?;

        let started = Instant::now();
        let response = handle(&app, json!({"action": "enrich", "bucket": bucket, "key": key}), None).await;
        let seconds = started.elapsed().as_secs_f64();
        let summary_key = format!("enriched/{}.csv.summary.json", scenario.mode);
        let summary: Value = serde_json::from_slice(
            &s3.get_object().bucket(&bucket).key(&summary_key).send().await?.body.collect().await?.to_vec(),
        )?;
        let stats = emulator.stats();
        println!(
            "{:<28} {:>5}  {:<8} {:>9} {:>8} {:>5} {:>4} {:>8.1}",
            scenario.name,
            summary["rows"]["total"],
            summary["status"].as_str().unwrap_or("?"),
            summary["leadspace"]["requests"],
            summary["leadspace"]["retries"],
            stats.throttled,
            stats.server_errors,
            seconds
        );
        if let Err(error) = response {
            println!("  (invocation answered with an error: {error})");
        }
        println!("  rows: {}", summary["rows"]);
        if !summary["error"].is_null() {
            println!("  error: {}", summary["error"]);
        }
    }
    Ok(())
}
