//! A company is paid for once. Whatever fails between buying an answer and writing the file (S3
//! refusing the output, the Lambda deadline with bulks in flight, a killed process, Lambda's
//! retries), the next run collects what was bought instead of buying it again; a new version
//! of a file buys only what is new. Every test counts, per company, the records the emulator
//! received (Leadspace bills what it receives), and fails if any company was sent twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use leadspace_emulator::Knobs;
use serde_json::{Value, json};

use crate::harness::{
    TestEnv, column, expected, firms_csv, invoke, moto_endpoint, parse_csv, try_invoke, try_invoke_as,
};
use crate::lambda_process::{Answer, LambdaProcess};
use crate::s3_faults::{FaultRule, S3Faults};

/// How many records each company name reached the emulator in.
fn billed(env: &TestEnv) -> HashMap<String, usize> {
    let mut billed = HashMap::new();
    for record in env.emulator.received_records() {
        let name = record["company"]["name"].as_str().unwrap_or_default().to_string();
        *billed.entry(name).or_default() += 1;
    }
    billed
}

pub fn assert_each_company_billed_once(env: &TestEnv, companies: usize) {
    let billed = billed(env);
    let twice: Vec<_> = billed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "companies billed more than once: {twice:?}");
    assert_eq!(billed.len(), companies, "every company was bought");
}

/// The objects of the answer journals under the state prefix.
async fn journal_keys(env: &TestEnv) -> Vec<String> {
    env.keys().await.into_iter().filter(|k| k.starts_with("enriched/_state/journal/")).collect()
}

#[tokio::test]
async fn s3_refusing_the_output_costs_nothing_when_lambda_retries() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app_at(&s3.endpoint(), &[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);
    // Past the SDK's own retries: the output (and the summary after it) cannot be written.
    s3.fail(FaultRule::slow_down("PUT", "enriched/a.csv"));

    for attempt in ["the event", "Lambda's first retry"] {
        let error = try_invoke(&app, env.s3_event("incoming/a.csv")).await.expect_err(attempt);
        assert!(error.is_retryable(), "{attempt}: {error}");
    }
    assert!(s3.injected() >= 2, "the output was refused");
    s3.clear();
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 30);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["journal"], 30, "{summary}");
    assert_eq!(summary["leadspace"]["records_sent"], 0, "{summary}");
    assert!(journal_keys(&env).await.is_empty(), "a complete version's journal is deleted");
}

#[tokio::test]
async fn bulks_in_flight_at_the_lambda_deadline_are_collected_by_the_next_run_not_bought_again() {
    let env = TestEnv::with_knobs(Knobs { bulk_ready_after_ms: 60_000, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(600)).await;
    let vars = [("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "300"), ("DEADLINE_MARGIN_SECONDS", "1")];
    // The real binary, with the deadline Lambda gives it: 6 s, long before the bulks are done.
    let mut function =
        LambdaProcess::start(env.function_env(&vars), env.s3_event("incoming/a.csv"), Duration::from_secs(6)).await;

    let Answer::Response(response) = function.answer(Duration::from_secs(60)).await else {
        panic!("the function failed: {}", function.log());
    };
    assert_eq!(response["results"][0]["status"], "partial", "{response}");
    let first = env.summary("enriched/a.csv.summary.json").await;
    assert!(first["error"].as_str().unwrap_or_default().contains("deadline"), "{first}");
    assert_eq!(first["rows"]["not_attempted"], 600, "{first}");
    assert_eq!(env.emulator.stats().bulk_submissions, 2, "two bulks were bought");
    assert!(journal_keys(&env).await.iter().filter(|k| k.contains("/s-")).count() == 2, "and written down");

    // Leadspace finishes them; the next run (a refresh, an enrich) collects them.
    env.emulator.set_knobs(|k| k.bulk_ready_after_ms = 0);
    let response = invoke(&env.app(&vars), env.enrich_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().bulk_submissions, 2, "nothing submitted again");
    assert_each_company_billed_once(&env, 600);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(
        (summary["reused"]["journal"].as_u64(), summary["leadspace"]["resubmitted"].as_u64()),
        (Some(600), Some(0))
    );
    assert!(summary["reused"]["oldest_bought_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{summary}");
}

#[tokio::test]
async fn a_process_killed_after_some_bulks_were_answered_is_redelivered_without_buying_them_again() {
    let env = TestEnv::with_knobs(Knobs { bulk_ready_after_ms: 1_500, ..Default::default() }).await;
    env.put("incoming/a.csv", firms_csv(400)).await;
    let vars =
        [("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "100"), ("MAX_IN_FLIGHT", "1"), ("LEASE_HEARTBEAT_SECONDS", "1")];
    let mut function =
        LambdaProcess::start(env.function_env(&vars), env.s3_event("incoming/a.csv"), Duration::from_secs(120)).await;

    // Killed (as the kernel kills on OOM) while it waits for its second bulk: the first one is
    // answered and written down, the second bought and written down, neither in any output.
    let started = Instant::now();
    loop {
        let keys = journal_keys(&env).await;
        let (answers, submissions) =
            (keys.iter().filter(|k| k.contains("/a-")).count(), keys.iter().filter(|k| k.contains("/s-")).count());
        if answers >= 1 && submissions >= 2 {
            break;
        }
        assert!(function.answered().is_none(), "the function finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(60), "no bulk was journalled: {}", function.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    function.kill();
    assert!(env.get("enriched/a.csv.summary.json").await.is_none(), "killed before writing anything");
    let bought = env.emulator.stats().bulk_submissions;
    assert_eq!(bought, 2);

    // Lambda's retry (or S3's redelivery) once the dead invocation's heartbeats have stopped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let response = invoke(&env.app(&vars), env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().bulk_submissions, 4, "only the two bulks never bought");
    assert_each_company_billed_once(&env, 400);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["journal"], 200, "{summary}");
    assert_eq!(summary["leadspace"]["records_sent"], 200, "{summary}");
}

/// Where the answers of a.csv are kept for its next version.
const KEPT_ANSWERS: &str = "enriched/_state/answers/a.csv.jsonl.gz";

#[tokio::test]
async fn answers_are_kept_for_the_next_version_even_when_s3_refuses_the_output() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app_at(&s3.endpoint(), &[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);
    s3.fail(FaultRule::slow_down("PUT", "enriched/a.csv"));
    let error = try_invoke(&app, env.s3_event("incoming/a.csv")).await.expect_err("the output is refused");
    assert!(error.is_retryable(), "{error}");
    assert!(env.get(KEPT_ANSWERS).await.is_some(), "pass 2 failed beside the keeping of the answers, not before it");

    // A new version arrives before any retry succeeded: only its new company is bought.
    s3.clear();
    env.put("incoming/a.csv", format!("{}\n30,Brand New Firm", firms_csv(30))).await;
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 31);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["previous_version"], 30, "{summary}");
}

#[tokio::test]
async fn s3_refusing_the_kept_answers_leaves_no_summary_and_lambdas_retry_buys_nothing_again() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app_at(&s3.endpoint(), &[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);
    s3.fail(FaultRule::slow_down("PUT", "_state/answers/"));
    let error = try_invoke(&app, env.s3_event("incoming/a.csv")).await.expect_err("the kept answers are refused");
    assert!(error.is_retryable(), "{error}");
    assert!(env.get("enriched/a.csv.summary.json").await.is_none(), "no summary says the version is done");
    assert!(!journal_keys(&env).await.is_empty(), "the journal stays for the retry");

    s3.clear();
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 30);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["journal"], 30, "{summary}");
    assert!(env.get(KEPT_ANSWERS).await.is_some());
}

#[tokio::test]
async fn a_new_version_with_one_new_company_buys_that_company_alone() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(40)).await;
    let app = env.app(&[("LEADSPACE_MODE", "bulk")]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;

    env.put("incoming/a.csv", format!("{}\n40,Brand New Firm", firms_csv(40))).await;
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 41);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["previous_version"], 40, "{summary}");
    assert_eq!(summary["leadspace"]["records_sent"], 1, "{summary}");
    assert!(summary["billing_guarantee"].as_str().unwrap().contains("once per 30 days"), "{summary}");
    // The reused answers are the same as a fresh run's.
    let (header, rows) = parse_csv(&env.get("enriched/a.csv").await.unwrap());
    let name = header.iter().position(|h| h == "leadspace_name").unwrap();
    assert!(rows.iter().filter(|r| !r[name].is_empty()).all(|r| r[name].to_lowercase().contains(&r[1].to_lowercase())));
}

#[tokio::test]
async fn answer_max_age_days_zero_buys_a_new_version_afresh() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(10)).await;
    let app = env.app(&[("ANSWER_MAX_AGE_DAYS", "0")]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;
    env.put("incoming/a.csv", format!("{}\n10,Brand New Firm", firms_csv(10))).await;

    invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(env.emulator.stats().records_received, 21, "the ten known companies are bought again");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["previous_version"], 0, "{summary}");
    assert!(summary["billing_guarantee"].as_str().unwrap().contains("ANSWER_MAX_AGE_DAYS=0"), "{summary}");
}

#[tokio::test]
async fn answers_bought_under_one_mapping_never_reach_the_rows_of_another() {
    // Credits for a few companies: the first run, from "Account Name", stops partial.
    let env = TestEnv::with_knobs(Knobs { credits: Some(3), ..Default::default() }).await;
    let mut csv = String::from("Id,Account Name,Parent Company\n");
    for i in 0..12 {
        csv.push_str(&format!("{i},Subsidiary {i},Holding {}\n", i % 4));
    }
    env.put("incoming/a.csv", csv).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);
    let by_account = json!({"company_name": "Account Name"});
    let first = invoke(
        &app,
        json!({"action": "enrich", "bucket": env.bucket, "key": "incoming/a.csv", "field_mapping": by_account}),
    )
    .await;
    assert_eq!(first["results"][0]["status"], "partial", "{first}");

    env.emulator.set_knobs(|k| k.credits = None);
    let by_parent = json!({"company_name": "Parent Company"});
    let second = invoke(
        &app,
        json!({"action": "enrich", "bucket": env.bucket, "key": "incoming/a.csv", "field_mapping": by_parent}),
    )
    .await;

    assert_eq!(second["results"][0]["status"], "complete", "{second}");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(
        (summary["reused"]["journal"].as_u64(), summary["reused"]["previous_version"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        summary["reused"]["ignored"].as_str().unwrap_or_default().contains("another field mapping"),
        "the summary says why nothing was reused: {summary}"
    );
    let (header, rows) = parse_csv(&env.get("enriched/a.csv").await.unwrap());
    let (status, name) = (column(&header, "leadspace_status"), column(&header, "leadspace_name"));
    for row in &rows {
        let (wanted_status, wanted_name) = expected(&row[2], None);
        assert_eq!(
            (row[status].as_str(), &row[name]),
            (wanted_status, &wanted_name),
            "{row:?}: another company's answer"
        );
    }
}

/// A fixed token, for the Leadspace client on its own.
struct FixedToken;

#[async_trait::async_trait]
impl leadspace_enrich::secrets::TokenSource for FixedToken {
    async fn token(&self) -> Result<secrecy::SecretString, leadspace_enrich::secrets::SecretError> {
        Ok(crate::harness::TOKEN.into())
    }
    async fn refresh(&self) -> Result<secrecy::SecretString, leadspace_enrich::secrets::SecretError> {
        self.token().await
    }
}

fn client(base_url: &str, request_timeout_ms: u64) -> leadspace_enrich::leadspace::LeadspaceClient {
    let policy = leadspace_enrich::leadspace::retry::RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        request_timeout: Duration::from_millis(request_timeout_ms),
        ..Default::default()
    };
    leadspace_enrich::leadspace::LeadspaceClient::new(base_url, std::sync::Arc::new(FixedToken), 100, true, policy)
        .expect("a client")
}

#[tokio::test]
async fn a_submission_retried_after_it_may_have_reached_leadspace_is_counted_as_ambiguous() {
    use leadspace_enrich::leadspace::{CallContext, CallStats, Enricher};
    let env = TestEnv::with_knobs(Knobs { latency_ms: 400, ..Default::default() }).await;
    let request = leadspace_enrich::company::CompanyQuery { name: "Contoso".into(), ..Default::default() }
        .to_request("c0".into());

    // Sent, then the answer never came in time: each retry may buy the company again.
    let call = CallContext::default();
    let timed_out = client(&env.emulator.base_url(), 150).single(&request, &call).await;
    assert!(timed_out.is_err());
    assert_eq!(CallStats::get(&call.stats.ambiguous_retries), 2, "two retries after a request that left");

    // A connection never made carried nothing: retrying it is safe and not counted.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let call = CallContext::default();
    let refused = client(&format!("http://{closed}"), 150).single(&request, &call).await;
    assert!(refused.is_err());
    assert_eq!(CallStats::get(&call.stats.retries), 2);
    assert_eq!(CallStats::get(&call.stats.ambiguous_retries), 0);
}

#[tokio::test]
async fn a_result_url_on_another_origin_never_gets_the_token() {
    use leadspace_enrich::leadspace::{CallContext, Enricher, LeadspaceError};
    let env = TestEnv::new().await;
    let elsewhere = TestEnv::new().await;
    let foreign = format!("{}/v3/enrichment/results/x", elsewhere.emulator.base_url());

    let result = client(&env.emulator.base_url(), 5_000).collect_bulk(&foreign, &CallContext::default()).await;

    assert!(matches!(result, Err(LeadspaceError::ForeignResultUrl { .. })), "{result:?}");
    assert_eq!(elsewhere.emulator.stats().requests, 0, "nothing was sent to the other origin");
}

fn forced(env: &TestEnv, key: &str) -> Value {
    json!({"action": "enrich", "bucket": env.bucket, "key": key, "force": true})
}

#[tokio::test]
async fn a_forced_run_that_cannot_write_its_output_leaves_no_complete_summary_behind() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app_at(&s3.endpoint(), &[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;
    assert_eq!(env.summary("enriched/a.csv.summary.json").await["status"], "complete");

    // The forced run buys again (that is what force is for), then cannot write the output.
    s3.fail(FaultRule::slow_down("PUT", "enriched/a.csv"));
    let error = try_invoke(&app, forced(&env, "incoming/a.csv")).await.expect_err("the output was refused");
    assert!(error.is_retryable(), "{error}");
    s3.clear();
    let after_force = env.emulator.stats().records_received;
    assert_eq!(after_force, 60, "the force bought every company once more");

    // The old summary no longer speaks for this version: the next delivery finishes the forced
    // run's work from its journal instead of skipping on the old results.
    assert!(env.get("enriched/a.csv.summary.json").await.is_none(), "the superseded summary is gone");
    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;
    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_eq!(env.emulator.stats().records_received, after_force, "nothing bought a third time");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["reused"]["journal"], 30, "{summary}");
}

#[tokio::test]
async fn lambdas_retry_of_a_forced_request_collects_what_its_first_attempt_bought() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    env.put("incoming/a.csv", firms_csv(30)).await;
    let app = env.app_at(&s3.endpoint(), &[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10")]);
    s3.fail(FaultRule::slow_down("PUT", "enriched/a.csv"));
    let error = try_invoke_as(&app, forced(&env, "incoming/a.csv"), "request-1").await.expect_err("refused output");
    assert!(error.is_retryable(), "{error}");
    s3.clear();
    assert_eq!(env.emulator.stats().records_received, 30);

    // Lambda retries the asynchronous invocation under the same request id.
    let response = try_invoke_as(&app, forced(&env, "incoming/a.csv"), "request-1").await.expect("the retry");

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 30);
    // A new forced request is a new force: it buys again.
    try_invoke_as(&app, forced(&env, "incoming/a.csv"), "request-2").await.expect("a new force");
    assert_eq!(env.emulator.stats().records_received, 60, "a new request forces anew");
}

/// A server that counts the requests it gets and answers each with `status` and `location`.
async fn answering(status: u16, location: Option<String>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (counted, location) = (counted.clone(), location.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut response = axum::http::Response::builder().status(status);
            if let Some(location) = location {
                response = response.header("location", location);
            }
            response.body(axum::body::Body::from("{\"whatever\": true}")).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), hits)
}

#[tokio::test]
async fn a_redirect_from_leadspace_is_an_error_naming_where_it_pointed_and_nothing_follows_it() {
    use leadspace_enrich::leadspace::{CallContext, Enricher, LeadspaceError};
    let (elsewhere, elsewhere_hits) = answering(200, None).await;
    for status in [301, 302, 307, 308] {
        let (leadspace, _) = answering(status, Some(format!("{elsewhere}/collect?x=1"))).await;
        let request = leadspace_enrich::company::CompanyQuery { name: "Contoso".into(), ..Default::default() }
            .to_request("c0".into());

        let result = client(&leadspace, 5_000).single(&request, &CallContext::default()).await;

        match result {
            Err(error @ LeadspaceError::Redirected { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&format!("{elsewhere}/collect")) && !message.contains("x=1"), "{message}");
            }
            other => panic!("HTTP {status}: {other:?}"),
        }
    }
    assert_eq!(elsewhere_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no mapped field went elsewhere");
}
