//! Integration tests: one binary (to keep builds lean) that drives the real `conveyor` executable and the
//! engine library from outside.

mod backfill;
mod cli_gates;
mod cli_postgres;
mod cli_runs;
mod cluster;
mod cluster_attempts;
mod cluster_fires;
mod cluster_workers;
mod common;
mod completion;
mod console_e2e;
mod daemon;
mod engine_backfill;
mod engine_harness;
mod engine_operations;
mod engine_runs;
mod executor_stops;
mod faults;
mod gates;
mod grants;
mod hot_reload;
mod leadership;
mod llm;
mod metrics;
mod postgres;
mod postgres_harness;
mod recovery;
mod scheduling;
mod secrets;
mod store_postgres;
mod validate_and_list;
mod work_queue;
