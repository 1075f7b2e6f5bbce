//! The output writer: each input row once, in order, original fields untouched, followed by the
//! `leadspace_*` columns. Bytes accumulate in memory until the caller takes them (to upload a
//! multipart part), so memory is bounded by the part size.
//!
//! An answer's columns are encoded into each of its rows as the row is written, from the answer
//! itself, into a buffer the writer reuses: holding every company's encoded answer instead would
//! be a second copy of all the answers, for a few percent less CPU.

use std::borrow::Cow;
use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value};

use super::{Format, JsonRow, Kind, Layout, Row};
use crate::enrichment::{self, ATTRIBUTE_COUNT, COLUMNS, Enrichment};

/// Plain or gzip-compressed output, in memory until taken.
enum Output {
    Plain(Vec<u8>),
    /// Boxed: zlib-rs's encoder state is ten times the plain buffer's.
    Gzip(Box<GzEncoder<Vec<u8>>>),
}

impl Output {
    fn bytes(&mut self) -> &mut Vec<u8> {
        match self {
            Output::Plain(bytes) => bytes,
            Output::Gzip(gz) => gz.get_mut(),
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Output::Plain(bytes) => Ok(bytes),
            Output::Gzip(gz) => gz.finish(),
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
        /// Input columns kept in the output: all but earlier `leadspace_*` columns, which are
        /// overwritten rather than duplicated.
        kept: Vec<usize>,
        width: usize,
        delimiter: u8,
        /// Every input column is kept, in order (the file has no `leadspace_*` columns).
        all_kept: bool,
    },
    Json,
}

pub struct RowWriter {
    encoder: Encoder,
    output: Output,
    /// One record, encoded before it goes to the output (a single write into gzip).
    line: Vec<u8>,
    /// The answer's own columns (JSON Lines: its object), encoded before they join the line.
    answer: Vec<u8>,
}

impl RowWriter {
    /// `utf8_bom` starts a CSV output with a UTF-8 byte-order mark: Excel needs it to read
    /// UTF-8, so files that came from Excel (a BOM, UTF-16 or Windows-1252) get one back.
    pub fn new(format: Format, layout: &Layout, utf8_bom: bool) -> io::Result<Self> {
        let mut output = if format.gzip {
            Output::Gzip(Box::new(GzEncoder::new(Vec::new(), Compression::fast())))
        } else {
            Output::Plain(Vec::new())
        };
        if utf8_bom && matches!(format.kind, Kind::Csv { .. }) {
            output.write_all(b"\xEF\xBB\xBF")?;
        }
        let mut line = Vec::new();
        let encoder = match (format.kind, layout) {
            (Kind::Csv { .. }, Layout::Csv { columns, delimiter }) => {
                let kept: Vec<usize> =
                    (0..columns.len()).filter(|&i| !enrichment::is_output_column(&columns[i])).collect();
                let header = kept.iter().map(|&i| columns[i].as_str()).chain(COLUMNS);
                for (n, name) in header.enumerate() {
                    if n > 0 {
                        line.push(*delimiter);
                    }
                    push_csv_field(&mut line, name.as_bytes(), *delimiter);
                }
                line.push(b'\n');
                output.write_all(&line)?;
                let all_kept = kept.len() == columns.len();
                Encoder::Csv { kept, width: columns.len(), delimiter: *delimiter, all_kept }
            }
            (Kind::JsonLines, _) => Encoder::Json,
            (Kind::Csv { .. }, Layout::JsonLines { .. }) => {
                return Err(io::Error::other("a CSV output needs a CSV layout"));
            }
        };
        Ok(RowWriter { encoder, output, line, answer: Vec::new() })
    }

    /// `row` followed by `enrichment`'s columns.
    pub fn write(&mut self, row: &Row, enrichment: &Enrichment) -> io::Result<()> {
        let (line, answer) = (&mut self.line, &mut self.answer);
        line.clear();
        answer.clear();
        match &self.encoder {
            Encoder::Csv { width, delimiter, all_kept: true, .. } if let Row::Csv(record) = row => {
                push_csv_record(line, record, *width, enrichment, *delimiter);
            }
            Encoder::Csv { kept, width, delimiter, .. } => {
                let fields: &dyn Fields = match row {
                    Row::Csv(record) => record,
                    Row::Invalid(invalid) => &invalid.fields,
                    Row::Json(_) => return Err(io::Error::other("a JSON row cannot be written as CSV")),
                };
                push_csv_row(line, fields, kept, *width, enrichment, *delimiter);
            }
            Encoder::Json => {
                push_json_object(answer, enrichment)?;
                json_line(line, row, answer)?;
            }
        }
        line.push(b'\n');
        self.output.write_all(line)
    }

    /// Bytes produced so far and not yet taken.
    pub fn pending_len(&mut self) -> usize {
        self.output.bytes().len()
    }

    /// Takes the bytes produced so far (for an upload part); the writer carries on after them,
    /// in a buffer as large as the one taken: growing a part-sized buffer from nothing by
    /// doubling copied every part about twice.
    pub fn take(&mut self) -> Vec<u8> {
        let buffer = self.output.bytes();
        let capacity = buffer.capacity();
        std::mem::replace(buffer, Vec::with_capacity(capacity))
    }

    /// Flushes everything and returns the bytes not yet taken.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        self.output.finish()
    }
}

/// The `kept` fields of a row, then the answer's cells. Short rows are padded so the leadspace
/// columns line up under their headers; fields beyond the header (ragged rows) are kept, after
/// ours.
fn push_csv_row(
    line: &mut Vec<u8>,
    fields: &dyn Fields,
    kept: &[usize],
    width: usize,
    answer: &Enrichment,
    delimiter: u8,
) {
    for &i in kept {
        push_csv_field(line, fields.field(i).unwrap_or("").as_bytes(), delimiter);
        line.push(delimiter);
    }
    push_csv_cells(line, answer, delimiter);
    for i in width..fields.count() {
        line.push(delimiter);
        push_csv_field(line, fields.field(i).unwrap_or("").as_bytes(), delimiter);
    }
}

/// A parsed row whose columns are all kept, then the answer's cells: as `push_csv_row` writes
/// it, with the row's fields copied as they are when none of them needs quotes (most
/// rows), found by one scan of the whole row rather than one per field.
fn push_csv_record(line: &mut Vec<u8>, record: &csv::StringRecord, width: usize, answer: &Enrichment, delimiter: u8) {
    let bytes = record.as_byte_record();
    let raw = bytes.as_slice();
    // Where the bytes that need quotes are in the row's fields, end to end: a field is quoted
    // only if one of them falls inside it. Most rows have one or two, in one field; looking
    // through every field of every row for them cost as much as parsing the row.
    let carriage_return = memchr::memchr(b'\r', raw).is_some();
    let mut specials = memchr::memchr3_iter(delimiter, b'"', b'\n', raw);
    let mut next_special = specials.next();
    let mut start = 0;
    let mut push = |line: &mut Vec<u8>, field: &[u8]| {
        let end = start + field.len();
        if carriage_return || next_special.is_some_and(|at| at < end) {
            push_csv_field(line, field, delimiter);
            while next_special.is_some_and(|at| at < end) {
                next_special = specials.next();
            }
        } else {
            line.extend_from_slice(field);
        }
        start = end;
    };
    let mut fields = bytes.iter();
    for _ in 0..width {
        push(line, fields.next().unwrap_or_default());
        line.push(delimiter);
    }
    push_csv_cells(line, answer, delimiter);
    for field in fields {
        line.push(delimiter);
        push(line, field);
    }
}

/// One CSV field, quoted only when it must be (it holds the delimiter, a quote or a line break),
/// with its quotes doubled: what the `csv` crate writes, without its per-field bookkeeping.
fn push_csv_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8) {
    // Every byte looked at, without stopping early: a loop the compiler vectorises.
    let special = |b: u8| b == delimiter || b == b'"' || b == b'\n' || b == b'\r';
    if !field.iter().fold(false, |found, &b| found | special(b)) {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for part in field.split_inclusive(|&b| b == b'"') {
        out.extend_from_slice(part);
        if part.ends_with(b"\"") {
            out.push(b'"');
        }
    }
    out.push(b'"');
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
    if value.starts_with(enrichment::FORMULA_STARTS) { Cow::Owned(format!("'{value}")) } else { Cow::Borrowed(value) }
}

/// Our 21 columns as CSV cells. The error may quote Leadspace's own words, so it is neutralised
/// like its values.
fn push_csv_cells(out: &mut Vec<u8>, enrichment: &Enrichment, delimiter: u8) {
    if enrichment.error.is_none()
        && enrichment.values_are_plain_csv()
        && enrichment::CSV_DELIMITERS.contains(&delimiter)
    {
        return push_plain_csv_cells(out, enrichment, delimiter);
    }
    push_csv_cells_one_by_one(out, enrichment, delimiter);
}

fn push_csv_cells_one_by_one(out: &mut Vec<u8>, enrichment: &Enrichment, delimiter: u8) {
    let status = [enrichment.status.as_str(), enrichment.error.as_deref().unwrap_or("")];
    for (n, value) in status.into_iter().chain(enrichment.attributes()).enumerate() {
        if n > 0 {
            out.push(delimiter);
        }
        push_csv_field(out, neutralise_formula(value).as_bytes(), delimiter);
    }
}

/// `push_csv_cells` for an answer without an error whose values need no quotes: its packed
/// values with a delimiter between them (and an apostrophe before each that starts like a
/// formula), then a delimiter for each trailing empty value the packing left out.
/// Most answers are such, and this runs for every row of pass 2.
fn push_plain_csv_cells(out: &mut Vec<u8>, enrichment: &Enrichment, delimiter: u8) {
    out.extend_from_slice(enrichment.status.as_str().as_bytes());
    out.extend_from_slice(&[delimiter, delimiter]);
    let values = enrichment.packed_values();
    let start = out.len();
    // The packed values are copied whole (in pieces only where an apostrophe goes in), then
    // each separator becomes the delimiter in one pass the compiler vectorises: value by value,
    // this was twenty copies a row.
    let mut formulas = enrichment.formula_values();
    if formulas & 1 != 0 {
        out.push(b'\'');
    }
    formulas >>= 1;
    let mut copied = 0;
    if formulas != 0 {
        for (n, separator) in enrichment::Separators::new(values).enumerate() {
            if formulas >> n == 0 {
                break;
            }
            if formulas >> n & 1 != 0 {
                out.extend_from_slice(&values[copied..=separator]);
                out.push(b'\'');
                copied = separator + 1;
            }
        }
    }
    out.extend_from_slice(&values[copied..]);
    for byte in &mut out[start..] {
        *byte = if *byte == Enrichment::PACKED_SEPARATOR { delimiter } else { *byte };
    }
    // Counted apart: counting in the loop above kept it from being vectorised.
    let separators = memchr::memchr_iter(Enrichment::PACKED_SEPARATOR, values).count();
    // Values written: at least one (empty) even when none was packed.
    out.resize(out.len() + ATTRIBUTE_COUNT.saturating_sub(separators + 1), delimiter);
}

/// Our 21 fields as one JSON object, in `COLUMNS` order; empty values are null (an error is
/// null only when there is none).
fn push_json_object(out: &mut Vec<u8>, enrichment: &Enrichment) -> io::Result<()> {
    let status = Some(enrichment.status.as_str());
    let error = enrichment.error.as_deref();
    let attributes = enrichment.attributes().map(|value| (!value.is_empty()).then_some(value));
    out.push(b'{');
    for (n, (name, value)) in COLUMNS.into_iter().zip([status, error].into_iter().chain(attributes)).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name).map_err(io::Error::other)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, &value).map_err(io::Error::other)?;
    }
    out.push(b'}');
    Ok(())
}

/// One output line into `line`. The original line is kept byte for byte when it holds none of
/// our fields; otherwise (a re-enriched output) the object is rebuilt with our fields replaced.
/// `ours` is our fields' object (`push_json_object`).
fn json_line(line: &mut Vec<u8>, row: &Row, ours: &[u8]) -> io::Result<()> {
    let our_fields = || serde_json::from_slice::<Map<String, Value>>(ours).map_err(io::Error::other);
    let object = match row {
        Row::Json(JsonRow { raw, object }) if !object.keys().any(|k| enrichment::is_output_column(k)) => {
            let body = raw.trim_end();
            let Some(open) = body.strip_suffix('}') else {
                return Err(io::Error::other("a JSON object line must end with '}'"));
            };
            line.extend_from_slice(open.as_bytes());
            if !object.is_empty() {
                line.push(b',');
            }
            line.extend_from_slice(ours.get(1..).unwrap_or_default());
            return Ok(());
        }
        Row::Json(JsonRow { object, .. }) => {
            let mut object = object.clone();
            object.extend(our_fields()?);
            object
        }
        Row::Invalid(invalid) => {
            let mut object = Map::new();
            object.insert("leadspace_raw_line".into(), Value::String(invalid.fields.join(",")));
            object.extend(our_fields()?);
            object
        }
        Row::Csv(_) => return Err(io::Error::other("a CSV row cannot be written as JSON")),
    };
    serde_json::to_writer(line, &Value::Object(object)).map_err(io::Error::other)
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

    proptest::proptest! {
        /// Our encoder replaced the `csv` crate's writer for speed; outputs must not change.
        #[test]
        fn csv_fields_are_written_byte_for_byte_as_the_csv_crate_writes_them(
            fields in proptest::collection::vec("[a-c,;|\"\r\n\t 'é=]{0,6}", 2..6),
            delimiter in proptest::sample::select(enrichment::CSV_DELIMITERS.to_vec()),
        ) {
            let mut ours = Vec::new();
            for (n, field) in fields.iter().enumerate() {
                if n > 0 {
                    ours.push(delimiter);
                }
                push_csv_field(&mut ours, field.as_bytes(), delimiter);
            }
            ours.push(b'\n');
            let mut theirs = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
            theirs.write_record(&fields).unwrap();
            let theirs = theirs.into_inner().unwrap();
            proptest::prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }

    #[test]
    fn one_answer_is_written_the_same_into_every_row_of_its_company() {
        let layout = Layout::Csv { columns: vec!["Company".into(), "City".into()], delimiter: b',' };
        let mut w = RowWriter::new(CSV, &layout, false).unwrap();
        let answer = enriched("Contoso, \"Ltd\"");
        for city in ["Paris", "Lyon"] {
            w.write(&Row::Csv(csv::StringRecord::from(vec!["Contoso", city])), &answer).unwrap();
        }
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut rows = csv::Reader::from_reader(text.as_bytes());
        let names: Vec<String> = rows.records().map(|r| r.unwrap()[5].to_string()).collect();
        assert_eq!(names, ["Contoso, \"Ltd\"", "Contoso, \"Ltd\""]);
    }

    proptest::proptest! {
        /// The shortcut for plain answers writes exactly what the cell-by-cell encoding writes.
        #[test]
        fn plain_answers_are_written_as_the_cell_by_cell_encoding_writes_them(
            // Mostly plain values, some that need quotes or neutralising.
            values in proptest::collection::vec("[a-cé 1-]{0,5}|[a-c \"=+@é,;|\t-]{0,3}", 0..=enrichment::ATTRIBUTE_COUNT),
            delimiter in proptest::sample::select(enrichment::CSV_DELIMITERS.to_vec()),
        ) {
            let answer = Enrichment::with_attributes(RowStatus::Enriched, None, &values);
            let mut fast = Vec::new();
            push_csv_cells(&mut fast, &answer, delimiter);
            let mut slow = Vec::new();
            push_csv_cells_one_by_one(&mut slow, &answer, delimiter);
            proptest::prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }

        /// A row whose columns are all kept is written as the general path writes it.
        #[test]
        fn a_row_with_every_column_kept_is_written_as_the_general_path_writes_it(
            fields in proptest::collection::vec("[a-c\"\r\n,;|\t é]{0,4}|[a-z]{0,6}", 0..7),
            width in 1_usize..5,
            delimiter in proptest::sample::select(enrichment::CSV_DELIMITERS.to_vec()),
        ) {
            let record = csv::StringRecord::from(fields);
            let answer = Enrichment::with_attributes(RowStatus::Enriched, None, ["id", "+1 555", "a,b"]);
            let mut fast = Vec::new();
            push_csv_record(&mut fast, &record, width, &answer, delimiter);
            let mut general = Vec::new();
            let kept: Vec<usize> = (0..width).collect();
            push_csv_row(&mut general, &record, &kept, width, &answer, delimiter);
            proptest::prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(general).unwrap());
        }

        /// Our fields are written straight into the line; they must read back as the object
        /// serde_json makes of them (null for empty, keys in `COLUMNS` order, any text escaped).
        #[test]
        fn our_json_object_is_the_one_serde_json_writes(
            values in proptest::collection::vec("[a-c\"\\\\\n\u{1}é =-]{0,5}", enrichment::ATTRIBUTE_COUNT),
            error in proptest::option::of("[a\"\n]{0,3}"),
        ) {
            let answer = Enrichment::with_attributes(RowStatus::Failed, error.clone(), &values);
            let mut ours = Vec::new();
            push_json_object(&mut ours, &answer).unwrap();
            let text = |v: &str| if v.is_empty() { Value::Null } else { Value::String(v.to_string()) };
            let mut theirs = Map::new();
            theirs.insert(COLUMNS[0].into(), Value::String("failed".into()));
            theirs.insert(COLUMNS[1].into(), error.map_or(Value::Null, Value::String));
            for (name, value) in COLUMNS[2..].iter().zip(answer.attributes()) {
                theirs.insert((*name).into(), text(value));
            }
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&theirs).unwrap());
        }
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
