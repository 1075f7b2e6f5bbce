//! A loopback HTTP emulator of the Leadspace enrichment API (single, bulk, polling), enforcing
//! the contract in `leadspace-api.md` with fault knobs (latency, throttling, auth, credits,
//! 5xx, per-record errors). Used in-process by integration tests and as a binary by the demo.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use leadspace_emulator::{Emulator, Knobs};
//! let emu = Emulator::start(Knobs { tps_limit: Some(30), ..Knobs::default() }).await?;
//! let url = emu.base_url(); // point the client here, token "test-token"
//! # drop(url);
//! # Ok(()) }
//! ```

mod firmographics;
mod knobs;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use firmographics::firmographics_for;
pub use knobs::Knobs;
pub use state::{Arrival, Second, Stats, per_second};

use state::{Shared, State, lock};

/// A running emulator. Dropping it stops the server (in-flight requests finish).
pub struct Emulator {
    shared: Shared,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Starts on `127.0.0.1` with an OS-assigned port.
    pub async fn start(knobs: Knobs) -> std::io::Result<Emulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), knobs).await
    }

    /// Starts on `addr` (port 0 picks a free port). Returns once the socket is bound.
    pub async fn start_on(addr: SocketAddr, knobs: Knobs) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared: Shared = Arc::new(Mutex::new(State::new(knobs)));
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("leadspace-emulator: server stopped: {e}");
            }
        });
        Ok(Emulator { shared, addr, task })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared).stats.clone()
    }

    /// Every record object received (single bodies, each element of bulk `data`), verbatim,
    /// in arrival order; rejected requests included once their JSON parsed.
    pub fn received_records(&self) -> Vec<Value> {
        lock(&self.shared).received.clone()
    }

    /// A snapshot of the current knobs (e.g. the remaining `credits`).
    pub fn knobs(&self) -> Knobs {
        lock(&self.shared).knobs.clone()
    }

    /// Changes knobs at runtime (rotate the token, set credits, ...). Changing `seed` reseeds
    /// the RNG.
    pub fn set_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        let mut s = lock(&self.shared);
        let old_seed = s.knobs.seed;
        f(&mut s.knobs);
        if s.knobs.seed != old_seed {
            s.rng = StdRng::seed_from_u64(s.knobs.seed);
        }
    }

    /// Changes the TPS limit while running (`None`: no limit), as when a throttled account's
    /// limit is raised under a warm function. Requests already in the window still count.
    pub fn set_tps_limit(&self, limit: Option<u32>) {
        lock(&self.shared).knobs.tps_limit = limit;
    }

    /// Every request so far as the TPS gate saw it (when, 429 or not, poll or not), in order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.shared).arrivals.clone()
    }

    /// Requests per second from `since` (index 0 is the first second), admitted and 429 apart.
    pub fn requests_per_second(&self, since: Instant) -> Vec<Second> {
        per_second(&lock(&self.shared).arrivals, since)
    }

    /// Turns the one-line-per-request stderr log on or off (off by default; the binary turns
    /// it on). Lines carry method, path, status and record count, never bodies.
    pub fn set_request_logging(&self, on: bool) {
        lock(&self.shared).log_requests = on;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Aborting the accept loop closes the listener; axum then gracefully closes connections.
        self.task.abort();
    }
}
