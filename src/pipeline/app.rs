//! The long-lived parts a run uses, built once per container (see `bootstrap`).

use std::sync::Arc;

use crate::cache::AnswerCache;
use crate::config::Config;
use crate::leadspace::Enricher;
use crate::storage::ObjectStore;

/// Everything a job needs, built once per container.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn ObjectStore>,
    pub enricher: Arc<dyn Enricher>,
    /// The same Leadspace, paced at one workflow batch's share of LEADSPACE_TPS.
    pub batch_enricher: Arc<dyn Enricher>,
    /// The cross-run answer cache, when ENRICHMENT_CACHE_TTL_DAYS is set.
    pub cache: Option<AnswerCache>,
    /// Where large files go, when STATE_MACHINE_ARN is set.
    pub step_functions: Option<StepFunctions>,
}

/// The state machine that enriches large files, and the client that starts it.
pub struct StepFunctions {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}
