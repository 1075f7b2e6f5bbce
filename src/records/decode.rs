//! From the object's bytes to UTF-8 text: compression and encoding are recognised from the
//! content, not trusted from the name, because spreadsheets and scripts get names wrong.
//!
//! - gzip is recognised by its magic bytes, with or without `.gz` in the name; a `.gz` that is
//!   not gzip is refused by name.
//! - Binary formats renamed to `.csv` (an Excel workbook, a PDF, Parquet) are refused before a
//!   single "row" of garbage could be sent to Leadspace.
//! - UTF-16 (Excel's "Unicode text", PowerShell's `Out-File`) is transcoded to UTF-8, with a BOM
//!   or recognised from the zero bytes of an ASCII header.
//! - A UTF-8 BOM is removed. Text that is not valid UTF-8 is a legacy export (Excel's "CSV" in
//!   the machine's code page): its encoding is detected with chardetng from the first bytes of
//!   the text and the first row that is not UTF-8, once per file, so that Windows-1250
//!   (Polish, Czech), Windows-1251 (Cyrillic), Shift-JIS or GB18030 names reach Leadspace as
//!   written rather than garbled as Windows-1252 (see [`LegacyText`]). Both passes read the same
//!   bytes in the same order, so they choose the same encoding.

use std::borrow::Cow;
use std::io::{self, BufReader, Read};

use encoding_rs::{Encoding, GB18030, GBK, UTF_16BE, UTF_16LE, WINDOWS_1252};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ReadError;

/// The text encoding a file was read in, as the summary reports it (by its WHATWG name, lower
/// case: `utf-8`, `utf-16le`, `windows-1250`, `shift_jis`, `gb18030`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    #[default]
    Utf8,
    Utf16Le,
    Utf16Be,
    /// At least one row was not valid UTF-8 and was decoded in this legacy encoding.
    Legacy(&'static Encoding),
}

impl TextEncoding {
    pub fn name(self) -> String {
        match self {
            TextEncoding::Utf8 => "utf-8".into(),
            TextEncoding::Utf16Le => "utf-16le".into(),
            TextEncoding::Utf16Be => "utf-16be".into(),
            TextEncoding::Legacy(encoding) => encoding.name().to_ascii_lowercase(),
        }
    }
}

impl Serialize for TextEncoding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for TextEncoding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match Encoding::for_label(name.as_bytes()) {
            Some(encoding) if encoding == encoding_rs::UTF_8 => TextEncoding::Utf8,
            Some(encoding) if encoding == UTF_16LE => TextEncoding::Utf16Le,
            Some(encoding) if encoding == UTF_16BE => TextEncoding::Utf16Be,
            Some(encoding) => TextEncoding::Legacy(encoding),
            None => return Err(serde::de::Error::custom(format!("unknown encoding {name:?}"))),
        })
    }
}

/// What the first bytes of the text said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOrigin {
    pub encoding: TextEncoding,
    /// The file started with a byte-order mark; its output gets one too, so that Excel reads it.
    pub had_bom: bool,
}

/// The object's text, ready for a parser.
pub struct Text {
    pub reader: Box<dyn Read>,
    pub origin: TextOrigin,
    /// How rows that are not UTF-8 are decoded.
    pub legacy: LegacyText,
}

/// The first bytes of UTF-8-or-legacy text given to the encoding detector: enough for a few
/// thousand rows of names, read once (pass 1 and pass 2 alike) and handed on to the parser.
const DETECTION_WINDOW: usize = 256 * 1024;

const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Binary formats users upload by mistake, by their first bytes. `PAR1` could also be the
/// name of a first column, so Parquet also needs a control byte right after it.
const BINARY_FORMATS: &[(&[u8], bool, &str)] = &[
    (b"PK\x03\x04", false, "a ZIP archive (an Excel .xlsx workbook is one); save it as CSV UTF-8 and upload that"),
    (b"\xD0\xCF\x11\xE0", false, "a legacy Excel (.xls) workbook; save it as CSV UTF-8 and upload that"),
    (b"%PDF-", false, "a PDF document; export the table as CSV and upload that"),
    (b"PAR1", true, "a Parquet file; export it as CSV or JSON Lines and upload that"),
];
const HEAD_BYTES: usize = 8;

fn is_binary(head: &[u8], magic: &[u8], control_after: bool) -> bool {
    let control = |b: &u8| b.is_ascii_control() && !b"\t\r\n".contains(b);
    head.starts_with(magic) && (!control_after || head[magic.len()..].iter().any(control))
}

/// Reads up to `n` bytes, fewer only at the end of the stream.
fn read_prefix(reader: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Opens the object's bytes as UTF-8 text. `named_gzip` is whether the key ends in `.gz`.
/// Errors are `ReadError::Malformed` for a problem with the file, `Io` for a problem reading it.
pub fn open_text(raw: Box<dyn Read>, named_gzip: bool, max_text_bytes: u64) -> Result<Text, ReadError> {
    let mut raw = raw;
    let magic = read_prefix(&mut raw, 2).map_err(ReadError::Io)?;
    if magic.is_empty() {
        return Err(ReadError::Malformed(
            "the object is empty (0 bytes); upload the file again with its header row and data".into(),
        ));
    }
    let is_gzip = magic.starts_with(GZIP_MAGIC);
    if named_gzip && !is_gzip {
        return Err(ReadError::Malformed(
            "the object's name ends in .gz but its content is not gzip-compressed; \
             compress it with gzip or remove .gz from the name"
                .into(),
        ));
    }
    let raw: Box<dyn Read> = Box::new(io::Cursor::new(magic).chain(raw));
    let mut text: Box<dyn Read> = if is_gzip {
        Box::new(GzipErrors(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, raw)))))
    } else {
        raw
    };

    let head = read_prefix(&mut text, HEAD_BYTES).map_err(classify)?;
    if let Some((.., what)) = BINARY_FORMATS.iter().find(|(magic, after, _)| is_binary(&head, magic, *after)) {
        return Err(ReadError::Malformed(format!(
            "the object's content is not text: it is {what} (supported formats: {})",
            super::format::SUPPORTED
        )));
    }
    let (encoding, had_bom) = sniff_encoding(&head);
    let rest: Box<dyn Read> = Box::new(io::Cursor::new(head).chain(text));
    let reader: Box<dyn Read> = match encoding {
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            let label = if encoding == TextEncoding::Utf16Le { UTF_16LE } else { UTF_16BE };
            let decoder =
                if had_bom { label.new_decoder_with_bom_removal() } else { label.new_decoder_without_bom_handling() };
            Box::new(Utf16Text {
                inner: rest,
                decoder,
                input: vec![0; 64 * 1024],
                pending: 0,
                ended: false,
                finished: false,
                // UTF-8 of 64 KiB of UTF-16 is at most 1.5 times as long.
                output: vec![0; 96 * 1024 + 16],
                out_start: 0,
                out_end: 0,
            })
        }
        _ if had_bom => {
            let mut rest = rest;
            read_prefix(&mut rest, UTF8_BOM.len()).map_err(classify)?;
            rest
        }
        _ => rest,
    };
    let mut reader: Box<dyn Read> = Box::new(TextLimit { inner: reader, left: max_text_bytes, limit: max_text_bytes });
    let legacy = match encoding {
        TextEncoding::Utf8 => {
            let window = read_prefix(&mut reader, DETECTION_WINDOW).map_err(classify)?;
            let legacy = LegacyText::new(&window);
            reader = Box::new(io::Cursor::new(window).chain(reader));
            legacy
        }
        // UTF-16 text has no legacy rows.
        _ => LegacyText::new(&[]),
    };
    Ok(Text { reader, origin: TextOrigin { encoding, had_bom }, legacy })
}

/// The encoding the first bytes announce. Without a BOM, a header of ASCII characters in UTF-16
/// shows as every other byte being zero.
fn sniff_encoding(head: &[u8]) -> (TextEncoding, bool) {
    match head {
        [0xFF, 0xFE, ..] => (TextEncoding::Utf16Le, true),
        [0xFE, 0xFF, ..] => (TextEncoding::Utf16Be, true),
        [0xEF, 0xBB, 0xBF, ..] => (TextEncoding::Utf8, true),
        // UTF-8 text has no zero bytes; UTF-16 of Latin text has one in every other byte.
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => (TextEncoding::Utf16Le, false),
        [0, a, 0, b, ..] if *a != 0 && *b != 0 => (TextEncoding::Utf16Be, false),
        _ => (TextEncoding::Utf8, false),
    }
}

/// Decodes the rows of a file that is UTF-8 or a legacy encoding: a row of valid UTF-8 as it
/// is, any other in the file's legacy encoding, chosen once, at the first such row, by chardetng
/// from the start of the text and that row. Never replacement characters: a multi-byte
/// encoding that cannot read a row leaves it to Windows-1252, which reads any byte.
pub struct LegacyText {
    detector: chardetng::EncodingDetector,
    /// Non-ASCII bytes the detector has seen.
    evidence: usize,
    chosen: Option<&'static Encoding>,
}

/// Below this many non-ASCII bytes, a guess is a coin toss (one `ö` before an `A` is as good a
/// GBK character as it is Latin): Windows-1252, the encoding of Western European Excel exports,
/// is read instead, as before detection. A file of Cyrillic, Japanese or Chinese names gives
/// the detector far more than this in its first rows.
const MIN_EVIDENCE_BYTES: usize = 8;

fn non_ascii(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| !b.is_ascii()).count()
}

impl LegacyText {
    /// `window`: the first bytes of the text. Its lines that are not UTF-8 are the detector's
    /// evidence; lines of valid UTF-8 are not (`é` in UTF-8 is as good a GBK character).
    pub fn new(window: &[u8]) -> Self {
        // ISO-2022-JP is 7-bit, so valid UTF-8: never the encoding of a row that is not.
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        let mut evidence = 0;
        let mut lines = window.split_inclusive(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            // The last line of a full window may be cut inside a character.
            let cut = lines.peek().is_none() && window.len() >= DETECTION_WINDOW;
            if !cut && std::str::from_utf8(line).is_err() {
                detector.feed(line, false);
                evidence += non_ascii(line);
            }
        }
        LegacyText { detector, evidence, chosen: None }
    }

    /// The legacy encoding of the file, chosen at the first call; `evidence` is the first row
    /// that is not UTF-8.
    fn encoding(&mut self, evidence: &[u8]) -> &'static Encoding {
        self.chosen.get_or_insert_with(|| {
            self.detector.feed(evidence, true);
            if self.evidence + non_ascii(evidence) < MIN_EVIDENCE_BYTES {
                return WINDOWS_1252;
            }
            match self.detector.guess(None, chardetng::Utf8Detection::Deny) {
                // encoding_rs decodes GBK as GB18030, its superset: name what was used.
                guess if guess == GBK => GB18030,
                guess => guess,
            }
        })
    }

    /// The encoding chosen, once a row needed one.
    pub fn chosen(&self) -> Option<&'static Encoding> {
        self.chosen
    }

    /// A row's fields: all as they are when the row is UTF-8, all in the file's legacy encoding
    /// when it is not (a field of a legacy row can look like UTF-8 by chance). `row` is the whole
    /// row's bytes.
    pub fn decode<'b>(&mut self, row: &[u8], fields: impl Iterator<Item = &'b [u8]>) -> Vec<Cow<'b, str>> {
        let fields: Vec<&'b [u8]> = fields.collect();
        let utf8: Option<Vec<Cow<'b, str>>> =
            fields.iter().map(|field| std::str::from_utf8(field).ok().map(Cow::Borrowed)).collect();
        if let Some(utf8) = utf8 {
            return utf8;
        }
        let encoding = self.encoding(row);
        fields
            .into_iter()
            .map(|field| match encoding.decode_without_bom_handling(field) {
                (_, true) => WINDOWS_1252.decode_without_bom_handling(field).0,
                (text, false) => text,
            })
            .collect()
    }
}

/// UTF-16 transcoded to UTF-8 as it is read. Broken UTF-16 (an odd number of bytes, an unpaired
/// surrogate) is refused rather than replaced: U+FFFD would put a made-up "company" in front of
/// Leadspace.
struct Utf16Text {
    inner: Box<dyn Read>,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    /// Bytes at the start of `input` not yet decoded.
    pending: usize,
    ended: bool,
    /// The decoder has been told the input ended; it must not be called again.
    finished: bool,
    /// UTF-8 decoded and not yet handed out: `output[out_start..out_end]`.
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
}

impl Read for Utf16Text {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_start < self.out_end {
                let n = buf.len().min(self.out_end - self.out_start);
                buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
                self.out_start += n;
                return Ok(n);
            }
            if self.finished {
                return Ok(0);
            }
            if !self.ended && self.pending < self.input.len() {
                let n = self.inner.read(&mut self.input[self.pending..])?;
                self.ended = n == 0;
                self.pending += n;
            }
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[..self.pending],
                &mut self.output,
                self.ended,
            );
            self.input.copy_within(read..self.pending, 0);
            self.pending -= read;
            if let encoding_rs::DecoderResult::Malformed(..) = result {
                return Err(malformed(
                    "the UTF-16 text is damaged or cut short (an odd number of bytes, or half of a character \
                     pair); export the file again, preferably as CSV UTF-8"
                        .into(),
                ));
            }
            (self.out_start, self.out_end) = (0, written);
            self.finished = self.ended && result == encoding_rs::DecoderResult::InputEmpty;
        }
    }
}

/// Counts the text's bytes after decompression: a small `.gz` can hold far more than
/// MAX_INPUT_BYTES.
struct TextLimit {
    inner: Box<dyn Read>,
    left: u64,
    limit: u64,
}

impl Read for TextLimit {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            malformed(format!(
                "the file's text is larger than MAX_INPUT_BYTES ({} bytes) once decompressed; split it into \
                 smaller files or raise MAX_INPUT_BYTES",
                self.limit
            ))
        })?;
        Ok(n)
    }
}

/// Marks decompression errors, right at the decoder, so that they are told apart from network
/// errors reading the body.
struct GzipErrors(Box<dyn Read>);

impl Read for GzipErrors {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                io::Error::new(io::ErrorKind::InvalidData, Malformed(truncated_gzip(&e)))
            }
            _ => e,
        })
    }
}

fn truncated_gzip(e: &io::Error) -> String {
    format!(
        "the gzip stream is damaged or cut short ({e}); the upload may have been interrupted: \
         upload the file again"
    )
}

/// An I/O error that is the file's fault, not the network's; carried inside `io::Error` through
/// parsers that only speak `io::Error`.
#[derive(Debug)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// Wraps a problem with the file as an `io::Error` that [`classify`] recognises.
pub fn malformed(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(why))
}

/// A problem with the file (permanent) or with reading it (possibly transient).
pub fn classify(error: io::Error) -> ReadError {
    if error.get_ref().is_some_and(|inner| inner.is::<Malformed>()) {
        let why = error.into_inner().map(|inner| inner.to_string()).unwrap_or_default();
        return ReadError::Malformed(why);
    }
    ReadError::Io(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: Vec<u8>, named_gzip: bool) -> Result<(String, TextOrigin), ReadError> {
        let mut text = open_text(Box::new(io::Cursor::new(bytes)), named_gzip, u64::MAX)?;
        let mut out = String::new();
        text.reader.read_to_string(&mut out).map_err(classify)?;
        Ok((out, text.origin))
    }

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let units = (if bom { "\u{feff}" } else { "" }).encode_utf16().chain(text.encode_utf16());
        units.flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn utf16_with_and_without_a_bom_becomes_utf8() {
        let text = "Company\tCity\nSociété Générale\tParis\n";
        for (big_endian, bom, encoding) in [
            (false, true, TextEncoding::Utf16Le),
            (true, true, TextEncoding::Utf16Be),
            (false, false, TextEncoding::Utf16Le),
            (true, false, TextEncoding::Utf16Be),
        ] {
            let (out, origin) = read(utf16(text, big_endian, bom), false).unwrap();
            assert_eq!(out, text);
            assert_eq!(origin, TextOrigin { encoding, had_bom: bom });
        }
    }

    #[test]
    fn utf16_without_a_bom_is_recognised_whatever_its_first_letters() {
        let (out, origin) = read(utf16("Éditeur;Ville\n", false, false), false).unwrap();
        assert_eq!((out.as_str(), origin.encoding), ("Éditeur;Ville\n", TextEncoding::Utf16Le));
    }

    #[test]
    fn damaged_utf16_is_refused_rather_than_guessed() {
        let mut odd = utf16("Company\nAcme\n", false, true);
        odd.push(b'x');
        let result = read(odd, false);
        assert!(result.is_err(), "{result:?}");
        let err = result.err().unwrap();
        assert!(err.to_string().contains("UTF-16 text is damaged"), "{err}");
        let mut unpaired = utf16("Company\n", false, true);
        unpaired.extend([0x00, 0xD8, b'A', 0x00]);
        assert!(read(unpaired, false).is_err());
        // A real U+FFFD in the text is text.
        assert_eq!(read(utf16("a\u{FFFD}b", false, true), false).unwrap().0, "a\u{FFFD}b");
    }

    #[test]
    fn decompressed_text_past_the_limit_is_refused() {
        let bytes = gzip(&b"Company\nAcme\n".repeat(1000));
        // Refused while the start of the text is read for the encoding detector, or later.
        let err = match open_text(Box::new(io::Cursor::new(bytes)), true, 100) {
            Ok(mut text) => classify(text.reader.read_to_end(&mut Vec::new()).unwrap_err()),
            Err(err) => err,
        };
        assert!(matches!(err, ReadError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("MAX_INPUT_BYTES (100 bytes) once decompressed"), "{err}");
    }

    #[test]
    fn a_utf8_bom_is_removed_and_remembered() {
        let (out, origin) = read(b"\xEF\xBB\xBFCompany\nAcme\n".to_vec(), false).unwrap();
        assert_eq!(out, "Company\nAcme\n");
        assert_eq!(origin, TextOrigin { encoding: TextEncoding::Utf8, had_bom: true });
    }

    #[test]
    fn gzip_is_recognised_by_content_and_a_false_gz_by_name() {
        let (out, _) = read(gzip(b"Company\nAcme\n"), false).unwrap();
        assert_eq!(out, "Company\nAcme\n");
        let err = read(b"Company\nAcme\n".to_vec(), true).err().unwrap();
        assert!(err.to_string().contains("not gzip-compressed"), "{err}");
    }

    #[test]
    fn a_truncated_gzip_is_the_files_fault() {
        let whole = gzip(&b"Company\nAcme\n".repeat(1000));
        let err = read(whole[..whole.len() / 2].to_vec(), true).err().unwrap();
        assert!(matches!(&err, ReadError::Malformed(why) if why.contains("cut short")), "{err:?}");
    }

    #[test]
    fn binary_formats_are_refused_by_their_content() {
        for (bytes, word) in [
            (&b"PK\x03\x04\x14\x00"[..], "xlsx"),
            (b"%PDF-1.7\n", "PDF"),
            (b"PAR1\x15\x04\x15", "Parquet"),
            (b"\xD0\xCF\x11\xE0\xA1\xB1", ".xls"),
        ] {
            let err = read(bytes.to_vec(), false).err().unwrap();
            assert!(matches!(&err, ReadError::Malformed(why) if why.contains(word)), "{err:?}");
        }
        let err = read(gzip(b"PK\x03\x04zip inside gzip"), true).err().unwrap();
        assert!(err.to_string().contains("ZIP"), "{err}");
        // Text that merely starts like a magic number is text.
        for text in ["PAR1,PAR2\n1,2\n", "PAR1\n", "%PDF,x\n", "PK,Name\n"] {
            assert_eq!(read(text.as_bytes().to_vec(), false).unwrap().0, text);
        }
    }

    #[test]
    fn an_empty_object_says_so() {
        let err = read(Vec::new(), false).err().unwrap();
        assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
    }

    #[test]
    fn utf8_rows_stay_as_they_are_and_others_are_read_in_the_legacy_encoding_detected() {
        let mut legacy = LegacyText::new(b"Company\n");
        let utf8 = "Société".as_bytes();
        assert_eq!(legacy.decode(utf8, std::iter::once(utf8)), [Cow::Borrowed("Société")]);
        assert_eq!(legacy.chosen(), None, "no legacy row yet");
        let row = b"Soci\xe9t\xe9 G\xe9n\xe9rale \x80";
        assert_eq!(legacy.decode(row, std::iter::once(&row[..])), ["Société Générale €"]);
        assert_eq!(legacy.chosen(), Some(WINDOWS_1252));
    }

    #[test]
    fn the_encoding_is_chosen_once_for_the_whole_file() {
        // Cyrillic in Windows-1251 at the start of the text decides for the rows after it.
        let (window, _, _) = encoding_rs::WINDOWS_1251.encode("Компания\nОАО Газпром\nСбербанк России\nЛукойл\n");
        let mut legacy = LegacyText::new(&window);
        let (row, _, _) = encoding_rs::WINDOWS_1251.encode("Роснефть");
        assert_eq!(legacy.decode(&row, std::iter::once(&row[..])), ["Роснефть"]);
        assert_eq!(legacy.chosen(), Some(encoding_rs::WINDOWS_1251));
        assert_eq!(TextEncoding::Legacy(encoding_rs::WINDOWS_1251).name(), "windows-1251");
    }

    #[test]
    fn a_utf8_file_with_one_latin1_row_reads_that_row_as_windows_1252() {
        // The UTF-8 rows are no evidence: `é` in UTF-8 would look like a GBK character.
        let mut window = "Company;City\nSociété Générale;Paris\nÅhléns AB;Göteborg\n".repeat(20).into_bytes();
        let row = b"Soci\xe9t\xe9 G\xe9n\xe9rale;M\xfcller K\xf6ln Stra\xdfe\n";
        window.extend_from_slice(row);
        let mut legacy = LegacyText::new(&window);
        assert_eq!(legacy.decode(row, std::iter::once(&row[..])), ["Société Générale;Müller Köln Straße\n"]);
        assert_eq!(legacy.chosen(), Some(WINDOWS_1252));
    }

    #[test]
    fn encodings_are_named_in_the_summary_and_read_back() {
        for encoding in [TextEncoding::Utf8, TextEncoding::Utf16Le, TextEncoding::Legacy(encoding_rs::SHIFT_JIS)] {
            let json = serde_json::to_string(&encoding).unwrap();
            assert_eq!(serde_json::from_str::<TextEncoding>(&json).unwrap(), encoding, "{json}");
        }
        assert_eq!(serde_json::to_string(&TextEncoding::Legacy(WINDOWS_1252)).unwrap(), "\"windows-1252\"");
    }
}
