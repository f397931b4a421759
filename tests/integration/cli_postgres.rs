//! One engine on a PostgreSQL store, driven through the real binary: the daemon, `trigger`, `history` and
//! `logs` all meet in the database named by `--store` (or the registry's `store`), the state folder keeps
//! only logs and the lock, and a password in the address is never printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::common::{conveyor, text, write};
use crate::console_e2e::Tmux;
use crate::postgres::database;

const PASSWORD: &str = "Pw0rd-never-shown";

const HELLO: &str =
    "id = \"Hello\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Greet\"\nrun = 'echo hello from postgres'\n";

/// The test database's URL with a password added: the cluster trusts its socket, so it is accepted and
/// ignored, which is all the redaction check needs.
fn with_password(url: &str) -> String {
    url.replacen("postgres://conveyor@", &format!("postgres://conveyor:{PASSWORD}@"), 1)
}

/// A running daemon, stopped (SIGTERM, then waited for) however the test ends; its stderr is collected.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `conveyor daemon` in `dir` and returns once it says it is running.
    fn start(dir: &Path, store: Option<&str>, envs: &[(&str, &str)]) -> Daemon {
        let mut command = conveyor();
        command.arg("daemon").current_dir(dir).envs(envs.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(store) = store {
            command.args(["--store", store]);
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready, running) = mpsc::channel();
        let (pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("conveyor daemon (PID") {
                    let _ = ready.send(());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let daemon = Daemon { child, stderr };
        let said = running.recv_timeout(Duration::from_secs(30));
        assert!(said.is_ok(), "the daemon started: {}", daemon.stderr.lock().unwrap());
        daemon
    }

    fn stop(mut self) -> String {
        self.terminate();
        self.stderr.lock().unwrap().clone()
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn conveyor_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    conveyor().args(args).envs(envs.iter().copied()).current_dir(dir).output().unwrap()
}

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "workflows/hello.toml", HELLO);
    dir
}

/// The run's state as `history --json` shows it, until it ends.
fn wait_until_done(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let listed = conveyor_in(dir, &[&["history", "--json"], args].concat(), envs);
        assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
        let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        if let Some(run) = runs.as_array().and_then(|runs| runs.first())
            && !matches!(run["state"].as_str(), Some("pending" | "running"))
        {
            return run.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run ended: {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_daemon_on_postgres_runs_what_another_shell_triggers_and_history_and_logs_read_it_back() {
    let db = database();
    let store = with_password(&db.url);
    let dir = folder();
    let daemon = Daemon::start(dir.path(), Some(&store), &[]);

    let triggered = conveyor_in(dir.path(), &["trigger", "--store", &store, "Hello"], &[]);
    assert_eq!(triggered.status.code(), Some(0), "{}", text(&triggered.stderr));
    assert!(text(&triggered.stdout).starts_with("started run "), "{}", text(&triggered.stdout));

    let run = wait_until_done(dir.path(), &["--store", &store], &[]);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["workflow"], "Hello");
    let id = run["id"].as_str().unwrap();

    let table = conveyor_in(dir.path(), &["history", "--store", &store], &[]);
    assert!(text(&table.stdout).contains(id) && text(&table.stdout).contains("succeeded"), "{}", text(&table.stdout));
    let logs = conveyor_in(dir.path(), &["logs", "--store", &store, id, "Greet"], &[]);
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert!(text(&logs.stdout).contains("\nhello from postgres\n"), "{}", text(&logs.stdout));

    let stderr = daemon.stop();
    assert!(stderr.contains("records in postgres://conveyor:***@"), "{stderr}");
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "no SQLite file beside the logs");
    assert!(dir.path().join(".conveyor/logs").is_dir(), "the logs stay in the state folder");
    for output in [&triggered, &table, &logs] {
        assert!(!text(&output.stdout).contains(PASSWORD) && !text(&output.stderr).contains(PASSWORD));
    }
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn the_registrys_store_may_name_an_environment_variable_and_the_flag_wins_over_it() {
    let db = database();
    let dir = folder();
    write(dir.path(), "workflows/conveyor.toml", "store = \"${env:HELLO_STORE}\"\n");
    let envs = [("HELLO_STORE", db.url.as_str())];
    let daemon = Daemon::start(dir.path(), None, &envs);
    let triggered = conveyor_in(dir.path(), &["trigger", "Hello"], &envs);
    assert_eq!(triggered.status.code(), Some(0), "{}", text(&triggered.stderr));
    let run = wait_until_done(dir.path(), &[], &envs);
    assert_eq!(run["state"], "succeeded", "{run}");
    drop(daemon);
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "the registry's store was used");

    // `--store ""` is the state folder, whatever the registry says: it has no runs.
    let local = conveyor_in(dir.path(), &["history", "--json", "--store", ""], &envs);
    assert_eq!(text(&local.stdout).trim(), "[]", "{}", text(&local.stderr));

    let unset = conveyor_in(dir.path(), &["history"], &[]);
    assert_eq!(unset.status.code(), Some(1));
    assert!(
        text(&unset.stderr)
            .contains("conveyor.toml: store: `${env:HELLO_STORE}`: the environment variable HELLO_STORE is not set"),
        "{}",
        text(&unset.stderr)
    );
}

#[test]
fn a_bad_store_says_what_was_expected_and_never_shows_the_password() {
    let dir = folder();
    let flag = conveyor_in(dir.path(), &["history", "--store", &format!("mysql://app:{PASSWORD}@db/c")], &[]);
    assert_eq!(flag.status.code(), Some(1));
    let stderr = text(&flag.stderr);
    assert!(
        stderr.starts_with(
            "conveyor: --store (or CONVEYOR_STORE): store `mysql://app:***@db/c`: expected a PostgreSQL URL"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD));

    write(dir.path(), "workflows/conveyor.toml", &format!("\n\nstore = \"mysql://app:{PASSWORD}@db/c\"\n"));
    let file = conveyor_in(dir.path(), &["trigger", "Hello"], &[]);
    assert_eq!(file.status.code(), Some(1));
    let stderr = text(&file.stderr);
    assert!(
        stderr.contains("conveyor.toml:3:9: bad `store`: store `mysql://app:***@db/c`: expected a PostgreSQL URL"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD));

    // Unreachable: the driver's message is shown, the password is not.
    let unreachable = format!("postgres://app:{PASSWORD}@127.0.0.1:1/c?connect_timeout=2");
    let down = conveyor_in(dir.path(), &["history", "--store", &unreachable], &[]);
    assert_eq!(down.status.code(), Some(1));
    assert!(!text(&down.stderr).is_empty() && !text(&down.stderr).contains(PASSWORD), "{}", text(&down.stderr));
}

#[test]
fn run_graph_and_backfill_work_on_postgres() {
    let db = database();
    let dir = folder();
    let ran = conveyor_in(dir.path(), &["run", "--store", &db.url, "Hello"], &[]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert!(text(&ran.stdout).contains("hello from postgres"), "{}", text(&ran.stdout));
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "no SQLite file beside the logs");
    let run = wait_until_done(dir.path(), &["--store", &db.url], &[]);
    assert_eq!(run["state"], "succeeded", "{run}");

    let id = run["id"].as_str().unwrap();
    let graph = conveyor_in(dir.path(), &["graph", "Hello", "--run", id, "--store", &db.url], &[]);
    assert_eq!(graph.status.code(), Some(0), "{}", text(&graph.stderr));
    assert!(text(&graph.stdout).contains("Greet"), "{}", text(&graph.stdout));

    write(
        dir.path(),
        "workflows/daily.toml",
        "id = \"Daily\"\n[trigger]\ntype = \"schedule\"\ncron = \"0 0 0 * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Tick\"\nrun = 'echo tick'\n",
    );
    let backfill = conveyor_in(
        dir.path(),
        &["backfill", "Daily", "--from", "2026-03-01", "--to", "2026-03-02", "--store", &db.url],
        &[],
    );
    assert_eq!(backfill.status.code(), Some(0), "{}{}", text(&backfill.stdout), text(&backfill.stderr));
    let listed = conveyor_in(dir.path(), &["history", "Daily", "--json", "--store", &db.url], &[]);
    let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|run| run["trigger"] == "backfill" && run["state"] == "succeeded"), "{runs:?}");
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "no SQLite file beside the logs");
}

/// The console on a PostgreSQL store embeds no engine: it shows what the daemon on that database ran, and `t`
/// reaches that daemon through the database, whichever host it is on.
#[test]
fn a_console_on_postgres_attaches_to_the_cluster_shows_its_runs_and_its_trigger_is_carried_out_by_a_daemon() {
    let db = database();
    let store = with_password(&db.url);
    let dir = folder();
    let daemon = Daemon::start(dir.path(), Some(&store), &[]);
    let triggered = conveyor_in(dir.path(), &["trigger", "--store", &store, "Hello"], &[]);
    assert_eq!(triggered.status.code(), Some(0), "{}", text(&triggered.stderr));
    let first = wait_until_done(dir.path(), &["--store", &store], &[]);
    assert_eq!(first["state"], "succeeded", "{first}");

    // The console's state folder is another one: nothing is shared with the daemon but the database.
    let console_dir = tempfile::tempdir().unwrap();
    write(console_dir.path(), "workflows/hello.toml", HELLO);
    let tmux = Tmux { socket: format!("conveyor-pg-console-{}", std::process::id()) };
    let binary = env!("CARGO_BIN_EXE_conveyor");
    tmux.start(140, 40, console_dir.path().to_str().unwrap(), &["env", "NO_COLOR=1", binary, "--store", &store]);
    let screen = tmux.wait_for("the cluster's runs", |screen| {
        screen.contains("cluster conveyor@") && screen.contains("Hello") && screen.contains("✓ succeeded")
    });
    assert!(!screen.contains(PASSWORD), "{screen}");
    // The daemon's log files are not on the console's host: the log comes from the database.
    std::fs::remove_dir_all(dir.path().join(".conveyor/logs")).unwrap();
    let id = first["id"].as_str().unwrap();
    let logs = conveyor_in(console_dir.path(), &["logs", "--store", &store, id, "Greet"], &[]);
    assert!(text(&logs.stdout).contains("hello from postgres"), "{}{}", text(&logs.stdout), text(&logs.stderr));
    tmux.keys(&["Enter", "l"]);
    tmux.wait_for("the log read from the database", |screen| screen.contains("hello from postgres"));
    tmux.keys(&["Escape", "Escape"]);

    // Past the console's first refresh (a full read, 0.5 s in): from then on it reads only changes, so the
    // run `t` starts can reach its list only as one. Nothing on the screen tells when that read was made.
    std::thread::sleep(Duration::from_millis(1500));
    tmux.keys(&["t"]);
    let started = Instant::now();
    let runs = loop {
        let listed = conveyor_in(dir.path(), &["history", "--json", "--store", &store], &[]);
        let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let runs = runs.as_array().cloned().unwrap_or_default();
        if runs.len() == 2 && runs.iter().all(|run| run["state"] == "succeeded") {
            break runs;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon ran the console's trigger: {runs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let second = runs[0]["id"].as_str().unwrap();
    assert_ne!(second, first["id"].as_str().unwrap());
    tmux.wait_for("the console's status to say which run started", |screen| screen.contains(second));
    // The new run reaches the list through the changes the console reads after its first full read.
    tmux.wait_for("the new run listed as succeeded", |screen| {
        screen.lines().any(|line| line.contains(second) && line.contains("✓ succeeded"))
    });
    tmux.keys(&["q"]);
    tmux.wait_closed("a console attached to the cluster quits at once", Duration::from_secs(10));
    assert!(!console_dir.path().join(".conveyor/conveyor.db").exists(), "the console opened no SQLite store");
    let stderr = daemon.stop();
    assert!(stderr.contains("command from"), "the daemon carried out the console's command: {stderr}");
}

#[test]
fn engines_lists_the_engines_sharing_the_database_and_marks_the_leader() {
    let db = database();
    let dir = folder();
    let joined = |host: &str, pid: u32, routes: &[&str]| {
        let state = tempfile::tempdir().unwrap();
        let store = conveyor::store::Store::connect(&db.url, state.path()).unwrap();
        store.join(host, pid, &routes.iter().map(|route| route.to_string()).collect::<Vec<_>>()).unwrap();
        (state, store)
    };
    let (_a, first) = joined("host-a", 1111, &["process", "http"]);
    let (_b, second) = joined("gpu-host", 2222, &["GpuService"]);
    first.hold_lease("scheduler", Duration::from_secs(60)).unwrap().expect("a free lease");

    let store = with_password(&db.url);
    let listed = conveyor_in(dir.path(), &["engines", "--store", &store], &[]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    let line = |host: &str| table.lines().find(|line| line.contains(host)).unwrap_or_default().to_string();
    assert!(table.lines().next().unwrap().starts_with("ENGINE"), "{table}");
    let (a, b) = (line("host-a"), line("gpu-host"));
    assert!(a.contains("1111") && a.contains("process, http") && a.contains("leader"), "{table}");
    assert!(b.contains("2222") && b.contains("GpuService") && !b.contains("leader"), "{table}");
    assert!(a.contains("s ago") && b.contains("s ago"), "heartbeat ages: {table}");
    assert!(!table.contains(PASSWORD) && !text(&listed.stderr).contains(PASSWORD));

    second.leave().unwrap();
    let listed = conveyor_in(dir.path(), &["engines", "--store", &store], &[]);
    assert!(!text(&listed.stdout).contains("gpu-host"), "an engine that left is gone: {}", text(&listed.stdout));

    let local = conveyor_in(dir.path(), &["engines"], &[]);
    assert_eq!(local.status.code(), Some(0));
    assert!(text(&local.stdout).starts_with("one engine: this state folder's"), "{}", text(&local.stdout));
}
