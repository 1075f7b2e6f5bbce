use serde_json::{Value, json};

use crate::harness::{TestEnv, column, expected, invoke, parse_csv};

const CUSTOMERS: &str = include_str!("../data/customers.csv");
/// `incoming/Customers (EU) Q4 + Übersicht.csv`, as S3 encodes it in the sample event.
const SOURCE_KEY: &str = "incoming/Customers (EU) Q4 + Übersicht.csv";
const OUTPUT_KEY: &str = "enriched/Customers (EU) Q4 + Übersicht.csv";
const RAW_EVENT_KEY: &str = "incoming/Customers+%28EU%29+Q4+%2B+%C3%9Cbersicht.csv";

#[tokio::test]
async fn an_s3_put_with_an_encoded_key_enriches_every_row_in_order() {
    let env = TestEnv::new().await;
    env.put(SOURCE_KEY, CUSTOMERS).await;
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event(RAW_EVENT_KEY)).await;

    let result = &response["results"][0];
    assert_eq!(result["outcome"], "enriched", "{response}");
    assert_eq!(result["key"], SOURCE_KEY);
    assert_eq!(result["output_key"], OUTPUT_KEY);

    let (in_header, in_rows) = parse_csv(CUSTOMERS.as_bytes());
    let (out_header, out_rows) = parse_csv(&env.get(OUTPUT_KEY).await.expect("output written"));
    assert_eq!(out_header[..in_header.len()], in_header[..], "original columns first, unchanged");
    assert_eq!(out_header.len(), in_header.len() + 21);
    assert_eq!(out_rows.len(), in_rows.len(), "every input row exactly once");

    let status = column(&out_header, "leadspace_status");
    let name = column(&out_header, "leadspace_name");
    for (input, output) in in_rows.iter().zip(&out_rows) {
        assert_eq!(output[..input.len()], input[..], "original fields unchanged, in order");
        let company = input[1].split_whitespace().collect::<Vec<_>>().join(" ");
        let (want_status, want_name) = match input[0].as_str() {
            "A-006" => ("invalid_input", String::new()),
            // Three spellings of one company: the first spelling is what was sent.
            "A-001" | "A-003" | "A-010" => expected("Contoso Ltd", Some("contoso.com")),
            _ => expected(&company, Some(&input[2])),
        };
        assert_eq!(output[status], want_status, "row {}", input[0]);
        let shown = output[name].trim_start_matches('\'');
        assert_eq!(shown, want_name, "row {}", input[0]);
    }

    let summary = env.summary(&format!("{OUTPUT_KEY}.summary.json")).await;
    let rows = &summary["rows"];
    let sum: u64 = ["enriched", "not_matched", "low_confidence", "invalid_input", "failed", "not_attempted"]
        .iter()
        .map(|k| rows[k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(rows["total"], in_rows.len() as u64);
    assert_eq!(sum, in_rows.len() as u64, "row counts add up: {summary}");
    assert_eq!(rows["invalid_input"], 1);
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["unique_companies"], 7);
    assert_eq!(summary["source"]["key"], SOURCE_KEY);
    assert_eq!(
        summary["field_mapping"],
        json!({"company_name": "Account Name", "website": "Website", "country": "Country", "city": "City"})
    );
    assert!(summary["source"]["etag"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn a_company_repeated_in_other_case_and_spacing_is_sent_and_billed_once() {
    let env = TestEnv::new().await;
    env.put(SOURCE_KEY, CUSTOMERS).await;
    let app = env.app(&[]);

    invoke(&app, env.s3_event(RAW_EVENT_KEY)).await;

    let received = env.emulator.received_records();
    let contoso = received
        .iter()
        .filter(|r| r["company"]["name"].as_str().is_some_and(|n| n.to_lowercase().contains("contoso")))
        .count();
    assert_eq!(contoso, 1, "Contoso appears three times in the file but is sent once");
    assert_eq!(received.len(), 7, "9 rows with a name, 7 distinct companies");
    let summary = env.summary(&format!("{OUTPUT_KEY}.summary.json")).await;
    assert_eq!(summary["leadspace"]["records_sent"], 7);
}

#[tokio::test]
async fn nothing_but_mapped_fields_reaches_leadspace() {
    let env = TestEnv::new().await;
    env.put(SOURCE_KEY, CUSTOMERS).await;
    let app = env.app(&[]);

    invoke(&app, env.s3_event(RAW_EVENT_KEY)).await;

    let received = env.emulator.received_records();
    assert!(!received.is_empty());
    for record in &received {
        let text = record.to_string();
        for private in ["@", "A-00", "Key account", "duplicate", "Follow up"] {
            assert!(!text.contains(private), "{private:?} leaked to Leadspace in {text}");
        }
        let object = record.as_object().unwrap();
        assert!(object.keys().all(|k| k == "external_id" || k == "company"), "{text}");
        let company = record["company"].as_object().unwrap();
        assert!(company.keys().all(|k| ["name", "website", "address"].contains(&k.as_str())), "{text}");
        if let Some(address) = company.get("address").and_then(Value::as_object) {
            assert!(address.keys().all(|k| ["country", "city"].contains(&k.as_str())), "{text}");
        }
    }
}

#[tokio::test]
async fn bulk_results_arriving_out_of_order_reach_their_own_rows() {
    let env = TestEnv::new().await;
    let mut csv = String::from("Company,Website\n");
    for i in 0..57 {
        csv.push_str(&format!("Company Number {i},c{i}.example\n"));
    }
    env.put("incoming/many.csv", csv.clone()).await;
    let app = env.app(&[("LEADSPACE_MODE", "bulk"), ("BATCH_SIZE", "10"), ("MAX_IN_FLIGHT", "3")]);

    let response = invoke(&app, env.enrich_event("incoming/many.csv")).await;
    assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");

    let stats = env.emulator.stats();
    assert_eq!(stats.bulk_submissions, 6);
    assert_eq!(stats.single_requests, 0);
    let (header, rows) = parse_csv(&env.get("enriched/many.csv").await.unwrap());
    let (status, name, website) =
        (column(&header, "leadspace_status"), column(&header, "leadspace_name"), column(&header, "leadspace_website"));
    assert_eq!(rows.len(), 57);
    for row in &rows {
        let (want_status, want_name) = expected(&row[0], Some(&row[1]));
        assert_eq!((row[status].as_str(), row[name].as_str()), (want_status, want_name.as_str()), "{row:?}");
        if want_status == "enriched" {
            assert_eq!(row[website], row[1], "the website Leadspace echoes is the row's own");
        }
    }
}

#[tokio::test]
async fn a_handful_of_companies_goes_through_the_single_api() {
    let env = TestEnv::new().await;
    env.put("incoming/few.csv", "Organization;Domain\nContoso Ltd;contoso.com\nFabrikam;fabrikam.example\n").await;
    let app = env.app(&[]);

    let response = invoke(&app, env.enrich_event("incoming/few.csv")).await;

    assert_eq!(response["results"][0]["rows"]["total"], 2, "{response}");
    let stats = env.emulator.stats();
    assert_eq!((stats.single_requests, stats.bulk_submissions), (2, 0));
    let text = String::from_utf8(env.get("enriched/few.csv").await.unwrap()).unwrap();
    assert!(text.starts_with("Organization;Domain;leadspace_status;"), "semicolons stay semicolons: {text}");
}

#[tokio::test]
async fn the_direct_invoke_sample_applies_its_field_mapping() {
    let env = TestEnv::new().await;
    env.put(SOURCE_KEY, CUSTOMERS).await;
    let app = env.app(&[]);
    let mut event: Value = serde_json::from_str(include_str!("../../events/cli-enrich.json")).unwrap();
    event["bucket"] = Value::String(env.bucket.clone());

    let response = invoke(&app, event).await;

    assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");
    let summary = env.summary(&format!("{OUTPUT_KEY}.summary.json")).await;
    assert_eq!(
        summary["field_mapping"],
        json!({"company_name": "Account Name", "website": "Website", "country": "Country", "city": "City"})
    );
}

#[tokio::test]
async fn values_from_leadspace_that_look_like_formulas_are_neutralised() {
    let env = TestEnv::new().await;
    env.put("incoming/f.csv", "Company\nFormula Industries\n=1+1\n").await;
    // The emulator gives this name a weak match; accept it so its attributes are written.
    let app = env.app(&[("MIN_CONFIDENCE", "VERY LOW")]);

    invoke(&app, env.enrich_event("incoming/f.csv")).await;

    let (header, rows) = parse_csv(&env.get("enriched/f.csv").await.unwrap());
    let name = column(&header, "leadspace_name");
    assert!(rows[0][name].starts_with("'="), "{:?}", rows[0]);
    assert_eq!(rows[1][0], "=1+1", "the customer's own cell is left as it was");
}

#[tokio::test]
async fn an_output_larger_than_a_part_is_uploaded_in_parts_with_every_row() {
    let env = TestEnv::new().await;
    let notes = "n".repeat(120);
    let mut csv = String::from("Id,Company,Notes\n");
    for i in 0..80_000 {
        csv.push_str(&format!("{i},Firm {},{notes}\n", i % 10));
    }
    assert!(csv.len() > 9 * 1024 * 1024, "the output must need more than one part");
    env.put("incoming/big.csv", csv).await;
    let app = env.app(&[]);

    let response = invoke(&app, env.enrich_event("incoming/big.csv")).await;

    assert_eq!(response["results"][0]["rows"]["total"], 80_000, "{response}");
    assert_eq!(env.emulator.stats().records_received, 10, "ten companies, each sent once");
    let (_, rows) = parse_csv(&env.get("enriched/big.csv").await.unwrap());
    assert_eq!(rows.len(), 80_000);
    assert!(rows.iter().enumerate().all(|(i, row)| row[0] == i.to_string()), "every row once, in order");
}
