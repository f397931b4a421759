//! Conveyor: a workflow scheduler and engine with a terminal operations console.

pub mod backfill;
pub mod cli;
pub mod clock;
pub mod console;
pub mod definition;
pub mod engine;
pub mod failpoint;
pub mod listen;
pub mod metrics;
pub mod schedule;
pub mod state;
pub mod store;
pub mod tasks;
pub mod text;
pub mod trigger;
pub mod work;
