//! Text that comes from a task or a remote server, made safe to show: control characters are written as
//! escapes, never obeyed, so no output can move the cursor, retitle a terminal or forge a log line.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` could act on a terminal or split a line: C0 and C1 controls, DEL, and the bidirectional
/// overrides that reorder what a reader sees. A tab is harmless and stays.
fn is_hazard(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `c` as it can be shown: `\n`, `\r`, `\x1b`, `\u{9b}`, `\u{202e}` for hazards, itself otherwise.
pub fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if is_hazard(c) && (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_hazard(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `text` with its control characters made visible (see [`push_visible`]); borrowed when there are none.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_visible(&mut shown, c);
    }
    Cow::Owned(shown)
}

/// Bytes as text that can be shown: invalid UTF-8 becomes `�`, control characters escapes.
pub fn visible_bytes(bytes: &[u8]) -> String {
    visible(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_escapes_and_plain_text_is_untouched() {
        assert_eq!(visible("HTTP 500: boom\nFORGED \x1b]0;title\x07"), r"HTTP 500: boom\nFORGED \x1b]0;title\x07");
        assert_eq!(visible("\x1b[2J\r\x7f\u{9b}31m"), r"\x1b[2J\r\x7f\u{9b}31m");
        assert_eq!(visible("abc\u{202e}fed"), r"abc\u{202e}fed", "a bidirectional override is shown");
        assert!(matches!(visible("plain\ttext, ünïcödé ✓"), Cow::Borrowed("plain\ttext, ünïcödé ✓")));
        assert_eq!(visible_bytes(b"a\xffb\x1b"), r"a�b\x1b");
    }
}
