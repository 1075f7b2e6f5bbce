//! Every way a user starts the function: each sample in `events/` through the handler, the
//! scheduled refresh, and the status view.

use serde_json::Value;

use crate::harness::{TestEnv, firms_csv, gzip, invoke};

const CUSTOMERS_CSV: &str = include_str!("../data/customers.csv");
const CUSTOMERS_JSONL: &str = include_str!("../data/customers.jsonl");
const SOURCE_KEY: &str = "incoming/Customers (EU) Q4 + Übersicht.csv";

/// A sample event with its bucket pointed at this test's bucket.
fn sample(env: &TestEnv, text: &str) -> Value {
    serde_json::from_str(&text.replace("customer-data", &env.bucket)).expect("sample event is JSON")
}

fn outcomes(response: &Value) -> Vec<(String, String)> {
    response["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {response}"))
        .iter()
        .map(|r| {
            (r["key"].as_str().unwrap_or_default().to_string(), r["outcome"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, o)| (k.to_string(), o.to_string())).collect()
}

#[tokio::test]
async fn every_sample_event_runs_through_the_handler() {
    let env = TestEnv::new().await;
    env.put(SOURCE_KEY, CUSTOMERS_CSV).await;
    env.put("incoming/crm/accounts.jsonl.gz", gzip(CUSTOMERS_JSONL.as_bytes())).await;
    let app = env.app(&[("SOURCE_BUCKET", &env.bucket)]);

    let put = invoke(&app, sample(&env, include_str!("../../events/s3-put.json"))).await;
    assert_eq!(outcomes(&put), pairs(&[(SOURCE_KEY, "enriched")]));

    let multi = invoke(&app, sample(&env, include_str!("../../events/s3-put-multi.json"))).await;
    assert_eq!(
        outcomes(&multi),
        pairs(&[(SOURCE_KEY, "skipped"), ("incoming/crm/accounts.jsonl.gz", "enriched")]),
        "the removal record is not a job; the CSV is already done"
    );

    let eventbridge = invoke(&app, sample(&env, include_str!("../../events/eventbridge-object-created.json"))).await;
    assert_eq!(outcomes(&eventbridge), pairs(&[(SOURCE_KEY, "skipped")]));

    let scheduled = invoke(&app, sample(&env, include_str!("../../events/scheduled.json"))).await;
    // Keys in S3's (byte) order: "C" sorts before "c".
    assert_eq!(outcomes(&scheduled), pairs(&[(SOURCE_KEY, "skipped"), ("incoming/crm/accounts.jsonl.gz", "skipped")]));

    let dry_run = invoke(&app, sample(&env, include_str!("../../events/cli-dry-run.json"))).await;
    assert_eq!(dry_run["results"][0]["estimate"]["unique_companies"], 7, "{dry_run}");

    let requests = env.emulator.stats().requests;
    let enrich = invoke(&app, sample(&env, include_str!("../../events/cli-enrich.json"))).await;
    assert_eq!(outcomes(&enrich), pairs(&[(SOURCE_KEY, "enriched")]), "force re-enriches");
    assert!(env.emulator.stats().requests > requests);

    let refresh = invoke(&app, sample(&env, include_str!("../../events/cli-refresh.json"))).await;
    assert!(outcomes(&refresh).iter().all(|(_, o)| o == "skipped"), "{refresh}");

    let status = invoke(&app, sample(&env, include_str!("../../events/cli-status.json"))).await;
    let enrichments = status["enrichments"].as_array().unwrap();
    assert_eq!(enrichments.len(), 2, "{status}");
    let csv = enrichments.iter().find(|e| e["source"]["key"] == SOURCE_KEY).unwrap();
    assert_eq!(csv["status"], "complete");
    assert_eq!(csv["rows"]["total"], 10);
    assert_eq!(csv["output"]["key"], "enriched/Customers (EU) Q4 + Übersicht.csv");
    assert!(csv["finished_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_scheduled_refresh_after_changing_one_file_re_enriches_only_that_file() {
    let env = TestEnv::new().await;
    for name in ["a", "b", "c"] {
        env.put(&format!("incoming/{name}.csv"), firms_csv(3)).await;
    }
    let app = env.app(&[("SOURCE_BUCKET", &env.bucket)]);
    let scheduled = sample(&env, include_str!("../../events/scheduled.json"));
    let first = invoke(&app, scheduled.clone()).await;
    assert!(outcomes(&first).iter().all(|(_, o)| o == "enriched"), "{first}");

    env.put("incoming/b.csv", format!("{}\n3,Brand New Firm", firms_csv(3))).await;
    let received = env.emulator.stats().records_received;
    let second = invoke(&app, scheduled).await;

    assert_eq!(
        outcomes(&second),
        pairs(&[("incoming/a.csv", "skipped"), ("incoming/b.csv", "enriched"), ("incoming/c.csv", "skipped")])
    );
    assert_eq!(
        env.emulator.stats().records_received - received,
        1,
        "only the changed file's new company: the others were bought for its previous version"
    );
    let summary = env.summary("enriched/b.csv.summary.json").await;
    assert_eq!(summary["rows"]["total"], 4);
    assert_eq!(summary["reused"]["previous_version"], 3, "{summary}");
}

#[tokio::test]
async fn a_refresh_redoes_failed_files_and_finishes_partial_ones() {
    let env = TestEnv::with_knobs(leadspace_emulator::Knobs { credits: Some(2), ..Default::default() }).await;
    env.put("incoming/partial.csv", firms_csv(6)).await;
    env.put("incoming/unmapped.csv", "Email\nx@y.z\n").await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);
    let refresh = serde_json::json!({"action": "refresh", "bucket": env.bucket, "prefix": "incoming/"});
    invoke(&app, refresh.clone()).await;
    assert_eq!(env.summary("enriched/partial.csv.summary.json").await["status"], "partial");
    assert_eq!(env.summary("enriched/unmapped.csv.summary.json").await["status"], "failed");

    env.emulator.set_knobs(|k| k.credits = None);
    env.put("incoming/unmapped.csv", "Company\nContoso\n").await;
    let second = invoke(&app, refresh).await;

    assert_eq!(
        outcomes(&second),
        pairs(&[("incoming/partial.csv", "enriched"), ("incoming/unmapped.csv", "enriched")])
    );
    assert_eq!(env.summary("enriched/partial.csv.summary.json").await["status"], "complete");
    assert_eq!(env.summary("enriched/unmapped.csv.summary.json").await["status"], "complete");
}

#[tokio::test]
async fn a_schedule_without_a_source_bucket_says_which_variable_to_set() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);

    let error =
        leadspace_enrich::handler::handle(&app, sample(&env, include_str!("../../events/scheduled.json")), None)
            .await
            .unwrap_err();

    assert!(!error.is_retryable());
    assert!(error.to_string().contains("SOURCE_BUCKET"), "{error}");
}

#[tokio::test]
async fn malformed_payloads_get_an_error_naming_the_accepted_shapes() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);
    for payload in [
        serde_json::json!({"action": "status"}),
        serde_json::json!({"action": "enrich", "bucket": "b", "key": "k", "force": "yes"}),
        serde_json::json!({"action": 7}),
        serde_json::json!([1, 2, 3]),
        serde_json::json!("enrich"),
    ] {
        let error = leadspace_enrich::handler::handle(&app, payload.clone(), None).await.unwrap_err();
        let diagnostic: lambda_runtime::Diagnostic = error.into();
        assert_eq!(diagnostic.error_type, "NonRetryable.InvalidEvent", "{payload}");
        assert!(diagnostic.error_message.contains("\"refresh\""), "{payload}: {}", diagnostic.error_message);
    }
}
