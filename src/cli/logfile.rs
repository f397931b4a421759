//! The daemon's own log file, `STATE/conveyor.log`, kept to a bounded size: past its limit it becomes
//! `conveyor.log.1` (the older ones move up to `.2`, `.3`; the oldest is dropped) and a new file starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Each file's size before it is rotated.
pub const LOG_LIMIT: u64 = 10 * 1024 * 1024;
/// Rotated files kept beside the current one.
pub const LOG_KEEP: usize = 3;

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
    keep: usize,
    /// The last byte written ended a line: a rotation never splits one.
    at_line_start: bool,
}

impl RotatingFile {
    pub fn open(path: &Path, limit: u64, keep: usize) -> std::io::Result<RotatingFile> {
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_path_buf(), file, written, limit, keep, at_line_start: true })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = open_append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

impl Write for RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.at_line_start && self.written > 0 && self.written + bytes.len() as u64 > self.limit {
            self.rotate()?;
        }
        let written = self.file.write(bytes)?;
        self.written += written as u64;
        if written > 0 {
            self.at_line_start = bytes[written - 1] == b'\n';
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_limit_moves_aside_and_only_a_few_old_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conveyor.log");
        let mut log = RotatingFile::open(&path, 100, 2).unwrap();
        // Whole lines, one write each, as the tracing layer writes its events.
        for n in 0..10 {
            log.write_all(format!("{n:0>39}\n").as_bytes()).unwrap();
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("conveyor.log"), format!("{:0>39}\n{:0>39}\n", 8, 9));
        assert_eq!(read("conveyor.log.1"), format!("{:0>39}\n{:0>39}\n", 6, 7));
        assert_eq!(read("conveyor.log.2"), format!("{:0>39}\n{:0>39}\n", 4, 5));
        assert!(!dir.path().join("conveyor.log.3").exists(), "the oldest are dropped");
        let reopened = RotatingFile::open(&path, 100, 2).unwrap();
        assert_eq!(reopened.written, 80, "a restart counts what the file already holds");
    }
}
