//! The answer journal: every answer Leadspace sends is written to S3 as soon as it arrives,
//! before it is used, and every bulk as soon as it is submitted. Leadspace bills a record when
//! it processes it, so an answer held only in memory is money one S3 503, one deadline or one
//! crash throws away. Every later run of the same version of a file (Lambda's retry, a
//! redelivery, a refresh, the workflow's next attempt) reads the journal first.
//!
//! A journal belongs to one version of one file read with one field mapping from one Leadspace
//! (`paths::StatePaths::journal`); anything else is another journal. Its objects:
//! - `s-<bulk>.json`: a bulk submitted (its poll path, when, the digests of its companies);
//! - `a-<bulk>.jsonl`: that bulk's answers: a header line, then one answer a line;
//! - `a-<random>.jsonl`: a group of single answers, or answers carried over from the file's
//!   previous version for the large-file workflow.
//!
//! A submission without answers beside it is a bulk in flight: the next run collects it before
//! it submits anything. Only final answers are written (not failures), unjudged by
//! MIN_CONFIDENCE, so that the threshold can change between runs.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::book::{AnswerBook, Origin};
use crate::chain::error_chain;
use crate::company::{Companies, digest_of, external_id, push_external_id};
use crate::enrichment::{Enrichment, RowStatus};
use crate::storage::{ObjectStore, StorageError};

/// The journal's format, in every version id: a change to it, or to how companies are digested
/// (`CompanyQuery::key_digest`), makes earlier journals another journal rather than misread.
pub const FORMAT: u32 = 1;

/// Journal objects read at once.
const READ_CONCURRENCY: usize = 16;

/// Where the journal of a run writes, and what it reads back.
#[async_trait]
pub trait AnswerJournal: Send + Sync {
    /// A bulk was submitted: Leadspace bills its records from now on.
    async fn submitted(&self, bulk: &str, companies: &[u128]) -> Result<(), StorageError>;
    /// Answers arrived (from a bulk, or a group of single calls): written before they are used.
    async fn answered(&self, bulk: Option<&str>, answers: &[(u128, &Enrichment)]) -> Result<(), StorageError>;
    /// A bulk Leadspace lost or never finished: its companies are asked again.
    async fn forget(&self, bulk: &str);
    /// A bulk an earlier run left, given up on (wherever in the journal it was written).
    async fn forget_pending(&self, pending: &PendingBulk) {
        self.forget(&pending.bulk).await;
    }
}

/// A bulk submitted by an earlier run whose answers were never written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBulk {
    pub bulk: String,
    pub submitted_at: i64,
    pub companies: Vec<u128>,
    /// Where its submission is written (a workflow batch's folder, or the journal's own).
    pub entry: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Submission {
    bulk: String,
    submitted_at: i64,
    companies: Vec<String>,
}

/// Where a group of answers came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Bought from Leadspace by the run named in the header.
    #[default]
    Leadspace,
    /// Kept from the file's previous version (each line says when it was bought).
    PreviousVersion,
}

#[derive(Debug, Serialize, Deserialize)]
struct AnswersHeader {
    run: String,
    answered_at: i64,
    #[serde(default)]
    bulk: Option<String>,
    #[serde(default)]
    provenance: Provenance,
}

/// One company's answer as written down: its digest, when it was bought (when not the
/// header's time), its status, error and Leadspace's values (trailing empty ones left out).
#[derive(Debug, Serialize, Deserialize)]
pub struct AnswerLine {
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
    s: RowStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v: Vec<String>,
}

/// `AnswerLine::new(digest, answer, bought_at)` as one JSON object, written straight from the
/// answer into `out`: the same bytes serde writes for the `AnswerLine`, without first copying
/// every value into a `String` of its own (a journal and the kept answers write one line per
/// company, 200,000 in a large file).
pub fn push_answer_line(out: &mut Vec<u8>, digest: u128, answer: &Enrichment, bought_at: Option<i64>) {
    out.extend_from_slice(b"{\"k\":\"");
    push_external_id(out, digest);
    out.push(b'"');
    if let Some(at) = bought_at {
        out.extend_from_slice(b",\"t\":");
        out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
    }
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(answer.status.as_str().as_bytes());
    out.push(b'"');
    if let Some(error) = &answer.error {
        out.extend_from_slice(b",\"e\":");
        push_json_string(out, error);
    }
    // Packed values have no trailing empty ones, as the line's `v` has none.
    if !answer.packed_values().is_empty() {
        out.extend_from_slice(b",\"v\":[");
        // Without anything to escape, each value goes between quotes as it is.
        let plain = answer.values_are_plain_json();
        for (n, value) in answer.packed().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if plain {
                out.push(b'"');
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
            } else {
                push_json_string(out, value);
            }
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// `text` as a JSON string, escaped as serde_json escapes it.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    let mut serializer = serde_json::Serializer::new(out);
    // Serialising a `str` into a `Vec` has no way to fail.
    let _ = serde::Serializer::serialize_str(&mut serializer, text);
}

impl AnswerLine {
    pub fn new(digest: u128, answer: &Enrichment, bought_at: Option<i64>) -> Self {
        let mut values: Vec<String> = answer.attributes().map(str::to_string).collect();
        let used = values.iter().rposition(|v| !v.is_empty()).map_or(0, |i| i + 1);
        values.truncate(used);
        AnswerLine { k: external_id(digest), t: bought_at, s: answer.status, e: answer.error.clone(), v: values }
    }

    pub fn digest(&self) -> Option<u128> {
        digest_of(&self.k)
    }

    pub fn bought_at(&self) -> Option<i64> {
        self.t
    }

    pub fn into_answer(self) -> Enrichment {
        Enrichment::with_attributes(self.s, self.e, self.v)
    }
}

/// Leadspace's own answer about a company, worth keeping: the same next time it is asked.
pub fn is_final(status: RowStatus) -> bool {
    !matches!(status, RowStatus::Failed | RowStatus::NotAttempted)
}

pub fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A journal in S3 (or any `ObjectStore`).
pub struct Journal {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    /// Who writes: answers this run wrote itself are not counted as reused.
    run: String,
    /// Final answers this run has written: its progress, as it buys.
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Every entry this journal read (`recall`) or wrote, for `clear_known`.
    known: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The name shared by a bulk's submission and its answers.
fn entry_name(bulk: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bulk.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn random_name() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn serialise(what: &'static str, key: &str, bucket: &str, error: serde_json::Error) -> StorageError {
    StorageError::Service { operation: what, bucket: bucket.to_string(), key: key.to_string(), source: Box::new(error) }
}

impl Journal {
    /// The journal under `prefix` (ending in `/`), written by the run named `run`.
    /// The count of final answers this run has written, as it grows.
    pub fn written(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.written.clone()
    }

    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str, run: &str) -> Self {
        Journal {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            run: run.to_string(),
            written: Arc::default(),
            known: Arc::default(),
        }
    }

    /// The same journal, written to a folder of its own (one workflow batch's), so that a
    /// retry of that part reads back only its own entries.
    pub fn part(&self, name: &str) -> Journal {
        Journal {
            store: self.store.clone(),
            bucket: self.bucket.clone(),
            prefix: format!("{}{name}/", self.prefix),
            run: self.run.clone(),
            written: self.written.clone(),
            known: self.known.clone(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Fills `book` with every answer written down for `companies`, and returns the bulks
    /// submitted but never answered. An entry that cannot be read is skipped (its companies
    /// are asked again); S3 failing is an error, since buying blind could buy twice.
    pub async fn recall(
        &self,
        companies: &(impl Companies + ?Sized),
        book: &mut AnswerBook,
    ) -> Result<Vec<PendingBulk>, StorageError> {
        let listed = self.store.list(&self.bucket, &self.prefix).await?;
        let keys: Vec<String> = listed.into_iter().map(|o| o.key).collect();
        self.note(keys.iter().cloned());
        // A submission is answered when an answers entry of the same name is anywhere in the
        // version's journal (an inline run may collect a workflow batch's bulk).
        let answered: std::collections::HashSet<&str> = keys.iter().filter_map(|k| answers_name(k)).collect();
        let store = self.store.as_ref();
        let bucket = &self.bucket;
        let mut reads = futures::stream::iter(keys.iter().filter(|k| entry_kind(k).is_some()))
            .map(|key| async move { (key, store.get_small(bucket, key).await) })
            .buffer_unordered(READ_CONCURRENCY);
        let mut pending = Vec::new();
        let mut unreadable = 0_usize;
        while let Some((key, body)) = reads.next().await {
            let Some(body) = body? else { continue };
            match entry_kind(key) {
                Some(EntryKind::Answers) if !self.apply_answers(&body, companies, book) => unreadable += 1,
                Some(EntryKind::Submission) if !submission_name(key).is_some_and(|n| answered.contains(n)) => {
                    match serde_json::from_slice::<Submission>(&body) {
                        Ok(s) => pending.push(PendingBulk {
                            bulk: s.bulk,
                            submitted_at: s.submitted_at,
                            companies: s.companies.iter().filter_map(|k| digest_of(k)).collect(),
                            entry: key.clone(),
                        }),
                        Err(_) => unreadable += 1,
                    }
                }
                _ => {}
            }
        }
        if unreadable > 0 {
            tracing::warn!(unreadable, "journal entries that could not be read were skipped");
        }
        tracing::info!(entries = keys.len(), answers = book.known(), bulks_in_flight = pending.len(), "journal read");
        Ok(pending)
    }

    /// Applies one answers entry; `false` when its header cannot be read.
    fn apply_answers(&self, body: &[u8], companies: &(impl Companies + ?Sized), book: &mut AnswerBook) -> bool {
        let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let Some(header) = lines.next().and_then(|l| serde_json::from_slice::<AnswersHeader>(l).ok()) else {
            return false;
        };
        let origin = match header.provenance {
            Provenance::PreviousVersion => Origin::PreviousVersion,
            Provenance::Leadspace if header.run == self.run => Origin::Fresh,
            Provenance::Leadspace => Origin::Journal,
        };
        for line in lines {
            let Ok(line) = serde_json::from_slice::<AnswerLine>(line) else { continue };
            let Some(company) = line.digest().and_then(|d| companies.find(d)) else { continue };
            let bought_at = line.bought_at().unwrap_or(header.answered_at);
            if is_final(line.s) {
                book.offer(company, line.into_answer(), bought_at, origin);
            }
        }
        true
    }

    /// Deletes the whole journal, listing it first: `force` starts a new one.
    pub async fn clear(&self) -> Result<usize, StorageError> {
        crate::storage::delete_prefix(self.store.as_ref(), &self.bucket, &self.prefix).await.map_err(|e| e.first)
    }

    /// Deletes every entry this journal read or wrote, without listing the journal again: the
    /// run it served is complete, and while the lease was held nothing else wrote to it. An
    /// entry left behind (a run that lost its lease) belongs to a complete version, which no run
    /// reads again; the lifecycle rule expires it.
    pub async fn clear_known(&self) -> Result<usize, StorageError> {
        let keys = std::mem::take(&mut *self.known.lock().unwrap_or_else(|e| e.into_inner()));
        let deleted = keys.len();
        self.store.delete_many(&self.bucket, &keys).await.map_err(|e| e.first)?;
        Ok(deleted)
    }

    fn note(&self, keys: impl IntoIterator<Item = String>) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).extend(keys);
    }

    /// Writes `answers` kept from the previous version, so that every answer this version uses
    /// is in its journal (the large-file workflow's last step reads only the journal).
    pub async fn carry_over(&self, answers: &[(u128, Enrichment, i64)]) -> Result<(), StorageError> {
        let header = AnswersHeader {
            run: self.run.clone(),
            answered_at: now_seconds(),
            bulk: None,
            provenance: Provenance::PreviousVersion,
        };
        let lines = answers.iter().map(|(digest, answer, bought_at)| (*digest, answer, Some(*bought_at)));
        self.write_answers(&format!("a-{}.jsonl", random_name()), &header, lines).await
    }

    async fn delete_submission(&self, key: &str) {
        if let Err(error) = self.store.delete(&self.bucket, key).await {
            // Left behind, it is polled again next time, finds nothing and is forgotten then.
            tracing::warn!(error = %error_chain(&error), "could not remove a lost bulk from the journal");
        }
    }

    async fn write_answers<'a>(
        &self,
        name: &str,
        header: &AnswersHeader,
        lines: impl Iterator<Item = (u128, &'a Enrichment, Option<i64>)>,
    ) -> Result<(), StorageError> {
        let key = format!("{}{name}", self.prefix);
        let mut body = serde_json::to_vec(header).map_err(|e| serialise("PutObject", &key, &self.bucket, e))?;
        // Room for the lines up front rather than grown by copying: a bulk's entry is some
        // 160 KiB, beyond the allocator's mmap threshold, where pages that are never written
        // cost no memory.
        let room = lines.size_hint().1.unwrap_or(0).saturating_mul(LINE_BYTES_RESERVED);
        body.reserve(room.min(MAX_ENTRY_BYTES_RESERVED));
        body.push(b'\n');
        for (digest, answer, bought_at) in lines {
            push_answer_line(&mut body, digest, answer, bought_at);
            body.push(b'\n');
        }
        self.note([key.clone()]);
        self.store.put(&self.bucket, &key, body, "application/x-ndjson").await
    }
}

/// What an answers entry reserves for each of its lines (a line with every value is about 330
/// bytes; a longer one grows the entry as usual).
const LINE_BYTES_RESERVED: usize = 512;
/// ... up to this much: a carried-over entry can hold every company of a file.
const MAX_ENTRY_BYTES_RESERVED: usize = 1024 * 1024;

/// The bulk name of a submission entry (`s-<name>.json`).
fn submission_name(key: &str) -> Option<&str> {
    key.rsplit('/').next()?.strip_prefix("s-")?.strip_suffix(".json")
}

/// The bulk name of an answers entry (`a-<name>.jsonl`).
fn answers_name(key: &str) -> Option<&str> {
    key.rsplit('/').next()?.strip_prefix("a-")?.strip_suffix(".jsonl")
}

enum EntryKind {
    Submission,
    Answers,
}

fn entry_kind(key: &str) -> Option<EntryKind> {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.starts_with("s-") && name.ends_with(".json") {
        Some(EntryKind::Submission)
    } else if name.starts_with("a-") && name.ends_with(".jsonl") {
        Some(EntryKind::Answers)
    } else {
        None
    }
}

#[async_trait]
impl AnswerJournal for Journal {
    async fn submitted(&self, bulk: &str, companies: &[u128]) -> Result<(), StorageError> {
        let key = format!("{}s-{}.json", self.prefix, entry_name(bulk));
        let submission = Submission {
            bulk: bulk.to_string(),
            submitted_at: now_seconds(),
            companies: companies.iter().map(|&d| external_id(d)).collect(),
        };
        let body = serde_json::to_vec(&submission).map_err(|e| serialise("PutObject", &key, &self.bucket, e))?;
        self.note([key.clone()]);
        self.store.put(&self.bucket, &key, body, "application/json").await
    }

    async fn answered(&self, bulk: Option<&str>, answers: &[(u128, &Enrichment)]) -> Result<(), StorageError> {
        let name = format!("a-{}.jsonl", bulk.map_or_else(random_name, entry_name));
        let header = AnswersHeader {
            run: self.run.clone(),
            answered_at: now_seconds(),
            bulk: bulk.map(str::to_string),
            provenance: Provenance::Leadspace,
        };
        let lines = answers
            .iter()
            .filter(|(_, answer)| is_final(answer.status))
            .map(|&(digest, answer)| (digest, answer, None));
        self.write_answers(&name, &header, lines).await?;
        let finals = answers.iter().filter(|(_, answer)| is_final(answer.status)).count() as u64;
        self.written.fetch_add(finals, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn forget(&self, bulk: &str) {
        self.delete_submission(&format!("{}s-{}.json", self.prefix, entry_name(bulk))).await;
    }

    async fn forget_pending(&self, pending: &PendingBulk) {
        self.delete_submission(&pending.entry).await;
    }
}

/// Names one version of an object as read with one field mapping from one Leadspace: answers
/// bought under one are never applied under another.
pub fn version_id(etag: &str, mapping: &crate::mapping::FieldMapping, base_url: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(FORMAT.to_le_bytes())
        .chain_update(etag)
        .chain_update([0])
        .chain_update(mapping.to_json().to_string())
        .chain_update([0])
        .chain_update(base_url.trim_end_matches('/'))
        .finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::CompanyQuery;
    use crate::storage::{MemoryStore, Op};

    #[test]
    fn an_answer_comes_back_whole_from_its_journal_line() {
        let answer = Enrichment::with_attributes(RowStatus::Enriched, None, ["id", "CONTOSO", "", "x"]);
        let line = serde_json::to_string(&AnswerLine::new(7, &answer, Some(42))).unwrap();
        let back: AnswerLine = serde_json::from_str(&line).unwrap();
        assert_eq!((back.digest(), back.bought_at()), (Some(7), Some(42)));
        assert_eq!(back.into_answer(), answer);
        let not_matched = Enrichment::without_attributes(RowStatus::NotMatched, None);
        let line = serde_json::to_string(&AnswerLine::new(1, &not_matched, None)).unwrap();
        assert_eq!(line, r#"{"k":"00000000000000000000000000000001","s":"not_matched"}"#);
    }

    proptest::proptest! {
        #[test]
        fn an_answer_line_written_from_the_answer_is_what_serde_writes(
            digest in proptest::num::u128::ANY,
            bought_at in proptest::option::of(proptest::num::i64::ANY),
            status in proptest::sample::select(vec![RowStatus::Enriched, RowStatus::NotMatched, RowStatus::InvalidInput]),
            error in proptest::option::of("[a-z\"\\\n\u{1}é ]{0,8}"),
            // Mostly values with nothing to escape (the shortcut), some with something.
            values in proptest::collection::vec("[a-c\u{7f}é+ ]{0,5}|[a-c\"\\\t\n\u{7f}\u{1f}é+ ]{0,5}", 0..21),
        ) {
            let answer = Enrichment::with_attributes(status, error, values);
            let mut ours = Vec::new();
            push_answer_line(&mut ours, digest, &answer, bought_at);
            let theirs = serde_json::to_vec(&AnswerLine::new(digest, &answer, bought_at)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }

    #[test]
    fn an_external_id_is_the_digest_in_32_hex_digits() {
        for digest in [0, 7, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(external_id(digest), format!("{digest:032x}"));
            assert_eq!(digest_of(&external_id(digest)), Some(digest));
        }
    }

    #[test]
    fn a_bulk_is_answered_when_its_answers_sit_beside_its_submission() {
        let submission = format!("p/journal/x.csv/v/s-{}.json", entry_name("/v3/enrichment/results/1"));
        let answers = format!("p/journal/x.csv/v/a-{}.jsonl", entry_name("/v3/enrichment/results/1"));
        assert!(matches!(entry_kind(&submission), Some(EntryKind::Submission)));
        assert!(matches!(entry_kind(&answers), Some(EntryKind::Answers)));
        assert_eq!(submission_name(&submission), answers_name(&answers));
        assert_eq!(answers_name("p/journal/b0000000000/a-x.jsonl"), Some("x"), "wherever it is written");
        assert!(entry_kind("p/journal/x.csv/v/notes.txt").is_none());
        assert!(!is_final(RowStatus::Failed) && is_final(RowStatus::InvalidInput));
    }

    const PREFIX: &str = "enriched/_state/journal/x.csv/v1/";
    const BULK: &str = "/v3/enrichment/results/1";

    fn names(names: &[&str]) -> Vec<CompanyQuery> {
        names.iter().map(|n| CompanyQuery { name: n.to_string(), ..Default::default() }).collect()
    }

    fn digests(companies: &[CompanyQuery]) -> Vec<u128> {
        companies.iter().map(CompanyQuery::key_digest).collect()
    }

    fn journal(store: &Arc<MemoryStore>, run: &str) -> Journal {
        Journal::new(store.clone(), "b", PREFIX, run)
    }

    fn enriched(name: &str) -> Enrichment {
        Enrichment::with_attributes(RowStatus::Enriched, None, ["id", name])
    }

    /// What a run reading `journal` finds: the answers it knows, and the bulks still in flight.
    async fn recall(journal: &Journal, companies: &[CompanyQuery]) -> (AnswerBook, Vec<PendingBulk>) {
        let mut book = AnswerBook::new(companies.len());
        let pending = journal.recall(companies, &mut book).await.unwrap();
        (book, pending)
    }

    #[tokio::test]
    async fn a_submitted_bulk_is_pending_until_its_answers_are_written_and_then_its_answers_are_known() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "xFabrikam"]);
        let ids = digests(&companies);
        let first = journal(&store, "run-1");
        first.submitted(BULK, &ids).await.unwrap();

        let (book, pending) = recall(&journal(&store, "run-2"), &companies).await;
        assert_eq!(book.known(), 0);
        assert_eq!(pending.len(), 1);
        let bulk = &pending[0];
        assert_eq!((bulk.bulk.as_str(), &bulk.companies), (BULK, &ids));
        assert_eq!(bulk.entry, format!("{PREFIX}s-{}.json", entry_name(BULK)));
        assert!((now_seconds() - bulk.submitted_at).abs() <= 1);

        let not_matched = Enrichment::without_attributes(RowStatus::NotMatched, None);
        first.answered(Some(BULK), &[(ids[0], &enriched("CONTOSO")), (ids[1], &not_matched)]).await.unwrap();
        let (book, pending) = recall(&journal(&store, "run-2"), &companies).await;
        assert!(pending.is_empty(), "{pending:?}");
        assert_eq!(book.answer(0).map(|(a, _)| a), Some(&enriched("CONTOSO")));
        assert_eq!(book.answer(1).map(|(a, _)| a), Some(&not_matched));
        assert_eq!(book.reused().journal, 2, "bought by an earlier run");
    }

    #[tokio::test]
    async fn answers_a_run_wrote_itself_are_known_but_not_counted_as_reused() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        journal(&store, "run-1").answered(None, &[(digests(&companies)[0], &enriched("C"))]).await.unwrap();
        let (own, _) = recall(&journal(&store, "run-1"), &companies).await;
        assert_eq!((own.known(), own.reused().journal), (1, 0));
        let (other, _) = recall(&journal(&store, "run-2"), &companies).await;
        assert_eq!((other.known(), other.reused().journal), (1, 1));
    }

    #[tokio::test]
    async fn failed_answers_are_not_journaled_so_their_companies_are_asked_again() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "Fabrikam"]);
        let ids = digests(&companies);
        let failed = Enrichment::without_attributes(RowStatus::Failed, Some("503".into()));
        journal(&store, "run-1").answered(None, &[(ids[0], &failed), (ids[1], &enriched("F"))]).await.unwrap();
        let entry = store.peek("b", &store.keys("b")[0]).unwrap();
        assert_eq!(entry.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), 2, "a header and one answer");
        let (book, _) = recall(&journal(&store, "run-2"), &companies).await;
        assert_eq!(book.missing(), [0]);
    }

    #[tokio::test]
    async fn a_forgotten_bulk_is_no_longer_pending() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "Fabrikam"]);
        let ids = digests(&companies);
        let journal = journal(&store, "run-1");
        journal.submitted(BULK, &ids[..1]).await.unwrap();
        journal.submitted("/v3/enrichment/results/2", &ids[1..]).await.unwrap();
        journal.forget(BULK).await;
        let (_, pending) = recall(&journal, &companies).await;
        let left: Vec<&str> = pending.iter().map(|p| p.bulk.as_str()).collect();
        assert_eq!(left, ["/v3/enrichment/results/2"]);
        journal.forget_pending(&pending[0]).await;
        assert!(recall(&journal, &companies).await.1.is_empty());
        assert_eq!(store.calls(Op::Delete), 2);
    }

    #[tokio::test]
    async fn clear_deletes_the_whole_journal_of_the_version_and_nothing_beside_it() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        let ids = digests(&companies);
        let journal = journal(&store, "run-1");
        journal.submitted(BULK, &ids).await.unwrap();
        journal.answered(Some(BULK), &[(ids[0], &enriched("C"))]).await.unwrap();
        journal.part("b0000000000").submitted("/v3/enrichment/results/2", &ids).await.unwrap();
        let beside = ["enriched/_state/journal/x.csv/v2/s-0.json", "enriched/_state/journal/x.csv/v1.json"];
        for key in beside {
            store.put("b", key, b"{}".to_vec(), "application/json").await.unwrap();
        }
        assert_eq!(journal.clear().await.unwrap(), 3);
        assert_eq!(store.keys("b"), beside.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(journal.clear().await.unwrap(), 0, "an empty journal clears to nothing");
    }

    #[tokio::test]
    async fn clear_known_deletes_what_the_journal_read_and_wrote_without_listing_it() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "Fabrikam"]);
        let ids = digests(&companies);
        let earlier = journal(&store, "run-1");
        earlier.submitted(BULK, &ids[..1]).await.unwrap();
        earlier.answered(Some(BULK), &[(ids[0], &enriched("C"))]).await.unwrap();
        let beside = "enriched/_state/journal/x.csv/v2/s-0.json";
        store.put("b", beside, b"{}".to_vec(), "application/json").await.unwrap();

        let this = journal(&store, "run-2");
        recall(&this, &companies).await;
        this.submitted("/v3/enrichment/results/2", &ids[1..]).await.unwrap();
        this.part("b0000000000").answered(None, &[(ids[1], &enriched("F"))]).await.unwrap();
        let lists = store.calls(Op::List);

        assert_eq!(this.clear_known().await.unwrap(), 4, "two read, two written (one by a part)");
        assert_eq!(store.calls(Op::List), lists, "no listing");
        assert_eq!(store.keys("b"), [beside], "the whole journal is gone, nothing beside it");
    }

    #[tokio::test]
    async fn a_workflow_part_journals_in_its_own_folder_and_the_whole_journal_finds_it() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "Fabrikam"]);
        let ids = digests(&companies);
        let whole = journal(&store, "run-1");
        let part = whole.part("b0000000000");
        assert_eq!(part.prefix(), format!("{PREFIX}b0000000000/"));
        part.submitted(BULK, &ids[..1]).await.unwrap();
        assert!(store.keys("b").iter().all(|k| k.starts_with(part.prefix())), "{:?}", store.keys("b"));

        let (_, pending) = recall(&whole, &companies).await;
        assert_eq!(pending.len(), 1);
        assert!(pending[0].entry.starts_with(part.prefix()), "{}", pending[0].entry);
        let (_, elsewhere) = recall(&whole.part("b0000000001"), &companies).await;
        assert!(elsewhere.is_empty(), "another part reads only its own folder");

        part.answered(Some(BULK), &[(ids[0], &enriched("C"))]).await.unwrap();
        let (book, pending) = recall(&whole, &companies).await;
        assert!(pending.is_empty(), "{pending:?}");
        assert_eq!(book.missing(), [1]);
    }

    #[tokio::test]
    async fn a_bulk_pending_in_a_part_is_forgotten_where_it_was_written() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        let whole = journal(&store, "run-1");
        whole.part("b0000000000").submitted(BULK, &digests(&companies)).await.unwrap();
        let (_, pending) = recall(&whole, &companies).await;
        whole.forget_pending(&pending[0]).await;
        assert!(store.keys("b").is_empty(), "{:?}", store.keys("b"));
    }

    #[tokio::test]
    async fn an_unreadable_journal_entry_is_skipped_and_its_companies_asked_again() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        // Two names: a submission with answers of its name beside it is not read at all.
        for key in ["a-0000000000000000.jsonl", "s-1111111111111111.json"] {
            store.put("b", &format!("{PREFIX}{key}"), b"{\"run\":".to_vec(), "application/json").await.unwrap();
        }
        let (book, pending) = recall(&journal(&store, "run-1"), &companies).await;
        assert_eq!((book.known(), pending.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_journal_s3_fails_to_return_is_an_error_rather_than_buying_blind() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        let journal = journal(&store, "run-1");
        journal.answered(None, &[(digests(&companies)[0], &enriched("C"))]).await.unwrap();
        for op in [Op::List, Op::GetSmall] {
            store.fail_next(op, 1);
            let error = journal.recall(&companies[..], &mut AnswerBook::new(1)).await.unwrap_err();
            assert!(error.is_transient(), "{op:?}: {error}");
        }
        assert_eq!(recall(&journal, &companies).await.0.known(), 1);
    }

    #[tokio::test]
    async fn answers_carried_over_from_the_previous_version_are_recalled_as_such_with_when_they_were_bought() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        let journal = journal(&store, "run-1");
        journal.carry_over(&[(digests(&companies)[0], enriched("C"), 1_000)]).await.unwrap();
        let (book, _) = recall(&journal, &companies).await;
        assert_eq!(book.answer(0), Some((&enriched("C"), 1_000)));
        let reused = book.reused();
        assert_eq!((reused.previous_version, reused.journal), (1, 0), "even when this run wrote them");
    }

    #[test]
    fn a_version_is_its_etag_its_mapping_and_its_leadspace() {
        let mapping = |column: &str| {
            crate::mapping::FieldMapping::from_json(&format!(r#"{{"company_name": "{column}"}}"#)).unwrap()
        };
        let base = version_id("\"e1\"", &mapping("Account Name"), "https://apigw.leadspace.com");
        assert_eq!(base, version_id("\"e1\"", &mapping("Account Name"), "https://apigw.leadspace.com/"));
        assert_ne!(base, version_id("\"e2\"", &mapping("Account Name"), "https://apigw.leadspace.com"));
        assert_ne!(base, version_id("\"e1\"", &mapping("Parent Company"), "https://apigw.leadspace.com"));
        assert_ne!(base, version_id("\"e1\"", &mapping("Account Name"), "https://emulator.local"));
    }
}
