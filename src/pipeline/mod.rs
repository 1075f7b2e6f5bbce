//! One job: one S3 object in, one enriched object and one summary out.
//!
//! trigger → job → read rows (pass 1: mapping, unique companies) → answers (the version's
//! journal, the previous version's kept answers, the cache, then Leadspace, every purchase
//! journalled as it arrives) → read rows again (pass 2, pinned to the same ETag) and write them
//! with their answers → summary, last.
//! Two passes keep memory proportional to the number of unique companies, not rows, and let the
//! mode and batch plan be chosen knowing how many companies there are.

pub mod answer;
pub mod enrich;
pub mod journal;
pub mod kept;
pub mod lease;
pub mod paths;
pub mod summary;
pub mod workflow;

use std::sync::Arc;

use serde::Serialize;

use crate::cache::CacheCounts;
use crate::company::CompanyTable;
use crate::config::Config;
use crate::enrichment::{Enrichment, RowStatus};
use crate::error::JobError;
use crate::leadspace::{CallContext, CallStats, Enricher, LeadspaceError};
use crate::mapping::{FieldMapping, NoQuery, ResolvedMapping, field_paths};
use crate::records::{EncodedAnswer, Format, Layout, ReadError, RowStream, RowWriter, TextEncoding, TextOrigin};
use crate::storage::{ObjectMeta, ObjectStore, OutputUpload, PART_SIZE};
use answer::{AnswerBook, Answers};
use journal::{Journal, PendingBulk};
use kept::KeptFilter;
use lease::{Acquired, Lease};
pub use paths::OutputPaths;
use summary::{LeadspaceCounts, OutputInfo, Reused, RowCounts, RunStatus, SourceInfo, Summary, now_utc};

/// Everything a job needs, built once per container.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn ObjectStore>,
    pub enricher: Arc<dyn Enricher>,
    /// The same Leadspace, paced at one workflow batch's share of LEADSPACE_TPS.
    pub batch_enricher: Arc<dyn Enricher>,
    /// The cross-run answer cache, when ENRICHMENT_CACHE_TTL_DAYS is set.
    pub cache: Option<crate::cache::AnswerCache>,
    /// Where large files go, when STATE_MACHINE_ARN is set.
    pub workflow: Option<workflow::Workflow>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    pub bucket: String,
    pub key: String,
    pub force: bool,
    pub dry_run: bool,
    /// Overrides FIELD_MAPPING for this job (direct invocations).
    pub field_mapping: Option<FieldMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Enriched,
    Skipped,
    Ignored,
    Failed,
}

/// What a dry run reports instead of enriching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub rows: u64,
    pub unique_companies: u64,
    pub rows_without_company_name: u64,
    pub credits_at_most: u64,
}

/// One entry of the invocation's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub bucket: String,
    pub key: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// The Step Functions execution enriching a large file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

impl JobReport {
    fn new(job: &Job, outcome: Outcome) -> Self {
        JobReport {
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            outcome,
            status: None,
            output_key: None,
            summary_key: None,
            rows: None,
            message: None,
            estimate: None,
            execution_arn: None,
        }
    }

    /// `skipped`, pointing at the results a previous run wrote.
    fn already_done(job: &Job, paths: &OutputPaths, done: Summary, why: &str) -> Self {
        tracing::info!(why, "skipping");
        JobReport {
            status: Some(done.status),
            output_key: Some(paths.output_key.clone()),
            summary_key: Some(paths.summary_key.clone()),
            rows: Some(done.rows),
            message: Some(why.to_string()),
            ..Self::new(job, Outcome::Skipped)
        }
    }

    /// `failed`: the job stopped on an error (which the summary, if one was written, also says).
    pub fn could_not_run(job: &Job, error: &JobError) -> Self {
        JobReport { message: Some(crate::error::error_chain(error)), ..Self::new(job, Outcome::Failed) }
    }

    pub fn not_started(job: &Job, why: &str) -> Self {
        JobReport { message: Some(why.to_string()), ..Self::new(job, Outcome::Skipped) }
    }

    fn ignored(job: &Job, why: &str) -> Self {
        tracing::info!(bucket = %job.bucket, key = %job.key, why, "ignoring object");
        JobReport { message: Some(why.to_string()), ..Self::new(job, Outcome::Ignored) }
    }
}

const ALREADY_ENRICHED: &str = "already enriched: the summary is complete for this ETag; pass force to redo";

/// Why an object is not for this function, if it is not.
pub fn ignore_reason(config: &Config, bucket: &str, key: &str) -> Option<&'static str> {
    let output_bucket = config.output_bucket_for(bucket);
    let in_output =
        key.starts_with(config.output_prefix.as_str()) && (bucket == output_bucket || !config.output_prefix.is_empty());
    if in_output {
        Some("the object is under OUTPUT_PREFIX: results are never enriched again")
    } else if !key.starts_with(config.input_prefix.as_str()) {
        Some("the object is not under INPUT_PREFIX")
    } else if key[config.input_prefix.len()..].starts_with(paths::STATE_DIR) {
        Some(
            "the folder _state/ below INPUT_PREFIX is reserved: its results would land among the function's working state",
        )
    } else if key.ends_with('/') {
        Some("the key is a folder marker, not a file")
    } else {
        None
    }
}

/// A problem with the file itself, reported in a `failed` summary rather than retried.
struct Problem(String);

/// What pass 1 learns about the file.
struct Scan {
    mapping: ResolvedMapping,
    companies: CompanyTable,
    /// Each row's company number, or `NO_COMPANY`: pass 2 reads the same bytes (pinned to the
    /// ETag), so it reuses these rather than building and hashing every row's query again.
    /// Four bytes a row: 4 MB for a million rows.
    row_companies: Vec<u32>,
    rows: u64,
    rows_without_company: u64,
    origin: TextOrigin,
    encoding: TextEncoding,
}

/// A row that did not become a company question; pass 2 asks the mapping why.
const NO_COMPANY: u32 = u32::MAX;

impl Scan {
    /// Files that came from Excel (a BOM, UTF-16, Windows-1252) get a BOM back so that Excel
    /// reads the UTF-8 output correctly; files from scripts and databases do not.
    fn output_bom(&self) -> bool {
        self.origin.had_bom || self.encoding != TextEncoding::Utf8
    }
}

/// The context shared by the steps of one run, and the summary it ends with.
struct Run<'a> {
    app: &'a App,
    job: &'a Job,
    meta: ObjectMeta,
    format_label: String,
    paths: OutputPaths,
    started_at: String,
    /// For the phase timings in the log.
    clock: std::time::Instant,
    /// The Step Functions execution this run assembles, for a large file.
    execution: Option<String>,
}

impl<'a> Run<'a> {
    /// A run starting now; `execution` names the workflow it assembles, for a large file.
    fn new(app: &'a App, job: &'a Job, meta: ObjectMeta, paths: OutputPaths, execution: Option<String>) -> Self {
        Run {
            app,
            job,
            meta,
            format_label: Format::detect(&job.key).map(|f| f.label().to_string()).unwrap_or_default(),
            paths,
            started_at: now_utc(),
            clock: std::time::Instant::now(),
            execution,
        }
    }
}

/// Runs one job. `stop_at` is when to stop starting Leadspace work (the Lambda deadline less a
/// margin for writing); `None` runs to completion.
pub async fn run_job(app: &App, job: &Job, stop_at: Option<tokio::time::Instant>) -> Result<JobReport, JobError> {
    let config = &app.config;
    if let Some(why) = ignore_reason(config, &job.bucket, &job.key) {
        return Ok(JobReport::ignored(job, why));
    }
    let Some(meta) = app.store.head(&job.bucket, &job.key).await? else {
        return Ok(JobReport::ignored(job, "the object no longer exists"));
    };
    let paths = OutputPaths::for_object(config, &job.bucket, &job.key);
    tracing::info!(size = meta.size, "starting");

    // A complete run of this very version means nothing to do; checked before the lease so a
    // redelivery costs one GET, and again once the lease is held (another run may just have
    // finished).
    if !job.force && !job.dry_run {
        let previous = read_summary(app.store.as_ref(), &paths).await?;
        if let Some(done) = previous.filter(|p| p.is_complete_for(&meta.etag)) {
            return Ok(JobReport::already_done(job, &paths, done, ALREADY_ENRICHED));
        }
    }

    let run = Run::new(app, job, meta, paths, None);
    if job.dry_run {
        return run.process(stop_at).await;
    }
    let lease = Lease::acquire(
        app.store.clone(),
        &run.paths.bucket,
        &run.paths.lease_key(),
        &run.meta.etag,
        config.lease_heartbeat,
    )
    .await?;
    let lease = match lease {
        Acquired::Held(lease) => lease,
        Acquired::SameVersionBusy => {
            tracing::info!("a live invocation is enriching this very version; skipping");
            return Ok(JobReport {
                message: Some("another invocation is enriching this version of the object right now".into()),
                ..JobReport::new(job, Outcome::Skipped)
            });
        }
        Acquired::OtherBusy(why) => {
            return Err(JobError::Busy { bucket: job.bucket.clone(), key: job.key.clone(), why });
        }
    };
    // Another invocation may have finished this version between our first look and the lease.
    let result = match read_summary(app.store.as_ref(), &run.paths).await {
        Ok(Some(done)) if !job.force && done.is_complete_for(&run.meta.etag) => {
            Ok(JobReport::already_done(job, &run.paths, done, ALREADY_ENRICHED))
        }
        Ok(_) => run.process(stop_at).await,
        Err(error) => Err(error),
    };
    lease.release().await;
    result
}

fn counts(stats: &CallStats) -> LeadspaceCounts {
    LeadspaceCounts {
        requests: CallStats::get(&stats.requests),
        records_sent: CallStats::get(&stats.records_sent),
        retries: CallStats::get(&stats.retries),
        throttled: CallStats::get(&stats.throttled),
        resubmitted: CallStats::get(&stats.resubmitted),
        ambiguous_retries: CallStats::get(&stats.ambiguous_retries),
    }
}

/// What a run learned about its companies, for pass 2 and the summary.
struct Enriched {
    /// One per company, judged against MIN_CONFIDENCE.
    answers: Vec<Enrichment>,
    /// Why Leadspace work ended early, if it did.
    stopped: Option<String>,
    leadspace: LeadspaceCounts,
    cache: Option<CacheCounts>,
    reused: Reused,
}

pub async fn read_summary(store: &dyn ObjectStore, paths: &OutputPaths) -> Result<Option<Summary>, JobError> {
    let Some(bytes) = store.get_small(&paths.bucket, &paths.summary_key).await? else {
        return Ok(None);
    };
    // A summary this version cannot read is treated as absent: the object is enriched again.
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Each company's answer, encoded for the output when its first row is written: once per
/// company rather than per row, spread over the write (which waits on S3 anyway), and without
/// holding every answer twice.
struct CompanyAnswers {
    decoded: Vec<Enrichment>,
    encoded: Vec<Option<EncodedAnswer>>,
}

impl CompanyAnswers {
    fn new(decoded: Vec<Enrichment>) -> Self {
        let encoded = vec![None; decoded.len()];
        CompanyAnswers { decoded, encoded }
    }

    fn encoded(&mut self, company: usize, writer: &RowWriter) -> std::io::Result<&EncodedAnswer> {
        let slot = &mut self.encoded[company];
        let encoded = match slot.take() {
            Some(encoded) => encoded,
            None => {
                // Only the encoded form is needed from here on; the placeholder holds no memory.
                let placeholder = Enrichment::without_attributes(RowStatus::NotAttempted, None);
                writer.encode(&std::mem::replace(&mut self.decoded[company], placeholder))?
            }
        };
        Ok(slot.insert(encoded))
    }
}

/// The answer a row gets when the second read of the file disagrees with the first, which the
/// ETag pin rules out unless S3 served different bytes.
fn row_changed() -> Enrichment {
    Enrichment::without_attributes(RowStatus::Failed, Some("the row changed between the two reads of the file".into()))
}

/// The answer a row gets when it never became a company question.
fn row_without_company(why: &NoQuery) -> Enrichment {
    Enrichment::without_attributes(RowStatus::InvalidInput, Some(why.to_string()))
}

impl Run<'_> {
    /// Reads, enriches and writes the object. Answers an earlier run bought are collected
    /// before anything is bought (unless `force`).
    async fn process(&self, stop_at: Option<tokio::time::Instant>) -> Result<JobReport, JobError> {
        let (app, job, config) = (self.app, self.job, &self.app.config);
        let format = match Format::detect(&job.key) {
            Ok(format) => format,
            Err(unsupported) => return self.fail(&unsupported.to_string(), None).await,
        };
        if self.meta.size > config.max_input_bytes {
            let why = format!(
                "the object is {} bytes, more than MAX_INPUT_BYTES ({}); split it into smaller files or raise \
                 MAX_INPUT_BYTES",
                self.meta.size, config.max_input_bytes
            );
            return self.fail(&why, None).await;
        }
        let mapping = job.field_mapping.as_ref().or(config.field_mapping.as_ref());
        let scan = match self.scan(format, mapping).await? {
            Ok(scan) => scan,
            Err(Problem(why)) => return self.fail(&why, None).await,
        };
        tracing::info!(
            rows = scan.rows,
            unique_companies = scan.companies.len(),
            rows_without_company = scan.rows_without_company,
            elapsed_ms = self.clock.elapsed().as_millis() as u64,
            "scanned"
        );
        if job.dry_run {
            return Ok(self.estimate(&scan));
        }
        if !config.data_sharing_consent {
            let why = "DATA_SHARING_CONSENT is not set to true: no customer data was sent to Leadspace. \
                       Set DATA_SHARING_CONSENT=true to record consent to send the mapped fields outside this AWS account";
            return self.fail(why, Some(&scan)).await;
        }

        let journal = self.journal(&scan, &format!("run-{:016x}", rand::random::<u64>()));
        let (mut book, pending) = self.known_answers(&scan, &journal).await?;
        let call = CallContext { stats: CallStats::default(), stop_at };
        // Before anything is bought, inline or by the workflow's batches.
        let collected = answer::collect_earlier_bulks(app, &journal, &scan.companies, pending, &call, &mut book).await;

        if let Some(workflow) = &app.workflow
            && workflow::is_large(config, self.meta.size, scan.rows)
            && collected.stopped_by.is_none()
            && book.known() < book.len()
        {
            let hand_off = workflow::HandOff { run: self, workflow, scan: &scan, journal: &journal };
            return hand_off.start(book, &collected.held, counts(&call.stats)).await;
        }

        let answered =
            answer::answer_the_rest(app, app.enricher.as_ref(), &journal, &scan.companies, book, collected, &call)
                .await;
        tracing::info!(elapsed_ms = self.clock.elapsed().as_millis() as u64, "answers ready");
        let Answers { answers, bought_at, stopped_by, leadspace_down, cache, reused } = answered;
        self.keep_answers(&scan, &answers, &bought_at).await?;
        drop(bought_at);
        let enriched = Enriched {
            answers: answers.into_iter().map(|a| a.judged(config.min_confidence)).collect(),
            stopped: stopped_by.as_ref().map(ToString::to_string),
            leadspace: counts(&call.stats),
            cache,
            reused,
        };
        let report = self.finish(format, &scan, enriched, &journal).await?;
        // Everything is written (answers kept, summary partial); when the cause is passing,
        // Lambda's retry collects what was bought and sends only the rows without an answer.
        match stopped_by {
            Some(LeadspaceError::Secret(secret)) if secret.is_transient() => Err(JobError::Secret(secret)),
            Some(LeadspaceError::JournalUnavailable(why)) => Err(JobError::JournalUnavailable(why)),
            _ if leadspace_down => Err(JobError::LeadspaceUnavailable(report.message.unwrap_or_default())),
            _ => Ok(report),
        }
    }

    /// The answer journal of this version of the object, read with the mapping pass 1
    /// resolved, from this LEADSPACE_BASE_URL.
    fn journal(&self, scan: &Scan, run: &str) -> Journal {
        let version = paths::version_id(&self.meta.etag, scan.mapping.description(), &self.app.config.base_url);
        Journal::new(self.app.store.clone(), &self.paths.bucket, &self.paths.journal_prefix(&version), run)
    }

    /// What earlier runs left: this version's journal (and the bulks it has in flight), then
    /// the previous version's kept answers. `force` starts a new journal and reuses nothing.
    async fn known_answers(&self, scan: &Scan, journal: &Journal) -> Result<(AnswerBook, Vec<PendingBulk>), JobError> {
        let mut book = AnswerBook::new(scan.companies.len());
        if self.job.force {
            let cleared = journal.clear().await?;
            tracing::info!(cleared, "force: a new answer journal, nothing reused");
            return Ok((book, Vec::new()));
        }
        let pending = journal.recall(&scan.companies, &mut book).await?;
        let config = &self.app.config;
        let filter = KeptFilter {
            etag: &self.meta.etag,
            mapping: scan.mapping.description(),
            base_url: &config.base_url,
            max_age_seconds: config.answer_max_age_seconds(),
        };
        kept::recall(self.app.store.as_ref(), &self.paths, &filter, &scan.companies, &mut book).await?;
        Ok((book, pending))
    }

    /// Keeps this version's answers for the next one, before the output is written, so that a
    /// failure from here on still leaves them.
    async fn keep_answers(&self, scan: &Scan, answers: &[Enrichment], bought_at: &[i64]) -> Result<(), JobError> {
        kept::keep(
            self.app.store.clone(),
            &self.paths,
            &self.meta.etag,
            scan.mapping.description(),
            &self.app.config.base_url,
            &scan.companies,
            answers,
            bought_at,
        )
        .await
    }

    /// Pass 2 and the summary: every row with its company's answer. Once the summary says the
    /// version is complete, its journal has served and is deleted.
    async fn finish(
        &self,
        format: Format,
        scan: &Scan,
        enriched: Enriched,
        journal: &Journal,
    ) -> Result<JobReport, JobError> {
        let Enriched { answers, stopped, leadspace, cache, reused } = enriched;
        let rows = match self.write_output(format, scan, answers).await? {
            Ok(rows) => rows,
            Err(Problem(why)) => return self.fail(&why, Some(scan)).await,
        };
        let (status, error) = match (stopped, rows.unfinished()) {
            (Some(stop), _) => (RunStatus::Partial, Some(stop)),
            (None, 0) => (RunStatus::Complete, None),
            (None, n) => (
                RunStatus::Partial,
                Some(format!("{n} rows have no final answer (failed); running the file again retries only them")),
            ),
        };
        let unique = scan.companies.len() as u64;
        let mut summary = self.summary(status, error.clone(), rows.clone(), unique, leadspace, Some(scan));
        summary.cache = cache;
        summary.reused = reused;
        self.write_summary(&summary).await?;
        if status == RunStatus::Complete {
            match journal.clear().await {
                Ok(entries) => tracing::debug!(entries, "answer journal deleted"),
                // The lifecycle rule expires it; a complete summary means no run reads it.
                Err(error) => tracing::warn!(error = %error, "could not delete the answer journal"),
            }
        }
        tracing::info!(
            status = ?status,
            rows = rows.total,
            enriched = rows.enriched,
            requests = summary.leadspace.requests,
            reused = summary.reused.journal + summary.reused.previous_version,
            elapsed_ms = self.clock.elapsed().as_millis() as u64,
            "job finished"
        );
        Ok(JobReport {
            status: Some(status),
            output_key: Some(self.paths.output_key.clone()),
            summary_key: Some(self.paths.summary_key.clone()),
            rows: Some(rows),
            message: error,
            ..JobReport::new(self.job, Outcome::Enriched)
        })
    }

    async fn open(&self, format: Format) -> Result<Result<RowStream, Problem>, JobError> {
        let body = self.app.store.get(&self.job.bucket, &self.job.key, Some(&self.meta.etag)).await?;
        match RowStream::open(body, format, self.app.config.max_input_bytes).await {
            Ok(stream) => Ok(Ok(stream)),
            Err(error) => self.read_failure(error),
        }
    }

    fn read_failure<T>(&self, error: ReadError) -> Result<Result<T, Problem>, JobError> {
        match error {
            ReadError::Malformed(why) => Ok(Err(Problem(why))),
            io => Err(JobError::Read { bucket: self.job.bucket.clone(), key: self.job.key.clone(), source: io }),
        }
    }

    /// Pass 1: resolve the mapping and collect the unique companies.
    async fn scan(&self, format: Format, mapping: Option<&FieldMapping>) -> Result<Result<Scan, Problem>, JobError> {
        let mut stream = match self.open(format).await? {
            Ok(stream) => stream,
            Err(problem) => return Ok(Err(problem)),
        };
        let resolved = match &stream.layout {
            Layout::Csv { columns, .. } => FieldMapping::resolve_columns(mapping, columns),
            Layout::JsonLines { first_object: None } if mapping.is_none() => {
                return Ok(Err(Problem(
                    "no JSON object found in the file's first lines: JSON Lines needs one {...} object per line \
                     (a file holding a single JSON array is JSON, not JSON Lines)"
                        .into(),
                )));
            }
            Layout::JsonLines { first_object } => FieldMapping::resolve_fields(mapping, first_object.as_ref()),
        };
        let mapping = match resolved {
            Ok(mapping) => mapping,
            Err(error) => return Ok(Err(Problem(error.to_string()))),
        };
        let origin = stream.origin();
        let mut scan = Scan {
            mapping,
            companies: CompanyTable::default(),
            row_companies: Vec::new(),
            rows: 0,
            rows_without_company: 0,
            origin,
            encoding: origin.encoding,
        };
        let max_rows = self.app.config.max_input_rows;
        let mut company_field_seen = false;
        while let Some(batch) = stream.next_batch().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => return self.read_failure(error),
            };
            for row in &batch {
                scan.rows += 1;
                let company = match scan.mapping.query(row) {
                    Ok(query) => {
                        company_field_seen = true;
                        scan.companies.intern(query)
                    }
                    Err(why) => {
                        company_field_seen |= !matches!(why, NoQuery::CompanyFieldAbsent | NoQuery::Unparsed(_));
                        scan.rows_without_company += 1;
                        NO_COMPANY
                    }
                };
                scan.row_companies.push(company);
            }
            if scan.rows > max_rows {
                return Ok(Err(Problem(format!(
                    "the file has more than {max_rows} rows (MAX_INPUT_ROWS); split it into smaller files or raise \
                     MAX_INPUT_ROWS"
                ))));
            }
        }
        scan.encoding = stream.encoding();
        if scan.rows > 0 && !company_field_seen {
            return Ok(Err(Problem(match &stream.layout {
                Layout::Csv { columns, .. } => format!(
                    "no row reaches the company column: every row has fewer fields than the header ({} columns); \
                     check the delimiter and the quoting",
                    columns.len()
                ),
                Layout::JsonLines { first_object } => {
                    let available = first_object.as_ref().map(field_paths).unwrap_or_default();
                    scan.mapping.company_field_missing(available).to_string()
                }
            })));
        }
        Ok(Ok(scan))
    }

    /// Pass 2: every row once, in order, with its company's answer; streamed to S3.
    async fn write_output(
        &self,
        format: Format,
        scan: &Scan,
        answers: Vec<Enrichment>,
    ) -> Result<Result<RowCounts, Problem>, JobError> {
        let mut stream = match self.open(format).await? {
            Ok(stream) => stream,
            Err(problem) => return Ok(Err(problem)),
        };
        let write_error = |source: std::io::Error| JobError::Write {
            bucket: self.paths.bucket.clone(),
            key: self.paths.output_key.clone(),
            source,
        };
        let mut writer = RowWriter::new(format, &stream.layout, scan.output_bom()).map_err(write_error)?;
        let mut answers = CompanyAnswers::new(answers);
        let mut upload = OutputUpload::new(
            self.app.store.clone(),
            &self.paths.bucket,
            &self.paths.output_key,
            format.content_type(),
        );
        let mut rows = RowCounts::default();
        let result: Result<Result<(), Problem>, JobError> = async {
            while let Some(batch) = stream.next_batch().await {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(error) => return self.read_failure(error),
                };
                for row in &batch {
                    let own;
                    let answer = match scan.row_companies.get(rows.total as usize).copied() {
                        Some(company) if company != NO_COMPANY => {
                            answers.encoded(company as usize, &writer).map_err(write_error)?
                        }
                        other => {
                            let answer = match other.map(|_| scan.mapping.query(row)) {
                                Some(Err(why)) => row_without_company(&why),
                                _ => row_changed(),
                            };
                            own = writer.encode(&answer).map_err(write_error)?;
                            &own
                        }
                    };
                    rows.count(answer.status);
                    writer.write_encoded(row, answer).map_err(write_error)?;
                    if writer.pending_len() >= PART_SIZE {
                        upload.write(writer.take()).await?;
                    }
                }
            }
            Ok(Ok(()))
        }
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => {
                upload.abort().await;
                return Ok(Err(problem));
            }
            Err(error) => {
                upload.abort().await;
                return Err(error);
            }
        }
        match writer.finish() {
            Ok(rest) => upload.finish(rest).await?,
            Err(error) => {
                upload.abort().await;
                return Err(write_error(error));
            }
        }
        if rows.total != scan.rows {
            // The ETag pin makes this impossible unless S3 served different bytes; never report
            // counts that do not add up.
            return Ok(Err(Problem(format!(
                "the object read {} rows the first time and {} the second",
                scan.rows, rows.total
            ))));
        }
        Ok(Ok(rows))
    }

    fn summary(
        &self,
        status: RunStatus,
        error: Option<String>,
        rows: RowCounts,
        unique: u64,
        leadspace: LeadspaceCounts,
        scan: Option<&Scan>,
    ) -> Summary {
        Summary {
            enrichment_name: self.app.config.enrichment_name.clone(),
            status,
            error,
            source: SourceInfo {
                bucket: self.job.bucket.clone(),
                key: self.job.key.clone(),
                etag: self.meta.etag.clone(),
                version_id: self.meta.version_id.clone(),
                size: self.meta.size,
                encoding: scan.map(|s| s.encoding),
            },
            output: OutputInfo {
                bucket: self.paths.bucket.clone(),
                key: self.paths.output_key.clone(),
                format: self.format_label.clone(),
            },
            field_mapping: scan.map_or(serde_json::Value::Null, |s| s.mapping.description().to_json()),
            started_at: self.started_at.clone(),
            finished_at: now_utc(),
            rows,
            unique_companies: unique,
            billing_guarantee: summary::billing_guarantee(
                self.app.config.answer_max_age_days,
                leadspace.ambiguous_retries,
            ),
            leadspace,
            reused: Reused::default(),
            cache: None,
            execution: self.execution.clone(),
        }
    }

    async fn write_summary(&self, summary: &Summary) -> Result<(), JobError> {
        let body = serde_json::to_vec_pretty(summary).unwrap_or_default();
        self.app.store.put(&self.paths.bucket, &self.paths.summary_key, body, "application/json").await?;
        crate::metrics::emit(&summary.metrics(self.clock.elapsed().as_millis() as u64));
        Ok(())
    }

    /// A `failed` summary: the file could not be processed; nothing was sent for it.
    async fn fail(&self, why: &str, scan: Option<&Scan>) -> Result<JobReport, JobError> {
        // `why` may quote the file's first line (a CSV without a header): summary and answer
        // only, never the logs.
        tracing::warn!("the file could not be enriched; the summary says why");
        let mut rows = RowCounts::default();
        if let Some(scan) = scan {
            rows.total = scan.rows;
            rows.invalid_input = scan.rows_without_company;
            rows.not_attempted = scan.rows - scan.rows_without_company;
        }
        let unique = scan.map_or(0, |s| s.companies.len() as u64);
        let summary = self.summary(
            RunStatus::Failed,
            Some(why.to_string()),
            rows.clone(),
            unique,
            LeadspaceCounts::default(),
            scan,
        );
        // A dry run writes nothing, not even a failed summary over a complete one.
        if !self.job.dry_run {
            self.write_summary(&summary).await?;
        }
        Ok(JobReport {
            status: Some(RunStatus::Failed),
            summary_key: Some(self.paths.summary_key.clone()),
            rows: Some(rows),
            message: Some(why.to_string()),
            ..JobReport::new(self.job, Outcome::Failed)
        })
    }

    fn estimate(&self, scan: &Scan) -> JobReport {
        let estimate = Estimate {
            rows: scan.rows,
            unique_companies: scan.companies.len() as u64,
            rows_without_company_name: scan.rows_without_company,
            credits_at_most: scan.companies.len() as u64,
        };
        JobReport {
            estimate: Some(estimate),
            message: Some("dry run: nothing was sent or written".into()),
            ..JobReport::new(self.job, Outcome::Skipped)
        }
    }
}
