//! Reading a workflows folder: every `*.toml` below it is one workflow, except `conveyor.toml`, the
//! registry. A bad file never stops the others from loading.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::model::{Registry, Workflow};
use super::problem::Problem;
use super::raw::{RawRegistry, RawWorkflow};
use super::validate::Checker;

pub const REGISTRY_FILE: &str = "conveyor.toml";

/// What a workflows folder holds: the workflows that loaded, and every problem found on the way.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub folder: PathBuf,
    pub registry: Registry,
    pub workflows: Vec<Workflow>,
    /// Files that did not load, with what is wrong in them; the console lists them as broken.
    pub broken: BTreeMap<PathBuf, Vec<Problem>>,
}

impl Catalog {
    pub fn workflow(&self, id: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|workflow| workflow.id == id)
    }

    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.broken.values().flatten()
    }

    pub fn problem_count(&self) -> usize {
        self.broken.values().map(Vec::len).sum()
    }

    fn add_problems(&mut self, problems: Vec<Problem>) {
        for problem in problems {
            self.broken.entry(problem.file.clone()).or_default().push(problem);
        }
    }
}

/// Loads every workflow below `folder`, checked against the folder's `conveyor.toml`.
pub fn load_folder(folder: &Path) -> Catalog {
    let mut catalog = Catalog { folder: folder.to_path_buf(), ..Catalog::default() };
    if !folder.is_dir() {
        catalog.add_problems(vec![Problem::whole_file(
            folder,
            "not a folder: expected a folder of workflow files (*.toml)",
        )]);
        return catalog;
    }
    load_registry(&mut catalog);
    let mut files = Vec::new();
    collect_workflow_files(folder, folder, &mut files, &mut catalog);
    files.sort();
    for file in files {
        load_workflow(&mut catalog, &file);
    }
    catalog
}

/// Loads one file: a workflow (checked against the `conveyor.toml` beside it) or a registry.
pub fn load_file(file: &Path) -> Catalog {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut catalog = Catalog { folder, ..Catalog::default() };
    load_registry(&mut catalog);
    if file.file_name().is_some_and(|name| name == REGISTRY_FILE) {
        return catalog;
    }
    load_workflow(&mut catalog, file);
    catalog
}

fn load_registry(catalog: &mut Catalog) {
    let file = catalog.folder.join(REGISTRY_FILE);
    if !file.exists() {
        return;
    }
    let Some(source) = read(catalog, &file) else { return };
    match toml::from_str::<RawRegistry>(&source) {
        Ok(raw) => {
            let mut checker = Checker::new(&file, &source);
            catalog.registry = checker.registry(raw);
            catalog.add_problems(checker.problems);
        }
        Err(error) => catalog.add_problems(vec![toml_problem(&file, &source, &error)]),
    }
}

fn load_workflow(catalog: &mut Catalog, file: &Path) {
    let Some(source) = read(catalog, file) else { return };
    match parse_workflow(file, &source, &catalog.registry) {
        Ok(workflow) => match catalog.workflow(&workflow.id) {
            Some(first) => {
                let message =
                    format!("duplicate workflow id `{}`: already defined in {}", workflow.id, first.file.display());
                let offset = id_offset(&source);
                catalog.add_problems(vec![Problem::at_offset(file, &source, offset, message)]);
            }
            None => catalog.workflows.push(workflow),
        },
        Err(problems) => catalog.add_problems(problems),
    }
}

/// Checks one workflow file's text against a registry.
pub fn parse_workflow(file: &Path, source: &str, registry: &Registry) -> Result<Workflow, Vec<Problem>> {
    if is_blank(source) {
        return Err(vec![Problem::whole_file(
            file,
            "the file is empty: expected a workflow with `id`, a `[trigger]` and `[[tasks]]`",
        )]);
    }
    let raw = toml::from_str::<RawWorkflow>(source).map_err(|error| vec![toml_problem(file, source, &error)])?;
    let mut checker = Checker::new(file, source);
    let workflow = checker.workflow(raw, registry);
    match workflow {
        Some(workflow) if checker.problems.is_empty() => Ok(workflow),
        _ => Err(checker.problems),
    }
}

fn id_offset(source: &str) -> usize {
    toml::from_str::<RawWorkflow>(source).map(|raw| raw.id.span().start).unwrap_or(0)
}

fn read(catalog: &mut Catalog, file: &Path) -> Option<String> {
    match fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(error) => {
                let offset = error.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
                catalog.add_problems(vec![Problem::at_offset(file, &text, offset, "the file is not valid UTF-8 text")]);
                None
            }
        },
        Err(error) => {
            catalog.add_problems(vec![Problem::whole_file(file, format!("cannot read the file: {error}"))]);
            None
        }
    }
}

/// Nothing but whitespace and comments.
fn is_blank(source: &str) -> bool {
    source.lines().map(str::trim).all(|line| line.is_empty() || line.starts_with('#'))
}

fn toml_problem(file: &Path, source: &str, error: &toml::de::Error) -> Problem {
    let offset = error.span().map_or(0, |span| span.start);
    let message = error.message().trim().replace('\n', " ");
    Problem::at_offset(file, source, offset, message)
}

fn collect_workflow_files(root: &Path, folder: &Path, files: &mut Vec<PathBuf>, catalog: &mut Catalog) {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) => {
            catalog.add_problems(vec![Problem::whole_file(folder, format!("cannot read the folder: {error}"))]);
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_workflow_files(root, &path, files, catalog);
        } else if name.ends_with(".toml") && !(name == REGISTRY_FILE && folder == root) {
            files.push(path);
        }
    }
}
