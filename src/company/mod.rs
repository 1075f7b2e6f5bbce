//! The company a row asks about (`CompanyQuery`, its match key and digest) and the table of a
//! file's unique companies. Domain types only: no I/O, nothing above them imported.

mod query;
mod table;

pub use query::CompanyQuery;
pub use table::{Companies, CompanyTable, digest_of, external_id, push_external_id};
