//! A fault-injecting HTTP proxy in front of moto. Point an SDK at `S3Faults::endpoint()` (with
//! `harness::sdk_config_at`, `TestEnv::app_at` or `TestEnv::function_env_at`) and every request
//! is forwarded to moto, except those matching a `FaultRule`, which get an S3-style error
//! instead. The SDK configuration has one endpoint for all services, so Secrets Manager and
//! DynamoDB calls (`POST /`) pass through the proxy too; rules on a key never match them.
//!
//! ```ignore
//! let proxy = S3Faults::start(harness::moto_endpoint()).await;
//! let app = env.app_at(&proxy.endpoint(), &[]);
//! proxy.fail(FaultRule::slow_down("PUT", "enriched/a.csv").query_contains("uploadId").times(2));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use crate::forward::{self, lock};

/// Which requests fail, and how. A request matches when its method is `method` (any case; `"*"`
/// is any method), its decoded key (the path after the bucket segment) contains
/// `key_contains`, and, when `query_contains` is set, its raw query string contains it.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub method: &'static str,
    pub key_contains: String,
    /// For example `"uploadId"` (UploadPart, CompleteMultipartUpload, AbortMultipartUpload) or
    /// `"uploads"` (CreateMultipartUpload).
    pub query_contains: Option<String>,
    pub status: u16,
    pub code: &'static str,
    /// How many matching requests fail; `None` is every one.
    pub times: Option<u64>,
}

impl FaultRule {
    /// Every matching request is answered `status` with the S3 error `code`.
    pub fn new(method: &'static str, key_contains: impl Into<String>, status: u16, code: &'static str) -> Self {
        FaultRule { method, key_contains: key_contains.into(), query_contains: None, status, code, times: None }
    }

    /// 503 SlowDown (S3 throttling: the SDK retries it, with backoff).
    pub fn slow_down(method: &'static str, key_contains: impl Into<String>) -> Self {
        Self::new(method, key_contains, 503, "SlowDown")
    }

    /// 500 InternalError (a transient server error: the SDK retries it).
    pub fn internal_error(method: &'static str, key_contains: impl Into<String>) -> Self {
        Self::new(method, key_contains, 500, "InternalError")
    }

    /// 403 AccessDenied (not retried).
    pub fn access_denied(method: &'static str, key_contains: impl Into<String>) -> Self {
        Self::new(method, key_contains, 403, "AccessDenied")
    }

    /// Only the next `n` matching requests fail; later ones are forwarded.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Only requests whose raw query string contains `query` match.
    pub fn query_contains(mut self, query: impl Into<String>) -> Self {
        self.query_contains = Some(query.into());
        self
    }

    fn matches(&self, request: &SeenRequest) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(&request.method))
            && request.key.contains(self.key_contains.as_str())
            && self.query_contains.as_deref().is_none_or(|q| request.query.contains(q))
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenRequest {
    pub method: String,
    /// The bucket, the path's first segment ("" for service-level calls such as `POST /`).
    pub bucket: String,
    /// The decoded key: the path after the bucket segment ("" for bucket-level calls).
    pub key: String,
    /// The raw query string, without the `?`.
    pub query: String,
    /// The status it was failed with, or `None` when it was forwarded to moto.
    pub injected: Option<u16>,
}

struct ActiveRule {
    rule: FaultRule,
    used: u64,
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Vec<ActiveRule>>,
    seen: Mutex<Vec<SeenRequest>>,
    injected: AtomicU64,
}

/// The proxy; it stops when dropped.
pub struct S3Faults {
    endpoint: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl S3Faults {
    /// A proxy on a loopback port, forwarding to `upstream` (`harness::moto_endpoint()`).
    pub async fn start(upstream: &str) -> S3Faults {
        let client = forward::client().expect("an HTTP client for the proxy");
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
        });
        let app = Router::new().fallback(proxy).with_state(inner.clone());
        let (endpoint, server) = forward::serve(app).await.expect("a loopback port for the proxy");
        S3Faults { endpoint, inner, server }
    }

    /// "http://127.0.0.1:PORT".
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Adds a rule. When several match a request, the first added that has failures left wins.
    pub fn fail(&self, rule: FaultRule) {
        lock(&self.inner.rules).push(ActiveRule { rule, used: 0 });
    }

    /// Removes every rule; requests are forwarded again. Counters are kept.
    pub fn clear(&self) {
        lock(&self.inner.rules).clear();
    }

    /// How many requests were failed by a rule, so far.
    pub fn injected(&self) -> u64 {
        self.inner.injected.load(Ordering::SeqCst)
    }

    /// How many requests (forwarded or failed) had this method (any case; `"*"` is any) and a
    /// decoded key containing `key_contains`.
    pub fn seen(&self, method: &str, key_contains: &str) -> u64 {
        lock(&self.inner.seen)
            .iter()
            .filter(|r| (method == "*" || r.method.eq_ignore_ascii_case(method)) && r.key.contains(key_contains))
            .count() as u64
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.inner.seen).clone()
    }

    /// A path-style S3 client that talks to moto through this proxy.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let sdk = crate::harness::sdk_config_at(&self.endpoint);
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build())
    }
}

impl Drop for S3Faults {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn proxy(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let (bucket, raw_key) = path.trim_start_matches('/').split_once('/').unwrap_or((path.trim_start_matches('/'), ""));
    let mut seen = SeenRequest {
        method: parts.method.as_str().to_string(),
        bucket: percent_decode_str(bucket).decode_utf8_lossy().into_owned(),
        key: percent_decode_str(raw_key).decode_utf8_lossy().into_owned(),
        query,
        injected: None,
    };
    let fault = {
        let mut rules = lock(&inner.rules);
        let active = rules.iter_mut().find(|a| a.rule.times.is_none_or(|n| a.used < n) && a.rule.matches(&seen));
        active.map(|a| {
            a.used += 1;
            (a.rule.status, a.rule.code)
        })
    };
    if let Some((status, code)) = fault {
        seen.injected = Some(status);
        let n = inner.injected.fetch_add(1, Ordering::SeqCst) + 1;
        let response = error_response(&parts.method, status, code, &seen, n);
        lock(&inner.seen).push(seen);
        return response;
    }
    lock(&inner.seen).push(seen);

    let body = match forward::read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let upstream = match forward::send(&inner.client, &inner.upstream, &parts, body).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    let mut response = forward::answer(&upstream, Body::empty());
    match upstream.bytes().await {
        Ok(bytes) => *response.body_mut() = Body::from(bytes),
        Err(e) => {
            return forward::plain(StatusCode::BAD_GATEWAY, format!("the proxy could not read moto's answer: {e}"));
        }
    }
    response
}

fn error_response(method: &Method, status: u16, code: &str, seen: &SeenRequest, n: u64) -> Response {
    let request_id = format!("INJECTED{n:08}");
    let key = escape_xml(&seen.key);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>Injected by the S3Faults \
         test proxy ({} {key})</Message><Key>{key}</Key><RequestId>{request_id}</RequestId><HostId>s3-faults</HostId>\
         </Error>",
        seen.method,
    );
    // S3 answers a failed HEAD with headers only.
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(xml) };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amz-request-id", value);
    }
    response
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_smithy_types::error::display::DisplayErrorContext;

    use super::{FaultRule, S3Faults};
    use crate::harness::{TestEnv, firms_csv, invoke, moto_endpoint};

    async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) -> Result<(), String> {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.code().unwrap_or("no code"), DisplayErrorContext(&e)))
    }

    #[tokio::test]
    async fn objects_put_through_the_proxy_land_in_moto_and_read_back() {
        let env = TestEnv::new().await;
        let proxy = S3Faults::start(moto_endpoint()).await;
        let client = proxy.s3_client();

        let key = "notes/a file + more (1).txt";
        put(&client, &env.bucket, key, "hello through the proxy").await.expect("put through the proxy");
        assert_eq!(env.get(key).await.as_deref(), Some(&b"hello through the proxy"[..]), "moto has the object");
        let out = client.get_object().bucket(&env.bucket).key(key).send().await.expect("get through the proxy");
        assert_eq!(out.body.collect().await.expect("body").to_vec(), b"hello through the proxy");
        let head = client.head_object().bucket(&env.bucket).key(key).send().await.expect("head through the proxy");
        assert_eq!(head.content_length(), Some(23), "HEAD keeps moto's Content-Length");
        let missing = client.get_object().bucket(&env.bucket).key("notes/missing").send().await;
        assert_eq!(missing.expect_err("no such key").code(), Some("NoSuchKey"), "moto's errors pass through");

        assert_eq!(proxy.seen("PUT", key), 1, "the key is matched decoded: {:?}", proxy.requests());
        assert_eq!(proxy.seen("GET", "notes/"), 2);
        assert_eq!(proxy.seen("head", key), 1);
        assert_eq!(proxy.injected(), 0);
    }

    #[tokio::test]
    async fn the_app_enriches_a_file_through_the_proxy() {
        let env = TestEnv::new().await;
        env.put("incoming/a.csv", firms_csv(5)).await;
        let proxy = S3Faults::start(moto_endpoint()).await;
        let app = env.app_at(&proxy.endpoint(), &[]);

        let response = invoke(&app, env.enrich_event("incoming/a.csv")).await;

        assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");
        assert!(env.get("enriched/a.csv").await.is_some(), "the output is in moto");
        assert!(env.get("enriched/a.csv.summary.json").await.is_some(), "the summary is in moto");
        assert!(proxy.seen("GET", "incoming/a.csv") >= 1, "the input was read through the proxy");
        assert!(proxy.seen("PUT", "enriched/a.csv") >= 1, "the output was written through the proxy");
        assert!(proxy.seen("POST", "") >= 1, "the secret was read through the proxy too");
    }

    #[tokio::test]
    async fn a_slow_down_rule_fails_a_put_despite_the_sdk_retries_until_cleared() {
        let env = TestEnv::new().await;
        let proxy = S3Faults::start(moto_endpoint()).await;
        let client = proxy.s3_client();
        proxy.fail(FaultRule::slow_down("PUT", "enriched/x.csv"));

        let failed = put(&client, &env.bucket, "enriched/x.csv", "x").await.expect_err("every attempt fails");
        assert!(failed.starts_with("SlowDown:"), "{failed}");
        let attempts = proxy.injected();
        assert_eq!(attempts, proxy.seen("PUT", "enriched/x.csv"), "every attempt was failed, none forwarded");
        // The SDK's standard retry strategy: three attempts in all.
        assert_eq!(attempts, 3, "{:?}", proxy.requests());
        assert_eq!(env.get("enriched/x.csv").await, None, "nothing reached moto");

        put(&client, &env.bucket, "enriched/y.csv", "y").await.expect("another key is not affected");
        let get = client.get_object().bucket(&env.bucket).key("enriched/x.csv").send().await;
        assert_eq!(get.expect_err("not written").code(), Some("NoSuchKey"), "a GET of the key is not affected");
        assert_eq!(proxy.injected(), attempts);

        proxy.clear();
        put(&client, &env.bucket, "enriched/x.csv", "x").await.expect("forwarded once cleared");
        assert_eq!(env.get("enriched/x.csv").await.as_deref(), Some(&b"x"[..]));
        assert_eq!(proxy.injected(), attempts);
    }

    #[tokio::test]
    async fn a_rule_limited_to_one_failure_is_absorbed_by_the_sdk_retry() {
        let env = TestEnv::new().await;
        let proxy = S3Faults::start(moto_endpoint()).await;
        let client = proxy.s3_client();
        proxy.fail(FaultRule::internal_error("PUT", "once.csv").times(1));

        put(&client, &env.bucket, "once.csv", "1").await.expect("the retry succeeds");

        assert_eq!(proxy.injected(), 1);
        assert_eq!(proxy.seen("PUT", "once.csv"), 2, "one failed attempt, one forwarded");
        assert_eq!(env.get("once.csv").await.as_deref(), Some(&b"1"[..]));
    }

    #[tokio::test]
    async fn a_rule_on_the_query_targets_one_step_of_a_multipart_upload() {
        let env = TestEnv::new().await;
        let proxy = S3Faults::start(moto_endpoint()).await;
        let client = proxy.s3_client();
        let key = "enriched/big file.csv";
        proxy.fail(FaultRule::access_denied("PUT", "big file").query_contains("uploadId"));

        let created = client
            .create_multipart_upload()
            .bucket(&env.bucket)
            .key(key)
            .send()
            .await
            .expect("CreateMultipartUpload (POST ?uploads) is not matched");
        let upload_id = created.upload_id().expect("an upload id");
        let part = client
            .upload_part()
            .bucket(&env.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(1)
            .body(b"a,b\n".to_vec().into())
            .send()
            .await;

        assert_eq!(part.expect_err("UploadPart is failed").code(), Some("AccessDenied"));
        assert_eq!(proxy.injected(), 1, "AccessDenied is not retried");
        let requests = proxy.requests();
        assert!(requests.iter().any(|r| r.method == "POST" && r.key == key && r.query.contains("uploads")));
        client.abort_multipart_upload().bucket(&env.bucket).key(key).upload_id(upload_id).send().await.expect("abort");
    }
}
