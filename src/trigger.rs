//! Turns whatever invoked the function into jobs: S3 event notifications, EventBridge "Object
//! Created" events, and direct JSON payloads. Keys are decoded here and nowhere else.

use serde_json::Value;

use crate::mapping::FieldMapping;
use crate::pipeline::Job;
use crate::workflow::input::{BatchEvent, ExecutionInput};

const ACCEPTED_SHAPES: &str = "expected an S3 event notification ({\"Records\": [{\"eventSource\": \"aws:s3\", ...}]}), \
an EventBridge S3 \"Object Created\" event, an EventBridge \"Scheduled Event\", or a direct payload: \
{\"action\": \"enrich\", \"bucket\": \"...\", \"key\": \"...\"} (optional \"force\", \"dry_run\", \"field_mapping\"), \
{\"action\": \"refresh\", \"bucket\": \"...\", \"prefix\": \"...\"} (optional \"force\"), \
{\"action\": \"status\", \"bucket\": \"...\"} (optional \"key\"), \
or {\"action\": \"delete\", \"bucket\": \"...\", \"key\": \"...\"} (optional \"dry_run\")";

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Enrich these objects.
    Jobs(Vec<Job>),
    /// Enrich every object under `prefix` whose last run is missing, partial, failed or for
    /// another ETag. `None`s come from a schedule: SOURCE_BUCKET and INPUT_PREFIX.
    Refresh { bucket: Option<String>, prefix: Option<String>, force: bool },
    /// List the enrichments under the output prefix (one object's, with `key`).
    Status { bucket: String, key: Option<String> },
    /// Remove what the function wrote for one input (`dry_run`: only say what).
    Delete { bucket: String, key: String, dry_run: bool },
    /// One batch of a large file's Distributed Map (`{"BatchInput": ..., "Items": [...]}`).
    Batch(BatchEvent),
    /// The large-file workflow's last step (its execution input, `"action": "assemble"`).
    Assemble(Box<ExecutionInput>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    /// Not an event this function understands: the message lists the shapes it does.
    #[error("{0}; {ACCEPTED_SHAPES}")]
    Unrecognised(String),
    /// A batch or assemble payload this version cannot read: its own shape is the question.
    #[error("{0}")]
    FromStateMachine(String),
}

fn problem(text: impl Into<String>) -> TriggerError {
    TriggerError::Unrecognised(text.into())
}

/// What an event asks for. S3 records that are not object creations are skipped (and logged).
pub fn parse_event(event: &Value) -> Result<Invocation, TriggerError> {
    if event.get("BatchInput").is_some() && event.get("Items").is_some() {
        return from_state_machine(event, "a Distributed Map batch").map(Invocation::Batch);
    }
    if let Some(records) = event.get("Records") {
        return s3_notification(records).map(Invocation::Jobs);
    }
    let detail_type = event.get("detail-type").and_then(Value::as_str);
    if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge_object_created(event).map(Invocation::Jobs);
    }
    if detail_type == Some("Scheduled Event") {
        return Ok(Invocation::Refresh { bucket: None, prefix: None, force: false });
    }
    if let Some(action) = event.get("action") {
        return direct(action, event);
    }
    Err(problem("the event is not one this function understands"))
}

/// A payload the state machine built. serde's message may quote the offending value, a company
/// name: only its category is kept.
fn from_state_machine<T: serde::de::DeserializeOwned>(event: &Value, what: &str) -> Result<T, TriggerError> {
    T::deserialize(event).map_err(|error| {
        TriggerError::FromStateMachine(format!(
            "{what} that this version cannot read ({:?} error); was it sent by this stack's state machine?",
            error.classify()
        ))
    })
}

fn string_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(value, |v, part| v.get(part))?.as_str()
}

fn s3_notification(records: &Value) -> Result<Vec<Job>, TriggerError> {
    let records = records.as_array().ok_or_else(|| problem("\"Records\" is not a list"))?;
    let mut jobs = Vec::new();
    for record in records {
        let source = record.get("eventSource").and_then(Value::as_str).unwrap_or_default();
        let name = record.get("eventName").and_then(Value::as_str).unwrap_or_default();
        if source != "aws:s3" || !name.starts_with("ObjectCreated:") {
            tracing::info!(
                event_source = source,
                event_name = name,
                "skipping a record that is not an S3 object creation"
            );
            continue;
        }
        let bucket = string_at(record, &["s3", "bucket", "name"])
            .ok_or_else(|| problem("an S3 record has no s3.bucket.name"))?;
        let raw_key =
            string_at(record, &["s3", "object", "key"]).ok_or_else(|| problem("an S3 record has no s3.object.key"))?;
        jobs.push(Job { bucket: bucket.to_string(), key: decode_s3_event_key(raw_key)?, ..Job::default() });
    }
    Ok(jobs)
}

/// S3 notifications URL-encode keys with `+` for spaces: `+` is decoded first (a literal plus
/// arrives as `%2B`), then percent-escapes.
pub fn decode_s3_event_key(raw: &str) -> Result<String, TriggerError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| problem(format!("the object key {raw:?} does not decode to UTF-8")))
}

fn eventbridge_object_created(event: &Value) -> Result<Vec<Job>, TriggerError> {
    let detail_type = event.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if detail_type != "Object Created" {
        tracing::info!(detail_type, "skipping an S3 EventBridge event that is not Object Created");
        return Ok(Vec::new());
    }
    let bucket = string_at(event, &["detail", "bucket", "name"])
        .ok_or_else(|| problem("the event has no detail.bucket.name"))?;
    // EventBridge keys are not URL-encoded.
    let key =
        string_at(event, &["detail", "object", "key"]).ok_or_else(|| problem("the event has no detail.object.key"))?;
    Ok(vec![Job { bucket: bucket.to_string(), key: key.to_string(), ..Job::default() }])
}

fn text<'v>(event: &'v Value, name: &str) -> Option<&'v str> {
    event.get(name).and_then(Value::as_str).filter(|b| !b.is_empty())
}

fn direct(action: &Value, event: &Value) -> Result<Invocation, TriggerError> {
    let flag = |name: &str| -> Result<bool, TriggerError> {
        match event.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(problem(format!("\"{name}\" must be true or false"))),
        }
    };
    match action.as_str() {
        Some("refresh") => Ok(Invocation::Refresh {
            bucket: text(event, "bucket").map(str::to_string),
            prefix: text(event, "prefix").map(str::to_string),
            force: flag("force")?,
        }),
        Some("assemble") => {
            from_state_machine(event, "an assemble step").map(|input| Invocation::Assemble(Box::new(input)))
        }
        Some("status") => {
            let bucket = text(event, "bucket").ok_or_else(|| problem("\"status\" needs a \"bucket\" string"))?;
            Ok(Invocation::Status { bucket: bucket.to_string(), key: text(event, "key").map(str::to_string) })
        }
        Some("delete") => {
            let (Some(bucket), Some(key)) = (text(event, "bucket"), text(event, "key")) else {
                return Err(problem("\"delete\" needs \"bucket\" and \"key\" strings"));
            };
            Ok(Invocation::Delete { bucket: bucket.to_string(), key: key.to_string(), dry_run: flag("dry_run")? })
        }
        Some("enrich") => {
            let (Some(bucket), Some(key)) = (text(event, "bucket"), text(event, "key")) else {
                return Err(problem("\"enrich\" needs \"bucket\" and \"key\" strings"));
            };
            let field_mapping = match event.get("field_mapping") {
                None | Some(Value::Null) => None,
                Some(value) => {
                    Some(FieldMapping::from_value(value).map_err(|e| problem(format!("\"field_mapping\" {e}")))?)
                }
            };
            Ok(Invocation::Jobs(vec![Job {
                bucket: bucket.to_string(),
                key: key.to_string(),
                force: flag("force")?,
                dry_run: flag("dry_run")?,
                field_mapping,
                request_id: None,
            }]))
        }
        Some(other) => Err(problem(format!("unknown action {other:?}"))),
        None => Err(problem("\"action\" must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jobs_from_event(event: &Value) -> Result<Vec<Job>, TriggerError> {
        match parse_event(event)? {
            Invocation::Jobs(jobs) => Ok(jobs),
            other => panic!("not jobs: {other:?}"),
        }
    }

    fn s3_event(keys: &[&str]) -> Value {
        let records: Vec<Value> = keys
            .iter()
            .map(|k| json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": k}}}))
            .collect();
        json!({ "Records": records })
    }

    #[test]
    fn s3_keys_decode_plus_before_percent_escapes() {
        let jobs = jobs_from_event(&s3_event(&["incoming/Q4+%282026%29+%2B+more+%C3%9Cml.csv"])).unwrap();
        assert_eq!(jobs[0].key, "incoming/Q4 (2026) + more Üml.csv");
        assert_eq!(jobs[0].bucket, "b");
    }

    #[test]
    fn every_created_record_becomes_a_job_and_others_are_skipped() {
        let mut event = s3_event(&["incoming/a.csv", "incoming/b.csv"]);
        event["Records"][1]["eventName"] = json!("ObjectRemoved:Delete");
        let jobs = jobs_from_event(&event).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].key, "incoming/a.csv");
    }

    #[test]
    fn eventbridge_keys_are_taken_verbatim() {
        let event = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "incoming/a+b%20c.csv"}}});
        assert_eq!(jobs_from_event(&event).unwrap()[0].key, "incoming/a+b%20c.csv");
    }

    #[test]
    fn a_delete_names_its_object_and_is_real_only_when_asked() {
        let event = json!({"action": "delete", "bucket": "b", "key": "incoming/x.csv", "dry_run": true});
        let expected = Invocation::Delete { bucket: "b".into(), key: "incoming/x.csv".into(), dry_run: true };
        assert_eq!(parse_event(&event).unwrap(), expected);
        assert!(matches!(
            parse_event(&json!({"action": "delete", "bucket": "b", "key": "k"})).unwrap(),
            Invocation::Delete { dry_run: false, .. }
        ));
        assert!(parse_event(&json!({"action": "delete", "bucket": "b"})).is_err(), "no key, nothing deleted");
    }

    #[test]
    fn a_direct_enrich_payload_carries_its_options() {
        let event = json!({"action": "enrich", "bucket": "b", "key": "incoming/x.csv", "force": true,
            "field_mapping": {"company_name": "Firm"}});
        let job = &jobs_from_event(&event).unwrap()[0];
        assert!(job.force && !job.dry_run);
        assert_eq!(job.field_mapping.as_ref().unwrap().to_json(), json!({"company_name": "Firm"}));
    }

    #[test]
    fn schedules_refresh_and_status_are_recognised() {
        let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(parse_event(&scheduled).unwrap(), Invocation::Refresh { bucket: None, prefix: None, force: false });
        let refresh = json!({"action": "refresh", "bucket": "b", "prefix": "incoming/2026/", "force": true});
        assert_eq!(
            parse_event(&refresh).unwrap(),
            Invocation::Refresh { bucket: Some("b".into()), prefix: Some("incoming/2026/".into()), force: true }
        );
        assert_eq!(
            parse_event(&json!({"action": "status", "bucket": "b"})).unwrap(),
            Invocation::Status { bucket: "b".into(), key: None }
        );
        assert!(parse_event(&json!({"action": "status"})).is_err());
    }

    #[test]
    fn unknown_payloads_name_the_accepted_shapes() {
        let err = jobs_from_event(&json!({"action": "explode"})).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown action \"explode\"") && text.contains("\"enrich\"") && text.contains("\"status\"")
        );
        assert!(jobs_from_event(&json!({"hello": 1})).is_err());
        assert!(jobs_from_event(&json!({"action": "enrich", "bucket": "b"})).is_err());
    }

    #[test]
    fn a_state_machine_payload_of_the_wrong_shape_is_named_without_its_values() {
        let batch = json!({"BatchInput": {"work_bucket": "b"}, "Items": [{"company": "Secret Customer Ltd"}]});
        let error = parse_event(&batch).unwrap_err().to_string();
        assert!(error.contains("a Distributed Map batch") && error.contains("state machine"), "{error}");
        assert!(!error.contains("Secret Customer") && !error.contains("S3 event notification"), "{error}");
    }
}
