//! Logs readable from any host: when an attempt ends, the tail of its log is kept in `log_chunks` beside
//! its record, and a reader on a host without the file reads the chunks instead. A running attempt offered
//! to the engines is read from the lines its worker has shipped so far; one the leader runs itself (an HTTP
//! call, an agent) is only on the leader's host until it ends.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::connection::{Conn, Reader};
use super::rows::{all, get};
use crate::state::AttemptState;
use crate::store::{AttemptRecord, LogReader, Result};

/// How much of a log the database keeps: its end, where a failure is told.
pub(super) const KEPT: usize = 1024 * 1024;
/// One row's bytes: small enough that no single value strains a connection or a page of TOAST.
pub(super) const CHUNK: usize = 256 * 1024;

/// Replaces the chunks of a finished attempt with its log as it stands (nothing for a running one). Runs on
/// the store's thread, inside the write of the attempt's record, so the two land together. A log that cannot
/// be read is not kept rather than refusing the record.
pub(super) fn keep(conn: &mut Conn, attempt: &AttemptRecord) -> Result<()> {
    if attempt.state == AttemptState::Running {
        return Ok(());
    }
    let bytes = match kept_bytes(attempt) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(()),
        Err(error) => {
            tracing::warn!(
                "the log of {} task {} attempt {} is not kept in the database: {}: {error}",
                attempt.run_id,
                attempt.task,
                attempt.attempt,
                attempt.log_path.display()
            );
            return Ok(());
        }
    };
    let (run, task, number) = (&attempt.run_id, &attempt.task, i64::from(attempt.attempt));
    conn.execute("DELETE FROM log_chunks WHERE run_id = $1 AND task = $2 AND attempt = $3", &[run, task, &number])?;
    for (seq, chunk) in bytes.chunks(CHUNK).enumerate() {
        conn.execute(
            "INSERT INTO log_chunks (run_id, task, attempt, seq, bytes) VALUES ($1, $2, $3, $4, $5)",
            &[run, task, &number, &(seq as i64), &chunk],
        )?;
    }
    Ok(())
}

/// The log file's last `KEPT` bytes, with a first line saying so when it was cut; `None` when the attempt
/// has no log file (its log, if any, is the text its record carries).
fn kept_bytes(attempt: &AttemptRecord) -> io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(&attempt.log_path) {
        Ok(file) => file,
        // No file: the log is the text the record carries (`attempts.log_text`), which every host reads
        // already; copying it into chunks cost two statements per quick attempt for nothing.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    // Only the tail is read: a log of gigabytes costs no more than one of a megabyte.
    file.seek(SeekFrom::Start(length.saturating_sub(KEPT as u64)))?;
    let mut end = Vec::with_capacity(KEPT.min(length as usize));
    file.take(KEPT as u64).read_to_end(&mut end)?;
    Ok(Some(tail(&end, length, &attempt.log_path)))
}

/// `end` as kept: whole when it is the whole log, else from its first full line on, after a line that says
/// what was left out and where the whole log is.
fn tail(end: &[u8], length: u64, path: &Path) -> Vec<u8> {
    if length as usize <= KEPT {
        return end.to_vec();
    }
    let end = &end[end.len().saturating_sub(KEPT)..];
    let from = end.iter().position(|byte| *byte == b'\n').map_or(0, |newline| newline + 1);
    let kept = &end[from..];
    let mut text = format!(
        "[conveyor] the database keeps only the last {} of this log ({length} bytes in all; the whole log is {} on its engine's host)\n",
        if kept.len() < KEPT { format!("{} bytes", kept.len()) } else { "1 MiB".into() },
        path.display()
    )
    .into_bytes();
    text.extend_from_slice(kept);
    text
}

/// Logs on any host: the attempt's file where it exists (the engine's host, or a viewer that wrote it out),
/// else the chunks the database keeps, else the text its record carries.
pub(super) struct ClusterLogs(pub(super) Reader);

impl ClusterLogs {
    /// The lines a worker has shipped so far of an attempt it runs (offered work), as its log's text.
    fn shipped(&self, attempt: &AttemptRecord) -> Result<Option<String>> {
        let (run, task, number) = (attempt.run_id.clone(), attempt.task.clone(), i64::from(attempt.attempt));
        self.0.run(move |conn| {
            let work = conn.query_opt(
                "SELECT id FROM work WHERE run_id = $1 AND task = $2 AND attempt = $3",
                &[&run, &task, &number],
            )?;
            let Some(work) = work else { return Ok(None) };
            let id: i64 = get(&work, "id")?;
            let shipments = conn.query("SELECT lines FROM work_lines WHERE work = $1 ORDER BY seq", &[&id])?;
            let mut text = String::new();
            for row in shipments {
                for (_, line) in super::work::unpack(get(&row, "lines")?)? {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            Ok(Some(text))
        })
    }
}

impl LogReader for ClusterLogs {
    fn open(&self, attempt: &AttemptRecord) -> io::Result<Box<dyn Read + Send>> {
        let file_error = match std::fs::File::open(&attempt.log_path) {
            Ok(file) => return Ok(Box::new(file)),
            Err(error) => error,
        };
        let (run, task, number) = (attempt.run_id.clone(), attempt.task.clone(), i64::from(attempt.attempt));
        let chunks: Vec<Vec<u8>> = self
            .0
            .run(move |conn| {
                let found = conn.query(
                    "SELECT bytes FROM log_chunks WHERE run_id = $1 AND task = $2 AND attempt = $3 ORDER BY seq",
                    &[&run, &task, &number],
                )?;
                all(found, |row| get(row, "bytes"))
            })
            .map_err(io::Error::other)?;
        if !chunks.is_empty() {
            return Ok(Box::new(io::Cursor::new(chunks.concat())));
        }
        if attempt.state == AttemptState::Running
            && let Some(shipped) = self.shipped(attempt).map_err(io::Error::other)?
        {
            return Ok(Box::new(io::Cursor::new(shipped.into_bytes())));
        }
        match &attempt.log_text {
            Some(text) => Ok(Box::new(io::Cursor::new(text.clone().into_bytes()))),
            None if attempt.state == AttemptState::Running => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: the attempt is still running on another host; its log reaches the database when it ends",
                    attempt.log_path.display()
                ),
            )),
            None => Err(file_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_within_the_limit_is_kept_whole_and_a_longer_one_from_a_full_line_after_a_note() {
        let path = Path::new("/state/logs/r/T.1.log");
        assert_eq!(tail(b"one\ntwo\n", 8, path), b"one\ntwo\n");
        let mut long = Vec::new();
        while long.len() < KEPT + 100 {
            long.extend_from_slice(b"a line of the log\n");
        }
        let end = &long[long.len() - KEPT..];
        let kept = String::from_utf8(tail(end, long.len() as u64, path)).unwrap();
        let (note, rest) = kept.split_once('\n').unwrap();
        assert!(note.starts_with("[conveyor] the database keeps only the last "), "{note}");
        assert!(note.contains(&format!("({} bytes in all; the whole log is {}", long.len(), path.display())), "{note}");
        assert!(rest.starts_with("a line of the log\n"), "cut at a line's start");
        assert!(rest.len() <= KEPT && long.ends_with(rest.as_bytes()));
    }
}
