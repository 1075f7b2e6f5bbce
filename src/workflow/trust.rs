//! What a workflow payload must prove before the function acts on it. A batch or last-step
//! payload names buckets, prefixes, keys and an execution, and anyone with
//! lambda:InvokeFunction can write one by hand: one that named the output prefix as its
//! journal would have the last step list, read and clear other files' results. So every prefix
//! and key is recomputed from the file (bucket, key, ETag), the execution's name and this
//! function's configuration, and the execution must exist, be running, and have been started
//! with that very input.

use super::hand_off::{execution_arn, execution_base_name};
use super::input::{BatchInput, ExecutionInput};
use crate::error::JobError;
use crate::mapping::FieldMapping;
use crate::pipeline::App;
use crate::pipeline::answers::journal::version_id;
use crate::pipeline::paths::{OutputPaths, work_prefix};

fn refused(why: String) -> JobError {
    JobError::Workflow { action: "accept a workflow payload", transient: false, source: why.into() }
}

/// The input the execution named `run` was started with, once it is known to be running.
async fn running_input(app: &App, run: &str) -> Result<ExecutionInput, JobError> {
    let Some(step_functions) = &app.step_functions else {
        return Err(refused(
            "STATE_MACHINE_ARN is not set: this function runs no large-file workflow, so it takes no workflow payload"
                .into(),
        ));
    };
    if run.is_empty() || run.len() > 80 || !run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(refused(format!("{run:?} is not the name of an execution of this function's workflow")));
    }
    let arn = execution_arn(&step_functions.state_machine_arn, run);
    let described = match step_functions.client.describe_execution().execution_arn(&arn).send().await {
        Ok(described) => described,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_execution_does_not_exist()) => {
            return Err(refused(format!("the execution {arn} does not exist")));
        }
        Err(error) => {
            let transient = !matches!(error, aws_sdk_sfn::error::SdkError::ServiceError(_));
            let why = aws_smithy_types::error::display::DisplayErrorContext(&error).to_string();
            return Err(JobError::Workflow { action: "describe an execution", transient, source: why.into() });
        }
    };
    if described.status != aws_sdk_sfn::types::ExecutionStatus::Running {
        return Err(refused(format!("the execution {arn} is not running ({})", described.status.as_str())));
    }
    let input = described.input.unwrap_or_default();
    serde_json::from_str(&input).map_err(|_| refused(format!("the execution {arn} was not started by this function")))
}

/// Every name in `input` as this function derives it for the file and execution it names.
fn check_derived(app: &App, input: &ExecutionInput) -> Result<(), JobError> {
    let config = &app.config;
    let base = execution_base_name(&input.bucket, &input.key, &input.etag);
    let attempt = input.run.strip_prefix(&base).and_then(|rest| rest.strip_prefix('-'));
    if !attempt.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Err(refused(format!("the execution {:?} is not one of this file version's", input.run)));
    }
    let mapping = FieldMapping::from_value(&input.field_mapping)
        .map_err(|e| refused(format!("the payload's field_mapping cannot be read: {e}")))?;
    let paths = OutputPaths::for_object(config, &input.bucket, &input.key);
    let work = work_prefix(config, &input.run);
    let expected = [
        ("work_bucket", paths.bucket.clone(), &input.work_bucket),
        ("companies_key", format!("{work}companies.jsonl"), &input.companies_key),
        ("answers_prefix", format!("{work}batches/"), &input.answers_prefix),
        (
            "journal_prefix",
            paths.journal_prefix(&version_id(&input.etag, &mapping, &config.base_url)),
            &input.journal_prefix,
        ),
    ];
    for (name, derived, given) in expected {
        if &derived != given {
            return Err(refused(format!("the payload's {name} is not this file's (expected {derived:?})")));
        }
    }
    Ok(())
}

/// A last-step payload: its names derived from its file, and the input its execution started with.
pub async fn check_assemble(app: &App, input: &ExecutionInput) -> Result<(), JobError> {
    check_derived(app, input)?;
    let started = running_input(app, &input.run).await?;
    // The Map's Catch adds `map_error`; everything else passes through unchanged.
    let given = ExecutionInput { map_error: None, ..input.clone() };
    if started != given {
        return Err(refused(format!(
            "the payload differs from the input the execution {} was started with",
            input.run
        )));
    }
    Ok(())
}

/// A batch payload: what its execution was started with, whose names are derived from its file.
pub async fn check_batch(app: &App, batch: &BatchInput) -> Result<(), JobError> {
    let started = running_input(app, &batch.run).await?;
    check_derived(app, &started)?;
    let given = [
        ("work_bucket", &batch.work_bucket, &started.work_bucket),
        ("answers_prefix", &batch.answers_prefix, &started.answers_prefix),
        ("journal_prefix", &batch.journal_prefix, &started.journal_prefix),
    ];
    for (name, batch_value, execution_value) in given {
        if batch_value != execution_value {
            return Err(refused(format!("the batch's {name} is not its execution's")));
        }
    }
    Ok(())
}
