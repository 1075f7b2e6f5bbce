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

use super::answer::{AnswerBook, Origin};
use crate::company::{Companies, digest_of, external_id};
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
    async fn answered(&self, bulk: Option<&str>, answers: &[(u128, Enrichment)]) -> Result<(), StorageError>;
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
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str, run: &str) -> Self {
        Journal { store, bucket: bucket.to_string(), prefix: prefix.to_string(), run: run.to_string() }
    }

    /// The same journal, written to a folder of its own (one workflow batch's), so that a
    /// retry of that part reads back only its own entries.
    pub fn part(&self, name: &str) -> Journal {
        Journal {
            store: self.store.clone(),
            bucket: self.bucket.clone(),
            prefix: format!("{}{name}/", self.prefix),
            run: self.run.clone(),
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

    /// Deletes the whole journal: the run it served is complete, or `force` starts a new one.
    pub async fn clear(&self) -> Result<usize, StorageError> {
        crate::storage::delete_prefix(self.store.as_ref(), &self.bucket, &self.prefix).await
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
        let lines =
            answers.iter().map(|(digest, answer, bought_at)| AnswerLine::new(*digest, answer, Some(*bought_at)));
        self.write_answers(&format!("a-{}.jsonl", random_name()), &header, lines).await
    }

    async fn delete_submission(&self, key: &str) {
        if let Err(error) = self.store.delete(&self.bucket, key).await {
            // Left behind, it is polled again next time, finds nothing and is forgotten then.
            tracing::warn!(error = %error, "could not remove a lost bulk from the journal");
        }
    }

    async fn write_answers(
        &self,
        name: &str,
        header: &AnswersHeader,
        lines: impl Iterator<Item = AnswerLine>,
    ) -> Result<(), StorageError> {
        let key = format!("{}{name}", self.prefix);
        let error = |e| serialise("PutObject", &key, &self.bucket, e);
        let mut body = serde_json::to_vec(header).map_err(error)?;
        body.push(b'\n');
        for line in lines {
            serde_json::to_writer(&mut body, &line).map_err(error)?;
            body.push(b'\n');
        }
        self.store.put(&self.bucket, &key, body, "application/x-ndjson").await
    }
}

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
        self.store.put(&self.bucket, &key, body, "application/json").await
    }

    async fn answered(&self, bulk: Option<&str>, answers: &[(u128, Enrichment)]) -> Result<(), StorageError> {
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
            .map(|(digest, answer)| AnswerLine::new(*digest, answer, None));
        self.write_answers(&name, &header, lines).await
    }

    async fn forget(&self, bulk: &str) {
        self.delete_submission(&format!("{}s-{}.json", self.prefix, entry_name(bulk))).await;
    }

    async fn forget_pending(&self, pending: &PendingBulk) {
        self.delete_submission(&pending.entry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
