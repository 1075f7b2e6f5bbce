//! The unique companies of one file: each distinct match key is sent to Leadspace once, and its
//! answer fanned out to every row that asked.

use std::collections::HashMap;

use crate::mapping::CompanyQuery;

#[derive(Debug, Default)]
pub struct CompanyTable {
    index: HashMap<String, u32>,
    queries: Vec<CompanyQuery>,
}

impl CompanyTable {
    /// The company's number, adding it on first sight; the first row's spelling is what is sent.
    pub fn intern(&mut self, query: CompanyQuery) -> u32 {
        let key = query.key();
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.queries.len() as u32;
        self.index.insert(key, id);
        self.queries.push(query);
        id
    }

    pub fn lookup(&self, query: &CompanyQuery) -> Option<u32> {
        self.index.get(&query.key()).copied()
    }

    pub fn queries(&self) -> &[CompanyQuery] {
        &self.queries
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
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
        assert_eq!(table.queries()[0].name, "Contoso Ltd");
        assert_eq!(table.lookup(&query("contoso ltd")), Some(0));
    }
}
