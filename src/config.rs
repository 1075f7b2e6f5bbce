//! Every environment variable, parsed and validated once at cold start. A wrong value fails the
//! cold start with a message naming the variable, rather than failing each invocation later.

use std::fmt;
use std::time::Duration;

use crate::leadspace::Mode;
use crate::leadspace::model::Confidence;
use crate::mapping::FieldMapping;

pub const DEFAULT_BASE_URL: &str = "https://apigw.leadspace.com";
/// The fewest bulk jobs or single requests outstanding at once by default; the default is
/// LEADSPACE_TPS within [16, 100].
pub const MIN_DEFAULT_IN_FLIGHT: usize = 16;
/// The most in flight by default, whatever LEADSPACE_TPS says.
const MAX_DEFAULT_IN_FLIGHT: u64 = 100;
/// Leadspace takes at most this many records in one bulk job (BATCH_SIZE).
pub const MAX_BULK_SIZE: usize = 500;
/// Objects above this size get a failed summary instead of a run that cannot finish.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Rows above this count get a failed summary: the company table grows with unique companies.
pub const DEFAULT_MAX_INPUT_ROWS: u64 = 5_000_000;
/// A new version of a file reuses answers bought for its previous version within this many days.
pub const DEFAULT_ANSWER_MAX_AGE_DAYS: u64 = 30;

/// Above either, a file goes to the Step Functions workflow (when STATE_MACHINE_ARN is set): about
/// what one 15-minute invocation enriches when Leadspace takes minutes per bulk.
pub const DEFAULT_LARGE_FILE_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_LARGE_FILE_ROWS: u64 = 250_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub secret_id: String,
    pub base_url: String,
    pub data_sharing_consent: bool,
    pub input_prefix: String,
    pub output_bucket: Option<String>,
    pub output_prefix: String,
    pub field_mapping: Option<FieldMapping>,
    pub mode: Mode,
    pub bulk_size: usize,
    pub leadspace_tps: u32,
    /// Whether bulk polls take a place in LEADSPACE_TPS (LEADSPACE_COUNT_POLLS, default true).
    pub count_polls: bool,
    pub max_in_flight: usize,
    pub min_confidence: Confidence,
    pub enrichment_name: String,
    pub source_bucket: Option<String>,
    pub s3_force_path_style: bool,
    /// Stop starting Leadspace work this long before the Lambda deadline (capped at a fifth of
    /// the time an invocation has), to write the output and summary in time.
    pub deadline_margin: Duration,
    /// How often a run renews its lease; a lease not renewed for three intervals belongs to a
    /// run that died and is taken over.
    pub lease_heartbeat: Duration,
    /// A bulk still processing after this long is resubmitted once, then given up.
    pub poll_timeout: Duration,
    /// The largest object enriched (bytes as stored, so compressed for `.gz`).
    pub max_input_bytes: u64,
    /// The most data rows enriched from one object.
    pub max_input_rows: u64,
    /// A new version of a file reuses the previous version's answers younger than this many
    /// days (ANSWER_MAX_AGE_DAYS); 0 re-buys everything.
    pub answer_max_age_days: u64,
    /// The cross-run answer cache; `None` (ENRICHMENT_CACHE_TTL_DAYS unset) turns it off.
    pub cache: Option<CacheConfig>,
    /// The Step Functions workflow large files are handed to; `None` enriches every file inline.
    pub workflow: Option<WorkflowConfig>,
    /// The function's reserved concurrency, when the deployment sets one.
    pub max_concurrent_invocations: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowConfig {
    pub state_machine_arn: String,
    /// Files larger than this (bytes as stored) or with more data rows than `min_rows` go to
    /// the workflow.
    pub min_bytes: u64,
    pub min_rows: u64,
}

/// Batches of the workflow at once: one per this many LEADSPACE_TPS, so each batch still has a
/// few requests per second for its bulks and polls.
const TPS_PER_WORKFLOW_BATCH: u32 = 5;
/// Step Functions runs at most this many child workflows of a Distributed Map at once by
/// default; far above what a Leadspace contract can feed.
const MAX_WORKFLOW_CONCURRENCY: u32 = 100;

impl Config {
    /// How many batches of a large file run at once (the Distributed Map's MaxConcurrency):
    /// never more than the function's reserved concurrency, or Lambda would throttle them.
    pub fn workflow_concurrency(&self) -> u32 {
        let by_tps = (self.leadspace_tps / TPS_PER_WORKFLOW_BATCH).clamp(1, MAX_WORKFLOW_CONCURRENCY);
        self.max_concurrent_invocations.map_or(by_tps, |limit| by_tps.min(limit))
    }

    /// Each batch's share of LEADSPACE_TPS, so that all batches together stay within it.
    pub fn workflow_batch_tps(&self) -> u32 {
        (self.leadspace_tps / self.workflow_concurrency()).max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// DynamoDB table name or ARN.
    pub table: String,
    pub ttl: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration variable {}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses configuration from any lookup, so tests need not mutate the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let secret_id = get("LEADSPACE_SECRET_ID").ok_or_else(|| {
            invalid(
                "LEADSPACE_SECRET_ID",
                "is required: set it to the Secrets Manager id or ARN holding the Leadspace token",
            )
        })?;
        let base_url =
            get("LEADSPACE_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()).trim_end_matches('/').to_string();
        let allow_http = match get("LEADSPACE_ALLOW_HTTP") {
            None => false,
            Some(v) => parse_bool("LEADSPACE_ALLOW_HTTP", &v)?,
        };
        if !(base_url.starts_with("https://") || (allow_http && base_url.starts_with("http://"))) {
            let why = if base_url.starts_with("http://") {
                format!(
                    "{base_url:?} is plain HTTP, which would carry the token in clear; use https://, or set \
                     LEADSPACE_ALLOW_HTTP=true for a local emulator"
                )
            } else {
                format!("{base_url:?} is not an https:// URL")
            };
            return Err(invalid("LEADSPACE_BASE_URL", why));
        }
        let data_sharing_consent = match get("DATA_SHARING_CONSENT") {
            None => false,
            Some(v) => parse_bool("DATA_SHARING_CONSENT", &v)?,
        };
        let input_prefix = normalise_prefix(get("INPUT_PREFIX").unwrap_or_else(|| "incoming/".into()));
        let output_prefix = normalise_prefix(get("OUTPUT_PREFIX").unwrap_or_else(|| "enriched/".into()));
        let output_bucket = get("OUTPUT_BUCKET");
        let source_bucket = get("SOURCE_BUCKET");

        let field_mapping = match get("FIELD_MAPPING") {
            None => None,
            Some(json) => Some(FieldMapping::from_json(&json).map_err(|e| invalid("FIELD_MAPPING", e.to_string()))?),
        };
        let mode = match get("LEADSPACE_MODE").map(|m| m.to_ascii_lowercase()) {
            None => Mode::Auto,
            Some(m) if m == "auto" => Mode::Auto,
            Some(m) if m == "single" => Mode::Single,
            Some(m) if m == "bulk" => Mode::Bulk,
            Some(m) => return Err(invalid("LEADSPACE_MODE", format!("{m:?} is not one of single, bulk, auto"))),
        };
        let bulk_size = parse_number("BATCH_SIZE", get("BATCH_SIZE"), 500, 1, MAX_BULK_SIZE as u64)? as usize;
        let leadspace_tps = parse_number("LEADSPACE_TPS", get("LEADSPACE_TPS"), 25, 1, 10_000)? as u32;
        // Whether Leadspace counts bulk polls against the contract is not documented: counted
        // unless the user knows their contract does not.
        let count_polls = match get("LEADSPACE_COUNT_POLLS") {
            None => true,
            Some(v) => parse_bool("LEADSPACE_COUNT_POLLS", &v)?,
        };
        // A bulk takes about two requests and a second or so: keeping LEADSPACE_TPS of them in
        // flight keeps the contract busy (twice that when only its submission counts). Capped
        // so that the backlog (100 x 500 = 50,000 leads) stays below Leadspace's 100,000-lead
        // ceiling.
        let bulks_per_tps = if count_polls { 1 } else { 2 };
        let default_in_flight =
            (u64::from(leadspace_tps) * bulks_per_tps).clamp(MIN_DEFAULT_IN_FLIGHT as u64, MAX_DEFAULT_IN_FLIGHT);
        let max_in_flight = parse_number("MAX_IN_FLIGHT", get("MAX_IN_FLIGHT"), default_in_flight, 1, 1_000)? as usize;
        let min_confidence = match get("MIN_CONFIDENCE") {
            None => Confidence::Low,
            Some(v) => Confidence::parse(&v)
                .ok_or_else(|| invalid("MIN_CONFIDENCE", format!("{v:?} is not one of HIGH, MEDIUM, LOW, VERY LOW")))?,
        };
        let enrichment_name = get("ENRICHMENT_NAME").unwrap_or_else(|| "leadspace".into());
        let s3_force_path_style = match get("S3_FORCE_PATH_STYLE") {
            None => false,
            Some(v) => parse_bool("S3_FORCE_PATH_STYLE", &v)?,
        };

        let deadline_margin =
            Duration::from_secs(parse_number("DEADLINE_MARGIN_SECONDS", get("DEADLINE_MARGIN_SECONDS"), 60, 0, 900)?);
        let lease_heartbeat =
            Duration::from_secs(parse_number("LEASE_HEARTBEAT_SECONDS", get("LEASE_HEARTBEAT_SECONDS"), 30, 1, 300)?);
        let poll_timeout = Duration::from_secs(parse_number(
            "LEADSPACE_POLL_TIMEOUT_SECONDS",
            get("LEADSPACE_POLL_TIMEOUT_SECONDS"),
            900,
            1,
            86_400,
        )?);

        let max_input_bytes =
            parse_number("MAX_INPUT_BYTES", get("MAX_INPUT_BYTES"), DEFAULT_MAX_INPUT_BYTES, 1, 5 * 1024_u64.pow(4))?;
        let max_input_rows =
            parse_number("MAX_INPUT_ROWS", get("MAX_INPUT_ROWS"), DEFAULT_MAX_INPUT_ROWS, 1, 1_000_000_000)?;

        let answer_max_age_days =
            parse_number("ANSWER_MAX_AGE_DAYS", get("ANSWER_MAX_AGE_DAYS"), DEFAULT_ANSWER_MAX_AGE_DAYS, 0, 3_650)?;

        let cache = match get("ENRICHMENT_CACHE_TTL_DAYS") {
            None => None,
            Some(days) => {
                let days = parse_number("ENRICHMENT_CACHE_TTL_DAYS", Some(days), 0, 1, 3_650)?;
                let table = get("ENRICHMENT_CACHE_TABLE").ok_or_else(|| {
                    invalid(
                        "ENRICHMENT_CACHE_TABLE",
                        "is required when ENRICHMENT_CACHE_TTL_DAYS is set: name the DynamoDB table that keeps \
                         answers (partition key company_key, a string), or unset ENRICHMENT_CACHE_TTL_DAYS to turn \
                         the cache off",
                    )
                })?;
                Some(CacheConfig { table, ttl: Duration::from_secs(days * 86_400) })
            }
        };

        let workflow = match get("STATE_MACHINE_ARN") {
            None => None,
            Some(arn) if arn.starts_with("arn:") && arn.contains(":states:") && arn.contains(":stateMachine:") => {
                Some(WorkflowConfig {
                    state_machine_arn: arn,
                    min_bytes: parse_number(
                        "LARGE_FILE_BYTES",
                        get("LARGE_FILE_BYTES"),
                        DEFAULT_LARGE_FILE_BYTES,
                        1,
                        u64::MAX,
                    )?,
                    min_rows: parse_number(
                        "LARGE_FILE_ROWS",
                        get("LARGE_FILE_ROWS"),
                        DEFAULT_LARGE_FILE_ROWS,
                        1,
                        u64::MAX,
                    )?,
                })
            }
            Some(arn) => {
                return Err(invalid(
                    "STATE_MACHINE_ARN",
                    format!(
                        "{arn:?} is not a Step Functions state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)"
                    ),
                ));
            }
        };

        let max_concurrent_invocations = match get("MAX_CONCURRENT_INVOCATIONS") {
            None => None,
            some => Some(parse_number("MAX_CONCURRENT_INVOCATIONS", some, 1, 1, 10_000)? as u32),
        };

        let config = Config {
            secret_id,
            base_url,
            data_sharing_consent,
            input_prefix,
            output_bucket,
            output_prefix,
            field_mapping,
            mode,
            bulk_size,
            leadspace_tps,
            max_in_flight,
            count_polls,
            min_confidence,
            enrichment_name,
            source_bucket,
            s3_force_path_style,
            deadline_margin,
            lease_heartbeat,
            poll_timeout,
            max_input_bytes,
            max_input_rows,
            answer_max_age_days,
            cache,
            workflow,
            max_concurrent_invocations,
        };
        config.refuse_overlapping_prefixes()?;
        Ok(config)
    }

    /// Writing results where inputs are picked up would trigger the function on its own output,
    /// forever. When output may land in the input bucket, the prefixes must be disjoint.
    fn refuse_overlapping_prefixes(&self) -> Result<(), ConfigError> {
        let may_share_bucket = match (&self.output_bucket, &self.source_bucket) {
            (None, _) => true,
            (Some(output), Some(source)) => output == source,
            // Direct invocations may name any bucket; the per-object guard covers those.
            (Some(_), None) => false,
        };
        let overlap =
            self.input_prefix.starts_with(&self.output_prefix) || self.output_prefix.starts_with(&self.input_prefix);
        if may_share_bucket && overlap {
            return Err(invalid(
                "OUTPUT_PREFIX",
                format!(
                    "{:?} overlaps INPUT_PREFIX {:?} in the same bucket, so results would be enriched again; \
                     use disjoint prefixes or set OUTPUT_BUCKET to another bucket",
                    self.output_prefix, self.input_prefix
                ),
            ));
        }
        Ok(())
    }

    /// How old an answer bought for a file's previous version may be and still be reused;
    /// `None` when ANSWER_MAX_AGE_DAYS is 0.
    pub fn answer_max_age_seconds(&self) -> Option<i64> {
        (self.answer_max_age_days > 0).then(|| (self.answer_max_age_days * 86_400) as i64)
    }

    /// Why the function refuses to act on `bucket`, if it does: with SOURCE_BUCKET set, only it
    /// and OUTPUT_BUCKET are the function's. IAM grants the same two; this is the check a caller
    /// with lambda:InvokeFunction meets first, whatever the role may reach. Without
    /// SOURCE_BUCKET (a local run), any bucket is acted on.
    pub fn foreign_bucket(&self, bucket: &str) -> Option<String> {
        let source = self.source_bucket.as_deref()?;
        let output = self.output_bucket.as_deref();
        if bucket == source || output == Some(bucket) {
            return None;
        }
        let allowed = match output {
            Some(output) if output != source => format!("{source:?} (SOURCE_BUCKET) and {output:?} (OUTPUT_BUCKET)"),
            _ => format!("{source:?} (SOURCE_BUCKET)"),
        };
        Some(format!("the bucket {bucket:?} is not this function's: it acts only on {allowed}"))
    }

    /// The bucket results go to for an object found in `source_bucket`.
    pub fn output_bucket_for<'a>(&'a self, source_bucket: &'a str) -> &'a str {
        self.output_bucket.as_deref().unwrap_or(source_bucket)
    }
}

/// `incoming` and `incoming/` mean the same folder to a user; only the empty prefix stays empty.
fn normalise_prefix(prefix: String) -> String {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.ends_with('/') { trimmed.to_string() } else { format!("{trimmed}/") }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(variable, format!("{value:?} is not true or false"))),
    }
}

fn parse_number(
    variable: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else { return Ok(default) };
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(variable, format!("{value:?} is not a whole number from {min} to {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn the_token_travels_over_https_unless_plain_http_is_allowed_for_an_emulator() {
        let plain = [("LEADSPACE_SECRET_ID", "s"), ("LEADSPACE_BASE_URL", "http://127.0.0.1:9000")];
        let refused = config(&plain).unwrap_err();
        assert_eq!(refused.variable, "LEADSPACE_BASE_URL");
        assert!(refused.problem.contains("LEADSPACE_ALLOW_HTTP=true"), "{}", refused.problem);
        let allowed = config(&[plain[0], plain[1], ("LEADSPACE_ALLOW_HTTP", "true")]).unwrap();
        assert_eq!(allowed.base_url, "http://127.0.0.1:9000");
        assert!(config(&[plain[0], ("LEADSPACE_BASE_URL", "ftp://x")]).is_err());
    }

    #[test]
    fn defaults_follow_the_interface() {
        let c = config(&[("LEADSPACE_SECRET_ID", "ls")]).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert!(!c.data_sharing_consent);
        assert_eq!(c.input_prefix, "incoming/");
        assert_eq!(c.output_prefix, "enriched/");
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.bulk_size, 500);
        assert_eq!(c.leadspace_tps, 25);
        assert!(c.count_polls);
        assert_eq!(c.max_in_flight, 25);
        assert_eq!(c.min_confidence, Confidence::Low);
        assert_eq!(c.enrichment_name, "leadspace");
        assert!(!c.s3_force_path_style);
    }

    #[test]
    fn polls_left_out_of_the_contract_leave_room_for_twice_the_bulks_in_flight() {
        let c = config(&[("LEADSPACE_SECRET_ID", "ls"), ("LEADSPACE_COUNT_POLLS", "false"), ("LEADSPACE_TPS", "30")]);
        let c = c.unwrap();
        assert!(!c.count_polls);
        assert_eq!(c.max_in_flight, 60);
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("LEADSPACE_COUNT_POLLS", "sometimes")]).unwrap_err();
        assert_eq!(err.variable, "LEADSPACE_COUNT_POLLS");
    }

    #[test]
    fn the_cache_is_off_unless_its_ttl_is_set_and_then_needs_its_table() {
        assert_eq!(config(&[("LEADSPACE_SECRET_ID", "ls"), ("ENRICHMENT_CACHE_TABLE", "t")]).unwrap().cache, None);
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("ENRICHMENT_CACHE_TTL_DAYS", "30")]).unwrap_err();
        assert_eq!(err.variable, "ENRICHMENT_CACHE_TABLE");
        let err = config(&[
            ("LEADSPACE_SECRET_ID", "ls"),
            ("ENRICHMENT_CACHE_TTL_DAYS", "0"),
            ("ENRICHMENT_CACHE_TABLE", "t"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "ENRICHMENT_CACHE_TTL_DAYS");
        let on = config(&[
            ("LEADSPACE_SECRET_ID", "ls"),
            ("ENRICHMENT_CACHE_TTL_DAYS", "30"),
            ("ENRICHMENT_CACHE_TABLE", "t"),
        ]);
        assert_eq!(on.unwrap().cache, Some(CacheConfig { table: "t".into(), ttl: Duration::from_secs(30 * 86_400) }));
    }

    #[test]
    fn the_workflow_splits_leadspace_tps_between_its_batches() {
        let c = config(&[("LEADSPACE_SECRET_ID", "ls")]).unwrap();
        assert_eq!(c.workflow, None);
        assert_eq!((c.workflow_concurrency(), c.workflow_batch_tps()), (5, 5));
        let slow = config(&[("LEADSPACE_SECRET_ID", "ls"), ("LEADSPACE_TPS", "3")]).unwrap();
        assert_eq!((slow.workflow_concurrency(), slow.workflow_batch_tps()), (1, 3));
        let reserved = config(&[("LEADSPACE_SECRET_ID", "ls"), ("MAX_CONCURRENT_INVOCATIONS", "2")]).unwrap();
        assert_eq!((reserved.workflow_concurrency(), reserved.workflow_batch_tps()), (2, 12));
        let odd = config(&[("LEADSPACE_SECRET_ID", "ls"), ("LEADSPACE_TPS", "27")]).unwrap();
        assert!(odd.workflow_concurrency() * odd.workflow_batch_tps() <= 27);
        let arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:large-files";
        let on =
            config(&[("LEADSPACE_SECRET_ID", "ls"), ("STATE_MACHINE_ARN", arn), ("LARGE_FILE_ROWS", "10")]).unwrap();
        let workflow = on.workflow.unwrap();
        assert_eq!((workflow.min_rows, workflow.min_bytes), (10, DEFAULT_LARGE_FILE_BYTES));
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("STATE_MACHINE_ARN", "large-files")]).unwrap_err();
        assert_eq!(err.variable, "STATE_MACHINE_ARN");
    }

    #[test]
    fn missing_secret_id_names_the_variable() {
        let err = config(&[]).unwrap_err();
        assert_eq!(err.variable, "LEADSPACE_SECRET_ID");
    }

    #[test]
    fn batch_size_above_the_bulk_limit_is_refused() {
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("BATCH_SIZE", "501")]).unwrap_err();
        assert_eq!(err.variable, "BATCH_SIZE");
        assert!(err.to_string().contains("1 to 500"), "{err}");
    }

    #[test]
    fn field_mapping_that_is_not_json_fails_naming_the_variable() {
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("FIELD_MAPPING", "{company_name:")]).unwrap_err();
        assert_eq!(err.variable, "FIELD_MAPPING");
    }

    #[test]
    fn overlapping_prefixes_in_one_bucket_are_refused() {
        let err = config(&[("LEADSPACE_SECRET_ID", "ls"), ("INPUT_PREFIX", "data/"), ("OUTPUT_PREFIX", "data/out/")])
            .unwrap_err();
        assert_eq!(err.variable, "OUTPUT_PREFIX");
        assert!(
            config(&[
                ("LEADSPACE_SECRET_ID", "ls"),
                ("INPUT_PREFIX", "data/"),
                ("OUTPUT_PREFIX", "data/out/"),
                ("OUTPUT_BUCKET", "results"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn prefixes_gain_a_trailing_slash() {
        let c = config(&[("LEADSPACE_SECRET_ID", "ls"), ("INPUT_PREFIX", "in"), ("OUTPUT_PREFIX", "out")]).unwrap();
        assert_eq!((c.input_prefix.as_str(), c.output_prefix.as_str()), ("in/", "out/"));
    }
}
