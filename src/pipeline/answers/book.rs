//! What is known about each company of a run before anything is bought: its answer, when it
//! was bought, and where it came from (this version's journal, the previous version, the cache,
//! or this run), for the summary's `reused` figures.

use crate::enrichment::Enrichment;
use crate::pipeline::summary::{Reused, utc_from_seconds};

/// Where a known answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Bought by this run (the workflow's last step reads its own batches' answers).
    Fresh,
    /// Bought by an earlier run of this version.
    Journal,
    /// Kept from the file's previous version.
    PreviousVersion,
    Cache,
}

/// What is known about each company before anything is bought, and since when. A file's answers
/// are held here once: the enrichment borrows these slots (`lend_slots`) rather than filling a
/// second vector of its own.
pub struct AnswerBook {
    /// One per company; `not_attempted` (which holds no memory) where none is known.
    answers: Vec<Enrichment>,
    known: Vec<bool>,
    /// When each known answer was bought (seconds since the epoch).
    bought_at: Vec<i64>,
    reused_journal: u64,
    /// The companies answered from the previous version's kept answers.
    previous: Vec<usize>,
    oldest_reused: Option<i64>,
    /// Why earlier answers were not used, when some exist but belong to another mapping.
    ignored: Option<&'static str>,
}

impl AnswerBook {
    pub fn new(companies: usize) -> Self {
        AnswerBook {
            answers: Enrichment::unanswered(companies),
            known: vec![false; companies],
            bought_at: vec![0; companies],
            reused_journal: 0,
            previous: Vec::new(),
            oldest_reused: None,
            ignored: None,
        }
    }

    /// Takes `answer` for `company` unless one is known already; `true` when taken.
    pub fn offer(&mut self, company: usize, answer: Enrichment, bought_at: i64, origin: Origin) -> bool {
        if self.known.get(company).is_none_or(|&known| known) {
            return false;
        }
        self.answers[company] = answer;
        self.known[company] = true;
        self.bought_at[company] = bought_at;
        match origin {
            Origin::Journal => self.reused_journal += 1,
            Origin::PreviousVersion => self.previous.push(company),
            Origin::Fresh | Origin::Cache => return true,
        }
        self.oldest_reused = Some(self.oldest_reused.map_or(bought_at, |oldest| oldest.min(bought_at)));
        true
    }

    /// The answer slots, for the enrichment to write the companies it is asked for into; until
    /// `take_back_slots`, the book has none.
    pub fn lend_slots(&mut self) -> Vec<Enrichment> {
        std::mem::take(&mut self.answers)
    }

    /// The slots back from the enrichment, with the answers it bought at `bought_at` for the
    /// companies in `fresh` (none of which was known).
    pub fn take_back_slots(&mut self, slots: Vec<Enrichment>, fresh: &[usize], bought_at: i64) {
        debug_assert_eq!(slots.len(), self.known.len(), "the slots this book lent");
        self.answers = slots;
        for &company in fresh {
            if let Some(known) = self.known.get_mut(company) {
                *known = true;
                self.bought_at[company] = bought_at;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn known(&self) -> usize {
        self.known.iter().filter(|&&known| known).count()
    }

    pub fn is_known(&self, company: usize) -> bool {
        self.known.get(company).is_some_and(|&known| known)
    }

    pub fn answer(&self, company: usize) -> Option<(&Enrichment, i64)> {
        self.is_known(company).then(|| (&self.answers[company], self.bought_at[company]))
    }

    pub fn note_ignored(&mut self, why: &'static str) {
        self.ignored = Some(why);
    }

    /// The companies answered from the previous version's kept answers.
    pub fn previous_version_companies(&self) -> &[usize] {
        &self.previous
    }

    /// The companies still without an answer, in order.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.known.len()).filter(|&i| !self.known[i]).collect()
    }

    pub fn reused(&self) -> Reused {
        Reused {
            journal: self.reused_journal,
            previous_version: self.previous.len() as u64,
            oldest_bought_at: self.oldest_reused.map(utc_from_seconds),
            ignored: self.ignored.map(str::to_string),
        }
    }

    /// Every company's answer (`not_attempted` where none is known) and when it was bought.
    pub fn finish(self) -> (Vec<Enrichment>, Vec<i64>) {
        (self.answers, self.bought_at)
    }
}
