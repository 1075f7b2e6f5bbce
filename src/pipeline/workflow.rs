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

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::answer::{AnswerBook, Answers, answer_companies};
use super::journal::Journal;
use super::lease::{Acquired, Lease};
use super::paths::work_prefix;
use super::summary::LeadspaceCounts;
use super::{App, Enriched, Job, JobReport, Outcome, OutputPaths, Problem, Run, Scan, counts};
use crate::cache::CacheCounts;
use crate::company::CompanyQuery;
use crate::company::{Companies, CompanyTable};
use crate::config::Config;
use crate::error::JobError;
use crate::leadspace::{CallContext, CallStats, LeadspaceError};
use crate::mapping::FieldMapping;
use crate::records::Format;
use crate::storage::{ObjectStore, OutputUpload, PART_SIZE};

pub struct Workflow {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

/// Whether a file goes to the workflow rather than being enriched inline.
pub fn is_large(config: &Config, size: u64, rows: u64) -> bool {
    config.workflow.as_ref().is_some_and(|w| size > w.min_bytes || rows > w.min_rows)
}

/// Companies per batch: a few bulks' worth, so that a batch is a few minutes at most.
const BULKS_PER_BATCH: usize = 4;
/// Step Functions passes at most 256 KiB to a Lambda function; a batch stays well below it.
pub const MAX_BATCH_INPUT_BYTES: u64 = 200 * 1024;

/// The execution's input, which is also the assemble step's payload (the Map passes its input
/// through). Serialised field names are the state machine's paths: keep them in step with
/// template.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInput {
    /// Always "assemble".
    pub action: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    /// The execution's name, unique per file version and attempt.
    pub run: String,
    /// Where the staged companies, the batches' figures and the answer journal are: the output
    /// bucket.
    pub work_bucket: String,
    pub companies_key: String,
    /// Where each batch writes its figures (requests, cache, why it stopped).
    pub answers_prefix: String,
    /// The answer journal of this version of the file; each batch journals in a folder of it.
    pub journal_prefix: String,
    /// For the ItemBatcher (MaxItemsPerBatchPath) and the Map (MaxConcurrencyPath).
    pub batch_size: u64,
    pub max_concurrency: u64,
    /// The mapping pass 1 resolved: the assemble step reads the file with exactly this one, so
    /// a deploy that changes FIELD_MAPPING mid-run cannot renumber the companies.
    pub field_mapping: Value,
    /// What pass 1 found; the assemble step refuses a file that reads differently.
    pub rows: u64,
    pub companies: u64,
    /// Added by the Map's Catch when a batch failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_error: Option<MapError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl MapError {
    /// What the summary says: the batch's own message when the cause is a Lambda error.
    fn describe(&self) -> String {
        let message = serde_json::from_str::<Value>(&self.cause)
            .ok()
            .and_then(|cause| cause.get("errorMessage").and_then(Value::as_str).map(str::to_string));
        match message {
            Some(message) => format!("the workflow stopped before every batch was enriched: {message}"),
            None => format!("the workflow stopped before every batch was enriched ({})", self.error),
        }
    }
}

/// One staged company: a line of the JSON Lines the Map reads, and an item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedCompany {
    /// The company's number in the file (first-seen order), how answers find their rows.
    pub company: u32,
    pub company_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

impl StagedCompany {
    fn new(company: u32, q: CompanyQuery) -> Self {
        StagedCompany {
            company,
            company_name: q.name,
            website: q.website,
            country: q.country,
            state: q.state,
            city: q.city,
            street: q.street,
            postal_code: q.postal_code,
        }
    }

    fn query(self) -> CompanyQuery {
        CompanyQuery {
            name: self.company_name,
            website: self.website,
            country: self.country,
            state: self.state,
            city: self.city,
            street: self.street,
            postal_code: self.postal_code,
        }
    }
}

/// What the Map hands each invocation: `Items` from the ItemReader, `BatchInput` from the
/// ItemBatcher.
#[derive(Debug, Deserialize)]
pub struct BatchEvent {
    #[serde(rename = "BatchInput")]
    pub input: BatchInput,
    #[serde(rename = "Items")]
    pub items: Vec<StagedCompany>,
}

#[derive(Debug, Deserialize)]
pub struct BatchInput {
    pub work_bucket: String,
    pub answers_prefix: String,
    pub journal_prefix: String,
    /// The execution's name: answers its batches bought are this run's, not reused ones.
    pub run: String,
}

/// What a batch (or the hand-off) cost, in `answers_prefix`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartStats {
    leadspace: LeadspaceCounts,
    #[serde(default)]
    cache: Option<CacheCounts>,
    /// Why the batch stopped early: the summary's reason, since a Distributed Map that fails
    /// reports only States.ExceedToleratedFailureThreshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
}

/// `<file name, as far as the execution name allows>-<digest of bucket, key and ETag>-<attempt>`:
/// readable in the console, the same for a redelivered event, new for a new attempt.
fn execution_base_name(bucket: &str, key: &str, etag: &str) -> String {
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

fn execution_arn(state_machine_arn: &str, name: &str) -> String {
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

/// A failure of ours to build or read what the workflow passes around: never transient.
fn internal_error(action: &'static str, error: impl std::error::Error + Send + Sync + 'static) -> JobError {
    JobError::Workflow { action, transient: false, source: Box::new(error) }
}

enum Slot {
    /// No execution has this name yet.
    Free(String),
    /// An execution for this file version is running (a redelivered event).
    Running(String),
}

/// The name for a new execution of this file version, or the one already running.
async fn find_slot(workflow: &Workflow, base: &str) -> Result<Slot, JobError> {
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
    Err(JobError::Workflow {
        action: "start an execution",
        transient: false,
        source: format!("this file version already has {MAX_ATTEMPTS} executions; upload it again to start over")
            .into(),
    })
}

/// A large file leaving the inline path for the workflow.
pub(super) struct HandOff<'r, 'a> {
    pub run: &'r Run<'a>,
    pub workflow: &'r Workflow,
    pub scan: &'r Scan,
    pub journal: &'r Journal,
}

impl HandOff<'_, '_> {
    /// Stages the companies still without an answer (and not in a bulk an earlier run has in
    /// flight) and starts the workflow. `cost` is what collecting earlier bulks took.
    pub async fn start(
        &self,
        book: AnswerBook,
        held: &std::collections::HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<JobReport, JobError> {
        let (run, scan) = (self.run, self.scan);
        let (app, job) = (run.app, run.job);
        let base = execution_base_name(&job.bucket, &job.key, &run.meta.etag);
        let name = match find_slot(self.workflow, &base).await? {
            Slot::Free(name) => name,
            Slot::Running(arn) => {
                tracing::info!("a workflow execution for this file version is already running");
                return Ok(JobReport {
                    message: Some(format!("already being enriched by the Step Functions execution {arn}")),
                    execution_arn: Some(arn),
                    ..JobReport::new(job, Outcome::Skipped)
                });
            }
        };
        let work = work_prefix(&app.config, &name);
        let input = ExecutionInput {
            action: "assemble".into(),
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            etag: run.meta.etag.clone(),
            run: name.clone(),
            work_bucket: run.paths.bucket.clone(),
            companies_key: format!("{work}companies.jsonl"),
            answers_prefix: format!("{work}batches/"),
            journal_prefix: self.journal.prefix().to_string(),
            batch_size: (app.config.batch_size * BULKS_PER_BATCH) as u64,
            max_concurrency: u64::from(app.config.workflow_concurrency()),
            field_mapping: scan.mapping.description().to_json(),
            rows: scan.rows,
            companies: scan.companies.len() as u64,
            map_error: None,
        };

        // The last step reads only the journal: answers kept from the previous version go in.
        let carried: Vec<(u128, crate::enrichment::Enrichment, i64)> = book
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
            let stats = PartStats { leadspace: cost, cache: None, stopped: None };
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

        let payload = serde_json::to_string(&input).map_err(|e| internal_error("start an execution", e))?;
        let started = self
            .workflow
            .client
            .start_execution()
            .state_machine_arn(&self.workflow.state_machine_arn)
            .name(&name)
            .input(payload)
            .send()
            .await
            .map_err(|e| workflow_error("start an execution", e))?;
        tracing::info!(
            companies = staged,
            known = book.known(),
            rows = scan.rows,
            batch_size = input.batch_size,
            max_concurrency = input.max_concurrency,
            "handed to the Step Functions workflow"
        );
        Ok(JobReport {
            message: Some(format!(
                "{} rows and {staged} companies handed to the Step Functions execution {}; the output and summary \
                 are written when it finishes",
                scan.rows, started.execution_arn
            )),
            execution_arn: Some(started.execution_arn),
            output_key: Some(run.paths.output_key.clone()),
            summary_key: Some(run.paths.summary_key.clone()),
            ..JobReport::new(job, Outcome::Enriched)
        })
    }
}

async fn write_stats(store: &dyn ObjectStore, bucket: &str, key: &str, stats: &PartStats) -> Result<(), JobError> {
    let body = serde_json::to_vec(stats).map_err(|e| internal_error("write a batch's figures", e))?;
    store.put(bucket, key, body, "application/json").await?;
    Ok(())
}

/// Why a batch ends in an error: Step Functions retries the transient ones (the template's
/// Retry on `Retryable.TransientFailure`) and stops the Map on the others.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Credits ran out or the token was refused: every other batch would meet the same.
    #[error("{0}")]
    LeadspaceStopped(String),
    #[error(transparent)]
    Job(#[from] JobError),
}

/// One batch of the Map: its companies' answers (what an earlier attempt of the batch bought,
/// the cache, then Leadspace), each bulk journalled as it is bought, and its figures.
pub async fn enrich_batch(
    app: &App,
    batch: BatchEvent,
    stop_at: Option<tokio::time::Instant>,
) -> Result<Value, BatchError> {
    if !app.config.data_sharing_consent {
        // Consent withdrawn by a deploy while an execution runs stops it here.
        return Err(BatchError::LeadspaceStopped(
            "DATA_SHARING_CONSENT is not set to true: no customer data was sent to Leadspace".into(),
        ));
    }
    let Some(first) = batch.items.first().map(|c| c.company) else {
        return Ok(json!({"companies": 0}));
    };
    let store = app.store.as_ref();
    let input = &batch.input;
    let stats_key = format!("{}{first:010}.json", input.answers_prefix);
    let journal = Journal::new(app.store.clone(), &input.work_bucket, &input.journal_prefix, &input.run)
        .part(&format!("b{first:010}"));
    let mut companies = CompanyTable::default();
    for item in batch.items {
        companies.intern(item.query());
    }
    // A retried batch (the Map's Retry, Lambda's) collects what its earlier attempt bought.
    let earlier_stats = match store.get_small(&input.work_bucket, &stats_key).await.map_err(JobError::from)? {
        Some(body) => serde_json::from_slice::<PartStats>(&body).unwrap_or_default(),
        None => PartStats::default(),
    };
    let mut book = AnswerBook::new(companies.len());
    let pending = journal.recall(&companies, &mut book).await.map_err(JobError::from)?;
    let earlier = book.known();

    let call = CallContext { stats: CallStats::default(), stop_at };
    let Answers { answers, stopped_by, leadspace_down, cache, .. } =
        answer_companies(app, app.batch_enricher.as_ref(), &journal, &companies, book, pending, &call).await;

    let mut leadspace = counts(&call.stats);
    leadspace.add(&earlier_stats.leadspace);
    let cache = match (cache, earlier_stats.cache) {
        (Some(mut now), Some(before)) => {
            add_cache(&mut now, &before);
            Some(now)
        }
        (now, before) => now.or(before),
    };
    let stopped = match &stopped_by {
        Some(LeadspaceError::DeadlineReached) | None => None,
        Some(stop) => Some(stop.to_string()),
    };
    let stats = PartStats { leadspace, cache, stopped };
    write_stats(store, &input.work_bucket, &stats_key, &stats).await?;
    tracing::info!(companies = answers.len(), earlier, requests = stats.leadspace.requests, "batch answered");

    match stopped_by {
        Some(LeadspaceError::Secret(secret)) if secret.is_transient() => Err(JobError::Secret(secret).into()),
        Some(LeadspaceError::JournalUnavailable(why)) => Err(JobError::JournalUnavailable(why).into()),
        Some(stop) if !matches!(stop, LeadspaceError::DeadlineReached) => {
            Err(BatchError::LeadspaceStopped(stop.to_string()))
        }
        _ if leadspace_down => Err(JobError::LeadspaceUnavailable("every request of this batch failed".into()).into()),
        _ => Ok(json!({
            "companies": answers.len(),
            "records_sent": stats.leadspace.records_sent,
            "requests": stats.leadspace.requests,
        })),
    }
}

/// The workflow's last step: the output and summary, in input order, from the batches' answers.
pub async fn assemble(app: &App, input: ExecutionInput) -> Result<JobReport, JobError> {
    let field_mapping = FieldMapping::from_value(&input.field_mapping).map_err(|e| JobError::Workflow {
        action: "read the execution input",
        transient: false,
        source: Box::new(e),
    })?;
    let job = Job {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        field_mapping: Some(field_mapping),
        ..Job::default()
    };
    let work = work_prefix(&app.config, &input.run);
    let report = assemble_job(app, &job, &input).await;
    // The staged companies are customer data: they go whatever happened, unless the error is
    // one a retry of this step should find them for.
    if report.as_ref().is_ok() {
        delete_prefix(app.store.as_ref(), &input.work_bucket, &work).await;
    }
    report
}

async fn assemble_job(app: &App, job: &Job, input: &ExecutionInput) -> Result<JobReport, JobError> {
    let Some(meta) = app.store.head(&job.bucket, &job.key).await? else {
        return Ok(JobReport::ignored(job, "the object no longer exists"));
    };
    if meta.etag != input.etag {
        return Ok(JobReport::not_started(
            job,
            "the object was replaced while the workflow ran; its new version is enriched by its own event",
        ));
    }
    let paths = OutputPaths::for_object(&app.config, &job.bucket, &job.key);
    let lease =
        Lease::acquire(app.store.clone(), &paths.bucket, &paths.lease_key(), &meta.etag, app.config.lease_heartbeat)
            .await?;
    let Acquired::Held(lease) = lease else {
        return Err(JobError::Workflow {
            action: "assemble the output",
            transient: true,
            source: "another invocation holds the lease on this object; the step is retried".into(),
        });
    };
    // A retried or redriven last step finds its own summary: the journal it was built from is
    // deleted by now, and the output must not be replaced by one of not_attempted rows.
    let done = super::read_summary(app.store.as_ref(), &paths).await;
    if let Ok(Some(done)) = done
        && done.source.etag == input.etag
        && done.execution.as_deref() == Some(input.run.as_str())
    {
        lease.release().await;
        return Ok(JobReport::already_done(job, &paths, done, "already assembled by this execution"));
    }
    let run = Run::new(app, job, meta, paths, Some(input.run.clone()));
    let result = run.assemble(input).await;
    lease.release().await;
    result
}

impl Run<'_> {
    async fn assemble(&self, input: &ExecutionInput) -> Result<JobReport, JobError> {
        let format = match Format::detect(&self.job.key) {
            Ok(format) => format,
            Err(unsupported) => return self.fail(&unsupported.to_string(), None).await,
        };
        let mapping = self.job.field_mapping.as_ref().or(self.app.config.field_mapping.as_ref());
        let scan = match self.scan(format, mapping).await? {
            Ok(scan) => scan,
            Err(Problem(why)) => return self.fail(&why, None).await,
        };
        if (scan.rows, scan.companies.len() as u64) != (input.rows, input.companies) {
            let why = format!(
                "the file read differently at the end of the workflow ({} rows and {} companies, against {} and {} when \
                 it started), so its answers cannot be matched to its rows safely; enrich it again",
                scan.rows,
                scan.companies.len(),
                input.rows,
                input.companies
            );
            return self.fail(&why, Some(&scan)).await;
        }
        // The journal holds every answer of this version: the batches', an earlier attempt's,
        // and those the hand-off carried over from the previous version.
        let journal = Journal::new(self.app.store.clone(), &input.work_bucket, &input.journal_prefix, &input.run);
        let mut book = AnswerBook::new(scan.companies.len());
        let in_flight = journal.recall(&scan.companies, &mut book).await?;
        if !in_flight.is_empty() {
            // Left for the next run, which collects them before buying anything.
            tracing::warn!(bulks = in_flight.len(), "bulks still in flight at the end of the workflow");
        }
        let (leadspace, cache, batch_stop) = self.read_batch_figures(input).await?;
        tracing::info!(elapsed_ms = self.clock.elapsed().as_millis() as u64, "answers read");
        let reused = book.reused();
        let (answers, bought_at) = book.finish();
        self.keep_answers(&scan, &answers, &bought_at).await?;
        drop(bought_at);
        let stopped = match (batch_stop, &input.map_error) {
            (Some(why), _) => Some(format!("the workflow stopped before every batch was enriched: {why}")),
            (None, map_error) => map_error.as_ref().map(MapError::describe),
        };
        let min_confidence = self.app.config.min_confidence;
        let enriched = Enriched {
            answers: answers.into_iter().map(|a| a.judged(min_confidence)).collect(),
            stopped,
            leadspace,
            cache,
            reused,
        };
        self.finish(format, &scan, enriched, &journal).await
    }

    /// What every batch (and the hand-off) cost, summed, and why a batch stopped, if one did.
    async fn read_batch_figures(
        &self,
        input: &ExecutionInput,
    ) -> Result<(LeadspaceCounts, Option<CacheCounts>, Option<String>), JobError> {
        let store = self.app.store.as_ref();
        let mut leadspace = LeadspaceCounts::default();
        let mut cache: Option<CacheCounts> = None;
        let mut stopped = None;
        for part in store.list(&input.work_bucket, &input.answers_prefix).await? {
            let Some(body) = store.get_small(&input.work_bucket, &part.key).await? else { continue };
            let Ok(stats) = serde_json::from_slice::<PartStats>(&body) else { continue };
            leadspace.add(&stats.leadspace);
            if let Some(part_cache) = stats.cache {
                add_cache(cache.get_or_insert_with(CacheCounts::default), &part_cache);
            }
            stopped = stopped.or(stats.stopped);
        }
        Ok((leadspace, cache, stopped))
    }
}

fn add_cache(total: &mut CacheCounts, part: &CacheCounts) {
    total.hits += part.hits;
    total.credits_saved += part.credits_saved;
    total.stored += part.stored;
    total.errors += part.errors;
}

/// Best effort: what is left is expired by the bucket's lifecycle rule.
async fn delete_prefix(store: &dyn ObjectStore, bucket: &str, prefix: &str) {
    let listed = match store.list(bucket, prefix).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(error = %error, "could not list the workflow's files to delete them");
            return;
        }
    };
    let mut failed = 0;
    for object in &listed {
        if store.delete(bucket, &object.key).await.is_err() {
            failed += 1;
        }
    }
    if failed > 0 {
        tracing::warn!(failed, "some of the workflow's files could not be deleted; the lifecycle rule expires them");
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

    #[test]
    fn a_lambda_error_from_the_map_is_told_in_its_own_words() {
        let error = MapError {
            error: "NonRetryable.LeadspaceStopped".into(),
            cause: r#"{"errorType":"NonRetryable.LeadspaceStopped","errorMessage":"credits exhausted (427)"}"#.into(),
        };
        assert!(error.describe().ends_with("credits exhausted (427)"), "{}", error.describe());
        let other = MapError {
            error: "States.ExceedToleratedFailureThreshold".into(),
            cause: "The specified tolerated failure threshold was exceeded".into(),
        };
        assert!(other.describe().contains("States.ExceedToleratedFailureThreshold"));
    }
}
