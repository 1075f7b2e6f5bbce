//! The context the steps of one run share: the app, the job, the object's version, where its
//! results go, and the clock.

use super::App;
use super::job::Job;
use super::lease::LeaseWatch;
use super::paths::OutputPaths;
use super::summary::now_utc;
use crate::error::{JobError, RunError};
use crate::leadspace::CallContext;
use crate::records::Format;
use crate::storage::ObjectMeta;

pub struct Run<'a> {
    pub app: &'a App,
    pub job: &'a Job,
    pub meta: ObjectMeta,
    pub paths: OutputPaths,
    /// The format's name for the summary ("" when the name says no supported format).
    pub format_label: String,
    pub started_at: String,
    /// For the phase timings in the log.
    clock: std::time::Instant,
    /// The Step Functions execution this run assembles, for a large file.
    pub execution: Option<String>,
    /// Whether the run still holds the object's lease (never lost until a lease is taken).
    pub lease: LeaseWatch,
}

impl<'a> Run<'a> {
    /// A run starting now; `execution` names the workflow it assembles, for a large file.
    pub fn new(app: &'a App, job: &'a Job, meta: ObjectMeta, paths: OutputPaths, execution: Option<String>) -> Self {
        Run {
            app,
            job,
            meta,
            paths,
            format_label: Format::detect(&job.key).map(|f| f.label().to_string()).unwrap_or_default(),
            started_at: now_utc(),
            clock: std::time::Instant::now(),
            execution,
            lease: LeaseWatch::default(),
        }
    }

    /// An error to retry when the lease was lost: another delivery owns the object now, and
    /// what this run would write could replace what that one writes.
    pub fn ensure_lease(&self) -> Result<(), JobError> {
        if self.lease.is_lost() {
            return Err(JobError::Busy {
                bucket: self.job.bucket.clone(),
                key: self.job.key.clone(),
                why: "this run lost its lease to another invocation before it could write its results",
            });
        }
        Ok(())
    }

    /// The Leadspace calls' context: until `stop_at`, and only while the lease is held.
    pub fn call_context(&self, stop_at: Option<tokio::time::Instant>) -> CallContext {
        CallContext { stats: std::sync::Arc::default(), stop_at, lease_lost: Some(self.lease.flag()) }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The file's format, from its name.
    pub fn format(&self) -> Result<Format, RunError> {
        Format::detect(&self.job.key).map_err(|unsupported| RunError::Unusable(unsupported.to_string()))
    }
}
