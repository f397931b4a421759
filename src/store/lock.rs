//! One engine owns a state folder at a time: an exclusive lock on `STATE/engine.lock`, which also names
//! the holder's PID for the message a second engine prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::StoreError;

pub const LOCK_FILE: &str = "engine.lock";

/// Held for as long as the engine runs; the operating system releases it if the process dies.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        super::create_state_dir(state_dir)?;
        let path = state_dir.join(LOCK_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let pid = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
                return Err(StoreError::Locked { state_dir: state_dir.to_path_buf(), pid });
            }
            Err(TryLockError::Error(error)) => return Err(error.into()),
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(StateLock { _file: file, path })
    }

    /// Whether some engine holds the folder now (without keeping the lock).
    pub fn is_held(state_dir: &Path) -> bool {
        matches!(StateLock::acquire(state_dir), Err(StoreError::Locked { .. }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let error = StateLock::acquire(dir.path()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "another engine (PID {}) holds the state folder {}: stop it, or point --state elsewhere",
                std::process::id(),
                dir.path().display()
            )
        );
        assert!(StateLock::is_held(dir.path()));
        drop(first);
        assert!(!StateLock::is_held(dir.path()));
        assert!(StateLock::acquire(dir.path()).is_ok());
    }
}
