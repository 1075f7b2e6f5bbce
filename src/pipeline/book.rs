//! What is known about each company of a run before anything is bought: its answer, when it
//! was bought, and where it came from (this version's journal, the previous version, the cache,
//! or this run), for the summary's `reused` figures.

use super::summary::{Reused, utc_from_seconds};
use crate::enrichment::{Enrichment, RowStatus};

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

/// What is known about each company before anything is bought, and since when.
pub struct AnswerBook {
    answers: Vec<Option<Enrichment>>,
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
            answers: vec![None; companies],
            bought_at: vec![0; companies],
            reused_journal: 0,
            previous: Vec::new(),
            oldest_reused: None,
            ignored: None,
        }
    }

    /// Takes `answer` for `company` unless one is known already; `true` when taken.
    pub fn offer(&mut self, company: usize, answer: Enrichment, bought_at: i64, origin: Origin) -> bool {
        let Some(slot) = self.answers.get_mut(company) else { return false };
        if slot.is_some() {
            return false;
        }
        *slot = Some(answer);
        self.bought_at[company] = bought_at;
        match origin {
            Origin::Journal => self.reused_journal += 1,
            Origin::PreviousVersion => self.previous.push(company),
            Origin::Fresh | Origin::Cache => return true,
        }
        self.oldest_reused = Some(self.oldest_reused.map_or(bought_at, |oldest| oldest.min(bought_at)));
        true
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    pub fn known(&self) -> usize {
        self.answers.iter().filter(|a| a.is_some()).count()
    }

    pub fn is_known(&self, company: usize) -> bool {
        self.answers.get(company).is_some_and(Option::is_some)
    }

    pub fn answer(&self, company: usize) -> Option<(&Enrichment, i64)> {
        self.answers.get(company)?.as_ref().map(|a| (a, self.bought_at[company]))
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
        (0..self.answers.len()).filter(|&i| self.answers[i].is_none()).collect()
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
        let not_attempted = Enrichment::without_attributes(RowStatus::NotAttempted, None);
        let answers = self.answers.into_iter().map(|a| a.unwrap_or_else(|| not_attempted.clone())).collect();
        (answers, self.bought_at)
    }
}
