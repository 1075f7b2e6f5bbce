//! Where one source object's results and working state go.
//!
//! Results are the user's: `OUTPUT_PREFIX` + the key below `INPUT_PREFIX` (the output), then
//! `.summary.json` beside it. Working state is the function's, under one state prefix,
//! `OUTPUT_PREFIX` + `_state/`, so that the output prefix lists only what users read:
//! - `_state/leases/<name>.lease`: which invocation is enriching the object now;
//! - `_state/journal/<name>/<version>/`: the answer journal of one version of the object (read
//!   with one field mapping, from one Leadspace), deleted when that version is complete;
//! - `_state/answers/<name>.jsonl.gz`: the answers behind the latest output, each with when it
//!   was bought, which the object's next version reuses while they are young enough;
//! - `_state/work/<execution>/`: a large file's staged companies and batch figures.

use crate::config::Config;

/// What a summary's key adds to its output's key.
pub const SUMMARY_SUFFIX: &str = ".summary.json";
/// What the HTML report's key adds to its output's key.
pub const REPORT_SUFFIX: &str = ".report.html";

/// The folder under OUTPUT_PREFIX that holds working state, never results.
pub const STATE_DIR: &str = "_state/";

/// S3's limit on a key, in bytes of UTF-8.
const MAX_KEY_BYTES: usize = 1024;
/// The most any key adds to the output's name below OUTPUT_PREFIX: a journal entry of a
/// workflow batch, `_state/journal/` + name + `/<version>/b<first>/a-<entry>.jsonl` (69 bytes).
const LONGEST_ADDITION: usize = 72;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPaths {
    pub bucket: String,
    pub output_key: String,
    pub summary_key: String,
    /// `OUTPUT_PREFIX` + `_state/`.
    state: String,
    /// The output's key below OUTPUT_PREFIX.
    name: String,
}

impl OutputPaths {
    pub fn for_object(config: &Config, bucket: &str, key: &str) -> Self {
        let relative = key.strip_prefix(config.input_prefix.as_str()).unwrap_or(key);
        let prefix = &config.output_prefix;
        let name = if prefix.len() + relative.len() + LONGEST_ADDITION > MAX_KEY_BYTES {
            shortened_name(prefix, relative)
        } else {
            relative.to_string()
        };
        let output_key = format!("{prefix}{name}");
        OutputPaths {
            bucket: config.output_bucket_for(bucket).to_string(),
            summary_key: format!("{output_key}{SUMMARY_SUFFIX}"),
            output_key,
            state: state_prefix(config),
            name,
        }
    }

    pub fn lease_key(&self) -> String {
        format!("{}leases/{}.lease", self.state, self.name)
    }

    /// The answer journal of one version of the object (see `version_id`).
    pub fn journal_prefix(&self, version: &str) -> String {
        format!("{}journal/{}/{version}/", self.state, self.name)
    }

    /// Every journal of the object, whatever the version.
    pub fn journals_prefix(&self) -> String {
        format!("{}journal/{}/", self.state, self.name)
    }

    /// Where a forced job records, once it has cleared the journal of the object's version
    /// `etag`, that its request's force is spent: Lambda's retry of that request finds it and
    /// collects what the first attempt bought instead of clearing it. Expired with the journals.
    pub fn force_spent_key(&self, etag: &str, request_id: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new().chain_update(etag).chain_update([0]).chain_update(request_id).finalize();
        let digest: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}journal/{}/forced-{digest}", self.state, self.name)
    }

    /// The answers behind the latest output, kept for the object's next version.
    pub fn kept_answers_key(&self) -> String {
        format!("{}answers/{}.jsonl.gz", self.state, self.name)
    }
}

/// Why an object is not for this function, if it is not.
pub fn ignore_reason(config: &Config, bucket: &str, key: &str) -> Option<&'static str> {
    let output_bucket = config.output_bucket_for(bucket);
    let in_output =
        key.starts_with(config.output_prefix.as_str()) && (bucket == output_bucket || !config.output_prefix.is_empty());
    if in_output {
        Some("the object is under OUTPUT_PREFIX: results are never enriched again")
    } else if !key.starts_with(config.input_prefix.as_str()) {
        Some("the object is not under INPUT_PREFIX")
    } else if key[config.input_prefix.len()..].starts_with(STATE_DIR) {
        Some(
            "the folder _state/ below INPUT_PREFIX is reserved: its results would land among the function's working state",
        )
    } else if key.ends_with('/') {
        Some("the key is a folder marker, not a file")
    } else {
        None
    }
}

/// `OUTPUT_PREFIX` + `_state/`.
pub fn state_prefix(config: &Config) -> String {
    format!("{}{STATE_DIR}", config.output_prefix)
}

/// Where one workflow execution keeps its files; deleted by its last step and expired by the
/// bucket's lifecycle rule.
pub fn work_prefix(config: &Config, run: &str) -> String {
    format!("{}work/{run}/", state_prefix(config))
}

/// A name for an input key too long to take our additions within S3's 1024 bytes: as much of
/// the name as fits, a digest of the whole name (so that two long names never share an
/// output, and every run finds the same one), and the extension, so that the format shows.
fn shortened_name(output_prefix: &str, relative: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(relative.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name_start = relative.rfind('/').map_or(0, |i| i + 1);
    let extension_start =
        relative[name_start..].find('.').map(|i| name_start + i).filter(|&i| relative.len() - i <= 16);
    let (stem, extension) = relative.split_at(extension_start.unwrap_or(relative.len()));
    let budget =
        MAX_KEY_BYTES.saturating_sub(LONGEST_ADDITION + output_prefix.len() + 1 + digest.len() + extension.len());
    let mut cut = budget.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{digest}{extension}", &stem[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|name| (name == "LEADSPACE_SECRET_ID").then(|| "s".to_string())).unwrap()
    }

    #[test]
    fn keys_too_long_for_our_additions_are_shortened_keeping_extension_and_identity() {
        let config = config();
        let long = |c: &str| format!("incoming/{}é/{}.csv.gz", "d".repeat(300), c.repeat(1024 - 9 - 302 - 7 - 1));
        let (a, b) = (long("a"), long("b"));
        assert_eq!(a.len(), MAX_KEY_BYTES);
        let (pa, pb) = (OutputPaths::for_object(&config, "b", &a), OutputPaths::for_object(&config, "b", &b));
        for paths in [&pa, &pb] {
            let longest = format!("{}b0000000000/a-0123456789abcdef.jsonl", paths.journal_prefix("0123456789abcdef"));
            for key in [&longest, &paths.lease_key(), &paths.kept_answers_key(), &paths.summary_key] {
                assert!(key.len() <= MAX_KEY_BYTES, "{} bytes: {key}", key.len());
            }
            assert!(paths.output_key.starts_with("enriched/ddd") && paths.output_key.ends_with(".csv.gz"));
        }
        assert_ne!(pa.output_key, pb.output_key);
        assert_eq!(pa, OutputPaths::for_object(&config, "b", &a));
        let short = OutputPaths::for_object(&config, "b", "incoming/x/y.csv");
        assert_eq!(short.output_key, "enriched/x/y.csv");
    }

    #[test]
    fn working_state_lives_under_one_state_prefix_apart_from_the_results() {
        let paths = OutputPaths::for_object(&config(), "b", "incoming/x/y.csv");
        assert_eq!(paths.lease_key(), "enriched/_state/leases/x/y.csv.lease");
        assert_eq!(paths.journal_prefix("v1"), "enriched/_state/journal/x/y.csv/v1/");
        assert_eq!(paths.kept_answers_key(), "enriched/_state/answers/x/y.csv.jsonl.gz");
        assert_eq!(work_prefix(&config(), "run-1"), "enriched/_state/work/run-1/");
    }
}
