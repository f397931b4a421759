//! The file-arrival trigger: which folder to watch for a `watch` pattern, which files match, and when a file
//! counts as completely written.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher};

/// How long a file must stay the same size and modification time before it is taken as complete.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// A `watch` pattern resolved against the workflows folder.
#[derive(Debug, Clone)]
pub struct FilePattern {
    /// The deepest folder without wildcards: what is watched.
    pub root: PathBuf,
    pattern: glob::Pattern,
    /// `**` in the pattern: the root is watched with its sub-folders.
    pub recursive: bool,
    /// The root with its links resolved, found the first time a link needs it.
    real_root: std::sync::OnceLock<PathBuf>,
}

impl FilePattern {
    pub fn new(watch: &str, workflows_dir: &Path) -> Result<FilePattern, String> {
        let full = if Path::new(watch).is_absolute() { PathBuf::from(watch) } else { workflows_dir.join(watch) };
        let text = full.to_string_lossy().into_owned();
        let pattern = glob::Pattern::new(&text).map_err(|error| format!("bad `watch` pattern `{watch}`: {error}"))?;
        let mut root = PathBuf::new();
        for component in full.components() {
            let part = component.as_os_str().to_string_lossy();
            if part.contains(['*', '?', '[']) {
                break;
            }
            root.push(component);
        }
        if root == full {
            // No wildcard: the pattern names one file; watch its folder.
            root.pop();
        }
        let recursive = text.contains("**");
        Ok(FilePattern { root, pattern, recursive, real_root: Default::default() })
    }

    /// Whether `path` fits the pattern. A name that is not UTF-8 is matched in its escaped form (`file_text`),
    /// which the glob can read; the escape never adds a `/`, so it cannot cross a folder.
    pub fn matches(&self, path: &Path) -> bool {
        let options = glob::MatchOptions { require_literal_separator: !self.recursive, ..Default::default() };
        path.components().all(|c| !matches!(c, Component::ParentDir))
            && self.pattern.matches_with(&file_text(path), options)
    }

    /// Paths matching now, for the scan when watching starts: files and symbolic links, which then go through
    /// `admit` exactly as a path reported live does, so both see one rule.
    pub fn existing(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        collect(&self.root, self.recursive, &mut found);
        found.retain(|path| self.matches(path));
        found.sort();
        found
    }

    /// The one rule for a path, at start-up and live: a regular file matching the pattern is a candidate; so is
    /// a symbolic link whose final target is a regular file inside the watched folder. A link leading outside
    /// is refused, as following it would let anyone who can write the folder feed the workflow any file the
    /// engine can read.
    /// For a path that `matches`.
    pub fn admit(&self, path: &Path) -> Admit {
        let Ok(own) = std::fs::symlink_metadata(path) else { return Admit::No };
        if !own.file_type().is_symlink() {
            return fingerprint_of(&own).map_or(Admit::No, Admit::File);
        }
        let Ok(target) = std::fs::canonicalize(path) else { return Admit::No };
        // The root is resolved too, so a watched folder reached through a link still holds its own files.
        let root =
            self.real_root.get_or_init(|| std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone()));
        if !target.starts_with(root) {
            return Admit::Outside(target);
        }
        fingerprint(path).map_or(Admit::No, Admit::File)
    }
}

/// What `FilePattern::admit` makes of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// A file to process, as it is now.
    File(Fingerprint),
    /// A symbolic link whose target (given) is outside the watched folder: not processed.
    Outside(PathBuf),
    /// Not a matching file (gone, a folder, a broken link, another name).
    No,
}

fn collect(dir: &Path, recursive: bool, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() && recursive => collect(&path, recursive, found),
            // A link is listed whatever it points to: `admit` decides, as it does for a link that arrives live.
            Ok(kind) if kind.is_file() || kind.is_symlink() => found.push(path),
            _ => {}
        }
    }
}

/// A path as text for a run's input and the processed-files record. A UTF-8 path is itself. Any other is
/// escaped losslessly: `\` becomes `\\`, each byte that is not part of valid UTF-8 becomes `\xNN`, the rest is
/// kept (so `printf '%b'` in bash, or Python's `codecs.escape_decode`, gives the bytes back).
pub fn file_text(path: &Path) -> String {
    if let Some(text) = path.to_str() {
        return text.to_string();
    }
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        text.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// Whether `file_text` had to escape the path.
pub fn is_escaped(path: &Path) -> bool {
    path.to_str().is_none()
}

/// What a settle check compares: a file is complete once this stays the same for the settle interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub modified: DateTime<Utc>,
}

pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    fingerprint_of(&std::fs::metadata(path).ok()?)
}

fn fingerprint_of(metadata: &std::fs::Metadata) -> Option<Fingerprint> {
    if !metadata.is_file() {
        return None;
    }
    let modified: DateTime<Utc> = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH).into();
    Some(Fingerprint { size: metadata.len(), modified })
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Something happened to this path.
    Path(PathBuf),
    /// Events were lost (the kernel's queue overflowed, or the watch failed): look at the folder again.
    Lost,
}

/// Whether an event can mean the file's bytes or name changed: reading a file (open, read, close without
/// writing, a new access time) cannot, and counting it would let every reader of the folder wake its watchers.
fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Watches `folder` (created if missing) and calls `seen` with each path whose bytes or name may have changed;
/// reads are not reported. The watcher stops when dropped.
pub fn watch(
    folder: &Path,
    recursive: bool,
    seen: impl Fn(Seen) + Send + 'static,
) -> Result<notify::RecommendedWatcher, String> {
    std::fs::create_dir_all(folder)
        .map_err(|error| format!("cannot create the watched folder {}: {error}", folder.display()))?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if event.need_rescan() => seen(Seen::Lost),
        Ok(event) if !may_change(&event.kind) => {}
        Ok(event) => {
            for path in event.paths {
                seen(Seen::Path(path));
            }
        }
        Err(_) => seen(Seen::Lost),
    })
    .map_err(|error| format!("cannot watch files: {error}"))?;
    let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    watcher.watch(folder, mode).map_err(|error| format!("cannot watch {}: {error}", folder.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_pattern_watches_its_folder_under_the_workflows_folder() {
        let pattern = FilePattern::new("inbox/*.json", Path::new("/srv/workflows")).unwrap();
        assert_eq!(pattern.root, PathBuf::from("/srv/workflows/inbox"));
        assert!(!pattern.recursive);
        assert!(pattern.matches(Path::new("/srv/workflows/inbox/a.json")));
        assert!(!pattern.matches(Path::new("/srv/workflows/inbox/a.json.part")));
        assert!(!pattern.matches(Path::new("/srv/workflows/inbox/deeper/a.json")));
    }

    #[test]
    fn absolute_and_recursive_patterns() {
        let pattern = FilePattern::new("/data/drop/**/*.csv", Path::new("/srv/workflows")).unwrap();
        assert_eq!(pattern.root, PathBuf::from("/data/drop"));
        assert!(pattern.recursive);
        assert!(pattern.matches(Path::new("/data/drop/2026/11/x.csv")));
        let single = FilePattern::new("ready.flag", Path::new("/srv/w")).unwrap();
        assert_eq!(single.root, PathBuf::from("/srv/w"));
        assert!(single.matches(Path::new("/srv/w/ready.flag")));
    }

    #[test]
    fn existing_files_are_found_for_the_first_scan() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        std::fs::write(dir.path().join("inbox/b.json"), "{}").unwrap();
        std::fs::write(dir.path().join("inbox/a.json"), "{}").unwrap();
        std::fs::write(dir.path().join("inbox/c.txt"), "").unwrap();
        let pattern = FilePattern::new("inbox/*.json", dir.path()).unwrap();
        let names: Vec<String> =
            pattern.existing().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["a.json", "b.json"]);
        assert_eq!(fingerprint(&dir.path().join("inbox/a.json")).unwrap().size, 2);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_matched_and_written_with_its_bytes_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let path = |bytes: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
        assert_eq!(file_text(Path::new("/in/a\\b.json")), "/in/a\\b.json", "a UTF-8 name is itself");
        assert_eq!(file_text(&path(b"/in/\xffa\\\xc3.json")), "/in/\\xffa\\\\\\xc3.json");
        assert_eq!(file_text(&path(&["/in/é".as_bytes(), b"\xff"].concat())), "/in/é\\xff");
        let pattern = FilePattern::new("in/*.json", Path::new("/")).unwrap();
        assert!(pattern.matches(&path(b"/in/\xff.json")));
        assert!(!pattern.matches(&path(b"/in/\xff.txt")));
    }

    #[test]
    fn reading_a_file_is_not_a_change_but_closing_it_after_writing_is() {
        use notify::event::{CreateKind, RemoveKind};
        assert!(!may_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!may_change(&EventKind::Access(AccessKind::Read)));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(AccessMode::Any))));
        assert!(!may_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
        assert!(may_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(may_change(&EventKind::Create(CreateKind::File)));
        assert!(may_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(may_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime))));
        assert!(may_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn a_watch_reports_a_write_but_not_a_read_before_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("read.toml"), "id = \"R\"\n").unwrap();
        let (sender, seen) = std::sync::mpsc::channel();
        let _watcher = watch(dir.path(), false, move |note| drop(sender.send(note))).unwrap();
        std::fs::read_to_string(dir.path().join("read.toml")).unwrap();
        // The kernel reports events in order, so the write is a barrier: anything the read caused comes first.
        std::fs::write(dir.path().join("written.toml"), "").unwrap();
        let first = seen.recv_timeout(Duration::from_secs(30)).expect("the write is reported");
        assert_eq!(first, Seen::Path(dir.path().join("written.toml")));
    }
}
