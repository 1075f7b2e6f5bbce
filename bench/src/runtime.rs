//! The function's release binary run as Lambda runs it: its own process, polling a minimal
//! Lambda Runtime API served here, which hands out a queue of events (one warm process can
//! take several invocations, as a warm Lambda container does) and records when each was
//! delivered and answered.
//!
//! Measuring a separate process keeps the emulator's and this harness's memory out of the
//! function's peak RSS, which is read from the kernel (`VmHWM`) when an invocation answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// What the Runtime API shares between its routes and the harness.
struct Api {
    /// Events waiting for the function's next poll, with their request ids.
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    /// When the function first asked for an event: its init is over.
    first_ask: Option<Instant>,
    delivered: HashMap<String, Instant>,
    /// Who waits for each request id's answer.
    waiting: HashMap<String, oneshot::Sender<(Instant, Value)>>,
}

fn lock(api: &Api) -> MutexGuard<'_, Books> {
    api.books.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next(State(api): State<Arc<Api>>) -> (HeaderMap, String) {
    lock(&api).first_ask.get_or_insert_with(Instant::now);
    // One poll at a time, as the runtime makes them; waits until an event is queued. With
    // the sender gone (the harness is done) it waits for the process to be stopped.
    let received = api.events.lock().await.recv().await;
    let Some((id, event)) = received else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    lock(&api).delivered.insert(id.clone(), Instant::now());
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(900);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench".into()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, event.to_string())
}

async fn answer(State(api): State<Arc<Api>>, UrlPath(id): UrlPath<String>, body: String) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if let Some(waiting) = lock(&api).waiting.remove(&id) {
        let _ = waiting.send((Instant::now(), value));
    }
    "{}"
}

async fn init_error(State(api): State<Arc<Api>>, body: String) -> &'static str {
    // An init error has no request id: it answers whoever waits (the process exits after it,
    // which `invoke` notices if nobody waits yet).
    let value = json!({"init_error": body});
    for (_, waiting) in lock(&api).waiting.drain() {
        let _ = waiting.send((Instant::now(), value.clone()));
    }
    "{}"
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`: on a
/// shared machine, wall time alone cannot tell the function's cost from its neighbours'.
pub fn cpu_seconds(pid: &str) -> f64 {
    let (user, system) = user_and_system_seconds(pid);
    user + system
}

/// User and system CPU seconds of a process so far: system time is mostly the kernel moving
/// socket bytes, which the function's own code cannot make cheaper except by moving fewer.
pub fn user_and_system_seconds(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) as f64 / 100.0, ticks(12) as f64 / 100.0)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// BENCH_CPU_LIMIT=0.3 runs the function on that many CPUs, as a Lambda function gets about one
/// vCPU per 1,769 MB of memory (so 0.3 is about 512 MB, 0.6 about 1,024 MB).
pub fn cpu_limit() -> Result<Option<f64>, Error> {
    match std::env::var("BENCH_CPU_LIMIT") {
        Err(_) => Ok(None),
        Ok(text) => match text.parse::<f64>() {
            Ok(cpus) if cpus > 0.0 => Ok(Some(cpus)),
            _ => Err(format!("BENCH_CPU_LIMIT={text:?} is not a positive number of CPUs (for example 0.3)").into()),
        },
    }
}

/// Moves the function's process into a CPU-limited cgroup (the cgroup-v1 cpu controller, or
/// cgroup v2's cpu.max), which throttles it to `cpus` of one CPU's time.
fn confine(pid: u32, cpus: f64) -> Result<(), Error> {
    let period = 100_000_u64;
    let quota = (cpus * period as f64).round() as u64;
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    let (group, limits): (PathBuf, Vec<(&str, String)>) = if v1.join("cpu.cfs_quota_us").exists() {
        let group = v1.join(format!("leadspace-bench-{quota}"));
        (group, vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.to_string())])
    } else {
        let group = Path::new("/sys/fs/cgroup").join(format!("leadspace-bench-{quota}"));
        (group, vec![("cpu.max", format!("{quota} {period}"))])
    };
    let failed = |what: &str, e: std::io::Error| -> Error {
        format!("BENCH_CPU_LIMIT needs a writable cgroup ({what} {}: {e}); run as root", group.display()).into()
    };
    std::fs::create_dir_all(&group).map_err(|e| failed("creating", e))?;
    for (file, value) in limits {
        std::fs::write(group.join(file), value).map_err(|e| failed(file, e))?;
    }
    std::fs::write(group.join("cgroup.procs"), pid.to_string()).map_err(|e| failed("cgroup.procs", e))?;
    Ok(())
}

/// One invocation's answer and what it cost.
pub struct Answer {
    pub response: Value,
    /// When the event was handed to the function, and when it answered.
    pub delivered_at: Instant,
    pub answered_at: Instant,
    /// The process's CPU seconds during this invocation, and this harness's (the emulator, the
    /// S3 proxy) meanwhile.
    pub function_cpu: f64,
    /// The part of `function_cpu` spent in the kernel.
    pub function_system_cpu: f64,
    pub harness_cpu: f64,
    /// The process's peak RSS so far (`VmHWM`), when it answered.
    pub peak_rss_kib: u64,
}

impl Answer {
    pub fn seconds(&self) -> f64 {
        (self.answered_at - self.delivered_at).as_secs_f64()
    }
}

/// A running function process and its Runtime API; the process is killed when dropped.
pub struct Function {
    child: Child,
    api: Arc<Api>,
    events: mpsc::UnboundedSender<(String, Value)>,
    server: tokio::task::JoinHandle<()>,
    started: Instant,
    invocations: u32,
}

impl Function {
    /// Starts `binary` with `env` (and nothing else from this process's environment), under a
    /// Runtime API of its own.
    pub async fn start(binary: &Path, env: &[(&str, String)]) -> Result<Function, Error> {
        let (events, receiver) = mpsc::unbounded_channel();
        let api = Arc::new(Api { events: tokio::sync::Mutex::new(receiver), books: Mutex::new(Books::default()) });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(answer))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(answer))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let show_log = std::env::var("BENCH_LOG").is_ok_and(|v| v == "1");
        let started = Instant::now();
        let child = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "leadspace-enrich")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            // BENCH_LOG=1 shows the function's own log (INFO), to see where the time goes.
            .env("AWS_LAMBDA_LOG_LEVEL", if show_log { "INFO" } else { "WARN" })
            .stdout(if show_log { Stdio::inherit() } else { Stdio::null() })
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let function = Function { child, api, events, server, started, invocations: 0 };
        if let Some(cpus) = cpu_limit()? {
            confine(function.child.id(), cpus)?;
        }
        Ok(function)
    }

    /// From the process's start to its first poll for an event.
    pub fn init(&self) -> Option<Duration> {
        lock(&self.api).first_ask.map(|at| at - self.started)
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Hands `event` to the function and waits for its answer (a response or an error).
    pub async fn invoke(&mut self, event: Value) -> Result<Answer, Error> {
        self.invocations += 1;
        let id = format!("bench-request-{}", self.invocations);
        let (tx, mut rx) = oneshot::channel();
        lock(&self.api).waiting.insert(id.clone(), tx);
        let pid = self.child.id().to_string();
        let (user_before, system_before) = user_and_system_seconds(&pid);
        let harness_before = cpu_seconds("self");
        self.events.send((id.clone(), event)).map_err(|_| "the Runtime API is gone")?;
        let (answered_at, response) = loop {
            tokio::select! {
                answered = &mut rx => break answered.map_err(|_| "the Runtime API dropped the answer")?,
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Some(status) = self.child.try_wait()? {
                        return Err(format!("the function exited with {status} before answering").into());
                    }
                }
            }
        };
        let peak_rss_kib = peak_rss_kib(self.child.id());
        let (user_after, system_after) = user_and_system_seconds(&pid);
        let function_system_cpu = system_after - system_before;
        let function_cpu = user_after - user_before + function_system_cpu;
        let harness_cpu = cpu_seconds("self") - harness_before;
        let delivered_at = lock(&self.api).delivered.get(&id).copied().unwrap_or(answered_at);
        Ok(Answer { response, delivered_at, answered_at, function_cpu, function_system_cpu, harness_cpu, peak_rss_kib })
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // The process has nothing left to do; a kill that fails means it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server.abort();
    }
}
