//! Integration tests: the handler end to end against a real moto server (S3 and Secrets
//! Manager, over HTTP with the real SDK clients) and the Leadspace emulator on loopback.

mod harness;

mod cache;
mod csv_files;
mod guards;
mod hostile;
mod invocations;
mod json_lines;
mod resilience;
mod template;
mod workflow;
