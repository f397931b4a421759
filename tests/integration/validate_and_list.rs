use crate::common::*;

const REGISTRY: &str = "[services.Fetch]\ncommand = [\"sh\", \"fetch.sh\"]\n";

fn mixed_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    write(&folder, "conveyor.toml", REGISTRY);
    write(
        &folder,
        "good.toml",
        "id = \"Good\"\n[trigger]\ntype = \"schedule\"\ncron = \"0 2 * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"A\"\nservice = \"Fetch\"\n",
    );
    write(&folder, "typo.toml", "id = \"Typo\"\n[[tasks]]\nname = \"A\"\nrun = \"true\"\nretrys = 3\n");
    write(
        &folder,
        "cron.toml",
        "id = \"Cron\"\n[trigger]\ntype = \"schedule\"\ncron = \"0 2 * *\"\n[[tasks]]\nname = \"A\"\nrun = \"true\"\n",
    );
    write(&folder, "empty.toml", "");
    dir
}

#[test]
fn validate_reports_every_bad_file_with_its_line_and_exits_one() {
    let dir = mixed_folder();
    let output = run(&["validate", "workflows"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            "workflows/cron.toml:4:8: bad cron expression `0 2 * *`: it has 4 field(s); expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily",
            "workflows/empty.toml:1:1: the file is empty: expected a workflow with `id`, a `[trigger]` and `[[tasks]]`",
            "workflows/typo.toml:5:1: unknown field `retrys`, expected one of `name`, `service`, `agent`, `layer`, `run`, `command`, `action`, `retries`, `retry_delay`, `backoff`, `timeout`, `fallback`, `when`, `depends_on`, `continue_on_failure`, `env`, `max_output_size`, `max_log_size`",
            "3 problem(s) in 3 file(s); 1 workflow(s) valid",
        ]
    );
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn validate_refuses_a_timeout_beyond_a_hundred_years_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.toml", "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"true\"\ntimeout = \"99999999999d\"\n");
    let output = run(&["validate", "w.toml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "w.toml:5:11: bad duration for `timeout`: `99999999999d` is more than 100 years; expected at most `100y` (36525 days)\n1 problem(s) in 1 file(s); 0 workflow(s) valid\n"
    );
}

#[test]
fn validate_takes_a_single_file_and_the_global_folder_option() {
    let dir = mixed_folder();
    let good = run(&["validate", "workflows/good.toml"], dir.path());
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    assert_eq!(text(&good.stdout), "ok: 1 workflow(s), 1 task(s) in workflows/good.toml\n");
    let bad = run(&["--workflows", "workflows", "validate"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let missing = run(&["validate", "nowhere"], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stderr), "nowhere: no such file or folder\n");
}

#[test]
fn the_bundled_workflows_validate() {
    let output = run(&["validate", bundled_workflows().to_str().unwrap()], std::path::Path::new("."));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("ok: "), "{}", text(&output.stdout));
}

#[test]
fn list_shows_good_workflows_and_broken_files() {
    let dir = mixed_folder();
    let output = run(&["list"], dir.path());
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ID    TRIGGER                   TASKS  NEXT FIRE                  FILE");
    assert!(lines[1].starts_with("Good  schedule 0 2 * * * (UTC)  1      "), "{stdout}");
    assert!(lines[1].contains("T02:00:00+00:00  workflows/good.toml"), "{stdout}");
    assert_eq!(
        lines[2],
        "BROKEN  workflows/cron.toml:4:8: bad cron expression `0 2 * *`: it has 4 field(s); expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily"
    );
    assert_eq!(lines.len(), 5);
}

#[test]
fn list_json_is_machine_readable() {
    let dir = mixed_folder();
    let output = run(&["list", "--json"], dir.path());
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let good = &value["workflows"][0];
    assert_eq!(good["id"], "Good");
    assert_eq!(good["tasks"], 1);
    assert_eq!(good["trigger"]["type"], "schedule");
    assert_eq!(good["trigger"]["cron"], "0 2 * * *");
    assert_eq!(good["trigger"]["timezone"], "UTC");
    assert!(good["next_fire"].as_str().unwrap().ends_with("T02:00:00+00:00"));
    assert_eq!(value["broken"].as_array().unwrap().len(), 3);
    assert_eq!(value["broken"][2]["problems"][0]["line"], 5);
}

#[test]
fn help_reads_well() {
    let output = run(&["--help"], std::path::Path::new("."));
    let help = text(&output.stdout);
    for expected in ["validate", "list", "--workflows <DIR>", "--state <DIR>"] {
        assert!(help.contains(expected), "{help}");
    }
    let output = run(&["validate", "--help"], std::path::Path::new("."));
    assert!(text(&output.stdout).contains("Exit status 0 when everything is valid"));
}

#[test]
fn validate_refuses_a_when_that_does_not_parse_with_its_line_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.toml", "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"true\"\nwhen = \"(((\"\n");
    let output = run(&["validate", "w.toml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "w.toml:5:8: bad CEL expression `(((` in `when` of task `A`: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} (at character 4)\n1 problem(s) in 1 file(s); 0 workflow(s) valid\n"
    );
}

#[test]
fn validate_refuses_every_hostile_fixture_with_located_errors_and_never_crashes() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut paths: Vec<_> = std::fs::read_dir(&fixtures).unwrap().map(|entry| entry.unwrap().path()).collect();
    paths.sort();
    for fixture in paths {
        // Each beside the bundled registry, or (`*.registry.toml`) as the registry of the bundled workflows.
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("workflows");
        std::fs::create_dir_all(&folder).unwrap();
        for entry in std::fs::read_dir(bundled_workflows()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
            }
        }
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let target = if name.ends_with(".registry.toml") { "conveyor.toml".to_string() } else { name.clone() };
        std::fs::copy(&fixture, folder.join(&target)).unwrap();
        let output = run(&["validate", "workflows"], dir.path());
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        let (summary, problems) = lines.split_last().expect("a summary line");
        assert!(summary.contains(" problem(s) in "), "{name}: {summary}");
        assert!(!problems.is_empty(), "{name}");
        for problem in problems {
            let mut parts = problem.splitn(4, ':');
            let (file, line, column) = (parts.next().unwrap(), parts.next(), parts.next());
            assert!(file.starts_with("workflows/"), "{name}: not located: {problem}");
            assert!(line.and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l >= 1), "{name}: {problem}");
            assert!(column.and_then(|c| c.parse::<usize>().ok()).is_some_and(|c| c >= 1), "{name}: {problem}");
        }
    }
}

#[test]
fn graph_prints_a_workflow_for_graphviz_and_mermaid_with_a_runs_states() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "fork.toml",
        "id = \"Fork\"\n[[tasks]]\nname = \"Left\"\nrun = 'true'\n[[tasks]]\nname = \"Right\"\nrun = 'exit 3'\n[[tasks]]\nname = \"Join\"\nrun = 'true'\ndepends_on = [\"Left\", \"Right\"]\n",
    );
    let dot = run(&["graph", "Fork"], dir.path());
    assert!(dot.status.success(), "{}", text(&dot.stderr));
    let dot = text(&dot.stdout);
    assert!(dot.starts_with("digraph \"Fork\" {") && dot.contains("\"Left\" -> \"Join\";"), "{dot}");
    assert_eq!(run(&["run", "Fork"], dir.path()).status.code(), Some(1), "Right fails");
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let id = store.runs(Some("Fork"), 1).unwrap()[0].id.clone();
    let mermaid = text(&run(&["graph", "Fork", "--format", "mermaid", "--run", &id], dir.path()).stdout);
    assert!(mermaid.contains("t1[\"Right<br/>run<br/>failed\"]"), "{mermaid}");
    assert!(mermaid.contains("class t1 failed") && mermaid.contains("class t0 succeeded"), "{mermaid}");
    let unknown = run(&["graph", "Nope"], dir.path());
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).starts_with("no workflow `Nope` in workflows (known: Fork)"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn completions_come_for_every_shell_and_the_bash_script_parses() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run(&["completions", shell, "--static"], dir.path());
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.contains("approve") && script.contains("graph"), "{shell} completes the commands");
        // The default script asks the binary as the operator types.
        let output = run(&["completions", shell], dir.path());
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.contains("COMPLETE") && script.contains(shell), "{shell}: {script}");
    }
    for flags in [&["completions", "bash"][..], &["completions", "bash", "--static"]] {
        let script = dir.path().join("conveyor.bash");
        std::fs::write(&script, run(flags, dir.path()).stdout).unwrap();
        let check = std::process::Command::new("bash").arg("-n").arg(&script).output().unwrap();
        assert!(check.status.success(), "{flags:?}: {}", text(&check.stderr));
    }
    let man = run(&["man", "pages"], dir.path());
    assert!(man.status.success(), "{}", text(&man.stderr));
    assert!(text(&man.stdout).lines().any(|line| line.ends_with("pages/conveyor-run.1")));
    let page = std::fs::read_to_string(dir.path().join("pages/conveyor.1")).unwrap();
    assert!(page.contains(".TH conveyor 1"), "{page}");
}
