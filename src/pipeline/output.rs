//! Pass 2 and the end of a run: every row once, in order, with its company's answer, streamed
//! to S3; then the summary, last, and the journal deleted once the version is complete.

use std::borrow::Cow;

use super::answers::journal::Journal;
use super::answers::keep_answers;
use super::close;
use super::job::{JobReport, Outcome};
use super::report::Profile;
use super::run::Run;
use super::scan::{NO_COMPANY, Scan, open, read_error};
use super::summary::{LeadspaceCounts, Reused, RowCounts, RunStatus};
use crate::cache::CacheCounts;
use crate::chain::error_chain;
use crate::enrichment::{Enrichment, RowStatus};
use crate::error::{JobError, RunError};
use crate::mapping::NoQuery;
use crate::records::{Format, RowWriter};
use crate::storage::{OutputUpload, PART_SIZE};

/// What a run learned about its companies, for pass 2 and the summary.
pub struct Enriched {
    /// One per company, not yet judged against MIN_CONFIDENCE (pass 2 judges each row's).
    pub answers: Vec<Enrichment>,
    /// When each answer was bought (seconds since the epoch; 0 where there is none).
    pub bought_at: Vec<i64>,
    /// Why Leadspace work ended early, if it did.
    pub stopped: Option<String>,
    pub leadspace: LeadspaceCounts,
    pub cache: Option<CacheCounts>,
    pub reused: Reused,
}

/// The answers kept for the next version and pass 2, side by side, then the summary: every
/// row with its company's answer. Once the summary says the version is complete, its journal
/// has served and is deleted.
pub async fn finish(
    run: &Run<'_>,
    format: Format,
    scan: &Scan,
    enriched: Enriched,
    journal: &Journal,
) -> Result<JobReport, JobError> {
    run.ensure_lease()?;
    let Enriched { answers, bought_at, stopped, leadspace, cache, reused } = enriched;
    // Both read the answers; each works while the other waits on S3 (pass 2 first: its read of
    // the file is under way while the answers are encoded). The summary waits for both, so a
    // complete version always has its answers kept. A failed pass 2 still lets the answers be
    // kept: they are what the next version reuses.
    let (written, kept) =
        tokio::join!(write_rows(run, format, scan, &answers), keep_answers(run, scan, &answers, &bought_at));
    drop((answers, bought_at));
    let (rows, profile) = match written {
        Ok(written) => written,
        Err(error) => {
            if let Err(kept) = kept {
                tracing::warn!(error = %error_chain(&kept), "could not keep the answers for the next version");
            }
            return close::stopped(run, error, Some(scan)).await;
        }
    };
    // Not kept: no summary, so Lambda's retry reads the journal and tries again.
    kept?;
    let (status, error) = match (stopped, rows.unfinished()) {
        (Some(stop), _) => (RunStatus::Partial, Some(stop)),
        (None, 0) => (RunStatus::Complete, None),
        (None, n) => (
            RunStatus::Partial,
            Some(format!("{n} rows have no final answer (failed); running the file again retries only them")),
        ),
    };
    let mut summary = close::summary(run, status, error.clone(), rows.clone(), leadspace, Some(scan));
    summary.cache = cache;
    summary.reused = reused;
    close::write_summary(run, &summary, &profile).await?;
    if status == RunStatus::Complete {
        match journal.clear_known().await {
            Ok(entries) => tracing::debug!(entries, "answer journal deleted"),
            // The lifecycle rule expires it; a complete summary means no run reads it.
            Err(error) => tracing::warn!(error = %error_chain(&error), "could not delete the answer journal"),
        }
    }
    tracing::info!(
        status = ?status,
        rows = rows.total,
        enriched = rows.enriched,
        requests = summary.leadspace.requests,
        reused = summary.reused.journal + summary.reused.previous_version,
        elapsed_ms = run.elapsed_ms(),
        "job finished"
    );
    Ok(JobReport {
        status: Some(status),
        output_key: Some(run.paths.output_key.clone()),
        summary_key: Some(run.paths.summary_key.clone()),
        rows: Some(rows),
        message: error,
        ..JobReport::new(run.job, Outcome::Enriched)
    })
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

/// Every row once, in order, with its company's answer; streamed to S3. The upload is aborted
/// on any failure, so a half-written output never replaces a previous one.
async fn write_rows(
    run: &Run<'_>,
    format: Format,
    scan: &Scan,
    answers: &[Enrichment],
) -> Result<(RowCounts, Profile), RunError> {
    let min_confidence = run.app.config.min_confidence;
    let mut stream = open(run, format).await?;
    let write_error = |source: std::io::Error| {
        RunError::Job(JobError::Write { bucket: run.paths.bucket.clone(), key: run.paths.output_key.clone(), source })
    };
    let mut writer = RowWriter::new(format, &stream.layout, scan.output_bom()).map_err(write_error)?;
    // A company is profiled for the report at its first row.
    let mut profiled = vec![false; answers.len()];
    let mut upload =
        OutputUpload::new(run.app.store.clone(), &run.paths.bucket, &run.paths.output_key, format.content_type());
    let mut rows = RowCounts::default();
    let mut profile = Profile::default();
    let written: Result<(), RunError> = async {
        while let Some(chunk) = stream.next_chunk().await {
            let chunk = chunk.map_err(|error| read_error(run, error))?;
            for row in &chunk {
                let answer: Cow<'_, Enrichment> = match scan.row_companies.get(rows.total as usize).copied() {
                    Some(company) if company != NO_COMPANY => {
                        let company = company as usize;
                        let answer = answers[company].judged(min_confidence);
                        if !std::mem::replace(&mut profiled[company], true) {
                            profile.add(&answer, || scan.companies.query(company).name);
                        }
                        answer
                    }
                    other => Cow::Owned(match other.map(|_| scan.mapping.query(row)) {
                        Some(Err(why)) => row_without_company(&why),
                        _ => row_changed(),
                    }),
                };
                let answer = answer.as_ref();
                rows.count(answer.status);
                writer.write(row, answer).map_err(write_error)?;
                if writer.pending_len() >= PART_SIZE {
                    upload.write(writer.take()).await?;
                }
            }
            stream.recycle(chunk);
        }
        Ok(())
    }
    .await;
    let all_rows = written.and_then(|()| {
        // The ETag pin makes this impossible unless S3 served different bytes; never write an
        // output, or report counts, that do not add up.
        if rows.total != scan.rows {
            return Err(RunError::Unusable(format!(
                "the object read {} rows the first time and {} the second",
                scan.rows, rows.total
            )));
        }
        writer.finish().map_err(write_error)
    });
    let rest = match all_rows {
        Ok(rest) => rest,
        Err(error) => {
            upload.abort().await;
            return Err(error);
        }
    };
    upload.finish(rest).await?;
    Ok((rows, profile))
}
