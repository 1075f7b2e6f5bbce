//! The context the steps of one run share: the app, the job, the object's version, where its
//! results go, and the clock.

use super::App;
use super::job::Job;
use super::paths::OutputPaths;
use super::summary::now_utc;
use crate::error::RunError;
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
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The file's format, from its name.
    pub fn format(&self) -> Result<Format, RunError> {
        Format::detect(&self.job.key).map_err(|unsupported| RunError::Unusable(unsupported.to_string()))
    }
}
