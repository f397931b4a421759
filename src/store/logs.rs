//! Reading an attempt's log, wherever it was kept: its file under the state folder, or the store itself when
//! a quiet attempt's few engine lines never got a file (`AttemptRecord::log_text`). A console on another
//! host than the engine will read logs the database keeps through the same trait.

use std::io::{self, Read};

use super::AttemptRecord;

pub trait LogReader: Send + Sync {
    /// The attempt's whole log as it stands now, from its first byte; an error says why there is none.
    fn open(&self, attempt: &AttemptRecord) -> io::Result<Box<dyn Read + Send>>;
}

/// Logs on this machine: the attempt's file, else the text the store kept for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalLogs;

impl LogReader for LocalLogs {
    fn open(&self, attempt: &AttemptRecord) -> io::Result<Box<dyn Read + Send>> {
        // The file wins: a viewer may have written the kept text out to it, and a live attempt's file grows.
        match (std::fs::File::open(&attempt.log_path), &attempt.log_text) {
            (Ok(file), _) => Ok(Box::new(file)),
            (Err(_), Some(text)) => Ok(Box::new(io::Cursor::new(text.clone().into_bytes()))),
            (Err(error), None) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn attempt(dir: &std::path::Path, log_text: Option<&str>) -> AttemptRecord {
        let mut attempt = AttemptRecord::started("r1", "T", 1, "svc", Utc::now(), dir.join("T.1.log"));
        attempt.log_text = log_text.map(str::to_string);
        attempt
    }

    fn read(attempt: &AttemptRecord) -> io::Result<String> {
        let mut text = String::new();
        LocalLogs.open(attempt)?.read_to_string(&mut text)?;
        Ok(text)
    }

    #[test]
    fn a_log_is_read_from_its_file_else_from_the_text_the_store_kept_else_the_files_error_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let kept = attempt(dir.path(), Some("[conveyor] exit status 0\n"));
        assert_eq!(read(&kept).unwrap(), "[conveyor] exit status 0\n");
        std::fs::write(&kept.log_path, "from the file\n").unwrap();
        assert_eq!(read(&kept).unwrap(), "from the file\n", "the file wins over the kept text");
        let neither = attempt(&dir.path().join("missing"), None);
        assert_eq!(read(&neither).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
