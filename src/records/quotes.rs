//! Watches the raw CSV bytes on their way into the parser, for the two things the `csv` crate
//! accepts silently: a quoted value that is never closed (the rest of the file becomes one
//! value) and a single row so long that reading it would exhaust memory.
//!
//! It follows the same RFC 4180 states as `csv_core` with its defaults: a quote opens a value
//! only at the start of a field, `""` inside quotes is a quote, and `\r`, `\n` or `\r\n` end a
//! record outside quotes.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use super::decode::malformed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    StartOfField,
    Unquoted,
    Quoted,
    /// A quote inside a quoted value: either the closing one, or the first of `""`.
    QuoteInQuoted,
}

impl State {
    /// The state after `byte`, as `csv_core` moves; `is_delimiter` says whether `byte` ends a
    /// field outside quotes.
    pub(super) fn next(self, byte: u8, is_delimiter: bool) -> State {
        match (self, byte) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b'\r' | b'\n') => State::StartOfField,
            _ if is_delimiter => State::StartOfField,
            (State::StartOfField, b'"') => State::Quoted,
            _ => State::Unquoted,
        }
    }

    /// Whether `byte`, arriving in this state, ends the record: a line break outside quotes.
    pub(super) fn ends_record(self, byte: u8) -> bool {
        matches!(byte, b'\r' | b'\n') && self != State::Quoted
    }
}

/// What the tracker has seen so far; shared with the parsing loop, which asks after the last row.
#[derive(Debug, Clone, Copy)]
struct Seen {
    state: State,
    /// The current line (1-based), counting line breaks inside quoted values too.
    line: u64,
    /// Where the open quoted value started.
    quote_opened_on: u64,
    record_bytes: u64,
    previous: u8,
}

#[derive(Clone)]
pub struct QuoteWatch(Rc<Cell<Seen>>);

impl QuoteWatch {
    /// The line on which a quoted value opened and never closed, once the input is exhausted.
    pub fn unclosed_quote_line(&self) -> Option<u64> {
        let seen = self.0.get();
        (seen.state == State::Quoted).then_some(seen.quote_opened_on)
    }
}

pub struct QuoteTracker<R> {
    inner: R,
    delimiter: u8,
    max_row_bytes: u64,
    seen: Rc<Cell<Seen>>,
}

impl<R: Read> QuoteTracker<R> {
    pub fn new(inner: R, delimiter: u8, max_row_bytes: u64) -> (Self, QuoteWatch) {
        let seen = Rc::new(Cell::new(Seen {
            state: State::StartOfField,
            line: 1,
            quote_opened_on: 0,
            record_bytes: 0,
            previous: 0,
        }));
        (QuoteTracker { inner, delimiter, max_row_bytes, seen: seen.clone() }, QuoteWatch(seen))
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut seen = self.seen.get();
        let mut at = 0;
        while at < n {
            // Only a few bytes can change anything: a quote or a line break. Runs of other bytes
            // are skipped at once rather than stepped through. Outside quotes that includes the
            // delimiters: after such a run a field has just started exactly when its last byte
            // is a delimiter, which is all a quote that follows needs to know. Stopping at every
            // delimiter too cost as much as the parsing itself.
            let interesting = match seen.state {
                State::StartOfField | State::Unquoted | State::Quoted => {
                    memchr::memchr3(b'"', b'\r', b'\n', &buf[at..n])
                }
                State::QuoteInQuoted => Some(0),
            };
            let run = interesting.unwrap_or(n - at);
            if run > 0 {
                let last = buf[at + run - 1];
                seen.previous = last;
                seen.record_bytes += run as u64;
                if seen.state != State::Quoted {
                    seen.state = if last == self.delimiter { State::StartOfField } else { State::Unquoted };
                }
                at += run;
            } else {
                seen = step(seen, buf[at], self.delimiter);
                at += 1;
            }
            if seen.record_bytes > self.max_row_bytes {
                return Err(malformed(format!(
                    "the row at line {} is longer than {} MiB{}; split the file or shorten the row",
                    seen.line,
                    self.max_row_bytes / (1024 * 1024),
                    if seen.state == State::Quoted {
                        format!(" (a quoted value opens on line {} and may never be closed)", seen.quote_opened_on)
                    } else {
                        String::new()
                    }
                )));
            }
        }
        self.seen.set(seen);
        Ok(n)
    }
}

/// What one byte does to the tracker's state.
fn step(mut seen: Seen, byte: u8, delimiter: u8) -> Seen {
    let line_break = byte == b'\r' || (byte == b'\n' && seen.previous != b'\r');
    if line_break {
        seen.line += 1;
    }
    seen.previous = byte;
    seen.record_bytes += 1;
    if seen.state.ends_record(byte) {
        seen.record_bytes = 0;
    }
    let next = seen.state.next(byte, byte == delimiter);
    if next == State::Quoted && seen.state == State::StartOfField {
        seen.quote_opened_on = seen.line;
    }
    seen.state = next;
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(text: &[u8], max: u64) -> (io::Result<Vec<u8>>, QuoteWatch) {
        let (mut tracker, watch) = QuoteTracker::new(text, b',', max);
        let mut out = Vec::new();
        let result = tracker.read_to_end(&mut out).map(|_| out);
        (result, watch)
    }

    #[test]
    fn closed_and_escaped_quotes_leave_nothing_open() {
        let (result, watch) = track(b"a,b\n\"x, \"\"y\"\"\nz\",5\" screen\n", 1024);
        assert!(result.is_ok());
        assert_eq!(watch.unclosed_quote_line(), None);
    }

    #[test]
    fn a_quote_that_never_closes_is_reported_with_its_line() {
        let (_, watch) = track(b"a,b\r\nx,y\r\n\"open,never\r\nmore\r\n", 1024);
        assert_eq!(watch.unclosed_quote_line(), Some(3));
    }

    #[test]
    fn a_quote_inside_an_unquoted_value_is_just_a_character() {
        let (_, watch) = track(b"a,b\nAcme \"best,x\n", 1024);
        assert_eq!(watch.unclosed_quote_line(), None);
    }

    /// Hands out its bytes a few at a time, as a network body does.
    struct Chunked<'a>(&'a [u8], usize);

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest::proptest! {
        /// Skipping runs of bytes must see exactly what stepping through every byte sees.
        #[test]
        fn skipping_runs_sees_what_stepping_through_every_byte_sees(
            text in proptest::collection::vec(proptest::sample::select(b"ab,;\"\r\n".to_vec()), 0..200),
            chunk in 1usize..40,
            max in 1u64..60,
        ) {
            let (mut tracker, watch) = QuoteTracker::new(Chunked(&text, chunk), b',', max);
            let ours = tracker.read_to_end(&mut Vec::new()).map_err(|e| e.to_string());
            let mut seen = Seen { state: State::StartOfField, line: 1, quote_opened_on: 0, record_bytes: 0, previous: 0 };
            let mut expected = Ok(text.len());
            for &byte in &text {
                seen = step(seen, byte, b',');
                if seen.record_bytes > max {
                    expected = Err(format!("line {}", seen.line));
                    break;
                }
            }
            match (&ours, &expected) {
                (Ok(n), Ok(m)) => {
                    proptest::prop_assert_eq!(n, m);
                    let open = (seen.state == State::Quoted).then_some(seen.quote_opened_on);
                    proptest::prop_assert_eq!(watch.unclosed_quote_line(), open);
                }
                (Err(ours), Err(line)) => proptest::prop_assert!(ours.contains(&format!("{line} is longer")), "{ours}"),
                _ => proptest::prop_assert!(false, "{ours:?} against {expected:?}"),
            }
        }
    }

    #[test]
    fn a_row_longer_than_the_limit_is_refused_but_long_files_are_not() {
        let (result, _) = track(&b"0123456789\n".repeat(1000), 16);
        assert!(result.is_ok());
        let (result, _) = track(b"short\n0123456789012345678901234567890\n", 16);
        let err = result.unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
