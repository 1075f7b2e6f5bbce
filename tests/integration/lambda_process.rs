//! The real function binary, run the way Lambda runs it: a child process polling a Runtime API
//! that the test serves on a loopback port, handed one event. A test can wait for the answer,
//! or kill the process mid-run (SIGKILL, as Lambda does at a timeout or the kernel on OOM).
//!
//! ```ignore
//! let env = TestEnv::new().await;
//! let event = env.enrich_event("incoming/a.csv");
//! let mut function = LambdaProcess::start(env.function_env(&[]), event, Duration::from_secs(60)).await;
//! function.wait_until(Duration::from_secs(30), "a Leadspace request", || env.emulator.stats().requests > 0).await;
//! function.kill();
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;

/// What the function posted to the Runtime API.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `POST /2018-06-01/runtime/invocation/{id}/response`: the handler's result.
    Response(Value),
    /// `POST /2018-06-01/runtime/invocation/{id}/error`: `{"errorType": .., "errorMessage": ..}`.
    Error(Value),
    /// `POST /2018-06-01/runtime/init/error`, as posted. (lambda_runtime posts it only for
    /// SnapStart hooks: a configuration error makes the binary exit without posting anything.)
    InitError(String),
}

const FUNCTION_NAME: &str = "leadspace-enrich";

struct Invocation {
    request_id: String,
    timeout: Duration,
    event: Option<Value>,
    delivered: bool,
    answer: Option<Answer>,
}

type Shared = Arc<Mutex<Invocation>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Invocation> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next(State(shared): State<Shared>) -> (HeaderMap, String) {
    let (event, request_id, timeout) = {
        let mut invocation = lock(&shared);
        let event = invocation.event.take();
        if event.is_some() {
            invocation.delivered = true;
        }
        (event, invocation.request_id.clone(), invocation.timeout)
    };
    let Some(event) = event else {
        // One invocation per process: the next poll waits until the process is gone.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + timeout;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            format!("arn:aws:lambda:us-east-1:000000000000:function:{FUNCTION_NAME}"),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".into(),
        ),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).expect("a valid header value"));
    }
    (headers, event.to_string())
}

fn record(shared: &Shared, answer: Answer) -> (StatusCode, &'static str) {
    lock(shared).answer = Some(answer);
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn json_or_string(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

async fn response(
    State(shared): State<Shared>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> (StatusCode, &'static str) {
    record(&shared, Answer::Response(json_or_string(body)))
}

async fn invocation_error(
    State(shared): State<Shared>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> (StatusCode, &'static str) {
    record(&shared, Answer::Error(json_or_string(body)))
}

async fn init_error(State(shared): State<Shared>, body: String) -> (StatusCode, &'static str) {
    record(&shared, Answer::InitError(body))
}

/// The function binary running one invocation. Dropping it kills the process.
pub struct LambdaProcess {
    child: Child,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
    /// `None` once kept on disk (when a test panics).
    log: Option<tempfile::NamedTempFile>,
    log_path: PathBuf,
}

impl LambdaProcess {
    /// Starts the binary with exactly `vars` (see `TestEnv::function_env`) plus the variables
    /// Lambda sets, and hands it `event` with a deadline `timeout` from when it asks for it.
    pub async fn start(vars: HashMap<String, String>, event: Value, timeout: Duration) -> LambdaProcess {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let request_id =
            format!("request-{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let shared: Shared = Arc::new(Mutex::new(Invocation {
            request_id,
            timeout,
            event: Some(event),
            delivered: false,
            answer: None,
        }));
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for the Runtime API");
        let addr = listener.local_addr().expect("the Runtime API's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let log = tempfile::Builder::new()
            .prefix("leadspace-enrich-")
            .suffix(".log")
            .tempfile()
            .expect("a temporary file for the function's log");
        let log_path = log.path().to_path_buf();
        let stdout = log.as_file().try_clone().expect("the log file, for stdout");
        let stderr = log.as_file().try_clone().expect("the log file, for stderr");
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadspace-enrich"));
        command
            .env_clear()
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]00000000000000000000000000000000")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{FUNCTION_NAME}"));
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .envs(&vars)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the function binary");
        LambdaProcess { child, shared, server, log: Some(log), log_path }
    }

    /// The file that holds the function's stdout and stderr. It is deleted when this is
    /// dropped, unless the test is panicking.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The function's output so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The id of the invocation handed to the function.
    pub fn request_id(&self) -> String {
        lock(&self.shared).request_id.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the function has taken the event (its first `next`).
    pub fn delivered(&self) -> bool {
        lock(&self.shared).delivered
    }

    /// The answer, if the function has posted one.
    pub fn answered(&self) -> Option<Answer> {
        lock(&self.shared).answer.clone()
    }

    /// The exit status, once the process has exited (or been killed), without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the function's status")
    }

    /// Waits until `condition` holds, checking every 10 ms. Panics, with the function's log, if
    /// the process exits or `limit` passes first; `what` names the condition in that message.
    pub async fn wait_until(&mut self, limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        loop {
            if condition() {
                return;
            }
            if let Some(status) = self.exit_status() {
                // It may have been met just before the exit.
                if condition() {
                    return;
                }
                panic!("the function exited ({status}) before {what}; its log:\n{}", self.log());
            }
            if started.elapsed() > limit {
                panic!("no {what} within {limit:?}; the function's log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the function has taken the event.
    pub async fn wait_delivered(&mut self, limit: Duration) {
        let shared = self.shared.clone();
        self.wait_until(limit, "request for the event", || lock(&shared).delivered).await;
    }

    /// Waits for the function's answer. Panics, with its log, if the process exits or `limit`
    /// passes first.
    pub async fn answer(&mut self, limit: Duration) -> Answer {
        let shared = self.shared.clone();
        self.wait_until(limit, "answer", || lock(&shared).answer.is_some()).await;
        self.answered().expect("an answer")
    }

    /// Kills the process (SIGKILL) and reaps it. Does nothing once it has exited.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        self.kill();
        self.server.abort();
        if std::thread::panicking()
            && let Some(log) = self.log.take()
        {
            match log.keep() {
                Ok((_, path)) => eprintln!("the function's log is kept at {}", path.display()),
                Err(e) => eprintln!("could not keep the function's log: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use leadspace_emulator::Knobs;
    use serde_json::json;

    use super::{Answer, LambdaProcess};
    use crate::harness::{TestEnv, firms_csv};

    const SECONDS_60: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn the_binary_answers_an_enrich_invocation_with_its_results() {
        let env = TestEnv::new().await;
        env.put("incoming/a.csv", firms_csv(5)).await;
        let event = env.enrich_event("incoming/a.csv");
        let mut function = LambdaProcess::start(env.function_env(&[]), event, SECONDS_60).await;

        let answer = function.answer(SECONDS_60).await;

        let Answer::Response(response) = answer else {
            panic!("not a response: {answer:?}; the function's log:\n{}", function.log())
        };
        assert_eq!(response["results"][0]["outcome"], "enriched", "{response}");
        assert!(function.delivered());
        assert!(env.get("enriched/a.csv.summary.json").await.is_some(), "the summary is in moto");
        assert!(env.emulator.stats().requests > 0, "the binary called the emulator");
        let log = function.log();
        assert!(function.log_path().exists());
        assert!(log.contains("INFO"), "the log file has the function's output: {log:?}");
        assert!(log.contains(&function.request_id()), "the invocation's id reached the function: {log:?}");
        assert_eq!(function.exit_status(), None, "after answering, the function waits for the next event");
    }

    #[tokio::test]
    async fn metric_lines_survive_lambda_keeping_only_warnings_and_errors() {
        let env = TestEnv::new().await;
        env.put("incoming/a.csv", firms_csv(5)).await;
        let event = env.enrich_event("incoming/a.csv");
        // What Lambda sets for a function whose application log level is WARN.
        let vars = [("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("AWS_LAMBDA_LOG_FORMAT", "JSON")];
        let mut function = LambdaProcess::start(env.function_env(&vars), event, SECONDS_60).await;

        let answer = function.answer(SECONDS_60).await;

        assert!(matches!(answer, Answer::Response(_)), "{answer:?}; the log:\n{}", function.log());
        let log = function.log();
        let metric_lines: Vec<serde_json::Value> = log
            .lines()
            .filter(|line| line.contains("\"_aws\""))
            .map(|line| serde_json::from_str(line).expect("a metric line is one JSON object"))
            .collect();
        let job = metric_lines.iter().find(|m| m.get("RowsTotal").is_some()).expect("the job's metrics");
        // What the template's saved Logs Insights queries select by.
        assert_eq!((job["Key"].as_str(), job["Status"].as_str()), (Some("incoming/a.csv"), Some("complete")), "{job}");
        assert_eq!(job["Bucket"].as_str(), Some(env.bucket.as_str()));
        for line in &metric_lines {
            // Lambda keeps a line at WARN or above, and only with an RFC 3339 timestamp.
            assert!(["WARN", "ERROR", "FATAL"].contains(&line["level"].as_str().unwrap_or("")), "{line}");
            let timestamp = line["timestamp"].as_str().unwrap_or("");
            assert!(timestamp.len() == 24 && timestamp.ends_with('Z') && &timestamp[10..11] == "T", "{line}");
        }
    }

    #[tokio::test]
    async fn a_process_killed_mid_run_never_answers_and_leaves_no_summary() {
        let env = TestEnv::with_knobs(Knobs { latency_ms: 2_000, ..Knobs::default() }).await;
        env.put("incoming/a.csv", firms_csv(5)).await;
        let event = env.enrich_event("incoming/a.csv");
        let mut function = LambdaProcess::start(env.function_env(&[]), event, SECONDS_60).await;

        function.wait_delivered(SECONDS_60).await;
        function.wait_until(SECONDS_60, "Leadspace request", || env.emulator.stats().requests > 0).await;
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", function.pid()));
        assert!(proc_dir.exists(), "the process runs");
        function.kill();

        let status = function.exit_status().expect("the process is gone");
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
        // Past the emulator's latency: an answer the process might still have sent would be in.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(function.answered(), None);
        assert_eq!(env.get("enriched/a.csv.summary.json").await, None, "keys left: {:?}", env.keys().await);
        assert_eq!(env.get("enriched/a.csv").await, None);
    }

    #[tokio::test]
    async fn a_binary_that_exits_before_answering_makes_answer_panic_with_its_log() {
        use futures::FutureExt;

        let env = TestEnv::new().await;
        let mut vars = env.function_env(&[]);
        vars.remove("LEADSPACE_SECRET_ID");
        let mut function = LambdaProcess::start(vars, json!({"action": "status"}), SECONDS_60).await;

        let outcome = std::panic::AssertUnwindSafe(function.answer(SECONDS_60)).catch_unwind().await;

        let payload = outcome.expect_err("answer panics");
        let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("the function exited"), "{message}");
        assert!(message.contains("LEADSPACE_SECRET_ID"), "the message has the function's log: {message}");
        assert_eq!(function.answered(), None, "a configuration error is not posted to init/error");
    }
}
