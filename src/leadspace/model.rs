//! Serde types for the Leadspace enrichment API (Single and Bulk v4).
//!
//! Leadspace publishes no machine-readable schema, so every response type is lenient: all
//! fields are optional, unknown fields are ignored, and scalars that the documentation does not
//! pin down (employee counts, SIC codes...) are read straight to the text they will be written as.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Deserialize)]
pub struct BulkResults {
    #[serde(default)]
    pub results: Vec<EnrichmentResult>,
}

/// One record's answer, from the single API or inside a finished bulk.
///
/// Guess (kept here, in one place): Leadspace documents record-level failures only as codes
/// (1100 internal, 1200 invalid input); we accept them as `{"status": "error", "error":
/// {"code": 1100, "message": "..."}}` and also tolerate a top-level `code`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct EnrichmentResult {
    #[serde(default)]
    pub status: Option<CompactString>,
    #[serde(default)]
    pub external_id: Option<CompactString>,
    #[serde(default)]
    pub data: Option<EnrichmentData>,
    #[serde(default)]
    pub error: Option<RecordError>,
    #[serde(default)]
    pub code: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RecordError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct EnrichmentData {
    #[serde(default)]
    pub enrichment_status: Option<CompactString>,
    #[serde(default)]
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
    pub address: Option<EnrichedAddress>,
    pub employees: Option<Measure>,
    pub revenue_dollar: Option<Measure>,
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

    // Numbers are written as `serde_json::Number` displays them.
    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(Scalar::from(serde_json::Number::from(n).to_string()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::from(serde_json::Number::from(n).to_string()))
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
    pub level: Option<String>,
}

/// Record-level error codes inside a finished bulk.
pub const RECORD_INTERNAL_ERROR: i64 = 1100;
pub const RECORD_INVALID_INPUT: i64 = 1200;

impl EnrichmentResult {
    pub fn error_code(&self) -> Option<i64> {
        self.error.as_ref().and_then(|e| e.code).or(self.code)
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
}
