//! The cross-run answer cache (ENRICHMENT_CACHE_TTL_DAYS): a company Leadspace answered within
//! the TTL is answered from a DynamoDB table instead of being sent, and paid for, again. It
//! works across files, refreshes, and the batches of one big file.
//!
//! Items are keyed by a SHA-256 digest of the company's match key, never by its name, so the
//! table holds Leadspace's firmographics and no customer value. Only final answers are kept
//! (`enriched`, whole, whatever MIN_CONFIDENCE is, and `not_matched`); failures never are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use aws_smithy_types::error::display::DisplayErrorContext;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::company::Companies;
use crate::enrichment::{COLUMNS, Enrichment, RowStatus};

/// Changing how answers are stored changes this, so old items are simply never found.
const KEY_VERSION: &str = "v1";
/// DynamoDB's limits: 100 keys per BatchGetItem, 25 items per BatchWriteItem.
const GET_CHUNK: usize = 100;
const PUT_CHUNK: usize = 25;
/// Cache requests outstanding at once; the table is on-demand, so this bounds our own memory
/// and connection count rather than its throughput.
const CONCURRENCY: usize = 8;
/// Rounds of resending what DynamoDB left unprocessed (it throttles by returning them).
const UNPROCESSED_ROUNDS: u32 = 5;

/// One company's answer as the table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    pub answer: Enrichment,
    /// Seconds since the Unix epoch.
    pub enriched_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("the enrichment cache table {table:?} could not be {action}")]
pub struct CacheError {
    pub table: String,
    pub action: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where entries live: DynamoDB in production, a map in unit tests.
#[async_trait]
pub trait CacheTable: Send + Sync {
    /// The entries stored under `keys`, in any order; keys with none are left out.
    async fn get(&self, keys: &[String]) -> Result<Vec<CacheEntry>, CacheError>;
    /// Stores `entries` (at most `PUT_CHUNK`), to be deleted by the table's TTL at `expires_at`.
    async fn put(&self, entries: &[CacheEntry], expires_at: i64) -> Result<(), CacheError>;
}

/// What the cache did for one run, reported in its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheCounts {
    /// Companies answered from the cache instead of Leadspace.
    pub hits: u64,
    /// Leadspace credits those hits saved: one per enriched company not sent (Leadspace
    /// charges matches, not misses).
    pub credits_saved: u64,
    /// Answers stored for later runs.
    pub stored: u64,
    /// Cache requests that failed; their companies were sent to Leadspace as if not cached.
    pub errors: u64,
}

impl CacheCounts {
    pub fn add(&mut self, other: &CacheCounts) {
        self.hits += other.hits;
        self.credits_saved += other.credits_saved;
        self.stored += other.stored;
        self.errors += other.errors;
    }
}

pub struct AnswerCache {
    table: Arc<dyn CacheTable>,
    ttl: Duration,
    /// Which Leadspace answered (its base URL): a test gateway's answers never serve production.
    namespace: String,
}

impl AnswerCache {
    pub fn new(table: Arc<dyn CacheTable>, ttl: Duration, namespace: &str) -> Self {
        AnswerCache { table, ttl, namespace: namespace.to_string() }
    }

    /// The item key for a match key asked of the Leadspace at `namespace`: a digest, so no
    /// company name is stored.
    pub fn key_for(namespace: &str, match_key: &str) -> String {
        let digest = Sha256::new()
            .chain_update(KEY_VERSION)
            .chain_update([0x1e])
            .chain_update(namespace)
            .chain_update([0x1e])
            .chain_update(match_key)
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fresh answers stored for the `wanted` companies, as (company, answer, when it was
    /// bought). A failed
    /// cache request is counted and its companies are left to Leadspace: the cache saves
    /// credits, it never stops a run.
    pub async fn recall(
        &self,
        companies: &(impl Companies + ?Sized),
        wanted: &[usize],
        now: i64,
        counts: &mut CacheCounts,
    ) -> Vec<(usize, Enrichment, i64)> {
        let oldest = now - self.ttl.as_secs() as i64;
        let mut lookups = futures::stream::iter(wanted.chunks(GET_CHUNK))
            .map(|chunk| async move {
                let keys: Vec<String> =
                    chunk.iter().map(|&i| Self::key_for(&self.namespace, &companies.match_key(i))).collect();
                let found = self.table.get(&keys).await;
                (chunk, keys, found)
            })
            .buffer_unordered(CONCURRENCY);
        let mut hits = Vec::new();
        while let Some((chunk, keys, found)) = lookups.next().await {
            let entries = match found {
                Ok(entries) => entries,
                Err(error) => {
                    counts.errors += 1;
                    tracing::warn!(
                        error = %DisplayErrorContext(&error),
                        companies = chunk.len(),
                        "cache lookup failed; sending these companies"
                    );
                    continue;
                }
            };
            let company_of: HashMap<&str, usize> = keys.iter().map(String::as_str).zip(chunk.iter().copied()).collect();
            for entry in entries {
                if entry.enriched_at < oldest || entry.enriched_at > now + CLOCK_SKEW_SECONDS {
                    continue;
                }
                if let Some(&company) = company_of.get(entry.key.as_str()) {
                    hits.push((company, entry.answer, entry.enriched_at));
                }
            }
        }
        counts.hits += hits.len() as u64;
        counts.credits_saved +=
            hits.iter().filter(|(_, answer, _)| answer.status == RowStatus::Enriched).count() as u64;
        hits
    }

    /// Stores the final answers among `fresh` companies (just answered by Leadspace).
    pub async fn remember(
        &self,
        companies: &(impl Companies + ?Sized),
        answers: &[Enrichment],
        fresh: &[usize],
        now: i64,
        counts: &mut CacheCounts,
    ) {
        let expires_at = now + self.ttl.as_secs() as i64;
        let worth_keeping: Vec<usize> = fresh.iter().copied().filter(|&i| is_final(&answers[i])).collect();
        let mut puts = futures::stream::iter(worth_keeping.chunks(PUT_CHUNK))
            .map(|chunk| async move {
                let entries: Vec<CacheEntry> = chunk
                    .iter()
                    .map(|&i| CacheEntry {
                        key: Self::key_for(&self.namespace, &companies.match_key(i)),
                        answer: answers[i].clone(),
                        enriched_at: now,
                    })
                    .collect();
                (entries.len(), self.table.put(&entries, expires_at).await)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some((stored, result)) = puts.next().await {
            match result {
                Ok(()) => counts.stored += stored as u64,
                Err(error) => {
                    counts.errors += 1;
                    tracing::warn!(
                        error = %DisplayErrorContext(&error),
                        companies = stored,
                        "storing answers in the cache failed"
                    );
                }
            }
        }
    }
}

/// An entry written by a container whose clock runs ahead is still trusted this far ahead.
const CLOCK_SKEW_SECONDS: i64 = 300;

/// Leadspace's own answer about the company, the same next time it is asked.
fn is_final(answer: &Enrichment) -> bool {
    matches!(answer.status, RowStatus::Enriched | RowStatus::NotMatched)
}

/// The cache in a DynamoDB table with a string partition key `company_key` and TTL on
/// `expires_at`.
pub struct DynamoCacheTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const KEY: &str = "company_key";
const STATUS: &str = "status";
const ANSWER: &str = "answer";
const ENRICHED_AT: &str = "enriched_at";
const EXPIRES_AT: &str = "expires_at";

impl DynamoCacheTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoCacheTable { client, table }
    }

    fn error(&self, action: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> CacheError {
        CacheError { table: self.table.clone(), action, source: Box::new(source) }
    }

    fn unprocessed_error(&self, action: &'static str, left: usize) -> CacheError {
        let why = format!("DynamoDB still left {left} items unprocessed after {UNPROCESSED_ROUNDS} rounds (throttled)");
        CacheError { table: self.table.clone(), action, source: why.into() }
    }
}

#[async_trait]
impl CacheTable for DynamoCacheTable {
    async fn get(&self, keys: &[String]) -> Result<Vec<CacheEntry>, CacheError> {
        let key_items = keys.iter().map(|k| HashMap::from([(KEY.to_string(), AttributeValue::S(k.clone()))])).collect();
        let mut request =
            KeysAndAttributes::builder().set_keys(Some(key_items)).build().map_err(|e| self.error("read", e))?;
        let mut entries = Vec::with_capacity(keys.len());
        for round in 0..UNPROCESSED_ROUNDS {
            if round > 0 {
                tokio::time::sleep(backoff(round)).await;
            }
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.error("read", e))?;
            let items = output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
            entries.extend(items.iter().filter_map(entry_from_item));
            match output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(left) if !left.keys.is_empty() => request = left,
                _ => return Ok(entries),
            }
        }
        Err(self.unprocessed_error("read", request.keys.len()))
    }

    async fn put(&self, entries: &[CacheEntry], expires_at: i64) -> Result<(), CacheError> {
        let mut writes: Vec<WriteRequest> = Vec::with_capacity(entries.len());
        for entry in entries {
            let put = PutRequest::builder().set_item(Some(item_from_entry(entry, expires_at))).build();
            writes.push(WriteRequest::builder().put_request(put.map_err(|e| self.error("written", e))?).build());
        }
        for round in 0..UNPROCESSED_ROUNDS {
            if round > 0 {
                tokio::time::sleep(backoff(round)).await;
            }
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, writes)
                .send()
                .await
                .map_err(|e| self.error("written", e))?;
            match output.unprocessed_items.and_then(|mut u| u.remove(&self.table)) {
                Some(left) if !left.is_empty() => writes = left,
                _ => return Ok(()),
            }
        }
        Err(self.unprocessed_error("written", writes.len()))
    }
}

fn backoff(round: u32) -> Duration {
    Duration::from_millis(50 << round.min(6))
}

fn item_from_entry(entry: &CacheEntry, expires_at: i64) -> HashMap<String, AttributeValue> {
    // Named values, empty ones left out: readable in the console, and independent of the
    // output's column order.
    let answer: HashMap<String, AttributeValue> = COLUMNS[2..]
        .iter()
        .zip(entry.answer.attributes())
        .filter(|(_, value)| !value.is_empty())
        .map(|(column, value)| (column.to_string(), AttributeValue::S(value.to_string())))
        .collect();
    HashMap::from([
        (KEY.to_string(), AttributeValue::S(entry.key.clone())),
        (STATUS.to_string(), AttributeValue::S(entry.answer.status.as_str().to_string())),
        (ANSWER.to_string(), AttributeValue::M(answer)),
        (ENRICHED_AT.to_string(), AttributeValue::N(entry.enriched_at.to_string())),
        (EXPIRES_AT.to_string(), AttributeValue::N(expires_at.to_string())),
    ])
}

/// An item this version cannot read is a miss, never an error: the company is simply sent.
fn entry_from_item(item: &HashMap<String, AttributeValue>) -> Option<CacheEntry> {
    let key = item.get(KEY)?.as_s().ok()?.clone();
    let status = match item.get(STATUS)?.as_s().ok()?.as_str() {
        "enriched" => RowStatus::Enriched,
        "not_matched" => RowStatus::NotMatched,
        _ => return None,
    };
    let enriched_at = item.get(ENRICHED_AT)?.as_n().ok()?.parse().ok()?;
    let values = item.get(ANSWER).and_then(|a| a.as_m().ok());
    let attributes: Vec<&str> = COLUMNS[2..]
        .iter()
        .map(|column| values.and_then(|v| v.get(*column)).and_then(|v| v.as_s().ok()).map_or("", String::as_str))
        .collect();
    Some(CacheEntry { key, answer: Enrichment::with_attributes(status, None, attributes), enriched_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::CompanyQuery;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MapTable {
        entries: Mutex<HashMap<String, CacheEntry>>,
        fail: bool,
    }

    #[async_trait]
    impl CacheTable for MapTable {
        async fn get(&self, keys: &[String]) -> Result<Vec<CacheEntry>, CacheError> {
            if self.fail {
                return Err(CacheError { table: "t".into(), action: "read", source: "down".into() });
            }
            let entries = self.entries.lock().unwrap();
            Ok(keys.iter().filter_map(|k| entries.get(k).cloned()).collect())
        }
        async fn put(&self, entries: &[CacheEntry], _expires_at: i64) -> Result<(), CacheError> {
            assert!(entries.len() <= PUT_CHUNK);
            let mut stored = self.entries.lock().unwrap();
            stored.extend(entries.iter().map(|e| (e.key.clone(), e.clone())));
            Ok(())
        }
    }

    fn companies(names: &[&str]) -> Vec<CompanyQuery> {
        names.iter().map(|n| CompanyQuery { name: n.to_string(), ..Default::default() }).collect()
    }

    fn answer(name: &str) -> Enrichment {
        Enrichment::with_attributes(RowStatus::Enriched, None, ["id", name])
    }

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn final_answers_come_back_within_the_ttl_and_failures_are_never_kept() {
        let table = Arc::new(MapTable::default());
        let cache = AnswerCache::new(table.clone(), Duration::from_secs(30 * DAY as u64), "https://ls");
        let names = companies(&["Contoso", "Fabrikam", "Northwind", "Tailspin"]);
        let answers = vec![
            answer("CONTOSO"),
            Enrichment::without_attributes(RowStatus::NotMatched, None),
            Enrichment::without_attributes(RowStatus::Failed, Some("5xx".into())),
            Enrichment::without_attributes(RowStatus::NotAttempted, None),
        ];
        let mut counts = CacheCounts::default();
        cache.remember(&names[..], &answers, &[0, 1, 2, 3], 1_000 * DAY, &mut counts).await;
        assert_eq!(counts.stored, 2);

        let mut hits = cache.recall(&names[..], &[0, 1, 2, 3], 1_029 * DAY, &mut counts).await;
        hits.sort_by_key(|(i, _, _)| *i);
        assert_eq!(hits, vec![(0, answers[0].clone(), 1_000 * DAY), (1, answers[1].clone(), 1_000 * DAY)]);
        assert_eq!((counts.hits, counts.credits_saved), (2, 1), "a not_matched answer cost no credit");

        let expired = cache.recall(&names[..], &[0, 1], 1_031 * DAY, &mut CacheCounts::default()).await;
        assert!(expired.is_empty(), "entries older than the TTL are misses");
    }

    #[tokio::test]
    async fn the_same_company_spelt_differently_is_one_entry_and_no_name_is_stored() {
        let table = Arc::new(MapTable::default());
        let cache = AnswerCache::new(table.clone(), Duration::from_secs(DAY as u64), "https://ls");
        let mut counts = CacheCounts::default();
        cache.remember(&companies(&["Contoso Ltd"])[..], &[answer("CONTOSO")], &[0], 0, &mut counts).await;
        let hits = cache.recall(&companies(&["CONTOSO LTD"])[..], &[0], 10, &mut counts).await;
        assert_eq!(hits.len(), 1);
        let keys: Vec<String> = table.entries.lock().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].len() == 64 && keys[0].chars().all(|c| c.is_ascii_hexdigit()), "{}", keys[0]);
    }

    #[tokio::test]
    async fn a_cache_that_is_down_is_a_miss_counted_as_an_error() {
        let cache =
            AnswerCache::new(Arc::new(MapTable { fail: true, ..Default::default() }), Duration::from_secs(60), "x");
        let mut counts = CacheCounts::default();
        let hits = cache.recall(&companies(&["a", "b"])[..], &[0, 1], 0, &mut counts).await;
        assert!(hits.is_empty());
        assert_eq!((counts.hits, counts.errors), (0, 1));
    }

    #[test]
    fn items_round_trip_through_the_dynamodb_shape() {
        let entry = CacheEntry { key: "k".into(), answer: answer("CONTOSO"), enriched_at: 42 };
        let item = item_from_entry(&entry, 99);
        assert_eq!(item[EXPIRES_AT], AttributeValue::N("99".into()));
        assert_eq!(entry_from_item(&item), Some(entry));
        let not_matched = CacheEntry {
            key: "n".into(),
            answer: Enrichment::without_attributes(RowStatus::NotMatched, None),
            enriched_at: 1,
        };
        assert_eq!(entry_from_item(&item_from_entry(&not_matched, 2)), Some(not_matched));
    }
}
