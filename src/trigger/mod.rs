//! What starts runs besides an operator: file arrivals (here) and schedules (`crate::schedule`, driven by the
//! engine's timers).

pub mod files;
