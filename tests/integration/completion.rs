//! Dynamic shell completion, asked of the real binary as a shell's script asks it, and through bash itself.

use std::path::Path;
use std::process::Output;

use crate::common::*;

const HELLO: &str =
    "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo hi'\n[[tasks]]\nname = \"Part\"\nrun = 'echo bye'\n";
const DAILY: &str =
    "id = \"Daily\"\n[trigger]\ntype = \"schedule\"\ncron = \"0 2 * * *\"\n[[tasks]]\nname = \"Dump\"\nrun = 'true'\n";

/// As bash's script calls the binary: the words of the line after `--`, the cursor's word by its index.
fn complete(dir: &Path, words: &[&str]) -> Vec<String> {
    let output: Output = conveyor()
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_IFS", "\n")
        .arg("--")
        .args(words)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).lines().map(str::to_string).collect()
}

fn folder_with_a_run() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "hello.toml", HELLO);
    write(&dir.path().join("workflows"), "daily.toml", DAILY);
    let output = run(&["run", "Hello"], dir.path());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let id = store.runs(Some("Hello"), 1).unwrap()[0].id.clone();
    (dir, id)
}

#[test]
fn completion_offers_workflow_ids_recent_runs_and_the_named_runs_tasks() {
    let (dir, id) = folder_with_a_run();
    let dir = dir.path();
    assert_eq!(complete(dir, &["conveyor", "backfill", "D"]), ["Daily"]);
    let workflows = complete(dir, &["conveyor", "trigger", ""]);
    assert!(workflows.contains(&"Daily".to_string()) && workflows.contains(&"Hello".to_string()), "{workflows:?}");
    assert_eq!(complete(dir, &["conveyor", "logs", &id[..12]]), [id.as_str()]);
    let tasks = complete(dir, &["conveyor", "logs", &id, ""]);
    assert!(tasks.contains(&"Greet".to_string()) && tasks.contains(&"Part".to_string()), "{tasks:?}");
    assert!(!tasks.contains(&"Dump".to_string()), "only the named run's tasks: {tasks:?}");
    assert_eq!(complete(dir, &["conveyor", "retry", &id, "P"]), ["Part"]);
    // Fish cuts the line at the cursor and shows each candidate's help after a tab.
    let fish = conveyor()
        .env("COMPLETE", "fish")
        .args(["--", "conveyor", "cancel", &id[..12]])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(text(&fish.stdout).trim_end(), format!("{id}\tHello succeeded"));
    // --state as given on the line is where the runs are read.
    std::fs::rename(dir.join(".conveyor"), dir.join("elsewhere")).unwrap();
    assert!(complete(dir, &["conveyor", "cancel", &id[..12]]).is_empty());
    assert_eq!(complete(dir, &["conveyor", "--state", "elsewhere", "cancel", &id[..12]]), [id.as_str()]);
}

#[test]
fn completion_reads_no_store_into_being() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "hello.toml", HELLO);
    assert!(complete(dir.path(), &["conveyor", "logs", ""]).iter().all(|word| word.starts_with('-')));
    assert!(!dir.path().join(".conveyor").exists(), "completing created the state folder");
}

#[test]
fn bash_completes_run_ids_through_the_script_conveyor_completions_prints() {
    let (dir, id) = folder_with_a_run();
    let script = run(&["completions", "bash"], dir.path());
    assert!(script.status.success());
    write(dir.path(), "completion.bash", &text(&script.stdout));
    let line = format!(
        "source ./completion.bash; COMP_WORDS=(conveyor logs {prefix}); COMP_CWORD=2; _clap_complete_conveyor conveyor {prefix} logs; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        prefix = &id[..12]
    );
    let output = std::process::Command::new("bash").args(["-c", &line]).current_dir(dir.path()).output().unwrap();
    assert_eq!(text(&output.stdout).lines().collect::<Vec<_>>(), [id.as_str()], "{}", text(&output.stderr));
}

#[test]
fn completion_reads_runs_while_a_writer_holds_the_stores_write_lock() {
    let (dir, id) = folder_with_a_run();
    // As a daemon in the middle of a write: an exclusive transaction held open.
    let writer = rusqlite::Connection::open(dir.path().join(".conveyor/conveyor.db")).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE; UPDATE runs SET error = 'held' WHERE 0;").unwrap();
    assert_eq!(complete(dir.path(), &["conveyor", "logs", &id[..12]]), [id.as_str()]);
    writer.execute_batch("ROLLBACK").unwrap();
}
