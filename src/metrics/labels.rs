//! Label values come from loaded definitions only: a workflow's id and its tasks' names. Anything else
//! (a run id, a task of a workflow since removed) is counted under `other`, so the number of series stays
//! bounded however long the engine runs.

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{Catalog, Workflow};

/// The label value for whatever no loaded definition names.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Workflow id → the names of its tasks and its handlers.
    workflows: BTreeMap<String, BTreeSet<String>>,
}

impl Known {
    pub fn from_catalog(catalog: &Catalog) -> Known {
        let mut known = Known::default();
        known.add(&catalog.workflows);
        known
    }

    /// Adds (or widens) what these definitions name. A workflow whose file breaks keeps its last good
    /// definition in the engine, so nothing is forgotten here until the workflow is removed.
    pub fn add(&mut self, workflows: &[Workflow]) {
        for workflow in workflows {
            let handlers = [&workflow.on_failure, &workflow.on_success, &workflow.on_cancel];
            let tasks = workflow.tasks.iter().chain(handlers.into_iter().flatten()).map(|task| task.name.clone());
            self.workflows.entry(workflow.id.clone()).or_default().extend(tasks);
        }
    }

    pub fn remove(&mut self, workflow: &str) {
        self.workflows.remove(workflow);
    }

    pub fn workflows(&self) -> impl Iterator<Item = &str> {
        self.workflows.keys().map(String::as_str)
    }

    pub fn workflow(&self, id: &str) -> String {
        if self.workflows.contains_key(id) { id.to_string() } else { OTHER.to_string() }
    }

    pub fn task(&self, workflow: &str, task: &str) -> String {
        match self.workflows.get(workflow) {
            Some(tasks) if tasks.contains(task) => task.to_string(),
            _ => OTHER.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_from_definitions_become_labels() {
        let folder = tempfile::tempdir().unwrap();
        let source = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = 'true'\n[on_failure]\nname = \"Tell\"\nrun = 'true'\n";
        std::fs::write(folder.path().join("w.toml"), source).unwrap();
        let catalog = crate::definition::load_folder(folder.path());
        assert_eq!(catalog.problem_count(), 0, "{:?}", catalog.broken);
        let mut known = Known::from_catalog(&catalog);
        assert_eq!(known.workflow("W"), "W");
        assert_eq!(known.task("W", "A"), "A");
        assert_eq!(known.task("W", "Tell"), "Tell", "a handler is a task of its workflow");
        assert_eq!(known.workflow("20261126-101010-abcd"), OTHER);
        assert_eq!(known.task("W", "B"), OTHER);
        assert_eq!(known.task("Gone", "A"), OTHER);
        known.remove("W");
        assert_eq!(known.workflow("W"), OTHER);
    }
}
