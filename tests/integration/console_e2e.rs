//! The real binary in a real terminal (tmux): wait for the workflow list, trigger with `t`, watch the tasks
//! finish, open a log, quit with `q`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// A tmux server of a test's own (`-L socket`), killed when dropped.
pub(crate) struct Tmux {
    pub(crate) socket: String,
}

impl Tmux {
    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)")
    }

    /// The session `console`, `width` × `height`, running `command` in `dir`.
    pub(crate) fn start(&self, width: u16, height: u16, dir: &str, command: &[&str]) {
        let (width, height) = (width.to_string(), height.to_string());
        let mut args = vec!["new-session", "-d", "-s", "console", "-x", &width, "-y", &height, "-c", dir];
        args.extend_from_slice(command);
        let started = self.run(&args);
        assert!(started.status.success(), "{}", text(&started.stderr));
    }

    pub(crate) fn screen(&self) -> String {
        text(&self.run(&["capture-pane", "-p", "-t", "console"]).stdout)
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    pub(crate) fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the console's session has ended (the console quit), within `limit`.
    pub(crate) fn wait_closed(&self, what: &str, limit: Duration) {
        let started = Instant::now();
        while self.run(&["has-session", "-t", "console"]).status.success() {
            assert!(started.elapsed() < limit, "{what}:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn an_operator_triggers_a_workflow_reads_its_log_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "hello.toml",
        "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo \"hello from the greet task\"'\n[[tasks]]\nname = \"Wait\"\nrun = 'sleep 0.5; echo \"done waiting\"'\n",
    );
    let tmux = Tmux { socket: format!("conveyor-e2e-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(120, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Hello"));

    tmux.keys(&["t"]);
    let screen = tmux.wait_for("the run to succeed", |screen| screen.contains("✓ succeeded"));
    assert!(screen.contains("Runs · Hello"), "{screen}");
    // The engine log: who triggered it (`USER via console: trigger Hello`), the run and its tasks, under the
    // workflow's name.
    tmux.wait_for("the engine log", |screen| screen.contains("INFO Hello") && screen.contains("via"));

    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the tasks", |screen| screen.contains("✓ Greet") && screen.contains("✓ Wait"));
    assert!(screen.contains("Tasks · ✓ succeeded"), "{screen}");

    tmux.keys(&["l"]);
    let screen = tmux.wait_for("the Greet log", |screen| screen.contains("hello from the greet task"));
    assert!(screen.contains("Log · Greet attempt 1"), "{screen}");

    tmux.keys(&["q"]);
    tmux.wait_closed("the console quit on q", Duration::from_secs(20));
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let runs = store.runs(Some("Hello"), 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, conveyor::state::RunState::Succeeded);
    assert!(
        !conveyor::store::StateLock::is_held(&dir.path().join(".conveyor")),
        "the engine let go of the state folder"
    );
}

#[test]
fn the_consoles_engine_serves_metrics_when_the_registry_asks_for_them() {
    use crate::metrics::{scrape, value};
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    // A port free a moment ago; a bare port is served on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write(&workflows, "conveyor.toml", &format!("[metrics]\nlisten = \"{port}\"\n"));
    write(&workflows, "hello.toml", "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo hello'\n");
    let tmux = Tmux { socket: format!("conveyor-e2e-metrics-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(120, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Hello"));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let before = scrape(&url);
    assert_eq!(value(&before, "conveyor_runs_started_total{workflow=\"Hello\"}"), Some(0.0), "{before}");

    tmux.keys(&["t"]);
    tmux.wait_for("the run to succeed", |screen| screen.contains("✓ succeeded"));
    let mut page = String::new();
    crate::engine_harness::wait_until("the metrics count the run", || {
        page = scrape(&url);
        value(&page, "conveyor_runs_finished_total{workflow=\"Hello\",state=\"succeeded\"}") == Some(1.0)
    });
    let attempts = "conveyor_task_attempts_total{workflow=\"Hello\",task=\"Greet\",state=\"succeeded\"}";
    assert_eq!(value(&page, attempts), Some(1.0), "{page}");
    tmux.keys(&["q"]);
    tmux.wait_closed("the console quit on q", Duration::from_secs(20));
}

#[test]
fn a_console_beside_a_daemon_attaches_to_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "hello.toml",
        "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo attached hello'\n[[tasks]]\nname = \"Count\"\n\
         run = 'test -f first || { touch first; exit 0; }; echo counting to five; echo ::progress::3/5; \
         while [ ! -f release ]; do sleep 0.05; done'\n",
    );
    let daemon_err = dir.path().join("daemon.err");
    let mut daemon = conveyor()
        .arg("daemon")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&daemon_err).unwrap())
        .spawn()
        .unwrap();
    let state = dir.path().join(".conveyor");
    let started = Instant::now();
    while !conveyor::store::StateLock::is_held(&state) {
        let said = || std::fs::read_to_string(&daemon_err).unwrap_or_default();
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("the daemon ended ({status}) before it took the state folder: {}", said());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the daemon took the state folder: {}", said());
        std::thread::sleep(Duration::from_millis(50));
    }
    let tmux = Tmux { socket: format!("conveyor-attach-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(140, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary]);
    tmux.wait_for("the attached marker", |screen| screen.contains("attached to a daemon") && screen.contains("Hello"));
    tmux.keys(&["t"]);
    tmux.wait_for("the daemon's run to show as succeeded", |screen| screen.contains("✓ succeeded"));
    // Attached, the engine log is read from the store: the command from its audit trail, the run from snapshots.
    tmux.wait_for("the engine log", |screen| screen.contains("INFO Hello") && screen.contains("via"));

    // A second run reports its progress and waits: the gauge is the task's own 3/5, not an estimate, and
    // `l` opens this run's log, not the first run's.
    tmux.keys(&["t"]);
    let screen = tmux.wait_for("the reported progress", |screen| screen.contains("60%"));
    let gauge = screen.lines().find(|line| line.contains("60%")).unwrap();
    assert!(!gauge.contains('~'), "the gauge is the reported progress: {gauge}");
    let store = conveyor::store::Store::open(&state).unwrap();
    let runs = store.runs(Some("Hello"), 10).unwrap();
    let (second, first) = (&runs[0].id, &runs[1].id);
    tmux.keys(&["l"]);
    let screen = tmux.wait_for("the second run's log", |screen| screen.contains("counting to five"));
    let title = screen.lines().find(|line| line.contains("Log ·")).unwrap();
    assert!(title.contains(second) && title.contains("Hello") && !title.contains(first), "{title}");
    // Tasks run in the workflows folder.
    std::fs::write(dir.path().join("workflows/release"), "").unwrap();
    tmux.wait_for("the second run to succeed", |screen| !screen.contains("▶ running"));
    tmux.keys(&["q"]);
    tmux.wait_closed("an attached console quits at once", Duration::from_secs(10));
    assert!(conveyor::store::StateLock::is_held(&state), "quitting the console leaves the daemon running");
    let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

#[test]
fn a_console_whose_engine_fails_leaves_with_a_failure_status_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "hello.toml", "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'true'\n");
    let tmux = Tmux { socket: format!("conveyor-e2e-fail-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    let script =
        format!("NO_COLOR=1 CONVEYOR_FAILPOINTS=engine.attempt-ended=panic {binary} 2> stderr; echo $? > status");
    tmux.start(100, 30, dir.path().to_str().unwrap(), &["sh", "-c", &script]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Hello"));
    tmux.keys(&["t"]);
    let status = dir.path().join("status");
    let started = Instant::now();
    while !std::fs::read_to_string(&status).is_ok_and(|text| text.ends_with('\n')) {
        assert!(started.elapsed() < Duration::from_secs(20), "the console left:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "1\n");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        stderr.contains("conveyor: the engine stopped: the engine panicked: fail point engine.attempt-ended"),
        "{stderr}"
    );
}

#[test]
fn after_a_reload_adds_a_workflow_above_the_selected_one_t_still_starts_the_selected_one() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    for id in ["Middle", "Zulu"] {
        write(&folder, &format!("{id}.toml"), &format!("id = \"{id}\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n"));
    }
    let tmux = Tmux { socket: format!("conveyor-e2e-reload-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(120, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Middle") && screen.contains("Zulu"));
    tmux.keys(&["G"]);
    write(&folder, "Alpha.toml", "id = \"Alpha\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n");
    tmux.wait_for("the reloaded list", |screen| screen.contains("Alpha"));
    tmux.keys(&["t"]);
    let state = dir.path().join(".conveyor");
    let started = Instant::now();
    let run = loop {
        let runs = conveyor::store::Store::open(&state).unwrap().runs(None, 10).unwrap();
        if let Some(run) = runs.into_iter().next() {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "a run started:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run.workflow, "Zulu", "t started the workflow that was selected");
    tmux.keys(&["q"]);
}

#[test]
fn an_operator_reads_a_runs_details_finds_it_among_all_runs_and_sees_its_graph() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "graph.toml",
        "id = \"Fork\"\n[[tasks]]\nname = \"Left\"\nrun = 'echo \"{\\\"side\\\": \\\"left\\\"}\"'\n[[tasks]]\nname = \"Right\"\nrun = 'true'\n[[tasks]]\nname = \"Join\"\nrun = 'true'\ndepends_on = [\"Left\", \"Right\"]\n",
    );
    let tmux = Tmux { socket: format!("conveyor-e2e-views-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(120, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", "USER=operator-e2e", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Fork"));
    tmux.keys(&["t"]);
    tmux.wait_for("the run to succeed", |screen| screen.contains("✓ succeeded"));

    // Who started it comes from the audit trail, read in the background.
    tmux.keys(&["i"]);
    let screen = tmux.wait_for("the run's details", |screen| screen.contains("manual, by operator-e2e via console"));
    assert!(screen.contains("Task Left: ✓ succeeded"), "{screen}");
    assert!(screen.contains("Commands on this run"), "{screen}");

    tmux.keys(&["Escape"]);
    tmux.wait_for("the panes again", |screen| screen.contains("Runs · Fork"));
    tmux.keys(&["H"]);
    let screen = tmux.wait_for("all runs", |screen| screen.contains("All runs · all · sorted by start · 1 run(s)"));
    assert!(screen.contains("Fork"), "{screen}");

    tmux.keys(&["D"]);
    let screen = tmux.wait_for("the graph", |screen| screen.contains("Graph · Fork · depends_on"));
    assert!(screen.contains("✓ Join"), "{screen}");
    assert!(screen.contains("──▶"), "{screen}");
    tmux.keys(&["q"]);
}

#[test]
fn o_gives_the_terminal_to_the_pager_and_the_console_takes_it_back_with_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "hello.toml",
        "id = \"Hello\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo \"hello from the greet task\"'\n",
    );
    let tmux = Tmux { socket: format!("conveyor-e2e-pager-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(100, 30, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", "PAGER=less", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Hello"));
    tmux.keys(&["t"]);
    tmux.wait_for("the run to succeed", |screen| screen.contains("✓ succeeded"));
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the tasks", |screen| screen.contains("✓ Greet"));
    tmux.keys(&["o"]);
    tmux.wait_for("the pager", |screen| screen.contains("hello from the greet task") && !screen.contains("Workflows"));
    // The q goes to the pager: were the console still reading keys, it would take it and quit.
    tmux.keys(&["q"]);
    tmux.wait_for("the console again", |screen| screen.contains("Workflows") && screen.contains("✓ Greet"));
    tmux.keys(&["?"]);
    tmux.wait_for("the help, so keys reach the console again", |screen| {
        screen.contains("Keys") && screen.contains("closes")
    });
    tmux.keys(&["Escape", "q"]);
}

/// The README's walkthrough, key by key: trigger the grant pipeline, open the gate, approve one award and
/// reject the other with a comment, and find the letter.
#[test]
fn the_readmes_grant_walkthrough_works_in_the_real_console() {
    let dir = crate::grants::grants_folder(false);
    let tmux = Tmux { socket: format!("conveyor-e2e-walk-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(140, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", "USER=walker", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("DailyGrantPipeline"));
    tmux.keys(&["t"]);
    tmux.wait_for("the run at the gate", |screen| screen.contains("⧗ waiting_approval"));
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the tasks, landed on the gate", |screen| screen.contains("⧗ Review"));
    assert!(screen.contains("Tasks ·"), "{screen}");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the gate view", |screen| screen.contains("A-1002") && screen.contains("A-1004"));
    assert!(screen.contains("150000") || screen.contains("150,000"), "{screen}");
    tmux.keys(&["a"]);
    tmux.wait_for("the question", |screen| screen.contains("Approve"));
    tmux.keys(&["y"]);
    tmux.wait_for("A-1002 answered", |screen| !screen.contains("A-1002") || screen.contains("approved"));
    tmux.keys(&["c"]);
    tmux.keys(&["-l", "over budget this year"]);
    tmux.keys(&["Enter"]);
    tmux.keys(&["x"]);
    tmux.wait_for("the question", |screen| screen.contains("Reject") && screen.contains("over budget this year"));
    tmux.keys(&["y"]);
    let letter = dir.path().join("workflows/grants/out/letters/A-1002.txt");
    let started = Instant::now();
    while !letter.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the letter was written:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The last answer ends the wait: the view gives way to the panes, which follow the run to its end.
    tmux.wait_for("the run to succeed", |screen| screen.contains("Tasks · ✓ succeeded"));
    assert!(!dir.path().join("workflows/grants/out/letters/A-1004.txt").exists(), "the rejected award has no letter");
    tmux.keys(&["q"]);
    tmux.wait_closed("the console quit on q", Duration::from_secs(20));
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let trail = store.audit_trail(20).unwrap();
    assert!(
        trail.iter().any(|entry| entry.who == "walker" && entry.command.contains("over budget this year")),
        "the comment is in the audit trail: {trail:?}"
    );
}

#[test]
fn an_operator_backfills_a_schedule_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "daily.toml",
        "id = \"Daily\"\n[trigger]\ntype = \"schedule\"\ncron = \"30 2 * * *\"\ntimezone = \"America/New_York\"\n[[tasks]]\nname = \"Say\"\nrun = 'echo \"$CONVEYOR_SCHEDULED_AT\"'\n",
    );
    let tmux = Tmux { socket: format!("conveyor-e2e-backfill-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(120, 40, dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary]);
    tmux.wait_for("the workflow list", |screen| screen.contains("Workflows") && screen.contains("Daily"));
    tmux.keys(&[":"]);
    tmux.keys(&["-l", "backfill Daily --from 2026-03-06 --to 2026-03-09 --dry-run"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the dry run's count", |screen| screen.contains("4 would start, 0 already run"));
    tmux.keys(&[":"]);
    tmux.keys(&["-l", "backfill Daily --from 2026-03-06 --to 2026-03-09 --parallel 2"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the backfill to end", |screen| screen.contains("backfill Daily done: 4 of 4 started, 4 succeeded"));
    tmux.keys(&["q"]);
    tmux.wait_closed("the console quit on q", Duration::from_secs(20));
    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let runs = store.runs(Some("Daily"), 10).unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|run| run.trigger == "backfill" && run.state == conveyor::state::RunState::Succeeded));
}
