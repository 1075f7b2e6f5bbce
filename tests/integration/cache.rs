//! The cross-run cache against moto's DynamoDB: a company answered within the TTL is never sent
//! (or paid for) again, whichever file or refresh asks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use leadspace_enrich::cache::AnswerCache;
use leadspace_enrich::company::CompanyQuery;
use serde_json::{Value, json};

use crate::harness::{TestEnv, firms_csv, invoke, parse_csv};

fn enrich(env: &TestEnv, key: &str, force: bool) -> Value {
    let mut event = env.enrich_event(key);
    event["force"] = json!(force);
    event
}

/// The output's rows as (company, every leadspace_* value) pairs.
async fn answers(env: &TestEnv, output_key: &str) -> HashMap<String, Vec<String>> {
    let (header, rows) = parse_csv(&env.get(output_key).await.expect("output written"));
    let company = header.iter().position(|h| h == "Company").expect("Company column");
    let first = header.iter().position(|h| h == "leadspace_status").expect("status column");
    rows.into_iter().map(|row| (row[company].clone(), row[first..].to_vec())).collect()
}

#[tokio::test]
async fn companies_answered_in_one_file_are_not_sent_again_by_another_file_or_a_forced_rerun() {
    let env = TestEnv::new().await;
    let table = env.cache_table().await;
    let app = env.app(&[("ENRICHMENT_CACHE_TTL_DAYS", "30"), ("ENRICHMENT_CACHE_TABLE", &table)]);
    env.put("incoming/a.csv", firms_csv(40)).await;
    invoke(&app, enrich(&env, "incoming/a.csv", false)).await;
    let first = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(first["leadspace"]["records_sent"], 40, "{first}");
    assert_eq!(first["cache"], json!({"hits": 0, "credits_saved": 0, "stored": 40, "errors": 0}));

    // Firm 30..39 again, far from each other and mixed with 5 new firms.
    let mut b = String::from("Id,Company\n");
    for i in (30..40).chain(100..105) {
        b.push_str(&format!("{i},Firm {i}\n"));
    }
    env.put("incoming/b.csv", b).await;
    invoke(&app, enrich(&env, "incoming/b.csv", false)).await;
    let second = env.summary("enriched/b.csv.summary.json").await;
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(second["leadspace"]["records_sent"], 5, "only the new firms are sent: {second}");
    let (from_a, from_b) = (answers(&env, "enriched/a.csv").await, answers(&env, "enriched/b.csv").await);
    // Leadspace charges every match, weak ones (low_confidence here) included.
    let matched = |i: &i32| ["enriched", "low_confidence"].contains(&from_a[&format!("Firm {i}")][0].as_str());
    let paid = (30..40).filter(matched).count() as u64;
    assert!(paid > 0 && paid <= 10);
    let cache = json!({"hits": 10, "credits_saved": paid, "stored": 5, "errors": 0});
    assert_eq!(second["cache"], cache, "credits are saved for matches only: Leadspace charges those");
    for i in 30..40 {
        let name = format!("Firm {i}");
        assert_eq!(from_b[&name], from_a[&name], "a cached answer is the answer Leadspace gave");
    }

    let sent_before = env.emulator.stats().records_received;
    invoke(&app, enrich(&env, "incoming/a.csv", true)).await;
    let rerun = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(env.emulator.stats().records_received, sent_before, "a forced rerun within the TTL sends nothing");
    assert_eq!((rerun["status"].as_str(), rerun["cache"]["hits"].as_u64()), (Some("complete"), Some(40)));
    assert_eq!(answers(&env, "enriched/a.csv").await, from_a);
}

/// Stores an answer for `name` as if a run `age_days` ago had received it.
async fn seed(env: &TestEnv, table: &str, name: &str, age_days: i64, leadspace_name: &str, confidence: &str) {
    let match_key = CompanyQuery { name: name.into(), ..Default::default() }.key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let enriched_at = now - age_days * 86_400;
    let answer = HashMap::from([
        ("leadspace_name".to_string(), AttributeValue::S(leadspace_name.into())),
        ("leadspace_confidence".to_string(), AttributeValue::S(confidence.into())),
    ]);
    env.dynamodb()
        .put_item()
        .table_name(table)
        .item("company_key", AttributeValue::S(AnswerCache::key_for(&env.emulator.base_url(), &match_key)))
        .item("status", AttributeValue::S("enriched".into()))
        .item("answer", AttributeValue::M(answer))
        .item("enriched_at", AttributeValue::N(enriched_at.to_string()))
        .item("expires_at", AttributeValue::N((enriched_at + 30 * 86_400).to_string()))
        .send()
        .await
        .expect("seed the cache table");
}

#[tokio::test]
async fn only_entries_within_the_ttl_are_used_and_min_confidence_still_applies_to_them() {
    let env = TestEnv::new().await;
    let table = env.cache_table().await;
    seed(&env, &table, "Firm 0", 1, "CACHED ZERO", "HIGH").await;
    seed(&env, &table, "Firm 1", 29, "CACHED ONE", "VERY LOW").await;
    // DynamoDB deletes expired items lazily, so a stale one may still be read: it must not count.
    seed(&env, &table, "Firm 2", 31, "STALE TWO", "HIGH").await;
    env.put("incoming/a.csv", firms_csv(3)).await;
    let app = env.app(&[("ENRICHMENT_CACHE_TTL_DAYS", "30"), ("ENRICHMENT_CACHE_TABLE", &table)]);

    invoke(&app, enrich(&env, "incoming/a.csv", false)).await;

    let sent: Vec<String> = env.emulator.received_records().iter().map(|r| r["company"]["name"].to_string()).collect();
    assert_eq!(sent, ["\"Firm 2\""], "only the stale entry's company is sent");
    let out = answers(&env, "enriched/a.csv").await;
    assert_eq!((out["Firm 0"][0].as_str(), out["Firm 0"][3].as_str()), ("enriched", "CACHED ZERO"));
    assert_eq!((out["Firm 1"][0].as_str(), out["Firm 1"][3].as_str()), ("low_confidence", ""));
    assert_eq!(out["Firm 1"].last().map(String::as_str), Some("VERY LOW"));
    assert_ne!(out["Firm 2"][3], "STALE TWO");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!((summary["cache"]["hits"].as_u64(), summary["cache"]["credits_saved"].as_u64()), (Some(2), Some(2)));
}

#[tokio::test]
async fn a_missing_cache_table_costs_credits_but_never_the_run_and_no_cache_means_no_cache_counts() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", firms_csv(5)).await;
    let app = env.app(&[("ENRICHMENT_CACHE_TTL_DAYS", "7"), ("ENRICHMENT_CACHE_TABLE", "no-such-table")]);
    invoke(&app, enrich(&env, "incoming/a.csv", false)).await;
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["leadspace"]["records_sent"], 5);
    assert_eq!((summary["cache"]["hits"].as_u64(), summary["cache"]["stored"].as_u64()), (Some(0), Some(0)));
    assert!(summary["cache"]["errors"].as_u64() >= Some(2), "one failed lookup and one failed store: {summary}");

    invoke(&env.app(&[]), enrich(&env, "incoming/a.csv", true)).await;
    let without = env.summary("enriched/a.csv.summary.json").await;
    assert!(without.get("cache").is_none(), "the cache is off unless ENRICHMENT_CACHE_TTL_DAYS is set: {without}");
}

#[tokio::test]
async fn credits_saved_are_the_credits_leadspace_charged_for_the_same_companies() {
    let env = TestEnv::new().await;
    let table = env.cache_table().await;
    let app = env.app(&[("ENRICHMENT_CACHE_TTL_DAYS", "30"), ("ENRICHMENT_CACHE_TABLE", &table)]);
    let mut csv = String::from("Id,Company\n");
    for i in 0..10 {
        // "Unknown" names are never matched by the emulator, and never charged.
        let name = if i < 5 { format!("Unknown {i}") } else { format!("Firm {i}") };
        csv.push_str(&format!("{i},{name}\n"));
    }
    env.put("incoming/a.csv", csv).await;
    invoke(&app, enrich(&env, "incoming/a.csv", false)).await;
    let charged = env.emulator.stats().credits_used;
    invoke(&app, enrich(&env, "incoming/a.csv", true)).await;
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["cache"]["hits"], 10, "{summary}");
    assert_eq!(summary["cache"]["credits_saved"].as_u64(), Some(charged), "{summary}");
}
