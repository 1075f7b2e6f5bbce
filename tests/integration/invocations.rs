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

    let keys = env.keys().await;
    let delete = invoke(&app, sample(&env, include_str!("../../events/cli-delete.json"))).await;
    let removed = delete["removed"].as_array().unwrap();
    assert!(removed.contains(&"enriched/Customers (EU) Q4 + Übersicht.csv".into()), "{delete}");
    assert!(removed.contains(&"enriched/Customers (EU) Q4 + Übersicht.csv.summary.json".into()), "{delete}");
    assert_eq!(env.keys().await, keys, "the sample is a dry run: nothing removed");
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

#[tokio::test]
async fn delete_removes_what_the_function_wrote_for_one_input_and_nothing_else() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    env.put("incoming/b.csv", firms_csv(2)).await;
    let app = env.app(&[]);
    invoke(&app, env.enrich_event("incoming/a.csv")).await;
    invoke(&app, env.enrich_event("incoming/b.csv")).await;
    let before = env.keys().await;
    let delete = |dry_run: bool| serde_json::json!({"action": "delete", "bucket": env.bucket, "key": "incoming/a.csv", "dry_run": dry_run});
    let written_for_a = [
        "enriched/_state/answers/a.csv.jsonl.gz",
        "enriched/a.csv",
        "enriched/a.csv.report.html",
        "enriched/a.csv.summary.json",
    ];

    let dry = invoke(&app, delete(true)).await;
    let mut would: Vec<String> = serde_json::from_value(dry["removed"].clone()).unwrap();
    would.sort();
    assert_eq!(would, written_for_a, "{dry}");
    assert_eq!(env.keys().await, before, "a dry run removes nothing");

    // A live run holds the object: the delete waits for it.
    let marker = serde_json::json!({"renewed_at_epoch_seconds": std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), "etag": "\"any\""});
    env.put("enriched/_state/leases/a.csv.lease", marker.to_string()).await;
    let refused = invoke(&app, delete(false)).await;
    assert!(refused["refused"].as_str().is_some_and(|why| why.contains("in progress")), "{refused}");
    assert!(refused["removed"].as_array().unwrap().is_empty());
    env.s3.delete_object().bucket(&env.bucket).key("enriched/_state/leases/a.csv.lease").send().await.unwrap();

    let deleted = invoke(&app, delete(false)).await;

    let mut removed: Vec<String> = serde_json::from_value(deleted["removed"].clone()).unwrap();
    removed.sort();
    assert_eq!(removed, written_for_a, "{deleted}");
    let after = env.keys().await;
    assert!(after.contains(&"incoming/a.csv".to_string()), "the input stays: {after:?}");
    assert!(after.iter().all(|k| !k.contains("a.csv") || k == "incoming/a.csv"), "{after:?}");
    assert!(after.contains(&"enriched/b.csv".to_string()), "another file's results stay: {after:?}");
    let status = invoke(&app, serde_json::json!({"action": "status", "bucket": env.bucket})).await;
    let listed: Vec<&str> =
        status["enrichments"].as_array().unwrap().iter().map(|e| e["source"]["key"].as_str().unwrap()).collect();
    assert_eq!(listed, ["incoming/b.csv"], "{status}");
}

#[tokio::test]
async fn status_shows_a_file_while_it_is_being_enriched_with_its_progress() {
    let env = TestEnv::with_knobs(leadspace_emulator::Knobs { latency_ms: 250, ..Default::default() }).await;
    // Singles are journalled ten at a time: 40 at 250 ms each leave several heartbeats between.
    env.put("incoming/slow.csv", firms_csv(40)).await;
    env.put("incoming/done.csv", firms_csv(2)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1"), ("LEASE_HEARTBEAT_SECONDS", "1")]);
    invoke(&app, env.enrich_event("incoming/done.csv")).await;
    let status_of = |key: &str| serde_json::json!({"action": "status", "bucket": env.bucket, "key": key});

    let watch = async {
        // Until the heartbeat carries answers bought by this run.
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let status = invoke(&app, status_of("incoming/slow.csv")).await;
            let entry = &status["enrichments"][0];
            if entry["status"] == "running" && entry["progress"]["companies_answered"].as_u64() > Some(0) {
                return Some(status);
            }
        }
        None
    };
    let (report, seen) = tokio::join!(invoke(&app, env.enrich_event("incoming/slow.csv")), watch);

    let seen = seen.expect("status showed the run in progress");
    let running = &seen["enrichments"][0];
    assert_eq!(seen["enrichments"].as_array().unwrap().len(), 1, "one object asked, one answered: {seen}");
    let progress = &running["progress"];
    assert_eq!((progress["rows_scanned"].as_u64(), progress["companies_total"].as_u64()), (Some(40), Some(40)));
    assert!(progress["companies_answered"].as_u64() < Some(40), "caught mid-run: {seen}");
    assert!(progress["requests"].as_u64() > Some(0) && progress["updated_at"].as_str().is_some(), "{seen}");
    assert!(running["finished_at"].is_null());
    assert_eq!(report["results"][0]["status"], "complete");
    let after = invoke(&app, serde_json::json!({"action": "status", "bucket": env.bucket})).await;
    let statuses: Vec<(&str, &str)> = after["enrichments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"]["key"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("incoming/done.csv", "complete"), ("incoming/slow.csv", "complete")], "{after}");
}

#[tokio::test]
async fn delete_refuses_keys_that_are_not_inputs_and_leaves_a_nested_files_journal() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);
    // A file named like a folder of another: their journals share a listing, not a shape.
    env.put("incoming/a.csv", firms_csv(2)).await;
    env.put("incoming/a.csv/b.csv", firms_csv(2)).await;
    let nested_journal = "enriched/_state/journal/a.csv/b.csv/0123456789abcdef/a-x.jsonl";
    env.put(nested_journal, "{}").await;
    let own_journal = "enriched/_state/journal/a.csv/fedcba9876543210/a-y.jsonl";
    env.put(own_journal, "{}").await;
    let delete = |key: &str| serde_json::json!({"action": "delete", "bucket": env.bucket, "key": key});

    for key in ["a.csv", "enriched/a.csv", "incoming/_state/leases/a.csv.lease", "incoming/folder/"] {
        let refused = invoke(&app, delete(key)).await;
        assert!(refused["refused"].as_str().is_some(), "{key}: {refused}");
        assert!(refused["removed"].as_array().unwrap().is_empty(), "{key}: {refused}");
    }
    let deleted = invoke(&app, delete("incoming/a.csv")).await;

    assert_eq!(deleted["removed"], serde_json::json!([own_journal]), "{deleted}");
    let keys = env.keys().await;
    assert!(keys.contains(&nested_journal.to_string()), "b.csv's journal stays: {keys:?}");
}

#[tokio::test]
async fn delete_by_a_key_that_names_another_files_results_removes_nothing() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);
    env.put("incoming/crafted/victim.csv", firms_csv(2)).await;
    invoke(&app, env.enrich_event("incoming/crafted/victim.csv")).await;
    let delete = |key: &str| serde_json::json!({"action": "delete", "bucket": env.bucket, "key": key});

    for key in [
        "incoming/crafted/victim.csv.summary.json",
        "incoming/crafted/victim.csv.report.html",
        "incoming/crafted/never-uploaded.csv",
        "incoming/crafted/victim.xlsx",
    ] {
        let refused = invoke(&app, delete(key)).await;
        assert!(refused["refused"].as_str().is_some(), "{key}: {refused}");
        assert!(refused["removed"].as_array().unwrap().is_empty(), "{key}: {refused}");
    }

    for kept in ["enriched/crafted/victim.csv.summary.json", "enriched/crafted/victim.csv.report.html"] {
        assert!(env.get(kept).await.is_some(), "victim.csv's {kept} stays");
    }
}
