//! The unique companies of one file: each distinct match key is sent to Leadspace once, and its
//! answer fanned out to every row that asked.
//!
//! A file can hold hundreds of thousands of companies, so the table is compact: each company is
//! known by a 128-bit digest of its match key rather than the key, the index holds company
//! numbers alone (the digests are kept once, in number order), and the queries are packed end
//! to end into one string (a separate allocation per company cost about 30 bytes more each).

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

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
    let mut id = Vec::with_capacity(32);
    push_external_id(&mut id, digest);
    String::from_utf8(id).unwrap_or_default()
}

/// `external_id(digest)` appended to `out`, without formatting machinery: every journal line
/// and every kept answer starts with one.
pub fn push_external_id(out: &mut Vec<u8>, digest: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..32).rev().map(|nibble| HEX[((digest >> (4 * nibble)) & 0xf) as usize]));
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

pub struct CompanyTable {
    /// Company numbers, found by their digest's hash under `seed`. A slot holds the number
    /// alone, four bytes, where a map keyed by the digest would hold both, padded to 32.
    index: HashTable<u32>,
    /// Drawn at random for each table. The digest is public (fixed keys, so that journals and
    /// the cache stay readable across runs): hashed without a secret, names an uploader chose
    /// to collide would make every insert walk one long probe sequence.
    seed: IndexSeed,
    /// Every query, packed (`CompanyQuery::pack_into`), end to end in number order.
    queries: String,
    /// Where each company's packed query ends in `queries`, by number.
    query_ends: Vec<usize>,
    /// Each company's digest, by number (16 bytes a company).
    digests: Vec<u128>,
}

#[derive(Clone, Copy)]
struct IndexSeed(u64, u64);

impl IndexSeed {
    fn random() -> Self {
        IndexSeed(rand::random(), rand::random())
    }

    /// The digest's hash in the index: both halves keyed, multiplied, and folded (foldhash's
    /// mixing), so digests an uploader made to share any 64 bits still spread.
    fn hash_of(self, digest: u128) -> u64 {
        let (low, high) = (digest as u64 ^ self.0, (digest >> 64) as u64 ^ self.1);
        let product = u128::from(low) * u128::from(high);
        product as u64 ^ (product >> 64) as u64
    }
}

impl Default for CompanyTable {
    fn default() -> Self {
        CompanyTable {
            index: HashTable::new(),
            seed: IndexSeed::random(),
            queries: String::new(),
            query_ends: Vec::new(),
            digests: Vec::new(),
        }
    }
}

impl std::fmt::Debug for CompanyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyTable").field("companies", &self.len()).finish()
    }
}

impl CompanyTable {
    /// The company's number, adding it on first sight; the first row's spelling is what is sent.
    pub fn intern(&mut self, query: &CompanyQuery) -> u32 {
        let next = self.len() as u32;
        let digest = query.key_digest();
        let (digests, seed) = (&self.digests, self.seed);
        let same = |&id: &u32| digests[id as usize] == digest;
        match self.index.entry(seed.hash_of(digest), same, |&id| seed.hash_of(digests[id as usize])) {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(slot) => {
                slot.insert(next);
                query.pack_into(&mut self.queries);
                self.query_ends.push(self.queries.len());
                self.digests.push(digest);
                next
            }
        }
    }

    pub fn lookup(&self, query: &CompanyQuery) -> Option<u32> {
        self.find(query.key_digest()).map(|id| id as u32)
    }

    pub fn query(&self, company: usize) -> CompanyQuery {
        let start = company.checked_sub(1).map_or(0, |previous| self.query_ends[previous]);
        CompanyQuery::unpack(&self.queries[start..self.query_ends[company]])
    }

    pub fn len(&self) -> usize {
        self.query_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.query_ends.is_empty()
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
        self.index.find(self.seed.hash_of(digest), |&id| self.digests[id as usize] == digest).map(|&id| id as usize)
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
        assert_eq!(table.intern(&query("Contoso Ltd")), 0);
        assert_eq!(table.intern(&query("Fabrikam")), 1);
        assert_eq!(table.intern(&query("CONTOSO LTD")), 0);
        assert_eq!(table.len(), 2);
        assert_eq!(table.query(0).name, "Contoso Ltd");
        assert_eq!(table.lookup(&query("contoso ltd")), Some(0));
    }

    #[test]
    fn a_company_is_found_again_by_the_external_id_it_was_sent_with() {
        let mut table = CompanyTable::default();
        table.intern(&query("Contoso"));
        table.intern(&query("Fabrikam"));
        let sent = table.request(1).external_id;
        assert_eq!(digest_of(&sent).and_then(|d| table.find(d)), Some(1));
        assert_eq!(digest_of("c1"), None);
        assert_eq!(digest_of(&"z".repeat(32)), None);
    }

    #[test]
    fn numbers_hold_while_the_index_grows_many_times() {
        let mut table = CompanyTable::default();
        let names: Vec<String> = (0..50_000).map(|i| format!("Company {i}")).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.intern(&query(name)), i as u32);
        }
        for (i, name) in names.iter().enumerate().rev() {
            assert_eq!(table.intern(&query(name)), i as u32, "{name} again");
            assert_eq!(table.find(table.digest(i)), Some(i));
        }
        assert_eq!((table.len(), table.lookup(&query("Company 50000"))), (50_000, None));
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
        let bare = CompanyQuery { name: "Fabrikam".into(), ..Default::default() };
        let mut table = CompanyTable::default();
        table.intern(&full);
        table.intern(&bare);
        table.intern(&CompanyQuery { name: "Northwind".into(), website: Some(String::new()), ..Default::default() });
        assert_eq!((table.query(0), table.query(1)), (full, bare));
        assert_eq!(table.query(2).website.as_deref(), Some(""), "an empty value is not an absent one");
    }

    #[test]
    fn digests_made_to_share_64_bits_spread_over_the_index_and_tables_hash_apart() {
        // What a hash flood precomputes: many digests with one half in common.
        let seed = IndexSeed::random();
        let shared_low: std::collections::HashSet<u64> =
            (0..10_000_u128).map(|i| seed.hash_of((i << 64) | 0xdead_beef)).collect();
        let shared_high: std::collections::HashSet<u64> =
            (0..10_000_u128).map(|i| seed.hash_of((0xdead_beef << 64) | i)).collect();
        assert!(shared_low.len() > 9_990 && shared_high.len() > 9_990, "{} {}", shared_low.len(), shared_high.len());
        // Each table draws its own seed: what collides in one does not in another.
        let (a, b) = (IndexSeed::random(), IndexSeed::random());
        assert!((0..100_u128).filter(|&i| a.hash_of(i) == b.hash_of(i)).count() < 2);
        // Identity stays the fixed digest: a company interned twice is found once.
        let mut table = CompanyTable::default();
        let query = CompanyQuery { name: "Contoso".into(), ..Default::default() };
        assert_eq!(table.intern(&query), table.intern(&query));
        assert_eq!(table.lookup(&query), Some(0));
    }
}
