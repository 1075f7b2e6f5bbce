//! The output writer: each input row once, in order, original fields untouched, followed by the
//! `leadspace_*` columns. Bytes accumulate in memory until the caller takes them (to upload a
//! multipart part), so memory is bounded by the part size.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value};

use super::{Format, JsonRow, Kind, Layout, Row};
use crate::enrichment::{self, COLUMNS, Enrichment};

/// The bytes produced so far, shared between the encoder chain (which appends) and `take`
/// (which drains): `csv::Writer` offers no mutable access to what it wraps.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Plain or gzip-compressed output into the shared buffer.
enum Output {
    Plain(SharedBuffer),
    Gzip(GzEncoder<SharedBuffer>),
}

impl Output {
    fn finish(self) -> io::Result<()> {
        match self {
            Output::Plain(_) => Ok(()),
            Output::Gzip(gz) => gz.finish().map(drop),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(v) => v.write(buf),
            Output::Gzip(gz) => gz.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(_) => Ok(()),
            Output::Gzip(gz) => gz.flush(),
        }
    }
}

enum Encoder {
    Csv {
        writer: Box<csv::Writer<Output>>,
        /// Input columns kept in the output: all but earlier `leadspace_*` columns, which are
        /// overwritten rather than duplicated.
        kept: Vec<usize>,
        width: usize,
    },
    Json(Output),
}

pub struct RowWriter {
    encoder: Encoder,
    buffer: SharedBuffer,
}

impl RowWriter {
    /// `utf8_bom` starts a CSV output with a UTF-8 byte-order mark: Excel needs it to read
    /// UTF-8, so files that came from Excel (a BOM, UTF-16 or Windows-1252) get one back.
    pub fn new(format: Format, layout: &Layout, utf8_bom: bool) -> io::Result<Self> {
        let buffer = SharedBuffer::default();
        let mut output = if format.gzip {
            Output::Gzip(GzEncoder::new(buffer.clone(), Compression::fast()))
        } else {
            Output::Plain(buffer.clone())
        };
        if utf8_bom && matches!(format.kind, Kind::Csv { .. }) {
            output.write_all(b"\xEF\xBB\xBF")?;
        }
        let encoder = match (format.kind, layout) {
            (Kind::Csv { .. }, Layout::Csv { columns, delimiter }) => {
                let kept: Vec<usize> =
                    (0..columns.len()).filter(|&i| !enrichment::is_output_column(&columns[i])).collect();
                let mut writer = csv::WriterBuilder::new().delimiter(*delimiter).flexible(true).from_writer(output);
                let header = kept.iter().map(|&i| columns[i].as_str()).chain(COLUMNS);
                writer.write_record(header).map_err(io::Error::from)?;
                Encoder::Csv { writer: Box::new(writer), kept, width: columns.len() }
            }
            (Kind::JsonLines, _) => Encoder::Json(output),
            (Kind::Csv { .. }, Layout::JsonLines { .. }) => {
                return Err(io::Error::other("a CSV output needs a CSV layout"));
            }
        };
        Ok(RowWriter { encoder, buffer })
    }

    pub fn write(&mut self, row: &Row, enrichment: &Enrichment) -> io::Result<()> {
        match &mut self.encoder {
            Encoder::Csv { writer, kept, width } => {
                // Field by field, straight into the CSV writer: a million rows must not cost a
                // million vectors. Short rows are padded so the leadspace columns line up under
                // their headers; fields beyond the header (ragged rows) are kept, after ours.
                let fields: &dyn Fields = match row {
                    Row::Csv(record) => record,
                    Row::Invalid(invalid) => &invalid.fields,
                    Row::Json(_) => return Err(io::Error::other("a JSON row cannot be written as CSV")),
                };
                for &i in kept.iter() {
                    writer.write_field(fields.field(i).unwrap_or("")).map_err(io::Error::from)?;
                }
                // The error may quote Leadspace's own words, so it is neutralised like its values.
                let status = [enrichment.status.as_str(), enrichment.error.as_deref().unwrap_or("")];
                for value in status.into_iter().chain(enrichment.attributes()) {
                    writer.write_field(neutralise_formula(value).as_bytes()).map_err(io::Error::from)?;
                }
                for i in *width..fields.count() {
                    writer.write_field(fields.field(i).unwrap_or("")).map_err(io::Error::from)?;
                }
                writer.write_record(std::iter::empty::<&[u8]>()).map_err(io::Error::from)
            }
            Encoder::Json(output) => {
                let line = json_line(row, enrichment)?;
                output.write_all(line.as_bytes())?;
                output.write_all(b"\n")
            }
        }
    }

    /// Bytes produced so far and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.buffer.lock().len()
    }

    /// Takes the bytes produced so far (for an upload part); the writer carries on after them,
    /// in a buffer as large as the one taken: growing a part-sized buffer from nothing by
    /// doubling copied every part about twice.
    pub fn take(&mut self) -> Vec<u8> {
        let mut buffer = self.buffer.lock();
        let capacity = buffer.capacity();
        std::mem::replace(&mut *buffer, Vec::with_capacity(capacity))
    }

    /// Flushes everything and returns the bytes not yet taken.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        let RowWriter { encoder, buffer } = self;
        match encoder {
            Encoder::Csv { writer, .. } => writer.into_inner().map_err(|e| e.into_error())?.finish()?,
            Encoder::Json(output) => output.finish()?,
        }
        Ok(std::mem::take(&mut *buffer.lock()))
    }
}

/// The fields of a parsed CSV row or of a row that could not be parsed, read alike.
trait Fields {
    fn field(&self, i: usize) -> Option<&str>;
    fn count(&self) -> usize;
}

impl Fields for csv::StringRecord {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i)
    }

    fn count(&self) -> usize {
        self.len()
    }
}

impl Fields for Vec<String> {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i).map(String::as_str)
    }

    fn count(&self) -> usize {
        self.len()
    }
}

/// Spreadsheet programs execute cells starting with these; Leadspace's values are third-party
/// text, so they are prefixed with an apostrophe (OWASP's advice). The customer's own cells are
/// never changed.
fn neutralise_formula(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

fn enrichment_fields(enrichment: &Enrichment) -> impl Iterator<Item = (&'static str, Value)> + '_ {
    let text = |s: &str| if s.is_empty() { Value::Null } else { Value::String(s.to_string()) };
    let status = Value::String(enrichment.status.as_str().to_string());
    let error = enrichment.error.as_deref().map_or(Value::Null, |e| Value::String(e.to_string()));
    let attributes = enrichment.attributes().map(text);
    COLUMNS.into_iter().zip([status, error].into_iter().chain(attributes))
}

/// One output line. The original line is kept byte for byte when it holds none of our fields;
/// otherwise (a re-enriched output) the object is rebuilt with our fields replaced.
fn json_line(row: &Row, enrichment: &Enrichment) -> io::Result<String> {
    match row {
        Row::Json(JsonRow { raw, object }) if !object.keys().any(|k| enrichment::is_output_column(k)) => {
            let mut ours = Map::new();
            ours.extend(enrichment_fields(enrichment).map(|(k, v)| (k.to_string(), v)));
            let ours = serde_json::to_string(&Value::Object(ours)).map_err(io::Error::other)?;
            let body = raw.trim_end();
            let Some(open) = body.strip_suffix('}') else {
                return Err(io::Error::other("a JSON object line must end with '}'"));
            };
            let separator = if object.is_empty() { "" } else { "," };
            Ok(format!("{open}{separator}{}", &ours[1..]))
        }
        Row::Json(JsonRow { object, .. }) => {
            let mut object = object.clone();
            for (k, v) in enrichment_fields(enrichment) {
                object.insert(k.to_string(), v);
            }
            serde_json::to_string(&Value::Object(object)).map_err(io::Error::other)
        }
        Row::Invalid(invalid) => {
            let mut object = Map::new();
            object.insert("leadspace_raw_line".into(), Value::String(invalid.fields.join(",")));
            object.extend(enrichment_fields(enrichment).map(|(k, v)| (k.to_string(), v)));
            serde_json::to_string(&Value::Object(object)).map_err(io::Error::other)
        }
        Row::Csv(_) => Err(io::Error::other("a CSV row cannot be written as JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::RowStatus;
    use crate::records::InvalidRow;

    fn enriched(name: &str) -> Enrichment {
        let mut attributes = vec![String::new(); enrichment::ATTRIBUTE_COUNT];
        attributes[1] = name.to_string();
        Enrichment::with_attributes(RowStatus::Enriched, None, attributes)
    }

    const CSV: Format = Format { kind: Kind::Csv { tab_hint: false }, gzip: false };

    #[test]
    fn csv_output_replaces_earlier_leadspace_columns_and_neutralises_formulas() {
        let layout =
            Layout::Csv { columns: vec!["Company".into(), "leadspace_status".into(), "=x".into()], delimiter: b';' };
        let mut w = RowWriter::new(CSV, &layout, false).unwrap();
        w.write(&Row::Csv(csv::StringRecord::from(vec!["=SUM(1)", "old", "a;b"])), &enriched("=cmd")).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap().split(';').take(3).collect::<Vec<_>>(), ["Company", "=x", "leadspace_status"]);
        let row = lines.next().unwrap();
        assert!(row.starts_with("=SUM(1);\"a;b\";enriched;;;'=cmd;"), "{row}");
    }

    #[test]
    fn every_formula_prefix_from_leadspace_is_neutralised_and_plain_values_are_not() {
        for value in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(value), format!("'{value}"), "{value:?}");
        }
        for value in ["Contoso", "1-50", "", "a=b"] {
            assert_eq!(neutralise_formula(value), value);
        }
    }

    #[test]
    fn a_bom_is_written_only_when_asked_and_only_for_csv() {
        let layout = Layout::Csv { columns: vec!["Company".into()], delimiter: b',' };
        assert!(RowWriter::new(CSV, &layout, true).unwrap().finish().unwrap().starts_with(b"\xEF\xBB\xBFCompany,"));
        assert!(RowWriter::new(CSV, &layout, false).unwrap().finish().unwrap().starts_with(b"Company,"));
        let jsonl = Format { kind: Kind::JsonLines, gzip: false };
        assert!(
            RowWriter::new(jsonl, &Layout::JsonLines { first_object: None }, true)
                .unwrap()
                .finish()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn json_lines_keep_the_original_text_and_append_fields() {
        let object = serde_json::json!({"b": 1.50, "a": "x"}).as_object().unwrap().clone();
        let raw = r#"{ "b": 1.50, "a": "x" }"#.to_string();
        let mut w = RowWriter::new(
            Format { kind: Kind::JsonLines, gzip: false },
            &Layout::JsonLines { first_object: None },
            false,
        )
        .unwrap();
        w.write(&Row::Json(JsonRow { raw, object }), &enriched("Contoso")).unwrap();
        let line = String::from_utf8(w.finish().unwrap()).unwrap();
        assert!(
            line.starts_with(r#"{ "b": 1.50, "a": "x" ,"leadspace_status":"enriched","leadspace_error":null"#),
            "{line}"
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["leadspace_name"], "Contoso");
    }

    #[test]
    fn json_lines_with_our_fields_are_rebuilt_without_duplicates() {
        let object = serde_json::json!({"leadspace_status": "failed", "a": 1}).as_object().unwrap().clone();
        let mut w = RowWriter::new(
            Format { kind: Kind::JsonLines, gzip: false },
            &Layout::JsonLines { first_object: None },
            false,
        )
        .unwrap();
        w.write(&Row::Json(JsonRow { raw: String::new(), object }), &enriched("C")).unwrap();
        let line = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(line.matches("leadspace_status").count(), 1);
        assert!(line.contains("\"enriched\""));
    }

    #[test]
    fn unparseable_json_lines_are_kept_in_a_field() {
        let mut w = RowWriter::new(
            Format { kind: Kind::JsonLines, gzip: false },
            &Layout::JsonLines { first_object: None },
            false,
        )
        .unwrap();
        let invalid = Row::Invalid(InvalidRow { fields: vec!["not json".into()], reason: "x".into() });
        w.write(&invalid, &Enrichment::without_attributes(RowStatus::InvalidInput, Some("x".into()))).unwrap();
        let parsed: Value = serde_json::from_slice(&w.finish().unwrap()).unwrap();
        assert_eq!(parsed["leadspace_raw_line"], "not json");
        assert_eq!(parsed["leadspace_status"], "invalid_input");
    }

    #[test]
    fn gzip_output_can_be_taken_in_parts_and_still_decodes_whole() {
        use std::io::Read;
        let layout = Layout::Csv { columns: vec!["Company".into()], delimiter: b',' };
        let mut w = RowWriter::new(Format { gzip: true, ..CSV }, &layout, false).unwrap();
        let mut bytes = Vec::new();
        for i in 0..20_000 {
            w.write(&Row::Csv(csv::StringRecord::from(vec![format!("Company {i}")])), &enriched("x")).unwrap();
            if w.pending_len() > 4096 {
                bytes.extend(w.take());
            }
        }
        bytes.extend(w.finish().unwrap());
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text.lines().count(), 20_001);
        assert!(text.lines().last().unwrap().starts_with("Company 19999,enriched"));
    }
}
