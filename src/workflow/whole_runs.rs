//! Whole files through every path, in memory and in milliseconds: an inline run, a hand-off
//! with its batches and last step, a force, a redelivery, and a crash at every write. S3 is the
//! `MemoryStore`, Leadspace a fake that counts what each company was billed, and Step Functions
//! `Executions`, which records executions and lets a test play them as the Map would. The
//! promises are checked the same way every time: each company billed once, every row with a
//! final answer. What crosses the wire is the integration tests' (moto and the emulator).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::assemble::assemble;
use super::batch::enrich_batch;
use super::hand_off::{HandOff, being_enriched_by, execution_base_name, handed_off};
use super::input::{BatchEvent, BatchInput, ExecutionInput, StagedCompany};
use crate::config::Config;
use crate::leadspace::model::{EnrichRequest, EnrichedCompany, EnrichmentData, EnrichmentResult};
use crate::leadspace::{BulkResults, CallContext, Enricher, LeadspaceError};
use crate::pipeline::answers::book::AnswerBook;
use crate::pipeline::answers::journal::Journal;
use crate::pipeline::flow::{LargeFiles, Source, run_file};
use crate::pipeline::run::Run;
use crate::pipeline::scan::Scan;
use crate::pipeline::summary::LeadspaceCounts;
use crate::pipeline::{App, Job, JobReport, Outcome};
use crate::storage::{Body, ListedObject, MemoryStore, ObjectMeta, ObjectStore, StorageError};

const BUCKET: &str = "b";
const KEY: &str = "incoming/accounts.csv";

/// Leadspace in memory: every record matched, billed when it is submitted; a bulk's results
/// are ready `ready_after` after it.
#[derive(Default)]
struct Leadspace {
    billed: Mutex<HashMap<String, u32>>,
    bulks: Mutex<HashMap<String, Vec<EnrichRequest>>>,
    next: AtomicUsize,
    ready_after: std::time::Duration,
}

impl Leadspace {
    fn bill(&self, records: &[EnrichRequest]) {
        let mut billed = self.billed.lock().unwrap();
        for record in records {
            *billed.entry(record.company.name.clone()).or_default() += 1;
        }
    }

    fn total(&self) -> u32 {
        self.billed.lock().unwrap().values().sum()
    }

    /// Companies billed more than once.
    fn twice(&self) -> Vec<String> {
        self.billed.lock().unwrap().iter().filter(|(_, n)| **n > 1).map(|(name, _)| name.clone()).collect()
    }
}

fn answer(request: &EnrichRequest) -> EnrichmentResult {
    EnrichmentResult {
        status: Some("success".into()),
        external_id: Some(request.external_id.as_str().into()),
        data: Some(EnrichmentData {
            enrichment_status: Some("Company Enriched".into()),
            company: Some(EnrichedCompany { name: Some(request.company.name.clone().into()), ..Default::default() }),
        }),
        ..Default::default()
    }
}

#[async_trait]
impl Enricher for Leadspace {
    async fn single(&self, record: &EnrichRequest, call: &CallContext) -> Result<EnrichmentResult, LeadspaceError> {
        call.check(std::time::Duration::ZERO, true)?;
        self.bill(std::slice::from_ref(record));
        Ok(answer(record))
    }
    async fn submit_bulk(&self, records: &[EnrichRequest], call: &CallContext) -> Result<String, LeadspaceError> {
        call.check(std::time::Duration::ZERO, true)?;
        self.bill(records);
        let id = format!("/v3/enrichment/results/{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.bulks.lock().unwrap().insert(id.clone(), records.to_vec());
        Ok(id)
    }
    async fn collect_bulk(&self, bulk: &str, call: &CallContext) -> Result<BulkResults, LeadspaceError> {
        call.check(self.ready_after, false)?;
        tokio::time::sleep(self.ready_after).await;
        let records = self.bulks.lock().unwrap().get(bulk).cloned().ok_or(LeadspaceError::BulkNotFound)?;
        Ok(BulkResults::new(records.iter().map(answer).collect()))
    }
}

/// Step Functions in memory: executions are recorded when the hand-off starts them, and run
/// only when a test plays them.
#[derive(Default)]
struct Executions {
    started: Mutex<Vec<(ExecutionInput, bool)>>,
}

impl Executions {
    fn only(&self) -> ExecutionInput {
        let started = self.started.lock().unwrap();
        assert_eq!(started.len(), 1, "one execution");
        started[0].0.clone()
    }

    fn end(&self, name: &str) {
        for (input, running) in self.started.lock().unwrap().iter_mut() {
            if input.run == name {
                *running = false;
            }
        }
    }
}

#[async_trait]
impl LargeFiles for Executions {
    fn is_large(&self, _: u64, rows: u64) -> bool {
        rows > LARGE_ROWS
    }

    async fn running(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<String>, crate::error::JobError> {
        let base = execution_base_name(bucket, key, etag);
        let started = self.started.lock().unwrap();
        Ok(started.iter().find(|(input, running)| *running && input.run.starts_with(&base)).map(|(i, _)| i.run.clone()))
    }

    fn being_enriched_by(&self, job: &Job, execution: String) -> JobReport {
        being_enriched_by(job, execution)
    }

    async fn hand_off(
        &self,
        run: &Run<'_>,
        scan: &Scan,
        journal: &Journal,
        book: AnswerBook,
        held: &std::collections::HashSet<usize>,
        cost: LeadspaceCounts,
    ) -> Result<JobReport, crate::error::JobError> {
        let attempt = self.started.lock().unwrap().len() + 1;
        let name = format!("{}-{attempt}", execution_base_name(&run.job.bucket, &run.job.key, &run.meta.etag));
        let staged = HandOff { run, scan, journal }.stage(&name, book, held, cost).await?;
        self.started.lock().unwrap().push((staged.input.clone(), true));
        Ok(handed_off(run, &staged, name))
    }
}

/// Files of more rows than this go to the workflow.
const LARGE_ROWS: u64 = 20;

/// `n` rows of `n` companies (each named twice, far apart, when `twice`).
fn file(n: usize, twice: bool) -> String {
    let mut text = String::from("Id,Company\n");
    for i in 0..n {
        text.push_str(&format!("{i},Firm {i}\n"));
    }
    if twice {
        for i in 0..n {
            text.push_str(&format!("{},FIRM {i} \n", n + i));
        }
    }
    text
}

fn app(store: Arc<dyn ObjectStore>, leadspace: Arc<Leadspace>) -> App {
    let config = Config::from_lookup(|name| match name {
        "LEADSPACE_SECRET_ID" => Some("s".into()),
        "DATA_SHARING_CONSENT" => Some("true".into()),
        "LEADSPACE_MODE" => Some("bulk".into()),
        "BATCH_SIZE" => Some("5".into()),
        "MIN_CONFIDENCE" => Some("LOW".into()),
        _ => None,
    })
    .expect("a configuration");
    App { config, store, enricher: leadspace.clone(), batch_enricher: leadspace, cache: None, step_functions: None }
}

fn job() -> Job {
    Job { bucket: BUCKET.into(), key: KEY.into(), ..Job::default() }
}

fn forced() -> Job {
    Job { force: true, ..job() }
}

async fn deliver(app: &App, job: &Job, executions: &Executions) -> Result<JobReport, crate::error::JobError> {
    run_file(app, job, Source::Buy { stop_at: None, large: Some(executions) }).await
}

/// The batches of an execution, as the Map's ItemBatcher cuts the staged companies.
async fn batches(store: &dyn ObjectStore, input: &ExecutionInput) -> Vec<BatchEvent> {
    let staged = store.get_small(&input.work_bucket, &input.companies_key).await.unwrap().expect("staged companies");
    let items: Vec<StagedCompany> =
        staged.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    let batch_input = BatchInput {
        work_bucket: input.work_bucket.clone(),
        answers_prefix: input.answers_prefix.clone(),
        journal_prefix: input.journal_prefix.clone(),
        run: input.run.clone(),
    };
    items
        .chunks(input.batch_size as usize)
        .map(|items| BatchEvent { input: batch_input.clone(), items: items.to_vec() })
        .collect()
}

async fn run_batches(app: &App, batches: Vec<BatchEvent>) {
    for batch in batches {
        assert!(enrich_batch(app, batch, None).await.is_ok(), "a batch");
    }
}

/// The summary's status and rows not yet answered.
fn summary_of(store: &MemoryStore) -> (String, u64, u64) {
    let summary = store.peek(BUCKET, "enriched/accounts.csv.summary.json").expect("a summary");
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    let rows = &summary["rows"];
    let unanswered = rows["not_attempted"].as_u64().unwrap() + rows["failed"].as_u64().unwrap();
    (summary["status"].as_str().unwrap().to_string(), rows["total"].as_u64().unwrap(), unanswered)
}

struct World {
    store: Arc<MemoryStore>,
    leadspace: Arc<Leadspace>,
    executions: Executions,
    app: App,
}

async fn world(text: &str) -> World {
    let store = Arc::new(MemoryStore::new());
    store.put(BUCKET, KEY, text.as_bytes().to_vec(), "text/csv").await.unwrap();
    let leadspace = Arc::new(Leadspace::default());
    let app = app(store.clone(), leadspace.clone());
    World { store, leadspace, executions: Executions::default(), app }
}

#[tokio::test]
async fn an_inline_run_and_its_redelivery_buy_each_company_once() {
    let w = world(&file(10, true)).await;

    let first = deliver(&w.app, &job(), &w.executions).await.unwrap();
    let again = deliver(&w.app, &job(), &w.executions).await.unwrap();

    assert_eq!((first.outcome, again.outcome), (Outcome::Enriched, Outcome::Skipped));
    assert_eq!(summary_of(&w.store), ("complete".into(), 20, 0));
    assert_eq!((w.leadspace.total(), w.leadspace.twice()), (10, vec![]));
}

#[tokio::test]
async fn a_large_file_through_hand_off_batches_and_last_step_buys_each_company_once() {
    let w = world(&file(30, true)).await;

    let handed = deliver(&w.app, &job(), &w.executions).await.unwrap();
    assert_eq!(handed.outcome, Outcome::Enriched);
    assert!(w.store.peek(BUCKET, "enriched/accounts.csv.summary.json").is_none(), "the summary comes last");
    let input = w.executions.only();
    run_batches(&w.app, batches(w.store.as_ref(), &input).await).await;
    let assembled = assemble(&w.app, input.clone()).await.unwrap();
    w.executions.end(&input.run);

    assert_eq!(assembled.outcome, Outcome::Enriched);
    assert_eq!(summary_of(&w.store), ("complete".into(), 60, 0));
    assert_eq!((w.leadspace.total(), w.leadspace.twice()), (30, vec![]));
    assert!(!w.store.keys(BUCKET).iter().any(|k| k.contains("_state/work/")), "the work folder is deleted");
}

#[tokio::test]
async fn a_redelivery_before_the_last_step_leaves_the_file_to_its_execution() {
    let w = world(&file(30, false)).await;
    deliver(&w.app, &job(), &w.executions).await.unwrap();
    let input = w.executions.only();
    run_batches(&w.app, batches(w.store.as_ref(), &input).await).await;

    let again = deliver(&w.app, &job(), &w.executions).await.unwrap();
    assert_eq!((again.outcome, again.execution_arn.as_deref()), (Outcome::Skipped, Some(input.run.as_str())));
    assemble(&w.app, input.clone()).await.unwrap();
    w.executions.end(&input.run);
    let refreshed = deliver(&w.app, &job(), &w.executions).await.unwrap();

    assert_eq!(refreshed.outcome, Outcome::Skipped);
    assert_eq!(summary_of(&w.store), ("complete".into(), 30, 0));
    assert_eq!((w.leadspace.total(), w.leadspace.twice()), (30, vec![]));
}

#[tokio::test]
async fn a_force_while_the_batches_run_is_refused_and_clears_nothing() {
    let w = world(&file(30, false)).await;
    deliver(&w.app, &job(), &w.executions).await.unwrap();
    let input = w.executions.only();
    let mut batches = batches(w.store.as_ref(), &input).await;
    let rest = batches.split_off(1);
    run_batches(&w.app, batches).await;

    let refused = deliver(&w.app, &forced(), &w.executions).await.unwrap();
    assert_eq!(refused.outcome, Outcome::Failed, "{refused:?}");
    run_batches(&w.app, rest).await;
    assemble(&w.app, input).await.unwrap();

    assert_eq!(summary_of(&w.store), ("complete".into(), 30, 0));
    assert_eq!((w.leadspace.total(), w.leadspace.twice()), (30, vec![]));
}

#[tokio::test]
async fn a_last_step_that_finds_the_version_complete_keeps_that_output() {
    let w = world(&file(30, false)).await;
    deliver(&w.app, &job(), &w.executions).await.unwrap();
    let input = w.executions.only();
    run_batches(&w.app, batches(w.store.as_ref(), &input).await).await;
    // Completed meanwhile by a run that did not know the execution (an older deploy).
    let unaware = Executions::default();
    deliver(&w.app, &job(), &unaware).await.unwrap();
    let output = w.store.peek(BUCKET, "enriched/accounts.csv");

    let assembled = assemble(&w.app, input).await.unwrap();

    assert_eq!(assembled.outcome, Outcome::Skipped);
    assert_eq!(w.store.peek(BUCKET, "enriched/accounts.csv"), output);
    assert_eq!(summary_of(&w.store), ("complete".into(), 30, 0));
    assert_eq!((w.leadspace.total(), w.leadspace.twice()), (30, vec![]));
}

#[tokio::test]
async fn a_forced_run_retried_under_its_request_id_collects_what_it_bought() {
    let w = world(&file(10, false)).await;
    deliver(&w.app, &job(), &w.executions).await.unwrap();
    let forced = Job { request_id: Some("r-1".into()), ..forced() };
    // The forced run buys, then cannot write its output.
    w.store.refuse(Some("enriched/accounts.csv"));
    assert!(deliver(&w.app, &forced, &w.executions).await.is_err());
    assert!(w.store.peek(BUCKET, "enriched/accounts.csv.summary.json").is_none(), "the old summary is superseded");
    w.store.refuse(None);

    let retried = deliver(&w.app, &forced, &w.executions).await.unwrap();

    assert_eq!(retried.outcome, Outcome::Enriched);
    assert_eq!(summary_of(&w.store), ("complete".into(), 10, 0));
    assert_eq!(w.leadspace.total(), 20, "bought once before the force and once by it, never a third time");
}

/// A store that never answers its `n`th write (from 1): the process was killed there.
struct KilledAt {
    inner: Arc<MemoryStore>,
    writes: AtomicUsize,
    at: usize,
    /// The key being written when it was killed.
    killed: Mutex<Option<String>>,
}

impl KilledAt {
    async fn write(&self, key: &str) {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            *self.killed.lock().unwrap() = Some(key.to_string());
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl ObjectStore for KilledAt {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.inner.head(bucket, key).await
    }
    async fn get(&self, bucket: &str, key: &str, etag: Option<&str>) -> Result<Body, StorageError> {
        self.inner.get(bucket, key, etag).await
    }
    async fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get_small(bucket, key).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        self.write(key).await;
        self.inner.put(bucket, key, body, content_type).await
    }
    async fn put_if_absent(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<Option<String>, StorageError> {
        self.write(key).await;
        self.inner.put_if_absent(bucket, key, body).await
    }
    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<Option<String>, StorageError> {
        self.write(key).await;
        self.inner.put_if_match(bucket, key, body, etag).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.write(key).await;
        self.inner.delete(bucket, key).await
    }
    async fn delete_if_match(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StorageError> {
        self.write(key).await;
        self.inner.delete_if_match(bucket, key, etag).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        self.inner.list(bucket, prefix).await
    }
    async fn create_multipart(&self, bucket: &str, key: &str, content_type: &str) -> Result<String, StorageError> {
        self.write(key).await;
        self.inner.create_multipart(bucket, key, content_type).await
    }
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, StorageError> {
        self.write(key).await;
        self.inner.upload_part(bucket, key, upload_id, number, body).await
    }
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> Result<(), StorageError> {
        self.write(key).await;
        self.inner.complete_multipart(bucket, key, upload_id, parts).await
    }
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.write(key).await;
        self.inner.abort_multipart(bucket, key, upload_id).await
    }
}

/// Kills a run at its `at`th write, lets its lease expire, then delivers the file again until
/// it is done; what the kill interrupted, and what Leadspace billed.
async fn killed_then_redelivered(text: &str, at: usize) -> Option<(Option<String>, Arc<Leadspace>, Arc<MemoryStore>)> {
    let inner = Arc::new(MemoryStore::new());
    inner.put(BUCKET, KEY, text.as_bytes().to_vec(), "text/csv").await.unwrap();
    let killed = Arc::new(KilledAt { inner: inner.clone(), writes: AtomicUsize::new(0), at, killed: Mutex::new(None) });
    let leadspace = Arc::new(Leadspace::default());
    let executions = Executions::default();
    let dying = app(killed.clone(), leadspace.clone());
    let the_job = job();
    let run = deliver(&dying, &the_job, &executions);
    if tokio::time::timeout(std::time::Duration::from_secs(5), run).await.is_ok() {
        return None; // fewer writes than `at`: the run finished
    }
    // The killed run's lease outlives it until S3's clock says it is three heartbeats old.
    let lease = "enriched/_state/leases/accounts.csv.lease";
    if let Some(marker) = inner.peek(BUCKET, lease) {
        inner.set_now(inner.now() - 3600);
        inner.put(BUCKET, lease, marker, "application/json").await.unwrap();
        inner.set_now(crate::pipeline::answers::journal::now_seconds() as u64);
    }
    let healthy = app(inner.clone(), leadspace.clone());
    for _ in 0..3 {
        match deliver(&healthy, &job(), &executions).await {
            Ok(_) => break,
            Err(error) => eprintln!("killed at write {at}: a redelivery failed: {error}"),
        }
    }
    let interrupted = killed.killed.lock().unwrap().clone();
    Some((interrupted, leadspace, inner))
}

#[tokio::test(start_paused = true)]
async fn a_kill_at_any_write_is_finished_by_the_redelivery_without_buying_twice() {
    let text = file(10, true);
    let mut kills = 0;
    for at in 1.. {
        let Some((interrupted, leadspace, store)) = killed_then_redelivered(&text, at).await else { break };
        kills += 1;
        let interrupted = interrupted.unwrap_or_default();
        assert_eq!(summary_of(&store), ("complete".into(), 20, 0), "killed at write {at} ({interrupted})");
        // The one window left: Leadspace answered a submission, and the kill came before its
        // entry reached the journal. That bulk (BATCH_SIZE companies) is bought again.
        let allowed = if interrupted.contains("/s-") { 5 } else { 0 };
        let twice = leadspace.twice();
        assert!(twice.len() <= allowed, "killed at write {at} ({interrupted}): billed twice {twice:?}");
    }
    assert!(kills >= 10, "the run has writes to be killed at: {kills}");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_with_bulks_in_flight_leaves_them_to_the_next_run_which_buys_nothing_again() {
    let mut w = world(&file(20, false)).await;
    let slow = Arc::new(Leadspace { ready_after: std::time::Duration::from_secs(10), ..Leadspace::default() });
    w.app = app(w.store.clone(), slow.clone());
    let stop_at = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(5));

    let cut = run_file(&w.app, &job(), Source::Buy { stop_at, large: Some(&w.executions) }).await.unwrap();

    assert_eq!(cut.outcome, Outcome::Enriched);
    let (status, rows, unanswered) = summary_of(&w.store);
    assert_eq!((status.as_str(), rows, unanswered), ("partial", 20, 20), "bought, not yet answered");
    let bought = slow.total();
    assert!(bought > 0, "bulks were in flight at the deadline");
    let next = deliver(&w.app, &job(), &w.executions).await.unwrap();
    assert_eq!(next.outcome, Outcome::Enriched);
    assert_eq!(summary_of(&w.store), ("complete".into(), 20, 0));
    assert_eq!((slow.total(), slow.twice()), (20, vec![]), "what was in flight was collected, not bought again");
}
