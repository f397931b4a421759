//! Sizes as definitions write them (`max_output_size = "16 MiB"`) and as messages print them back.

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
