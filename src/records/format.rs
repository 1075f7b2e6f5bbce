//! Which reader and writer an object needs, from its key.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Delimited text; `.tsv` starts from tab, `.csv` sniffs the delimiter from the header.
    Csv {
        tab_hint: bool,
    },
    JsonLines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub kind: Kind,
    pub gzip: bool,
}

pub const SUPPORTED: &str = ".csv, .tsv, .csv.gz, .tsv.gz, .jsonl, .ndjson, .jsonl.gz, .ndjson.gz";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedFormat {
    pub extension: String,
}

impl fmt::Display for UnsupportedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.extension.is_empty() {
            "a key without an extension".to_string()
        } else {
            format!("'{}' files", self.extension)
        };
        write!(f, "{what} cannot be enriched; supported formats are {SUPPORTED} (CSV with a header row, or JSON Lines)")
    }
}

impl std::error::Error for UnsupportedFormat {}

impl Format {
    pub fn detect(key: &str) -> Result<Format, UnsupportedFormat> {
        let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let extension = stem.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
        let kind = match extension {
            "csv" => Kind::Csv { tab_hint: false },
            "tsv" => Kind::Csv { tab_hint: true },
            "jsonl" | "ndjson" => Kind::JsonLines,
            _ => {
                let shown = if gzip { format!(".{extension}.gz") } else { format!(".{extension}") };
                return Err(UnsupportedFormat { extension: if extension.is_empty() { String::new() } else { shown } });
            }
        };
        Ok(Format { kind, gzip })
    }

    /// How the summary names the output format.
    pub fn label(&self) -> &'static str {
        match (self.kind, self.gzip) {
            (Kind::Csv { tab_hint: false }, false) => "csv",
            (Kind::Csv { tab_hint: false }, true) => "csv.gz",
            (Kind::Csv { tab_hint: true }, false) => "tsv",
            (Kind::Csv { tab_hint: true }, true) => "tsv.gz",
            (Kind::JsonLines, false) => "jsonl",
            (Kind::JsonLines, true) => "jsonl.gz",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match (self.kind, self.gzip) {
            (_, true) => "application/gzip",
            (Kind::Csv { tab_hint: false }, false) => "text/csv; charset=utf-8",
            (Kind::Csv { tab_hint: true }, false) => "text/tab-separated-values; charset=utf-8",
            (Kind::JsonLines, false) => "application/x-ndjson",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_recognised_case_insensitively() {
        assert_eq!(
            Format::detect("incoming/a.CSV").unwrap(),
            Format { kind: Kind::Csv { tab_hint: false }, gzip: false }
        );
        assert_eq!(Format::detect("a.tsv").unwrap().kind, Kind::Csv { tab_hint: true });
        assert_eq!(Format::detect("x/y.jsonl.gz").unwrap(), Format { kind: Kind::JsonLines, gzip: true });
        assert_eq!(Format::detect("y.ndjson").unwrap().kind, Kind::JsonLines);
    }

    #[test]
    fn unsupported_formats_name_the_supported_ones() {
        let err = Format::detect("incoming/book.xlsx").unwrap_err();
        assert!(err.to_string().contains("'.xlsx' files") && err.to_string().contains(".jsonl.gz"), "{err}");
        assert!(Format::detect("incoming/README").is_err());
        assert!(Format::detect("incoming/x.parquet.gz").is_err());
    }
}
