use serde_json::json;

use crate::harness::{TestEnv, invoke};

#[tokio::test]
async fn an_event_for_an_object_under_the_output_prefix_is_ignored() {
    let env = TestEnv::new().await;
    env.put("enriched/already.csv", "Company\nContoso\n").await;
    let before = env.keys().await;
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event("enriched/already.csv")).await;

    assert_eq!(response["results"][0]["outcome"], "ignored", "{response}");
    assert_eq!(env.keys().await, before, "nothing written");
    assert_eq!(env.emulator.stats().requests, 0);
}

#[tokio::test]
async fn an_object_outside_the_input_prefix_is_ignored() {
    let env = TestEnv::new().await;
    env.put("elsewhere/x.csv", "Company\nContoso\n").await;
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event("elsewhere/x.csv")).await;

    assert_eq!(response["results"][0]["outcome"], "ignored");
    assert_eq!(env.keys().await, ["elsewhere/x.csv"]);
}

#[tokio::test]
async fn a_redelivered_event_is_skipped_without_calling_leadspace() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Company\nContoso\nFabrikam\n").await;
    let app = env.app(&[]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;
    let requests = env.emulator.stats().requests;

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["outcome"], "skipped", "{response}");
    assert_eq!(env.emulator.stats().requests, requests, "zero Leadspace calls on redelivery");
}

#[tokio::test]
async fn without_consent_no_record_leaves_and_the_summary_names_the_variable() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Company\nContoso\n").await;
    let app = env.app(&[("DATA_SHARING_CONSENT", "false")]);

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["outcome"], "failed");
    assert_eq!(env.emulator.stats().requests, 0);
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().unwrap().contains("DATA_SHARING_CONSENT=true"), "{summary}");
}

#[tokio::test]
async fn a_file_without_a_company_column_fails_naming_its_columns() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Email,Notes\nx@y.z,hello\n").await;
    let app = env.app(&[]);

    invoke(&app, env.s3_event("incoming/a.csv")).await;

    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["status"], "failed");
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("\"Email\", \"Notes\"") && error.contains("FIELD_MAPPING"), "{error}");
    assert_eq!(env.get("enriched/a.csv").await, None, "no output for a file that could not be processed");
}

#[tokio::test]
async fn an_unsupported_format_gets_a_failed_summary_naming_the_supported_ones() {
    let env = TestEnv::new().await;
    env.put("incoming/book.xlsx", "PK\x03\x04").await;
    let app = env.app(&[]);

    invoke(&app, env.s3_event("incoming/book.xlsx")).await;

    let summary = env.summary("enriched/book.xlsx.summary.json").await;
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().unwrap().contains(".jsonl.gz"), "{summary}");
}

#[tokio::test]
async fn an_event_the_function_does_not_understand_is_refused_with_the_accepted_shapes() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);

    let error = leadspace_enrich::handler::handle(&app, json!({"action": "explode"}), None).await.unwrap_err();

    assert!(!error.is_retryable());
    assert!(error.to_string().contains("\"enrich\""), "{error}");
}

#[tokio::test]
async fn the_token_never_appears_in_outputs_or_summaries() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Company\nContoso\n").await;
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert!(!response.to_string().contains(crate::harness::TOKEN));
    for key in env.keys().await {
        let body = env.get(&key).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains(crate::harness::TOKEN), "token in {key}");
    }
}

#[tokio::test]
async fn a_dry_run_estimates_without_calling_leadspace_or_writing() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Company\nContoso\nCONTOSO\n\"\"\nFabrikam\n").await;
    let app = env.app(&[]);

    let response =
        invoke(&app, json!({"action": "enrich", "bucket": env.bucket, "key": "incoming/a.csv", "dry_run": true})).await;

    let result = &response["results"][0];
    assert_eq!(
        result["estimate"],
        json!({"rows": 4, "unique_companies": 2, "rows_without_company_name": 1, "credits_at_most": 2}),
        "{response}"
    );
    assert_eq!(env.emulator.stats().requests, 0);
    assert_eq!(env.keys().await, ["incoming/a.csv"], "nothing written");
}

#[tokio::test]
async fn credits_running_out_leaves_the_rest_not_attempted_and_still_writes_everything() {
    let env = TestEnv::with_knobs(leadspace_emulator::Knobs { credits: Some(3), ..Default::default() }).await;
    let csv: String = std::iter::once("Company".to_string())
        .chain((0..8).map(|i| format!("Firm {i}")))
        .collect::<Vec<_>>()
        .join("\n");
    env.put("incoming/a.csv", csv).await;
    let app = env.app(&[("LEADSPACE_MODE", "single"), ("MAX_IN_FLIGHT", "1")]);

    let response = invoke(&app, env.s3_event("incoming/a.csv")).await;

    assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");
    let summary = env.summary("enriched/a.csv.summary.json").await;
    assert_eq!(summary["status"], "partial");
    assert!(summary["error"].as_str().unwrap().contains("427"), "{summary}");
    let rows = &summary["rows"];
    assert_eq!(rows["total"], 8);
    assert!(rows["not_attempted"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(env.emulator.stats().insufficient_credits, 1, "no request after the 427");
    let output = String::from_utf8(env.get("enriched/a.csv").await.unwrap()).unwrap();
    assert_eq!(output.lines().count(), 9, "every row written, answered or not");
}

#[tokio::test]
async fn a_dry_run_with_a_bad_mapping_leaves_a_complete_summary_alone() {
    let env = TestEnv::new().await;
    env.put("incoming/a.csv", "Company\nContoso\n").await;
    let app = env.app(&[]);
    invoke(&app, env.s3_event("incoming/a.csv")).await;

    let response = invoke(
        &app,
        json!({"action": "enrich", "bucket": env.bucket, "key": "incoming/a.csv", "dry_run": true,
               "field_mapping": {"company_name": "Acount Name"}}),
    )
    .await;

    assert_eq!(response["results"][0]["outcome"], "failed", "{response}");
    assert_eq!(env.summary("enriched/a.csv.summary.json").await["status"], "complete", "a dry run writes nothing");
}

#[tokio::test]
async fn every_action_refuses_a_bucket_that_is_not_the_functions_naming_the_allowed_ones() {
    let env = TestEnv::new().await;
    let other = TestEnv::new().await;
    other.put("incoming/a.csv", "Company\nContoso\n").await;
    let app = env.app(&[("SOURCE_BUCKET", env.bucket.as_str())]);
    let b = other.bucket.as_str();
    let batch_input = json!({"work_bucket": b, "answers_prefix": "enriched/_state/work/x/batches/",
                             "journal_prefix": "enriched/_state/journal/a.csv/0123456789abcdef/", "run": "x"});
    let payloads = [
        json!({"action": "enrich", "bucket": b, "key": "incoming/a.csv"}),
        json!({"action": "refresh", "bucket": b, "prefix": "incoming/"}),
        json!({"action": "status", "bucket": b}),
        json!({"action": "delete", "bucket": b, "key": "incoming/a.csv"}),
        json!({"BatchInput": batch_input, "Items": [{"company": 0, "company_name": "Contoso"}]}),
        other.s3_event("incoming/a.csv"),
    ];
    for payload in payloads {
        let error = leadspace_enrich::handler::handle(&app, payload.clone(), None).await.expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{b:?}")) && message.contains(&format!("{:?} (SOURCE_BUCKET)", env.bucket)),
            "{payload}: {message}"
        );
        assert!(!error.is_retryable(), "{payload}: a foreign bucket is not a passing fault");
    }
    assert_eq!(env.emulator.stats().records_received, 0);
    assert_eq!(other.keys().await, ["incoming/a.csv"], "nothing written to the other bucket");
}

#[tokio::test]
async fn a_refresh_outside_the_input_prefix_is_refused_and_lists_nothing() {
    let env = TestEnv::new().await;
    env.put("private/payroll-2026.csv", "Company\nContoso\n").await;
    let app = env.app(&[]);

    // An empty prefix is the default, INPUT_PREFIX.
    let default = invoke(&app, json!({"action": "refresh", "bucket": env.bucket, "prefix": ""})).await;
    assert!(!default.to_string().contains("payroll"), "{default}");
    for prefix in ["private/", "inc"] {
        let payload = json!({"action": "refresh", "bucket": env.bucket, "prefix": prefix});
        let error = leadspace_enrich::handler::handle(&app, payload, None).await.expect_err(prefix);
        let message = error.to_string();
        assert!(message.contains("INPUT_PREFIX") && !message.contains("payroll"), "{prefix:?}: {message}");
    }
}
