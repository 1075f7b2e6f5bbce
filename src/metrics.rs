//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout per event, which
//! CloudWatch Logs turns into metrics. No API call, so no latency, no permission and no failure
//! mode; the lines carry counts only (and, for a file, its bucket, key and status), never a
//! value from a file or the token.
//!
//! Lambda's log-level filtering treats a line without a `level`, or without an RFC 3339
//! `timestamp`, as INFO, and drops it when the function keeps only WARN or ERROR: every metric,
//! and the alarms on them, would vanish. So each line carries both, at the level the function
//! keeps (AWS_LAMBDA_LOG_LEVEL).

use std::io::Write;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "LeadspaceEnrich";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

pub type Metric = (&'static str, Unit, f64);

/// The level a metric line carries: the lowest one the function keeps, so filtering never
/// drops it. `configured` is AWS_LAMBDA_LOG_LEVEL, which Lambda sets when it filters.
pub fn kept_level(configured: Option<&str>) -> &'static str {
    match configured.map(str::to_ascii_uppercase).as_deref() {
        Some("WARN") => "WARN",
        Some("ERROR") => "ERROR",
        Some("FATAL") => "FATAL",
        // TRACE, DEBUG and INFO all keep INFO; so does a function that does not filter.
        _ => "INFO",
    }
}

/// The EMF document for `metrics`, with one dimension, the function's name, so that alarms and
/// dashboards can tell deployments apart.
pub fn document(metrics: &[Metric], function_name: &str, timestamp_ms: i64, level: &str) -> Value {
    let definitions: Vec<Value> =
        metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["FunctionName"]], "Metrics": definitions}],
        }),
    );
    root.insert("level".into(), Value::String(level.to_string()));
    root.insert("timestamp".into(), Value::String(rfc3339(timestamp_ms)));
    root.insert("FunctionName".into(), Value::String(function_name.to_string()));
    for (name, _, value) in metrics {
        root.insert((*name).to_string(), json!(value));
    }
    Value::Object(root)
}

/// Writes one EMF line to stdout. A failed write loses a data point, never the invocation.
pub fn emit(metrics: &[Metric]) {
    emit_about(metrics, &[]);
}

/// `emit`, with `properties` beside the metrics: not metrics themselves, but what Logs Insights
/// queries select by (which file, how it ended), on lines that survive log-level filtering.
pub fn emit_about(metrics: &[Metric], properties: &[(&str, &str)]) {
    let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let level = kept_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref());
    let mut document = document(metrics, &function_name, now_ms, level);
    if let Value::Object(root) = &mut document {
        for (name, value) in properties {
            root.insert((*name).to_string(), Value::String((*value).to_string()));
        }
    }
    let line = document.to_string();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

/// Milliseconds since the epoch as `2026-11-30T12:00:09.123Z`.
fn rfc3339(timestamp_ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        // Out of range only for a clock centuries off; Lambda then stamps the line itself.
        .unwrap_or_default()
}

/// Leadspace answered 427: the alarm on this tells someone to buy credits.
pub fn credits_exhausted() {
    emit(&[("CreditsExhausted", Unit::Count, 1.0)]);
}

/// The first invocation of a container.
pub fn cold_start(init_ms: u64) {
    emit(&[("ColdStart", Unit::Count, 1.0), ("InitDuration", Unit::Milliseconds, init_ms as f64)]);
}

/// How old the token is; `rotation_due` once it passes Leadspace's advice.
pub fn token_age(days: i64, rotation_due: bool) {
    emit(&[
        ("TokenAgeDays", Unit::None, days as f64),
        ("TokenRotationDue", Unit::Count, if rotation_due { 1.0 } else { 0.0 }),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document(
            &[("RowsEnriched", Unit::Count, 5.0), ("JobDuration", Unit::Milliseconds, 12.0)],
            "fn",
            1_796_040_009_123,
            "INFO",
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_796_040_009_123_i64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(directive["Metrics"][1], json!({"Name": "JobDuration", "Unit": "Milliseconds"}));
        // Every declared metric and dimension must be a member of the root, or CloudWatch
        // drops the document.
        assert_eq!((doc["FunctionName"].as_str(), doc["RowsEnriched"].as_f64()), (Some("fn"), Some(5.0)));
        assert_eq!(doc["JobDuration"].as_f64(), Some(12.0));
    }

    #[test]
    fn metric_lines_carry_the_level_the_function_keeps_and_a_timestamp_lambda_reads() {
        assert_eq!(kept_level(None), "INFO");
        assert_eq!(kept_level(Some("debug")), "INFO");
        assert_eq!(kept_level(Some("WARN")), "WARN");
        assert_eq!(kept_level(Some("error")), "ERROR");
        let doc = document(&[("RowsTotal", Unit::Count, 1.0)], "fn", 1_796_040_009_123, "WARN");
        assert_eq!(doc["level"], "WARN");
        assert_eq!(doc["timestamp"], "2026-11-30T12:00:09.123Z");
    }
}
