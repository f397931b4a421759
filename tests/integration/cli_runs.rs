//! `conveyor run`, `history`, `logs` and operator commands from another shell, through the real binary.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const REGISTRY: &str = "[services.Echo]\ncommand = [\"sh\", \"-c\", \"echo \\\"echo service doing $0\\\"; cat > \\\"$CONVEYOR_OUTPUT\\\"\"]\n";

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    write(&workflows, "conveyor.toml", REGISTRY);
    write(
        &workflows,
        "quick.toml",
        "id = \"Quick\"\n[params]\nwho = \"world\"\n[[tasks]]\nname = \"Hello\"\nrun = 'echo \"hello $CONVEYOR_PARAM_WHO\"; echo \"{\\\"greeted\\\": \\\"$CONVEYOR_PARAM_WHO\\\"}\" > \"$CONVEYOR_OUTPUT\"'\n[[tasks]]\nname = \"Pass\"\nservice = \"Echo\"\naction = \"pass\"\n",
    );
    write(
        &workflows,
        "broken.toml",
        "id = \"Broken\"\n[[tasks]]\nname = \"Fail\"\nrun = 'echo \"about to fail\" >&2; exit 7'\n",
    );
    write(&workflows, "long.toml", "id = \"Long\"\n[[tasks]]\nname = \"Wait\"\nrun = 'echo waiting; sleep 60'\n");
    dir
}

fn history_json(dir: &std::path::Path) -> serde_json::Value {
    let output = run(&["history", "--json"], dir);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn run_streams_the_run_and_exits_with_its_outcome() {
    let dir = folder();
    let output = run(&["run", "Quick", "--param", "who=Ada"], dir.path());
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("started run ") && lines[0].ends_with(" of Quick"), "{stdout}");
    assert_eq!(lines[1], "▶ Hello attempt 1 on inline");
    assert_eq!(lines[2], "  Hello │ hello Ada");
    assert!(lines[3].starts_with("✓ Hello succeeded in "));
    assert_eq!(lines[4], "▶ Pass attempt 1 on Echo");
    assert_eq!(lines[5], "  Pass │ echo service doing pass");
    assert!(lines.last().unwrap().contains(" succeeded in "), "{stdout}");

    let failed = run(&["run", "Broken"], dir.path());
    assert_eq!(failed.status.code(), Some(1));
    let stdout = text(&failed.stdout);
    assert!(stdout.contains("  Fail │ about to fail\n✗ Fail failed: exit status 7\n"), "{stdout}");
    assert!(stdout.trim_end().ends_with(": task Fail failed: exit status 7"), "{stdout}");

    let history = history_json(dir.path());
    assert_eq!(history[0]["workflow"], "Broken");
    assert_eq!(history[0]["state"], "failed");
    assert_eq!(history[1]["workflow"], "Quick");
    assert_eq!(history[1]["params"], serde_json::json!({"who": "Ada"}));
    let quick = history[1]["id"].as_str().unwrap();

    let logs = run(&["logs", quick, "Pass"], dir.path());
    let logs_text = text(&logs.stdout);
    assert!(logs_text.contains("echo service doing pass\n"), "{logs_text}");
    assert!(logs_text.contains("[conveyor] exit status 0\n"));
    // A prefix of the id is enough when no other run shares it.
    let broken = history[0]["id"].as_str().unwrap();
    let shared = quick.chars().zip(broken.chars()).take_while(|(a, b)| a == b).count();
    let all = text(&run(&["logs", &quick[..shared + 1]], dir.path()).stdout);
    assert!(all.contains("=== Hello attempt 1 on inline (succeeded) ===\n"), "{all}");
    let table = text(&run(&["history", "Quick"], dir.path()).stdout);
    assert!(table.starts_with("RUN "), "{table}");
    assert!(table.contains(" Quick ") && !table.contains("Broken"), "{table}");
}

#[test]
fn bad_requests_are_refused_clearly() {
    let dir = folder();
    let unknown = run(&["run", "Nope"], dir.path());
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(text(&unknown.stderr), "conveyor: no workflow `Nope` in workflows\n");
    let bad_param = run(&["run", "Quick", "--param", "whom=x"], dir.path());
    assert_eq!(text(&bad_param.stderr), "conveyor: workflow `Quick` has no parameter `whom`: expected one of who\n");
    let malformed = run(&["run", "Quick", "--param", "who"], dir.path());
    assert_eq!(text(&malformed.stderr), "conveyor: bad --param `who`: expected NAME=VALUE\n");
    let no_engine = run(&["trigger", "Quick"], dir.path());
    assert_eq!(no_engine.status.code(), Some(1));
    assert!(
        text(&no_engine.stderr).starts_with("conveyor: no engine holds .conveyor: start one with `conveyor daemon`")
    );
    let no_run = run(&["logs", "zzz"], dir.path());
    assert_eq!(text(&no_run.stderr), "conveyor: no run `zzz` in .conveyor\n");
}

fn spawn_long_run(dir: &std::path::Path) -> Child {
    conveyor().args(["run", "Long"]).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn wait_for_running(dir: &std::path::Path) -> String {
    let started = Instant::now();
    loop {
        if dir.join(".conveyor/conveyor.db").exists() {
            let history = history_json(dir);
            if let Some(run) = history.as_array().and_then(|runs| runs.iter().find(|r| r["workflow"] == "Long")) {
                return run["id"].as_str().unwrap().to_string();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the long run started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commands_from_another_shell_reach_the_engine_that_holds_the_folder() {
    let dir = folder();
    let mut engine = spawn_long_run(dir.path());
    let long = wait_for_running(dir.path());

    let triggered = run(&["trigger", "Quick", "-p", "who=Bo"], dir.path());
    assert_eq!(triggered.status.code(), Some(0), "{}", text(&triggered.stderr));
    assert!(text(&triggered.stdout).starts_with("started run "));

    let followed = run(&["run", "Quick"], dir.path());
    assert_eq!(followed.status.code(), Some(0), "{}", text(&followed.stderr));
    assert!(
        text(&followed.stderr).contains("an engine already holds .conveyor: starting the run there and following it")
    );
    let stdout = text(&followed.stdout);
    assert!(stdout.contains("  Hello │ hello world\n") && stdout.contains("✓ Pass succeeded"), "{stdout}");

    let refused = run(&["retry", &long, "Nope"], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(text(&refused.stderr), format!("conveyor: run {long} has no task `Nope` (tasks: Wait)\n"));

    let cancel = run(&["cancel", &long], dir.path());
    assert_eq!(text(&cancel.stdout), format!("cancelling run {long}\n"));
    let status = engine.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut out = String::new();
    std::io::Read::read_to_string(engine.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("■ Wait cancelled"), "{out}");
    assert!(out.contains(&format!("run {long} cancelled in ")), "{out}");
}

#[test]
fn pausing_a_workflow_without_an_engine_is_remembered() {
    let dir = folder();
    let paused = run(&["pause", "Quick"], dir.path());
    assert_eq!(text(&paused.stdout), "workflow Quick paused (no engine is running: the next one starts it this way)\n");
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    assert!(store.paused_workflows().unwrap().contains("Quick"));
    let resumed = run(&["resume", "Quick"], dir.path());
    assert_eq!(resumed.status.code(), Some(0));
    assert!(store.paused_workflows().unwrap().is_empty());
}

#[test]
fn the_seed_pipeline_runs_end_to_end_with_an_operators_approval_from_another_shell() {
    let dir = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .args(["-r", bundled_workflows().to_str().unwrap(), dir.path().join("workflows").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    // The checkout's own demo may have been run: start from the demo's first state.
    let reset = std::process::Command::new("sh").arg(dir.path().join("workflows/grants/reset.sh")).output().unwrap();
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let pipeline = conveyor()
        .args(["run", "DailyGrantPipeline"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run_id = loop {
        if dir.path().join(".conveyor/conveyor.db").exists() {
            let history = history_json(dir.path());
            if let Some(run) =
                history.as_array().and_then(|runs| runs.first()).filter(|run| run["state"] == "waiting_approval")
            {
                break run["id"].as_str().unwrap().to_string();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run reached the approval gate");
        std::thread::sleep(Duration::from_millis(50));
    };
    let approved = run(&["approve", &run_id, "Review"], dir.path());
    assert_eq!(
        text(&approved.stdout),
        format!("approved 2 item(s) (A-1002, A-1004) at task Review of run {run_id}\n"),
        "{}",
        text(&approved.stderr)
    );
    let output = pipeline.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let waiting = format!(
        "? Review is waiting for approval: `conveyor approve {run_id} Review` or `conveyor reject {run_id} Review`\n✓ Review succeeded"
    );
    assert!(stdout.contains(&waiting), "{stdout}");
    let awards = std::fs::read_to_string(dir.path().join("workflows/grants/out/awards.jsonl")).unwrap();
    let awarded: Vec<&str> = awards
        .lines()
        .map(|line| {
            if line.contains("A-1001") {
                "A-1001"
            } else if line.contains("A-1002") {
                "A-1002"
            } else if line.contains("A-1004") {
                "A-1004"
            } else {
                line
            }
        })
        .collect();
    assert_eq!(
        awarded,
        vec!["A-1001", "A-1002", "A-1004"],
        "A-1003 scores 0.35 and is rejected by the rule; A-1002 and A-1004 needed the approval"
    );
    let notices = std::fs::read_to_string(dir.path().join("workflows/grants/out/notices.log")).unwrap();
    assert_eq!(notices.lines().count(), 3);
    let audit = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap().audit_trail(5).unwrap();
    assert!(audit.iter().any(|entry| entry.ok && entry.command.contains("\"approve\"") && entry.origin == "cli"));
}

/// Bytes that look random (no dependency for it): every value, newlines and escapes included.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    *bytes.last_mut().unwrap() = b'\n';
    bytes
}

#[test]
fn logs_raw_gives_back_binary_output_byte_for_byte() {
    let dir = folder();
    let data = noise(200_000);
    std::fs::write(dir.path().join("workflows/data.bin"), &data).unwrap();
    write(
        &dir.path().join("workflows"),
        "dump.toml",
        "id = \"Dump\"\n[[tasks]]\nname = \"Cat\"\nrun = 'cat data.bin'\n",
    );
    let output = run(&["run", "Dump"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!output.stdout.contains(&0x1b), "`conveyor run` shows escapes, never sends them");
    let run_id = history_json(dir.path())[0]["id"].as_str().unwrap().to_string();
    let raw = run(&["logs", &run_id, "Cat", "--raw"], dir.path());
    assert_eq!(raw.status.code(), Some(0), "{}", text(&raw.stderr));
    let log = raw.stdout;
    let start = log.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(log.starts_with(b"[conveyor] started `sh -c 'cat data.bin'`"), "{}", text(&log[..start]));
    assert!(log[start..].starts_with(&data), "the task's bytes, exactly");
    assert_eq!(&log[start + data.len()..], b"[conveyor] exit status 0\n");
}

#[test]
fn an_output_file_over_max_output_size_fails_the_task_with_the_limit_in_the_message() {
    let dir = folder();
    write(
        &dir.path().join("workflows"),
        "big.toml",
        "id = \"Big\"\n[[tasks]]\nname = \"Write\"\nmax_output_size = \"1 KiB\"\nrun = 'head -c 2048 /dev/zero | tr \"\\0\" x > \"$CONVEYOR_OUTPUT\"'\n",
    );
    let output = run(&["run", "Big"], dir.path());
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("✗ Write failed: CONVEYOR_OUTPUT is 2048 bytes, over max_output_size (1 KiB): "),
        "{stdout}"
    );
}

/// Answers one POST with a 500 whose body tries to forge a line and retitle the terminal.
pub fn hostile_server() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let _ = reader.read_exact(&mut vec![0; length]);
            let body = "boom\nFORGED \x1b]0;title\x07";
            let _ = write!(
                &stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

#[test]
fn a_servers_error_body_is_shown_escaped_by_run_and_history() {
    let dir = folder();
    let workflows = dir.path().join("workflows");
    write(&workflows, "conveyor.toml", &format!("{REGISTRY}[services.Hostile]\nurl = \"{}\"\n", hostile_server()));
    write(&workflows, "call.toml", "id = \"Call\"\n[[tasks]]\nname = \"Ask\"\nservice = \"Hostile\"\n");
    let output = run(&["run", "Call"], dir.path());
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(r"✗ Ask failed: HTTP 500: boom\nFORGED \x1b]0;title\x07"), "{stdout}");
    assert!(!output.stdout.contains(&0x1b) && !stdout.lines().any(|line| line.starts_with("FORGED")), "{stdout}");
    let history = run(&["history"], dir.path());
    let table = text(&history.stdout);
    assert!(table.contains(r"boom\nFORGED \x1b]0;title\x07"), "{table}");
    assert!(!history.stdout.contains(&0x1b) && !table.lines().any(|line| line.starts_with("FORGED")), "{table}");
}

#[test]
fn a_command_that_only_prints_ends_quietly_when_its_reader_goes() {
    let dir = tempfile::tempdir().unwrap();
    let workflow = "id = \"Chatty\"\n[[tasks]]\nname = \"Talk\"\nrun = 'seq 1 200000'\n";
    write(&dir.path().join("workflows"), "chatty.toml", workflow);
    assert!(run(&["run", "Chatty"], dir.path()).status.success());
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let id = store.runs(Some("Chatty"), 1).unwrap()[0].id.clone();
    drop(store);
    let mut logs = conveyor()
        .args(["logs", &id])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe as `head -1` would.
    let mut stdout = std::io::BufReader::new(logs.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = logs.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(output.status.success() || output.status.signal() == Some(libc::SIGPIPE), "{:?}", output.status);
}

#[test]
fn a_quick_silent_task_keeps_its_log_in_the_store_and_logs_shows_it_as_a_file_would() {
    let dir = folder();
    write(
        &dir.path().join("workflows"),
        "silent.toml",
        "id = \"Silent\"\n[[tasks]]\nname = \"Quick\"\ncommand = [\"true\"]\n[[tasks]]\nname = \"Slow\"\ncommand = [\"sleep\", \"0.5\"]\n",
    );
    let output = run(&["run", "Silent"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let run_id = history_json(dir.path())[0]["id"].as_str().unwrap().to_string();
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let attempts = store.attempts(&run_id, None).unwrap();
    let (quick, slow) = (&attempts[0], &attempts[1]);
    assert!(!quick.log_path.exists(), "no file for a task that printed nothing and ended at once");
    let kept = quick.log_text.clone().expect("its lines are in the store");
    assert!(
        kept.starts_with("[conveyor] started `true` (pid ") && kept.ends_with("[conveyor] exit status 0\n"),
        "{kept}"
    );
    assert_eq!(quick.log_bytes, kept.len() as u64);
    // A task running longer gets its file while it runs, as before, so a reader can follow it.
    assert!(slow.log_path.exists() && slow.log_text.is_none(), "{slow:?}");
    let logs = run(&["logs", &run_id, "Quick"], dir.path());
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stdout), kept);
    let all = text(&run(&["logs", &run_id], dir.path()).stdout);
    assert!(all.contains(&format!("=== Quick attempt 1 on inline (succeeded) ===\n{kept}")), "{all}");
    assert!(all.contains("=== Slow attempt 1 on inline (succeeded) ===\n[conveyor] started `sleep 0.5`"), "{all}");
}
