//! Which input column (CSV header) or field (JSON key or dotted path) plays which role, and the
//! normalisation that turns a row's mapped values into a company match key.
//!
//! Only the roles below are ever read from a row, which is what keeps e-mails, notes and ids
//! inside the account: the Leadspace request is built from a `CompanyQuery`, nothing else.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::company::CompanyQuery;
use crate::records::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    CompanyName,
    Website,
    Country,
    State,
    City,
    Street,
    PostalCode,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::CompanyName, Role::Website, Role::Country, Role::State, Role::City, Role::Street, Role::PostalCode];

    pub fn name(self) -> &'static str {
        match self {
            Role::CompanyName => "company_name",
            Role::Website => "website",
            Role::Country => "country",
            Role::State => "state",
            Role::City => "city",
            Role::Street => "street",
            Role::PostalCode => "postal_code",
        }
    }

    fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Header names recognised by auto-detection, compared after `squash` (lower case, letters
    /// and digits only), best first.
    fn synonyms(self) -> &'static [&'static str] {
        match self {
            Role::CompanyName => &[
                "companyname",
                "company",
                "accountname",
                "account",
                "organizationname",
                "organisationname",
                "organization",
                "organisation",
                "businessname",
                "companylegalname",
                "legalname",
                "employer",
                // European spreadsheet headers.
                "société",
                "societe",
                "entreprise",
                "raisonsociale",
                "firma",
                "firmenname",
                "unternehmen",
                "empresa",
                "azienda",
                "bedrijf",
                "bedrijfsnaam",
            ],
            Role::Website => &[
                "website",
                "companywebsite",
                "websiteurl",
                "domain",
                "companydomain",
                "domainname",
                "url",
                "web",
                "homepage",
                "site",
                "siteweb",
                "webseite",
                "sitioweb",
            ],
            Role::Country => &[
                "country",
                "countrycode",
                "countryregion",
                "billingcountry",
                "countryname",
                "pays",
                "land",
                "país",
                "pais",
            ],
            Role::State => {
                &["state", "stateprovince", "stateorprovince", "province", "region", "billingstate", "bundesland"]
            }
            Role::City => {
                &["city", "town", "locality", "billingcity", "ville", "stadt", "ort", "ciudad", "città", "citta"]
            }
            Role::Street => &[
                "street",
                "streetaddress",
                "address",
                "address1",
                "addressline1",
                "billingstreet",
                "street1",
                "adresse",
                "rue",
                "straße",
                "strasse",
                "dirección",
                "direccion",
                "indirizzo",
            ],
            Role::PostalCode => &[
                "postalcode",
                "zip",
                "zipcode",
                "postcode",
                "zippostalcode",
                "billingpostalcode",
                "billingzip",
                "codepostal",
                "plz",
                "postleitzahl",
                "códigopostal",
                "codigopostal",
            ],
        }
    }
}

/// Lower case, letters and digits only: `Company Name`, `company_name` and `COMPANY-NAME` agree.
fn squash(header: &str) -> String {
    header.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A mapping from role to column or field name, as configured or as detected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMapping {
    entries: Vec<(Role, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    Json(String),
    NotAnObject,
    UnknownRole(String),
    NotAString(String),
    MissingCompanyName,
    EmptyColumnName(String),
    ColumnNotFound {
        role: Role,
        column: String,
        available: Vec<String>,
    },
    /// The column chosen for a role appears more than once in the header (1-based positions).
    AmbiguousColumn {
        role: Role,
        column: String,
        positions: Vec<usize>,
    },
    NoCompanyColumn {
        available: Vec<String>,
    },
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles = Role::ALL.map(Role::name).join(", ");
        match self {
            MappingError::Json(e) => {
                write!(f, "is not valid JSON ({e}); expected e.g. {{\"company_name\": \"Account Name\"}}")
            }
            MappingError::NotAnObject => {
                write!(f, "must be a JSON object from role to column, e.g. {{\"company_name\": \"Account Name\"}}")
            }
            MappingError::UnknownRole(r) => write!(f, "has unknown role {r:?}; roles are: {roles}"),
            MappingError::NotAString(r) => {
                write!(f, "maps role {r:?} to something that is not a column name (a string)")
            }
            MappingError::MissingCompanyName => write!(f, "must map company_name, the one required role"),
            MappingError::EmptyColumnName(r) => write!(f, "maps role {r:?} to an empty column name"),
            MappingError::ColumnNotFound { role, column, available } => write!(
                f,
                "FIELD_MAPPING maps {} to {column:?}, which is not in the file; columns are: {}; fix FIELD_MAPPING",
                role.name(),
                list(available)
            ),
            MappingError::AmbiguousColumn { role, column, positions } => write!(
                f,
                "the column {column:?} for {} appears {} times in the header (columns {}); rename the columns so \
                 that each name is unique, or set FIELD_MAPPING to a column whose name is",
                role.name(),
                positions.len(),
                positions.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            ),
            MappingError::NoCompanyColumn { available } => write!(
                f,
                "no company name column found; columns are: {}; set FIELD_MAPPING, e.g. {{\"company_name\": \"<column>\"}}",
                list(available)
            ),
        }
    }
}

impl std::error::Error for MappingError {}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    let shown = names
        .iter()
        .enumerate()
        .map(|(i, n)| if n.trim().is_empty() { format!("(blank, column {})", i + 1) } else { format!("{n:?}") });
    shown.collect::<Vec<_>>().join(", ")
}

/// Where `wanted` sits in `names` (1-based positions in the error), refusing a name that is
/// there more than once: picking one of two "Name" columns at random could bill Leadspace for
/// contact names.
fn unique_position(
    names: &[String],
    wanted: impl Fn(&String) -> bool,
    role: Role,
) -> Result<Option<usize>, MappingError> {
    let positions: Vec<usize> = (0..names.len()).filter(|&i| wanted(&names[i])).collect();
    match positions.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        [first, ..] => Err(MappingError::AmbiguousColumn {
            role,
            column: names[*first].clone(),
            positions: positions.iter().map(|p| p + 1).collect(),
        }),
    }
}

impl FieldMapping {
    pub fn from_json(text: &str) -> Result<Self, MappingError> {
        let value: Value = serde_json::from_str(text).map_err(|e| MappingError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, MappingError> {
        let object = value.as_object().ok_or(MappingError::NotAnObject)?;
        let mut entries = Vec::new();
        for (role_name, column) in object {
            let role = Role::from_name(role_name).ok_or_else(|| MappingError::UnknownRole(role_name.clone()))?;
            let column = column.as_str().ok_or_else(|| MappingError::NotAString(role_name.clone()))?;
            if column.trim().is_empty() {
                return Err(MappingError::EmptyColumnName(role_name.clone()));
            }
            entries.push((role, column.to_string()));
        }
        if !entries.iter().any(|(r, _)| *r == Role::CompanyName) {
            return Err(MappingError::MissingCompanyName);
        }
        entries.sort_by_key(|(r, _)| *r);
        Ok(Self { entries })
    }

    /// The mapping as the summary reports it: `{"company_name": "Account Name", ...}`.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> =
            self.entries.iter().map(|(r, c)| (r.name().to_string(), Value::String(c.clone()))).collect();
        Value::Object(map)
    }

    /// Resolves the mapping against a CSV header; auto-detects when `self` is `None`.
    pub fn resolve_columns(configured: Option<&Self>, header: &[String]) -> Result<ResolvedMapping, MappingError> {
        let squashed: Vec<String> = header.iter().map(|h| squash(h)).collect();
        let mut fields = Vec::new();
        let mut described = Vec::new();
        match configured {
            Some(mapping) => {
                for (role, column) in &mapping.entries {
                    let exact = unique_position(header, |h| h == column, *role)?;
                    let index = match exact {
                        Some(index) => index,
                        None => unique_position(&squashed, |h| *h == squash(column), *role)?.ok_or_else(|| {
                            MappingError::ColumnNotFound {
                                role: *role,
                                column: column.clone(),
                                available: header.to_vec(),
                            }
                        })?,
                    };
                    fields.push((*role, FieldRef::Column(index)));
                    described.push((*role, header[index].clone()));
                }
            }
            None => {
                for role in Role::ALL {
                    let mut found = None;
                    for synonym in role.synonyms() {
                        found = unique_position(&squashed, |h| h == synonym, role)?;
                        if found.is_some() {
                            break;
                        }
                    }
                    if let Some(index) = found {
                        fields.push((role, FieldRef::Column(index)));
                        described.push((role, header[index].clone()));
                    }
                }
                if !fields.iter().any(|(r, _)| *r == Role::CompanyName) {
                    return Err(MappingError::NoCompanyColumn { available: header.to_vec() });
                }
            }
        }
        Ok(ResolvedMapping { fields, description: FieldMapping { entries: described }, columns: Some(header.len()) })
    }

    /// Resolves the mapping for JSON Lines. Configured names are kept as given (a dotted path may
    /// reach into nested objects); auto-detection looks at the text and number fields of the
    /// first object, nested ones included (`account.name` is an account name; a field whose
    /// own name is `domain` is a website wherever it sits).
    pub fn resolve_fields(
        configured: Option<&Self>,
        first: Option<&Map<String, Value>>,
    ) -> Result<ResolvedMapping, MappingError> {
        if let Some(mapping) = configured {
            let fields = mapping.entries.iter().map(|(r, name)| (*r, FieldRef::Key(name.clone()))).collect();
            return Ok(ResolvedMapping { fields, description: mapping.clone(), columns: None });
        }
        let paths = first.map(field_paths).unwrap_or_default();
        let whole: Vec<String> = paths.iter().map(|p| squash(p)).collect();
        let last: Vec<String> = paths.iter().map(|p| squash(p.rsplit('.').next().unwrap_or(p))).collect();
        let mut fields = Vec::new();
        let mut described = Vec::new();
        for role in Role::ALL {
            let find = |names: &[String]| role.synonyms().iter().find_map(|syn| names.iter().position(|n| n == syn));
            if let Some(i) = find(&whole).or_else(|| find(&last)) {
                fields.push((role, FieldRef::Key(paths[i].clone())));
                described.push((role, paths[i].clone()));
            }
        }
        if !fields.iter().any(|(r, _)| *r == Role::CompanyName) {
            return Err(MappingError::NoCompanyColumn { available: paths });
        }
        Ok(ResolvedMapping { fields, description: FieldMapping { entries: described }, columns: None })
    }
}

/// Dotted paths of the text and number fields of `object`, nested objects included (3 deep).
fn leaf_paths(object: &Map<String, Value>, prefix: &str, depth: usize, out: &mut Vec<String>) {
    for (key, value) in object {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            Value::String(_) | Value::Number(_) => out.push(path),
            Value::Object(inner) if depth < 3 => leaf_paths(inner, &path, depth + 1, out),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    Column(usize),
    /// A JSON key; if no key has this exact name, a dotted path into nested objects.
    Key(String),
}

/// A mapping bound to one file's layout.
#[derive(Debug, Clone)]
pub struct ResolvedMapping {
    fields: Vec<(Role, FieldRef)>,
    description: FieldMapping,
    /// The CSV header's width, to recognise rows with more fields than columns.
    columns: Option<usize>,
}

/// The longest mapped value sent: a longer "company name" is a pasted note or a broken row,
/// and would cost a credit for nothing.
pub const MAX_VALUE_CHARS: usize = 500;

/// Why a row asks Leadspace nothing; it becomes `invalid_input` with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoQuery {
    /// The row could not be parsed at all.
    Unparsed(String),
    /// The row has no company field (a JSON object without the key, a CSV row cut short).
    CompanyFieldAbsent,
    /// The company field is there but empty or whitespace.
    BlankCompanyName,
    TooLong(Role),
    /// More fields than header columns: a delimiter inside an unquoted value shifts every
    /// column after it, so the mapped values cannot be trusted.
    ExtraFields {
        fields: usize,
        columns: usize,
    },
}

impl fmt::Display for NoQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoQuery::Unparsed(why) => f.write_str(why),
            NoQuery::CompanyFieldAbsent => f.write_str("the row has no company name field"),
            NoQuery::BlankCompanyName => f.write_str("the company name is empty"),
            NoQuery::TooLong(role) => {
                write!(f, "the {} value is longer than {MAX_VALUE_CHARS} characters", role.name())
            }
            NoQuery::ExtraFields { fields, columns } => write!(
                f,
                "the row has {fields} fields but the header has {columns} columns; \
                 quote values that contain the delimiter"
            ),
        }
    }
}

impl ResolvedMapping {
    pub fn description(&self) -> &FieldMapping {
        &self.description
    }

    /// The company this row asks about, or why it asks nothing.
    pub fn query(&self, row: &Row) -> Result<CompanyQuery, NoQuery> {
        match (row, self.columns) {
            (Row::Invalid(invalid), _) => return Err(NoQuery::Unparsed(invalid.reason.clone())),
            // Trailing empty fields (a delimiter at the end of every line) shift nothing.
            (Row::Csv(record), Some(columns))
                if record.len() > columns && record.iter().skip(columns).any(|f| !f.trim().is_empty()) =>
            {
                return Err(NoQuery::ExtraFields { fields: record.len(), columns });
            }
            _ => {}
        }
        let mut query = CompanyQuery::default();
        for (role, field) in &self.fields {
            let raw = field_value(row, field);
            if *role == Role::CompanyName && raw.is_none() {
                return Err(NoQuery::CompanyFieldAbsent);
            }
            let value = raw.map(|v| clean(&v)).filter(|v| !v.is_empty());
            if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_CHARS && v.chars().count() > MAX_VALUE_CHARS) {
                return Err(NoQuery::TooLong(*role));
            }
            let slot = match role {
                Role::CompanyName => {
                    query.name = value.ok_or(NoQuery::BlankCompanyName)?;
                    continue;
                }
                Role::Website => &mut query.website,
                Role::Country => &mut query.country,
                Role::State => &mut query.state,
                Role::City => &mut query.city,
                Role::Street => &mut query.street,
                Role::PostalCode => &mut query.postal_code,
            };
            *slot = value;
        }
        Ok(query)
    }

    /// The error for a file in which no row has the company field at all: the mapping points at
    /// something that is not there (a dotted path with a typo), so nothing is sent.
    pub fn company_field_missing(&self, available: Vec<String>) -> MappingError {
        let column = self.description.entries.iter().find(|(r, _)| *r == Role::CompanyName);
        MappingError::ColumnNotFound {
            role: Role::CompanyName,
            column: column.map(|(_, c)| c.clone()).unwrap_or_default(),
            available,
        }
    }
}

/// Dotted paths of the text and number fields of `object`, as listed in errors.
pub fn field_paths(object: &Map<String, Value>) -> Vec<String> {
    let mut paths = Vec::new();
    leaf_paths(object, "", 0, &mut paths);
    paths
}

fn field_value<'r>(row: &'r Row, field: &FieldRef) -> Option<Cow<'r, str>> {
    match (row, field) {
        (Row::Csv(record), FieldRef::Column(i)) => record.get(*i).map(Cow::Borrowed),
        (Row::Json(json), FieldRef::Key(name)) => {
            let value = json.object.get(name).or_else(|| {
                let mut parts = name.split('.');
                let first = json.object.get(parts.next()?)?;
                parts.try_fold(first, |v, part| v.as_object()?.get(part))
            })?;
            match value {
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                Value::Number(n) => Some(Cow::Owned(n.to_string())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Trimmed, inner whitespace and control characters collapsed to single spaces.
fn clean(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::JsonRow;

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
        let mapping =
            FieldMapping::from_json(r#"{"company_name": "account.name", "postal_code": "account.zip"}"#).unwrap();
        let m = FieldMapping::resolve_fields(Some(&mapping), None).unwrap();
        let object = serde_json::json!({"account": {"name": "Contoso", "zip": 98052}});
        let row = Row::Json(JsonRow { raw: String::new(), object: object.as_object().unwrap().clone() });
        let q = m.query(&row).unwrap();
        assert_eq!((q.name.as_str(), q.postal_code.as_deref()), ("Contoso", Some("98052")));
    }
}
