//! Serde types for the Leadspace enrichment API (Single and Bulk v4).
//!
//! Leadspace publishes no machine-readable schema, so every response type is lenient: all
//! fields are optional, unknown fields are ignored, and scalars that the documentation does not
//! pin down (employee counts, SIC codes...) are kept as raw JSON and rendered to text later.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub status: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
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
    pub enrichment_status: Option<String>,
    #[serde(default)]
    pub company: Option<EnrichedCompany>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct EnrichedCompany {
    pub ug_company_id: Option<Value>,
    pub ls_id: Option<Value>,
    pub name: Option<Value>,
    pub website: Option<Value>,
    pub phone: Option<Value>,
    pub industry: Option<Value>,
    pub sub_industry: Option<Value>,
    pub sic: Option<Value>,
    pub naics: Option<Value>,
    pub linkedin_profile: Option<Value>,
    pub address: Option<EnrichedAddress>,
    pub employees: Option<Measure>,
    pub revenue_dollar: Option<Measure>,
    pub matching_confidence: Option<MatchingConfidence>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct EnrichedAddress {
    pub country: Option<Value>,
    pub state: Option<Value>,
    pub city: Option<Value>,
    pub address: Option<Value>,
    pub zipcode: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct Measure {
    pub exact: Option<Value>,
    pub range: Option<Value>,
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

/// Renders a loosely typed scalar (string, number, bool) as text; objects and arrays are not
/// scalars and render empty rather than as JSON soup in a spreadsheet cell.
pub fn scalar_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
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
