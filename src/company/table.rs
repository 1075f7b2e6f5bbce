//! The unique companies of one file: each distinct match key is sent to Leadspace once, and its
//! answer fanned out to every row that asked.
//!
//! A file can hold hundreds of thousands of companies, so the table is compact: the index holds
//! a 128-bit digest of each match key rather than the key, and each query is kept as one packed
//! string. 200,000 companies take about 18 MB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::CompanyQuery;
use crate::leadspace::model::EnrichRequest;

/// The companies to enrich, as the enrichment step sees them.
pub trait Companies: Sync {
    fn count(&self) -> usize;
    /// The company's digest (`CompanyQuery::key_digest`): what names it in the answer journal
    /// and in the external_id Leadspace echoes back, so that an answer finds its company in
    /// any later run of the same file, whatever the numbering.
    fn digest(&self, company: usize) -> u128;
    /// The company whose digest this is.
    fn find(&self, digest: u128) -> Option<usize>;
    /// The request for the company, with its digest as the external_id.
    fn request(&self, company: usize) -> EnrichRequest;
    /// What makes two companies the same question (`CompanyQuery::key`).
    fn match_key(&self, company: usize) -> String;
}

/// The external_id sent with a company: its digest in hex.
pub fn external_id(digest: u128) -> String {
    format!("{digest:032x}")
}

/// The digest an external_id (or a journal line) names, if it is one of ours.
pub fn digest_of(external_id: &str) -> Option<u128> {
    if external_id.len() != 32 {
        return None;
    }
    u128::from_str_radix(external_id, 16).ok()
}

/// For unit tests: a plain list, searched in order.
impl Companies for [CompanyQuery] {
    fn count(&self) -> usize {
        self.len()
    }

    fn digest(&self, company: usize) -> u128 {
        self[company].key_digest()
    }

    fn find(&self, digest: u128) -> Option<usize> {
        self.iter().position(|q| q.key_digest() == digest)
    }

    fn request(&self, company: usize) -> EnrichRequest {
        let query = &self[company];
        query.to_request(external_id(query.key_digest()))
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
    /// Each company's digest, by number (16 bytes a company).
    digests: Vec<u128>,
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
        let digest = query.key_digest();
        let id = *self.index.entry(digest).or_insert(next);
        if id == next {
            self.queries.push(query.pack());
            self.digests.push(digest);
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

    fn digest(&self, company: usize) -> u128 {
        self.digests[company]
    }

    fn find(&self, digest: u128) -> Option<usize> {
        self.index.get(&digest).map(|&id| id as usize)
    }

    fn request(&self, company: usize) -> EnrichRequest {
        self.query(company).to_request(external_id(self.digests[company]))
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
    fn a_company_is_found_again_by_the_external_id_it_was_sent_with() {
        let mut table = CompanyTable::default();
        table.intern(query("Contoso"));
        table.intern(query("Fabrikam"));
        let sent = table.request(1).external_id;
        assert_eq!(digest_of(&sent).and_then(|d| table.find(d)), Some(1));
        assert_eq!(digest_of("c1"), None);
        assert_eq!(digest_of(&"z".repeat(32)), None);
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
