//! An attempt's log: every line goes whole to its file on disk first, then to whoever listens.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    /// Lines the engine adds: exit status, timeouts, retries.
    Engine,
}

/// A `::progress::3/5` or `::progress::40%` line, as a fraction from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress(pub f64);

pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim().strip_prefix("::progress::")?.trim();
    let fraction = if let Some(percent) = rest.strip_suffix('%') {
        percent.trim().parse::<f64>().ok()? / 100.0
    } else {
        let (done, total) = rest.split_once('/')?;
        let (done, total) = (done.trim().parse::<f64>().ok()?, total.trim().parse::<f64>().ok()?);
        if total <= 0.0 {
            return None;
        }
        done / total
    };
    fraction.is_finite().then(|| Progress(fraction.clamp(0.0, 1.0)))
}

type Listener = dyn Fn(Stream, &str, Option<Progress>) + Send + Sync;

#[derive(Clone)]
pub struct LogSink {
    files: Arc<Mutex<Files>>,
    bytes: Arc<AtomicU64>,
    listener: Arc<Listener>,
}

/// The log, created on its first line so that an attempt that prints nothing costs no file; and beside it
/// `TASK.N.stderr`, the numbers (from 0) of the lines that came from stderr, which the log itself cannot show.
struct Files {
    log: LogFile,
    stderr: LogFile,
    lines: u64,
    /// A failing disk fails every line: it is said once per log, not once per line.
    write_failed: bool,
}

/// Where the stderr line numbers of the log at `log` are kept.
pub fn stderr_index_path(log: &Path) -> PathBuf {
    log.with_extension("stderr")
}

enum LogFile {
    NotYet(PathBuf),
    Open(File),
    /// Not kept on disk: a detached sink, or a file that could not be created (said once, in the log's
    /// stead, through tracing).
    Nowhere,
}

impl LogFile {
    fn writer(&mut self) -> Option<&mut File> {
        if let LogFile::NotYet(path) = self {
            let opened = path
                .parent()
                .map_or(Ok(()), crate::store::create_private_dir)
                .and_then(|()| OpenOptions::new().create(true).append(true).mode(0o600).open(&*path));
            *self = match opened {
                Ok(file) => LogFile::Open(file),
                Err(error) => {
                    tracing::error!("cannot create the task log {}: {error}", path.display());
                    LogFile::Nowhere
                }
            };
        }
        match self {
            LogFile::Open(file) => Some(file),
            _ => None,
        }
    }
}

impl LogSink {
    /// A sink writing (0600, appending) to `path`, created with its folder when the first line comes.
    pub fn create(path: &Path, listener: Arc<Listener>) -> LogSink {
        let files = Files {
            log: LogFile::NotYet(path.to_path_buf()),
            stderr: LogFile::NotYet(stderr_index_path(path)),
            lines: 0,
            write_failed: false,
        };
        LogSink { files: Arc::new(Mutex::new(files)), bytes: Arc::new(AtomicU64::new(0)), listener }
    }

    /// A sink that keeps nothing on disk (for tests of executors).
    pub fn detached(listener: Arc<Listener>) -> LogSink {
        let files = Files { log: LogFile::Nowhere, stderr: LogFile::Nowhere, lines: 0, write_failed: false };
        LogSink { files: Arc::new(Mutex::new(files)), bytes: Arc::new(AtomicU64::new(0)), listener }
    }

    pub fn line(&self, stream: Stream, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        {
            let mut files = self.files.lock().expect("log file lock");
            let number = files.lines;
            files.lines += 1;
            if let Some(file) = files.log.writer() {
                // One write per line, so a reader in another process sees each line as soon as it exists.
                let mut buffer = Vec::with_capacity(text.len() + 1);
                buffer.extend_from_slice(text.as_bytes());
                buffer.push(b'\n');
                if let Err(error) = file.write_all(&buffer)
                    && !std::mem::replace(&mut files.write_failed, true)
                {
                    tracing::warn!("writing a task log failed (said once per log): {error}");
                }
            }
            if stream == Stream::Stderr
                && let Some(index) = files.stderr.writer()
                && let Err(error) = writeln!(index, "{number}")
                && !std::mem::replace(&mut files.write_failed, true)
            {
                tracing::warn!("writing a task log's stderr index failed (said once per log): {error}");
            }
        }
        self.bytes.fetch_add(text.len() as u64 + 1, Ordering::Relaxed);
        let progress = if stream == Stream::Engine { None } else { parse_progress(text) };
        (self.listener)(stream, text, progress);
    }

    pub fn engine_line(&self, text: &str) {
        self.line(Stream::Engine, &format!("[conveyor] {text}"));
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_fractions() {
        assert_eq!(parse_progress("::progress::3/5"), Some(Progress(0.6)));
        assert_eq!(parse_progress("::progress::40%"), Some(Progress(0.4)));
        assert_eq!(parse_progress("  ::progress:: 7 / 7 "), Some(Progress(1.0)));
        assert_eq!(parse_progress("::progress::150%"), Some(Progress(1.0)));
        assert_eq!(parse_progress("::progress::1/0"), None);
        assert_eq!(parse_progress("::progress::soon"), None);
        assert_eq!(parse_progress("progress 3/5"), None);
    }

    #[test]
    fn lines_reach_the_file_whole_and_the_listener_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/run/Task.1.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let sink = LogSink::create(
            &path,
            Arc::new(move |stream, text: &str, progress| {
                recorder.lock().unwrap().push((stream, text.to_string(), progress))
            }),
        );
        assert!(!path.exists(), "no file before the first line");
        sink.line(Stream::Stdout, "hello\n");
        sink.line(Stream::Stderr, "::progress::1/2");
        sink.engine_line("exit status 0");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n::progress::1/2\n[conveyor] exit status 0\n");
        assert_eq!(std::fs::read_to_string(stderr_index_path(&path)).unwrap(), "1\n", "the stderr line, by number");
        assert_eq!(sink.bytes(), 47);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1], (Stream::Stderr, "::progress::1/2".to_string(), Some(Progress(0.5))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
