//! Which input column (CSV header) or field (JSON key or dotted path) plays which role, and the
//! query each row asks Leadspace.
//!
//! Only the roles below are ever read from a row, which is what keeps e-mails, notes and ids
//! inside the account: the Leadspace request is built from a `CompanyQuery`, nothing else.

mod resolve;
mod role;
mod row;

pub use resolve::{FieldMapping, FieldRef, MappingError, ResolvedMapping, field_paths};
pub use role::Role;
pub use row::{MAX_VALUE_CHARS, NoQuery};

#[cfg(test)]
mod tests;
