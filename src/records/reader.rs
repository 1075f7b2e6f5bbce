//! The streaming row reader: a blocking thread parses, the async side receives bounded batches.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use serde_json::{Map, Value};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::{Format, InvalidRow, JsonRow, Kind, Row};

/// Rows per message from the parser thread; with `CHANNEL_BATCHES` in flight this bounds what
/// the reader holds in memory.
const BATCH_ROWS: usize = 1024;
const CHANNEL_BATCHES: usize = 4;
/// JSON Lines auto-detection looks for the first object within this many lines.
const FIRST_OBJECT_SCAN_LINES: usize = 1000;
/// The most of the first line read to sniff a CSV's delimiter.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// The shape of the file, known before the first row is handed out.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    Csv { columns: Vec<String>, delimiter: u8 },
    JsonLines { first_object: Option<Map<String, Value>> },
}

#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The file is not what its name says (for example a `.gz` that is not gzip).
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the object failed: {e}"),
            ReadError::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(e) => Some(e),
            ReadError::Malformed(_) => None,
        }
    }
}

/// Classifies an I/O error from the decompressor or the S3 body: a corrupt gzip stream is the
/// file's fault (permanent), anything else may be the network's (transient).
fn classify(error: io::Error, gzip: bool) -> ReadError {
    if gzip
        && matches!(
            error.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        )
    {
        ReadError::Malformed(format!("the object's name ends in .gz but it is not a complete gzip stream ({error})"))
    } else {
        ReadError::Io(error)
    }
}

enum Message {
    Layout(Layout),
    Rows(Vec<Row>),
    Failed(ReadError),
}

pub struct RowStream {
    pub layout: Layout,
    rx: mpsc::Receiver<Message>,
}

impl RowStream {
    /// Starts parsing `body` on a blocking thread and waits for the layout (the CSV header, or
    /// the first JSON object).
    pub async fn open(body: Box<dyn AsyncRead + Send + Unpin>, format: Format) -> Result<RowStream, ReadError> {
        let (tx, mut rx) = mpsc::channel(CHANNEL_BATCHES);
        let bridge = SyncIoBridge::new(body);
        tokio::task::spawn_blocking(move || {
            let source: Box<dyn Read> = if format.gzip {
                Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(bridge)))
            } else {
                Box::new(bridge)
            };
            let result = match format.kind {
                Kind::Csv { tab_hint } => parse_csv(source, tab_hint, &tx),
                Kind::JsonLines => parse_json_lines(source, &tx),
            };
            if let Err(error) = result {
                // The receiver may be gone (the job gave up): nothing left to tell.
                let _ = tx.blocking_send(Message::Failed(classify(error, format.gzip)));
            }
        });
        match rx.recv().await {
            Some(Message::Layout(layout)) => Ok(RowStream { layout, rx }),
            Some(Message::Failed(error)) => Err(error),
            Some(Message::Rows(_)) | None => {
                Err(ReadError::Io(io::Error::other("the row parser stopped before reading the header")))
            }
        }
    }

    /// The next batch of rows, `None` at the end of the file.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<Row>, ReadError>> {
        match self.rx.recv().await? {
            Message::Rows(rows) => Some(Ok(rows)),
            Message::Failed(error) => Some(Err(error)),
            Message::Layout(_) => {
                Some(Err(ReadError::Io(io::Error::other("unexpected second header from the row parser"))))
            }
        }
    }
}

/// Sends a message, turning a vanished receiver into an error that stops the parser thread.
fn send(tx: &mpsc::Sender<Message>, message: Message) -> io::Result<()> {
    tx.blocking_send(message).map_err(|_| io::Error::other("row receiver closed"))
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn parse_csv(source: Box<dyn Read>, tab_hint: bool, tx: &mpsc::Sender<Message>) -> io::Result<()> {
    let mut source = BufReader::with_capacity(256 * 1024, source);
    // The header line is read whole to sniff the delimiter, up to a cap: a file with `\r`-only
    // line breaks, or none, must not be read into memory here.
    let mut first_line = Vec::new();
    (&mut source).take(MAX_HEADER_BYTES).read_until(b'\n', &mut first_line)?;
    if first_line.starts_with(UTF8_BOM) {
        first_line.drain(..UTF8_BOM.len());
    }
    if first_line.iter().all(u8::is_ascii_whitespace) {
        send(
            tx,
            Message::Failed(ReadError::Malformed(
                "the object is empty: a CSV file needs a header row naming its columns".into(),
            )),
        )?;
        return Ok(());
    }
    let delimiter = sniff_delimiter(&first_line, tab_hint);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(io::Cursor::new(first_line).chain(source));

    let columns = match reader.headers() {
        Ok(header) => header.iter().map(str::to_string).collect(),
        Err(e) => return csv_error(e, tx),
    };
    send(tx, Message::Layout(Layout::Csv { columns, delimiter }))?;

    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => batch.push(match csv::StringRecord::from_byte_record(record.clone()) {
                Ok(row) => Row::Csv(row),
                Err(e) => Row::Invalid(InvalidRow {
                    fields: e.into_byte_record().iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(),
                    reason: "the row is not valid UTF-8 text".into(),
                }),
            }),
            Err(e) => return csv_error(e, tx),
        }
        if batch.len() == BATCH_ROWS {
            send(tx, Message::Rows(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS))))?;
        }
    }
    if !batch.is_empty() {
        send(tx, Message::Rows(batch))?;
    }
    Ok(())
}

fn csv_error(error: csv::Error, tx: &mpsc::Sender<Message>) -> io::Result<()> {
    let line = error.position().map(|p| p.line());
    match error.into_kind() {
        csv::ErrorKind::Io(e) => Err(e),
        other => {
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            send(tx, Message::Failed(ReadError::Malformed(format!("the CSV cannot be parsed{at}: {other:?}"))))
        }
    }
}

/// Picks the delimiter that occurs most often outside quotes in the header line; European
/// Excel exports use `;`, database dumps `\t` or `|`.
fn sniff_delimiter(header: &[u8], tab_hint: bool) -> u8 {
    let candidates = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &byte in header {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = candidates.iter().position(|&c| c == byte) {
            counts[i] += 1;
        }
    }
    let default = if tab_hint { b'\t' } else { b',' };
    let best = (0..candidates.len()).max_by_key(|&i| counts[i]).unwrap_or(0);
    if counts[best] == 0 || counts[best] == counts[candidates.iter().position(|&c| c == default).unwrap_or(0)] {
        default
    } else {
        candidates[best]
    }
}

fn parse_json_lines(source: Box<dyn Read>, tx: &mpsc::Sender<Message>) -> io::Result<()> {
    let mut lines = BufReader::with_capacity(256 * 1024, source);
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut layout_sent = false;
    let mut line = Vec::new();
    let mut lines_read = 0usize;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines_read += 1;
        let row = match std::str::from_utf8(&line) {
            Ok(text) => {
                let text = text.trim_end_matches(['\n', '\r']);
                let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                if text.trim().is_empty() {
                    continue;
                }
                parse_json_line(text)
            }
            // Never guess at a company name through replacement characters.
            Err(_) => Row::Invalid(InvalidRow {
                fields: vec![String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string()],
                reason: "the line is not valid UTF-8 text".into(),
            }),
        };
        if !layout_sent {
            if let Row::Json(json) = &row {
                send(tx, Message::Layout(Layout::JsonLines { first_object: Some(json.object.clone()) }))?;
                layout_sent = true;
            } else if lines_read >= FIRST_OBJECT_SCAN_LINES {
                send(tx, Message::Layout(Layout::JsonLines { first_object: None }))?;
                layout_sent = true;
            }
        }
        batch.push(row);
        if layout_sent && batch.len() >= BATCH_ROWS {
            send(tx, Message::Rows(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS))))?;
        }
    }
    if !layout_sent {
        send(tx, Message::Layout(Layout::JsonLines { first_object: None }))?;
    }
    if !batch.is_empty() {
        send(tx, Message::Rows(batch))?;
    }
    Ok(())
}

fn parse_json_line(text: &str) -> Row {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Row::Json(JsonRow { raw: text.to_string(), object }),
        Ok(_) => Row::Invalid(InvalidRow {
            fields: vec![text.to_string()],
            reason: "the line is JSON but not an object".into(),
        }),
        Err(_) => {
            Row::Invalid(InvalidRow { fields: vec![text.to_string()], reason: "the line is not valid JSON".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &'static [u8], format: Format) -> Result<(Layout, Vec<Row>), ReadError> {
        let mut stream = RowStream::open(Box::new(bytes), format).await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next_batch().await {
            rows.extend(batch?);
        }
        Ok((stream.layout, rows))
    }

    const CSV: Format = Format { kind: Kind::Csv { tab_hint: false }, gzip: false };
    const JSONL: Format = Format { kind: Kind::JsonLines, gzip: false };

    fn fields(row: &Row) -> Vec<String> {
        match row {
            Row::Csv(r) => r.iter().map(str::to_string).collect(),
            other => panic!("not a CSV row: {other:?}"),
        }
    }

    #[tokio::test]
    async fn quoted_fields_with_commas_quotes_and_newlines_survive() {
        let (layout, rows) = read_all(
            b"\xEF\xBB\xBFCompany,Notes\r\n\"Acme, Inc.\",\"said \"\"hi\"\"\r\nthen left\"\r\nBeta,x\r\n",
            CSV,
        )
        .await
        .unwrap();
        assert_eq!(layout, Layout::Csv { columns: vec!["Company".into(), "Notes".into()], delimiter: b',' });
        assert_eq!(fields(&rows[0]), ["Acme, Inc.", "said \"hi\"\r\nthen left"]);
        assert_eq!(fields(&rows[1]), ["Beta", "x"]);
    }

    #[tokio::test]
    async fn the_delimiter_is_sniffed_from_the_header() {
        for (text, delimiter) in [
            (&b"a;b;c\n1;2;3\n"[..], b';'),
            (&b"a\tb\n1\t2\n"[..], b'\t'),
            (&b"a|b\n1|2\n"[..], b'|'),
            (&b"\"x;y\",b\n1,2\n"[..], b','),
        ] {
            let (layout, rows) = read_all(text, CSV).await.unwrap();
            assert!(matches!(layout, Layout::Csv { delimiter: d, .. } if d == delimiter));
            assert_eq!(fields(&rows[0]).len(), if delimiter == b';' { 3 } else { 2 });
        }
    }

    #[tokio::test]
    async fn an_empty_csv_is_reported_as_empty() {
        let err = read_all(b"", CSV).await.unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[tokio::test]
    async fn json_lines_keep_raw_text_and_flag_bad_lines() {
        let (layout, rows) = read_all(b"\n[1]\n{\"a\": 1}\nnot json\n\n", JSONL).await.unwrap();
        assert!(matches!(layout, Layout::JsonLines { first_object: Some(ref o) } if o.contains_key("a")));
        assert_eq!(rows.len(), 3);
        assert!(matches!(&rows[0], Row::Invalid(r) if r.reason.contains("not an object")));
        assert!(matches!(&rows[1], Row::Json(j) if j.raw == "{\"a\": 1}"));
        assert!(matches!(&rows[2], Row::Invalid(r) if r.fields == ["not json"]));
    }

    #[tokio::test]
    async fn a_json_line_that_is_not_utf8_is_invalid_not_guessed() {
        let (_, rows) = read_all(b"{\"name\": \"Soci\xe9t\xe9\"}\n{\"name\": \"ok\"}\n", JSONL).await.unwrap();
        assert!(matches!(&rows[0], Row::Invalid(r) if r.reason.contains("UTF-8")), "{:?}", rows[0]);
        assert!(matches!(&rows[1], Row::Json(_)));
    }

    #[tokio::test]
    async fn a_csv_with_carriage_return_line_breaks_is_read_without_slurping_it() {
        let (layout, rows) = read_all(b"Company;City\rContoso;Paris\rFabrikam;Berlin\r", CSV).await.unwrap();
        assert!(matches!(layout, Layout::Csv { delimiter: b';', .. }), "{layout:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(fields(&rows[1]), ["Fabrikam", "Berlin"]);
    }

    #[tokio::test]
    async fn a_gz_that_is_not_gzip_is_malformed() {
        let err = read_all(b"Company\nAcme\n", Format { gzip: true, ..CSV }).await.unwrap_err();
        assert!(matches!(err, ReadError::Malformed(_)), "{err:?}");
    }

    #[tokio::test]
    async fn many_rows_arrive_in_order_across_batches() {
        let text: String = std::iter::once("n\n".to_string()).chain((0..5000).map(|i| format!("{i}\n"))).collect();
        let text: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        let (_, rows) = read_all(text, CSV).await.unwrap();
        assert_eq!(rows.len(), 5000);
        assert_eq!(fields(&rows[4999]), ["4999"]);
    }
}
