//! Customer files as streams of rows: format detection, a streaming reader and a writer.
//!
//! The parsers are the synchronous `csv` and `flate2` crates run on a blocking thread, fed from
//! the S3 body through `SyncIoBridge`; rows reach the async side in bounded chunks, so memory
//! holds a few chunks, never the file.

pub mod decode;
pub mod format;
mod json_size;
mod quotes;
pub mod reader;
#[cfg(test)]
mod roundtrip;
pub mod writer;

pub use decode::{TextEncoding, TextOrigin};
pub use format::{Format, Kind, UnsupportedFormat};
pub use reader::{Layout, ReadError, RowStream};
pub use writer::RowWriter;

use serde_json::{Map, Value};

/// One data row of the input, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Csv(csv::StringRecord),
    Json(JsonRow),
    /// A row that could not be parsed; it still gets an output row (status `invalid_input`).
    Invalid(InvalidRow),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonRow {
    /// The line as read (without its line break): written back unchanged plus our fields.
    pub raw: String,
    pub object: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvalidRow {
    /// What could be recovered of the row: CSV fields, or the JSON line as one field.
    pub fields: Vec<String>,
    pub reason: String,
}
