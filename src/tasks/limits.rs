//! How much of a task's output the engine holds: every limit here keeps one task's memory bounded however
//! much it prints.

// The size notation belongs to definitions (`max_output_size = "16 MiB"`); messages here print it back.
pub use crate::definition::{format_size, parse_size};

/// A line longer than this is split, with a marker, so one line without a newline cannot fill memory.
pub const MAX_LINE: usize = 1024 * 1024;
pub const DEFAULT_MAX_OUTPUT_SIZE: u64 = 16 * 1024 * 1024;
pub const DEFAULT_MAX_LOG_SIZE: u64 = 100 * 1024 * 1024;
/// A log line reaches the listeners (events, the console, `conveyor run`) cut to this: the file has it whole,
/// and thousands of events held for a slow reader must not each hold a megabyte.
pub const EVENT_LINE: usize = 16 * 1024;

/// The limits of one attempt: the task's own, else the registry's, else the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    /// The largest `CONVEYOR_OUTPUT` file (or HTTP answer) taken as the task's output.
    pub max_output_size: u64,
    /// The largest log file of one attempt: beyond it the first and the last part are kept.
    pub max_log_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_line: MAX_LINE, max_output_size: DEFAULT_MAX_OUTPUT_SIZE, max_log_size: DEFAULT_MAX_LOG_SIZE }
    }
}
