//! Serde types for the Leadspace enrichment API (Single and Bulk v4).
//!
//! Leadspace publishes no machine-readable schema, so every response type is lenient: all
//! fields are optional, unknown fields are ignored, and scalars that the documentation does not
//! pin down (employee counts, SIC codes...) are read straight to the text they will be written as.
//! No value of an unexpected type fails a record, and no record fails the answers beside it
//! (`read_bulk_results`).

use crate::chain::error_chain;
use compact_str::{CompactString, ToCompactString};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// One record as sent to `/enrichment/enrich/single` or inside a bulk's `data` array.
/// Only mapped fields are ever present: `None` fields are not serialised at all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrichRequest {
    pub external_id: String,
    pub company: CompanyInput,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyInput {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressInput>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AddressInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postalcode: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BulkRequest<'a> {
    pub data: &'a [EnrichRequest],
    pub external_bulk_id: &'a str,
}

/// 202 answer to a bulk submission: the path to poll.
#[derive(Debug, Deserialize)]
pub struct BulkAccepted {
    pub id: String,
}

/// A finished bulk's answer, `{"results": [...]}`, read in one pass with the lenient types
/// below. Every field of theirs reads a value of any type without error, so this pass only
/// fails on a record serde cannot take at all (a key repeated inside an object, a string that
/// cannot be decoded); `read_bulk_results` then reads that bulk again record by record.
#[derive(Deserialize)]
struct BulkResults {
    #[serde(default)]
    results: Vec<Record>,
}

/// The same answer with each record kept as its raw text (borrowed from the body), to be read
/// on its own: one odd record must not cost the other 499 paid answers.
#[derive(Deserialize)]
struct RawBulkResults<'a> {
    #[serde(borrow, default)]
    results: Vec<&'a RawValue>,
}

/// One record of an answer: `None` when it is not a JSON object (nothing in it can be read,
/// not even an external_id, so its company counts as not answered).
struct Record(Option<EnrichmentResult>);

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_object(deserializer).map(Record)
    }
}

/// Reads a finished bulk's `{"results": [...]}`. Only a body that is not JSON, or has no
/// list of results, is an error; a record that cannot be read becomes that record's failure
/// (see `read_record`), and one that is not an object is left out (its company was not
/// answered).
pub fn read_bulk_results(body: &[u8]) -> Result<Vec<EnrichmentResult>, serde_json::Error> {
    let text = text_of(body);
    // The common case: one pass, no copy of any record's text.
    if let Ok(bulk) = serde_json::from_str::<BulkResults>(&text) {
        return Ok(bulk.results.into_iter().filter_map(|record| record.0).collect());
    }
    let bulk: RawBulkResults = serde_json::from_str(&text)?;
    Ok(bulk.results.iter().filter_map(|raw| read_record(raw.get())).collect())
}

/// Reads the single API's answer: one record, read as a bulk's are. An answer that is not a
/// JSON object is an error (there is no record to speak of).
pub fn read_single_result(body: &[u8]) -> Result<EnrichmentResult, serde_json::Error> {
    let text = text_of(body);
    let raw: &RawValue = serde_json::from_str(&text)?;
    read_record(raw.get()).ok_or_else(|| serde::de::Error::custom("the answer is not a JSON object"))
}

/// The body as text, checked once: parsing text is then faster than parsing bytes (serde_json
/// checks every string of a byte slice again), and a byte that is not UTF-8 becomes U+FFFD in
/// its own value rather than failing the records around it. No copy unless such a byte exists.
fn text_of(body: &[u8]) -> std::borrow::Cow<'_, str> {
    // `from_utf8` first: it checks valid text faster than `from_utf8_lossy`.
    std::str::from_utf8(body).map_or_else(|_| String::from_utf8_lossy(body), std::borrow::Cow::Borrowed)
}

/// Reads one record on its own. The lenient types read anything but an object with a key
/// given twice; such a record is read again through `serde_json::Value`, which keeps the last
/// of a repeated key as JavaScript does. Whatever still cannot be read (a lone surrogate
/// escape such as `"\ud800"` in a value that is read; a repeated key in a record nested deeper
/// than `Value` goes) becomes a failure that keeps the record's external_id if it has one.
/// `None` for a record that is not an object.
fn read_record(raw: &str) -> Option<EnrichmentResult> {
    let error = match serde_json::from_str::<Record>(raw) {
        Ok(record) => return record.0,
        Err(error) => error,
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(raw)
        && let Ok(record) = Record::deserialize(&value)
    {
        return record.0;
    }
    let external_id = serde_json::from_str::<IdOnly>(raw).ok().and_then(|record| record.external_id);
    Some(unreadable(external_id, &error))
}

/// Just a record's external_id, to tie a record that cannot be read to its company.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default, deserialize_with = "lenient_text")]
    external_id: Option<CompactString>,
}

/// A record whose shape could not be read: a failure of that record alone, without an error
/// code, so the pipeline marks its company `failed` without sending it again in this run (an
/// answer Leadspace billed, that it would likely write the same way again).
fn unreadable(external_id: Option<CompactString>, error: &serde_json::Error) -> EnrichmentResult {
    tracing::warn!(external_id = external_id.as_deref(), error = %error_chain(&error), "a Leadspace record could not be read");
    EnrichmentResult {
        status: Some("failure".into()),
        external_id,
        error: Some(RecordError { code: None, message: Some(format!("its answer could not be read: {error}")) }),
        ..Default::default()
    }
}

/// One record's answer, from the single API or inside a finished bulk.
///
/// Guess (kept here, in one place): Leadspace documents record-level failures only as codes
/// (1100 internal, 1200 invalid input) and its error envelope elsewhere as `{"error":
/// "<description>", ...}`. We accept a failure as any of:
/// - `{"status": "failure", "error_code": "1100", "error": "Internal Error"}` (the envelope);
/// - `{"status": "error", "error": {"code": 1100, "message": "..."}}` (the emulator's form);
/// - a top-level `code`;
///
/// with codes as numbers or as strings holding a number. `status` `failure`, `failed` or
/// `error`, or an `error` in a record without `data`, is a failure even without a code.
///
/// No field fails the record: a field of an unexpected type is read as absent, or as what it
/// plainly means (see `FromOther`); unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct EnrichmentResult {
    #[serde(default, deserialize_with = "lenient_text")]
    pub status: Option<CompactString>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub external_id: Option<CompactString>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub data: Option<EnrichmentData>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub error: Option<RecordError>,
    #[serde(default, deserialize_with = "lenient_code")]
    pub code: Option<i64>,
    /// The envelope's code, beside its `error` string.
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<i64>,
}

/// `error` as an object; as a string it is the message, as a number the code.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct RecordError {
    #[serde(default, deserialize_with = "lenient_code")]
    pub code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct EnrichmentData {
    #[serde(default, deserialize_with = "lenient_text")]
    pub enrichment_status: Option<CompactString>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub company: Option<EnrichedCompany>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct EnrichedCompany {
    pub ug_company_id: Option<Scalar>,
    pub ls_id: Option<Scalar>,
    pub name: Option<Scalar>,
    pub website: Option<Scalar>,
    pub phone: Option<Scalar>,
    pub industry: Option<Scalar>,
    pub sub_industry: Option<Scalar>,
    pub sic: Option<Scalar>,
    pub naics: Option<Scalar>,
    pub linkedin_profile: Option<Scalar>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub address: Option<EnrichedAddress>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub employees: Option<Measure>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub revenue_dollar: Option<Measure>,
    #[serde(default, deserialize_with = "lenient_object")]
    pub matching_confidence: Option<MatchingConfidence>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct EnrichedAddress {
    pub country: Option<Scalar>,
    pub state: Option<Scalar>,
    pub city: Option<Scalar>,
    pub address: Option<Scalar>,
    pub zipcode: Option<Scalar>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct Measure {
    pub exact: Option<Scalar>,
    pub range: Option<Scalar>,
}

/// A loosely typed value kept as the text it will be written as: a string as it is, a number
/// or boolean as JSON writes it, anything else (an object, an array) as empty text rather
/// than JSON soup in a spreadsheet cell.
///
/// Read straight to text because up to a hundred bulks of 500 answers are held at once: a
/// `serde_json::Value` per field made each answer about 1.5 KB before any text. Most values
/// (names, ranges, codes, cities) fit in 24 bytes and are kept inline: a million answers would
/// otherwise cost some fifteen million allocations, each freed a moment later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scalar(CompactString);

impl Scalar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Scalar {
    fn from(text: String) -> Self {
        Scalar(CompactString::from(text))
    }
}

impl From<&str> for Scalar {
    fn from(text: &str) -> Self {
        Scalar(CompactString::new(text))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Scalar, E> {
        Ok(Scalar::from(text))
    }

    fn visit_string<E>(self, text: String) -> Result<Scalar, E> {
        Ok(Scalar::from(text))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::from(if b { "true" } else { "false" }))
    }

    // Numbers are written as `serde_json::Number` displays them; whole numbers (ids, employee
    // counts) without a `String` on the way, as they fit inline.
    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(Scalar(n.to_compact_string()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar(n.to_compact_string()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Scalar, E> {
        Ok(serde_json::Number::from_f64(n).map(|n| Scalar::from(n.to_string())).unwrap_or_default())
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::default())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::default())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::default())
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct MatchingConfidence {
    #[serde(default, deserialize_with = "lenient_text")]
    pub level: Option<CompactString>,
}

/// What an object field of a record means when Leadspace sends something else in its place.
/// `None` (the default) reads it as absent; so is `null`, an array, and whatever is not
/// listed below.
trait FromOther: Sized {
    /// A string where the object belongs (never empty: an empty string is absent).
    fn from_text(_text: &str) -> Option<Self> {
        None
    }
    /// A number where the object belongs, as the text JSON writes it.
    fn from_number(_number: Scalar) -> Option<Self> {
        None
    }
    fn from_bool(_value: bool) -> Option<Self> {
        None
    }
}

impl FromOther for EnrichmentResult {}
impl FromOther for EnrichmentData {}
impl FromOther for EnrichedCompany {}

/// `"error": "Internal Error"` (the documented envelope) is the message, `"error": 1100` the
/// code, and `"error": true` an error without details.
impl FromOther for RecordError {
    fn from_text(text: &str) -> Option<Self> {
        Some(RecordError { code: None, message: Some(text.to_string()) })
    }
    fn from_number(number: Scalar) -> Option<Self> {
        Some(RecordError { code: code_in(number.as_str()), message: None })
    }
    fn from_bool(value: bool) -> Option<Self> {
        value.then(RecordError::default)
    }
}

/// `"address": "1 Main St"`: a one-line address, kept whole as the street address (the
/// `leadspace_address` column) rather than guessed apart into city or zip code.
impl FromOther for EnrichedAddress {
    fn from_text(text: &str) -> Option<Self> {
        Some(EnrichedAddress { address: Some(text.into()), ..Default::default() })
    }
}

/// `"employees": 250` or `"250"` is the exact count; any other text (`"201-500"`, `"10,001+"`,
/// `"$1M-$5M"`) is the range.
impl FromOther for Measure {
    fn from_text(text: &str) -> Option<Self> {
        Some(if is_number(text) {
            Measure { exact: Some(text.into()), range: None }
        } else {
            Measure { exact: None, range: Some(text.into()) }
        })
    }
    fn from_number(number: Scalar) -> Option<Self> {
        Some(Measure { exact: Some(number), range: None })
    }
}

/// `"matching_confidence": "HIGH"` is the level.
impl FromOther for MatchingConfidence {
    fn from_text(text: &str) -> Option<Self> {
        Some(MatchingConfidence { level: Some(text.into()) })
    }
}

/// A count as people write it: digits, with an optional sign, thousands commas and a decimal
/// point.
fn is_number(text: &str) -> bool {
    let digits = text.trim().trim_start_matches(['-', '+']);
    digits.bytes().any(|b| b.is_ascii_digit()) && digits.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'.')
}

/// Reads an object field: the object through its own (lenient) type, anything else through
/// `FromOther`, never an error for a value of the wrong type.
fn lenient_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromOther,
{
    deserializer.deserialize_any(ObjectVisitor(std::marker::PhantomData))
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + FromOther> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_str<E>(self, text: &str) -> Result<Option<T>, E> {
        Ok(if text.is_empty() { None } else { T::from_text(text) })
    }

    fn visit_bool<E>(self, value: bool) -> Result<Option<T>, E> {
        Ok(T::from_bool(value))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<T>, E> {
        Ok(T::from_number(ScalarVisitor.visit_u64(n)?))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Option<T>, E> {
        Ok(T::from_number(ScalarVisitor.visit_i64(n)?))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Option<T>, E> {
        Ok(T::from_number(ScalarVisitor.visit_f64(n)?))
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A text field (`status`, `external_id`...): a string as it is, a number or boolean as JSON
/// writes it; empty text, `null`, an object or an array is absent.
fn lenient_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<CompactString>, D::Error> {
    let Scalar(text) = deserializer.deserialize_any(ScalarVisitor)?;
    Ok((!text.is_empty()).then_some(text))
}

/// `lenient_text` as a `String`.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_text(deserializer)?.map(String::from))
}

/// An error code: a whole number, or a string holding one (`"1100"`); anything else is absent.
fn lenient_code<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Scalar(text) = deserializer.deserialize_any(ScalarVisitor)?;
    Ok(code_in(&text))
}

/// The whole number in `text` (`"1100"`, `" 1100 "`, `"1100.0"` as JSON writes a float).
fn code_in(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>().ok().or_else(|| {
        let n = text.parse::<f64>().ok().filter(|n| n.fract() == 0.0 && n.abs() < 1e15)?;
        Some(n as i64)
    })
}

/// Record-level error codes inside a finished bulk.
pub const RECORD_INTERNAL_ERROR: i64 = 1100;
pub const RECORD_INVALID_INPUT: i64 = 1200;

/// `status` values that say the record failed (compared without regard to case).
const FAILURE_STATUSES: [&str; 3] = ["failure", "failed", "error"];

impl EnrichmentResult {
    /// The record's error code, wherever it was given: in `error`, as the envelope's
    /// `error_code`, or as a top-level `code`.
    pub fn error_code(&self) -> Option<i64> {
        self.error.as_ref().and_then(|e| e.code).or(self.error_code).or(self.code)
    }

    /// True when Leadspace reports this record as failed: an error code, a failure `status`,
    /// or an `error` in a record without `data`. (A record with `data`, a success status and a
    /// stray `error` object without a code is read as the success it says it is.)
    pub fn is_failure(&self) -> bool {
        self.error_code().is_some()
            || self.status.as_deref().is_some_and(|s| FAILURE_STATUSES.iter().any(|f| s.eq_ignore_ascii_case(f)))
            || (self.error.is_some() && self.data.is_none())
    }

    /// Leadspace's description of the failure, at most 200 characters (it is written into
    /// the output and may be long).
    pub fn error_message(&self) -> Option<String> {
        let message = self.error.as_ref()?.message.as_deref()?;
        Some(message.chars().take(200).collect())
    }

    /// True when Leadspace matched a company (`Company Enriched` or `Person & Company Enriched`).
    pub fn company_enriched(&self) -> bool {
        self.data.as_ref().and_then(|d| d.enrichment_status.as_deref()).is_some_and(|s| s.contains("Company Enriched"))
    }
}

/// The text of a loosely typed scalar (see `Scalar`); empty when absent.
pub fn scalar_text(value: Option<&Scalar>) -> &str {
    value.map_or("", Scalar::as_str)
}

/// Leadspace's matching confidence, ordered so that `HIGH > MEDIUM > LOW > VERY LOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    VeryLow,
    Low,
    Medium,
    High,
}

impl Confidence {
    /// Reads a level however it is spaced or cased ("very low", "VERY_LOW"), without
    /// allocating.
    pub fn parse(text: &str) -> Option<Self> {
        // The longest level, "VERYLOW", has seven letters; anything longer is none of them.
        let mut letters = [0u8; 7];
        let mut len = 0;
        for byte in text.bytes().filter(u8::is_ascii_alphabetic) {
            *letters.get_mut(len)? = byte.to_ascii_uppercase();
            len += 1;
        }
        match &letters[..len] {
            b"HIGH" => Some(Self::High),
            b"MEDIUM" => Some(Self::Medium),
            b"LOW" => Some(Self::Low),
            b"VERYLOW" => Some(Self::VeryLow),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_loose_types_are_tolerated() {
        let body = r#"{"status":"success","external_id":"c1","data":{"enrichment_status":"Company Enriched",
            "company":{"ug_company_id":123,"name":"Contoso","employees":{"exact":"250","range":"201-500"},
            "sic":7372,"funding":{"rounds":[]},"brand_new_field":true,
            "matching_confidence":{"level":"HIGH"}}}}"#;
        let result: EnrichmentResult = serde_json::from_str(body).unwrap();
        assert!(result.company_enriched());
        let company = result.data.unwrap().company.unwrap();
        assert_eq!(scalar_text(company.ug_company_id.as_ref()), "123");
        assert_eq!(scalar_text(company.sic.as_ref()), "7372");
        assert_eq!(scalar_text(company.employees.unwrap().exact.as_ref()), "250");
    }

    #[test]
    fn scalars_read_as_the_text_json_would_write() {
        let body = r#"{"name":"A \"B\" \u00e9","sic":-7,"naics":2.50,"phone":1e3,"website":true,
            "industry":{"x":[1]},"sub_industry":[1,{"a":2}],"linkedin_profile":null}"#;
        let company: EnrichedCompany = serde_json::from_str(body).unwrap();
        assert_eq!(scalar_text(company.name.as_ref()), "A \"B\" é");
        assert_eq!(scalar_text(company.sic.as_ref()), "-7");
        assert_eq!(scalar_text(company.naics.as_ref()), "2.5");
        assert_eq!(scalar_text(company.phone.as_ref()), "1000.0");
        assert_eq!(scalar_text(company.website.as_ref()), "true");
        assert_eq!(scalar_text(company.industry.as_ref()), "");
        assert_eq!(scalar_text(company.sub_industry.as_ref()), "");
        assert_eq!(company.linkedin_profile, None);
    }

    #[test]
    fn record_level_error_codes_are_read_from_either_place() {
        let nested: EnrichmentResult =
            serde_json::from_str(r#"{"status":"error","external_id":"c1","error":{"code":1100}}"#).unwrap();
        assert_eq!(nested.error_code(), Some(RECORD_INTERNAL_ERROR));
        let flat: EnrichmentResult = serde_json::from_str(r#"{"external_id":"c1","code":1200}"#).unwrap();
        assert_eq!(flat.error_code(), Some(RECORD_INVALID_INPUT));
    }

    #[test]
    fn unmapped_fields_are_not_serialised() {
        let request = EnrichRequest {
            external_id: "c0".into(),
            company: CompanyInput { name: "Contoso".into(), website: None, address: None },
        };
        assert_eq!(serde_json::to_string(&request).unwrap(), r#"{"external_id":"c0","company":{"name":"Contoso"}}"#);
    }

    /// A matched record as the emulator writes it.
    fn good(id: &str) -> serde_json::Value {
        serde_json::json!({"status": "success", "external_id": id, "data": {"enrichment_status": "Company Enriched",
            "company": {"ug_company_id": "LS1", "name": "Contoso", "employees": {"exact": 250, "range": "201-500"},
                "address": {"city": "Redmond", "zipcode": "98052"}, "matching_confidence": {"level": "HIGH"}}}})
    }

    fn bulk(records: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "results": records })).unwrap()
    }

    fn company(result: &EnrichmentResult) -> &EnrichedCompany {
        result.data.as_ref().and_then(|d| d.company.as_ref()).expect("a company")
    }

    #[test]
    fn the_documented_envelope_fails_its_own_record_only() {
        let envelope = serde_json::json!({"status": "failure", "external_id": "c2", "error_code": "1100",
            "error": "Internal Error", "tracking_id": "t-9"});
        let results = read_bulk_results(&bulk(&[good("c1"), envelope, good("c3")])).unwrap();
        assert_eq!(results.len(), 3);
        for (result, id) in [(&results[0], "c1"), (&results[2], "c3")] {
            assert_eq!(result.external_id.as_deref(), Some(id));
            assert!(!result.is_failure() && result.company_enriched());
            assert_eq!(scalar_text(company(result).name.as_ref()), "Contoso");
            assert_eq!(scalar_text(company(result).employees.as_ref().unwrap().exact.as_ref()), "250");
        }
        let failed = &results[1];
        assert_eq!(failed.external_id.as_deref(), Some("c2"));
        assert!(failed.is_failure());
        assert_eq!(failed.error_code(), Some(RECORD_INTERNAL_ERROR));
        assert_eq!(failed.error_message().as_deref(), Some("Internal Error"));
    }

    /// Odd shapes of a record, and how each is read.
    #[test]
    fn odd_shapes_are_read_as_a_user_would_expect() {
        let read = |json: &str| read_single_result(json.as_bytes()).unwrap();
        let company_of = |json: &str| {
            let result = read(&format!(
                r#"{{"external_id":"c1","data":{{"enrichment_status":"Company Enriched","company":{json}}}}}"#
            ));
            assert!(!result.is_failure(), "{json}");
            company(&result).clone()
        };
        let measure = |m: Option<Measure>| {
            let m = m.unwrap_or_default();
            (scalar_text(m.exact.as_ref()).to_string(), scalar_text(m.range.as_ref()).to_string())
        };
        // Measures: a number or numeric text is the exact value, other text the range.
        assert_eq!(measure(company_of(r#"{"employees":250}"#).employees), ("250".into(), "".into()));
        assert_eq!(measure(company_of(r#"{"employees":"1,250"}"#).employees), ("1,250".into(), "".into()));
        assert_eq!(measure(company_of(r#"{"employees":"201-500"}"#).employees), ("".into(), "201-500".into()));
        assert_eq!(measure(company_of(r#"{"revenue_dollar":1.5e6}"#).revenue_dollar), ("1500000.0".into(), "".into()));
        assert_eq!(measure(company_of(r#"{"employees":{"exact":"250"}}"#).employees), ("250".into(), "".into()));
        for absent in ["[1,2]", "true", "null", "\"\""] {
            assert_eq!(company_of(&format!(r#"{{"employees":{absent}}}"#)).employees, None, "{absent}");
        }
        // An address given as text is the street address; other odd addresses are absent.
        let address = company_of(r#"{"address":"1 Main St, Redmond"}"#).address.unwrap();
        assert_eq!(scalar_text(address.address.as_ref()), "1 Main St, Redmond");
        assert_eq!(address.city, None);
        assert_eq!(company_of(r#"{"address":42}"#).address, None);
        assert_eq!(company_of(r#"{"address":["1 Main St"]}"#).address, None);
        // A confidence given as text is its level.
        let level = |json: &str| company_of(json).matching_confidence.and_then(|c| c.level);
        assert_eq!(level(r#"{"matching_confidence":"HIGH"}"#).as_deref(), Some("HIGH"));
        assert_eq!(level(r#"{"matching_confidence":{"level":null}}"#), None);
        assert_eq!(level(r#"{"matching_confidence":7}"#), None);
        // A whole company or data of the wrong type is absent: the record reads as not matched.
        let odd_data = read(r#"{"status":"success","external_id":"c1","data":"Company Enriched"}"#);
        assert!(odd_data.data.is_none() && !odd_data.is_failure());

        // Codes, as numbers or as text, wherever they are given.
        let code = |json: &str| read(json).error_code();
        assert_eq!(code(r#"{"code":"1100"}"#), Some(1100));
        assert_eq!(code(r#"{"code":1200.0}"#), Some(1200));
        assert_eq!(code(r#"{"code":" 1200 "}"#), Some(1200));
        assert_eq!(code(r#"{"error_code":1100,"error":"Internal Error"}"#), Some(1100));
        assert_eq!(code(r#"{"error":{"code":"1200","message":"bad"}}"#), Some(1200));
        assert_eq!(code(r#"{"error":1100}"#), Some(1100));
        assert_eq!(code(r#"{"error":{"code":"E12"},"code":1200}"#), Some(1200));
        for none in [r#"{"code":"n/a"}"#, r#"{"code":[1100]}"#, r#"{"code":{"v":1}}"#, r#"{"code":1100.5}"#] {
            assert_eq!(code(none), None, "{none}");
        }
        // Failures without a code.
        for failed in [
            r#"{"status":"failure","external_id":"c1"}"#,
            r#"{"status":"ERROR","external_id":"c1"}"#,
            r#"{"external_id":"c1","error":"Internal Error"}"#,
            r#"{"external_id":"c1","error":{"message":"boom"}}"#,
            r#"{"external_id":"c1","error":true}"#,
        ] {
            let result = read(failed);
            assert!(result.is_failure() && result.error_code().is_none(), "{failed}");
            assert_eq!(result.external_id.as_deref(), Some("c1"));
        }
        // What is not a failure.
        for fine in [
            r#"{"status":"success","external_id":"c1","data":{},"error":null}"#,
            r#"{"status":"success","external_id":"c1","data":{},"error":""}"#,
            r#"{"status":"success","external_id":"c1","data":{},"error":false}"#,
            r#"{"status":"success","external_id":"c1","data":{},"error":{"message":null}}"#,
        ] {
            assert!(!read(fine).is_failure(), "{fine}");
        }
        // Ids and statuses of other types, read as text.
        assert_eq!(read(r#"{"external_id":42,"status":true}"#).external_id.as_deref(), Some("42"));
        assert_eq!(read(r#"{"external_id":{"id":"c1"}}"#).external_id, None);
        let long = read(&format!(r#"{{"status":"error","error":"{}"}}"#, "x".repeat(500)));
        assert_eq!(long.error_message().unwrap().len(), 200);
    }

    #[test]
    fn a_repeated_key_is_read_as_its_last_value_without_failing_the_bulk() {
        let body = format!(
            r#"{{"results":[{},{{"status":"success","external_id":"c2","external_id":"c2","data":{{"enrichment_status":"Company Enriched","company":{{"name":"A","name":"B"}}}}}},{}]}}"#,
            good("c1"),
            good("c3")
        );
        let results = read_bulk_results(body.as_bytes()).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].external_id.as_deref(), Some("c2"));
        assert_eq!(scalar_text(company(&results[1]).name.as_ref()), "B");
        assert_eq!(scalar_text(company(&results[2]).name.as_ref()), "Contoso");
    }

    #[test]
    fn a_record_that_cannot_be_read_fails_alone_and_keeps_its_external_id() {
        // A repeated key (which the typed pass refuses) in a record nested deeper than
        // `serde_json::Value` reads (which the second pass refuses).
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let odd = format!(r#"{{"status":"success","status":"success","deep":{deep},"external_id":"c2"}}"#);
        let body = format!(r#"{{"results":[{},{odd},{}]}}"#, good("c1"), good("c3"));
        let results = read_bulk_results(body.as_bytes()).unwrap();
        assert_eq!(results.len(), 3);
        assert!(!results[0].is_failure() && !results[2].is_failure());
        let failed = &results[1];
        assert_eq!(failed.external_id.as_deref(), Some("c2"));
        assert!(failed.is_failure() && failed.error_code().is_none());
        assert!(failed.error_message().unwrap().starts_with("its answer could not be read: duplicate field"));
        // The same through the single API.
        let single = read_single_result(odd.as_bytes()).unwrap();
        assert_eq!(single.external_id.as_deref(), Some("c2"));
        assert!(single.is_failure());
    }

    #[test]
    fn text_that_cannot_be_decoded_fails_its_own_record_only() {
        // A lone surrogate escape in a value that is read: that record fails, its id kept.
        let odd = r#"{"status":"success","external_id":"c2","data":{"enrichment_status":"Company Enriched",
            "company":{"name":"Cont\ud800oso"}}}"#;
        let body = format!(r#"{{"results":[{},{odd},{}]}}"#, good("c1"), good("c3"));
        let results = read_bulk_results(body.as_bytes()).unwrap();
        assert_eq!(results.len(), 3);
        assert!(!results[0].is_failure() && !results[2].is_failure());
        assert_eq!(results[1].external_id.as_deref(), Some("c2"));
        assert!(results[1].is_failure() && results[1].error_code().is_none());
        // A byte that is not UTF-8 becomes U+FFFD in its own value.
        let mut body = bulk(&[good("c1"), good("c2")]);
        let at = body.windows(7).position(|w| w == b"Contoso").unwrap();
        body[at + 1] = 0xFF;
        let results = read_bulk_results(&body).unwrap();
        assert_eq!(scalar_text(company(&results[0]).name.as_ref()), "C\u{FFFD}ntoso");
        assert_eq!(scalar_text(company(&results[1]).name.as_ref()), "Contoso");
    }

    #[test]
    fn records_that_are_not_objects_are_left_out_and_only_a_body_without_results_fails() {
        let records = [good("c1"), serde_json::Value::Null, 5.into(), "c2".into(), serde_json::json!([]), good("c3")];
        let results = read_bulk_results(&bulk(&records)).unwrap();
        let ids: Vec<_> = results.iter().map(|r| r.external_id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["c1", "c3"]);
        assert!(read_bulk_results(br#"{"status":"COMPLETED"}"#).unwrap().is_empty());
        for broken in [&br#"{"results":[{"external_id":"c1"}"#[..], b"<html>", br#"{"results":5}"#, b""] {
            assert!(read_bulk_results(broken).is_err(), "{}", String::from_utf8_lossy(broken));
        }
        assert!(read_single_result(b"null").is_err());
        assert!(read_single_result(b"[]").is_err());
    }

    /// A field of a generated record: left out, null, the value an answer normally has (`Good`)
    /// or anything else JSON can hold (`Odd`).
    #[derive(Debug, Clone)]
    enum Variant {
        Missing,
        Null,
        Good,
        Odd(serde_json::Value),
    }

    /// A record's fields, as (name, usual value); `None` for an object of the fields that
    /// follow it up to its `END`.
    const FIELDS: &[(&str, Option<&str>)] = &[
        ("status", Some(r#""success""#)),
        ("external_id", Some(r#""c2""#)),
        ("code", Some("1200")),
        ("error_code", Some(r#""1100""#)),
        ("error", None),
        ("code", Some(r#""1100""#)),
        ("message", Some(r#""Internal Error""#)),
        (END, None),
        ("data", None),
        ("enrichment_status", Some(r#""Company Enriched""#)),
        ("company", None),
        ("ug_company_id", Some(r#""LS00AB12""#)),
        ("ls_id", Some("123")),
        ("name", Some(r#""Contoso \"Ltd\" é""#)),
        ("website", Some(r#""contoso.com""#)),
        ("phone", Some(r#""+1-555-0100""#)),
        ("industry", Some(r#""Software""#)),
        ("sub_industry", Some(r#""Business Software""#)),
        ("sic", Some("7372")),
        ("naics", Some(r#""511210""#)),
        ("linkedin_profile", Some(r#""https://www.linkedin.com/company/contoso""#)),
        ("address", None),
        ("country", Some(r#""US""#)),
        ("state", Some(r#""WA""#)),
        ("city", Some(r#""Redmond""#)),
        ("address", Some(r#""1 Microsoft Way""#)),
        ("zipcode", Some("98052")),
        (END, None),
        ("employees", None),
        ("exact", Some("250")),
        ("range", Some(r#""201-500""#)),
        (END, None),
        ("revenue_dollar", None),
        ("exact", Some(r#""25000000""#)),
        ("range", Some(r#""$10M-$50M""#)),
        (END, None),
        ("matching_confidence", None),
        ("level", Some(r#""MEDIUM""#)),
        (END, None),
        (END, None),
        (END, None),
        (END, None),
    ];
    const END: &str = "";

    /// Builds the object of the fields from `FIELDS[*at]` up to its `END`, each as its variant,
    /// plus an unknown field; records in `good` the (path, text it reads as) of every field
    /// given its usual value inside objects given theirs.
    fn build(
        at: &mut usize,
        variants: &mut impl Iterator<Item = Variant>,
        path: &str,
        good: &mut Vec<(String, String)>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut object = serde_json::Map::new();
        object.insert("brand_new_field".into(), serde_json::json!({"nested": [1, "two", null]}));
        while FIELDS[*at].0 != END {
            let (name, usual) = FIELDS[*at];
            *at += 1;
            let field_path = format!("{path}/{name}");
            let mut fields = Vec::new();
            let usual_value = match usual {
                Some(json) => serde_json::from_str(json).unwrap(),
                None => serde_json::Value::Object(build(at, variants, &field_path, &mut fields)),
            };
            if usual.is_none() {
                *at += 1; // past the object's END
            }
            let variant = variants.next().unwrap();
            let value = match variant {
                Variant::Missing => continue,
                Variant::Null => serde_json::Value::Null,
                Variant::Good => {
                    if let Some(text) = usual_value.as_str().map(str::to_string).or_else(|| usual.map(str::to_string)) {
                        good.push((field_path, text));
                    }
                    good.extend(fields);
                    usual_value
                }
                Variant::Odd(value) => value,
            };
            object.insert(name.to_string(), value);
        }
        object
    }

    /// What was read, by path, as text (codes as their number).
    fn read_back(result: &EnrichmentResult) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |path: &str, text: Option<&str>| {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                out.push((path.to_string(), text.to_string()));
            }
        };
        put("/status", result.status.as_deref());
        put("/external_id", result.external_id.as_deref());
        put("/code", result.code.map(|c| c.to_string()).as_deref());
        put("/error_code", result.error_code.map(|c| c.to_string()).as_deref());
        if let Some(error) = &result.error {
            put("/error/code", error.code.map(|c| c.to_string()).as_deref());
            put("/error/message", error.message.as_deref());
        }
        let Some(data) = &result.data else { return out };
        put("/data/enrichment_status", data.enrichment_status.as_deref());
        let Some(c) = &data.company else { return out };
        let scalars = [
            ("ug_company_id", &c.ug_company_id),
            ("ls_id", &c.ls_id),
            ("name", &c.name),
            ("website", &c.website),
            ("phone", &c.phone),
            ("industry", &c.industry),
            ("sub_industry", &c.sub_industry),
            ("sic", &c.sic),
            ("naics", &c.naics),
            ("linkedin_profile", &c.linkedin_profile),
        ];
        for (name, value) in scalars {
            put(&format!("/data/company/{name}"), value.as_ref().map(Scalar::as_str));
        }
        if let Some(a) = &c.address {
            for (name, value) in [
                ("country", &a.country),
                ("state", &a.state),
                ("city", &a.city),
                ("address", &a.address),
                ("zipcode", &a.zipcode),
            ] {
                put(&format!("/data/company/address/{name}"), value.as_ref().map(Scalar::as_str));
            }
        }
        for (name, measure) in [("employees", &c.employees), ("revenue_dollar", &c.revenue_dollar)] {
            if let Some(m) = measure {
                put(&format!("/data/company/{name}/exact"), m.exact.as_ref().map(Scalar::as_str));
                put(&format!("/data/company/{name}/range"), m.range.as_ref().map(Scalar::as_str));
            }
        }
        if let Some(confidence) = &c.matching_confidence {
            put("/data/company/matching_confidence/level", confidence.level.as_deref());
        }
        out
    }

    /// Any JSON value, small.
    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e12f64..1e12).prop_map(serde_json::Value::from),
            "[a-zA-Z0-9 ,.$+-]{0,12}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("HIGH")),
            Just(serde_json::Value::from("1100")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::vec(("[a-z_]{1,8}|code|exact|level|name|external_id", inner), 0..4)
                    .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    fn variant() -> impl proptest::strategy::Strategy<Value = Variant> {
        use proptest::prelude::*;
        prop_oneof![
            1 => Just(Variant::Missing),
            1 => Just(Variant::Null),
            3 => Just(Variant::Good),
            2 => any_json().prop_map(Variant::Odd),
        ]
    }

    proptest::proptest! {
        /// Every field missing, null, usual, of any other type, with unknown fields beside:
        /// never a panic or an error for the bulk, its neighbours read as if alone, the
        /// external_id kept, and every usual value read as it always was.
        #[test]
        fn any_field_of_any_type_fails_nothing_and_usual_values_read_as_usual(
            variants in proptest::collection::vec(variant(), FIELDS.len()),
        ) {
            let (mut at, mut good) = (0, Vec::new());
            let record = serde_json::Value::Object(build(&mut at, &mut variants.into_iter(), "", &mut good));
            let results = read_bulk_results(&bulk(&[good_record(), record.clone(), good_record()])).unwrap();
            proptest::prop_assert_eq!(results.len(), 3);
            let alone = read_single_result(&serde_json::to_vec(&record).unwrap()).unwrap();
            proptest::prop_assert_eq!(format!("{:?}", &results[1]), format!("{alone:?}"));
            let usual = read_back(&read_single_result(&serde_json::to_vec(&good_record()).unwrap()).unwrap());
            proptest::prop_assert_eq!(read_back(&results[0]), usual.clone());
            proptest::prop_assert_eq!(read_back(&results[2]), usual);
            let read = read_back(&results[1]);
            for (path, text) in &good {
                let got = read.iter().find(|(p, _)| p == path).map(|(_, t)| t.as_str());
                proptest::prop_assert_eq!(got, Some(text.as_str()), "{} in {}", path, record);
            }
        }

        /// Records of any shape at all: the bulk is read, every object is kept, and so is
        /// every external_id given as text.
        #[test]
        fn records_of_any_shape_never_fail_the_bulk(records in proptest::collection::vec(any_json(), 0..6)) {
            let results = read_bulk_results(&bulk(&records)).unwrap();
            let objects: Vec<_> = records.iter().filter(|r| r.is_object()).collect();
            proptest::prop_assert_eq!(results.len(), objects.len());
            for (record, result) in objects.into_iter().zip(&results) {
                if let Some(id) = record.get("external_id").and_then(|id| id.as_str()).filter(|id| !id.is_empty()) {
                    proptest::prop_assert_eq!(result.external_id.as_deref(), Some(id));
                }
            }
        }
    }

    /// The record `FIELDS` describes with every field at its usual value.
    fn good_record() -> serde_json::Value {
        let (mut at, mut good) = (0, Vec::new());
        serde_json::Value::Object(build(&mut at, &mut std::iter::repeat(Variant::Good), "", &mut good))
    }

    #[test]
    fn confidence_levels_are_ordered_and_parsed_leniently() {
        assert!(Confidence::High > Confidence::Medium && Confidence::Low > Confidence::VeryLow);
        assert_eq!(Confidence::parse("very low"), Some(Confidence::VeryLow));
        assert_eq!(Confidence::parse("VERY_LOW"), Some(Confidence::VeryLow));
        assert_eq!(Confidence::parse(" Medium "), Some(Confidence::Medium));
        assert_eq!(Confidence::parse("VERY LOWEST"), None);
        assert_eq!(Confidence::parse("h-i-g-h 1"), Some(Confidence::High));
        assert_eq!(Confidence::parse(""), None);
    }

    proptest::proptest! {
        /// The letters-only reading, spelled out with a `String`, as it was before parsing
        /// stopped allocating.
        #[test]
        fn confidence_parses_as_its_letters_uppercased(text in "(?i)[ _-]{0,2}(very|low|medium|high|x|é){0,3}[ 1]{0,2}") {
            let letters: String =
                text.chars().filter(|c| c.is_ascii_alphabetic()).map(|c| c.to_ascii_uppercase()).collect();
            let expected = match letters.as_str() {
                "HIGH" => Some(Confidence::High),
                "MEDIUM" => Some(Confidence::Medium),
                "LOW" => Some(Confidence::Low),
                "VERYLOW" => Some(Confidence::VeryLow),
                _ => None,
            };
            proptest::prop_assert_eq!(Confidence::parse(&text), expected);
        }
    }
}
