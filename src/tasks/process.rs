//! A task as a real process (ARCHITECTURE §5): JSON input on stdin, the `CONVEYOR_*` environment, output
//! from the `CONVEYOR_OUTPUT` file, stdout and stderr streamed line by line, its own process group so that
//! a timeout or a cancel stops everything it started.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::supervise::{StopReason, Waited};
use super::{Attempt, Ending, Execution, Executor, LogSink, Stream, read_output};

/// How long output pipes may stay open after the task's main process exits, before the rest of its
/// process group is taken to be strays and stopped.
const STRAY_WAIT: Duration = Duration::from_secs(2);

pub struct ProcessExecutor {
    /// Program and arguments; the action, if any, is appended as the last argument.
    pub argv: Vec<String>,
    pub append_action: bool,
}

impl ProcessExecutor {
    pub fn shell(line: &str) -> ProcessExecutor {
        ProcessExecutor { argv: vec!["sh".into(), "-c".into(), line.into()], append_action: false }
    }
}

impl ProcessExecutor {
    /// The command line an attempt with `action` runs.
    pub fn argv_for(&self, action: Option<&str>) -> Vec<String> {
        let mut argv = self.argv.clone();
        if self.append_action
            && let Some(action) = action
        {
            argv.push(action.to_string());
        }
        argv
    }
}

impl Executor for ProcessExecutor {
    fn execute(&self, attempt: Attempt) -> Execution {
        let argv = self.argv_for(attempt.action.as_deref());
        Box::pin(run(argv, attempt))
    }
}

async fn run(argv: Vec<String>, mut attempt: Attempt) -> Ending {
    let log = attempt.log.clone();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(&attempt.workdir)
        // systemd's notify socket belongs to the daemon: a task must not report readiness or feed its watchdog.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .envs(attempt.environment())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    crate::failpoint::hit("task.before-spawn");
    let running = super::reclaim::running(&attempt.run_id, &attempt.task, attempt.number);
    let mut child = match super::reclaim::spawn_tracked(&mut command, Some(&attempt.state_id)) {
        Ok(child) => child,
        Err(error) => {
            let message = format!("cannot start `{}` in {}: {error}", argv[0], attempt.workdir.display());
            log.engine_line(&message);
            return Ending::failed(message);
        }
    };
    let pgid = child.id().map(|pid| pid as i32);
    let mut guard = GroupGuard(pgid);
    log.engine_line(&format!("started `{}` (pid {})", shell_words(&argv), pgid.unwrap_or(0)));
    if let (Some(pid), Some(spawned)) = (pgid, attempt.spawned.take()) {
        spawned(super::Started { pid: Some(pid as u32), pid_start: super::reclaim::start_time(pid), engine: None });
    }
    // Feeding stdin and reading stdout and stderr run in this task, beside the wait: no task spawns.
    let input = serde_json::to_vec(&attempt.input).expect("JSON values serialise");
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (out_log, err_log) = (log.clone(), log.clone());
    let max_line = attempt.limits.max_line;
    let io = async move {
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A task that never reads its input closes the pipe early; that is not an error.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let out = async move {
            if let Some(stdout) = stdout {
                forward(stdout, Stream::Stdout, out_log, max_line).await;
            }
        };
        let err = async move {
            if let Some(stderr) = stderr {
                forward(stderr, Stream::Stderr, err_log, max_line).await;
            }
        };
        tokio::join!(feed, out, err);
    };
    tokio::pin!(io);
    let mut io_done = false;

    enum Stop {
        Exited(std::io::Result<ExitStatus>),
        Requested(StopReason),
    }
    let stop = loop {
        tokio::select! {
            status = child.wait() => break Stop::Exited(status),
            reason = attempt.stop.requested() => break Stop::Requested(reason),
            _ = &mut io, if !io_done => io_done = true,
        }
    };
    let grace = attempt.kill_grace;
    let ending = match stop {
        Stop::Exited(status) => {
            finish_io(io, io_done, pgid, &log, grace).await;
            exited(status, &attempt, &log)
        }
        Stop::Requested(reason) => {
            reason.announce(&log, "stopping its process group");
            tokio::join!(stop_group(&mut child, pgid, grace, &log), finish_io(io, io_done, pgid, &log, grace));
            reason.ending(Waited::Process)
        }
    };
    guard.0 = None;
    if let Some(pid) = pgid {
        super::reclaim::untrack(pid as u32);
    }
    drop(running);
    stop_leftovers(&attempt, &log, grace).await;
    ending
}

/// Processes of this attempt that left its group (`setsid`, a double fork) and outlived it: stopped too.
async fn stop_leftovers(attempt: &Attempt, log: &LogSink, grace: Duration) {
    // Most attempts leave nothing: only then is the scan, which may wait on a process inside `exec`, sent off
    // the runtime's threads.
    if !super::reclaim::adopted_any() {
        return;
    }
    let state_id = attempt.state_id.clone();
    let found = tokio::task::spawn_blocking(move || super::reclaim::leftovers(&state_id)).await.unwrap_or_default();
    let strays: Vec<i32> = found.into_iter().map(|stray| stray.pid).collect();
    if strays.is_empty() {
        return;
    }
    let list: Vec<String> = strays.iter().map(i32::to_string).collect();
    log.engine_line(&format!(
        "stopping {} process(es) left running outside the task's process group (pid {})",
        strays.len(),
        list.join(", ")
    ));
    super::reclaim::stop_processes(&strays, grace).await;
}

/// Kills the task's process group if the attempt is dropped before it has accounted for its processes (the
/// engine, or the runtime under it, went away mid-task): no task outlives the engine that started it.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn exited(status: std::io::Result<ExitStatus>, attempt: &Attempt, log: &LogSink) -> Ending {
    let status = match status {
        Ok(status) => status,
        Err(error) => return Ending::failed(format!("waiting for the process failed: {error}")),
    };
    if status.success() {
        log.engine_line("exit status 0");
        return match read_output(&attempt.output_file, attempt.limits.max_output_size) {
            Ok(output) => Ending::Succeeded { output },
            Err(error) => {
                log.engine_line(&error);
                Ending::Failed { error, exit_code: Some(0) }
            }
        };
    }
    use std::os::unix::process::ExitStatusExt;
    let _ = std::fs::remove_file(&attempt.output_file);
    let error = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => "ended without an exit status".to_string(),
    };
    log.engine_line(&error);
    Ending::Failed { error, exit_code: status.code() }
}

/// SIGTERM to the whole group, SIGKILL after the grace period if the main process is still there, and
/// SIGKILL to whatever else of the group remains.
async fn stop_group(child: &mut Child, pgid: Option<i32>, grace: Duration, log: &LogSink) {
    let Some(pgid) = pgid else { return };
    signal_group(pgid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        log.engine_line(&format!("still running {} after SIGTERM: SIGKILL", humantime::format_duration(grace)));
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(pgid, libc::SIGKILL);
}

/// Waits for the output pipes to close. Processes the task left behind keep them open: they are stopped.
async fn finish_io(
    io: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    done: bool,
    pgid: Option<i32>,
    log: &LogSink,
    grace: Duration,
) {
    if done {
        return;
    }
    let mut io = io;
    if tokio::time::timeout(STRAY_WAIT, &mut io).await.is_ok() {
        return;
    }
    if let Some(pgid) = pgid {
        log.engine_line("processes the task started are still running: stopping them");
        signal_group(pgid, libc::SIGTERM);
        tokio::time::sleep(grace.min(Duration::from_secs(1))).await;
        signal_group(pgid, libc::SIGKILL);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), io).await;
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is already gone yields ESRCH, which is fine.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Lines are read as bytes, kept exactly, so invalid UTF-8 cannot stop the stream; a line longer than
/// `max_line` is logged in pieces, each followed by a marker.
async fn forward(stream: impl AsyncRead + Unpin, kind: Stream, log: LogSink, max_line: usize) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    // A secret cut in two would be masked in neither piece: the bytes where one could start go on with the next.
    let hold = log.longest_secret().saturating_sub(1);
    let mut carry = Vec::new();
    while let Ok(Some(end)) = read_piece(&mut reader, &mut line, max_line).await {
        let piece = if carry.is_empty() {
            std::borrow::Cow::Borrowed(&line[..])
        } else {
            let mut joined = std::mem::take(&mut carry);
            joined.extend_from_slice(&line);
            std::borrow::Cow::Owned(joined)
        };
        let mut keep = piece.len();
        if end == PieceEnd::Cut && hold > 0 {
            keep = keep.saturating_sub(hold);
            carry = piece[keep..].to_vec();
            if keep == 0 {
                continue;
            }
        }
        log.line(kind, &piece[..keep]);
        if end == PieceEnd::Cut {
            log.engine_line(&format!(
                "the line above is longer than {}: split here, it goes on in the next line",
                super::limits::format_size(max_line as u64)
            ));
        }
    }
    if !carry.is_empty() {
        log.line(kind, &carry);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceEnd {
    /// The line ended with a newline (not kept in the piece).
    Newline,
    /// The piece reached the limit; the line goes on.
    Cut,
    /// The stream ended without a final newline.
    Eof,
}

/// Reads the next line, or its next `limit` bytes, into `line`: `None` once the stream is over. Unlike
/// `read_until`, `line` never holds more than `limit` bytes, however long the line.
async fn read_piece(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<PieceEnd>> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((!line.is_empty()).then_some(PieceEnd::Eof));
        }
        if line.len() == limit {
            // A newline right at the limit ends this line: no empty piece after a marker.
            if available[0] == b'\n' {
                reader.consume(1);
                return Ok(Some(PieceEnd::Newline));
            }
            return Ok(Some(PieceEnd::Cut));
        }
        let window = &available[..available.len().min(limit - line.len())];
        if let Some(at) = window.iter().position(|&byte| byte == b'\n') {
            line.extend_from_slice(&window[..at]);
            reader.consume(at + 1);
            return Ok(Some(PieceEnd::Newline));
        }
        let taken = window.len();
        line.extend_from_slice(window);
        reader.consume(taken);
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            let word = &match word.split_once('\n') {
                Some((first, _)) => format!("{first} …"),
                None => word.clone(),
            };
            if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
                word.to_string()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_4_mib_line_without_a_newline_is_logged_in_pieces_each_followed_by_a_marker() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let sink = LogSink::detached(Arc::new(move |stream, text: &str, _| {
            recorder.lock().unwrap().push((stream, text.len(), text.starts_with("[conveyor] the line above")))
        }));
        let limit = 1024 * 1024;
        let stream = tokio::io::repeat(b'x').take(4 * 1024 * 1024 + 10);
        forward(stream, Stream::Stdout, sink.clone(), limit).await;
        let seen = seen.lock().unwrap();
        let pieces: Vec<usize> = seen.iter().filter(|(s, ..)| *s == Stream::Stdout).map(|(_, len, _)| *len).collect();
        let markers = seen.iter().filter(|(s, _, marker)| *s == Stream::Engine && *marker).count();
        // Listeners see each piece cut to EVENT_LINE; the log has all of it (the sink's byte count says so).
        let event_line = super::super::limits::EVENT_LINE;
        assert_eq!(pieces, vec![event_line, event_line, event_line, event_line, 10]);
        assert_eq!(markers, 4, "a marker after every piece the line goes on from");
        assert!(sink.bytes() > 4 * 1024 * 1024, "every byte reached the log");
    }

    #[tokio::test]
    async fn a_secret_across_the_cut_of_a_long_line_is_masked_whole() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let sink = LogSink::detached(Arc::new(move |stream, text: &str, _| {
            if stream == Stream::Stdout {
                recorder.lock().unwrap().push(text.to_string())
            }
        }));
        let mut secrets = crate::tasks::secrets::Secrets::default();
        secrets.add("SECRETVALUE");
        sink.set_secrets(secrets);
        // Cut every 16 bytes, the secret would start in one piece and end in the next.
        forward(&b"0123456789abSECRETVALUExyz\nshort SECRETVALUE\n"[..], Stream::Stdout, sink, 16).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.concat(), "0123456789ab***xyzshort ***", "{seen:?}");
        assert!(seen.iter().all(|piece| piece.len() <= 16 + 10), "a piece grows by at most the held bytes: {seen:?}");
    }

    #[tokio::test]
    async fn the_line_reader_never_holds_more_than_its_limit_however_long_the_line() {
        let limit = 1024 * 1024;
        let mut reader = BufReader::new(tokio::io::repeat(b'x').take(4 * 1024 * 1024).chain(&b"\nend\n"[..]));
        let mut line = Vec::new();
        let mut pieces = Vec::new();
        while let Some(end) = read_piece(&mut reader, &mut line, limit).await.unwrap() {
            assert!(line.capacity() <= limit, "held {} bytes", line.capacity());
            pieces.push((line.len(), end));
        }
        let cut = (limit, PieceEnd::Cut);
        assert_eq!(pieces, vec![cut, cut, cut, (limit, PieceEnd::Newline), (3, PieceEnd::Newline)]);
    }
}
