use std::path::Path;
use std::process::ExitCode;

use crate::definition::{load_file, load_folder};

pub fn run(path: &Path) -> ExitCode {
    let catalog = if path.is_dir() { load_folder(path) } else { load_file(path) };
    if !path.exists() {
        eprintln!("{}: no such file or folder", path.display());
        return ExitCode::FAILURE;
    }
    let mut problems: Vec<_> = catalog.problems().collect();
    problems.sort();
    for problem in &problems {
        eprintln!("{problem}");
    }
    let workflows = catalog.workflows.len();
    let tasks: usize = catalog.workflows.iter().map(|workflow| workflow.tasks.len()).sum();
    if problems.is_empty() {
        println!("ok: {workflows} workflow(s), {tasks} task(s) in {}", path.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) in {} file(s); {workflows} workflow(s) valid", problems.len(), catalog.broken.len());
        ExitCode::FAILURE
    }
}
