//! Hot reload: the workflows folder is watched; changed files take effect without a restart.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Actor, Internal};
use crate::definition::{REGISTRY_FILE, load_folder};
use crate::engine::Event;
use crate::trigger::files::Seen;

/// Editors write a file in several steps; changes are gathered for this long before the folder is read.
const DEBOUNCE: Duration = Duration::from_millis(300);

impl Actor {
    pub(super) fn watch_folder(&mut self) -> Result<(), String> {
        // Any change means "read the folder again": when the queue is full, another event adds nothing.
        let (raw, mut changes) = tokio::sync::mpsc::channel::<PathBuf>(64);
        let watcher = crate::trigger::files::watch(&self.config.workflows_dir, true, move |seen| {
            let path = match seen {
                Seen::Path(path) => path,
                Seen::Lost => PathBuf::from("lost.toml"),
            };
            let _ = raw.try_send(path);
        })?;
        let internal = self.internal.clone();
        let folder = self.config.workflows_dir.clone();
        let state_dir = self.config.state_dir.clone();
        let mut last = folder_print(&folder, &state_dir);
        tokio::spawn(async move {
            while let Some(path) = changes.recv().await {
                if !is_definition(&path, &state_dir) {
                    continue;
                }
                let settle = tokio::time::sleep(DEBOUNCE);
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        more = changes.recv() => if more.is_none() { return },
                    }
                }
                // Only new bytes or a new set of files are worth a reload: rewriting a file as it was, or a
                // lost-events rescan that finds nothing new, would reload (and announce) nothing.
                let (scanned, skipped) = (folder.clone(), state_dir.clone());
                let Ok(print) = tokio::task::spawn_blocking(move || folder_print(&scanned, &skipped)).await else {
                    return;
                };
                if print == last {
                    continue;
                }
                last = print;
                // Reading and validating a large folder takes time: it happens here, never on the engine's loop,
                // which only applies the result.
                let folder = folder.clone();
                let Ok(catalog) = tokio::task::spawn_blocking(move || {
                    crate::failpoint::hit("reload.load");
                    load_folder(&folder)
                })
                .await
                else {
                    return;
                };
                if internal.send(Internal::Reload(Box::new(catalog))).is_err() {
                    return;
                }
            }
        });
        self.folder_watch = Some(watcher);
        Ok(())
    }

    /// Applies the folder as read again. Runs in flight keep the definition they started with.
    pub(super) fn reload(&mut self, catalog: crate::definition::Catalog) {
        let registry_file = self.config.workflows_dir.join(REGISTRY_FILE);
        let registry_problems = catalog.broken.get(&registry_file).cloned().unwrap_or_default();
        if registry_problems.is_empty() {
            self.registry = catalog.registry.clone();
        }
        let mut changed = Vec::new();
        for workflow in &catalog.workflows {
            let same = self
                .workflows
                .get(&workflow.id)
                .is_some_and(|known| known.source == workflow.source && known.file == workflow.file);
            if same {
                continue;
            }
            let was_active = self.scheduler.is_active(&workflow.id);
            self.workflows.insert(workflow.id.clone(), Arc::new(workflow.clone()));
            if (was_active || self.activate_all)
                && let Err(error) = self.activate(&workflow.id)
            {
                self.alert("error", Some(&workflow.id), None, None, format!("{}: {error}", workflow.id));
            }
            changed.push(workflow.id.clone());
        }
        let mut removed = Vec::new();
        let known: Vec<(String, PathBuf)> = self.workflows.values().map(|w| (w.id.clone(), w.file.clone())).collect();
        for (id, file) in known {
            if catalog.workflow(&id).is_some() {
                continue;
            }
            if catalog.broken.contains_key(&file) {
                // Keeps running on its last good definition; the alert below names the problem.
                continue;
            }
            self.deactivate(&id);
            self.workflows.remove(&id);
            removed.push(id);
        }
        for (file, problems) in &catalog.broken {
            let first = problems[0].to_string();
            if self.broken_reported.get(file) == Some(&first) {
                continue;
            }
            let keeping = self.workflows.values().find(|w| &w.file == file).map(|w| w.id.clone());
            let message = match &keeping {
                Some(id) => format!("{first} (workflow {id} keeps its last good definition)"),
                None if file == &registry_file => format!("{first} (the last good registry stays in use)"),
                None => first.clone(),
            };
            self.alert("error", keeping.as_deref(), None, None, message);
            self.broken_reported.insert(file.clone(), first);
        }
        self.broken_reported.retain(|file, _| catalog.broken.contains_key(file));
        let broken: Vec<String> = catalog.broken.keys().map(|file| file.display().to_string()).collect();
        if !changed.is_empty() || !removed.is_empty() {
            tracing::debug!("workflows reloaded: {} changed or added, {} removed", changed.len(), removed.len());
            // In the audit trail too: what the definitions became, and when, for whoever reads the store (a
            // console attached to this engine shows it from there).
            let record =
                serde_json::json!({"command": "reload", "changed": changed, "removed": removed, "broken": broken});
            let outcome = format!("{} changed or added, {} removed", changed.len(), removed.len());
            if let Err(error) = self.store.audit(self.now(), "engine", "reload", &record.to_string(), true, &outcome) {
                tracing::warn!("recording the reload in the audit trail failed: {error}");
            }
        }
        self.publish(Event::Reloaded { changed, removed, broken });
    }
}

/// A `.toml` under the workflows folder, not inside the state folder (which may live there).
fn is_definition(path: &Path, state_dir: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "toml") && !path.starts_with(state_dir)
}

/// A hash of the definition files `load_folder` reads: their paths and their bytes.
fn folder_print(folder: &Path, state_dir: &Path) -> u64 {
    let mut files = Vec::new();
    definition_files(folder, state_dir, &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        // An unreadable file hashes as such, and again as its bytes once it can be read.
        std::fs::read(&file).ok().hash(&mut hasher);
    }
    hasher.finish()
}

fn definition_files(dir: &Path, state_dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        // Hidden entries are skipped as `load_folder` skips them.
        if entry.file_name().to_string_lossy().starts_with('.') || path.starts_with(state_dir) {
            continue;
        }
        if path.is_dir() {
            definition_files(&path, state_dir, files);
        } else if is_definition(&path, state_dir) {
            files.push(path);
        }
    }
}
