//! Shared set-up for the integration tests: a real moto server (S3 and Secrets Manager) over
//! HTTP, the real AWS SDK clients, and the Leadspace emulator on a loopback port.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use leadspace_emulator::{Emulator, Knobs};
use leadspace_enrich::bootstrap::build_app_with;
use leadspace_enrich::config::Config;
use leadspace_enrich::handler::handle;
use leadspace_enrich::pipeline::App;
use serde_json::Value;

pub const TOKEN: &str = "integration-test-token";

/// The moto endpoint: `MOTO_ENDPOINT` when the test script started one, otherwise a server
/// started here for this test process, which stops when the process does.
pub fn moto_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
            return endpoint.trim_end_matches('/').to_string();
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port();
        // A watchdog shell kills moto once this test process is gone, so no server outlives it.
        let script = format!(
            "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $m",
            pid = std::process::id()
        );
        let mut watchdog = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("moto_server could not be started: run scripts/test.sh, which installs it");
        // Reap the watchdog when it exits, so it never lingers as a zombie.
        std::thread::spawn(move || watchdog.wait());
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
}

pub fn sdk_config() -> SdkConfig {
    sdk_config_at(moto_endpoint())
}

/// The SDK configuration of `sdk_config()`, pointed at `endpoint` instead of moto (for example
/// an `S3Faults` proxy in front of it). One endpoint serves every service: S3, Secrets
/// Manager, DynamoDB...
pub fn sdk_config_at(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .build()
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}-{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), rand_suffix())
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id()
}

/// One test's world: its own bucket and secret in moto, its own emulator.
pub struct TestEnv {
    pub sdk: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub emulator: Emulator,
    pub bucket: String,
    pub secret_id: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_knobs(Knobs::default()).await
    }

    pub async fn with_knobs(knobs: Knobs) -> Self {
        let sdk = sdk_config();
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        let bucket = unique("bucket");
        s3.create_bucket().bucket(&bucket).send().await.expect("create bucket in moto");
        let secret_id = unique("leadspace-token");
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&secret_id)
            .secret_string(format!(r#"{{"token": "{TOKEN}", "program_id": "P-TEST"}}"#))
            .send()
            .await
            .expect("create secret in moto");
        let emulator = Emulator::start(Knobs { token: TOKEN.into(), ..knobs }).await.expect("start the emulator");
        TestEnv { sdk, s3, emulator, bucket, secret_id }
    }

    /// The function as deployed, configured by `vars` on top of test defaults.
    pub fn app(&self, vars: &[(&str, &str)]) -> App {
        self.app_with_sdk(&self.sdk, vars)
    }

    /// `app(vars)`, with the SDK pointed at `endpoint` (an `S3Faults` proxy, say) instead of moto.
    pub fn app_at(&self, endpoint: &str, vars: &[(&str, &str)]) -> App {
        self.app_with_sdk(&sdk_config_at(endpoint), vars)
    }

    fn app_with_sdk(&self, sdk: &SdkConfig, vars: &[(&str, &str)]) -> App {
        let env = self.function_vars(vars);
        let config = Config::from_lookup(|name| env.get(name).cloned()).expect("valid test configuration");
        build_app_with(config, sdk).expect("build the app")
    }

    /// The function's configuration variables that `app(vars)` uses: this test's secret and
    /// emulator, consent, path-style S3 and a high TPS, with `vars` on top.
    pub fn function_vars(&self, vars: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env = self.default_vars();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    fn default_vars(&self) -> HashMap<String, String> {
        [
            ("LEADSPACE_SECRET_ID", self.secret_id.as_str()),
            ("LEADSPACE_BASE_URL", &self.emulator.base_url()),
            // The emulator speaks plain HTTP on loopback.
            ("LEADSPACE_ALLOW_HTTP", "true"),
            ("DATA_SHARING_CONSENT", "true"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("LEADSPACE_TPS", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The environment of the real function binary (`LambdaProcess`): `function_vars`' defaults,
    /// plus what the AWS SDK needs to reach moto (endpoint, test credentials, region) and
    /// RUST_LOG=info; `vars` go on top of all of them.
    pub fn function_env(&self, vars: &[(&str, &str)]) -> HashMap<String, String> {
        self.function_env_at(moto_endpoint(), vars)
    }

    /// `function_env(vars)`, with the SDK pointed at `endpoint` (an `S3Faults` proxy, say).
    pub fn function_env_at(&self, endpoint: &str, vars: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env = self.default_vars();
        env.extend(
            [
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
                ("RUST_LOG", "info"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .expect("upload to moto");
    }

    /// A fresh cache table in moto's DynamoDB, shaped as template.yaml declares it.
    pub async fn cache_table(&self) -> String {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let table = unique("cache");
        let attribute = AttributeDefinition::builder()
            .attribute_name("company_key")
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition");
        let key =
            KeySchemaElement::builder().attribute_name("company_key").key_type(KeyType::Hash).build().expect("key");
        self.dynamodb()
            .create_table()
            .table_name(&table)
            .attribute_definitions(attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create the cache table in moto");
        table
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.s3.get_object().bucket(&self.bucket).key(key).send().await.ok()?;
        Some(out.body.collect().await.expect("read object body").to_vec())
    }

    pub async fn summary(&self, key: &str) -> Value {
        let bytes = self.get(key).await.unwrap_or_else(|| panic!("no summary at {key}"));
        serde_json::from_slice(&bytes).expect("summary is JSON")
    }

    pub async fn keys(&self) -> Vec<String> {
        let out = self.s3.list_objects_v2().bucket(&self.bucket).send().await.expect("list objects");
        let mut keys: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        keys.sort();
        keys
    }

    /// A direct `{"action": "enrich"}` payload for `key` in the test bucket.
    pub fn enrich_event(&self, key: &str) -> Value {
        serde_json::json!({"action": "enrich", "bucket": self.bucket, "key": key})
    }

    /// The sample S3 notification from `events/`, pointed at this test's bucket and `raw_key`
    /// (URL-encoded, as S3 sends it).
    pub fn s3_event(&self, raw_key: &str) -> Value {
        let mut event: Value = serde_json::from_str(include_str!("../../events/s3-put.json")).expect("event JSON");
        event["Records"][0]["s3"]["bucket"]["name"] = Value::String(self.bucket.clone());
        event["Records"][0]["s3"]["object"]["key"] = Value::String(raw_key.to_string());
        event
    }
}

pub async fn invoke(app: &App, event: Value) -> Value {
    match try_invoke(app, event).await {
        Ok(response) => response,
        Err(error) => panic!("the handler failed: {}", leadspace_enrich::error::error_chain(&error)),
    }
}

pub async fn try_invoke(app: &App, event: Value) -> Result<Value, leadspace_enrich::error::HandlerError> {
    try_invoke_until(app, event, None).await
}

/// The response as Lambda would send it: the handler's `Response`, serialised.
pub async fn try_invoke_until(
    app: &App,
    event: Value,
    deadline: Option<tokio::time::Instant>,
) -> Result<Value, leadspace_enrich::error::HandlerError> {
    let response = handle(app, event, deadline).await?;
    Ok(serde_json::to_value(response).expect("a response serialises"))
}

/// The response to `event` delivered as the Lambda request `request_id` (Lambda retries an
/// asynchronous invocation under the same id).
pub async fn try_invoke_as(
    app: &App,
    event: Value,
    request_id: &str,
) -> Result<Value, leadspace_enrich::error::HandlerError> {
    let response = leadspace_enrich::handler::handle_request(app, event, None, Some(request_id)).await?;
    Ok(serde_json::to_value(response).expect("a response serialises"))
}

/// The position of the column `name` in a CSV header.
pub fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// A CSV with a `Company` column holding `Firm 0` .. `Firm {n-1}`.
pub fn firms_csv(n: usize) -> String {
    std::iter::once("Id,Company".to_string())
        .chain((0..n).map(|i| format!("{i},Firm {i}")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn parse_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader.headers().expect("CSV header").iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.expect("CSV row").iter().map(str::to_string).collect()).collect();
    (header, rows)
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).expect("output is gzip");
    out
}

/// What a row with this company should show, per the emulator's deterministic rules:
/// (status, leadspace_name).
pub fn expected(name: &str, website: Option<&str>) -> (&'static str, String) {
    match leadspace_emulator::firmographics_for(name, website) {
        None => ("not_matched", String::new()),
        Some(company) => {
            let level = company["matching_confidence"]["level"].as_str().unwrap_or_default();
            if level == "VERY LOW" {
                ("low_confidence", String::new())
            } else {
                ("enriched", company["name"].as_str().unwrap_or_default().to_string())
            }
        }
    }
}
