//! Passing one HTTP request on to moto and its answer back, for the two proxies that stand in
//! front of it: the fault-injecting one of the integration tests (`S3Faults`) and the request
//! tally of the benchmark (`S3Tally`). What a proxy must not copy, and how, is decided here once.

use std::sync::{Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::serve::ListenerExt;

/// A proxy's own lock: a test that panicked while holding it leaves what it counted readable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The client a proxy forwards with: no proxy of its own, bodies passed on as they are.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().no_proxy().no_gzip().no_brotli().no_deflate().no_zstd().build()
}

/// Serves `app` on a loopback port; the endpoint ("http://127.0.0.1:PORT") and the server task.
pub async fn serve(app: Router) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Small requests and answers go out at once rather than wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), server))
}

/// Headers that describe one connection, not the message: never copied across the proxy.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Sends the request (`parts`, its whole `body`) to `upstream`; a proxy error is a response
/// of its own.
pub async fn send(
    client: &reqwest::Client,
    upstream: &str,
    parts: &Parts,
    body: Bytes,
) -> Result<reqwest::Response, Response> {
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        // reqwest sends a Host naming moto and the buffered body's length; `expect:
        // 100-continue` was answered here, where the whole body was read.
        let lower = name.as_str();
        if !is_hop_by_hop(lower) && !matches!(lower, "host" | "content-length" | "expect") {
            headers.append(name.clone(), value.clone());
        }
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{upstream}{path_and_query}");
    client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| plain(StatusCode::BAD_GATEWAY, format!("the proxy could not reach {url}: {e}")))
}

/// The upstream answer's status and headers, for the response passed back.
pub fn answer(upstream: &reqwest::Response, body: Body) -> Response {
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        // Content-Length is kept: on HEAD it is the object's size, not that of the empty body.
        if !is_hop_by_hop(name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut response = Response::new(body);
    *response.status_mut() = upstream.status();
    *response.headers_mut() = headers;
    response
}

/// The whole request body, or the proxy's answer when it cannot be read.
pub async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| plain(StatusCode::BAD_REQUEST, format!("the proxy could not read the request body: {e}")))
}

pub fn plain(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}
