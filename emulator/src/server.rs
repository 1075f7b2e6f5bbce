//! Routes, the per-request gate (latency, throttle, auth, fault injection) and endpoint logic.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::{Value, json};

use crate::firmographics::{Profile, profile_for};
use crate::state::{Arrival, Job, Shared, State, chance, lock};

/// Path prefix of poll URLs; the bulk id returned by a submission is this plus the job id.
const RESULTS_PREFIX: &str = "/v3/enrichment/results/";

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/enrichment/enrich/single", post(single))
        .route("/enrichment/enrich/bulk", post(bulk))
        .route("/v3/enrichment/results/{id}", get(poll))
        .fallback(not_found)
        // 500 records with rich inputs can exceed axum's 2 MB default.
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Number of records a response concerned, for the one-line request log.
#[derive(Clone, Copy)]
struct RecordCount(usize);

fn json_response(status: StatusCode, body: Value, records: usize) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(RecordCount(records));
    resp
}

fn simple_error(status: StatusCode, error: &str) -> Response {
    json_response(status, json!({ "error": error }), 0)
}

/// The documented 400 body: `{error, tracking_id, request_timestamp, details}`.
fn bad_request(state: &mut State, error: &str, details: &str, records: usize) -> Response {
    let body = json!({
        "error": error,
        "tracking_id": state.uuid(),
        "request_timestamp": iso8601_now(),
        "details": details,
    });
    json_response(StatusCode::BAD_REQUEST, body, records)
}

/// Runs before every route, in the contract's order: count, latency, TPS, auth, injected
/// 5xx. Also writes the one-line request log (never bodies).
async fn gate(AxState(shared): AxState<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let latency = {
        let mut s = lock(&shared);
        s.stats.requests += 1;
        s.knobs.latency_ms
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let poll = method == Method::GET && path.starts_with(RESULTS_PREFIX);
    let rejection = {
        let mut s = lock(&shared);
        let auth_ok = bearer.as_deref() == Some(s.knobs.token.as_str());
        let error_rate = s.knobs.server_error_rate;
        let now = Instant::now();
        // A contract that excludes polls: they neither meet the limit nor fill the window.
        let admitted = (poll && !s.knobs.polls_count) || s.admit(now);
        s.arrivals.push(Arrival { at: now, throttled: !admitted, poll });
        if !admitted {
            s.stats.throttled += 1;
            Some(simple_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"))
        } else if !auth_ok {
            s.stats.unauthorized += 1;
            Some(simple_error(StatusCode::UNAUTHORIZED, "Unauthorized"))
        } else if s.chance(error_rate) {
            s.stats.server_errors += 1;
            Some(if s.chance(0.5) {
                simple_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            } else {
                simple_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            })
        } else {
            None
        }
    };
    let resp = match rejection {
        Some(r) => r,
        None => next.run(req).await,
    };

    if lock(&shared).log_requests {
        let records = resp.extensions().get::<RecordCount>().map_or(0, |r| r.0);
        eprintln!("{method} {path} {} records={records}", resp.status().as_u16());
    }
    resp
}

async fn not_found() -> Response {
    simple_error(StatusCode::NOT_FOUND, "Not Found")
}

/// Content-Type must be JSON (415 otherwise) and the body valid JSON (400 otherwise).
fn parse_json(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Box::new(simple_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(&mut lock(shared), "Invalid JSON", &e.to_string(), 0)))
}

/// `company.name` if present and not blank.
fn company_name(record: &Value) -> Option<&str> {
    record.pointer("/company/name").and_then(Value::as_str).filter(|n| !n.trim().is_empty())
}

/// One record's answer in a finished bulk or a single call. Typed rather than a `Value` so
/// that a bulk of 500 answers is serialised once, straight to bytes.
// Built and serialised at once, one at a time: its size costs nothing, a Box would cost an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(untagged)]
enum RecordResult<'a> {
    Success { status: &'static str, external_id: &'a Value, data: SuccessData<'a> },
    Error { status: &'static str, external_id: &'a Value, error: RecordError<'a> },
}

#[derive(Serialize)]
struct SuccessData<'a> {
    enrichment_status: &'static str,
    company: Company<'a>,
}

/// The profile, or `{}` for "Not Enriched".
#[allow(clippy::large_enum_variant)] // short-lived, as `RecordResult`
#[derive(Serialize)]
#[serde(untagged)]
enum Company<'a> {
    Found(Profile<'a>),
    Empty {},
}

#[derive(Serialize)]
struct RecordError<'a> {
    code: u32,
    message: &'a str,
}

fn success_result<'a>(external_id: &'a Value, company: Option<Profile<'a>>) -> RecordResult<'a> {
    let status = if company.is_some() { "Company Enriched" } else { "Not Enriched" };
    let company = company.map_or(Company::Empty {}, Company::Found);
    RecordResult::Success { status: "success", external_id, data: SuccessData { enrichment_status: status, company } }
}

fn error_result<'a>(external_id: &'a Value, code: u32, message: &'a str) -> RecordResult<'a> {
    RecordResult::Error { status: "error", external_id, error: RecordError { code, message } }
}

fn enrich(record: &Value) -> Option<Profile<'_>> {
    let name = company_name(record)?;
    let website = record.pointer("/company/website").and_then(Value::as_str);
    profile_for(name, website)
}

/// A 200 whose JSON body is already serialised.
fn json_bytes_response(body: Bytes, records: usize) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    resp.extensions_mut().insert(RecordCount(records));
    resp
}

async fn single(AxState(shared): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let record = match parse_json(&shared, &headers, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let external_id = record.get("external_id").cloned().unwrap_or(Value::Null);
    let has_name = company_name(&record).is_some();
    // Serialising these plain structs cannot fail; the fallback is never taken.
    let (enriched, body) = {
        let company = enrich(&record);
        (company.is_some(), serde_json::to_vec(&success_result(&external_id, company)).unwrap_or_default())
    };

    let mut s = lock(&shared);
    s.stats.single_requests += 1;
    s.stats.records_received += 1;
    s.received.push(record);
    if !has_name {
        return bad_request(&mut s, "Insufficient input", "company.name is required", 1);
    }
    if s.knobs.credits == Some(0) {
        s.stats.insufficient_credits += 1;
        return insufficient_credits(1);
    }
    if enriched {
        s.charge();
    }
    json_bytes_response(Bytes::from(body), 1)
}

fn insufficient_credits(records: usize) -> Response {
    // 427 is non-standard but a valid status code; the fallback can never be taken.
    let status = StatusCode::from_u16(427).unwrap_or(StatusCode::PAYMENT_REQUIRED);
    json_response(status, json!({ "error": "Insufficient credits" }), records)
}

async fn bulk(AxState(shared): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = match parse_json(&shared, &headers, &body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let data = match request.get_mut("data").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => {
            let mut s = lock(&shared);
            s.stats.bulk_submissions += 1;
            return bad_request(&mut s, "Invalid input", "data must be an array of records", 0);
        }
    };
    let n = data.len();

    let mut s = lock(&shared);
    s.stats.bulk_submissions += 1;
    s.stats.records_received += n as u64;
    // The records are kept once, in `received`; the job refers to them by position.
    let first = s.received.len();
    s.received.extend(data);
    if n == 0 {
        return bad_request(&mut s, "Invalid input", "data must not be empty", 0);
    }
    let max = s.knobs.max_bulk_records;
    if n > max {
        let details = format!("data has {n} records; at most {max} records per bulk");
        return bad_request(&mut s, "Invalid input", &details, n);
    }
    if s.knobs.credits.is_some_and(|c| c < n as u64) {
        s.stats.insufficient_credits += 1;
        return insufficient_credits(n);
    }
    let id = s.uuid();
    s.jobs.insert(id.clone(), Job { records: first..first + n, submitted: Instant::now(), results: None });
    json_response(StatusCode::ACCEPTED, json!({ "id": format!("{RESULTS_PREFIX}{id}") }), n)
}

async fn poll(AxState(shared): AxState<Shared>, Path(id): Path<String>) -> Response {
    let mut guard = lock(&shared);
    let s = &mut *guard;
    s.stats.polls += 1;
    let (after_ms, per_record_us) = (s.knobs.bulk_ready_after_ms, s.knobs.bulk_ready_per_record_us);
    if s.bulks_lost < s.knobs.lose_first_bulks && s.jobs.remove(&id).is_some() {
        s.bulks_lost += 1;
    }
    let Some(job) = s.jobs.get_mut(&id) else {
        return simple_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let ready_after =
        Duration::from_millis(after_ms) + Duration::from_micros(per_record_us.saturating_mul(job.records.len() as u64));
    if job.results.is_none() && job.submitted.elapsed() < ready_after {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        resp.extensions_mut().insert(RecordCount(0));
        return resp;
    }
    if job.results.is_none() {
        // First completed poll: decide every record once, charge once, shuffle once; the body
        // is serialised once too, so that later polls answer the very same bytes.
        let mut results: Vec<Vec<u8>> = Vec::with_capacity(job.records.len());
        let mut charged = 0;
        for record in &s.received[job.records.clone()] {
            let external_id = record.get("external_id").unwrap_or(&Value::Null);
            let result = if company_name(record).is_none() {
                error_result(external_id, 1200, "Insufficient input: company.name is required")
            } else if chance(&mut s.rng, s.knobs.record_error_rate) {
                error_result(external_id, 1100, "Internal error")
            } else {
                let company = enrich(record);
                charged += usize::from(company.is_some());
                success_result(external_id, company)
            };
            // Serialising these plain structs cannot fail; the fallback is never taken.
            results.push(serde_json::to_vec(&result).unwrap_or_else(|_| b"null".to_vec()));
        }
        results.shuffle(&mut s.rng);
        let mut body = Vec::with_capacity(results.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"results\":[");
        for (i, result) in results.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(result);
        }
        body.extend_from_slice(b"]}");
        job.results = Some((Bytes::from(body), results.len()));
        for _ in 0..charged {
            s.charge();
        }
    }
    match s.jobs.get(&id).and_then(|job| job.results.as_ref()) {
        Some((body, n)) => json_bytes_response(body.clone(), *n),
        None => simple_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Current UTC time as ISO 8601 (`2024-05-01T12:34:56.789Z`) without a date crate.
pub(crate) fn iso8601_now() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    iso8601(since)
}

fn iso8601(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (always >= 0 here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_instants() {
        assert_eq!(iso8601(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn result_shapes() {
        let (r1, r2) = (json!("r1"), json!("r2"));
        let ok = serde_json::to_value(success_result(&r1, None)).unwrap_or_default();
        assert_eq!(
            ok,
            json!({"status":"success","external_id":"r1","data":{"enrichment_status":"Not Enriched","company":{}}})
        );
        let err = serde_json::to_value(error_result(&r2, 1100, "Internal error")).unwrap_or_default();
        assert_eq!(err, json!({"status":"error","external_id":"r2","error":{"code":1100,"message":"Internal error"}}));
    }
}
