//! template.yaml against the code it deploys: cfn-lint checks CloudFormation's rules, these
//! check ours (least privilege, the trigger matching what the function reads, the contract
//! arithmetic, alarms on the metrics the function really emits).

use leadspace_enrich::metrics::NAMESPACE;
use leadspace_enrich::records::Format;
use serde_yaml::Value;

fn template() -> Value {
    serde_yaml::from_str(include_str!("../../template.yaml")).expect("template.yaml is YAML")
}

/// `!Ref X` as ("Ref", X), `!Sub "..."` as ("Sub", "..."), plain strings as ("", s).
fn tagged(value: &Value) -> (String, String) {
    match value {
        Value::Tagged(tagged) => (tagged.tag.to_string().trim_start_matches('!').to_string(), text(&tagged.value)),
        other => (String::new(), text(other)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

/// Every IAM statement in the function's policies and the workflow role, whatever the nesting
/// (`!If` branches included).
fn statements(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Mapping(map) => {
            if map.contains_key("Effect") && map.contains_key("Action") {
                out.push(value.clone());
            }
            map.values().for_each(|v| statements(v, out));
        }
        Value::Sequence(items) => items.iter().for_each(|v| statements(v, out)),
        Value::Tagged(tagged) => statements(&tagged.value, out),
        _ => {}
    }
}

#[test]
fn every_permission_names_its_actions_and_resources() {
    let template = template();
    let mut found = Vec::new();
    statements(&template["Resources"]["EnrichFunction"]["Properties"]["Policies"], &mut found);
    statements(&template["Resources"]["LargeFileWorkflowRole"]["Properties"]["Policies"], &mut found);
    assert!(found.len() >= 10, "the policies were found: {}", found.len());
    for statement in found.iter().filter(|s| s["Effect"] == "Allow") {
        for action in list(&statement["Action"]) {
            let action = text(&action);
            assert!(!action.contains('*'), "a wildcard action {action} in {statement:?}");
        }
        for resource in list(&statement["Resource"]) {
            let (_, resource) = tagged(&resource);
            assert!(resource != "*", "a statement on every resource: {statement:?}");
            if resource.contains(":s3:::") && resource.ends_with('*') {
                assert!(
                    resource.contains("${InputPrefix}*") || resource.contains("${OutputPrefix}"),
                    "object access outside the two prefixes: {resource}"
                );
            }
        }
    }
}

#[test]
fn every_upload_under_the_input_prefix_triggers_the_function_whatever_its_extension_or_case() {
    let template = template();
    let pattern = &template["Resources"]["CustomerFileUploaded"]["Properties"]["EventPattern"];
    assert_eq!(text(&pattern["detail-type"][0]), "Object Created");
    let matchers = list(&pattern["detail"]["object"]["key"]);
    assert_eq!(matchers.len(), 1, "one matcher on the key: {matchers:?}");
    assert_eq!(tagged(&matchers[0]["prefix"]), ("Ref".into(), "InputPrefix".into()), "a prefix, no suffix filter");
    // What EventBridge does with that pattern, and what the function does with each upload: it
    // reads the supported ones in any case and answers the rest with a failed summary.
    let input_prefix = text(&template["Parameters"]["InputPrefix"]["Default"]);
    let matches = |key: &str| key.starts_with(&input_prefix);
    for key in ["incoming/a.csv", "incoming/Accounts.CSV", "incoming/a.tsv.gz", "incoming/a.NDJSON.gz"] {
        assert!(matches(key) && Format::detect(key).is_ok(), "{key} is triggered and read");
    }
    assert!(matches("incoming/book.xlsx") && Format::detect("incoming/book.xlsx").is_err());
    let output_prefix = &template["Parameters"]["OutputPrefix"]["Default"];
    assert!(!matches(&format!("{}a.csv", text(output_prefix))), "results never trigger the function");
}

#[test]
fn reserved_concurrency_and_the_function_agree_on_how_many_invocations_share_the_contract() {
    let template = template();
    let function = &template["Resources"]["EnrichFunction"]["Properties"];
    let variables = &function["Environment"]["Variables"];
    assert_eq!(tagged(&function["ReservedConcurrentExecutions"]), ("Ref".into(), "ReservedConcurrency".into()));
    assert_eq!(tagged(&variables["MAX_CONCURRENT_INVOCATIONS"]), ("Ref".into(), "ReservedConcurrency".into()));
    assert_eq!(tagged(&variables["LEADSPACE_TPS"]), ("Ref".into(), "LeadspaceTps".into()));
    let schedule = &template["Resources"]["ScheduledRefresh"]["Properties"];
    assert_eq!(template["Parameters"]["ScheduleEnabled"]["Default"], "false", "the schedule is off by default");
    assert!(text(&schedule["State"]).contains("DISABLED"));
}

#[test]
fn alarms_watch_the_metrics_the_function_emits() {
    let template = template();
    let alarm = |name: &str| template["Resources"][name]["Properties"].clone();
    for (name, namespace, metric) in [
        ("CreditsExhaustedAlarm", NAMESPACE, "CreditsExhausted"),
        ("TokenRotationDueAlarm", NAMESPACE, "TokenRotationDue"),
        ("FunctionErrorsAlarm", "AWS/Lambda", "Errors"),
        ("FailedInvocationsAlarm", "AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ] {
        let properties = alarm(name);
        assert_eq!(
            (text(&properties["Namespace"]), text(&properties["MetricName"])),
            (namespace.into(), metric.into())
        );
        assert_eq!(text(&properties["TreatMissingData"]), "notBreaching");
    }
    let document = leadspace_enrich::metrics::document(
        &[("CreditsExhausted", leadspace_enrich::metrics::Unit::Count, 1.0)],
        "fn",
        0,
        "INFO",
    );
    let dimensions = &document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0];
    assert_eq!(dimensions[0], "FunctionName", "the alarm's dimension is the one the metric carries");
    assert_eq!(text(&alarm("CreditsExhaustedAlarm")["Dimensions"][0]["Name"]), "FunctionName");
}

#[test]
fn the_function_may_tell_a_missing_object_from_a_forbidden_one() {
    // S3 answers 404 for a missing key only to a caller with s3:ListBucket on the bucket; the
    // implicit check carries no s3:prefix, so the permission must not require one.
    let template = template();
    let mut found = Vec::new();
    statements(&template["Resources"]["EnrichFunction"]["Properties"]["Policies"], &mut found);
    let list_bucket: Vec<&Value> =
        found.iter().filter(|s| list(&s["Action"]).iter().any(|a| text(a) == "s3:ListBucket")).collect();
    assert_eq!(list_bucket.len(), 1, "one statement lists the bucket");
    let statement = list_bucket[0];
    let (_, resource) = tagged(&statement["Resource"]);
    assert!(resource.ends_with(":s3:::${BucketName}"), "on the bucket itself: {resource}");
    match &statement["Condition"] {
        Value::Null => {}
        Value::Mapping(condition) => {
            for (operator, keys) in condition {
                let operator = text(operator);
                let on_prefix = keys.get("s3:prefix").is_some();
                assert!(
                    !on_prefix || operator.ends_with("IfExists"),
                    "a {operator} condition on s3:prefix makes a missing key read as AccessDenied"
                );
            }
        }
        other => panic!("unexpected condition {other:?}"),
    }
}

/// Every value under `name`, wherever it is nested.
fn values_named(value: &Value, name: &str, out: &mut Vec<Value>) {
    match value {
        Value::Mapping(map) => {
            for (key, inner) in map {
                if key.as_str() == Some(name) {
                    out.push(inner.clone());
                }
                values_named(inner, name, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| values_named(v, name, out)),
        Value::Tagged(tagged) => values_named(&tagged.value, name, out),
        _ => {}
    }
}

#[test]
fn the_state_machine_matches_the_error_types_and_batch_size_the_code_uses() {
    use leadspace_enrich::error::error_type;
    use leadspace_enrich::workflow::input::MAX_BATCH_INPUT_BYTES;
    let workflow = &template()["Resources"]["LargeFileWorkflow"];
    let mut matched = Vec::new();
    values_named(workflow, "ErrorEquals", &mut matched);
    let matched: Vec<String> = matched.iter().flat_map(list).map(|v| text(&v)).collect();
    assert!(matched.iter().any(|e| e == error_type::TRANSIENT), "the batches retry transient failures: {matched:?}");
    let ours = [
        error_type::TRANSIENT,
        error_type::INVALID_EVENT,
        error_type::LEADSPACE_STOPPED,
        error_type::CONFIGURATION_OR_PERMISSIONS,
    ];
    for name in &matched {
        let known = name.starts_with("States.") || name.starts_with("Lambda.") || ours.contains(&name.as_str());
        assert!(known, "the state machine matches {name:?}, which the function never returns");
    }
    let mut limits = Vec::new();
    values_named(workflow, "MaxInputBytesPerBatch", &mut limits);
    assert_eq!(limits.len(), 1, "one ItemBatcher");
    assert_eq!(text(&limits[0]), MAX_BATCH_INPUT_BYTES.to_string());
}

/// `key = "value"` lines of samconfig.toml (comments and tables aside), in order.
fn samconfig() -> Vec<(String, String)> {
    include_str!("../../samconfig.toml")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.trim().to_string(), value.trim().trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_deploy_shortcuts_name_what_the_template_deploys() {
    let template = template();
    let settings = samconfig();
    let setting = |key: &str| settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
    // `sam logs` follows a resource of the template, and the Makefile reads its outputs.
    assert!(template["Resources"][setting("name").as_str()].is_mapping(), "logs name {:?}", setting("name"));
    let makefile = include_str!("../../Makefile");
    assert!(makefile.contains(&format!("STACK ?= {}", setting("stack_name"))), "one stack name");
    for output in ["Bucket", "FunctionName"] {
        assert!(makefile.contains(&format!("OutputKey=='{output}'")));
        assert!(template["Outputs"][output].is_mapping(), "the stack outputs {output}");
    }
    // No named IAM resources, so CAPABILITY_IAM is enough.
    let mut named_roles = Vec::new();
    values_named(&template["Resources"], "RoleName", &mut named_roles);
    assert!(named_roles.is_empty() && setting("capabilities") == "CAPABILITY_IAM");
    assert!(include_str!("../../.gitignore").lines().any(|l| l == "/.aws-sam"), "sam build's output is ignored");
}

/// The metric names a job's summary emits, and the others the function emits.
fn emitted_metrics() -> Vec<String> {
    let summary: leadspace_enrich::pipeline::summary::Summary = serde_json::from_value(serde_json::json!({
        "enrichment_name": "x", "status": "complete", "error": null,
        "source": {"bucket": "b", "key": "k", "etag": "e", "size": 0},
        "output": {"bucket": "b", "key": "k", "format": "csv"},
        "field_mapping": null, "started_at": "", "finished_at": "",
        "rows": {"total": 0, "enriched": 0, "not_matched": 0, "low_confidence": 0, "invalid_input": 0,
                 "failed": 0, "not_attempted": 0},
        "unique_companies": 0, "billing_guarantee": "",
        "leadspace": {"requests": 0, "records_sent": 0, "retries": 0, "throttled": 0},
    }))
    .expect("a summary");
    let mut names: Vec<String> = summary.metrics(0).iter().map(|(name, _, _)| name.to_string()).collect();
    names.extend(
        ["CreditsExhausted", "ColdStart", "InitDuration", "TokenAgeDays", "TokenRotationDue"].map(String::from),
    );
    names
}

#[test]
fn the_dashboard_shows_only_metrics_that_exist_and_the_queries_select_what_the_lines_carry() {
    let template = template();
    let resources = &template["Resources"];
    let (tag, body) = tagged(&resources["EnrichmentDashboard"]["Properties"]["DashboardBody"]);
    assert_eq!(tag, "Sub");
    // CloudFormation substitutes ${...}; any string keeps it JSON.
    let mut json = String::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("${") {
        json.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed substitution") + start;
        json.push_str("SUBSTITUTED");
        rest = &rest[end + 1..];
    }
    json.push_str(rest);
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("the dashboard body is JSON");
    let emitted = emitted_metrics();
    let titles: Vec<&str> =
        dashboard["widgets"].as_array().unwrap().iter().map(|w| w["properties"]["title"].as_str().unwrap()).collect();
    for wanted in [
        "Rows by status",
        "Credits used and saved",
        "Leadspace requests and throttles",
        "Failures",
        "Duration per file (ms)",
    ] {
        assert!(titles.contains(&wanted), "{wanted} in {titles:?}");
    }
    let mut shown = 0;
    for widget in dashboard["widgets"].as_array().unwrap() {
        for metric in widget["properties"]["metrics"].as_array().unwrap() {
            let (namespace, name) = (metric[0].as_str().unwrap(), metric[1].as_str().unwrap());
            if namespace == NAMESPACE {
                assert!(emitted.iter().any(|e| e == name), "the dashboard shows {name}, which is never emitted");
                shown += 1;
            } else {
                assert_eq!(namespace, "AWS/Lambda");
            }
            assert_eq!(metric[2], "FunctionName", "the dimension the metrics carry");
        }
    }
    assert!(shown >= 15, "{shown}");

    for (query, fields) in [
        ("FailedFilesQuery", &["Status", "Key", "Bucket", "RowsTotal", "RowsFailed"][..]),
        ("SlowestFilesQuery", &["JobDuration", "Key", "Status", "LeadspaceRequests"][..]),
    ] {
        let properties = &resources[query]["Properties"];
        assert_eq!(tagged(&properties["LogGroupNames"][0]), ("Ref".into(), "EnrichFunctionLogs".into()));
        let text = text(&properties["QueryString"]);
        for field in fields {
            assert!(text.contains(field), "{query} uses {field}");
            let known = ["Status", "Key", "Bucket"].contains(field) || emitted.iter().any(|e| e == field);
            assert!(known, "{query} selects by {field}, which no metric line carries");
        }
    }
}

#[test]
fn kms_grants_hold_only_through_s3_and_old_input_versions_expire() {
    let template = template();
    let mut found = Vec::new();
    statements(&template["Resources"]["EnrichFunction"]["Properties"]["Policies"], &mut found);
    statements(&template["Resources"]["LargeFileWorkflowRole"]["Properties"]["Policies"], &mut found);
    let kms: Vec<&Value> = found.iter().filter(|s| format!("{:?}", s["Action"]).contains("kms:")).collect();
    assert!(kms.len() >= 2, "the KMS grants were found: {}", kms.len());
    for statement in kms {
        let via = tagged(&statement["Condition"]["StringEquals"]["kms:ViaService"]);
        assert_eq!(via, ("Sub".into(), "s3.${AWS::Region}.amazonaws.com".into()), "{statement:?}");
    }

    let parameter = &template["Parameters"]["InputVersionRetentionDays"];
    assert_eq!(parameter["Type"], "Number", "a parameter says how long old input versions are kept");
    let rules = list(&template["Resources"]["CustomerDataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]);
    let inputs = rules.iter().find(|r| tagged(&r["Prefix"]) == ("Ref".into(), "InputPrefix".into()));
    let inputs = inputs.expect("a lifecycle rule for the input prefix");
    assert_eq!(
        tagged(&inputs["NoncurrentVersionExpiration"]["NoncurrentDays"]),
        ("Ref".into(), "InputVersionRetentionDays".into())
    );
}
