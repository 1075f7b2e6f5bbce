//! The answers behind the latest output, kept for the object's next version
//! (`OutputPaths::kept_answers_key`): each final answer with the digest of its company and when
//! it was bought. A new version of the file reuses those younger than ANSWER_MAX_AGE_DAYS, so a
//! re-upload with one new row buys one company, and the scheduled refresh re-buys only what is
//! new or old. Kept answers are used only under the field mapping and Leadspace they were bought
//! with; otherwise they are ignored and the run starts fresh.
//!
//! Written once per run, gzip-compressed, as answers are known (before the output), so that a
//! run that fails later still leaves them for the next version.

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::book::{AnswerBook, Origin};
use super::journal::{AnswerLine, FORMAT, is_final, now_seconds, push_answer_line};
use crate::company::Companies;
use crate::enrichment::Enrichment;
use crate::error::JobError;
use crate::mapping::FieldMapping;
use crate::pipeline::paths::OutputPaths;
use crate::storage::{ObjectStore, OutputUpload, PART_SIZE, StorageError};

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    /// The version of the file these answers were bought for.
    source_etag: String,
    field_mapping: Value,
    base_url: String,
    written_at: i64,
}

/// Which answers a run may take from the kept ones.
pub struct KeptFilter<'a> {
    pub etag: &'a str,
    pub mapping: &'a FieldMapping,
    pub base_url: &'a str,
    /// `None` (ANSWER_MAX_AGE_DAYS=0): no answer of another version is reused.
    pub max_age_seconds: Option<i64>,
}

fn storage_error(paths: &OutputPaths, operation: &'static str, source: std::io::Error) -> StorageError {
    StorageError::Service {
        operation,
        bucket: paths.bucket.clone(),
        key: paths.kept_answers_key(),
        source: Box::new(source),
    }
}

/// The kept answers as stored (gzip), if there are any: read apart from `offer`, so that a run
/// reads them while it reads its journal.
pub async fn fetch(store: &dyn ObjectStore, paths: &OutputPaths) -> Result<Option<Vec<u8>>, StorageError> {
    store.get_small(&paths.bucket, &paths.kept_answers_key()).await
}

/// Offers `book` every answer of `compressed` (from `fetch`) that `filter` allows; returns how
/// many it took.
pub fn offer(
    compressed: &[u8],
    filter: &KeptFilter<'_>,
    companies: &(impl Companies + ?Sized),
    book: &mut AnswerBook,
) -> u64 {
    let mut lines = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(compressed)).lines();
    let header = lines.next().and_then(Result::ok).and_then(|l| serde_json::from_str::<Header>(&l).ok());
    let Some(header) = header.filter(|h| h.format == FORMAT) else {
        tracing::info!("the kept answers are of another format; none reused");
        return 0;
    };
    if header.field_mapping != filter.mapping.to_json()
        || header.base_url.trim_end_matches('/') != filter.base_url.trim_end_matches('/')
    {
        tracing::info!("the kept answers were bought under another field mapping or Leadspace; none reused");
        book.note_ignored(
            "the answers kept from an earlier run were bought under another field mapping or LEADSPACE_BASE_URL, so \
             none was reused: this run bought its answers afresh",
        );
        return 0;
    }
    let same_version = header.source_etag == filter.etag;
    let oldest = match (same_version, filter.max_age_seconds) {
        (true, _) => i64::MIN,
        (false, Some(age)) => now_seconds() - age,
        (false, None) => return 0,
    };
    let origin = if same_version { Origin::Journal } else { Origin::PreviousVersion };
    let mut taken = 0;
    for line in lines {
        // A cut-off or damaged file keeps what was read before the damage.
        let Ok(line) = line else { break };
        let Ok(line) = serde_json::from_str::<AnswerLine>(&line) else { continue };
        let Some(company) = line.digest().and_then(|d| companies.find(d)) else { continue };
        let bought_at = line.bought_at().unwrap_or(header.written_at);
        if bought_at >= oldest && book.offer(company, line.into_answer(), bought_at, origin) {
            taken += 1;
        }
    }
    tracing::info!(reused = taken, same_version, "kept answers read");
    taken
}

/// Answer lines gathered before they go into the encoder together.
const TEXT_BATCH: usize = 64 * 1024;

/// Writes every final answer of this version with when it was bought, replacing the kept
/// answers of the previous version.
#[allow(clippy::too_many_arguments)]
pub async fn keep(
    store: Arc<dyn ObjectStore>,
    paths: &OutputPaths,
    etag: &str,
    mapping: &FieldMapping,
    base_url: &str,
    companies: &(impl Companies + ?Sized),
    answers: &[Enrichment],
    bought_at: &[i64],
) -> Result<(), JobError> {
    let key = paths.kept_answers_key();
    let header = Header {
        format: FORMAT,
        source_etag: etag.to_string(),
        field_mapping: mapping.to_json(),
        base_url: base_url.trim_end_matches('/').to_string(),
        written_at: now_seconds(),
    };
    let io = |e: std::io::Error| storage_error(paths, "PutObject", e);
    let json = |e: serde_json::Error| storage_error(paths, "PutObject", e.into());
    let mut upload = OutputUpload::new(store, &paths.bucket, &key, "application/gzip");
    // Fast compression: the file is read back once per version; CPU is what a run pays for.
    let mut gzip =
        flate2::write::GzEncoder::new(Vec::with_capacity(PART_SIZE + PART_SIZE / 8), flate2::Compression::fast());
    serde_json::to_writer(&mut gzip, &header).map_err(json)?;
    let mut result: Result<(), JobError> = Ok(());
    let mut kept = 0_u64;
    // Lines gather in `text` and go into the encoder some 64 KiB at a time: each small write
    // into deflate costs far more than the copy.
    let mut text = Vec::with_capacity(TEXT_BATCH + 4096);
    let last = answers.len().saturating_sub(1);
    for (company, answer) in answers.iter().enumerate() {
        if is_final(answer.status) {
            text.push(b'\n');
            push_answer_line(&mut text, companies.digest(company), answer, Some(bought_at[company]));
            kept += 1;
        }
        if text.len() < TEXT_BATCH && company != last {
            continue;
        }
        if let Err(error) = gzip.write_all(&text) {
            result = Err(io(error).into());
            break;
        }
        text.clear();
        // Pass 2 runs beside this, in the same task: it gets its turn between batches.
        tokio::task::yield_now().await;
        if gzip.get_ref().len() >= PART_SIZE {
            // The next part's buffer is as large as this one's, rather than grown by doubling.
            let capacity = gzip.get_ref().capacity();
            let part = std::mem::replace(gzip.get_mut(), Vec::with_capacity(capacity));
            if let Err(error) = upload.write(part).await {
                result = Err(error.into());
                break;
            }
        }
    }
    let rest = result.and_then(|()| gzip.finish().map_err(|e| io(e).into()));
    match rest {
        Ok(rest) => upload.finish(rest).await?,
        Err(error) => {
            upload.abort().await;
            return Err(error);
        }
    }
    tracing::info!(kept, "answers kept for the next version");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::CompanyQuery;
    use crate::config::Config;
    use crate::enrichment::RowStatus;
    use crate::pipeline::summary::utc_from_seconds;
    use crate::storage::{MemoryStore, Op};

    const LEADSPACE: &str = "https://apigw.leadspace.com";
    const DAY: i64 = 86_400;

    fn paths() -> OutputPaths {
        let config = Config::from_lookup(|name| (name == "LEADSPACE_SECRET_ID").then(|| "s".to_string())).unwrap();
        OutputPaths::for_object(&config, "b", "incoming/x.csv")
    }

    fn mapping(column: &str) -> FieldMapping {
        FieldMapping::from_json(&format!(r#"{{"company_name": "{column}"}}"#)).unwrap()
    }

    fn names(names: &[&str]) -> Vec<CompanyQuery> {
        names.iter().map(|n| CompanyQuery { name: n.to_string(), ..Default::default() }).collect()
    }

    fn enriched(name: &str) -> Enrichment {
        Enrichment::with_attributes(RowStatus::Enriched, None, ["id", name])
    }

    /// Keeps `answers` for the version "e1", read with the column "Account Name" from LEADSPACE.
    async fn kept(store: &Arc<MemoryStore>, companies: &[CompanyQuery], answers: &[Enrichment], bought_at: &[i64]) {
        let mapping = mapping("Account Name");
        keep(store.clone(), &paths(), "\"e1\"", &mapping, LEADSPACE, companies, answers, bought_at).await.unwrap();
    }

    /// What a run of `etag` read under `column` from `base_url` takes from the kept answers.
    async fn recalled(
        store: &MemoryStore,
        companies: &[CompanyQuery],
        etag: &str,
        column: &str,
        base_url: &str,
        max_age_seconds: Option<i64>,
    ) -> (u64, AnswerBook) {
        let mapping = mapping(column);
        let filter = KeptFilter { etag, mapping: &mapping, base_url, max_age_seconds };
        let mut book = AnswerBook::new(companies.len());
        let taken = fetch(store, &paths()).await.unwrap().map_or(0, |kept| offer(&kept, &filter, companies, &mut book));
        (taken, book)
    }

    #[tokio::test]
    async fn answers_kept_for_one_version_are_reused_by_the_next_under_the_same_mapping_and_leadspace() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "xFabrikam", "Northwind"]);
        let not_matched = Enrichment::without_attributes(RowStatus::NotMatched, None);
        let failed = Enrichment::without_attributes(RowStatus::Failed, Some("503".into()));
        let now = now_seconds();
        let answers = [enriched("CONTOSO"), not_matched.clone(), failed];
        kept(&store, &companies, &answers, &[now - 100, now - 200, now]).await;
        assert_eq!(store.calls(Op::Put), 1);

        let slash = format!("{LEADSPACE}/");
        let (taken, book) = recalled(&store, &companies, "\"e2\"", "Account Name", &slash, Some(7 * DAY)).await;
        assert_eq!(taken, 2);
        assert_eq!(book.answer(0), Some((&enriched("CONTOSO"), now - 100)));
        assert_eq!(book.answer(1), Some((&not_matched, now - 200)));
        assert_eq!(book.missing(), [2], "a failure is not kept: it is asked again");
        let reused = book.reused();
        assert_eq!((reused.previous_version, reused.journal, reused.ignored), (2, 0, None));
        assert_eq!(reused.oldest_bought_at, Some(utc_from_seconds(now - 200)));
    }

    #[tokio::test]
    async fn kept_answers_are_ignored_under_another_field_mapping() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        kept(&store, &companies, &[enriched("C")], &[now_seconds()]).await;
        let (taken, book) = recalled(&store, &companies, "\"e2\"", "Parent Company", LEADSPACE, Some(7 * DAY)).await;
        assert_eq!((taken, book.known()), (0, 0));
        assert!(book.reused().ignored.is_some_and(|why| why.contains("field mapping")));
    }

    #[tokio::test]
    async fn kept_answers_are_ignored_from_another_leadspace() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        kept(&store, &companies, &[enriched("C")], &[now_seconds()]).await;
        let other = "https://emulator.local";
        let (taken, book) = recalled(&store, &companies, "\"e2\"", "Account Name", other, Some(7 * DAY)).await;
        assert_eq!((taken, book.known()), (0, 0));
        assert!(book.reused().ignored.is_some_and(|why| why.contains("LEADSPACE_BASE_URL")));
    }

    #[tokio::test]
    async fn kept_answers_older_than_the_maximum_age_are_bought_again() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso", "Fabrikam"]);
        let now = now_seconds();
        kept(&store, &companies, &[enriched("C"), enriched("F")], &[now - 8 * DAY, now - 6 * DAY]).await;
        let (taken, book) = recalled(&store, &companies, "\"e2\"", "Account Name", LEADSPACE, Some(7 * DAY)).await;
        assert_eq!((taken, book.missing()), (1, vec![0]));
        assert_eq!(book.reused().ignored, None, "too old is not ignored: the rest are still reused");
    }

    #[tokio::test]
    async fn without_a_maximum_age_only_the_same_version_reuses_its_kept_answers_whatever_their_age() {
        let store = Arc::new(MemoryStore::new());
        let companies = names(&["Contoso"]);
        kept(&store, &companies, &[enriched("C")], &[now_seconds() - 400 * DAY]).await;
        let (taken, _) = recalled(&store, &companies, "\"e2\"", "Account Name", LEADSPACE, None).await;
        assert_eq!(taken, 0);
        let (taken, book) = recalled(&store, &companies, "\"e1\"", "Account Name", LEADSPACE, None).await;
        assert_eq!(taken, 1);
        let reused = book.reused();
        assert_eq!((reused.journal, reused.previous_version), (1, 0), "bought for this very version");
    }

    #[tokio::test]
    async fn a_file_without_kept_answers_reuses_nothing_and_ignores_nothing() {
        let store = MemoryStore::new();
        let companies = names(&["Contoso"]);
        let (taken, book) = recalled(&store, &companies, "\"e2\"", "Account Name", LEADSPACE, Some(7 * DAY)).await;
        assert_eq!((taken, book.known(), book.reused().ignored), (0, 0, None));
        assert_eq!(store.total_calls(), 1);
    }
}
