use std::fmt;
use std::ops::Range;
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
        Problem { file: file.to_path_buf(), line, column, message: message.into() }
    }

    pub fn at_span(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::at_offset(file, source, span.start, message)
    }

    /// For a file as a whole (unreadable, empty): points at its first line.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Problem { file: file.to_path_buf(), line: 1, column: 1, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
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
    fn displays_as_file_line_column_message() {
        let problem = Problem::at_offset(Path::new("w/a.toml"), "x\ny", 2, "bad");
        assert_eq!(problem.to_string(), "w/a.toml:2:1: bad");
    }
}
