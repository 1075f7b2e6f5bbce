//! Property: whatever rows a file holds, reading them and writing them back (with our columns
//! added) leaves every original field exactly as it was, in order, in CSV and JSON Lines, plain
//! or gzip. A legacy-encoded file comes back as its bytes read in the encoding detected: random
//! letters are not text, and the detector may take them for another code page (real exports in
//! each encoding are tested in `reader.rs`).

use std::io::{Read, Write};

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{Format, Kind, Layout, Row, RowStream, RowWriter, TextEncoding};
use crate::enrichment::{Enrichment, RowStatus};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a test runtime")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).expect("the output is gzip");
    out
}

/// Reads `bytes` and writes every row back with an answer, as pass 2 does; the encoding read.
fn read_and_write(bytes: Vec<u8>, format: Format) -> (Layout, Vec<u8>, TextEncoding) {
    runtime().block_on(async move {
        let mut stream = RowStream::open(Box::new(std::io::Cursor::new(bytes)), format, u64::MAX).await.expect("opens");
        let mut writer = RowWriter::new(format, &stream.layout, false).expect("writer");
        let answer = Enrichment::without_attributes(RowStatus::NotAttempted, Some("=formula?".into()));
        while let Some(chunk) = stream.next_chunk().await {
            for row in chunk.expect("rows") {
                writer.write(&row, &answer).expect("write");
            }
        }
        let out = writer.finish().expect("finish");
        let encoding = stream.encoding();
        (stream.layout, if format.gzip { gunzip(&out) } else { out }, encoding)
    })
}

/// Cells as spreadsheets and CRMs produce them, with the characters that break naive writers
/// over-represented.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[\",;|\\t\\r\\n =+@'-]{0,6}", "[a-zA-Zéü€ ]{0,10}", Just(String::new()),]
}

/// Header names with quotes and line breaks (Alt+Enter in Excel), but no delimiter character:
/// a header like `a|b|c,d` is ambiguous, and the sniffer settles it by count.
fn column_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 _éü\"\r\n]{0,10}"
}

/// How the test file is encoded.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    Windows1252,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop::sample::select(vec![
        Encoding::Utf8,
        Encoding::Utf8Bom,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
        Encoding::Windows1252,
    ])
}

/// Text Windows-1252 can hold and that cannot be mistaken for UTF-8: other characters become
/// letters whose bytes are all UTF-8 lead bytes, so no byte pair forms a UTF-8 sequence.
fn latin(text: &str) -> String {
    const SAFE: [char; 5] = ['é', 'ü', 'Ä', 'ö', 'ß'];
    text.chars().map(|c| if c.is_ascii() { c } else { SAFE[c as usize % SAFE.len()] }).collect()
}

fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Utf8Bom => [b"\xEF\xBB\xBF", text.as_bytes()].concat(),
        Encoding::Utf16Le => "\u{feff}".encode_utf16().chain(text.encode_utf16()).flat_map(u16::to_le_bytes).collect(),
        Encoding::Utf16Be => "\u{feff}".encode_utf16().chain(text.encode_utf16()).flat_map(u16::to_be_bytes).collect(),
        Encoding::Windows1252 => encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
    }
}

fn csv_table() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>)> {
    (1usize..6).prop_flat_map(|width| {
        (
            proptest::collection::vec(column_name(), width),
            proptest::collection::vec(proptest::collection::vec(cell(), width), 0..12),
        )
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(".{0,8}", json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn csv_rows_come_back_with_every_original_field_unchanged(
        (header, rows) in csv_table(),
        delimiter in prop::sample::select(vec![b',', b';', b'\t', b'|']),
        gzipped in any::<bool>(),
        crlf in any::<bool>(),
        encoding in encoding(),
    ) {
        let (header, rows) = match encoding {
            Encoding::Windows1252 => (
                header.iter().map(|h| latin(h)).collect::<Vec<_>>(),
                rows.iter().map(|r| r.iter().map(|c| latin(c)).collect()).collect::<Vec<Vec<_>>>(),
            ),
            _ => (header, rows),
        };
        let mut input = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        input.write_record(&header).expect("header");
        for row in &rows {
            input.write_record(row).expect("row");
        }
        let input = input.into_inner().expect("flush");
        let input = encode(&String::from_utf8(input).expect("UTF-8 CSV"), encoding);
        let format = Format { kind: Kind::Csv { tab_hint: false }, gzip: gzipped };

        let (layout, output, read_as) = read_and_write(if gzipped { gzip(&input) } else { input }, format);
        let (header, rows) = match read_as {
            TextEncoding::Legacy(legacy) => {
                // As the reader does: a field the legacy encoding cannot read stays Windows-1252.
                let reread = |text: &String| {
                    let bytes = encoding_rs::WINDOWS_1252.encode(text).0;
                    match legacy.decode_without_bom_handling(&bytes) {
                        (_, true) => text.clone(),
                        (read, false) => read.into_owned(),
                    }
                };
                (header.iter().map(reread).collect(), rows.iter().map(|r| r.iter().map(reread).collect()).collect())
            }
            _ => (header, rows),
        };

        // A one-column file has no delimiter to keep; its output uses the default.
        let delimiter = if header.len() == 1 { b',' } else { delimiter };
        prop_assert_eq!(layout, Layout::Csv { columns: header.clone(), delimiter });
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(&output[..]);
        let out_header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
        prop_assert_eq!(&out_header[..header.len()], &header[..]);
        prop_assert_eq!(out_header[header.len()].as_str(), "leadspace_status");
        let out_rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
        prop_assert_eq!(out_rows.len(), rows.len());
        for (original, written) in rows.iter().zip(&out_rows) {
            let kept: Vec<&str> = written.iter().take(header.len()).collect();
            prop_assert_eq!(&kept, original);
            prop_assert_eq!(&written[header.len() + 1], "'=formula?");
        }
    }

    #[test]
    fn json_lines_come_back_with_every_original_field_unchanged(
        objects in proptest::collection::vec(json_object(), 1..10),
        spaced in any::<bool>(),
        gzipped in any::<bool>(),
    ) {
        let lines: Vec<String> = objects
            .iter()
            .map(|o| {
                let compact = serde_json::to_string(o).expect("serialise");
                if spaced { format!("  {}  ", compact.replacen('{', "{ ", 1)) } else { compact }
            })
            .collect();
        let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        let format = Format { kind: Kind::JsonLines, gzip: gzipped };

        let (_, output, _) = read_and_write(if gzipped { gzip(&input) } else { input }, format);

        let text = String::from_utf8(output).expect("UTF-8 output");
        let out_lines: Vec<&str> = text.lines().collect();
        prop_assert_eq!(out_lines.len(), objects.len());
        for ((original, line), written) in objects.iter().zip(&lines).zip(&out_lines) {
            let parsed: Map<String, Value> = serde_json::from_str(written).expect("each output line is an object");
            for (key, value) in original {
                if !crate::enrichment::is_output_column(key) {
                    prop_assert_eq!(parsed.get(key), Some(value));
                }
            }
            prop_assert_eq!(parsed["leadspace_status"].as_str(), Some("not_attempted"));
            let ours = !original.keys().any(|k| crate::enrichment::is_output_column(k));
            if ours && !original.is_empty() {
                // The original text itself is kept, byte for byte, up to its closing brace.
                let body = line.trim_end();
                prop_assert!(written.starts_with(&body[..body.len() - 1]), "{} vs {}", written, line);
            }
        }
    }

    #[test]
    fn rows_read_from_arbitrary_bytes_never_panic_and_always_end(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for kind in [Kind::Csv { tab_hint: false }, Kind::JsonLines] {
            let format = Format { kind, gzip: false };
            let rows = runtime().block_on(async {
                let Ok(mut stream) = RowStream::open(Box::new(std::io::Cursor::new(bytes.clone())), format, u64::MAX).await else {
                    return None;
                };
                let mut rows: Vec<Row> = Vec::new();
                while let Some(chunk) = stream.next_chunk().await {
                    rows.extend(chunk.ok()?);
                }
                Some(rows)
            });
            if let Some(rows) = rows {
                prop_assert!(rows.len() <= bytes.len());
            }
        }
    }
}
