//! Fault and behaviour knobs; changeable at runtime through `Emulator::set_knobs`.

/// Everything a test or the demo can tune about the emulator's behaviour.
///
/// Build with struct-update syntax so new knobs do not break callers:
/// `Knobs { tps_limit: Some(5), ..Knobs::default() }`.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Bearer token accepted (`Authorization: Bearer <token>`, exact match). Default `"test-token"`.
    pub token: String,
    /// Delay added before every answer, in milliseconds. Default 0.
    pub latency_ms: u64,
    /// Requests admitted per rolling 1-second window (all routes; polls too unless
    /// `polls_count` is false) before 429. Throttled requests do not count towards the window.
    /// Default `None` (no limit). `Emulator::set_tps_limit` changes it while running.
    pub tps_limit: Option<u32>,
    /// Whether bulk polls (GET of a bulk's results) count against `tps_limit`. `false` stands
    /// for a contract that excludes polls: they are never answered 429 and do not enter the
    /// window. Default `true` (the documented contract counts every request).
    pub polls_count: bool,
    /// Credit balance; `None` is unlimited. Each record answered "Company Enriched" costs one
    /// credit. A single request at balance 0, or a bulk larger than the balance, gets 427.
    pub credits: Option<u64>,
    /// Probability (0..=1) of answering 500 or 503 to an authorised request. Default 0.
    pub server_error_rate: f64,
    /// Probability (0..=1) that a record of a finished bulk comes back as error 1100. Default 0.
    pub record_error_rate: f64,
    /// A bulk's poll answers 204 until this many milliseconds after submission (plus
    /// `bulk_ready_per_record_us` per record). Default 0.
    pub bulk_ready_after_ms: u64,
    /// Added to a bulk's readiness for each of its records, in microseconds: a bulk of n
    /// records answers 204 until `bulk_ready_after_ms + n * bulk_ready_per_record_us` after
    /// submission, as a service whose time grows with the bulk. Default 0.
    pub bulk_ready_per_record_us: u64,
    /// Largest bulk accepted; more records is a 400. Default 500 (the documented limit).
    pub max_bulk_records: usize,
    /// Seed of the RNG behind fault injection, ids and result shuffling. Default 42.
    pub seed: u64,
    /// The first this-many bulk jobs to be polled are lost: their poll answers 404, as when
    /// Leadspace drops a job. Default 0.
    pub lose_first_bulks: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            token: "test-token".to_owned(),
            latency_ms: 0,
            tps_limit: None,
            polls_count: true,
            credits: None,
            server_error_rate: 0.0,
            record_error_rate: 0.0,
            bulk_ready_after_ms: 0,
            bulk_ready_per_record_us: 0,
            max_bulk_records: 500,
            seed: 42,
            lose_first_bulks: 0,
        }
    }
}
