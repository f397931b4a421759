//! An attempt's log: every line goes whole to its file on disk first, then to whoever listens.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::limits::EVENT_LINE;
use super::secrets::Secrets;

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
    path: Option<Arc<Path>>,
    listener: Arc<Listener>,
    /// Set once the attempt's secrets are read: every line after is masked before the file or a listener.
    secrets: Arc<OnceLock<Secrets>>,
}

/// The log, created on its first line so that an attempt that prints nothing costs no file; and beside it
/// `TASK.N.stderr`, the numbers (from 0) of the lines that came from stderr, which the log itself cannot show.
struct Files {
    log: LogFile,
    stderr: LogFile,
    lines: u64,
    /// A failing disk fails every line: it is said once per log, not once per line.
    write_failed: bool,
    /// `max_log_size`: the first half is written as it comes, the rest kept as a tail (see `Tail`).
    cap: u64,
    written: u64,
    tail: Option<Tail>,
    finished: bool,
    /// The engine's own lines while nothing else came: an attempt that prints nothing and ends quickly costs
    /// no file at all (creating one is most of a short task's cost on a busy ext4 volume); its lines go to the
    /// store with the attempt instead (`held_text`). `None` once lines go to the file.
    held: Option<Vec<u8>>,
}

/// Engine lines held in memory at most: more, and they go to the file.
const HELD_MAX: usize = 4096;

/// Once the head is full, lines go to two segment files beside the log, each up to a quarter of the cap:
/// when the current one is full the older is emptied and reused. At the end the log gets a marker and the
/// two segments, so the disk and memory a log takes stay bounded and its last lines are kept.
struct Tail {
    segments: [LogFile; 2],
    current: usize,
    sizes: [u64; 2],
    left_out: u64,
}

/// Gives an attempt whose log was kept in the store (`AttemptRecord::log_text`) its file at `path`, for a
/// reader that works on files (the console's viewer and pager). Written whole under another name and renamed,
/// so two readers doing it at once, or one reading meanwhile, never see half of it; a file already there is
/// left as it is.
pub fn write_kept_log(path: &Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(folder) = path.parent() {
        crate::store::create_private_dir(folder)?;
    }
    let partial = path.with_extension(format!("log.{}.partial", std::process::id()));
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(text.as_ref())?;
    drop(file);
    std::fs::rename(&partial, path)
}

/// Where the stderr line numbers of the log at `log` are kept.
pub fn stderr_index_path(log: &Path) -> PathBuf {
    log.with_extension("stderr")
}

fn segment_path(log: &Path, number: usize) -> PathBuf {
    log.with_extension(format!("tail{number}"))
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

/// One byte before each line in a tail segment says which stream it came from.
fn stream_tag(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => b'o',
        Stream::Stderr => b'e',
        Stream::Engine => b'c',
    }
}

impl Files {
    fn new(log: LogFile, stderr: LogFile, cap: u64) -> Files {
        let held = matches!(log, LogFile::NotYet(_)).then(Vec::new);
        Files { log, stderr, lines: 0, write_failed: false, cap, written: 0, tail: None, finished: false, held }
    }

    fn warn_once(&mut self, what: &str, error: std::io::Error) {
        if !std::mem::replace(&mut self.write_failed, true) {
            tracing::warn!("writing {what} failed (said once per log): {error}");
        }
    }

    /// The line (without its newline) to the head of the log, or to the tail once the head is full.
    fn record(&mut self, stream: Stream, text: &[u8], path: Option<&Path>) {
        let size = text.len() as u64 + 1;
        if self.finished || (self.tail.is_none() && self.written + size <= self.cap / 2) {
            return self.write(stream, text);
        }
        let tail = self.tail.get_or_insert_with(|| {
            let segment = |n| path.map_or(LogFile::Nowhere, |path| LogFile::NotYet(segment_path(path, n)));
            Tail { segments: [segment(0), segment(1)], current: 0, sizes: [0, 0], left_out: 0 }
        });
        if tail.sizes[tail.current] >= self.cap / 4 {
            // The older segment's lines are the ones left out; its file is emptied and written again.
            tail.current = 1 - tail.current;
            tail.left_out += std::mem::take(&mut tail.sizes[tail.current]);
            if let Some(file) = tail.segments[tail.current].writer()
                && let Err(error) = file.set_len(0)
            {
                self.warn_once("a task log's tail", error);
                return;
            }
        }
        let current = tail.current;
        tail.sizes[current] += size;
        if let Some(file) = tail.segments[current].writer() {
            let mut buffer = Vec::with_capacity(text.len() + 2);
            buffer.push(stream_tag(stream));
            buffer.extend_from_slice(text);
            buffer.push(b'\n');
            if let Err(error) = file.write_all(&buffer) {
                self.warn_once("a task log's tail", error);
            }
        }
    }

    fn write(&mut self, stream: Stream, text: &[u8]) {
        let number = self.lines;
        self.lines += 1;
        self.written += text.len() as u64 + 1;
        if let Some(held) = &mut self.held {
            if stream == Stream::Engine && held.len() + text.len() < HELD_MAX {
                held.extend_from_slice(text);
                held.push(b'\n');
                return;
            }
            self.keep_on_disk();
        }
        if let Some(file) = self.log.writer() {
            // One write per line, so a reader in another process sees each line as soon as it exists.
            let mut buffer = Vec::with_capacity(text.len() + 1);
            buffer.extend_from_slice(text);
            buffer.push(b'\n');
            if let Err(error) = file.write_all(&buffer) {
                self.warn_once("a task log", error);
            }
        }
        if stream == Stream::Stderr
            && let Some(index) = self.stderr.writer()
            && let Err(error) = writeln!(index, "{number}")
        {
            self.warn_once("a task log's stderr index", error);
        }
    }

    /// The held lines go to the file, and every later line with them.
    fn keep_on_disk(&mut self) {
        let Some(held) = self.held.take() else { return };
        if held.is_empty() {
            return;
        }
        if let Some(file) = self.log.writer()
            && let Err(error) = file.write_all(&held)
        {
            self.warn_once("a task log", error);
        }
    }

    /// The marker and the kept tail, copied into the log; the segment files are removed.
    fn finish(&mut self, path: Option<&Path>) {
        self.finished = true;
        let Some(tail) = self.tail.take() else { return };
        let older = 1 - tail.current;
        let marker = format!(
            "[conveyor] {} bytes of output left out here: the log keeps its first and last parts (max_log_size {})",
            tail.left_out,
            super::limits::format_size(self.cap)
        );
        self.write(Stream::Engine, marker.as_bytes());
        let Some(path) = path else { return };
        drop(tail.segments);
        for index in [older, tail.current] {
            if tail.sizes[index] == 0 {
                continue;
            }
            let copied = File::open(segment_path(path, index)).and_then(|file| {
                // Segment lines were written here, each at most a split line and its tag: bounded.
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    let (stream, text) = match line.split_first() {
                        Some((b'e', text)) => (Stream::Stderr, text),
                        Some((b'c', text)) => (Stream::Engine, text),
                        Some((_, text)) => (Stream::Stdout, text),
                        None => continue,
                    };
                    self.write(stream, text);
                }
                Ok(())
            });
            if let Err(error) = copied {
                self.warn_once("a task log's tail", error);
            }
        }
        for number in 0..2 {
            let _ = std::fs::remove_file(segment_path(path, number));
        }
    }
}

impl LogSink {
    /// A sink writing (0600, appending) to `path`, created with its folder when the first line comes; past
    /// `max_log_size` bytes it keeps the head and the tail (see `finish`).
    pub fn create(path: &Path, max_log_size: u64, listener: Arc<Listener>) -> LogSink {
        let files =
            Files::new(LogFile::NotYet(path.to_path_buf()), LogFile::NotYet(stderr_index_path(path)), max_log_size);
        LogSink {
            files: Arc::new(Mutex::new(files)),
            bytes: Arc::new(AtomicU64::new(0)),
            path: Some(Arc::from(path)),
            listener,
            secrets: Arc::default(),
        }
    }

    /// A sink that keeps nothing on disk (for tests of executors).
    pub fn detached(listener: Arc<Listener>) -> LogSink {
        let files = Files::new(LogFile::Nowhere, LogFile::Nowhere, super::limits::DEFAULT_MAX_LOG_SIZE);
        LogSink {
            files: Arc::new(Mutex::new(files)),
            bytes: Arc::new(AtomicU64::new(0)),
            path: None,
            listener,
            secrets: Arc::default(),
        }
    }

    /// One line as the task printed it (a trailing newline is dropped): kept byte for byte in the file;
    /// listeners get it as text, cut to `EVENT_LINE` bytes, without a trailing `\r`.
    pub fn line(&self, stream: Stream, text: impl AsRef<[u8]>) {
        let text = text.as_ref();
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = match self.secrets.get() {
            Some(secrets) => secrets.mask_bytes(text),
            None => std::borrow::Cow::Borrowed(text),
        };
        let text = &text[..];
        {
            let mut files = self.files.lock().expect("log file lock");
            files.record(stream, text, self.path.as_deref());
            self.bytes.store(files.written, Ordering::Relaxed);
        }
        let shown = text.strip_suffix(b"\r").unwrap_or(text);
        let shown = String::from_utf8_lossy(&shown[..shown.len().min(EVENT_LINE)]);
        let progress = if stream == Stream::Engine { None } else { parse_progress(&shown) };
        (self.listener)(stream, &shown, progress);
    }

    /// The values to mask in every later line; set once per attempt (a second call changes nothing).
    pub fn set_secrets(&self, secrets: Secrets) {
        let _ = self.secrets.set(secrets);
    }

    /// The longest value masked, in bytes: a reader that cuts long lines keeps that much together.
    pub fn longest_secret(&self) -> usize {
        self.secrets.get().map_or(0, Secrets::longest)
    }

    pub fn engine_line(&self, text: &str) {
        self.line(Stream::Engine, format!("[conveyor] {text}"));
    }

    /// Ends the log: if it went over `max_log_size`, a marker saying how much was left out, then the tail.
    /// Copying a tail is file work: `needs_file_work` says whether to do this off the runtime's threads.
    pub fn finish(&self) {
        let mut files = self.files.lock().expect("log file lock");
        files.finish(self.path.as_deref());
        self.bytes.store(files.written, Ordering::Relaxed);
    }

    /// Whether `finish` has a tail to copy.
    pub fn needs_file_work(&self) -> bool {
        self.files.lock().expect("log file lock").tail.is_some()
    }

    /// The attempt has run long enough for someone to look: lines held in memory go to the file now, and
    /// later ones as they come.
    pub fn keep_on_disk(&self) {
        self.files.lock().expect("log file lock").keep_on_disk();
    }

    /// The log of an attempt that only ever had the engine's lines, which were never written to a file: kept
    /// with the attempt in the store (`AttemptRecord::log_text`). `None` once there is a file.
    pub fn held_text(&self) -> Option<String> {
        let files = self.files.lock().expect("log file lock");
        let held = files.held.as_ref().filter(|held| !held.is_empty())?;
        Some(String::from_utf8_lossy(held).into_owned())
    }

    /// Bytes in the log file.
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
            1 << 20,
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

    #[test]
    fn engine_lines_wait_in_memory_until_output_comes_or_someone_may_look() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = dir.path().join("logs/run/Quiet.1.log");
        let sink = LogSink::create(&quiet, 1 << 20, Arc::new(|_, _: &str, _| {}));
        sink.engine_line("started `true` (pid 1)");
        sink.engine_line("exit status 0");
        sink.finish();
        assert!(!quiet.exists(), "an attempt that printed nothing has no file");
        let kept = sink.held_text().expect("its lines, for the store");
        assert_eq!(kept, "[conveyor] started `true` (pid 1)\n[conveyor] exit status 0\n");
        assert_eq!(sink.bytes(), kept.len() as u64);
        write_kept_log(&quiet, &kept).unwrap();
        assert_eq!(std::fs::read_to_string(&quiet).unwrap(), kept, "a reader gets the file it expects");
        write_kept_log(&quiet, "other").unwrap();
        assert_eq!(std::fs::read_to_string(&quiet).unwrap(), kept, "a file already there stays");

        let loud = dir.path().join("logs/run/Loud.1.log");
        let sink = LogSink::create(&loud, 1 << 20, Arc::new(|_, _: &str, _| {}));
        sink.engine_line("started");
        sink.line(Stream::Stderr, "oops");
        sink.engine_line("exit status 1");
        assert_eq!(std::fs::read_to_string(&loud).unwrap(), "[conveyor] started\noops\n[conveyor] exit status 1\n");
        assert_eq!(std::fs::read_to_string(stderr_index_path(&loud)).unwrap(), "1\n", "numbers count held lines");
        assert_eq!(sink.held_text(), None);

        let slow = dir.path().join("logs/run/Slow.1.log");
        let sink = LogSink::create(&slow, 1 << 20, Arc::new(|_, _: &str, _| {}));
        sink.engine_line("started");
        sink.keep_on_disk();
        assert_eq!(std::fs::read_to_string(&slow).unwrap(), "[conveyor] started\n");
        sink.engine_line("exit status 0");
        assert_eq!(std::fs::read_to_string(&slow).unwrap(), "[conveyor] started\n[conveyor] exit status 0\n");
        assert_eq!(sink.held_text(), None);
    }

    #[test]
    fn secrets_are_masked_in_the_file_and_for_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/run/Task.1.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let sink = LogSink::create(
            &path,
            1 << 20,
            Arc::new(move |_, text: &str, _| recorder.lock().unwrap().push(text.to_string())),
        );
        let mut secrets = Secrets::default();
        secrets.add("hunter22");
        sink.set_secrets(secrets);
        sink.line(Stream::Stdout, "token hunter22\n");
        sink.line(Stream::Stderr, b"bytes \xff hunter22");
        assert_eq!(std::fs::read(&path).unwrap(), b"token ***\nbytes \xff ***\n");
        assert_eq!(*seen.lock().unwrap(), ["token ***", "bytes \u{fffd} ***"]);
    }

    #[test]
    fn a_log_over_its_cap_keeps_the_head_a_marker_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/run/Task.1.log");
        let sink = LogSink::create(&path, 4096, Arc::new(|_, _: &str, _| {}));
        for number in 0..1000 {
            let stream = if number % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
            sink.line(stream, format!("line {number:04}"));
        }
        sink.finish();
        let log = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "line 0000");
        let marker = lines.iter().position(|line| line.starts_with("[conveyor] ")).expect("a marker");
        assert_eq!(marker, 2048 / 10, "the head is half the cap, in whole lines");
        assert_eq!(lines[marker - 1], format!("line {:04}", marker - 1));
        assert_eq!(*lines.last().unwrap(), "line 0999", "the last line is kept");
        let tail: Vec<u32> = lines[marker + 1..].iter().map(|line| line[5..].parse().unwrap()).collect();
        assert!(tail.windows(2).all(|pair| pair[1] == pair[0] + 1), "the tail is whole and in order");
        let left_out = (1000 - marker - tail.len()) * 10;
        assert_eq!(
            lines[marker],
            format!(
                "[conveyor] {left_out} bytes of output left out here: the log keeps its first and last parts (max_log_size 4 KiB)"
            )
        );
        assert!(log.len() <= 4096 + 200, "at most the cap and the marker: {}", log.len());
        let index = std::fs::read_to_string(stderr_index_path(&path)).unwrap();
        let stderr: Vec<usize> = index.lines().map(|n| n.parse().unwrap()).collect();
        assert!(
            stderr.iter().all(|&n| lines[n][5..].parse::<u32>().unwrap() % 2 == 1),
            "stderr lines keep their numbers"
        );
        assert!(!path.with_extension("tail0").exists() && !path.with_extension("tail1").exists(), "segments removed");
    }
}
