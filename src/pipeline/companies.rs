//! The unique companies of one file: each distinct match key is sent to Leadspace once, and its
//! answer fanned out to every row that asked.
//!
//! A file can hold hundreds of thousands of companies, so the table is compact: the index holds
//! a 128-bit digest of each match key rather than the key, and each query is kept as one packed
//! string. 200,000 companies take about 15 MB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::leadspace::model::EnrichRequest;
use crate::mapping::CompanyQuery;

/// The companies to enrich, as the enrichment step sees them.
pub trait Companies: Sync {
    fn count(&self) -> usize;
    fn request(&self, company: usize, external_id: String) -> EnrichRequest;
    /// What makes two companies the same question (`CompanyQuery::key`).
    fn match_key(&self, company: usize) -> String;
}

impl Companies for [CompanyQuery] {
    fn count(&self) -> usize {
        self.len()
    }

    fn request(&self, company: usize, external_id: String) -> EnrichRequest {
        self[company].to_request(external_id)
    }

    fn match_key(&self, company: usize) -> String {
        self[company].key()
    }
}

/// The digests are already uniformly spread: the map uses their low bits as they are.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u128(&mut self, digest: u128) {
        self.0 = digest as u64;
    }
}

#[derive(Default)]
pub struct CompanyTable {
    index: HashMap<u128, u32, BuildHasherDefault<DigestHasher>>,
    queries: Vec<Box<str>>,
}

impl std::fmt::Debug for CompanyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyTable").field("companies", &self.queries.len()).finish()
    }
}

impl CompanyTable {
    /// The company's number, adding it on first sight; the first row's spelling is what is sent.
    pub fn intern(&mut self, query: CompanyQuery) -> u32 {
        let next = self.queries.len() as u32;
        let id = *self.index.entry(query.key_digest()).or_insert(next);
        if id == next {
            self.queries.push(query.pack());
        }
        id
    }

    pub fn lookup(&self, query: &CompanyQuery) -> Option<u32> {
        self.index.get(&query.key_digest()).copied()
    }

    pub fn query(&self, company: usize) -> CompanyQuery {
        CompanyQuery::unpack(&self.queries[company])
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

impl Companies for CompanyTable {
    fn count(&self) -> usize {
        self.len()
    }

    fn request(&self, company: usize, external_id: String) -> EnrichRequest {
        self.query(company).to_request(external_id)
    }

    fn match_key(&self, company: usize) -> String {
        self.query(company).key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> CompanyQuery {
        CompanyQuery { name: name.into(), ..Default::default() }
    }

    #[test]
    fn the_same_company_is_interned_once_with_its_first_spelling() {
        let mut table = CompanyTable::default();
        assert_eq!(table.intern(query("Contoso Ltd")), 0);
        assert_eq!(table.intern(query("Fabrikam")), 1);
        assert_eq!(table.intern(query("CONTOSO LTD")), 0);
        assert_eq!(table.len(), 2);
        assert_eq!(table.query(0).name, "Contoso Ltd");
        assert_eq!(table.lookup(&query("contoso ltd")), Some(0));
    }

    #[test]
    fn queries_come_back_whole_from_the_packed_table() {
        let full = CompanyQuery {
            name: "Contoso".into(),
            website: Some("contoso.com".into()),
            country: None,
            state: Some("WA".into()),
            city: Some("Redmond".into()),
            street: None,
            postal_code: Some("98052".into()),
        };
        let mut table = CompanyTable::default();
        table.intern(full.clone());
        assert_eq!(table.query(0), full);
    }
}
