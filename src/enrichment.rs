//! What a row gets: its status and the `leadspace_*` values, derived from Leadspace's answer for
//! its company.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::leadspace::model::Confidence;
use crate::leadspace::model::{EnrichedAddress, EnrichedCompany, Measure, Scalar, scalar_text};

/// Appended to every output row, in this order.
pub const COLUMNS: [&str; 21] = [
    "leadspace_status",
    "leadspace_error",
    "leadspace_company_id",
    "leadspace_name",
    "leadspace_website",
    "leadspace_industry",
    "leadspace_sub_industry",
    "leadspace_employees",
    "leadspace_employees_range",
    "leadspace_revenue",
    "leadspace_revenue_range",
    "leadspace_country",
    "leadspace_state",
    "leadspace_city",
    "leadspace_address",
    "leadspace_zipcode",
    "leadspace_phone",
    "leadspace_sic",
    "leadspace_naics",
    "leadspace_linkedin",
    "leadspace_confidence",
];

/// Number of columns after status and error: the values that come from Leadspace.
pub const ATTRIBUTE_COUNT: usize = COLUMNS.len() - 2;
// An answer marks its values in the bits of a `u32` (`Enrichment::formula_values`).
const _: () = assert!(ATTRIBUTE_COUNT <= 32);

pub fn is_output_column(name: &str) -> bool {
    COLUMNS.contains(&name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Enriched,
    NotMatched,
    LowConfidence,
    InvalidInput,
    Failed,
    NotAttempted,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Enriched => "enriched",
            RowStatus::NotMatched => "not_matched",
            RowStatus::LowConfidence => "low_confidence",
            RowStatus::InvalidInput => "invalid_input",
            RowStatus::Failed => "failed",
            RowStatus::NotAttempted => "not_attempted",
        }
    }
}

/// The final answer for one company (or one row, for rows that never became a company).
///
/// A file can hold hundreds of thousands of companies, all answered before the output is
/// written, so the values are packed into one string rather than nineteen.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    pub status: RowStatus,
    pub error: Option<String>,
    /// Leadspace's values in `COLUMNS[2..]` order, separated by `SEPARATOR`; empty when none.
    values: Box<str>,
    /// No value needs quoting in a CSV cell (see `values_are_plain_csv`), learned once when the
    /// answer is made rather than on each of its rows.
    plain_csv: bool,
    /// Which values start like a formula (phone numbers: "+1-555-…"): bit `i` for value `i`.
    formula_values: u32,
    /// No value needs escaping in a JSON string (see `values_are_plain_json`).
    plain_json: bool,
    /// The confidence value read once, when the answer is made: pass 2 judges every row's
    /// answer against MIN_CONFIDENCE, a million times for a million rows.
    confidence: Option<Confidence>,
}

/// The delimiters a CSV file may have: what the reader detects, in the order it prefers them.
/// A value holding none of them (nor a quote or a line break) needs no quotes in any such file.
pub const CSV_DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// What a byte asks of a value that holds it, as flags of `BYTE_CLASSES`.
const QUOTED_IN_CSV: u8 = 1;
const ESCAPED_IN_JSON: u8 = 2;
const IS_SEPARATOR: u8 = 4;

/// Every byte's flags: a value's are found in one pass over its bytes, a table lookup each,
/// rather than a search for each kind of byte.
const BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0_u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        let mut d = 0;
        while d < CSV_DELIMITERS.len() {
            if b == CSV_DELIMITERS[d] {
                class |= QUOTED_IN_CSV;
            }
            d += 1;
        }
        if matches!(b, b'"' | b'\n' | b'\r') {
            class |= QUOTED_IN_CSV;
        }
        // What serde_json escapes: control characters, the quote and the backslash.
        if b < 0x20 || b == b'"' || b == b'\\' {
            class |= ESCAPED_IN_JSON;
        }
        if b == SEPARATOR as u8 {
            class |= IS_SEPARATOR;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

fn byte_classes(value: &str) -> u8 {
    value.bytes().fold(0, |classes, b| classes | BYTE_CLASSES[b as usize])
}

/// Where the separators are in packed values, found eight bytes at a time: the values are
/// split on every row of pass 2 and for every line of the journal and the kept answers, and a
/// search started again after each of twenty short values cost more than the values' copies.
pub struct Separators<'a> {
    packed: &'a [u8],
    /// Where the word in `found` starts, and where the next one does.
    word: usize,
    next_word: usize,
    /// The high bit of each byte of the current word that is a separator.
    found: u64,
}

impl<'a> Separators<'a> {
    pub fn new(packed: &'a [u8]) -> Self {
        Separators { packed, word: 0, next_word: 0, found: 0 }
    }

    /// The separators of one word, exactly: adding 0x7f to a byte's low seven bits never
    /// carries into the next byte, so only a byte equal to the separator keeps its high bit
    /// clear.
    fn separators_in(word: u64) -> u64 {
        const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        let x = word ^ u64::from_ne_bytes([SEPARATOR as u8; 8]);
        !(((x & LOW_SEVEN).wrapping_add(LOW_SEVEN)) | x | LOW_SEVEN)
    }
}

impl Iterator for Separators<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            let at = self.next_word;
            if at >= self.packed.len() {
                return None;
            }
            let mut word = [0_u8; 8];
            match self.packed.get(at..at + 8) {
                Some(whole) => word.copy_from_slice(whole),
                // The last bytes, padded with zeros (never a separator).
                None => word[..self.packed.len() - at].copy_from_slice(&self.packed[at..]),
            }
            self.word = at;
            self.next_word = at + 8;
            self.found = Self::separators_in(u64::from_le_bytes(word));
        }
        let byte = self.found.trailing_zeros() as usize / 8;
        self.found &= self.found - 1;
        Some(self.word + byte)
    }
}

/// What spreadsheet programs take for the start of a formula (see the writer's neutralising).
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

thread_local! {
    /// Where `with_attributes` packs an answer's values before copying them into an allocation
    /// of their exact size: growing each answer's own string cost several reallocations.
    static PACKING: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An unusually long answer's packing buffer is not kept for the rest of the thread's life.
const MAX_PACKING_CAPACITY: usize = 64 * 1024;

/// A control character that no value keeps (see `with_attributes`).
const SEPARATOR: char = '\u{1f}';

impl Enrichment {
    pub fn without_attributes(status: RowStatus, error: Option<String>) -> Self {
        Enrichment {
            status,
            error,
            values: Box::default(),
            plain_csv: true,
            formula_values: 0,
            plain_json: true,
            confidence: None,
        }
    }

    /// One `not_attempted` answer per company (none holds memory of its own): the slots the
    /// enrichment fills.
    pub fn unanswered(companies: usize) -> Vec<Enrichment> {
        vec![Enrichment::without_attributes(RowStatus::NotAttempted, None); companies]
    }

    /// An answer with Leadspace's values, in `COLUMNS[2..]` order.
    pub fn with_attributes<S: AsRef<str>>(
        status: RowStatus,
        error: Option<String>,
        attributes: impl IntoIterator<Item = S>,
    ) -> Self {
        PACKING.with_borrow_mut(|values| {
            values.clear();
            let mut classes = 0;
            let mut formula_values = 0_u32;
            let mut confidence = None;
            for (i, value) in attributes.into_iter().take(ATTRIBUTE_COUNT).enumerate() {
                if i > 0 {
                    values.push(SEPARATOR);
                }
                let value = value.as_ref();
                if i == CONFIDENCE {
                    confidence = Confidence::parse(value);
                }
                let class = byte_classes(value);
                classes |= class;
                formula_values |= u32::from(value.starts_with(FORMULA_STARTS)) << i;
                if class & IS_SEPARATOR != 0 {
                    values.extend(value.chars().map(|c| if c == SEPARATOR { ' ' } else { c }));
                } else {
                    values.push_str(value);
                }
            }
            // Trailing empty values are implied, so equal answers are equal whatever their length.
            let packed = Box::from(values.trim_end_matches(SEPARATOR));
            if values.capacity() > MAX_PACKING_CAPACITY {
                *values = String::new();
            }
            // (A separator, turned into a space, still counts: rare, and only slower.)
            let plain_json = classes & ESCAPED_IN_JSON == 0;
            let plain_csv = classes & QUOTED_IN_CSV == 0;
            Enrichment { status, error, values: packed, plain_csv, formula_values, plain_json, confidence }
        })
    }

    /// Whether the values need no quotes as CSV cells: none holds a quote, a line break or any
    /// delimiter the reader detects.
    pub fn values_are_plain_csv(&self) -> bool {
        self.plain_csv
    }

    /// Whether no value holds a byte that a JSON string escapes (a control character, a quote or
    /// a backslash): such values go into a JSON string as they are.
    pub fn values_are_plain_json(&self) -> bool {
        self.plain_json
    }

    /// Which values start like a formula: bit `i` for the attribute in `COLUMNS[2 + i]`.
    pub fn formula_values(&self) -> u32 {
        self.formula_values
    }

    /// The packed values: `PACKED_SEPARATOR` between them, trailing empty ones left out.
    pub fn packed_values(&self) -> &[u8] {
        self.values.as_bytes()
    }

    /// The byte between packed values.
    pub const PACKED_SEPARATOR: u8 = SEPARATOR as u8;

    /// The attribute in `COLUMNS[2 + i]`, empty when absent.
    pub fn attribute(&self, i: usize) -> &str {
        self.attributes().nth(i).unwrap_or("")
    }

    /// All `ATTRIBUTE_COUNT` attributes, in `COLUMNS[2..]` order.
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.packed().chain(std::iter::repeat("")).take(ATTRIBUTE_COUNT)
    }

    /// The packed values alone, without the trailing empty ones the packing left out.
    pub fn packed(&self) -> impl Iterator<Item = &str> {
        // `str::split` with a char costs several times as much for values this short, and the
        // report, the journal and the kept answers split every answer.
        let values: &str = &self.values;
        let ends = Separators::new(values.as_bytes()).chain((!values.is_empty()).then_some(values.len()));
        let mut start = 0;
        ends.map(move |end| {
            // Separators are ASCII: every end is a character boundary.
            let value = values.get(start..end).unwrap_or_default();
            start = end + 1;
            value
        })
    }

    /// A matched company, `enriched` with every value Leadspace gave; `judged` applies
    /// MIN_CONFIDENCE later, so that the cache keeps the whole answer whatever the threshold.
    pub fn matched(company: &EnrichedCompany) -> Self {
        let level = company.matching_confidence.as_ref().and_then(|c| c.level.as_deref()).unwrap_or_default();
        // Read in place: an answer's values are copied once, into the packed string.
        let address = company.address.as_ref();
        let (employees, revenue) = (company.employees.as_ref(), company.revenue_dollar.as_ref());
        let in_address = |field: fn(&EnrichedAddress) -> Option<&Scalar>| scalar_text(address.and_then(field));
        let in_measure = measure_text;
        let id = company.ug_company_id.as_ref().or(company.ls_id.as_ref());
        let attributes = [
            scalar_text(id),
            scalar_text(company.name.as_ref()),
            scalar_text(company.website.as_ref()),
            scalar_text(company.industry.as_ref()),
            scalar_text(company.sub_industry.as_ref()),
            in_measure(employees, |m| m.exact.as_ref()),
            in_measure(employees, |m| m.range.as_ref()),
            in_measure(revenue, |m| m.exact.as_ref()),
            in_measure(revenue, |m| m.range.as_ref()),
            in_address(|a| a.country.as_ref()),
            in_address(|a| a.state.as_ref()),
            in_address(|a| a.city.as_ref()),
            in_address(|a| a.address.as_ref()),
            in_address(|a| a.zipcode.as_ref()),
            scalar_text(company.phone.as_ref()),
            scalar_text(company.sic.as_ref()),
            scalar_text(company.naics.as_ref()),
            scalar_text(company.linkedin_profile.as_ref()),
            level,
        ];
        Enrichment::with_attributes(RowStatus::Enriched, None, attributes)
    }

    /// The answer a row gets under `min_confidence`: a match weaker than it becomes
    /// `low_confidence` with only its confidence kept. A match without a stated confidence is
    /// accepted.
    /// Borrowed when the answer stands as it is, so that the answers can be judged row by row
    /// while they are also being kept, unjudged, for the next version.
    pub fn judged(&self, min_confidence: Confidence) -> Cow<'_, Enrichment> {
        if self.status != RowStatus::Enriched {
            return Cow::Borrowed(self);
        }
        if self.confidence.is_none_or(|c| c >= min_confidence) {
            return Cow::Borrowed(self);
        }
        let mut attributes = [""; ATTRIBUTE_COUNT];
        attributes[CONFIDENCE] = self.attribute(CONFIDENCE);
        Cow::Owned(Enrichment::with_attributes(RowStatus::LowConfidence, None, attributes))
    }
}

/// The attribute holding Leadspace's matching confidence.
const CONFIDENCE: usize = ATTRIBUTE_COUNT - 1;

/// A value of an employees or revenue measure, as text.
fn measure_text(measure: Option<&Measure>, field: fn(&Measure) -> Option<&Scalar>) -> &str {
    scalar_text(measure.and_then(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadspace::model::MatchingConfidence;

    #[test]
    fn every_status_is_written_in_the_output_as_the_summary_names_it() {
        use RowStatus::*;
        for status in [Enriched, NotMatched, LowConfidence, InvalidInput, Failed, NotAttempted] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str(), "{status:?}");
        }
    }

    fn company(level: &str) -> EnrichedCompany {
        EnrichedCompany {
            name: Some("Contoso".into()),
            matching_confidence: Some(MatchingConfidence { level: Some(level.into()) }),
            ..Default::default()
        }
    }

    #[test]
    fn matches_below_the_minimum_confidence_keep_only_their_confidence() {
        let e = Enrichment::matched(&company("VERY LOW")).judged(Confidence::Low).into_owned();
        assert_eq!(e.status, RowStatus::LowConfidence);
        assert_eq!(e.attribute(1), "");
        assert_eq!(e.attribute(ATTRIBUTE_COUNT - 1), "VERY LOW");
    }

    #[test]
    fn matches_at_the_minimum_are_enriched() {
        let e = Enrichment::matched(&company("LOW")).judged(Confidence::Low).into_owned();
        assert_eq!(e.status, RowStatus::Enriched);
        assert_eq!(e.attribute(1), "Contoso");
        assert_eq!(e.attributes().count(), ATTRIBUTE_COUNT);
        assert_eq!(e.attribute(ATTRIBUTE_COUNT - 1), "LOW");
        assert_eq!(Enrichment::without_attributes(RowStatus::Failed, None).attributes().count(), ATTRIBUTE_COUNT);
    }

    proptest::proptest! {
        /// Values come back as they went in (a separator inside one as a space, empty ones
        /// filling the rest), and what is learned about them while packing holds for every one.
        #[test]
        fn packed_values_come_back_with_what_was_learned_about_them(
            values in proptest::collection::vec("[a-c \"\\,;|\t\r\n\u{1}\u{1f}é=+@-]{0,4}|[a-c ]{0,4}", 0..=ATTRIBUTE_COUNT),
        ) {
            let answer = Enrichment::with_attributes(RowStatus::Enriched, None, &values);
            let expected: Vec<String> = values
                .iter()
                .map(|v| v.replace(SEPARATOR, " "))
                .chain(std::iter::repeat(String::new()))
                .take(ATTRIBUTE_COUNT)
                .collect();
            let back: Vec<&str> = answer.attributes().collect();
            proptest::prop_assert_eq!(&back, &expected);
            let csv_special = |v: &String| v.bytes().any(|b| b"\"\r\n".contains(&b) || CSV_DELIMITERS.contains(&b));
            proptest::prop_assert_eq!(answer.values_are_plain_csv(), !expected.iter().any(csv_special));
            let escaped = |v: &String| serde_json::to_string(v).map(|json| json.len() != v.len() + 2).unwrap_or(true);
            // A separator turned into a space still counts as escaped (the slow path, not a wrong one).
            if answer.values_are_plain_json() {
                proptest::prop_assert!(!expected.iter().any(escaped));
            } else {
                proptest::prop_assert!(values.iter().any(escaped));
            }
            for (i, value) in expected.iter().enumerate() {
                let formula = value.starts_with(FORMULA_STARTS);
                proptest::prop_assert_eq!(answer.formula_values() >> i & 1 == 1, formula, "value {}", i);
            }
        }
    }

    proptest::proptest! {
        /// The separators found eight bytes at a time are those a byte-by-byte search finds.
        #[test]
        fn separators_are_found_wherever_they_are(packed in "[a\u{1f}\u{1e}\u{9f}\u{7f}é ]{0,40}") {
            let found: Vec<usize> = Separators::new(packed.as_bytes()).collect();
            let expected: Vec<usize> =
                packed.bytes().enumerate().filter(|&(_, b)| b == SEPARATOR as u8).map(|(i, _)| i).collect();
            proptest::prop_assert_eq!(found, expected);
        }
    }
}
