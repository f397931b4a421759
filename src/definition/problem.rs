use std::fmt;
use std::path::{Path, PathBuf};

/// Something wrong in a workflow or registry file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Problem {
    pub fn at_offset(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_and_column(source, offset);
        Problem { file: file.to_path_buf(), line, column, message: one_line(message.into()) }
    }

    pub fn at_indexed(file: &Path, source: &str, lines: &LineIndex, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = lines.locate(source, offset);
        Problem { file: file.to_path_buf(), line, column, message: one_line(message.into()) }
    }

    /// For a file as a whole (unreadable, empty): points at its first line.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Problem { file: file.to_path_buf(), line: 1, column: 1, message: one_line(message.into()) }
    }
}

/// The longest message kept, in characters: messages quote what was written, which may be a megabyte.
const MAX_MESSAGE: usize = 1000;

/// A message as one line of bounded length, so that `file:line:column: message` stays one line per problem
/// whatever the quoted text holds (newlines, NUL, escape sequences).
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) && message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut line = String::new();
    for (count, c) in message.chars().enumerate() {
        if count == MAX_MESSAGE {
            line.push('…');
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset. Scans from the start: for one position;
/// a file with many goes through a [`LineIndex`].
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(source).locate(source, offset)
}

/// Where each line of a file starts, found once, so locating a position costs a binary search and the
/// length of its line, not a scan of the file: validating a file stays linear however many positions it
/// looks up.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let starts =
            std::iter::once(0).chain(source.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex { starts: starts.collect() }
    }

    /// 1-based line and column (in characters) of a byte offset in `source`, the text indexed.
    pub fn locate(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let line = self.starts.partition_point(|start| *start <= offset);
        let line_start = self.starts[line - 1];
        let column = source[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// The byte offset where a 1-based line starts (the end of the text past the last line).
    pub fn line_start(&self, source: &str, line: usize) -> usize {
        self.starts.get(line.saturating_sub(1)).copied().unwrap_or(source.len())
    }
}

fn floor_char_boundary(source: &str, mut offset: usize) -> usize {
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_characters_from_one() {
        let source = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(source, 0), (1, 1));
        assert_eq!(line_and_column(source, 6), (2, 1));
        assert_eq!(line_and_column(source, 9), (2, 3));
        assert_eq!(line_and_column(source, 999), (3, 1));
    }

    #[test]
    fn the_line_index_agrees_with_a_scan_at_every_offset() {
        let source = "a = 1\n\nbé = \"x\"\r\n\n  c\n";
        let index = LineIndex::new(source);
        for offset in 0..=source.len() + 2 {
            let offset_in = floor_char_boundary(source, offset.min(source.len()));
            let before = &source[..offset_in];
            let line = before.matches('\n').count() + 1;
            let column = before[before.rfind('\n').map_or(0, |n| n + 1)..].chars().count() + 1;
            assert_eq!(index.locate(source, offset), (line, column), "offset {offset}");
        }
        assert_eq!(index.line_start(source, 3), 7);
        assert_eq!(index.line_start(source, 99), source.len());
    }

    #[test]
    fn messages_are_one_line_of_at_most_a_thousand_characters() {
        let problem = Problem::whole_file(Path::new("w.toml"), "unknown agent `line\nbreak\0`");
        assert_eq!(problem.message, "unknown agent `line\\nbreak\\u{0}`");
        let long = Problem::whole_file(Path::new("w.toml"), "x".repeat(5000));
        assert_eq!(long.message, format!("{}…", "x".repeat(1000)));
    }

    #[test]
    fn displays_as_file_line_column_message() {
        let problem = Problem::at_offset(Path::new("w/a.toml"), "x\ny", 2, "bad");
        assert_eq!(problem.to_string(), "w/a.toml:2:1: bad");
    }
}
