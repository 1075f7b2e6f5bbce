//! Files too big for one invocation run on Step Functions (template.yaml, `LargeFileWorkflow`).
//!
//! 1. **Hand-off** (the S3-triggered invocation): pass 1 as usual (mapping, validation, unique
//!    companies), then the file's unique companies, mapped fields only, are staged as JSON Lines
//!    and a Standard execution starts.
//! 2. **Batches**: a Distributed Map reads the staged companies (ItemReader, JSONL), batches them
//!    (ItemBatcher) and invokes this function on each batch, at most MaxConcurrency at once, each
//!    paced at its share of LEADSPACE_TPS. A batch writes its answers to S3.
//! 3. **Assemble**: one invocation reads the original file again, in order, and writes the
//!    output and the summary from the answer journal, exactly as an inline run does.
//!
//! The workflow and inline runs share the version's answer journal: the hand-off collects what
//! an earlier run left in flight and carries the previous version's kept answers into the
//! journal, each batch journals its bulks as they are bought (in a folder of its own, which a
//! retried batch reads back), and the last step reads the whole journal. An execution that
//! fails in its last step leaves the journal, so the next attempt buys only what is missing.
//!
//! Staging unique companies rather than rows means no company is sent twice across batches,
//! every input the inline path reads (gzip, UTF-16, Windows-1252, any delimiter) works, and no
//! unmapped customer field passes through Step Functions.

pub mod assemble;
pub mod batch;
pub mod hand_off;
pub mod input;
pub mod trust;

use std::collections::HashSet;

use async_trait::async_trait;

use crate::config::Config;
use crate::error::JobError;
use crate::pipeline::StepFunctions;
use crate::pipeline::answers::book::AnswerBook;
use crate::pipeline::answers::journal::Journal;
use crate::pipeline::flow::LargeFiles;
use crate::pipeline::job::{Job, JobReport};
use crate::pipeline::run::Run;
use crate::pipeline::scan::Scan;
use crate::pipeline::summary::LeadspaceCounts;

/// Whether a file goes to the workflow rather than being enriched inline.
pub fn is_large(config: &Config, size: u64, rows: u64) -> bool {
    config.workflow.as_ref().is_some_and(|w| size > w.min_bytes || rows > w.min_rows)
}

/// The workflow as the run's skeleton (`pipeline::flow`) uses it.
pub struct Workflow<'a> {
    pub config: &'a Config,
    pub step_functions: &'a StepFunctions,
}

#[async_trait]
impl LargeFiles for Workflow<'_> {
    fn is_large(&self, size: u64, rows: u64) -> bool {
        is_large(self.config, size, rows)
    }

    async fn running(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<String>, JobError> {
        hand_off::running_execution(self.step_functions, bucket, key, etag).await
    }

    fn being_enriched_by(&self, job: &Job, execution: String) -> JobReport {
        hand_off::being_enriched_by(job, execution)
    }

    async fn hand_off(
        &self,
        run: &Run<'_>,
        scan: &Scan,
        journal: &Journal,
        book: AnswerBook,
        held: &HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<JobReport, JobError> {
        hand_off::HandOff { run, scan, journal }.start(self.step_functions, book, held, cost).await
    }
}

#[cfg(test)]
mod whole_runs;
