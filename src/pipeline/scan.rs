//! Pass 1: read every row once, resolve the mapping against the file, and number its unique
//! companies. Nothing is sent anywhere; a dry run stops here.

use super::run::Run;
use crate::company::{CompanyQuery, CompanyTable};
use crate::error::{JobError, RunError};
use crate::mapping::{FieldMapping, NoQuery, ResolvedMapping, field_paths};
use crate::records::{Format, Layout, ReadError, RowStream, TextEncoding, TextOrigin};

/// What pass 1 learns about the file.
pub struct Scan {
    pub mapping: ResolvedMapping,
    pub companies: CompanyTable,
    /// Each row's company number, or `NO_COMPANY`: pass 2 reads the same bytes (pinned to the
    /// ETag), so it reuses these rather than building and hashing every row's query again.
    /// Four bytes a row: 4 MB for a million rows.
    pub row_companies: Vec<u32>,
    pub rows: u64,
    pub rows_without_company: u64,
    pub origin: TextOrigin,
    pub encoding: TextEncoding,
}

/// A row that did not become a company question; pass 2 asks the mapping why.
pub const NO_COMPANY: u32 = u32::MAX;

impl Scan {
    /// Files that came from Excel (a BOM, UTF-16, Windows-1252) get a BOM back so that Excel
    /// reads the UTF-8 output correctly; files from scripts and databases do not.
    pub fn output_bom(&self) -> bool {
        self.origin.had_bom || self.encoding != TextEncoding::Utf8
    }
}

/// Opens the object's rows, pinned to the ETag the run started with.
pub async fn open(run: &Run<'_>, format: Format) -> Result<RowStream, RunError> {
    let body = run.app.store.get(&run.job.bucket, &run.job.key, Some(&run.meta.etag)).await?;
    RowStream::open(body, format, run.app.config.max_input_bytes).await.map_err(|error| read_error(run, error))
}

/// A malformed file is the file's problem; a read cut short is worth a retry.
pub fn read_error(run: &Run<'_>, error: ReadError) -> RunError {
    match error {
        ReadError::Malformed(why) => RunError::Unusable(why),
        io => RunError::Job(JobError::Read { bucket: run.job.bucket.clone(), key: run.job.key.clone(), source: io }),
    }
}

/// Pass 1: resolve `mapping` (FIELD_MAPPING, the job's, or the header's synonyms) and collect
/// the unique companies.
pub async fn scan(run: &Run<'_>, format: Format, mapping: Option<&FieldMapping>) -> Result<Scan, RunError> {
    let mut stream = open(run, format).await?;
    let resolved = match &stream.layout {
        Layout::Csv { columns, .. } => FieldMapping::resolve_columns(mapping, columns),
        Layout::JsonLines { first_object: None } if mapping.is_none() => {
            return Err(RunError::Unusable(
                "no JSON object found in the file's first lines: JSON Lines needs one {...} object per line \
                 (a file holding a single JSON array is JSON, not JSON Lines)"
                    .into(),
            ));
        }
        Layout::JsonLines { first_object } => FieldMapping::resolve_fields(mapping, first_object.as_ref()),
    };
    let mapping = resolved.map_err(|error| RunError::Unusable(error.to_string()))?;
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
    let max_rows = run.app.config.max_input_rows;
    let mut company_field_seen = false;
    let mut query = CompanyQuery::default();
    while let Some(chunk) = stream.next_chunk().await {
        let chunk = chunk.map_err(|error| read_error(run, error))?;
        for row in &chunk {
            scan.rows += 1;
            let company = match scan.mapping.query_into(row, &mut query) {
                Ok(()) => {
                    company_field_seen = true;
                    scan.companies.intern(&query)
                }
                Err(why) => {
                    company_field_seen |= !matches!(why, NoQuery::CompanyFieldAbsent | NoQuery::Unparsed(_));
                    scan.rows_without_company += 1;
                    NO_COMPANY
                }
            };
            scan.row_companies.push(company);
        }
        stream.recycle(chunk);
        if scan.rows > max_rows {
            return Err(RunError::Unusable(format!(
                "the file has more than {max_rows} rows (MAX_INPUT_ROWS); split it into smaller files or raise \
                 MAX_INPUT_ROWS"
            )));
        }
    }
    scan.encoding = stream.encoding();
    if scan.rows > 0 && !company_field_seen {
        return Err(RunError::Unusable(match &stream.layout {
            Layout::Csv { columns, .. } => format!(
                "no row reaches the company column: every row has fewer fields than the header ({} columns); \
                 check the delimiter and the quoting",
                columns.len()
            ),
            Layout::JsonLines { first_object } => {
                let available = first_object.as_ref().map(field_paths).unwrap_or_default();
                scan.mapping.company_field_missing(available).to_string()
            }
        }));
    }
    Ok(scan)
}
