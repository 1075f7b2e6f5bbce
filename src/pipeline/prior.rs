//! Finishing a partial run costs only what is missing: the answers a previous run already wrote
//! (for the same ETag) are read back from its output and reused, so only the companies whose
//! rows were `failed` or `not_attempted` are sent again.

use serde_json::Value;

use super::companies::CompanyTable;
use crate::enrichment::{COLUMNS, Enrichment, RowStatus};
use crate::error::JobError;
use crate::mapping::{FieldMapping, ResolvedMapping};
use crate::records::{Format, Layout, ReadError, Row, RowStream};
use crate::storage::{ObjectStore, StorageError};

fn status_from(text: &str) -> Option<RowStatus> {
    Some(match text {
        "enriched" => RowStatus::Enriched,
        "not_matched" => RowStatus::NotMatched,
        "low_confidence" => RowStatus::LowConfidence,
        "invalid_input" => RowStatus::InvalidInput,
        _ => return None, // failed, not_attempted, or unknown: ask again
    })
}

/// Undoes the writer's formula neutralisation, so a reused value is Leadspace's own.
fn restore(value: &str) -> String {
    match value.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_string(),
        _ => value.to_string(),
    }
}

/// Reads our columns from one output row.
fn enrichment_of(row: &Row, positions: &[Option<usize>]) -> Option<Enrichment> {
    let field = |i: usize| -> String {
        match row {
            Row::Csv(record) => positions[i].and_then(|p| record.get(p)).map(restore).unwrap_or_default(),
            Row::Json(json) => match json.object.get(COLUMNS[i]) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
            Row::Invalid(_) => String::new(),
        }
    };
    let status = status_from(&field(0))?;
    let error = Some(field(1)).filter(|e| !e.is_empty());
    Some(Enrichment::with_attributes(status, error, (2..COLUMNS.len()).map(field)))
}

/// Final answers found in the previous output, by company number; `None` where there is none.
pub async fn prior_answers(
    store: &dyn ObjectStore,
    bucket: &str,
    output_key: &str,
    format: Format,
    mapping: &FieldMapping,
    companies: &CompanyTable,
) -> Result<Vec<Option<Enrichment>>, JobError> {
    let mut answers = vec![None; companies.len()];
    let body = match store.get(bucket, output_key, None).await {
        Ok(body) => body,
        // No previous output: everything is asked again.
        Err(StorageError::NotFound { .. }) => return Ok(answers),
        Err(other) => return Err(other.into()),
    };
    let read_error =
        |source: ReadError| JobError::Read { bucket: bucket.to_string(), key: output_key.to_string(), source };
    // Our own output, larger than its input by the leadspace columns: no limit.
    let mut stream = match RowStream::open(body, format, u64::MAX).await {
        Ok(stream) => stream,
        Err(ReadError::Malformed(_)) => return Ok(answers),
        Err(io) => return Err(read_error(io)),
    };
    let (resolved, positions): (Result<ResolvedMapping, _>, Vec<Option<usize>>) = match &stream.layout {
        Layout::Csv { columns, .. } => (
            FieldMapping::resolve_columns(Some(mapping), columns),
            COLUMNS.iter().map(|c| columns.iter().position(|h| h == c)).collect(),
        ),
        Layout::JsonLines { first_object } => {
            (FieldMapping::resolve_fields(Some(mapping), first_object.as_ref()), vec![None; COLUMNS.len()])
        }
    };
    let Ok(resolved) = resolved else {
        // The previous output no longer matches the mapping: nothing to reuse.
        return Ok(answers);
    };
    while let Some(batch) = stream.next_batch().await {
        let batch = match batch {
            Ok(batch) => batch,
            Err(ReadError::Malformed(_)) => break,
            Err(io) => return Err(read_error(io)),
        };
        for row in &batch {
            let Some(company) = resolved.query(row).ok().and_then(|q| companies.lookup(&q)) else { continue };
            if let Some(enrichment) = enrichment_of(row, &positions) {
                answers[company as usize].get_or_insert(enrichment);
            }
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralised_values_are_restored_and_plain_ones_kept() {
        assert_eq!(restore("'=HYPERLINK(1)"), "=HYPERLINK(1)");
        assert_eq!(restore("'+1-555-0100"), "+1-555-0100");
        assert_eq!(restore("O'Brien"), "O'Brien");
        assert_eq!(restore("'quoted'"), "'quoted'");
    }

    #[test]
    fn only_final_statuses_are_reused() {
        assert_eq!(status_from("enriched"), Some(RowStatus::Enriched));
        assert_eq!(status_from("failed"), None);
        assert_eq!(status_from("not_attempted"), None);
    }
}
