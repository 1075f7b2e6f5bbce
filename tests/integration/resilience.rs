//! Leadspace misbehaves and AWS redelivers: every row comes back with an honest status, and no
//! company is paid for twice.

use std::collections::HashMap;
use std::time::Duration;

use leadspace_emulator::Knobs;
use serde_json::{Value, json};

use crate::harness::{TestEnv, firms_csv, invoke, parse_csv, try_invoke, try_invoke_until};

const FINAL_OR_UNFINISHED: [&str; 6] =
    ["enriched", "not_matched", "low_confidence", "invalid_input", "failed", "not_attempted"];

/// Every input row is in the output exactly once, in order, with a status; the summary's
/// counts are the output's counts. Returns the output's status per row id.
async fn assert_nothing_lost(env: &TestEnv, input: &str, output_key: &str) -> HashMap<String, String> {
    let (_, in_rows) = parse_csv(input.as_bytes());
    let (header, out_rows) = parse_csv(&env.get(output_key).await.expect("output written"));
    let status = header.iter().position(|h| h == "leadspace_status").unwrap();
    assert_eq!(out_rows.len(), in_rows.len(), "every input row exactly once");
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for (input, output) in in_rows.iter().zip(&out_rows) {
        assert_eq!(output[0], input[0], "rows in input order");
        assert!(FINAL_OR_UNFINISHED.contains(&output[status].as_str()), "{output:?}");
        *counts.entry(output[status].as_str()).or_default() += 1;
    }
    let summary = env.summary(&format!("{output_key}.summary.json")).await;
    assert_eq!(summary["rows"]["total"], in_rows.len() as u64, "{summary}");
    for name in FINAL_OR_UNFINISHED {
        assert_eq!(summary["rows"][name], counts.get(name).copied().unwrap_or(0), "{name} in {summary}");
    }
    out_rows.iter().map(|r| (r[0].clone(), r[status].clone())).collect()
}

#[tokio::test]
async fn pacing_at_the_service_limit_provokes_no_429() {
    let env = TestEnv::with_knobs(Knobs { tps_limit: Some(10), ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(25)).await;
    let app = env.app(&[("LEADSPACE_TPS", "10"), ("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "8")]);

    invoke(&app, env.enrich_event("incoming/a.csv")).await;

    assert_eq!(env.emulator.stats().throttled, 0);
    assert_eq!(env.emulator.stats().single_requests, 25);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!((summary["status"].as_str(), summary["leadspace"]["throttled"].as_u64()), (Some("complete"), Some(0)));
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_backoff() {
    let knobs = Knobs { tps_limit: Some(8), server_error_rate: 0.2, ..Default::default() };
    let env = TestEnv::with_knobs(knobs).await;
    env.put("incoming/a.csv", firms_csv(12)).await;
    let app = env.app(&[("LEADSPACE_TPS", "25"), ("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "4")]);

    invoke(&app, env.enrich_event("incoming/a.csv")).await;

    let stats = env.emulator.stats();
    assert!(stats.throttled > 0 && stats.server_errors > 0, "the faults happened: {stats:?}");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert!(
        summary["leadspace"]["retries"].as_u64().unwrap() >= stats.throttled + stats.server_errors - 1,
        "{summary}"
    );
    assert_eq!(summary["leadspace"]["throttled"], stats.throttled);
    assert_nothing_lost(&env, &firms_csv(12), "enriched/a.csv").await;
}

#[tokio::test]
async fn record_level_internal_errors_are_resubmitted() {
    let env = TestEnv::with_knobs(Knobs { record_error_rate: 0.4, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app(&[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);

    invoke(&app, env.enrich_event("incoming/a.csv")).await;

    let stats = env.emulator.stats();
    assert!(stats.records_received > 30, "1100 records were sent again: {stats:?}");
    let statuses = assert_nothing_lost(&env, &firms_csv(30), "enriched/a.csv").await;
    let failed = statuses.values().filter(|s| *s == "failed").count();
    assert!(failed < 30 * 2 / 10, "three rounds leave few failures, not {failed}");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["leadspace"]["records_sent"], stats.records_received);
}

#[tokio::test]
async fn a_rotated_token_is_reread_once_and_the_run_carries_on() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    env.put("incoming/b.csv", firms_csv(4)).await;
    // One request at a time: with several in flight, each sent before the first 401 comes back
    // meets the old token too, and how many do depends on the machine's speed.
    let app = env.app(&[("MAX_IN_FLIGHT", "1")]);
    invoke(&app, env.enrich_event("incoming/a.csv")).await; // caches the first token

    env.emulator.set_knobs(|k| k.token = "rotated-token".into());
    aws_sdk_secretsmanager::Client::new(&env.sdk)
        .put_secret_value()
        .secret_id(&env.secret_id)
        .secret_string("rotated-token")
        .send()
        .await
        .unwrap();
    let response = invoke(&app, env.enrich_event("incoming/b.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().unauthorized, 1, "one 401, then the re-read token works");
}

#[tokio::test]
async fn a_token_rejected_twice_stops_the_run_and_says_so() {
    let env = TestEnv::with_knobs(Knobs::default()).await;
    env.emulator.set_knobs(|k| k.token = "some-other-token".into());
    env.put("incoming/a.csv", firms_csv(5)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);

    let response = invoke(&app, env.enrich_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "partial", "{response}");
    assert_eq!(env.emulator.stats().unauthorized, 2, "one retry after re-reading the secret, then stop");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert!(summary["error"].as_str().unwrap().contains("rejected the token"), "{summary}");
    assert_eq!(summary["rows"]["not_attempted"], 5);
    assert_nothing_lost(&env, &firms_csv(5), "enriched/a.csv").await;
}

#[tokio::test]
async fn a_bulk_lost_by_leadspace_is_resubmitted_once() {
    let env = TestEnv::with_knobs(Knobs { lose_first_bulks: 1, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app(&[("LEADSPACE_MODE", "bulk")]);

    let response = invoke(&app, env.enrich_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().bulk_submissions, 2);
}

#[tokio::test]
async fn a_bulk_that_never_finishes_is_resubmitted_once_then_its_rows_fail_and_lambda_retries() {
    let env = TestEnv::with_knobs(Knobs { bulk_ready_after_ms: 600_000, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app(&[("LEADSPACE_MODE", "bulk"), ("LEADSPACE_POLL_TIMEOUT_SECONDS", "1")]);

    let error = try_invoke(&app, env.enrich_event("incoming/a.csv")).await.unwrap_err();

    assert!(error.is_retryable(), "Leadspace down for the whole run is transient: {error}");
    assert_eq!(env.emulator.stats().bulk_submissions, 2);
    let statuses = assert_nothing_lost(&env, &firms_csv(30), "enriched/a.csv").await;
    assert!(statuses.values().all(|s| s == "failed"));
    assert_eq!(env.summary("enriched/a.csv.summary.json").await["status"], "partial");
}

#[tokio::test]
async fn leadspace_down_returns_a_retryable_error_and_the_retry_sends_only_what_failed() {
    let env = TestEnv::with_knobs(Knobs { server_error_rate: 1.0, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(2)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single")]);

    let error = try_invoke(&app, env.s3_event("incoming/a.csv")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("Leadspace is unavailable"), "{error}");
    let lambda_error: lambda_runtime::Diagnostic = error.into();
    assert!(lambda_error.error_type.starts_with("Retryable"), "{lambda_error:?}");
    assert_nothing_lost(&env, &firms_csv(2), "enriched/a.csv").await;

    env.emulator.set_knobs(|k| k.server_error_rate = 0.0);
    let received_before = env.emulator.stats().records_received;
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().records_received - received_before, 2);
}

#[tokio::test]
async fn finishing_a_partial_run_sends_only_the_missing_companies() {
    let env = TestEnv::with_knobs(Knobs { credits: Some(4), ..Default::default() }).await;
    let input = firms_csv(12);
    env.put("incoming/a.csv", input.clone()).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;
    let first = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(first["status"], "partial", "{first}");
    let unanswered = first["rows"]["not_attempted"].as_u64().unwrap();
    assert!(unanswered > 0);

    env.emulator.set_knobs(|k| k.credits = None);
    let sent_before = env.emulator.stats().records_received;
    invoke(&app, env.s3_event("incoming/a.csv")).await;

    let sent = env.emulator.stats().records_received - sent_before;
    assert_eq!(sent, unanswered, "only the rows without an answer are sent again");
    let second = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(second["leadspace"]["records_sent"], unanswered);

    // The stitched output is what one uninterrupted run produces.
    let env_fresh = TestEnv::new().await;
    env_fresh.put("incoming/a.csv", input.clone()).await;
    invoke(&env_fresh.app(&[]), env_fresh.s3_event("incoming/a.csv")).await;
    assert_eq!(env.get("enriched/a.csv").await, env_fresh.get("enriched/a.csv").await);
}

#[tokio::test]
async fn the_lambda_deadline_stops_new_work_and_still_writes_everything() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 100, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(40)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1"), ("DEADLINE_MARGIN_SECONDS", "1")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);

    let response = try_invoke_until(&app, env.s3_event("incoming/a.csv"), Some(deadline)).await.unwrap();

    assert!(tokio::time::Instant::now() < deadline, "finished before the deadline");
    assert_eq!(response["results"][0]["status"], "partial", "{response}");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert!(summary["error"].as_str().unwrap().contains("deadline"), "{summary}");
    let not_attempted = summary["rows"]["not_attempted"].as_u64().unwrap();
    assert!(not_attempted > 0 && not_attempted < 40, "{summary}");
    assert_nothing_lost(&env, &firms_csv(40), "enriched/a.csv").await;
}

#[tokio::test]
async fn an_object_the_deadline_left_unstarted_is_retried_never_answered_skipped() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 100, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(40)).await;
    env.put("incoming/b.csv", firms_csv(3)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1"), ("DEADLINE_MARGIN_SECONDS", "1")]);
    let mut event = env.s3_event("incoming/a.csv");
    let mut second = event["Records"][0].clone();
    second["s3"]["object"]["key"] = json!("incoming/b.csv");
    event["Records"].as_array_mut().unwrap().push(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);

    let error = try_invoke_until(&app, event.clone(), Some(deadline)).await.unwrap_err();

    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("incoming/b.csv"), "{error}");
    assert_eq!(env.get("enriched/b.csv.summary.json").await, None, "b was never started");
    // Lambda's retry of the same event finishes both.
    let response = invoke(&app, event).await;
    let statuses: Vec<&Value> = response["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!("complete"), &json!("complete")], "{response}");
}

#[tokio::test]
async fn two_concurrent_deliveries_enrich_the_object_once() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 200, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    let app = env.app(&[]);

    let (a, b) =
        tokio::join!(invoke(&app, env.s3_event("incoming/a.csv")), invoke(&app, env.s3_event("incoming/a.csv")));

    let mut outcomes = [a["results"][0]["outcome"].clone(), b["results"][0]["outcome"].clone()];
    outcomes.sort_by_key(|o| o.to_string());
    assert_eq!(outcomes, [json!("enriched"), json!("skipped")]);
    assert_eq!(env.emulator.stats().records_received, 3, "each company sent once");
    assert!(!env.keys().await.iter().any(|k| k.ends_with(".lease")), "the lease is released");
}

#[tokio::test]
async fn a_lease_left_by_a_dead_invocation_is_taken_over_and_a_live_one_is_respected() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(2)).await;
    env.put("enriched/_state/leases/a.csv.lease", r#"{"taken_at_epoch_seconds": 1}"#).await;
    let app = env.app(&[("LEASE_HEARTBEAT_SECONDS", "1")]);
    // A lease's age is when S3 last modified it (whatever its holder's clock wrote): three
    // heartbeats of one second, and S3's whole seconds.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;
    assert_eq!(response["results"][0]["outcome"], "enriched", "a stale lease is taken over: {response}");

    env.put("incoming/b.csv", firms_csv(2)).await;
    let etag = env.s3.head_object().bucket(&env.bucket).key("incoming/b.csv").send().await.unwrap();
    let etag = serde_json::to_string(etag.e_tag().unwrap()).unwrap();
    let live = |etag: &str| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        format!(r#"{{"renewed_at_epoch_seconds": {now}, "etag": {etag}}}"#)
    };
    // A live holder of this very version proves it by renewing its lease.
    let holder = async {
        for _ in 0..8 {
            env.put("enriched/_state/leases/b.csv.lease", live(&etag)).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    let (response, ()) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            invoke(&app, env.s3_event("incoming/b.csv")).await
        },
        holder
    );
    assert_eq!(response["results"][0]["outcome"], "skipped", "a live run of this very version: {response}");

    // The same lease, no longer renewed: its run may have died, so the delivery is retried.
    let error = try_invoke(&app, env.s3_event("incoming/b.csv")).await.expect_err("a silent holder");
    assert!(error.is_retryable(), "{error}");

    // A live run of another version, or one whose lease cannot say which: never skipped.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for lease in [live(r#""\"an-older-version\"""#), format!(r#"{{"taken_at_epoch_seconds": {now}}}"#), "{".into()] {
        env.put("enriched/_state/leases/b.csv.lease", lease.clone()).await;
        let error = try_invoke(&app, env.s3_event("incoming/b.csv")).await.expect_err(&lease);
        assert!(error.is_retryable(), "{lease}: {error}");
        assert!(error.to_string().contains("retried"), "{error}");
    }
    assert_eq!(env.emulator.stats().records_received, 2, "only a.csv was sent");
}

#[tokio::test]
async fn a_killed_invocation_leaves_a_lease_that_lambdas_retry_takes_over_once_its_heartbeat_stops() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 3_000, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    let vars = [("LEASE_HEARTBEAT_SECONDS", "1"), ("LEADSPACE_MODE", "single")];
    let mut function = crate::lambda_process::LambdaProcess::start(
        env.function_env(&vars),
        env.s3_event("incoming/a.csv"),
        Duration::from_secs(60),
    )
    .await;
    function.wait_until(Duration::from_secs(30), "a Leadspace request", || env.emulator.stats().requests > 0).await;
    function.kill();
    let app = env.app(&vars);
    assert!(env.get("enriched/_state/leases/a.csv.lease").await.is_some(), "the dead run's lease is left");

    // While its heartbeat could still be alive, a retry is told to come back, not skipped.
    let error = try_invoke(&app, env.s3_event("incoming/a.csv")).await.expect_err("the lease looks alive");
    assert!(error.is_retryable(), "{error}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.emulator.set_knobs(|k| k.latency_ms = 0);
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "three missed heartbeats: taken over: {response}");
}

#[tokio::test]
async fn no_row_is_lost_under_5xx_429_1100_and_credits_running_out_halfway() {
    let knobs = Knobs {
        server_error_rate: 0.2,
        tps_limit: Some(10),
        record_error_rate: 0.2,
        credits: Some(30),
        seed: 7,
        ..Default::default()
    };
    let env = TestEnv::with_knobs(knobs).await;
    let input = firms_csv(80);
    env.put("incoming/mix.csv", input.clone()).await;
    let app =
        env.app(&[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "8"), ("LEADSPACE_TPS", "25"), ("MAX_IN_FLIGHT", "2")]);

    let response = try_invoke(&app, env.s3_event("incoming/mix.csv")).await;

    assert!(response.is_ok(), "a 427 is not worth Lambda's retry: {response:?}");
    let statuses = assert_nothing_lost(&env, &input, "enriched/mix.csv").await;
    assert!(statuses.values().any(|s| s == "not_attempted"), "credits ran out before the end");
    let summary = env.summary("enriched/mix.csv.summary.json").await;
    assert_eq!(summary["status"], "partial");
    assert!(summary["error"].as_str().unwrap().contains("427"), "{summary}");
}

#[tokio::test]
async fn a_refresh_enriches_every_object_when_one_fails_and_then_asks_to_be_retried_for_it() {
    let env = TestEnv::new().await;
    let s3 = crate::s3_faults::S3Faults::start(crate::harness::moto_endpoint()).await;
    for name in ["a", "b", "c"] {
        env.put(&format!("incoming/{name}.csv"), firms_csv(3)).await;
    }
    let app = env.app_at(&s3.endpoint(), &[]);
    s3.fail(crate::s3_faults::FaultRule::slow_down("PUT", "enriched/a.csv"));
    let refresh = json!({"action": "refresh", "bucket": env.bucket, "prefix": "incoming/"});

    let error = try_invoke(&app, refresh.clone()).await.expect_err("a.csv could not be written");

    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("incoming/a.csv"), "the failed object is named: {error}");
    for name in ["b", "c"] {
        let summary = env.summary(&format!("enriched/{name}.csv.summary.json")).await;
        assert_eq!(summary["status"], "complete", "{name}.csv is enriched although a.csv failed first");
    }
    s3.clear();
    let again = invoke(&app, refresh).await;
    let outcomes: Vec<(&str, &str)> = again["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("incoming/a.csv", "enriched"), ("incoming/b.csv", "skipped"), ("incoming/c.csv", "skipped")]
    );
}

#[tokio::test]
async fn a_multipart_output_whose_completion_fails_is_aborted_and_leaves_no_parts_behind() {
    let env = TestEnv::new().await;
    let s3 = crate::s3_faults::S3Faults::start(crate::harness::moto_endpoint()).await;
    // One company, 9 MiB of rows: more than one part.
    let padding = "x".repeat(200);
    let mut csv = String::from("Id,Company,Notes\n");
    for i in 0..48_000 {
        csv.push_str(&format!("{i},Contoso,{padding}\n"));
    }
    env.put("incoming/big.csv", csv).await;
    let app = env.app_at(&s3.endpoint(), &[]);
    // CompleteMultipartUpload is a POST with the upload id; CreateMultipartUpload has no id yet.
    s3.fail(crate::s3_faults::FaultRule::slow_down("POST", "enriched/big.csv").query_contains("uploadId"));

    let error = try_invoke(&app, env.s3_event("incoming/big.csv")).await.expect_err("the output cannot be completed");

    assert!(error.is_retryable(), "{error}");
    assert!(s3.injected() > 0, "the completion was refused");
    let uploads = env.s3.list_multipart_uploads().bucket(&env.bucket).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "no multipart upload is left to bill for its parts: {uploads:?}");
}

#[tokio::test]
async fn a_file_replaced_mid_run_is_a_retryable_error_that_says_so() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 300, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(6)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);

    let (result, ()) = tokio::join!(try_invoke(&app, env.s3_event("incoming/a.csv")), async {
        while env.emulator.stats().requests == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A new version lands while the first is being enriched: pass 2 reads with If-Match.
        env.put("incoming/a.csv", firms_csv(7)).await;
    });

    let error = result.expect_err("the second read finds another version");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("replaced while it was being read"), "{error}");
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "Retryable.TransientFailure", "not a configuration problem");
}

#[tokio::test]
async fn s3_slowing_down_is_ridden_out_by_the_sdks_retries_with_backoff() {
    let env = TestEnv::new().await;
    let s3 = crate::s3_faults::S3Faults::start(crate::harness::moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    let app = env.app_at(&s3.endpoint(), &[]);
    // Four 503 SlowDown in a row on the output: within the five attempts the function makes.
    s3.fail(crate::s3_faults::FaultRule::slow_down("PUT", "enriched/a.csv").times(4));

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(s3.injected(), 4);
}

#[tokio::test]
async fn bulks_at_the_service_limit_provoke_no_429_and_cost_about_one_poll_each() {
    let knobs = Knobs { tps_limit: Some(10), bulk_ready_after_ms: 700, ..Default::default() };
    let env = TestEnv::with_knobs(knobs).await;
    env.put("incoming/a.csv", firms_csv(120)).await;
    let vars = [("LEADSPACE_TPS", "10"), ("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10"), ("MAX_IN_FLIGHT", "4")];
    let app = env.app(&vars);

    invoke(&app, env.enrich_event("incoming/a.csv")).await;

    let stats = env.emulator.stats();
    assert_eq!((stats.throttled, stats.bulk_submissions), (0, 12), "{stats:?}");
    // Polled when bulks have been seen ready: the first bulks find the time out, the rest are
    // polled once (a fixed first delay costs a poll too early for every bulk or two).
    assert!(stats.polls <= 12 + 3, "{} polls for 12 bulks", stats.polls);
    assert_nothing_lost(&env, &firms_csv(120), "enriched/a.csv").await;
}

#[tokio::test]
async fn polls_left_out_of_the_pace_are_sent_at_once_and_a_contract_that_counts_them_throttles() {
    // The contract counts polls (the emulator's default) but the function is told it does not:
    // submissions alone fill its pace, so the polls beside them are throttled and retried. That
    // they are shows the switch takes polls out of the pace; nothing is lost either way.
    let env = TestEnv::with_knobs(Knobs { tps_limit: Some(4), ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(80)).await;
    let vars = [("LEADSPACE_TPS", "4"), ("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10"), ("MAX_IN_FLIGHT", "8")];
    let counted = env.app(&vars);
    invoke(&counted, env.enrich_event("incoming/a.csv")).await;
    assert_eq!(env.emulator.stats().throttled, 0, "polls counted: the pace holds them");

    env.put("incoming/b.csv", firms_csv(80)).await;
    let not_counted = env.app(&[vars[0], vars[1], vars[2], vars[3], ("LEADSPACE_COUNT_POLLS", "false")]);
    invoke(&not_counted, env.enrich_event("incoming/b.csv")).await;
    assert!(env.emulator.stats().throttled > 0, "{:?}", env.emulator.stats());
    assert_nothing_lost(&env, &firms_csv(80), "enriched/b.csv").await;
}

#[tokio::test]
async fn a_run_whose_lease_is_taken_over_stops_buying_and_leaves_the_new_holder_alone() {
    let env = TestEnv::with_knobs(Knobs { latency_ms: 250, ..Default::default() }).await;
    env.put("incoming/slow.csv", firms_csv(40)).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1"), ("LEASE_HEARTBEAT_SECONDS", "1")]);
    let lease_key = "enriched/_state/leases/slow.csv.lease";
    let new_holder = serde_json::json!({
        "renewed_at_epoch_seconds": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "etag": "\"the new holder's version\"",
    })
    .to_string();

    // Another delivery presumed the run dead and took the object over, while the run buys.
    let take_over = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(env.get(lease_key).await.is_some(), "the run holds the lease by now");
        env.put(lease_key, new_holder.clone()).await;
        env.emulator.stats().records_received
    };
    let (result, bought_at_takeover) = tokio::join!(try_invoke(&app, env.enrich_event("incoming/slow.csv")), take_over);

    let error = result.expect_err("a run that lost its lease writes no result");
    assert!(error.is_retryable(), "its delivery is retried, never dropped: {error}");
    let bought = env.emulator.stats().records_received;
    // The renewal that finds the marker replaced comes within a heartbeat: a few more singles
    // at 250 ms each, then nothing.
    assert!(bought < 40 && bought <= bought_at_takeover + 6, "{bought} bought, {bought_at_takeover} at the takeover");
    assert!(env.get("enriched/slow.csv").await.is_none(), "no output written over the new holder's");
    assert!(env.get("enriched/slow.csv.summary.json").await.is_none(), "no summary either");
    assert_eq!(env.get(lease_key).await, Some(new_holder.into_bytes()), "the new holder's lease is not released");
}
