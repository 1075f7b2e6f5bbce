//! Step 1, the hand-off: pass 1 has run as usual; the companies still without an answer are
//! staged as JSON Lines (mapped fields only) and a Standard execution starts, named so that a
//! redelivered event finds the one already running.

use std::collections::HashSet;

use super::input::{
    BULKS_PER_BATCH, ExecutionInput, PartStats, RUNNING_RECORD, RunningRecord, StagedCompany, internal_error,
    write_stats,
};
use crate::chain::error_chain;
use crate::company::Companies;
use crate::enrichment::Enrichment;
use crate::error::JobError;
use crate::pipeline::answers::book::AnswerBook;
use crate::pipeline::answers::journal::Journal;
use crate::pipeline::answers::journal::now_seconds;
use crate::pipeline::job::{Job, JobReport, Outcome};
use crate::pipeline::paths::{state_prefix, work_prefix};
use crate::pipeline::progress::Source;
use crate::pipeline::run::Run;
use crate::pipeline::scan::Scan;
use crate::pipeline::summary::{LeadspaceCounts, RunStatus, now_utc};
use crate::pipeline::{App, StepFunctions};
use crate::storage::{OutputUpload, PART_SIZE};

/// `<file name, as far as the execution name allows>-<digest of bucket, key and ETag>-<attempt>`:
/// readable in the console, the same for a redelivered event, new for a new attempt.
pub fn execution_base_name(bucket: &str, key: &str, etag: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(bucket).chain_update([0]).chain_update(key).chain_update([0]).chain_update(etag);
    let digest: String = digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let file = key.rsplit('/').next().unwrap_or(key);
    let readable: String = file
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(40)
        .collect();
    format!("{readable}-{digest}")
}

/// Attempts per file version before a hand-off gives up: each finished (partial or failed)
/// execution of the same version takes a number.
const MAX_ATTEMPTS: u32 = 50;

pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!("{}:{name}", state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
}

/// A Step Functions call that failed: worth Lambda's retry when throttled, unavailable or cut
/// off; not when denied or misconfigured (the on-failure queue and the alarm take over).
fn workflow_error<E>(
    action: &'static str,
    error: aws_sdk_sfn::error::SdkError<E, aws_sdk_sfn::config::http::HttpResponse>,
) -> JobError
where
    E: std::error::Error + aws_sdk_sfn::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    let transient = match &error {
        aws_sdk_sfn::error::SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl") || code.contains("Limit") || service.raw().status().is_server_error()
        }
        _ => true,
    };
    JobError::Workflow { action, transient, source: Box::new(error) }
}

pub enum Slot {
    /// No execution has this name yet.
    Free(String),
    /// An execution for this file version is running (a redelivered event).
    Running(String),
    /// Every attempt's name is taken by an execution that has ended.
    Exhausted,
}

/// The name for a new execution of this file version, or the one already running.
pub async fn find_slot(workflow: &StepFunctions, base: &str) -> Result<Slot, JobError> {
    use aws_sdk_sfn::types::ExecutionStatus;
    for attempt in 1..=MAX_ATTEMPTS {
        let name = format!("{base}-{attempt}");
        let arn = execution_arn(&workflow.state_machine_arn, &name);
        match workflow.client.describe_execution().execution_arn(&arn).send().await {
            Ok(found) if found.status == ExecutionStatus::Running => return Ok(Slot::Running(arn)),
            Ok(_) => continue,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) => {
                return Ok(Slot::Free(name));
            }
            Err(error) => return Err(workflow_error("describe an execution", error)),
        }
    }
    Ok(Slot::Exhausted)
}

/// The execution enriching this file version, if one is running: it owns the version until it
/// ends, since its last step builds the output from the journal as its batches left it.
pub async fn running_execution(
    workflow: &StepFunctions,
    bucket: &str,
    key: &str,
    etag: &str,
) -> Result<Option<String>, JobError> {
    match find_slot(workflow, &execution_base_name(bucket, key, etag)).await? {
        Slot::Running(arn) => Ok(Some(arn)),
        Slot::Free(_) | Slot::Exhausted => Ok(None),
    }
}

/// The executions whose hand-off recorded a file of `source_bucket` (results in
/// `output_bucket`), each with whether it is running: `None` when Step Functions cannot say.
pub async fn recorded_executions(
    app: &App,
    source_bucket: &str,
) -> Result<Vec<(RunningRecord, Option<bool>)>, JobError> {
    let Some(step_functions) = &app.step_functions else { return Ok(Vec::new()) };
    let (store, bucket) = (app.store.as_ref(), app.config.output_bucket_for(source_bucket));
    let work = format!("{}work/", state_prefix(&app.config));
    let mut found = Vec::new();
    for listed in store.list(bucket, &work).await?.into_iter().filter(|o| o.key.ends_with(RUNNING_RECORD)) {
        let Some(body) = store.get_small(bucket, &listed.key).await? else { continue };
        let Ok(record) = serde_json::from_slice::<RunningRecord>(&body) else { continue };
        if record.source.bucket != source_bucket {
            continue;
        }
        let described = step_functions.client.describe_execution().execution_arn(&record.execution_arn).send().await;
        let running = match described {
            Ok(execution) => Some(execution.status == aws_sdk_sfn::types::ExecutionStatus::Running),
            Err(error) => {
                tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&error), "could not describe a recorded execution");
                None
            }
        };
        found.push((record, running));
    }
    Ok(found)
}

/// What a delivery of a version that an execution is enriching answers: it is certainly being
/// done.
pub fn being_enriched_by(job: &Job, arn: String) -> JobReport {
    tracing::info!("a workflow execution for this file version is already running");
    JobReport {
        message: Some(format!("already being enriched by the Step Functions execution {arn}")),
        execution_arn: Some(arn),
        ..JobReport::new(job, Outcome::Skipped)
    }
}

/// A large file leaving the inline path for the workflow.
pub struct HandOff<'r, 'a> {
    pub run: &'r Run<'a>,
    pub scan: &'r Scan,
    pub journal: &'r Journal,
}

/// What the hand-off left in S3 for an execution named `input.run`.
pub struct Staged {
    pub input: ExecutionInput,
    /// Companies staged for the batches.
    pub companies: u64,
    /// Companies already answered (earlier runs, the previous version).
    pub known: u64,
}

impl HandOff<'_, '_> {
    /// Stages the companies still without an answer (and not in a bulk an earlier run has in
    /// flight) for the execution `name`: the previous version's answers go into the journal
    /// (the last step reads only the journal), `cost` (what collecting earlier bulks took) into
    /// the figures, the rest into the staged companies. Nothing here is Step Functions'.
    pub async fn stage(
        &self,
        name: &str,
        book: AnswerBook,
        held: &HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<Staged, JobError> {
        let (run, scan) = (self.run, self.scan);
        let (app, job) = (run.app, run.job);
        run.ensure_lease()?;
        let work = work_prefix(&app.config, name);
        let input = ExecutionInput {
            action: "assemble".into(),
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            etag: run.meta.etag.clone(),
            run: name.to_string(),
            work_bucket: run.paths.bucket.clone(),
            companies_key: format!("{work}companies.jsonl"),
            answers_prefix: format!("{work}batches/"),
            journal_prefix: self.journal.prefix().to_string(),
            batch_size: (app.config.bulk_size * BULKS_PER_BATCH) as u64,
            max_concurrency: u64::from(app.config.workflow_concurrency()),
            field_mapping: scan.mapping.description().to_json(),
            rows: scan.rows,
            companies: scan.companies.len() as u64,
            map_error: None,
        };

        let carried: Vec<(u128, Enrichment, i64)> = book
            .previous_version_companies()
            .iter()
            .filter_map(|&company| {
                let (answer, bought_at) = book.answer(company)?;
                Some((scan.companies.digest(company), answer.clone(), bought_at))
            })
            .collect();
        if !carried.is_empty() {
            self.journal.carry_over(&carried).await?;
        }
        if cost.requests > 0 {
            let stats = PartStats { leadspace: cost, cache: None, stopped: None, answered: 0 };
            write_stats(
                app.store.as_ref(),
                &input.work_bucket,
                &format!("{}hand-off.json", input.answers_prefix),
                &stats,
            )
            .await?;
        }

        let mut staged = 0_u64;
        let mut upload =
            OutputUpload::new(app.store.clone(), &input.work_bucket, &input.companies_key, "application/x-ndjson");
        let mut lines = Vec::new();
        for company in book.missing().into_iter().filter(|c| !held.contains(c)) {
            let line = StagedCompany::new(company as u32, scan.companies.query(company));
            serde_json::to_writer(&mut lines, &line).map_err(|e| internal_error("stage the companies", e))?;
            lines.push(b'\n');
            staged += 1;
            if lines.len() >= PART_SIZE {
                upload.write(std::mem::take(&mut lines)).await?;
            }
        }
        upload.finish(lines).await?;
        Ok(Staged { input, companies: staged, known: book.known() as u64 })
    }

    /// Stages the companies and starts an execution of `step_functions` for them, unless one
    /// for this file version is running already.
    pub async fn start(
        &self,
        step_functions: &StepFunctions,
        book: AnswerBook,
        held: &HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<JobReport, JobError> {
        let run = self.run;
        let (app, job) = (run.app, run.job);
        let base = execution_base_name(&job.bucket, &job.key, &run.meta.etag);
        let name = match find_slot(step_functions, &base).await? {
            Slot::Free(name) => name,
            Slot::Running(arn) => return Ok(being_enriched_by(job, arn)),
            Slot::Exhausted => {
                return Err(JobError::Workflow {
                    action: "start an execution",
                    transient: false,
                    source: format!(
                        "this file version already has {MAX_ATTEMPTS} executions; upload it again to start over"
                    )
                    .into(),
                });
            }
        };
        let staged = self.stage(&name, book, held, cost).await?;
        let input = &staged.input;
        let payload = serde_json::to_string(input).map_err(|e| internal_error("start an execution", e))?;
        let started = step_functions
            .client
            .start_execution()
            .state_machine_arn(&step_functions.state_machine_arn)
            .name(&name)
            .input(payload)
            .send()
            .await
            .map_err(|e| workflow_error("start an execution", e))?;
        // Best effort: without it, `status` shows the file's last summary while the batches run.
        let record = RunningRecord {
            source: Source { bucket: job.bucket.clone(), key: job.key.clone() },
            execution_arn: started.execution_arn.clone(),
            answers_prefix: input.answers_prefix.clone(),
            rows: input.rows,
            companies_total: input.companies,
            companies_known: staged.known,
            started_at: now_utc(),
            started_at_epoch_seconds: now_seconds(),
        };
        let record_key = format!("{}{RUNNING_RECORD}", work_prefix(&app.config, &name));
        let written = match serde_json::to_vec(&record) {
            Ok(body) => app.store.put(&input.work_bucket, &record_key, body, "application/json").await.err(),
            Err(_) => None,
        };
        if let Some(error) = written {
            tracing::warn!(error = %error_chain(&error), "could not record the running execution for status");
        }
        Ok(handed_off(run, &staged, started.execution_arn))
    }
}

/// What the hand-off answers: the file is being enriched by `execution_arn`.
pub fn handed_off(run: &Run<'_>, staged: &Staged, execution_arn: String) -> JobReport {
    let input = &staged.input;
    tracing::info!(
        companies = staged.companies,
        known = staged.known,
        rows = input.rows,
        batch_size = input.batch_size,
        max_concurrency = input.max_concurrency,
        "handed to the Step Functions workflow"
    );
    JobReport {
        message: Some(format!(
            "{} rows and {} companies handed to the Step Functions execution {execution_arn}; the output and summary \
             are written when it finishes",
            input.rows, staged.companies
        )),
        execution_arn: Some(execution_arn),
        status: Some(RunStatus::Running),
        output_key: Some(run.paths.output_key.clone()),
        summary_key: Some(run.paths.summary_key.clone()),
        ..JobReport::new(run.job, Outcome::Enriched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_valid_stable_and_distinct_per_version() {
        let a = execution_base_name("b", "incoming/very long name with spaces & symbols (2026).csv.gz", "\"e1\"");
        assert!(a.len() + 3 <= 80 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        assert_eq!(
            a,
            execution_base_name("b", "incoming/very long name with spaces & symbols (2026).csv.gz", "\"e1\"")
        );
        assert_ne!(
            a,
            execution_base_name("b", "incoming/very long name with spaces & symbols (2026).csv.gz", "\"e2\"")
        );
        assert_eq!(
            execution_arn("arn:aws:states:eu-west-1:1:stateMachine:big", "x-1"),
            "arn:aws:states:eu-west-1:1:execution:big:x-1"
        );
    }
}
