//! Integration tests: the handler end to end against a real moto server (S3 and Secrets
//! Manager, over HTTP with the real SDK clients) and the Leadspace emulator on loopback.

#[path = "../support/forward.rs"]
mod forward;
mod harness;

mod billing;
mod cache;
mod csv_files;
mod guards;
mod hostile;
mod invocations;
mod json_lines;
mod lambda_process;
mod report;
mod resilience;
mod s3_faults;
mod template;
mod workflow;
