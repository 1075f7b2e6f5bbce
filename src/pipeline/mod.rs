//! The steps of one run, one module each, in the order a run takes them:
//!
//! `paths` (where results and state go) → `lease` (one invocation per object) → `scan` (pass 1:
//! mapping, unique companies) → `answers` (the journal, kept answers, the cache, then Leadspace
//! through `answers::enrich`, every purchase in `answers::journal` as it arrives, what is known
//! in `answers::book`, `answers::kept` for the next version) → `output` (pass 2, rows with their
//! answers) → `close` (the `summary`, last; a failed summary; a dry run's estimate).
//!
//! Two passes keep memory proportional to the number of unique companies, not rows, and let the
//! mode and bulk plan be chosen knowing how many companies there are. `app` is what a run is
//! given, `run` what its steps share, `job` what a run is asked and what it reports. The order
//! itself is `flow`'s, for every way a file is run: inline, handed to the large-file workflow,
//! or assembled from what the workflow's batches bought.

pub mod answers;
mod app;
pub mod close;
pub mod flow;
pub mod job;
pub mod lease;
pub mod output;
pub mod paths;
pub mod progress;
pub mod report;
pub mod run;
pub mod scan;
pub mod summary;

pub use app::{App, StepFunctions};
pub use job::{Estimate, Job, JobReport, Outcome};
pub use paths::OutputPaths;
