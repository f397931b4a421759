//! The log viewer: a task attempt's whole log from its file. Only an index of line starts (and of lines
//! that look like errors) is kept in memory, built in the background; the screen reads just the lines it
//! shows.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where each line starts, and which lines look like errors. Grows as the file does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogIndex {
    /// Byte offset of each complete line's start.
    pub starts: Vec<u64>,
    /// Where the next, not yet complete, line starts.
    pub end: u64,
    pub errors: Vec<usize>,
}

impl LogIndex {
    pub fn lines(&self) -> usize {
        self.starts.len()
    }
}

/// Stderr carries no mark in the file, so errors are found by their words.
pub fn looks_like_error(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("error")
        || lower.contains("panic")
        || lower.contains("traceback")
        || lower.contains("exception")
        || lower.contains("fatal")
        || (lower.starts_with("[conveyor] exit status ") && !lower.ends_with("exit status 0"))
        || lower.starts_with("[conveyor] killed by")
        || lower.starts_with("[conveyor] timed out")
}

/// Reads what was added to `path` since `index` was made: blocking, so run it off the screen's thread.
/// Lines that came from stderr (numbered in the file beside the log) count as errors too.
pub fn extend_index(path: &Path, index: &LogIndex) -> LogIndex {
    let mut next = extend_lines(path, index);
    if let Ok(numbers) = std::fs::read_to_string(crate::tasks::stderr_index_path(path)) {
        let lines = next.lines();
        next.errors.extend(numbers.lines().filter_map(|n| n.parse::<usize>().ok()).filter(|n| *n < lines));
        next.errors.sort_unstable();
        next.errors.dedup();
    }
    next
}

fn extend_lines(path: &Path, index: &LogIndex) -> LogIndex {
    let mut next = index.clone();
    let Ok(mut file) = File::open(path) else { return next };
    if file.seek(SeekFrom::Start(next.end)).is_err() {
        return next;
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(read) if line.last() == Some(&b'\n') => {
                let number = next.starts.len();
                next.starts.push(next.end);
                if looks_like_error(&String::from_utf8_lossy(&line)) {
                    next.errors.push(number);
                }
                next.end += read as u64;
            }
            Ok(_) => break,
        }
    }
    next
}

/// Lines `range` of the file, as text (invalid UTF-8 replaced).
pub fn read_lines(path: &Path, index: &LogIndex, range: std::ops::Range<usize>) -> Vec<String> {
    let range = range.start.min(index.lines())..range.end.min(index.lines());
    if range.is_empty() {
        return Vec::new();
    }
    let from = index.starts[range.start];
    let to = index.starts.get(range.end).copied().unwrap_or(index.end);
    let Ok(mut file) = File::open(path) else { return Vec::new() };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut bytes = vec![0; (to - from) as usize];
    if file.read_exact(&mut bytes).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&bytes).lines().map(printable).collect()
}

/// The longest part of a line the screen shows (wrapped, it fills a few screens).
const SHOWN_CHARS: usize = 8192;

/// What a task prints goes on screen as text: control characters are shown as escapes (`crate::text`, as
/// the CLI shows them), never obeyed, so no output can take over the terminal; tabs become spaces; very
/// long lines are cut.
pub fn printable(line: &str) -> String {
    let mut shown = String::with_capacity(line.len().min(SHOWN_CHARS));
    for (count, c) in line.chars().enumerate() {
        if count == SHOWN_CHARS {
            shown.push('…');
            break;
        }
        match c {
            '\t' => shown.push_str("    "),
            c => crate::text::push_visible(&mut shown, c),
        }
    }
    shown
}

/// Line numbers containing `query` (case-insensitive): blocking, run it off the screen's thread.
pub fn search(path: &Path, query: &str) -> Vec<usize> {
    let query = query.to_lowercase();
    let Ok(file) = File::open(path) else { return Vec::new() };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut found = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if String::from_utf8_lossy(&line).to_lowercase().contains(&query) {
                    found.push(number);
                }
                number += 1;
            }
        }
    }
    found
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogView {
    pub run: String,
    /// The run's workflow, for the pane's title; looked up once, when the log opens.
    pub workflow: Option<String>,
    pub task: String,
    pub attempt: u32,
    pub path: PathBuf,
    pub index: Arc<LogIndex>,
    /// The first line on screen.
    pub top: usize,
    /// Keep the newest line in view as the log grows; off as soon as the operator scrolls up.
    pub follow: bool,
    pub wrap: bool,
    pub search: Option<(String, Vec<usize>)>,
    /// Where `n`/`N` and `e`/`E` last landed.
    pub mark: Option<usize>,
    /// Jump to the first error once the index is built (failure first).
    pub jump_to_error: bool,
    /// Lines that fit on screen, as of the last draw.
    pub height: usize,
    /// The lines on screen, read from the file off the screen's thread, and which lines they are.
    pub window: Vec<String>,
    pub window_top: usize,
    window_key: WindowKey,
    /// The window asked for and not yet read.
    requested: Option<WindowKey>,
}

/// Which lines a window holds: (first line, how many, lines in the index when read).
pub type WindowKey = (usize, usize, usize);

/// Lines to read for the screen: blocking, so the console does it off its thread.
#[derive(Debug, Clone)]
pub struct WindowRequest {
    pub path: PathBuf,
    pub index: Arc<LogIndex>,
    pub key: WindowKey,
}

impl WindowRequest {
    pub fn read(&self) -> Vec<String> {
        let (top, height, _) = self.key;
        read_lines(&self.path, &self.index, top..top + height)
    }
}

impl LogView {
    pub fn new(run: String, task: String, attempt: u32, path: PathBuf, follow: bool, jump_to_error: bool) -> LogView {
        LogView {
            run,
            workflow: None,
            task,
            attempt,
            path,
            index: Arc::new(LogIndex::default()),
            top: 0,
            follow,
            wrap: false,
            search: None,
            mark: None,
            jump_to_error,
            height: 20,
            window: Vec::new(),
            window_top: 0,
            window_key: (usize::MAX, 0, 0),
            requested: None,
        }
    }

    /// The lines the screen needs now, unless they are already held or asked for.
    pub fn window_request(&mut self) -> Option<WindowRequest> {
        let key = (self.top, self.height, self.index.lines());
        if key == self.window_key || Some(key) == self.requested {
            return None;
        }
        self.requested = Some(key);
        Some(WindowRequest { path: self.path.clone(), index: self.index.clone(), key })
    }

    /// Takes lines read for a request; whether the screen changed.
    pub fn set_window(&mut self, key: WindowKey, lines: Vec<String>) -> bool {
        if self.requested == Some(key) {
            self.requested = None;
        }
        if key == self.window_key {
            return false;
        }
        self.window = lines;
        self.window_top = key.0;
        self.window_key = key;
        true
    }

    pub fn last_top(&self) -> usize {
        self.index.lines().saturating_sub(self.height.max(1))
    }

    pub fn set_index(&mut self, index: Arc<LogIndex>) {
        self.index = index;
        if self.jump_to_error
            && let Some(&first) = self.index.errors.first()
        {
            self.jump_to_error = false;
            self.follow = false;
            self.show(first);
        } else if self.follow {
            self.top = self.last_top();
        }
    }

    /// Scrolls so that `line` is on screen, a little below the top, and marks it.
    pub fn show(&mut self, line: usize) {
        self.mark = Some(line);
        self.top = line.saturating_sub(self.height / 3).min(self.last_top());
    }

    pub fn scroll(&mut self, lines: isize) {
        let top = (self.top as isize + lines).clamp(0, self.last_top() as isize) as usize;
        if lines < 0 {
            self.follow = false;
        }
        self.top = top;
        if self.top == self.last_top() && lines > 0 {
            self.follow = true;
        }
    }

    pub fn home(&mut self) {
        self.follow = false;
        self.top = 0;
    }

    pub fn end(&mut self) {
        self.follow = true;
        self.top = self.last_top();
    }

    /// The next (or previous) line in `lines` after the current mark, wrapping around.
    fn jump(&mut self, lines: &[usize], forward: bool) -> bool {
        if lines.is_empty() {
            return false;
        }
        let here = self.mark.unwrap_or(if forward { self.top.saturating_sub(1) } else { self.top });
        let target = if forward {
            lines
                .iter()
                .copied()
                .find(|&line| line > here || self.mark.is_none() && line >= self.top)
                .unwrap_or(lines[0])
        } else {
            lines.iter().rev().copied().find(|&line| line < here).unwrap_or(lines[lines.len() - 1])
        };
        self.follow = false;
        self.show(target);
        true
    }

    pub fn next_error(&mut self, forward: bool) -> bool {
        let errors = self.index.errors.clone();
        self.jump(&errors, forward)
    }

    pub fn next_match(&mut self, forward: bool) -> bool {
        let matches = self.search.as_ref().map(|(_, matches)| matches.clone()).unwrap_or_default();
        self.jump(&matches, forward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_grows_with_the_file_and_finds_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntwo ERROR here\nthr").unwrap();
        let index = extend_index(&path, &LogIndex::default());
        assert_eq!((index.lines(), index.errors.clone()), (2, vec![1]));
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ee\n[conveyor] exit status 2\n")
            .unwrap();
        let index = extend_index(&path, &index);
        assert_eq!((index.lines(), index.errors.clone()), (4, vec![1, 3]));
        assert_eq!(read_lines(&path, &index, 1..3), vec!["two ERROR here", "three"]);
        assert_eq!(search(&path, "THREE"), vec![2]);
    }

    #[test]
    fn escape_sequences_and_control_characters_are_shown_not_obeyed() {
        assert_eq!(printable("\x1b[2J\x1b[31mred\tx\x07"), r"\x1b[2J\x1b[31mred    x\x07");
        let long = "x".repeat(10_000);
        assert_eq!(printable(&long).chars().count(), SHOWN_CHARS + 1);
    }

    #[test]
    fn a_window_is_asked_for_once_and_taken_when_it_matches() {
        let mut view = LogView::new("r".into(), "t".into(), 1, "x".into(), false, false);
        view.height = 10;
        view.set_index(Arc::new(LogIndex { starts: (0..100).collect(), end: 100, errors: vec![] }));
        let request = view.window_request().expect("nothing is held yet");
        assert_eq!(request.key, (0, 10, 100));
        assert!(view.window_request().is_none(), "already asked for");
        assert!(view.set_window(request.key, vec!["a".into()]));
        assert!(view.window_request().is_none(), "held");
        view.scroll(5);
        assert_eq!(view.window_request().unwrap().key, (5, 10, 100));
    }

    #[test]
    fn stderr_lines_count_as_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("T.1.log");
        std::fs::write(&path, "fine\nwarning: disk nearly full\nfine\n").unwrap();
        std::fs::write(crate::tasks::stderr_index_path(&path), "1\n7\n").unwrap();
        let index = extend_index(&path, &LogIndex::default());
        assert_eq!(index.errors, vec![1], "line 7 is not written yet");
    }

    #[test]
    fn errors_and_matches_are_visited_in_order_and_wrap() {
        let mut view = LogView::new("r".into(), "t".into(), 1, "x".into(), true, false);
        view.height = 10;
        view.set_index(Arc::new(LogIndex { starts: (0..100).collect(), end: 100, errors: vec![20, 70] }));
        assert_eq!(view.top, 90, "following shows the end");
        view.home();
        assert!(view.next_error(true));
        assert_eq!((view.mark, view.follow), (Some(20), false));
        view.next_error(true);
        assert_eq!(view.mark, Some(70));
        view.next_error(true);
        assert_eq!(view.mark, Some(20), "wraps to the first");
        view.next_error(false);
        assert_eq!(view.mark, Some(70));
        view.scroll(-5);
        assert!(!view.follow);
        view.end();
        assert!(view.follow);
    }

    #[test]
    fn failure_first_lands_on_the_first_error() {
        let mut view = LogView::new("r".into(), "t".into(), 1, "x".into(), false, true);
        view.height = 10;
        view.set_index(Arc::new(LogIndex { starts: (0..50).collect(), end: 50, errors: vec![30] }));
        assert_eq!((view.mark, view.top), (Some(30), 27));
    }
}
