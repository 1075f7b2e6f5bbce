//! The streaming row reader: a blocking thread parses, the async side receives bounded chunks.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::decode::{self, LegacyText, TextEncoding, TextOrigin, classify, malformed};
use super::json_size::{self, MAX_JSON_ITEMS};
use super::quotes::{QuoteTracker, State};
use super::{Format, InvalidRow, JsonRow, Kind, Row};

/// Rows per message from the parser thread; with `CHANNEL_CHUNKS` in flight this bounds what
/// the reader holds in memory.
const CHUNK_ROWS: usize = 1024;
/// ... and at most about this many bytes of rows (of JSON lines, what they hold once parsed), so
/// that a file of huge cells cannot fill memory with a thousand of them.
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// What the CSV parser keeps for each field beside its bytes (where the field ends): a row of
/// nothing but delimiters is megabytes of this and no bytes of fields, and is counted so.
const FIELD_COST: usize = std::mem::size_of::<usize>();
/// A header of more names than this fails the file: each name is a string held for the whole run.
pub const MAX_HEADER_FIELDS: usize = 10_000;
const CHANNEL_CHUNKS: usize = 4;
/// Records handed back to be read into again (`RowStream::recycle`): as many as can be in use
/// at once (the chunks in the channel, the one being filled and the one being used), so that a
/// burst of handed-back chunks is kept rather than dropped. They are the records in flight
/// anyway: keeping them holds no more than reading did (figures: docs/benchmarks.md).
const MAX_SPARE_RECORDS: usize = CHUNK_ROWS * (CHANNEL_CHUNKS + 2);
/// ... and at most about this many bytes of rows: spare records of long rows are not kept.
const MAX_SPARE_BYTES: usize = 4 * 1024 * 1024;
/// A record that held a row longer than this, or with more fields, is not reused: its buffers
/// would stay that large.
const MAX_REUSED_RECORD_BYTES: usize = 4 * 1024;
const MAX_REUSED_RECORD_FIELDS: usize = 256;
/// JSON Lines auto-detection looks for the first object within this many lines.
const FIRST_OBJECT_SCAN_LINES: u64 = 1000;
/// The most of the header record read to sniff a CSV's delimiter.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// The longest row (CSV record or JSON line) read: a 20 MB cell is fine, a file without line
/// breaks is not read into memory whole.
pub const MAX_ROW_BYTES: u64 = 32 * 1024 * 1024;
/// The delimiter a one-column file is read with: the ASCII unit separator, which text never has.
const ONE_COLUMN: u8 = 0x1F;

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

enum Message {
    Layout(Layout, TextOrigin),
    Rows(Vec<Row>),
    /// The whole file was read: without it, a closed channel means the parser died.
    End,
    Failed(ReadError),
}

pub struct RowStream {
    pub layout: Layout,
    origin: TextOrigin,
    /// Rows that were not valid UTF-8 and were decoded as Windows-1252; final once drained.
    /// The legacy encoding the parser chose, once a row was not UTF-8.
    legacy: Arc<OnceLock<&'static encoding_rs::Encoding>>,
    rx: mpsc::Receiver<Message>,
    ended: bool,
    /// Records whose rows have been used, for the parser to read its next rows into.
    spare: Spare,
}

/// Records the parser reads into again: each row read allocated a record and the consumer freed
/// it on another thread, twice per row of a file (both passes), about a tenth of a run's CPU.
type Spare = Arc<std::sync::Mutex<SpareRecords>>;

#[derive(Default)]
struct SpareRecords {
    records: Vec<csv::ByteRecord>,
    /// The bytes of the rows they held.
    bytes: usize,
}

impl RowStream {
    /// Starts parsing `body` on a blocking thread and waits for the layout (the CSV header, or
    /// the first JSON object).
    /// `max_text_bytes` bounds the text after decompression.
    pub async fn open(
        body: Box<dyn AsyncRead + Send + Unpin>,
        format: Format,
        max_text_bytes: u64,
    ) -> Result<RowStream, ReadError> {
        let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
        let legacy = Arc::new(OnceLock::new());
        let chosen = legacy.clone();
        let spare = Spare::default();
        let parser_spare = spare.clone();
        let bridge = SyncIoBridge::new(body);
        tokio::task::spawn_blocking(move || {
            // A bug in a parser must give this file a failed summary, not end the file early
            // (rows lost) or reach the runtime.
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let text = decode::open_text(Box::new(bridge), format.gzip, max_text_bytes)?;
                let parser = Parser {
                    tx: &tx,
                    origin: text.origin,
                    legacy: RefCell::new(text.legacy),
                    chosen: &chosen,
                    spare: &parser_spare,
                };
                let result = match format.kind {
                    Kind::Csv { tab_hint } => parser.csv(text.reader, tab_hint),
                    Kind::JsonLines => parser.json_lines(text.reader),
                };
                result.map_err(classify)
            }));
            let last = match parsed {
                Ok(Ok(())) => Message::End,
                Ok(Err(error)) => Message::Failed(error),
                Err(_) => Message::Failed(ReadError::Malformed(
                    "the file could not be read because of an internal error in the row parser; \
                     please report it with the file's format"
                        .into(),
                )),
            };
            // The receiver may be gone (the job gave up): nothing left to tell.
            let _ = tx.blocking_send(last);
        });
        match rx.recv().await {
            Some(Message::Layout(layout, origin)) => Ok(RowStream { layout, origin, legacy, rx, ended: false, spare }),
            Some(Message::Failed(error)) => Err(error),
            Some(Message::Rows(_) | Message::End) | None => {
                Err(ReadError::Io(io::Error::other("the row parser stopped before reading the header")))
            }
        }
    }

    /// What the file's first bytes said about its text.
    pub fn origin(&self) -> TextOrigin {
        self.origin
    }

    /// The encoding the rows were read in; complete once every chunk has been received.
    pub fn encoding(&self) -> TextEncoding {
        match self.origin.encoding {
            TextEncoding::Utf8 => self.legacy.get().map_or(TextEncoding::Utf8, |e| TextEncoding::Legacy(e)),
            encoding => encoding,
        }
    }

    /// Hands a chunk back once its rows have been used, for the parser to read into again.
    pub fn recycle(&self, chunk: Vec<Row>) {
        let Ok(mut spare) = self.spare.lock() else { return };
        for row in chunk {
            let Row::Csv(record) = row else { continue };
            let bytes = record.as_byte_record().as_slice().len();
            if spare.records.len() >= MAX_SPARE_RECORDS || spare.bytes + bytes > MAX_SPARE_BYTES {
                break;
            }
            if bytes <= MAX_REUSED_RECORD_BYTES && record.len() <= MAX_REUSED_RECORD_FIELDS {
                spare.bytes += bytes;
                spare.records.push(record.into_byte_record());
            }
        }
    }

    /// The next chunk of rows, `None` at the end of the file.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<Row>, ReadError>> {
        if self.ended {
            return None;
        }
        let Some(message) = self.rx.recv().await else {
            return Some(Err(ReadError::Io(io::Error::other("the row parser stopped before the end of the file"))));
        };
        match message {
            Message::Rows(rows) => Some(Ok(rows)),
            Message::End => {
                self.ended = true;
                None
            }
            Message::Failed(error) => Some(Err(error)),
            Message::Layout(..) => {
                Some(Err(ReadError::Io(io::Error::other("unexpected second header from the row parser"))))
            }
        }
    }
}

/// Sends a message, turning a vanished receiver into an error that stops the parser thread.
fn send(tx: &mpsc::Sender<Message>, message: Message) -> io::Result<()> {
    tx.blocking_send(message).map_err(|_| io::Error::other("row receiver closed"))
}

/// The parsing side of a `RowStream`, on its blocking thread.
struct Parser<'a> {
    tx: &'a mpsc::Sender<Message>,
    origin: TextOrigin,
    legacy: RefCell<LegacyText>,
    chosen: &'a OnceLock<&'static encoding_rs::Encoding>,
    spare: &'a Spare,
}

impl Parser<'_> {
    /// A record to read the next row into: one the consumer handed back (all of them are taken
    /// at once), or a new one sized for a row like the last one read (`last`: its bytes and
    /// fields), so that it is not grown step by step as the row is read.
    fn spare_record(&self, records: &mut Vec<csv::ByteRecord>, last: (usize, usize)) -> csv::ByteRecord {
        if records.is_empty()
            && let Ok(mut spare) = self.spare.lock()
        {
            std::mem::swap(&mut spare.records, records);
            spare.bytes = 0;
        }
        records.pop().unwrap_or_else(|| {
            let (bytes, fields) = last;
            let bytes = (bytes + bytes / 2).clamp(64, MAX_REUSED_RECORD_BYTES);
            csv::ByteRecord::with_capacity(bytes, fields.min(MAX_REUSED_RECORD_FIELDS) + 1)
        })
    }

    fn send(&self, message: Message) -> io::Result<()> {
        send(self.tx, message)
    }

    fn layout(&self, layout: Layout) -> io::Result<()> {
        self.send(Message::Layout(layout, self.origin))
    }

    /// Decodes one row's bytes (a JSON line, a CSV header): UTF-8, or the file's legacy encoding.
    fn text<'b>(&self, bytes: &'b [u8]) -> std::borrow::Cow<'b, str> {
        self.decode_fields(bytes, std::iter::once(bytes)).pop().unwrap_or_default()
    }

    /// Decodes a row's fields; `row` is all of its bytes, the encoding detector's evidence.
    fn decode_fields<'b>(&self, row: &[u8], fields: impl Iterator<Item = &'b [u8]>) -> Vec<std::borrow::Cow<'b, str>> {
        let mut legacy = self.legacy.borrow_mut();
        let decoded = legacy.decode(row, fields);
        if let Some(encoding) = legacy.chosen() {
            // Set once; later rows find it there.
            let _ = self.chosen.set(encoding);
        }
        decoded
    }

    fn csv(&self, source: Box<dyn Read>, tab_hint: bool) -> io::Result<()> {
        let mut source = BufReader::with_capacity(256 * 1024, source);
        let mut head = read_header_record(&mut source)?;
        // Excel's `sep=;` first line names the delimiter; it is not a row.
        let forced = match scan_header(&head) {
            HeaderScan { sep: Some(delimiter), end: Some(end), .. } => {
                head.drain(..=end);
                Some(delimiter)
            }
            _ => None,
        };
        // A header without any delimiter is a one-column file: its values are read whole, so
        // that an unquoted "Acme, Inc." from a semicolon-locale Excel stays one company. The
        // output is written with the default delimiter.
        let (delimiter, read_delimiter) = match forced.or_else(|| sniff_delimiter(&head, tab_hint)) {
            Some(found) => (found, found),
            None => (if tab_hint { b'\t' } else { b',' }, ONE_COLUMN),
        };
        let first_line = head;
        let (tracked, quotes) =
            QuoteTracker::new(io::Cursor::new(first_line).chain(source), read_delimiter, MAX_ROW_BYTES);
        let mut reader =
            csv::ReaderBuilder::new().delimiter(read_delimiter).flexible(true).has_headers(false).from_reader(tracked);

        let mut record = csv::ByteRecord::new();
        if !reader.read_byte_record(&mut record).map_err(csv_error)? {
            return Err(malformed("the file has no header row".into()));
        }
        if record.len() > MAX_HEADER_FIELDS {
            return Err(malformed(format!(
                "the header row has {} columns, more than {MAX_HEADER_FIELDS}: check that the file's delimiter is what \
                 separates its columns",
                record.len()
            )));
        }
        let columns = record.iter().map(|name| self.text(name).into_owned()).collect();
        self.layout(Layout::Csv { columns, delimiter })?;

        let mut chunk = Chunk::default();
        let mut records = Vec::new();
        // The header is the first row a new record is sized like.
        let mut last = (record.as_slice().len(), record.len());
        loop {
            let mut record = self.spare_record(&mut records, last);
            if !reader.read_byte_record(&mut record).map_err(csv_error)? {
                break;
            }
            let size = record.as_slice().len();
            last = (size, record.len());
            let row = match csv::StringRecord::from_byte_record(record) {
                Ok(row) => row,
                Err(not_utf8) => {
                    let record = not_utf8.into_byte_record();
                    csv::StringRecord::from(self.decode_fields(record.as_slice(), record.iter()))
                }
            };
            // What the row holds once read (decoded text can be longer than its bytes).
            let cost = row.as_byte_record().as_slice().len() + row.len() * FIELD_COST;
            if let Some(full) = chunk.push(Row::Csv(row), cost) {
                self.send(Message::Rows(full))?;
            }
        }
        if let Some(line) = quotes.unclosed_quote_line() {
            // Every later line was read as part of one value: enriching the rows before it and
            // billing them again once the file is fixed would cost twice.
            return Err(malformed(format!(
                "a quoted value opens on line {line} and is never closed, so the rest of the file would be read \
                 as one value; close the quote (\") and upload the file again"
            )));
        }
        if !chunk.rows.is_empty() {
            self.send(Message::Rows(chunk.rows))?;
        }
        Ok(())
    }

    fn json_lines(&self, source: Box<dyn Read>) -> io::Result<()> {
        let mut lines = BufReader::with_capacity(256 * 1024, source);
        let mut chunk = Chunk::default();
        let mut layout_sent = false;
        let mut line_bytes = Vec::new();
        let mut lines_read = 0u64;
        loop {
            line_bytes.clear();
            if (&mut lines).take(MAX_ROW_BYTES + 1).read_until(b'\n', &mut line_bytes)? == 0 {
                break;
            }
            if line_bytes.len() as u64 > MAX_ROW_BYTES {
                return Err(malformed(format!(
                    "line {} is longer than {} MiB; JSON Lines needs one object per line",
                    lines_read + 1,
                    MAX_ROW_BYTES / (1024 * 1024)
                )));
            }
            // `\r` alone also ends a line (files from classic Mac tools).
            let body = line_bytes.strip_suffix(b"\n").unwrap_or(&line_bytes);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            for line in body.split(|&b| b == b'\r') {
                lines_read += 1;
                let text = self.text(line);
                if text.trim().is_empty() {
                    continue;
                }
                let (row, cost) = parse_json_line(&text);
                if !layout_sent {
                    if let Row::Json(json) = &row {
                        self.layout(Layout::JsonLines { first_object: Some(json.object.clone()) })?;
                        layout_sent = true;
                    } else if lines_read >= FIRST_OBJECT_SCAN_LINES || chunk.cost >= CHUNK_BYTES {
                        self.layout(Layout::JsonLines { first_object: None })?;
                        layout_sent = true;
                    }
                }
                if let Some(full) = chunk.push(row, cost) {
                    // Rows never wait for the layout: a full chunk of lines that are not objects
                    // says there is none to find.
                    if !layout_sent {
                        self.layout(Layout::JsonLines { first_object: None })?;
                        layout_sent = true;
                    }
                    self.send(Message::Rows(full))?;
                }
            }
        }
        if !layout_sent {
            self.layout(Layout::JsonLines { first_object: None })?;
        }
        if !chunk.rows.is_empty() {
            self.send(Message::Rows(chunk.rows))?;
        }
        Ok(())
    }
}

/// Rows on their way to the pipeline, handed over by count or by size.
#[derive(Default)]
struct Chunk {
    rows: Vec<Row>,
    /// The memory the rows hold: a CSV record's bytes, a parsed JSON line's estimate.
    cost: usize,
}

impl Chunk {
    /// Adds a row holding `cost` bytes; returns the chunk to send once it is full.
    fn push(&mut self, row: Row, cost: usize) -> Option<Vec<Row>> {
        if self.rows.capacity() == 0 {
            // Whole from the start: grown by doubling, the rows were copied about twice.
            self.rows.reserve_exact(CHUNK_ROWS);
        }
        self.rows.push(row);
        self.cost += cost;
        if self.rows.len() < CHUNK_ROWS && self.cost < CHUNK_BYTES {
            return None;
        }
        self.cost = 0;
        Some(std::mem::take(&mut self.rows))
    }
}

/// Reads the header record: blank lines before it are skipped (as the CSV parser would), and
/// a header cell with a line break in it (Alt+Enter in Excel) is read to its closing quote, up
/// to a cap: a file without line breaks must not be read into memory here.
fn read_header_record(source: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let read = source.take(MAX_HEADER_BYTES).read_until(b'\n', &mut head)?;
        if head.iter().all(u8::is_ascii_whitespace) {
            if read == 0 {
                return Err(malformed(
                    "the file has no header row: a CSV file must start with a line naming its columns".into(),
                ));
            }
            head.clear();
            continue;
        }
        if read == 0 || scan_header(&head).end.is_some() || head.len() as u64 >= MAX_HEADER_BYTES {
            return Ok(head);
        }
    }
}

/// What the first record of a CSV says, read with the quote rules of `csv_core` (the same
/// states as the quote guard), any candidate delimiter ending a field.
struct HeaderScan {
    /// How often `,` `\t` `;` `|` separate fields.
    counts: [usize; 4],
    /// Where the record's line break is, if the bytes hold all of it.
    end: Option<usize>,
    /// The delimiter named by an Excel `sep=X` line.
    sep: Option<u8>,
}

const CANDIDATES: [u8; 4] = crate::enrichment::CSV_DELIMITERS;

fn scan_header(bytes: &[u8]) -> HeaderScan {
    let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(bytes.len());
    let mut counts = [0usize; 4];
    let mut state = State::StartOfField;
    let mut end = None;
    for (i, &byte) in bytes.iter().enumerate().skip(start) {
        if state.ends_record(byte) {
            end = Some(if byte == b'\r' && bytes.get(i + 1) == Some(&b'\n') { i + 1 } else { i });
            break;
        }
        let candidate = CANDIDATES.iter().position(|&c| c == byte);
        state = state.next(byte, candidate.is_some());
        if let Some(index) = candidate.filter(|_| state == State::StartOfField) {
            counts[index] += 1;
        }
    }
    let record = &bytes[start..end.map_or(bytes.len(), |e| e.min(bytes.len()))];
    let record = record.strip_suffix(b"\r").unwrap_or(record);
    let sep = match record {
        [b's' | b'S', b'e' | b'E', b'p' | b'P', b'=', delimiter] => Some(*delimiter),
        _ => None,
    };
    HeaderScan { counts, end, sep }
}

/// Picks the delimiter that occurs most often between the header's fields; European Excel
/// exports use `;`, database dumps `\t` or `|`. `None` when the header has none of them. A tie
/// is settled in the order `,` `\t` `;` `|`, or for tab first in a `.tsv`.
fn sniff_delimiter(header: &[u8], tab_hint: bool) -> Option<u8> {
    let counts = scan_header(header).counts;
    let best = (0..CANDIDATES.len()).rev().max_by_key(|&i| counts[i])?;
    let best = if tab_hint && counts[1] == counts[best] { 1 } else { best };
    (counts[best] > 0).then_some(CANDIDATES[best])
}

/// A CSV error is the file's fault unless it is an I/O error underneath.
fn csv_error(error: csv::Error) -> io::Error {
    let line = error.position().map(|p| p.line());
    match error.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => {
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            malformed(format!("the CSV cannot be parsed{at}: {other:?}"))
        }
    }
}

/// One JSON line as a row, with the memory the row holds (see `json_size`).
///
/// A line holding more keys and values than `MAX_JSON_ITEMS` is not parsed: its parsed form
/// could be a hundred times its text. Like a line that is not JSON, it is kept as text and
/// comes out `invalid_input`. A line shorter than the limit need not be counted: it cannot hold
/// more keys and values than it has bytes.
fn parse_json_line(text: &str) -> (Row, usize) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let invalid =
        |reason: &str| (Row::Invalid(InvalidRow { fields: vec![text.to_string()], reason: reason.into() }), text.len());
    if text.len() > MAX_JSON_ITEMS && json_size::count_items(text.as_bytes(), MAX_JSON_ITEMS) > MAX_JSON_ITEMS {
        return invalid(&format!(
            "the line holds more than {MAX_JSON_ITEMS} JSON keys and values, too many to read into memory; \
             keep each line to one company's fields"
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => {
            let cost = json_size::parsed_cost(text, &object);
            (Row::Json(JsonRow { raw: text.to_string(), object }), cost)
        }
        Ok(_) => invalid("the line is JSON but not an object; each line must be one {...} object"),
        Err(e) => invalid(&format!("the line is not valid JSON ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &'static [u8], format: Format) -> Result<(Layout, Vec<Row>), ReadError> {
        let mut stream = RowStream::open(Box::new(bytes), format, u64::MAX).await?;
        let mut rows = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            rows.extend(chunk?);
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
    async fn rows_read_into_recycled_records_are_read_as_written() {
        // Rows of every width, some too long to be reused, across many chunks: a record read
        // into again must hold only its new row.
        let long = "x".repeat(MAX_REUSED_RECORD_BYTES + 1);
        let rows: Vec<Vec<String>> = (0..5000)
            .map(|i| match i % 7 {
                0 => vec![format!("a{i}")],
                5 => (0..MAX_REUSED_RECORD_FIELDS + 1).map(|f| f.to_string()).collect(),
                3 => vec![format!("b{i}"), long.clone(), String::new()],
                _ => (0..i % 5 + 2).map(|f| format!("c{i}-{f}")).collect(),
            })
            .collect();
        let text: String = std::iter::once("h1,h2\n".to_string())
            .chain(rows.iter().map(|fields| format!("{}\n", fields.join(","))))
            .collect();
        let mut stream =
            RowStream::open(Box::new(std::io::Cursor::new(text.into_bytes())), CSV, u64::MAX).await.unwrap();
        let mut read = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            let chunk = chunk.unwrap();
            read.extend(chunk.iter().map(fields));
            stream.recycle(chunk);
        }
        assert_eq!(read, rows);
    }

    #[tokio::test]
    async fn handed_back_records_are_kept_up_to_a_bound_but_those_of_long_rows_are_not() {
        // A stream read to its end: its parser takes no more records.
        let ended = || async {
            let mut stream =
                RowStream::open(Box::new(std::io::Cursor::new(b"h1,h2\n".to_vec())), CSV, u64::MAX).await.unwrap();
            assert!(stream.next_chunk().await.is_none());
            stream
        };
        let stream = ended().await;
        let chunk = |fields: &[&str]| -> Vec<Row> {
            (0..CHUNK_ROWS).map(|_| Row::Csv(csv::StringRecord::from(fields.to_vec()))).collect()
        };
        // The most chunks that can be in use at once, handed back one after another.
        for _ in 0..CHANNEL_CHUNKS + 2 {
            stream.recycle(chunk(&["Contoso", "Paris"]));
        }
        let kept = |stream: &RowStream| stream.spare.lock().unwrap().records.len();
        assert_eq!(kept(&stream), MAX_SPARE_RECORDS);
        stream.recycle(chunk(&["Contoso", "Paris"]));
        assert_eq!(kept(&stream), MAX_SPARE_RECORDS, "no more than the bound");

        let stream = ended().await;
        let long = "x".repeat(MAX_REUSED_RECORD_BYTES + 1);
        stream.recycle(chunk(&[&long]));
        assert_eq!(kept(&stream), 0, "a record that held a long row is not reused");
        let big = "x".repeat(MAX_REUSED_RECORD_BYTES / 2);
        stream.recycle(chunk(&[&big, &big]));
        let spare = stream.spare.lock().unwrap();
        assert!(spare.bytes <= MAX_SPARE_BYTES && spare.records.len() == MAX_SPARE_BYTES / (2 * big.len()));
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
    async fn the_header_is_read_as_the_parser_reads_it() {
        let cases: [(&[u8], u8, &[&str]); 6] = [
            (b"\"Company\nName\",City\nAcme,Paris\n", b',', &["Company\nName", "City"]),
            (b"Company\rAcme, Inc.\rBeta\r", b',', &["Company"]),
            (b"\r\n\r\nCompany;City\r\nAcme;Paris\r\n", b';', &["Company", "City"]),
            (b"sep=;\r\nCompany;City\r\nAcme, Inc.;Paris\r\n", b';', &["Company", "City"]),
            (b"\"a\"\",b\";c\n1;2\n", b';', &["a\",b", "c"]),
            (b"\"Company\"", b',', &["Company"]),
        ];
        for (bytes, delimiter, columns) in cases {
            let (layout, rows) = read_all(bytes, CSV).await.unwrap();
            let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            assert_eq!(layout, Layout::Csv { columns, delimiter }, "{:?}", String::from_utf8_lossy(bytes));
            if let Some(first) = rows.first() {
                assert!(!fields(first)[0].contains('\n'), "{first:?}");
            }
        }
        let (_, rows) = read_all(b"Company\rAcme, Inc.\rBeta\r", CSV).await.unwrap();
        assert_eq!(rows.iter().map(|r| fields(r)[0].clone()).collect::<Vec<_>>(), ["Acme, Inc.", "Beta"]);
    }

    #[tokio::test]
    async fn json_lines_split_on_carriage_returns_too() {
        let (_, rows) = read_all(b"{\"a\": 1}\r{\"a\": 2}\r\n{\"a\": 3}", JSONL).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| matches!(r, Row::Json(_))));
    }

    #[tokio::test]
    async fn chunks_are_bounded_by_bytes_not_only_rows() {
        let cell = "x".repeat(3 * 1024 * 1024);
        let text: String =
            std::iter::once("Company,Notes\n".to_string()).chain((0..6).map(|i| format!("C{i},{cell}\n"))).collect();
        let mut stream = RowStream::open(Box::new(io::Cursor::new(text.into_bytes())), CSV, u64::MAX).await.unwrap();
        let mut sizes = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            sizes.push(chunk.unwrap().len());
        }
        assert_eq!(sizes, [3, 3]);
    }

    #[tokio::test]
    async fn a_one_column_file_keeps_unquoted_delimiters_inside_its_values() {
        let (layout, rows) = read_all(b"Company\nAcme, Inc.\nBeta; Gamma|x\n\"Quoted, too\"\n", CSV).await.unwrap();
        assert_eq!(layout, Layout::Csv { columns: vec!["Company".into()], delimiter: b',' });
        let values: Vec<Vec<String>> = rows.iter().map(fields).collect();
        assert_eq!(values, [["Acme, Inc."], ["Beta; Gamma|x"], ["Quoted, too"]]);
    }

    #[tokio::test]
    async fn an_empty_csv_is_reported_as_empty() {
        for (bytes, says) in [(&b""[..], "empty (0 bytes)"), (b"\r\n\r\n", "no header row")] {
            let err = read_all(bytes, CSV).await.unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
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

    async fn read_stream(bytes: Vec<u8>, format: Format) -> Result<(RowStream, Vec<Row>), ReadError> {
        let mut stream = RowStream::open(Box::new(io::Cursor::new(bytes)), format, u64::MAX).await?;
        let mut rows = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            rows.extend(chunk?);
        }
        Ok((stream, rows))
    }

    #[tokio::test]
    async fn a_json_line_in_windows_1252_is_decoded_not_mangled() {
        let (stream, rows) =
            read_stream(b"{\"name\": \"Soci\xe9t\xe9 G\xe9n\xe9rale\"}\n{\"name\": \"ok\"}\n".to_vec(), JSONL)
                .await
                .unwrap();
        assert!(matches!(&rows[0], Row::Json(j) if j.object["name"] == "Société Générale"), "{:?}", rows[0]);
        assert_eq!(stream.encoding(), TextEncoding::Legacy(encoding_rs::WINDOWS_1252));
    }

    #[tokio::test]
    async fn a_european_excel_export_comes_out_as_utf8() {
        let bytes = b"Soci\xe9t\xe9;Ville\nSoci\xe9t\xe9 G\xe9n\xe9rale;Paris\nM\xfcller GmbH;K\xf6ln\n".to_vec();
        let (stream, rows) = read_stream(bytes, CSV).await.unwrap();
        assert_eq!(stream.layout, Layout::Csv { columns: vec!["Société".into(), "Ville".into()], delimiter: b';' });
        assert_eq!(fields(&rows[0]), ["Société Générale", "Paris"]);
        assert_eq!(fields(&rows[1]), ["Müller GmbH", "Köln"]);
        assert_eq!(stream.encoding(), TextEncoding::Legacy(encoding_rs::WINDOWS_1252));
    }

    /// A CSV of real company names as a legacy Excel export writes them, read back.
    async fn legacy_export(encoding: &'static encoding_rs::Encoding, names: &[&str]) {
        let text: String = std::iter::once("Company;City\n".to_string())
            .chain(names.iter().map(|name| format!("{name};-\n")))
            .collect();
        let (bytes, _, unmappable) = encoding.encode(&text);
        assert!(!unmappable, "every name is in {}", encoding.name());
        let (stream, rows) = read_stream(bytes.into_owned(), CSV).await.unwrap();
        let read: Vec<String> = rows.iter().map(|row| fields(row)[0].clone()).collect();
        assert_eq!(read, names, "read as {:?}", stream.encoding());
        assert_eq!(stream.encoding(), TextEncoding::Legacy(encoding));
    }

    #[tokio::test]
    async fn western_european_names_in_windows_1252_are_still_read_as_written() {
        let names = [
            "Müller & Söhne GmbH",
            "Société Générale",
            "Telefónica S.A.",
            "Nestlé S.A.",
            "Åhléns AB",
            "Straßenbau Köln GmbH",
            "Crédit Agricole",
        ];
        legacy_export(encoding_rs::WINDOWS_1252, &names).await;
    }

    #[tokio::test]
    async fn polish_and_czech_names_in_windows_1250_are_read_as_written() {
        let names = [
            "Zakłady Mięsne Łuków S.A.",
            "Przedsiębiorstwo Żegluga Gdańska Sp. z o.o.",
            "Škoda Auto a.s.",
            "Česká spořitelna, a.s.",
            "Żabka Polska Sp. z o.o.",
            "Třinecké železárny, a.s.",
        ];
        legacy_export(encoding_rs::WINDOWS_1250, &names).await;
    }

    #[tokio::test]
    async fn cyrillic_names_in_windows_1251_are_read_as_written() {
        let names = ["ОАО Газпром", "ПАО Сбербанк России", "Лукойл", "Норильский никель", "АО Почта России"];
        legacy_export(encoding_rs::WINDOWS_1251, &names).await;
    }

    #[tokio::test]
    async fn japanese_names_in_shift_jis_are_read_as_written() {
        let names = [
            "トヨタ自動車株式会社",
            "株式会社日立製作所",
            "ソニーグループ株式会社",
            "任天堂株式会社",
            "株式会社三菱UFJ銀行",
        ];
        legacy_export(encoding_rs::SHIFT_JIS, &names).await;
    }

    #[tokio::test]
    async fn chinese_names_in_gb18030_are_read_as_written() {
        let names = [
            "华为技术有限公司",
            "阿里巴巴集团控股有限公司",
            "中国石油天然气集团有限公司",
            "腾讯控股有限公司",
            "比亚迪股份有限公司",
        ];
        legacy_export(encoding_rs::GB18030, &names).await;
    }

    #[tokio::test]
    async fn utf8_rows_stay_utf8_and_say_so() {
        let (stream, rows) = read_stream("Company\nSociété Générale\n".as_bytes().to_vec(), CSV).await.unwrap();
        assert_eq!(fields(&rows[0]), ["Société Générale"]);
        assert_eq!(stream.encoding(), TextEncoding::Utf8);
    }

    #[tokio::test]
    async fn a_utf16_tab_separated_export_is_read() {
        let text = "\u{feff}Company\tCountry\r\nSociété Générale\tFR\r\n";
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let (stream, rows) = read_stream(bytes, CSV).await.unwrap();
        assert!(matches!(&stream.layout, Layout::Csv { columns, delimiter: b'\t' } if columns[0] == "Company"));
        assert_eq!(fields(&rows[0]), ["Société Générale", "FR"]);
        assert_eq!(stream.origin(), TextOrigin { encoding: TextEncoding::Utf16Le, had_bom: true });
    }

    #[tokio::test]
    async fn an_unclosed_quote_fails_the_file_naming_its_line() {
        let err = read_all(b"Company,City\nAcme,Paris\n\"Beta,Berlin\nGamma,Rome\n", CSV).await.unwrap_err();
        assert!(matches!(&err, ReadError::Malformed(why) if why.contains("line 3")), "{err:?}");
    }

    #[tokio::test]
    async fn a_20_mb_cell_is_read_whole() {
        let mut bytes = b"Company,Notes\nAcme,\"".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
        bytes.extend(b"\"\nBeta,short\n");
        let (_, rows) = read_stream(bytes, CSV).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(fields(&rows[0])[1].len(), 20 * 1024 * 1024);
    }

    #[tokio::test]
    async fn a_row_past_the_row_limit_fails_the_file_instead_of_exhausting_memory() {
        let mut bytes = b"Company\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_ROW_BYTES as usize + 10));
        let err = read_stream(bytes.clone(), CSV).await.err().unwrap();
        assert!(matches!(&err, ReadError::Malformed(why) if why.contains("longer than 32 MiB")), "{err:?}");
        bytes[..8].copy_from_slice(b"{\"a\":1}\n");
        let err = read_stream(bytes, JSONL).await.err().unwrap();
        assert!(matches!(&err, ReadError::Malformed(why) if why.contains("line 2 is longer")), "{err:?}");
    }

    #[tokio::test]
    async fn a_header_only_csv_has_columns_and_no_rows() {
        let (layout, rows) = read_all(b"Company,City\r\n", CSV).await.unwrap();
        assert!(matches!(layout, Layout::Csv { ref columns, .. } if columns.len() == 2));
        assert!(rows.is_empty());
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

    /// Counts what each thread allocates, so that a test can show what parsing a line costs.
    mod allocations {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        struct Counting;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(delta: isize) {
            // `try_with`: the allocator also runs while a thread's locals are torn down.
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + delta);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }

        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size() as isize);
                unsafe { System.alloc(layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size() as isize);
                unsafe { System.alloc_zeroed(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                note(-(layout.size() as isize));
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size as isize);
                note(-(layout.size() as isize));
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        /// What `f` returns, and the most this thread held at once while it ran, beyond what it
        /// held before.
        pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let before = LIVE.with(Cell::get);
            PEAK.with(|peak| peak.set(before));
            let out = f();
            (out, (PEAK.with(Cell::get) - before) as usize)
        }
    }

    /// `{"name":"x","a":[0,0,...]}` of `len` bytes: two keys, two values and the array's
    /// elements.
    fn zeros_line(len: usize) -> String {
        let head = "{\"name\":\"x\",\"a\":[0";
        let zeros = (len - head.len() - 2) / 2;
        let line = format!("{head}{}]}}", ",0".repeat(zeros));
        assert!(line.len() <= len && line.len() + 1 >= len, "{}", line.len());
        line
    }

    #[test]
    fn a_json_line_too_large_once_parsed_is_kept_as_text_without_being_parsed() {
        // Just under the row limit with its line break: 16 million numbers, which `serde_json`
        // would build into more than a GiB of values.
        let line = zeros_line(MAX_ROW_BYTES as usize - 1);
        let ((row, cost), peak) = allocations::peak(|| parse_json_line(&line));
        let Row::Invalid(invalid) = &row else { panic!("parsed: {:?}", std::mem::discriminant(&row)) };
        assert!(invalid.reason.contains("more than 100000 JSON keys and values"), "{}", invalid.reason);
        assert!(invalid.fields.len() == 1 && invalid.fields[0] == line, "the line's text is kept whole");
        // The one copy of its text, and nothing of its parsed form.
        assert!(peak < line.len() + 64 * 1024, "peak {peak} for a line of {}", line.len());
        assert_eq!(cost, line.len());
    }

    #[test]
    fn a_json_line_is_parsed_up_to_the_limit_and_kept_as_text_past_it() {
        let at_limit = zeros_line(2 * MAX_JSON_ITEMS + 10);
        assert_eq!(json_size::count_items(at_limit.as_bytes(), usize::MAX), MAX_JSON_ITEMS);
        let (row, cost) = parse_json_line(&at_limit);
        assert!(matches!(&row, Row::Json(j) if j.object["a"].as_array().unwrap().len() == MAX_JSON_ITEMS - 4));
        assert_eq!(cost, 2 * at_limit.len() + MAX_JSON_ITEMS * json_size::PARSED_BYTES_PER_ITEM);
        let past = zeros_line(at_limit.len() + 2);
        assert!(matches!(parse_json_line(&past).0, Row::Invalid(r) if r.reason.contains("JSON keys and values")));
        // A long line of few values (a 20 MB note) is read whole.
        let note = format!("{{\"name\":\"x\",\"note\":\"{}\"}}", "a, b: [c] {d} \\\" ".repeat(1_000_000));
        assert!(
            matches!(parse_json_line(&note).0, Row::Json(j) if j.raw == note && j.object["note"].as_str().unwrap().len() > 10_000_000)
        );
    }

    #[test]
    fn a_json_line_with_nested_objects_is_read_as_before() {
        let text =
            r#"{"name":"Acme","address":{"city":"Paris","geo":{"lat":48.85,"lon":2.35}},"tags":["a",[],{}],"n":null}"#;
        let (row, cost) = parse_json_line(text);
        let object: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(row, Row::Json(JsonRow { raw: text.into(), object }));
        assert_eq!(cost, 2 * text.len() + 21 * json_size::PARSED_BYTES_PER_ITEM);
    }

    #[tokio::test]
    async fn a_json_line_too_large_once_parsed_keeps_its_place_among_the_rows() {
        let mut text = b"{\"name\":\"a\"}\n".to_vec();
        text.extend(zeros_line(MAX_ROW_BYTES as usize - 1).as_bytes());
        text.extend(b"\n{\"name\":\"b\"}\n");
        let (stream, rows) = read_stream(text, JSONL).await.unwrap();
        assert!(matches!(&stream.layout, Layout::JsonLines { first_object: Some(o) } if o["name"] == "a"));
        assert_eq!(rows.len(), 3);
        assert!(matches!(&rows[0], Row::Json(j) if j.object["name"] == "a"));
        assert!(matches!(&rows[1], Row::Invalid(r) if r.reason.contains("JSON keys and values")));
        assert!(matches!(&rows[2], Row::Json(j) if j.object["name"] == "b"));
    }

    #[tokio::test]
    async fn json_chunks_are_bounded_by_what_the_rows_hold_once_parsed() {
        // 60 KB lines of 30,000 numbers each hold about 10 MB parsed: one per chunk, where
        // their bytes alone would have let a hundred of them into one.
        let line = zeros_line(60_000);
        let text = format!("{line}\n").repeat(4) + "{\"name\":\"a\"}\n{\"name\":\"b\"}\n";
        let mut stream = RowStream::open(Box::new(io::Cursor::new(text.into_bytes())), JSONL, u64::MAX).await.unwrap();
        let mut sizes = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            sizes.push(chunk.unwrap().len());
        }
        assert_eq!(sizes, [1, 1, 1, 1, 2]);
    }

    #[tokio::test]
    async fn lines_that_fill_a_chunk_before_any_object_are_rows_not_lost() {
        // 9 MiB of a JSON array: not an object, and a whole chunk by itself.
        let array = format!("[0{}]", ",0".repeat(9 * 512 * 1024));
        let text = format!("{array}\n{{\"name\":\"a\"}}\n");
        let (stream, rows) = read_stream(text.into_bytes(), JSONL).await.unwrap();
        assert_eq!(rows.len(), 2, "every line is a row");
        assert!(matches!(&rows[0], Row::Invalid(_)));
        assert!(matches!(&rows[1], Row::Json(j) if j.object["name"] == "a"));
        assert!(matches!(&stream.layout, Layout::JsonLines { first_object: None }));
    }

    #[tokio::test]
    async fn many_rows_arrive_in_order_across_chunks() {
        let text: String = std::iter::once("n\n".to_string()).chain((0..5000).map(|i| format!("{i}\n"))).collect();
        let text: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        let (_, rows) = read_all(text, CSV).await.unwrap();
        assert_eq!(rows.len(), 5000);
        assert_eq!(fields(&rows[4999]), ["4999"]);
    }

    /// Every chunk as the stream hands it over.
    async fn chunks_of(bytes: &'static [u8]) -> Vec<Vec<Row>> {
        let mut stream = RowStream::open(Box::new(bytes), CSV, u64::MAX).await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            chunks.push(chunk.unwrap());
        }
        chunks
    }

    #[tokio::test]
    async fn rows_of_nothing_but_delimiters_count_what_the_parser_keeps_for_each_field() {
        // Ten rows of a million empty fields: no field bytes, 8 MB of field ends each.
        let mut text = b"Company,Notes\nContoso,x\n".to_vec();
        for _ in 0..10 {
            text.extend(std::iter::repeat_n(b',', 1_000_000));
            text.push(b'\n');
        }
        let chunks = chunks_of(Box::leak(text.into_boxed_slice())).await;
        let rows: usize = chunks.iter().map(Vec::len).sum();
        assert_eq!(rows, 11, "every row comes through");
        let flood = |chunk: &Vec<Row>| chunk.iter().filter(|row| matches!(row, Row::Csv(r) if r.len() > 1000)).count();
        let per_chunk: Vec<usize> = chunks.iter().map(flood).collect();
        assert!(per_chunk.iter().all(|&n| n <= 2), "a chunk's budget holds two such rows at most: {per_chunk:?}");
    }

    #[tokio::test]
    async fn a_header_of_more_columns_than_can_be_held_fails_the_file_saying_why() {
        let mut text = b"Company".to_vec();
        text.extend(std::iter::repeat_n(b',', MAX_HEADER_FIELDS));
        text.extend_from_slice(b"\nContoso\n");
        let error = read_all(Box::leak(text.into_boxed_slice()), CSV).await.expect_err("refused");
        assert!(error.to_string().contains("header row has 10001 columns"), "{error}");
    }
}
