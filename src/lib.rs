//! Enriches company records stored in S3 with Leadspace firmographics, as an AWS Lambda.
//!
//! Data flows one way: `trigger` (event → jobs) → `pipeline` (read rows, dedupe companies,
//! enrich in bounded batches, write rows, summary), with `records`, `mapping`, `leadspace`,
//! `secrets` and `storage` at the edges.

pub mod bootstrap;
pub mod cache;
pub mod chain;
pub mod company;
pub mod config;
pub mod delete;
pub mod enrichment;
pub mod error;
pub mod handler;
pub mod leadspace;
pub mod mapping;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod records;
pub mod refresh;
pub mod runner;
pub mod secrets;
pub mod status;
pub mod storage;
pub mod trigger;
pub mod workflow;
