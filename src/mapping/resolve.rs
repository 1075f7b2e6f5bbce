//! Binding a mapping to one file: FIELD_MAPPING (or the header synonyms) resolved against the
//! CSV header or the first JSON object, with errors that name the columns there are.

use std::fmt;

use serde_json::{Map, Value};

use super::role::{Role, squash};

/// A mapping from role to column or field name, as configured or as detected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMapping {
    pub(super) entries: Vec<(Role, String)>,
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
    pub(super) fields: Vec<(Role, FieldRef)>,
    pub(super) description: FieldMapping,
    /// The CSV header's width, to recognise rows with more fields than columns.
    pub(super) columns: Option<usize>,
}

/// Dotted paths of the text and number fields of `object`, as listed in errors.
pub fn field_paths(object: &Map<String, Value>) -> Vec<String> {
    let mut paths = Vec::new();
    leaf_paths(object, "", 0, &mut paths);
    paths
}
