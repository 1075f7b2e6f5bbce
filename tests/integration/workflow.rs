//! Large files through Step Functions, against moto (S3 and Step Functions) and the emulator.
//!
//! moto records executions but does not run them, so `run_execution` plays the state machine
//! as template.yaml defines it: the definition is read from the template, and every payload the
//! function gets is built from the definition's own ItemReader, ItemBatcher, BatchInput, Retry
//! and Catch, the way Step Functions builds it.

use std::collections::HashMap;

use leadspace_emulator::Knobs;
use leadspace_enrich::error::HandlerError;
use leadspace_enrich::pipeline::App;
use serde_json::{Value, json};

use crate::billing::assert_each_company_billed_once;
use crate::harness::{TestEnv, gunzip, gzip, invoke, moto_endpoint, try_invoke};
use crate::s3_faults::{FaultRule, S3Faults};

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:leadspace-enrich";

/// The state machine of template.yaml, with its substitutions made.
fn definition() -> Value {
    let template: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../template.yaml")).expect("template.yaml is YAML");
    let definition = &template["Resources"]["LargeFileWorkflow"]["Properties"]["Definition"];
    let text = serde_json::to_string(definition).expect("the definition is plain data");
    serde_json::from_str(&text.replace("${EnrichFunctionArn}", FUNCTION_ARN)).expect("JSON")
}

/// `$.name` paths, the only kind the definition uses.
fn at<'v>(input: &'v Value, path: &str) -> &'v Value {
    let name = path.strip_prefix("$.").unwrap_or_else(|| panic!("unexpected path {path}"));
    input.get(name).unwrap_or_else(|| panic!("{path} is not in the input {input}"))
}

/// A Parameters-style object: `"x.$": "$.y"` takes y from `input`, other fields are literal.
fn resolve(template: &Value, input: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in template.as_object().expect("an object") {
        match name.strip_suffix(".$") {
            Some(name) => out.insert(name.to_string(), at(input, value.as_str().expect("a path")).clone()),
            None => out.insert(name.clone(), value.clone()),
        };
    }
    Value::Object(out)
}

/// How a Lambda error reaches Step Functions: its type, and the JSON cause.
fn state_error(error: HandlerError) -> (String, String) {
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    let cause = json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message});
    (diagnostic.error_type, cause.to_string())
}

fn retries_allowed(task: &Value, error_type: &str) -> u64 {
    let rules = task["Retry"].as_array().cloned().unwrap_or_default();
    let rule = rules.iter().find(|r| r["ErrorEquals"].as_array().unwrap().iter().any(|e| e == error_type));
    rule.map_or(0, |r| r["MaxAttempts"].as_u64().unwrap())
}

/// What one run of the definition does with `input`: the Map's batches, then Assemble.
struct Played {
    batches: Vec<usize>,
    assembled: Value,
}

async fn run_execution(env: &TestEnv, app: &App, input: Value) -> Played {
    let (batches, assemble_payload) = play_map(env, app, input).await;
    let assembled = invoke(app, assemble_payload).await;
    Played { batches, assembled }
}

/// The Map's part of an execution, as Step Functions runs it: every batch (with the Map's
/// Retry and Catch), then the payload the last step gets.
async fn play_map(env: &TestEnv, app: &App, input: Value) -> (Vec<usize>, Value) {
    let definition = definition();
    let map = &definition["States"][definition["StartAt"].as_str().unwrap()];
    assert_eq!(map["Type"], "Map");
    assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED");

    // ItemReader: JSON Lines from S3.
    let reader = &map["ItemReader"];
    assert_eq!(
        (reader["Resource"].as_str(), reader["ReaderConfig"]["InputType"].as_str()),
        (Some("arn:aws:states:::s3:getObject"), Some("JSONL"))
    );
    let location = resolve(&reader["Parameters"], &input);
    let staged =
        env.s3.get_object().bucket(location["Bucket"].as_str().unwrap()).key(location["Key"].as_str().unwrap());
    let staged = staged.send().await.expect("the staged companies exist").body.collect().await.unwrap().to_vec();
    let items: Vec<Value> =
        staged.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();

    // ItemBatcher: by count and by bytes, each batch with the resolved BatchInput.
    let batcher = &map["ItemBatcher"];
    let max_items = at(&input, batcher["MaxItemsPerBatchPath"].as_str().unwrap()).as_u64().unwrap() as usize;
    let max_bytes = batcher["MaxInputBytesPerBatch"].as_u64().unwrap() as usize;
    let batch_input = resolve(&batcher["BatchInput"], &input);
    assert!(at(&input, map["MaxConcurrencyPath"].as_str().unwrap()).as_u64().unwrap() >= 1);
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = item.to_string().len();
        match batches.last_mut() {
            Some(batch) if batch.len() < max_items && bytes + size <= max_bytes => batch.push(item),
            _ => {
                bytes = 0;
                batches.push(vec![item]);
            }
        }
        bytes += size;
    }

    let task = &map["ItemProcessor"]["States"][map["ItemProcessor"]["StartAt"].as_str().unwrap()];
    assert_eq!(task["Parameters"]["Payload.$"], "$", "each batch invocation gets the batch as it is");
    let mut map_error = None;
    let mut sizes = Vec::new();
    'batches: for batch in batches {
        sizes.push(batch.len());
        let payload = json!({"BatchInput": batch_input, "Items": batch});
        assert!(payload.to_string().len() < 256 * 1024, "Lambda's payload limit");
        let mut attempt = 0;
        loop {
            match try_invoke(app, payload.clone()).await {
                Ok(result) => {
                    assert!(result["companies"].is_u64(), "the ResultSelector's path: {result}");
                    break;
                }
                Err(error) => {
                    let (error_type, cause) = state_error(error);
                    if attempt < retries_allowed(task, &error_type) {
                        attempt += 1;
                        continue;
                    }
                    // ToleratedFailurePercentage 0: the Map Run fails with Step Functions' own
                    // error, not the batch's, and its Catch goes on.
                    let _ = (error_type, cause);
                    map_error = Some(json!({
                        "Error": "States.ExceedToleratedFailureThreshold",
                        "Cause": "The specified tolerated failure threshold was exceeded"
                    }));
                    break 'batches;
                }
            }
        }
    }
    assert_eq!(map["ToleratedFailurePercentage"], 0);
    assert_eq!(map["ResultPath"], Value::Null, "the Map passes its input on");
    let mut next_input = input.clone();
    if let Some(error) = map_error {
        let catch = &map["Catch"][0];
        assert_eq!(
            (catch["ErrorEquals"][0].as_str(), catch["ResultPath"].as_str()),
            (Some("States.ALL"), Some("$.map_error"))
        );
        next_input["map_error"] = error;
    }
    let assemble = &definition["States"][map["Next"].as_str().unwrap()];
    assert_eq!(assemble["Parameters"]["Payload.$"], "$");
    (sizes, next_input)
}

/// 300 rows, 210 companies (60 of them two or three times, far apart), one row without a name;
/// gzip, semicolons and Windows-1252, which Step Functions' own CSV reader could not read.
fn big_file() -> Vec<u8> {
    let mut text = String::from("Id;Company;City\r\n");
    for i in 0..300 {
        let company = match i {
            150 => String::new(),
            i if i % 2 == 0 => format!("Société {}", (i / 2) % 60),
            i => format!("Firm {i}"),
        };
        text.push_str(&format!("{i};{company};Paris\r\n"));
    }
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
    gzip(&bytes)
}

fn workflow_vars(state_machine_arn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STATE_MACHINE_ARN", state_machine_arn.to_string()),
        ("LARGE_FILE_ROWS", "100".into()),
        ("BATCH_SIZE", "10".into()),
        ("LEADSPACE_TPS", "100".into()),
    ]
}

fn app_with(env: &TestEnv, vars: &[(&'static str, String)]) -> App {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.app(&vars)
}

async fn create_state_machine(env: &TestEnv) -> String {
    let created = aws_sdk_sfn::Client::new(&env.sdk)
        .create_state_machine()
        .name(format!("{}-large-files", env.bucket))
        .definition(definition().to_string())
        .role_arn("arn:aws:iam::123456789012:role/large-file-workflow")
        .send()
        .await
        .expect("create the state machine in moto");
    created.state_machine_arn
}

async fn execution_input(env: &TestEnv, arn: &str) -> Value {
    let described = aws_sdk_sfn::Client::new(&env.sdk).describe_execution().execution_arn(arn).send().await;
    let input = described.expect("the execution exists").input.expect("an input");
    serde_json::from_str(&input).expect("JSON input")
}

async fn stop(env: &TestEnv, arn: &str) {
    // What Step Functions does when the last state ends: the execution is no longer running.
    aws_sdk_sfn::Client::new(&env.sdk).stop_execution().execution_arn(arn).send().await.expect("stop");
}

fn work_files(keys: &[String]) -> Vec<&String> {
    keys.iter().filter(|k| k.starts_with("enriched/_state/work/")).collect()
}

/// A test's moto bucket and state machine, the big file uploaded, and the function for them.
struct BigFile {
    env: TestEnv,
    state_machine: String,
    app: App,
}

async fn big_file_uploaded() -> BigFile {
    let env = TestEnv::new().await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    let app = app_with(&env, &workflow_vars(&state_machine));
    BigFile { env, state_machine, app }
}

#[tokio::test]
async fn a_large_file_goes_through_the_workflow_and_comes_out_as_an_inline_run_would() {
    let env = TestEnv::new().await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    env.put("incoming/small.csv", "Id,Company\n1,Contoso\n").await;
    let app = app_with(&env, &workflow_vars(&state_machine));

    let small = invoke(&app, env.s3_event("incoming/small.csv")).await;
    assert_eq!(small["results"][0]["status"], "complete", "a small file is enriched inline: {small}");

    let response = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    let handed = &response["results"][0];
    assert_eq!(handed["outcome"], "enriched", "{response}");
    assert_eq!(handed["status"], "running", "nothing is enriched yet: {response}");
    let execution = handed["execution_arn"].as_str().expect("the execution is named").to_string();
    assert!(env.get("enriched/big.csv.gz.summary.json").await.is_none(), "the summary comes at the end");
    assert_eq!(env.emulator.stats().records_received, 1, "only the small file was sent so far");

    let again = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    assert_eq!(again["results"][0]["outcome"], "skipped", "a redelivered event while it runs: {again}");
    assert_eq!(again["results"][0]["execution_arn"].as_str(), Some(execution.as_str()));

    let input = execution_input(&env, &execution).await;
    let staged = env.get(input["companies_key"].as_str().unwrap()).await.unwrap();
    let first: Value = serde_json::from_slice(staged.split(|&b| b == b'\n').next().unwrap()).unwrap();
    let fields: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["company", "company_name", "city"], "only mapped fields are staged: {first}");
    let played = run_execution(&env, &app, input).await;
    assert_eq!(played.batches, [40, 40, 40, 40, 40, 10], "210 companies in batches of 4 bulks of 10");
    assert_eq!(played.assembled["results"][0]["status"], "complete", "{}", played.assembled);

    let sent = env.emulator.stats().records_received - 1;
    assert_eq!(sent, 210, "every company exactly once, across batches");
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["rows"]["total"], 300);
    assert_eq!((summary["rows"]["invalid_input"].as_u64(), summary["unique_companies"].as_u64()), (Some(1), Some(210)));
    assert_eq!(summary["leadspace"]["records_sent"], 210, "the batches' costs add up: {summary}");
    assert_eq!(summary["source"]["encoding"], "windows-1252");

    // The same bytes enriched inline give the same rows.
    let inline = App { step_functions: None, ..app_with(&env, &workflow_vars(&state_machine)) };
    env.put("incoming/copy/big.csv.gz", big_file()).await;
    invoke(&inline, env.enrich_event("incoming/copy/big.csv.gz")).await;
    let by_workflow = gunzip(&env.get("enriched/big.csv.gz").await.unwrap());
    let by_inline = gunzip(&env.get("enriched/copy/big.csv.gz").await.unwrap());
    assert_eq!(by_workflow, by_inline, "input order, original columns, the same answers");
    let text = String::from_utf8(by_workflow).expect("UTF-8 output");
    assert!(
        text.starts_with("\u{feff}Id;Company;City;leadspace_status") && text.contains("\n0;Société 0;Paris;"),
        "{text:.200}"
    );
    assert!(work_files(&env.keys().await).is_empty(), "the staged companies and answers are deleted");
    assert!(
        !env.keys().await.iter().any(|k| k.starts_with("enriched/_state/journal/")),
        "a complete version's journal is deleted"
    );
}

#[tokio::test]
async fn credits_running_out_stop_the_map_and_a_later_run_sends_only_what_is_missing() {
    let env = TestEnv::with_knobs(Knobs { credits: Some(20), ..Default::default() }).await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    let app = app_with(&env, &workflow_vars(&state_machine));

    let response = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    let execution = response["results"][0]["execution_arn"].as_str().unwrap().to_string();
    let played = run_execution(&env, &app, execution_input(&env, &execution).await).await;
    // Credits are charged per match, so which batch meets the 427 depends on the matches.
    assert!(played.batches.len() < 6, "the Map stops at the batch that met the 427: {:?}", played.batches);
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["status"], "partial", "{summary}");
    assert!(summary["error"].as_str().unwrap().contains("427"), "{summary}");
    let rows = &summary["rows"];
    assert_eq!(rows["total"], 300);
    assert!(rows["not_attempted"].as_u64().unwrap() > 0 && rows["enriched"].as_u64().unwrap() > 0, "{summary}");
    let sent_first = env.emulator.stats().records_received;
    stop(&env, &execution).await;

    // Credits bought: the next run (a new execution) stages only the companies without an answer.
    env.emulator.set_knobs(|k| k.credits = None);
    let response = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    let second = response["results"][0]["execution_arn"].as_str().expect("a new execution").to_string();
    assert_ne!(second, execution);
    let input = execution_input(&env, &second).await;
    let staged = env.get(input["companies_key"].as_str().unwrap()).await.unwrap();
    let staged_count = staged.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    assert_eq!(staged_count, count_unanswered(&env).await, "answers of the partial run are reused");
    assert!(staged_count < 210);
    let played = run_execution(&env, &app, input).await;
    assert_eq!(played.assembled["results"][0]["status"], "complete", "{}", played.assembled);
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!((summary["rows"]["not_attempted"].as_u64(), summary["rows"]["failed"].as_u64()), (Some(0), Some(0)));
    let resent = env.emulator.stats().records_received - sent_first;
    assert_eq!(resent, staged_count, "no company answered before is sent again");
}

fn parse_semicolons(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let text = String::from_utf8_lossy(bytes).trim_start_matches('\u{feff}').to_string();
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_bytes());
    let header = reader.headers().expect("header").iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.expect("row").iter().map(str::to_string).collect()).collect();
    (header, rows)
}

/// Companies of the current output whose rows have no final answer.
async fn count_unanswered(env: &TestEnv) -> u64 {
    let text = gunzip(&env.get("enriched/big.csv.gz").await.unwrap());
    let (header, rows) = parse_semicolons(&text);
    let status = header.iter().position(|h| h == "leadspace_status").unwrap();
    let mut companies: HashMap<&str, bool> = HashMap::new();
    for row in &rows {
        if row[1].is_empty() {
            continue;
        }
        let unanswered = row[status] == "not_attempted" || row[status] == "failed";
        *companies.entry(row[1].as_str()).or_default() |= unanswered;
    }
    companies.values().filter(|&&u| u).count() as u64
}

/// The Map's first batch of `n` staged companies, as the ItemBatcher hands it to the function.
async fn first_batch(env: &TestEnv, input: &Value, n: usize) -> Value {
    let staged = env.get(input["companies_key"].as_str().unwrap()).await.unwrap();
    let items: Vec<Value> = staged
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(n)
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    json!({
        "BatchInput": {
            "work_bucket": input["work_bucket"],
            "answers_prefix": input["answers_prefix"],
            "journal_prefix": input["journal_prefix"],
            "run": input["run"],
        },
        "Items": items,
    })
}

async fn handed_off(env: &TestEnv, app: &App) -> Value {
    let response = invoke(app, env.s3_event("incoming/big.csv.gz")).await;
    let execution = response["results"][0]["execution_arn"].as_str().expect("handed off").to_string();
    execution_input(env, &execution).await
}

#[tokio::test]
async fn a_retried_or_redriven_last_step_keeps_the_output_it_wrote() {
    let BigFile { env, app, .. } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    let played = run_execution(&env, &app, input.clone()).await;
    assert_eq!(played.assembled["results"][0]["status"], "complete");
    let output = env.get("enriched/big.csv.gz").await;

    let again = invoke(&app, input).await;
    assert_eq!(again["results"][0]["outcome"], "skipped", "{again}");
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(env.get("enriched/big.csv.gz").await, output, "the output is not rewritten");
}

#[tokio::test]
async fn a_retried_batch_keeps_its_earlier_answers_and_pays_nothing_again() {
    let BigFile { env, app, .. } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    let payload = first_batch(&env, &input, 40).await;
    invoke(&app, payload.clone()).await;
    let first = env.emulator.stats().records_received;
    assert_eq!(first, 40);
    // The Map's Retry, or Lambda's, runs the same batch again.
    invoke(&app, payload).await;
    assert_eq!(env.emulator.stats().records_received, first, "the retried batch sent nothing again");

    let played = run_execution(&env, &app, input).await;
    assert_eq!(played.assembled["results"][0]["status"], "complete");
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["leadspace"]["records_sent"], 210, "the first attempt's cost is still counted: {summary}");
}

#[tokio::test]
async fn a_workflow_whose_last_step_failed_is_finished_by_the_next_attempt_without_buying_again() {
    let env = TestEnv::new().await;
    let s3 = S3Faults::start(moto_endpoint()).await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    let vars = workflow_vars(&state_machine);
    let app = app_with(&env, &vars);
    let response = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    let execution = response["results"][0]["execution_arn"].as_str().expect("handed off").to_string();
    let (_, assemble_payload) = play_map(&env, &app, execution_input(&env, &execution).await).await;
    assert_eq!(env.emulator.stats().records_received, 210, "every batch bought its companies");

    // The last step cannot write the output, through its own retries: the execution fails.
    s3.fail(FaultRule::slow_down("PUT", "enriched/big.csv.gz"));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let faulty = env.app_at(&s3.endpoint(), &vars);
    let error = try_invoke(&faulty, assemble_payload).await.expect_err("the output could not be written");
    assert!(error.is_retryable(), "{error}");
    stop(&env, &execution).await;
    s3.clear();

    // Attempt 2 (a refresh, an enrich, a redrive): the journal holds every batch's answers.
    let response = invoke(&app, env.enrich_event("incoming/big.csv.gz")).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    assert_each_company_billed_once(&env, 210);
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["reused"]["journal"], 210, "{summary}");
    assert_eq!(summary["leadspace"]["records_sent"], 0, "{summary}");
    assert_eq!(summary["rows"]["total"], 300);
}

#[tokio::test]
async fn the_last_step_reads_the_file_with_the_mapping_the_hand_off_used() {
    let env = TestEnv::new().await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    let mut vars = workflow_vars(&state_machine);
    vars.push(("FIELD_MAPPING", r#"{"company_name":"Company"}"#.into()));
    let input = handed_off(&env, &app_with(&env, &vars)).await;
    // A deploy while the execution runs changes FIELD_MAPPING.
    let mut vars = workflow_vars(&state_machine);
    vars.push(("FIELD_MAPPING", r#"{"company_name":"Company","postal_code":"Id"}"#.into()));
    let played = run_execution(&env, &app_with(&env, &vars), input).await;
    assert_eq!(played.assembled["results"][0]["status"], "complete", "{}", played.assembled);
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(summary["field_mapping"], json!({"company_name": "Company"}), "{summary}");
    let (header, rows) = parse_semicolons(&gunzip(&env.get("enriched/big.csv.gz").await.unwrap()));
    let (status, name) = (
        header.iter().position(|h| h == "leadspace_status").unwrap(),
        header.iter().position(|h| h == "leadspace_name").unwrap(),
    );
    for row in rows.iter().filter(|r| r[status] == "enriched") {
        assert!(
            row[name].to_lowercase().starts_with(&row[1].to_lowercase()[..4]),
            "{row:?} got another company's answer"
        );
    }
}

#[tokio::test]
async fn a_batch_sends_nothing_without_data_sharing_consent() {
    let env = TestEnv::new().await;
    let app = env.app(&[("DATA_SHARING_CONSENT", "false")]);
    let payload = json!({
        "BatchInput": {
            "work_bucket": env.bucket,
            "answers_prefix": "enriched/_state/work/x/batches/",
            "journal_prefix": "enriched/_state/journal/x.csv/v/",
            "run": "x",
        },
        "Items": [{"company": 0, "company_name": "Contoso"}],
    });
    let error = try_invoke(&app, payload).await.expect_err("refused");
    assert!(error.to_string().contains("DATA_SHARING_CONSENT"), "{error}");
    assert_eq!(env.emulator.stats().records_received, 0, "no record left without consent");
}

#[tokio::test]
async fn status_shows_a_large_file_running_while_its_batches_buy() {
    let BigFile { env, app, .. } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    let status = || invoke(&app, json!({"action": "status", "bucket": env.bucket, "key": "incoming/big.csv.gz"}));

    let before = status().await;
    let entry = &before["enrichments"][0];
    assert_eq!(entry["status"], "running", "{before}");
    assert_eq!(entry["progress"]["companies_total"], input["companies"], "{before}");
    assert_eq!(entry["progress"]["companies_answered"], 0, "{before}");
    invoke(&app, first_batch(&env, &input, 40).await).await;

    let during = status().await;
    let progress = &during["enrichments"][0]["progress"];
    assert_eq!(during["enrichments"][0]["status"], "running", "{during}");
    assert_eq!(progress["companies_answered"], 40, "one batch of 40 answered: {during}");
    assert!(progress["requests"].as_u64() > Some(0) && progress["eta_seconds"].as_u64().is_some(), "{during}");

    run_execution(&env, &app, input).await;
    let after = status().await;
    assert_eq!(after["enrichments"][0]["status"], "complete", "the last step ends it: {after}");
}

// One owner per file version: the inline path and a running execution never undo each other's
// paid answers (issue 27's races, from outside: moto's Step Functions and the emulator).

fn force_event(env: &TestEnv) -> Value {
    json!({"action": "enrich", "bucket": env.bucket, "key": "incoming/big.csv.gz", "force": true})
}

/// A large file whose batches have bought every company, its last step not yet run.
struct Bought {
    env: TestEnv,
    state_machine: String,
    app: App,
    execution: String,
    assemble_payload: Value,
}

async fn bought_by_the_batches() -> Bought {
    let BigFile { env, state_machine, app } = big_file_uploaded().await;
    let response = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    let execution = response["results"][0]["execution_arn"].as_str().expect("handed off").to_string();
    let (_, assemble_payload) = play_map(&env, &app, execution_input(&env, &execution).await).await;
    assert_eq!(env.emulator.stats().records_received, 210, "the batches bought every company");
    Bought { env, state_machine, app, execution, assemble_payload }
}

#[tokio::test]
async fn a_redelivery_after_every_batch_bought_leaves_the_file_to_its_execution() {
    let Bought { env, app, execution, assemble_payload, .. } = bought_by_the_batches().await;

    // The same event again, before the last step has taken the lease: every answer is in the
    // journal, but the execution owns the version until it ends.
    let again = invoke(&app, env.s3_event("incoming/big.csv.gz")).await;
    assert_eq!(again["results"][0]["outcome"], "skipped", "{again}");
    assert_eq!(again["results"][0]["execution_arn"].as_str(), Some(execution.as_str()), "{again}");

    let assembled = invoke(&app, assemble_payload).await;
    assert_eq!(assembled["results"][0]["status"], "complete", "{assembled}");
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!((summary["rows"]["not_attempted"].as_u64(), summary["rows"]["total"].as_u64()), (Some(0), Some(300)));
    stop(&env, &execution).await;

    let refreshed = invoke(&app, json!({"action": "refresh", "bucket": env.bucket, "prefix": "incoming/"})).await;
    assert!(refreshed["results"].as_array().unwrap().iter().all(|r| r["outcome"] == "skipped"), "{refreshed}");
    assert_each_company_billed_once(&env, 210);
}

#[tokio::test]
async fn a_last_step_that_finds_the_version_complete_keeps_that_output() {
    let Bought { env, state_machine, app, assemble_payload, .. } = bought_by_the_batches().await;
    // Another path completed this version meanwhile (here: the same function without the
    // workflow configured, as an older deploy would run it), and cleared the journal.
    let inline = App { step_functions: None, ..app_with(&env, &workflow_vars(&state_machine)) };
    let done = invoke(&inline, env.enrich_event("incoming/big.csv.gz")).await;
    assert_eq!(done["results"][0]["status"], "complete", "{done}");
    let output = env.get("enriched/big.csv.gz").await;

    let assembled = invoke(&app, assemble_payload).await;

    assert_eq!(assembled["results"][0]["outcome"], "skipped", "{assembled}");
    assert_eq!(env.get("enriched/big.csv.gz").await, output, "the complete output stays");
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!((summary["status"].as_str(), summary["rows"]["not_attempted"].as_u64()), (Some("complete"), Some(0)));
    assert_each_company_billed_once(&env, 210);
}

#[tokio::test]
async fn a_force_while_the_batches_run_is_refused_and_clears_nothing() {
    let BigFile { env, app, .. } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    invoke(&app, first_batch(&env, &input, 40).await).await;
    assert_eq!(env.emulator.stats().records_received, 40);

    let forced = invoke(&app, force_event(&env)).await;

    let report = &forced["results"][0];
    assert_eq!(report["outcome"], "failed", "a refused force is not a skip: {forced}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(message.contains("force") && message.contains("execution"), "it says why and what to do: {forced}");
    let played = run_execution(&env, &app, input).await;
    let summary = env.summary("enriched/big.csv.gz.summary.json").await;
    assert_eq!(played.assembled["results"][0]["status"], "complete", "{summary}");
    assert_eq!(summary["rows"]["not_attempted"], 0, "{summary}");
    assert_each_company_billed_once(&env, 210);
}

// Hand-written workflow payloads (issue 28): every name is derived from the file, the
// execution must be running, and it must have been started with that very input.

#[tokio::test]
async fn a_last_step_payload_pointing_at_other_files_results_is_refused_before_it_acts() {
    let env = TestEnv::new().await;
    let state_machine = create_state_machine(&env).await;
    env.put("incoming/big.csv.gz", big_file()).await;
    env.put("incoming/other.csv", "Id,Company\n1,Contoso\n").await;
    let app = app_with(&env, &workflow_vars(&state_machine));
    invoke(&app, env.enrich_event("incoming/other.csv")).await;
    let input = handed_off(&env, &app).await;
    let before = env.keys().await;

    let mut attacks = Vec::new();
    for (field, value) in [
        ("journal_prefix", json!("enriched/")),
        ("answers_prefix", json!("enriched/")),
        ("work_bucket", json!("someone-elses-bucket")),
        ("companies_key", json!("enriched/other.csv")),
        ("run", json!("big_csv_gz-0000000000000000-1")),
    ] {
        let mut payload = input.clone();
        payload[field] = value;
        attacks.push((field, payload));
    }
    let mut not_started = input.clone();
    not_started["run"] = json!(format!("{}9", input["run"].as_str().unwrap()));
    attacks.push(("an execution that does not exist", not_started));

    for (what, payload) in attacks {
        let error = try_invoke(&app, payload).await.expect_err(what);
        assert!(!error.is_retryable(), "{what}: {error}");
    }
    assert_eq!(env.keys().await, before, "nothing was written, moved or deleted");
    assert!(env.get("enriched/other.csv.summary.json").await.is_some(), "other.csv's results stay");
}

#[tokio::test]
async fn a_batch_payload_that_is_not_its_executions_buys_nothing() {
    let BigFile { env, state_machine, app } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    let genuine = first_batch(&env, &input, 10).await;

    let mut elsewhere = genuine.clone();
    elsewhere["BatchInput"]["answers_prefix"] = json!("enriched/");
    let mut made_up = genuine.clone();
    made_up["BatchInput"]["run"] = json!("made-up-execution-1");
    for (what, payload) in [("answers elsewhere", elsewhere), ("a made-up execution", made_up)] {
        let error = try_invoke(&app, payload).await.expect_err(what);
        assert!(!error.is_retryable(), "{what}: {error}");
    }
    assert_eq!(env.emulator.stats().records_received, 0, "no record was bought");

    let executions = state_machine.replacen(":stateMachine:", ":execution:", 1);
    stop(&env, &format!("{executions}:{}", input["run"].as_str().unwrap())).await;
    let error = try_invoke(&app, genuine).await.expect_err("its execution has ended");
    assert!(error.to_string().contains("not running"), "{error}");
    assert_eq!(env.emulator.stats().records_received, 0);
}

#[tokio::test]
async fn delete_waits_for_an_execution_of_an_earlier_version_of_the_file() {
    let BigFile { env, app, .. } = big_file_uploaded().await;
    let input = handed_off(&env, &app).await;
    invoke(&app, first_batch(&env, &input, 40).await).await;
    // A new upload while the execution for the first version still runs.
    env.put("incoming/big.csv.gz", gzip(b"Id;Company\r\n1;Contoso\r\n")).await;
    let journal = input["journal_prefix"].as_str().unwrap().to_string();
    let paid = env.keys().await.into_iter().filter(|k| k.starts_with(&journal)).count();
    assert!(paid > 0, "the batch's answers are journalled");

    let delete = json!({"action": "delete", "bucket": env.bucket, "key": "incoming/big.csv.gz"});
    let refused = invoke(&app, delete).await;

    assert!(refused["refused"].as_str().is_some_and(|why| why.contains("execution")), "{refused}");
    let left = env.keys().await.into_iter().filter(|k| k.starts_with(&journal)).count();
    assert_eq!(left, paid, "the running execution's journal is left alone");
}
