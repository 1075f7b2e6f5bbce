//! Builds the long-lived clients once per container (cold start), from the configuration.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::cache::{AnswerCache, DynamoCacheTable};
use crate::config::Config;
use crate::leadspace::LeadspaceClient;
use crate::leadspace::retry::RetryPolicy;
use crate::pipeline::{App, StepFunctions};
use crate::secrets::SecretsManagerTokens;
use crate::storage::S3Store;

const S3_ATTEMPTS: u32 = 5;

/// Builds the app from the standard AWS SDK environment (region, credentials, endpoint).
pub async fn build_app(config: Config) -> Result<App, lambda_runtime::Error> {
    let sdk_config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    build_app_with(config, &sdk_config)
}

/// Builds the app from an explicit SDK configuration (tests point it at a local moto).
pub fn build_app_with(config: Config, sdk_config: &SdkConfig) -> Result<App, lambda_runtime::Error> {
    // S3 answers 503 SlowDown when a prefix is busy: five attempts with the SDK's jittered
    // backoff ride out a burst that the default three may not.
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk_config)
        .force_path_style(config.s3_force_path_style)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(S3_ATTEMPTS));
    if sdk_config.endpoint_url().is_some() {
        // S3-compatible endpoints (moto, MinIO...) often reject the SDK's default checksums.
        s3 = s3
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    }
    let store = Arc::new(S3Store::new(aws_sdk_s3::Client::from_conf(s3.build())));
    let secrets = aws_sdk_secretsmanager::Client::new(sdk_config);
    let tokens = Arc::new(SecretsManagerTokens::new(secrets, config.secret_id.clone()));
    let policy = RetryPolicy { poll_timeout: config.poll_timeout, ..RetryPolicy::default() };
    let enricher = Arc::new(LeadspaceClient::new(
        &config.base_url,
        tokens.clone(),
        config.leadspace_tps,
        config.count_polls,
        policy.clone(),
    )?);
    // A large file's batches run in parallel containers: each gets its share of the TPS.
    let batch_enricher = Arc::new(LeadspaceClient::new(
        &config.base_url,
        tokens,
        config.workflow_batch_tps(),
        config.count_polls,
        policy,
    )?);
    let step_functions = config.workflow.as_ref().map(|workflow| StepFunctions {
        client: aws_sdk_sfn::Client::new(sdk_config),
        state_machine_arn: workflow.state_machine_arn.clone(),
    });
    let cache = config.cache.as_ref().map(|cache| {
        let table = DynamoCacheTable::new(aws_sdk_dynamodb::Client::new(sdk_config), cache.table.clone());
        AnswerCache::new(Arc::new(table), cache.ttl, &config.base_url)
    });
    Ok(App { config, store, enricher, batch_enricher, cache, step_functions })
}
