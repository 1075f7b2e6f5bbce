//! The mapping as a whole: from a header or a JSON object to the query each row asks.

use super::*;
use crate::records::JsonRow;
use crate::records::Row;

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn csv_row(fields: &[&str]) -> Row {
    Row::Csv(csv::StringRecord::from(fields.to_vec()))
}

#[test]
fn auto_detection_ignores_case_and_punctuation() {
    let h = header(&["ID", "E-mail", "ACCOUNT_NAME", "Web Site", "Zip", "Country/Region"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    assert_eq!(
        m.description().to_json(),
        serde_json::json!({"company_name": "ACCOUNT_NAME", "website": "Web Site", "country": "Country/Region", "postal_code": "Zip"})
    );
}

#[test]
fn european_headers_are_recognised_accents_and_all() {
    let h = header(&["Société", "Adresse", "Code postal", "Ville", "Pays", "Site Web"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    assert_eq!(
        m.description().to_json(),
        serde_json::json!({"company_name": "Société", "website": "Site Web", "country": "Pays", "city": "Ville",
                           "street": "Adresse", "postal_code": "Code postal"})
    );
    let h = header(&["Firmenname", "PLZ", "Ort", "Straße"]);
    assert!(FieldMapping::resolve_columns(None, &h).is_ok());
}

#[test]
fn auto_detection_prefers_the_better_synonym() {
    let h = header(&["Account", "Company Name"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    assert_eq!(m.description().to_json(), serde_json::json!({"company_name": "Company Name"}));
}

#[test]
fn a_file_without_a_company_column_names_its_columns_and_the_fix() {
    let err = FieldMapping::resolve_columns(None, &header(&["Email", "Notes"])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"Email\", \"Notes\"") && text.contains("FIELD_MAPPING"), "{text}");
}

#[test]
fn a_configured_column_that_is_missing_is_named() {
    let mapping = FieldMapping::from_json(r#"{"company_name": "Firm"}"#).unwrap();
    let err = FieldMapping::resolve_columns(Some(&mapping), &header(&["Company"])).unwrap_err();
    assert!(err.to_string().contains("\"Firm\""), "{err}");
}

#[test]
fn field_mapping_must_name_known_roles_and_company_name() {
    assert_eq!(FieldMapping::from_json(r#"{"website": "Web"}"#), Err(MappingError::MissingCompanyName));
    assert!(matches!(
        FieldMapping::from_json(r#"{"company_name": "C", "email": "E"}"#),
        Err(MappingError::UnknownRole(r)) if r == "email"
    ));
}

#[test]
fn only_mapped_fields_reach_the_request() {
    let h = header(&["Company", "Email", "Website", "Notes"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    let query =
        m.query(&csv_row(&["  Contoso   Ltd ", "ceo@contoso.com", "https://www.contoso.com/", "secret"])).unwrap();
    let body = serde_json::to_value(query.to_request("c0".into())).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"external_id": "c0", "company": {"name": "Contoso Ltd", "website": "https://www.contoso.com/"}})
    );
}

#[test]
fn the_same_company_in_other_case_and_spacing_has_one_key() {
    let h = header(&["Company", "Website"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    let a = m.query(&csv_row(&["Contoso Ltd", "contoso.com"])).unwrap();
    let b = m.query(&csv_row(&["  CONTOSO   ltd", "https://www.Contoso.com/about"])).unwrap();
    let c = m.query(&csv_row(&["Contoso Ltd", "fabrikam.com"])).unwrap();
    assert_eq!(a.key(), b.key());
    assert_ne!(a.key(), c.key());
}

#[test]
fn a_blank_company_name_is_no_query() {
    let m = FieldMapping::resolve_columns(None, &header(&["Company"])).unwrap();
    assert_eq!(m.query(&csv_row(&["   "])), Err(NoQuery::BlankCompanyName));
    assert_eq!(m.query(&csv_row(&[])), Err(NoQuery::CompanyFieldAbsent));
}

#[test]
fn a_duplicated_column_name_is_refused_with_its_positions() {
    let h = header(&["Company", "City", "company"]);
    let err = FieldMapping::resolve_columns(None, &h).unwrap_err();
    assert!(err.to_string().contains("appears 2 times in the header (columns 1, 3)"), "{err}");
    let configured = FieldMapping::from_json(r#"{"company_name": "City"}"#).unwrap();
    let h = header(&["City", "Company", "City"]);
    assert!(matches!(
        FieldMapping::resolve_columns(Some(&configured), &h),
        Err(MappingError::AmbiguousColumn { positions, .. }) if positions == [1, 3]
    ));
    // A duplicated column that nothing maps is nobody's business.
    let h = header(&["Company", "Notes", "Notes"]);
    assert!(FieldMapping::resolve_columns(None, &h).is_ok());
}

#[test]
fn blank_column_names_are_listed_by_position() {
    let err = FieldMapping::resolve_columns(None, &header(&["Email", "", "Notes"])).unwrap_err();
    assert!(err.to_string().contains("\"Email\", (blank, column 2), \"Notes\""), "{err}");
    assert_eq!(
        FieldMapping::from_json(r#"{"company_name": " "}"#),
        Err(MappingError::EmptyColumnName("company_name".into()))
    );
}

#[test]
fn rows_with_extra_fields_or_huge_values_ask_nothing() {
    let m = FieldMapping::resolve_columns(None, &header(&["Company", "City"])).unwrap();
    assert_eq!(m.query(&csv_row(&["Acme", " Inc.", "Paris"])), Err(NoQuery::ExtraFields { fields: 3, columns: 2 }));
    assert!(m.query(&csv_row(&["Acme", "Paris", "", " "])).is_ok());
    assert!(m.query(&csv_row(&["Acme"])).is_ok());
    let long = "x".repeat(MAX_VALUE_CHARS + 1);
    assert_eq!(m.query(&csv_row(&[&long, "Paris"])), Err(NoQuery::TooLong(Role::CompanyName)));
    assert_eq!(m.query(&csv_row(&["Acme", &long])), Err(NoQuery::TooLong(Role::City)));
}

#[test]
fn json_auto_detection_finds_nested_text_fields_and_skips_objects() {
    let object =
        serde_json::json!({"id": 1, "account": {"name": "Contoso", "domain": "contoso.com"}, "email": "x@y.z"});
    let m = FieldMapping::resolve_fields(None, object.as_object()).unwrap();
    assert_eq!(
        m.description().to_json(),
        serde_json::json!({"company_name": "account.name", "website": "account.domain"})
    );
    let row = Row::Json(JsonRow { raw: String::new(), object: object.as_object().unwrap().clone() });
    assert_eq!(m.query(&row).unwrap().name, "Contoso");
}

#[test]
fn dotted_paths_reach_into_nested_json() {
    let mapping = FieldMapping::from_json(r#"{"company_name": "account.name", "postal_code": "account.zip"}"#).unwrap();
    let m = FieldMapping::resolve_fields(Some(&mapping), None).unwrap();
    let object = serde_json::json!({"account": {"name": "Contoso", "zip": 98052}});
    let row = Row::Json(JsonRow { raw: String::new(), object: object.as_object().unwrap().clone() });
    let q = m.query(&row).unwrap();
    assert_eq!((q.name.as_str(), q.postal_code.as_deref()), ("Contoso", Some("98052")));
}

#[test]
fn one_query_reused_row_after_row_reads_each_row_as_a_fresh_one_would() {
    let h = header(&["Company", "Website", "City", "Notes"]);
    let m = FieldMapping::resolve_columns(None, &h).unwrap();
    let rows = [
        csv_row(&["  Contoso   Ltd ", "contoso.com", "Paris", "a"]),
        csv_row(&["Fabrikam", "", "", "b"]),
        csv_row(&["", "blank.example", "Rome", "c"]),
        csv_row(&["Northwind"]),
        csv_row(&["Tailspin", " tailspin.io ", "  ", "d"]),
        csv_row(&[&"x".repeat(MAX_VALUE_CHARS + 1), "long.example", "Oslo", "e"]),
        csv_row(&["Litware", "litware.com", "Lisbon", "f"]),
    ];
    let mut reused = crate::company::CompanyQuery::default();
    for (i, row) in rows.iter().enumerate() {
        let fresh = m.query(row);
        let again = m.query_into(row, &mut reused).map(|()| reused.clone());
        assert_eq!(again, fresh, "row {i}");
    }
    assert_eq!(m.query(&rows[1]).unwrap().website, None, "an empty value is absent, not Some(\"\")");
}
