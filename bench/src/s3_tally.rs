//! A counting HTTP proxy between the function's binary and moto: the benchmark sets the child's
//! `AWS_ENDPOINT_URL` to it, and it forwards every request (method, path and query, headers,
//! body) to moto and answers with moto's status, headers and body. Each S3 request is counted by
//! kind (GET, PUT, LIST, DELETE, HEAD) and by what it touches: results and input, or working
//! state (`_state/` keys: the answer journal, the kept answers, the leases), with the bytes it
//! sent and how long it took as seen here, from its arrival to the end of moto's answer.
//!
//! Request bodies are buffered (the function's largest is one 8 MiB output part); answers are
//! streamed, so that the function reads its 95 MiB input as it arrives rather than after the
//! proxy has it all. Path-style addressing: the path is `/bucket/key`, percent-encoded. Secrets
//! Manager calls (`POST /`) come through the same endpoint and are counted as "other".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use percent_encoding::percent_decode_str;

use crate::forward::{self, lock};

/// What a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// The input, the output, the summary: what the function existed for before the journal.
    Results,
    /// `_state/journal/`: a submission or a bulk's answers, one object each.
    Journal,
    /// `_state/answers/`: the answers kept for the file's next version.
    Kept,
    /// `_state/leases/` and anything else under `_state/`.
    OtherState,
    /// Not an S3 object or listing: Secrets Manager (`POST /`), bucket-level calls.
    Other,
}

impl Area {
    pub fn is_state(self) -> bool {
        matches!(self, Area::Journal | Area::Kept | Area::OtherState)
    }
}

/// The S3 request kinds counted. PUT holds PutObject, UploadPart and the multipart upload's
/// create and complete (POSTs on the key); DELETE holds an aborted multipart upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Get,
    Put,
    List,
    Delete,
    Head,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "GET",
            Kind::Put => "PUT",
            Kind::List => "LIST",
            Kind::Delete => "DELETE",
            Kind::Head => "HEAD",
            Kind::Other => "other",
        }
    }
}

/// Requests of one area.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub get: u64,
    pub put: u64,
    pub list: u64,
    pub delete: u64,
    pub head: u64,
    pub other: u64,
    /// Answered with a status outside 2xx (a missing key, a refused conditional write...).
    pub not_ok: u64,
    /// Request bodies sent (PUT and POST), in bytes.
    pub bytes_sent: u64,
    /// Summed time from each request's arrival here to the end of moto's answer.
    pub busy: Duration,
}

impl Counts {
    pub fn requests(&self) -> u64 {
        self.get + self.put + self.list + self.delete + self.head + self.other
    }

    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Get => self.get += 1,
            Kind::Put => self.put += 1,
            Kind::List => self.list += 1,
            Kind::Delete => self.delete += 1,
            Kind::Head => self.head += 1,
            Kind::Other => self.other += 1,
        }
    }

    fn add(&mut self, other: &Counts) {
        self.get += other.get;
        self.put += other.put;
        self.list += other.list;
        self.delete += other.delete;
        self.head += other.head;
        self.other += other.other;
        self.not_ok += other.not_ok;
        self.bytes_sent += other.bytes_sent;
        self.busy += other.busy;
    }
}

/// Everything the proxy saw.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub results: Counts,
    pub journal: Counts,
    pub kept: Counts,
    pub other_state: Counts,
    pub other: Counts,
    /// Every request, in the order they finished.
    pub spans: Vec<Span>,
}

/// The working-state requests of one area and kind.
#[derive(Clone, Debug)]
pub struct Window {
    pub area: Area,
    pub kind: Kind,
    pub requests: u64,
    pub first: Duration,
    pub last: Duration,
    pub busy: Duration,
}

/// One request: when it was in flight (from the proxy's start), what it was, its answer.
#[derive(Clone, Debug)]
pub struct Span {
    pub start: Duration,
    pub end: Duration,
    pub kind: Kind,
    pub area: Area,
    pub status: u16,
    pub bytes_sent: u64,
    pub key: String,
}

impl Tally {
    fn area(&mut self, area: Area) -> &mut Counts {
        match area {
            Area::Results => &mut self.results,
            Area::Journal => &mut self.journal,
            Area::Kept => &mut self.kept,
            Area::OtherState => &mut self.other_state,
            Area::Other => &mut self.other,
        }
    }

    /// The journal, the kept answers and the leases together.
    pub fn state(&self) -> Counts {
        let mut all = self.journal;
        all.add(&self.kept);
        all.add(&self.other_state);
        all
    }

    /// The working-state requests grouped by area and kind, in that order: how many, the first
    /// one's start and the last one's end (from the proxy's start), and their summed time.
    pub fn state_windows(&self) -> Vec<Window> {
        let mut windows: Vec<Window> = Vec::new();
        for span in self.spans.iter().filter(|s| s.area.is_state()) {
            let at = windows.iter().position(|w| w.area == span.area && w.kind == span.kind);
            let window = match at {
                Some(i) => &mut windows[i],
                None => {
                    windows.push(Window {
                        area: span.area,
                        kind: span.kind,
                        requests: 0,
                        first: span.start,
                        last: span.end,
                        busy: Duration::ZERO,
                    });
                    windows.last_mut().expect("just pushed")
                }
            };
            window.requests += 1;
            window.first = window.first.min(span.start);
            window.last = window.last.max(span.end);
            window.busy += span.end - span.start;
        }
        windows.sort_by_key(|w| (w.area as u8, w.kind as u8));
        windows
    }

    /// Every request as CSV, in the order they started: when (milliseconds from the proxy's
    /// start), what, the answer's status, the bytes sent, the key or listed prefix.
    pub fn write_csv(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|s| s.start);
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "start_ms,end_ms,kind,area,status,bytes_sent,key")?;
        for s in spans {
            writeln!(
                out,
                "{:.1},{:.1},{},{:?},{},{},{}",
                s.start.as_secs_f64() * 1000.0,
                s.end.as_secs_f64() * 1000.0,
                s.kind.name(),
                s.area,
                s.status,
                s.bytes_sent,
                s.key
            )?;
        }
        out.flush()
    }

    /// How long at least one working-state request was in flight: less than their summed time
    /// when they overlap one another.
    pub fn state_in_flight(&self) -> Duration {
        let mut spans: Vec<(Duration, Duration)> =
            self.spans.iter().filter(|s| s.area.is_state()).map(|s| (s.start, s.end)).collect();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut current: Option<(Duration, Duration)> = None;
        for (start, end) in spans {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    total += e - s;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        total + current.map_or(Duration::ZERO, |(s, e)| e - s)
    }
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    started: Instant,
    tally: Mutex<Tally>,
}

/// The proxy; it stops when dropped.
pub struct S3Tally {
    endpoint: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl S3Tally {
    /// A proxy on a loopback port, forwarding to `upstream` (moto).
    pub async fn start(upstream: &str) -> Result<S3Tally, Box<dyn std::error::Error + Send + Sync>> {
        let client = forward::client()?;
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            started: Instant::now(),
            tally: Mutex::new(Tally::default()),
        });
        let app = Router::new().fallback(tally_and_forward).with_state(inner.clone());
        let (endpoint, server) = forward::serve(app).await?;
        Ok(S3Tally { endpoint, inner, server })
    }

    /// When it started: the spans' times count from here.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// "http://127.0.0.1:PORT".
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// What was counted so far.
    pub fn tally(&self) -> Tally {
        lock(&self.inner.tally).clone()
    }
}

impl Drop for S3Tally {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where a key or listed prefix lies: under `_state/` (at the start or after a `/`) is working
/// state.
fn area_of(key: &str) -> Area {
    let state = key.match_indices("_state/").map(|(i, _)| i).find(|&i| i == 0 || key.as_bytes()[i - 1] == b'/');
    let Some(at) = state else { return Area::Results };
    let rest = &key[at + "_state/".len()..];
    if rest.starts_with("journal/") {
        Area::Journal
    } else if rest.starts_with("answers/") {
        Area::Kept
    } else {
        Area::OtherState
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

/// The request's kind and area, from its method, path and query; and its decoded key (or the
/// listed prefix). A DeleteObjects (a bucket-level POST `?delete`) is a DELETE of the area its
/// first key is in, read from its body.
fn classify(method: &Method, path: &str, query: &str, body: &[u8]) -> (Kind, Area, String) {
    let (bucket, raw_key) = path.trim_start_matches('/').split_once('/').unwrap_or((path.trim_start_matches('/'), ""));
    let key = percent_decode_str(raw_key).decode_utf8_lossy();
    let has = |name: &str| query.split('&').any(|pair| pair.split('=').next() == Some(name));
    if bucket.is_empty() {
        return (Kind::Other, Area::Other, String::new());
    }
    if key.is_empty() {
        // Bucket-level: only a listing is the function's.
        return if *method == Method::GET && (has("list-type") || has("prefix")) {
            let prefix = query_value(query, "prefix").unwrap_or_default();
            (Kind::List, area_of(&prefix), prefix)
        } else if *method == Method::POST && has("delete") {
            let text = String::from_utf8_lossy(body);
            let first = text.split_once("<Key>").and_then(|(_, rest)| rest.split_once("</Key>")).map(|(key, _)| key);
            let key = first.unwrap_or_default().to_string();
            (Kind::Delete, area_of(&key), key)
        } else {
            (Kind::Other, Area::Other, String::new())
        };
    }
    let kind = match *method {
        Method::GET => Kind::Get,
        Method::PUT => Kind::Put,
        Method::POST if has("uploads") || has("uploadId") => Kind::Put,
        Method::DELETE => Kind::Delete,
        Method::HEAD => Kind::Head,
        _ => Kind::Other,
    };
    (kind, area_of(&key), key.into_owned())
}

/// Records a request's time when dropped: when moto's answer has been passed on in full, or
/// the function dropped the connection.
struct Finish {
    inner: Arc<Inner>,
    arrived: Instant,
    span: Option<Span>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let now = Instant::now();
        let Some(mut span) = self.span.take() else { return };
        span.start = self.arrived - self.inner.started;
        span.end = now - self.inner.started;
        let mut tally = lock(&self.inner.tally);
        tally.area(span.area).busy += now - self.arrived;
        tally.spans.push(span);
    }
}

async fn tally_and_forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match forward::read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (kind, area, key) = classify(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or_default(), &body);
    let mut span = Span { start: Duration::ZERO, end: Duration::ZERO, kind, area, status: 0, bytes_sent: 0, key };
    span.bytes_sent = body.len() as u64;
    {
        let mut tally = lock(&inner.tally);
        let counts = tally.area(area);
        counts.count(kind);
        counts.bytes_sent += body.len() as u64;
    }
    let upstream = match forward::send(&inner.client, &inner.upstream, &parts, body).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    let status = upstream.status();
    if !status.is_success() {
        lock(&inner.tally).area(area).not_ok += 1;
    }
    span.status = status.as_u16();
    let finish = Finish { inner: inner.clone(), arrived, span: Some(span) };
    let head = forward::answer(&upstream, Body::empty());
    // The answer streams through; `finish` goes with the stream and records the time once the
    // last chunk is passed on (or the function stops reading).
    let chunks = futures::stream::unfold((Some(upstream), finish), |(upstream, finish)| async move {
        let mut upstream = upstream?;
        match upstream.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), (Some(upstream), finish))),
            Ok(None) => None,
            Err(e) => Some((Err(e), (None, finish))),
        }
    });
    let mut response = head;
    *response.body_mut() = Body::from_stream(chunks);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_kind_and_area() {
        let c = |m: Method, p: &str, q: &str| {
            let (kind, area, _) = classify(&m, p, q, b"");
            (kind, area)
        };
        assert_eq!(c(Method::GET, "/b/incoming/c.csv", ""), (Kind::Get, Area::Results));
        assert_eq!(c(Method::PUT, "/b/enriched/c.csv", "partNumber=3&uploadId=x"), (Kind::Put, Area::Results));
        assert_eq!(c(Method::POST, "/b/enriched/c.csv", "uploads"), (Kind::Put, Area::Results));
        assert_eq!(c(Method::HEAD, "/b/enriched/c.csv.summary.json", ""), (Kind::Head, Area::Results));
        assert_eq!(c(Method::PUT, "/b/enriched/_state/journal/c.csv/ab/s-1.json", ""), (Kind::Put, Area::Journal));
        assert_eq!(c(Method::DELETE, "/b/enriched%2F_state%2Fjournal%2Fx", ""), (Kind::Delete, Area::Journal));
        assert_eq!(c(Method::PUT, "/b/enriched/_state/answers/c.csv.jsonl.gz", ""), (Kind::Put, Area::Kept));
        assert_eq!(c(Method::PUT, "/b/enriched/_state/leases/c.csv.lease", ""), (Kind::Put, Area::OtherState));
        assert_eq!(
            c(Method::GET, "/b", "list-type=2&prefix=enriched%2F_state%2Fjournal%2Fc.csv%2F"),
            (Kind::List, Area::Journal)
        );
        assert_eq!(c(Method::GET, "/b", "list-type=2&prefix=enriched%2F"), (Kind::List, Area::Results));
        assert_eq!(c(Method::GET, "/b/notes/my_state/x", ""), (Kind::Get, Area::Results));
        assert_eq!(c(Method::POST, "/", ""), (Kind::Other, Area::Other));
        let delete_objects = b"<Delete><Object><Key>enriched/_state/journal/c.csv/ab/s-1.json</Key></Object></Delete>";
        let (kind, area, _) = classify(&Method::POST, "/b", "delete", delete_objects);
        assert_eq!((kind, area), (Kind::Delete, Area::Journal));
    }

    #[test]
    fn working_state_time_merges_overlapping_spans_and_groups_them() {
        let s = |a: u64, b: u64, area: Area| Span {
            start: Duration::from_millis(a),
            end: Duration::from_millis(b),
            kind: Kind::Put,
            area,
            status: 200,
            bytes_sent: 0,
            key: String::new(),
        };
        let spans = vec![
            s(10, 20, Area::Journal),
            s(0, 5, Area::Kept),
            s(15, 30, Area::Journal),
            s(40, 41, Area::OtherState),
            s(0, 100, Area::Results),
        ];
        let tally = Tally { spans, ..Tally::default() };
        assert_eq!(tally.state_in_flight(), Duration::from_millis(26));
        let windows: Vec<(Area, u64, u128, u128, u128)> = tally
            .state_windows()
            .iter()
            .map(|w| (w.area, w.requests, w.first.as_millis(), w.last.as_millis(), w.busy.as_millis()))
            .collect();
        assert_eq!(
            windows,
            [(Area::Journal, 2, 10, 30, 25), (Area::Kept, 1, 0, 5, 5), (Area::OtherState, 1, 40, 41, 1)]
        );
    }
}
