//! One row to one `CompanyQuery`: the mapped values only, cleaned, or the reason the row asks
//! Leadspace nothing.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use super::resolve::{FieldMapping, FieldRef, MappingError, ResolvedMapping};
use super::role::Role;
use crate::company::CompanyQuery;
use crate::records::Row;

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
        let mut query = CompanyQuery::default();
        self.query_into(row, &mut query)?;
        Ok(query)
    }

    /// `query` into `query`, whose buffers are reused: pass 1 asks this of every row, and most
    /// rows name a company already seen, so building each afresh cost an allocation and a free
    /// per mapped value and row. On an error, `query` holds whatever was read before it.
    pub fn query_into(&self, row: &Row, query: &mut CompanyQuery) -> Result<(), NoQuery> {
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
        query.clear();
        for (role, field) in &self.fields {
            let raw = field_value(row, field);
            if *role == Role::CompanyName && raw.is_none() {
                return Err(NoQuery::CompanyFieldAbsent);
            }
            let slot = match role {
                Role::CompanyName => {
                    clean_into(raw.as_deref().unwrap_or(""), &mut query.name);
                    check_length(&query.name, *role)?;
                    if query.name.is_empty() {
                        return Err(NoQuery::BlankCompanyName);
                    }
                    continue;
                }
                Role::Website => &mut query.website,
                Role::Country => &mut query.country,
                Role::State => &mut query.state,
                Role::City => &mut query.city,
                Role::Street => &mut query.street,
                Role::PostalCode => &mut query.postal_code,
            };
            let value = slot.get_or_insert_default();
            clean_into(raw.as_deref().unwrap_or(""), value);
            check_length(value, *role)?;
        }
        query.drop_empty();
        Ok(())
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

fn check_length(value: &str, role: Role) -> Result<(), NoQuery> {
    if value.len() > MAX_VALUE_CHARS && value.chars().count() > MAX_VALUE_CHARS {
        return Err(NoQuery::TooLong(role));
    }
    Ok(())
}

/// `value` trimmed, inner whitespace and control characters collapsed to single spaces, in
/// place of what `out` held.
fn clean_into(value: &str, out: &mut String) {
    out.clear();
    if is_clean_ascii(value.as_bytes()) {
        // Most values: nothing to trim or collapse.
        out.push_str(value);
        return;
    }
    if value.is_ascii() {
        // The same split without decoding characters: in ASCII, whitespace and control
        // characters are the bytes up to the space, and DEL. Pass 1 cleans every mapped value
        // of every row.
        let separator = |b: &u8| *b <= b' ' || *b == 0x7f;
        let mut rest = value;
        while let Some(start) = rest.bytes().position(|b| !separator(&b)) {
            let word = &rest[start..];
            let end = word.bytes().position(|b| separator(&b)).unwrap_or(word.len());
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&word[..end]);
            rest = &word[end..];
        }
        return;
    }
    for word in value.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Printable ASCII with single spaces between words and none at either end: what `clean_into`
/// leaves as it is, found in one pass.
fn is_clean_ascii(bytes: &[u8]) -> bool {
    if bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
        return false;
    }
    let mut after_space = false;
    for &b in bytes {
        let space = b == b' ';
        if !(b' '..=b'~').contains(&b) || (space && after_space) {
            return false;
        }
        after_space = space;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::clean_into;

    /// What `clean_into` does, one character at a time.
    fn clean_by_characters(value: &str) -> String {
        let words: Vec<&str> =
            value.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
        words.join(" ")
    }

    proptest::proptest! {
        #[test]
        fn values_are_cleaned_alike_whatever_their_characters(
            value in "[ \t\r\n\u{0}\u{b}\u{c}\u{1f}\u{7f}a-c.,&-]{0,12}|[ \u{a0}\u{85}\u{2003}\u{3000}\tAé日-]{0,8}",
            left_over in "[a-z ]{0,5}",
        ) {
            let mut out = left_over;
            clean_into(&value, &mut out);
            proptest::prop_assert_eq!(out, clean_by_characters(&value));
        }
    }
}
