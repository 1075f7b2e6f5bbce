use serde_json::{Value, json};

use crate::harness::{TestEnv, expected, gunzip, gzip, invoke};

const CUSTOMERS: &str = include_str!("../data/customers.jsonl");

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

#[tokio::test]
async fn gzipped_json_lines_come_back_gzipped_with_every_line_enriched() {
    let env = TestEnv::new().await;
    env.put("incoming/crm/export.jsonl.gz", gzip(CUSTOMERS.as_bytes())).await;
    let app = env.app(&[("FIELD_MAPPING", r#"{"company_name": "account.name", "website": "account.domain"}"#)]);

    let response = invoke(&app, env.enrich_event("incoming/crm/export.jsonl.gz")).await;
    assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");

    let output = lines(&gunzip(&env.get("enriched/crm/export.jsonl.gz").await.expect("output written")));
    let input: Vec<Value> =
        CUSTOMERS.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(output.len(), input.len(), "every non-blank line exactly once");
    for (original, enriched) in input.iter().zip(&output) {
        for (key, value) in original.as_object().unwrap() {
            assert_eq!(&enriched[key], value, "field {key} unchanged");
        }
        let name = original["account"]["name"].as_str().unwrap_or_default();
        let (want_status, want_name) = match original["id"].as_u64() {
            Some(4) => ("invalid_input", String::new()),
            Some(1 | 2) => expected("Northwind Traders", Some("northwind.example")),
            _ => expected(name, original["account"]["domain"].as_str()),
        };
        assert_eq!(enriched["leadspace_status"], want_status, "{enriched}");
        assert_eq!(enriched["leadspace_name"].as_str().unwrap_or_default(), want_name, "{enriched}");
    }
    assert_eq!(env.emulator.stats().records_received, 3, "Northwind is sent once");

    let raw = String::from_utf8(gunzip(&env.get("enriched/crm/export.jsonl.gz").await.unwrap())).unwrap();
    assert!(raw.lines().next().unwrap().contains("\"score\": 1.50"), "original text kept byte for byte");
    let summary = env.summary("enriched/crm/export.jsonl.gz.summary.json").await;
    assert_eq!(summary["output"]["format"], "jsonl.gz");
    assert_eq!(summary["rows"]["total"], 5);
}

#[tokio::test]
async fn json_lines_auto_detect_top_level_keys() {
    let env = TestEnv::new().await;
    env.put("incoming/a.ndjson", "{\"Company Name\": \"Contoso Ltd\", \"email\": \"x@y.z\"}\n").await;
    let app = env.app(&[]);

    invoke(&app, env.enrich_event("incoming/a.ndjson")).await;

    let output = lines(&env.get("enriched/a.ndjson").await.unwrap());
    assert_eq!(output[0]["leadspace_status"], expected("Contoso Ltd", None).0);
    assert_eq!(env.emulator.received_records()[0]["company"], json!({"name": "Contoso Ltd"}));
}
