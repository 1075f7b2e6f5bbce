//! Drives the emulator over real HTTP, as the project's client will.

use std::collections::HashSet;
use std::time::Duration;

use leadspace_emulator::{Emulator, Knobs, firmographics_for};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

async fn start(knobs: Knobs) -> (Emulator, reqwest::Client) {
    let emu = Emulator::start(knobs).await.expect("emulator starts");
    (emu, reqwest::Client::new())
}

fn record(i: usize, name: &str) -> Value {
    json!({ "external_id": format!("row-{i}"), "company": { "name": name } })
}

async fn post(client: &reqwest::Client, emu: &Emulator, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(format!("{}{path}", emu.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn poll(client: &reqwest::Client, emu: &Emulator, id: &str) -> (u16, Value) {
    let resp = client.get(format!("{}{id}", emu.base_url())).bearer_auth(TOKEN).send().await.expect("poll sent");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn wrong_token_is_401_and_rotation_works() {
    let (emu, client) = start(Knobs::default()).await;
    let body = record(1, "Contoso");
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", "nope", &body).await;
    assert_eq!(status, 401);
    emu.set_knobs(|k| k.token = "rotated".into());
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
    assert_eq!(status, 401);
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", "rotated", &body).await;
    assert_eq!(status, 200);
    let stats = emu.stats();
    assert_eq!((stats.requests, stats.unauthorized, stats.single_requests), (3, 2, 1));
}

#[tokio::test]
async fn single_answers_firmographics_and_charges() {
    let (emu, client) = start(Knobs { credits: Some(100), ..Knobs::default() }).await;
    let mut charged = 0;
    for (i, name) in ["Contoso", "Globex", "Initech", "Unknown Corp"].iter().enumerate() {
        let body = record(i, name);
        let (status, resp) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
        assert_eq!(status, 200);
        assert_eq!(resp["status"], "success");
        assert_eq!(resp["external_id"], format!("row-{i}"));
        match firmographics_for(name, None) {
            Some(company) => {
                charged += 1;
                assert_eq!(resp["data"]["enrichment_status"], "Company Enriched");
                assert_eq!(resp["data"]["company"], company);
            }
            None => assert_eq!(resp["data"]["enrichment_status"], "Not Enriched"),
        }
    }
    assert_eq!(emu.stats().credits_used, charged);
    assert_eq!(emu.knobs().credits, Some(100 - charged));
    assert_eq!(emu.received_records().len(), 4);
    assert_eq!(emu.received_records()[3], record(3, "Unknown Corp"));
}

#[tokio::test]
async fn single_without_name_is_400() {
    let (emu, client) = start(Knobs::default()).await;
    for body in
        [json!({ "external_id": "a", "company": {} }), json!({ "external_id": "b", "company": { "name": "   " } })]
    {
        let (status, resp) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
        assert_eq!(status, 400);
        assert_eq!(resp["error"], "Insufficient input");
        assert_eq!(resp["details"], "company.name is required");
        assert!(resp["tracking_id"].is_string());
        assert!(resp["request_timestamp"].is_string());
    }
}

#[tokio::test]
async fn bad_headers_body_route_and_method() {
    let (emu, client) = start(Knobs::default()).await;
    let url = format!("{}/enrichment/enrich/single", emu.base_url());
    let resp = client.post(&url).bearer_auth(TOKEN).body(r#"{"company":{"name":"x"}}"#).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 415);
    let resp = client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = client.get(&url).bearer_auth(TOKEN).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 405);
    let resp = client.get(format!("{}/nowhere", emu.base_url())).bearer_auth(TOKEN).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 404);
    let (status, _) = poll(&client, &emu, "/v3/enrichment/results/no-such-bulk").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bulk_over_limit_or_empty_is_400() {
    let (emu, client) = start(Knobs::default()).await;
    let data: Vec<Value> = (0..501).map(|i| record(i, "Contoso")).collect();
    let (status, resp) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &json!({ "data": data })).await;
    assert_eq!(status, 400);
    assert!(resp["details"].as_str().is_some_and(|d| d.contains("500")));
    for body in [json!({ "data": [] }), json!({ "data": "x" }), json!({})] {
        let (status, _) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &body).await;
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn bulk_202_then_204_then_200_with_every_record() {
    let (emu, client) = start(Knobs { bulk_ready_after_ms: 300, credits: Some(1000), ..Knobs::default() }).await;
    let mut data: Vec<Value> = (0..20).map(|i| record(i, &format!("Company {i}"))).collect();
    data.push(json!({ "external_id": "blank", "company": { "name": "" } }));
    let body = json!({ "data": data, "external_bulk_id": "b-1" });
    let (status, resp) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &body).await;
    assert_eq!(status, 202);
    let id = resp["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("/v3/enrichment/results/"));

    let (status, _) = poll(&client, &emu, &id).await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, first) = poll(&client, &emu, &id).await;
    assert_eq!(status, 200);
    let results = first["results"].as_array().expect("results");
    assert_eq!(results.len(), 21);

    let ids: HashSet<&str> = results.iter().filter_map(|r| r["external_id"].as_str()).collect();
    let expected: HashSet<String> = (0..20).map(|i| format!("row-{i}")).chain(["blank".to_owned()]).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect());

    let mut enriched = 0;
    for r in results {
        let ext = r["external_id"].as_str().unwrap_or_default();
        if ext == "blank" {
            assert_eq!(r["status"], "error");
            assert_eq!(r["error"]["code"], 1200);
            continue;
        }
        let i: usize = ext.trim_start_matches("row-").parse().expect("index");
        let want = firmographics_for(&format!("Company {i}"), None);
        enriched += u64::from(want.is_some());
        assert_eq!(r["status"], "success");
        assert_eq!(r["data"]["company"], want.unwrap_or_else(|| json!({})));
    }

    // Shuffled, but stable across polls, and charged once.
    let order: Vec<&str> = results.iter().filter_map(|r| r["external_id"].as_str()).collect();
    let submitted: Vec<String> = (0..20).map(|i| format!("row-{i}")).chain(["blank".into()]).collect();
    assert_ne!(order, submitted.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, second) = poll(&client, &emu, &id).await;
    assert_eq!(status, 200);
    assert_eq!(first, second);
    let stats = emu.stats();
    assert_eq!(stats.credits_used, enriched);
    assert_eq!(stats.polls, 3);
    assert_eq!(stats.bulk_submissions, 1);
    assert_eq!(stats.records_received, 21);
}

#[tokio::test]
async fn record_errors_use_code_1100() {
    let (emu, client) = start(Knobs { record_error_rate: 1.0, ..Knobs::default() }).await;
    let body = json!({ "data": [record(0, "Contoso"), record(1, "Globex")] });
    let (_, resp) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &body).await;
    let (status, done) = poll(&client, &emu, resp["id"].as_str().unwrap_or_default()).await;
    assert_eq!(status, 200);
    for r in done["results"].as_array().expect("results") {
        assert_eq!(r["status"], "error");
        assert_eq!(r["error"], json!({ "code": 1100, "message": "Internal error" }));
    }
    assert_eq!(emu.stats().credits_used, 0);
}

#[tokio::test]
async fn over_tps_is_429() {
    let (emu, client) = start(Knobs { tps_limit: Some(3), ..Knobs::default() }).await;
    let body = record(0, "Contoso");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, resp) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
        if status == 429 {
            assert_eq!(resp, json!({ "error": "Too Many Requests" }));
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(emu.stats().throttled, 2);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn out_of_credits_is_427() {
    // Find two names the emulator enriches, so each costs exactly one credit.
    let names: Vec<String> =
        (0..).map(|i| format!("Company {i}")).filter(|n| firmographics_for(n, None).is_some()).take(2).collect();
    let (emu, client) = start(Knobs { credits: Some(2), ..Knobs::default() }).await;
    let bulk = json!({ "data": [record(0, &names[0]), record(1, &names[1]), record(2, "x")] });
    let (status, resp) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &bulk).await;
    assert_eq!(status, 427);
    assert_eq!(resp["error"], "Insufficient credits");

    for name in &names {
        let body = record(0, name);
        let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await;
        assert_eq!(status, 200);
    }
    let (status, resp) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &record(9, "Contoso")).await;
    assert_eq!(status, 427);
    assert_eq!(resp["error"], "Insufficient credits");
    let stats = emu.stats();
    assert_eq!((stats.insufficient_credits, stats.credits_used), (2, 2));
}

#[tokio::test]
async fn injected_server_errors_are_5xx() {
    let (emu, client) = start(Knobs { server_error_rate: 1.0, ..Knobs::default() }).await;
    for _ in 0..4 {
        let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &record(0, "Contoso")).await;
        assert!(status == 500 || status == 503, "{status}");
    }
    assert_eq!(emu.stats().server_errors, 4);
    assert_eq!(emu.stats().single_requests, 0);
}

#[tokio::test]
async fn firmographics_are_deterministic() {
    for name in ["Contoso", "Globex Corp", "Fuzzy Logic", "Formula One", "Acme"] {
        assert_eq!(firmographics_for(name, None), firmographics_for(name, None));
        assert_eq!(
            firmographics_for(name, Some("https://www.example.com/")),
            firmographics_for(name, Some("example.com"))
        );
    }
    // Pinned values: if these change, every downstream expectation changes, so it must be
    // deliberate.
    let contoso = firmographics_for("Contoso", None).expect("Contoso is enriched");
    assert_eq!(contoso["ug_company_id"], "LSB507496940");
    assert_eq!(contoso["name"], "Contoso Inc.");
    assert_eq!(contoso["website"], "contoso.com");
    assert_eq!(contoso["matching_confidence"]["level"], "HIGH");
    let spaced = firmographics_for("  contoso ", None).expect("same normalised name");
    assert_eq!(spaced["ug_company_id"], contoso["ug_company_id"]);
    assert_eq!(spaced["original_name"], "  contoso ");
    assert_eq!(firmographics_for("Unknown Corp", None), None);
    let formula = firmographics_for("Formula Labs", None).expect("markers always enrich");
    assert!(formula["name"].as_str().is_some_and(|n| n.starts_with('=')));
}

#[tokio::test]
async fn dropping_the_emulator_stops_it() {
    let (emu, client) = start(Knobs::default()).await;
    let url = format!("{}/enrichment/enrich/single", emu.base_url());
    drop(emu);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result = client.post(&url).json(&record(0, "x")).send().await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_bulk_is_ready_later_the_more_records_it_has() {
    // 100 ms + 5 ms per record: 1 record is ready after 105 ms, 60 records after 400 ms.
    let knobs = Knobs { bulk_ready_after_ms: 100, bulk_ready_per_record_us: 5_000, ..Knobs::default() };
    let (emu, client) = start(knobs).await;
    let small = json!({ "data": [record(0, "Contoso")] });
    let large = json!({ "data": (0..60).map(|i| record(i, "Globex")).collect::<Vec<_>>() });
    let (_, small) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &small).await;
    let (_, large) = post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &large).await;
    let (small, large) = (small["id"].as_str().unwrap_or_default(), large["id"].as_str().unwrap_or_default());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(poll(&client, &emu, small).await.0, 200);
    assert_eq!(poll(&client, &emu, large).await.0, 204);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(poll(&client, &emu, large).await.0, 200);
}

#[tokio::test]
async fn polls_that_do_not_count_are_never_429_and_leave_the_window_to_submissions() {
    let (emu, client) = start(Knobs { tps_limit: Some(2), polls_count: false, ..Knobs::default() }).await;
    let (status, resp) =
        post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &json!({ "data": [record(0, "Contoso")] })).await;
    assert_eq!(status, 202);
    let id = resp["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..5 {
        assert_eq!(poll(&client, &emu, &id).await.0, 200);
    }
    // One submission and five polls within the second: only the submission filled the window.
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &record(1, "Globex")).await;
    assert_eq!(status, 200);
    let (status, _) = post(&client, &emu, "/enrichment/enrich/single", TOKEN, &record(2, "Initech")).await;
    assert_eq!(status, 429);
    let arrivals = emu.arrivals();
    assert_eq!(arrivals.iter().filter(|a| a.poll).count(), 5);
    assert!(arrivals.iter().filter(|a| a.poll).all(|a| !a.throttled));
}

#[tokio::test]
async fn polls_count_against_the_limit_by_default() {
    let (emu, client) = start(Knobs { tps_limit: Some(2), ..Knobs::default() }).await;
    let (_, resp) =
        post(&client, &emu, "/enrichment/enrich/bulk", TOKEN, &json!({ "data": [record(0, "Contoso")] })).await;
    let id = resp["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(poll(&client, &emu, &id).await.0, 200);
    assert_eq!(poll(&client, &emu, &id).await.0, 429);
}

#[tokio::test]
async fn the_tps_limit_can_be_raised_while_running() {
    let (emu, client) = start(Knobs { tps_limit: Some(1), ..Knobs::default() }).await;
    let body = record(0, "Contoso");
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await.0);
    }
    emu.set_tps_limit(Some(3));
    for _ in 0..3 {
        statuses.push(post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await.0);
    }
    assert_eq!(statuses, [200, 429, 200, 200, 429]);
    assert_eq!(emu.knobs().tps_limit, Some(3));
    // The second of the run, as a benchmark reads it: 3 admitted, 2 answered 429.
    let seconds = emu.requests_per_second(started);
    assert_eq!((seconds[0].admitted, seconds[0].throttled), (3, 2));
    let before = emu.stats();
    emu.set_tps_limit(None);
    assert_eq!(post(&client, &emu, "/enrichment/enrich/single", TOKEN, &body).await.0, 200);
    let phase = emu.stats().since(&before);
    assert_eq!((phase.requests, phase.throttled, phase.single_requests), (1, 0, 1));
}
