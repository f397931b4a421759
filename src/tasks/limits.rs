//! How much of a task's output the engine holds: every limit here keeps one task's memory bounded however
//! much it prints.

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

const UNITS: [(&str, u64); 4] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];
/// Sizes from 1 KiB to 1 TiB: smaller caps would only cut the engine's own lines, larger ones are typos.
const SMALLEST: u64 = 1 << 10;
const LARGEST: u64 = 1 << 40;

/// `16MiB`, `100 MiB`, `512 KiB`, `1 GiB`, `4096 B`: a whole number and a binary unit, from 1 KiB to 1 TiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let hint = "expected a whole number and a unit such as `16 MiB`, `512KiB`, `1 GiB` or `4096 B`";
    let trimmed = text.trim();
    let digits = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit.trim()) else {
        return Err(format!("`{text}`: {hint}"));
    };
    let bytes = number.parse::<u64>().ok().and_then(|n| n.checked_mul(scale));
    match bytes {
        Some(bytes) if (SMALLEST..=LARGEST).contains(&bytes) => Ok(bytes),
        _ => Err(format!("`{text}` is not from 1 KiB to 1 TiB; {hint}")),
    }
}

/// `16 MiB`, `1536 KiB`, `100 B`: the largest unit that divides the size exactly, as `parse_size` reads it.
pub fn format_size(bytes: u64) -> String {
    let (name, scale) =
        UNITS.iter().find(|(_, scale)| bytes >= *scale && bytes.is_multiple_of(*scale)).unwrap_or(&("B", 1));
    format!("{} {name}", bytes / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_whole_number_and_a_binary_unit() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size(" 100 MiB "), Ok(100 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096 B"), Ok(4096));
        for bad in ["16", "16 MB", "1.5 MiB", "-1 MiB", "MiB", "", "10 B", "2048 GiB", "99999999999999999999 GiB"] {
            assert!(parse_size(bad).is_err(), "{bad} is refused");
        }
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(parse_size(&format_size(100 << 20)), Ok(100 << 20));
    }
}
