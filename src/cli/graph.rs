//! `conveyor graph`: a workflow's tasks as a Graphviz (DOT) or Mermaid graph, to paste into docs or render;
//! with `--run`, each task coloured by its state in that run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use crate::definition::{TaskKind, Workflow, load_folder};
use crate::state::TaskState;
use crate::store::StoreLocation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

pub fn run(
    workflows: &Path,
    state: &Path,
    location: &StoreLocation,
    workflow: &str,
    format: Format,
    run: Option<&str>,
) -> ExitCode {
    let catalog = load_folder(workflows);
    let Some(definition) = catalog.workflows.iter().find(|known| known.id == workflow) else {
        let known: Vec<&str> = catalog.workflows.iter().map(|known| known.id.as_str()).collect();
        eprintln!("no workflow `{workflow}` in {} (known: {})", workflows.display(), known.join(", "));
        return ExitCode::FAILURE;
    };
    let states = match run {
        Some(run) => match run_states(state, location, workflow, run) {
            Ok(states) => states,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        },
        None => BTreeMap::new(),
    };
    let text = match format {
        Format::Dot => dot(definition, &states),
        Format::Mermaid => mermaid(definition, &states),
    };
    print!("{text}");
    ExitCode::SUCCESS
}

fn run_states(
    state: &Path,
    location: &StoreLocation,
    workflow: &str,
    run: &str,
) -> Result<BTreeMap<String, TaskState>, String> {
    if *location == StoreLocation::StateFolder && !state.join(crate::store::DATABASE_FILE).exists() {
        return Err(format!("no store in {} (set --state DIR)", state.display()));
    }
    let store = crate::store::open(state, location).map_err(|error| error.to_string())?;
    let id = store.find_run(run).map_err(|error| error.to_string())?.ok_or_else(|| format!("no run `{run}`"))?;
    let record = store.run(&id).map_err(|error| error.to_string())?.ok_or_else(|| format!("no run `{run}`"))?;
    if record.workflow != workflow {
        return Err(format!("run {id} is of workflow {}, not {workflow}", record.workflow));
    }
    let tasks = store.tasks(&id).map_err(|error| error.to_string())?;
    Ok(tasks.into_iter().map(|task| (task.name, task.state)).collect())
}

/// Each task with the tasks it follows: its `depends_on`, or the one before it in a sequence.
fn edges(workflow: &Workflow) -> Vec<(&str, &str)> {
    let mut edges = Vec::new();
    for (index, task) in workflow.tasks.iter().enumerate() {
        if workflow.is_dag() {
            edges.extend(task.depends_on.iter().map(|parent| (parent.as_str(), task.name.as_str())));
        } else if index > 0 {
            edges.push((workflow.tasks[index - 1].name.as_str(), task.name.as_str()));
        }
    }
    edges
}

/// `service GrantIngestionService`: what the task runs, under its name.
fn what(kind: &TaskKind) -> String {
    match kind {
        TaskKind::Service(name) => format!("service {name}"),
        TaskKind::Agent(name) => format!("agent {name}"),
        TaskKind::Layer(name) => format!("layer {name}"),
        TaskKind::Run(_) => "run".into(),
        TaskKind::Command(argv) => format!("command {}", argv.first().map(String::as_str).unwrap_or_default()),
    }
}

/// A fill colour per state, readable on white and in print.
fn colour(state: TaskState) -> &'static str {
    match state {
        TaskState::Succeeded => "#b7e4c7",
        TaskState::Failed => "#f4a6a6",
        TaskState::Running => "#a9d6f5",
        TaskState::RetryWait => "#ffe08a",
        TaskState::WaitingApproval => "#ffc078",
        TaskState::Skipped | TaskState::Cancelled => "#dddddd",
        TaskState::Pending => "#ffffff",
    }
}

/// A DOT string: quotes and backslashes escaped, newlines as DOT's `\n`.
fn dot_quoted(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("\"{escaped}\"")
}

pub fn dot(workflow: &Workflow, states: &BTreeMap<String, TaskState>) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n",
        dot_quoted(&workflow.id)
    );
    for task in &workflow.tasks {
        let mut label = format!("{}\n{}", task.name, what(&task.kind));
        let mut fill = String::new();
        if let Some(state) = states.get(&task.name) {
            label.push_str(&format!("\n{state}"));
            fill = format!(", fillcolor=\"{}\"", colour(*state));
        }
        out.push_str(&format!("  {} [label={}{fill}];\n", dot_quoted(&task.name), dot_quoted(&label)));
    }
    for (from, to) in edges(workflow) {
        out.push_str(&format!("  {} -> {};\n", dot_quoted(from), dot_quoted(to)));
    }
    out.push_str("}\n");
    out
}

/// A Mermaid label: quotes and angle brackets as entities, so no name can end the label or open markup.
fn mermaid_label(text: &str) -> String {
    text.replace('&', "#amp;").replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

pub fn mermaid(workflow: &Workflow, states: &BTreeMap<String, TaskState>) -> String {
    // Ids are positions: task names may hold characters Mermaid reads as syntax.
    let id: BTreeMap<&str, String> =
        workflow.tasks.iter().enumerate().map(|(index, task)| (task.name.as_str(), format!("t{index}"))).collect();
    let mut out = String::from("flowchart LR\n");
    for task in &workflow.tasks {
        let mut label = format!("{}<br/>{}", mermaid_label(&task.name), mermaid_label(&what(&task.kind)));
        if let Some(state) = states.get(&task.name) {
            label.push_str(&format!("<br/>{state}"));
        }
        out.push_str(&format!("  {}[\"{label}\"]\n", id[task.name.as_str()]));
    }
    for (from, to) in edges(workflow) {
        if let (Some(from), Some(to)) = (id.get(from), id.get(to)) {
            out.push_str(&format!("  {from} --> {to}\n"));
        }
    }
    let mut used: Vec<TaskState> = states.values().copied().collect();
    used.sort_by_key(|state| state.as_str());
    used.dedup();
    for state in used {
        out.push_str(&format!("  classDef {} fill:{},stroke:#555\n", state.as_str(), colour(state)));
        let members: Vec<&str> = workflow
            .tasks
            .iter()
            .filter(|task| states.get(&task.name) == Some(&state))
            .map(|task| id[task.name.as_str()].as_str())
            .collect();
        out.push_str(&format!("  class {} {}\n", members.join(","), state.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diamond() -> Workflow {
        let source = r#"id = "Fork"
[[tasks]]
name = "Left"
run = "true"
[[tasks]]
name = "Right.v2"
command = ["/bin/true"]
[[tasks]]
name = "Join"
run = "true"
depends_on = ["Left", "Right.v2"]
"#;
        crate::definition::parse_workflow(Path::new("w.toml"), source, &Default::default()).unwrap()
    }

    #[test]
    fn dot_draws_each_task_and_edge_with_states_filled() {
        let states =
            BTreeMap::from([("Left".to_string(), TaskState::Succeeded), ("Join".to_string(), TaskState::Failed)]);
        let text = dot(&diamond(), &states);
        assert_eq!(
            text,
            "digraph \"Fork\" {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n  \"Left\" [label=\"Left\\nrun\\nsucceeded\", fillcolor=\"#b7e4c7\"];\n  \"Right.v2\" [label=\"Right.v2\\ncommand /bin/true\"];\n  \"Join\" [label=\"Join\\nrun\\nfailed\", fillcolor=\"#f4a6a6\"];\n  \"Left\" -> \"Join\";\n  \"Right.v2\" -> \"Join\";\n}\n"
        );
    }

    #[test]
    fn mermaid_uses_safe_ids_and_classes_per_state() {
        let states =
            BTreeMap::from([("Left".to_string(), TaskState::Succeeded), ("Join".to_string(), TaskState::Succeeded)]);
        let text = mermaid(&diamond(), &states);
        assert_eq!(
            text,
            "flowchart LR\n  t0[\"Left<br/>run<br/>succeeded\"]\n  t1[\"Right.v2<br/>command /bin/true\"]\n  t2[\"Join<br/>run<br/>succeeded\"]\n  t0 --> t2\n  t1 --> t2\n  classDef succeeded fill:#b7e4c7,stroke:#555\n  class t0,t2 succeeded\n"
        );
    }

    #[test]
    fn quotes_and_markup_cannot_end_a_label() {
        assert_eq!(dot_quoted("a \"b\"\\\nc"), "\"a \\\"b\\\"\\\\\\nc\"");
        assert_eq!(mermaid_label("<b>\"x\" & y</b>"), "#lt;b#gt;#quot;x#quot; #amp; y#lt;/b#gt;");
    }

    #[test]
    fn a_sequence_is_drawn_as_a_chain() {
        let source = "id = \"Seq\"\n[[tasks]]\nname = \"A\"\nrun = \"true\"\n[[tasks]]\nname = \"B\"\nrun = \"true\"\n";
        let workflow = crate::definition::parse_workflow(Path::new("w.toml"), source, &Default::default()).unwrap();
        assert!(mermaid(&workflow, &BTreeMap::new()).ends_with("  t0 --> t1\n"));
    }
}
