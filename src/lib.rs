//! Conveyor: a workflow scheduler and engine with a terminal operations console.

pub mod cli;
pub mod definition;
pub mod schedule;
