//! Scale-out on a store several engines share: the leader offers each process attempt (`offer`), and a
//! worker in every engine (`worker`) claims what its routes serve, runs it, ships its lines and finishes
//! it. What travels between them is in `spec`. The store decides every claim (`store::work`).

mod offer;
mod spec;
mod worker;

pub use offer::Offers;
pub use worker::{Worker, WorkerSetup};

/// Every route: a worker that serves them all (the default).
pub const ALL_ROUTES: &str = "*";
