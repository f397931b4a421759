//! Several `conveyor daemon` processes on one PostgreSQL, as engines on several hosts would share it: each has
//! a state folder of its own (its logs, work files and lock) and they read one workflows folder. A test starts
//! them, pauses, resumes, kills and stops them by signal, waits on lines of their logs and reads the database
//! directly.
//!
//! Every process started here carries a marker in its environment, and so does every task process an engine
//! spawns (they inherit it). Dropping [`Engines`] kills the engines and then every process still carrying the
//! marker, so a failing test leaves nothing running, whatever its engines left behind.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::common::{conveyor, text};
use crate::postgres::{Cluster, TestDatabase, database};

/// The lease's time to live and its renewal, in milliseconds (`CONVEYOR_CLUSTER_TIMING`): short, so a
/// takeover takes seconds rather than the default fifteen.
pub const TIMING: &str = "3000,500";
pub const TTL: Duration = Duration::from_millis(3000);
pub const RENEWAL: Duration = Duration::from_millis(500);

/// How long any single wait of these tests may take before it fails: generous, since a loaded two-core CI
/// machine running debug binaries is slow, and no test asserts speed.
pub const PATIENCE: Duration = Duration::from_secs(30);

const MARKER_VARIABLE: &str = "CONVEYOR_CLUSTER_TEST";

/// Engines on one database, each a real daemon process; all killed on drop, with their task processes.
pub struct Engines {
    pub db: TestDatabase,
    /// A server of this test's own, when the test stops and starts it (dropped after the engines).
    server: Option<Cluster>,
    root: tempfile::TempDir,
    marker: String,
    /// Each engine's process while it runs, by index (an engine keeps its index, and state folder, across
    /// restarts).
    daemons: Vec<Option<Child>>,
    /// Each engine's own arguments (`--serves …`), kept across restarts.
    arguments: Vec<Vec<String>>,
    runtime: tokio::runtime::Runtime,
}

/// Who holds the scheduler's lease now: which of the test's engines (by index), its id in `engines`, its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    pub index: usize,
    pub engine: i64,
    pub term: i64,
}

impl Engines {
    /// Engines on a fresh database in the shared test server.
    pub fn new() -> Engines {
        Engines::on(database(), None)
    }

    /// Engines on a server of the test's own, which it may stop ([`Engines::stop_server`]) and start again.
    pub fn on_private_server() -> Engines {
        let server = Cluster::start_private();
        let db = server.database();
        Engines::on(db, Some(server))
    }

    fn on(db: TestDatabase, server: Option<Cluster>) -> Engines {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = tempfile::tempdir().expect("a temporary folder for the engines");
        fs::create_dir_all(root.path().join("workflows")).unwrap();
        fs::create_dir_all(root.path().join("marks")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for reading the test database");
        Engines {
            db,
            server,
            marker: format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
            root,
            daemons: Vec::new(),
            arguments: Vec::new(),
            runtime,
        }
    }

    /// Writes a workflow file into the shared workflows folder.
    pub fn workflow(&self, file: &str, text: &str) {
        fs::write(self.root.path().join("workflows").join(file), text).unwrap();
    }

    /// A folder for what tasks leave behind (their PIDs, their results): tasks' scripts name it absolutely.
    pub fn marks(&self) -> PathBuf {
        self.root.path().join("marks")
    }

    pub fn state(&self, index: usize) -> PathBuf {
        self.root.path().join(format!("engine-{index}"))
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.root.path().join(format!("engine-{index}.log"))
    }

    /// Starts one more engine; returns its index.
    pub fn start(&mut self) -> usize {
        self.start_with(&[])
    }

    /// Starts one more engine with arguments of its own (`--serves …`), kept for its restarts.
    pub fn start_with(&mut self, arguments: &[&str]) -> usize {
        self.daemons.push(None);
        self.arguments.push(arguments.iter().map(|argument| argument.to_string()).collect());
        let index = self.daemons.len() - 1;
        self.restart(index);
        index
    }

    /// The id engine `index` (running) registered with in `engines`, once it has.
    pub fn engine_id(&self, index: usize) -> i64 {
        let pid = i64::from(self.pid(index));
        let mut found = None;
        self.wait_until("the engine has registered", || {
            let rows = self.query("SELECT id FROM engines WHERE pid = $1 ORDER BY id DESC", &[&pid]);
            found = rows.first().map(|row| row.get("id"));
            found.is_some()
        });
        found.unwrap()
    }

    /// Starts `count` more engines at once; returns their indexes.
    pub fn start_many(&mut self, count: usize) -> Vec<usize> {
        (0..count).map(|_| self.start()).collect()
    }

    /// Starts engine `index` again, on its own state folder, after it was stopped or killed.
    pub fn restart(&mut self, index: usize) {
        assert!(self.daemons[index].is_none(), "engine {index} still runs");
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(index)).unwrap();
        let child = conveyor()
            .arg("daemon")
            .arg("--workflows")
            .arg(self.root.path().join("workflows"))
            .arg("--state")
            .arg(self.state(index))
            .args(["--store", &self.db.url])
            .args(&self.arguments[index])
            .env("CONVEYOR_CLUSTER_TIMING", TIMING)
            .env(MARKER_VARIABLE, &self.marker)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the conveyor binary runs");
        self.daemons[index] = Some(child);
    }

    /// The process id of engine `index` (which must be running).
    pub fn pid(&self, index: usize) -> u32 {
        self.daemons[index].as_ref().unwrap_or_else(|| panic!("engine {index} is not running")).id()
    }

    pub fn signal(&self, index: usize, signal: libc::c_int) {
        // SAFETY: a signal to our own child, which has not been waited for, so its pid is still ours.
        let sent = unsafe { libc::kill(self.pid(index) as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signalling engine {index}");
    }

    /// SIGSTOP: the engine freezes (its task processes, in groups of their own, do not).
    pub fn pause(&self, index: usize) {
        self.signal(index, libc::SIGSTOP);
    }

    pub fn resume(&self, index: usize) {
        self.signal(index, libc::SIGCONT);
    }

    /// SIGKILL, waited for: the engine has no chance to stop its tasks or leave the cluster.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut daemon) = self.daemons[index].take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// SIGTERM (after SIGCONT, should it be paused), waited for: a clean stop.
    pub fn terminate(&mut self, index: usize) -> ExitStatus {
        self.resume(index);
        self.signal(index, libc::SIGTERM);
        let mut daemon = self.daemons[index].take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = daemon.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = daemon.kill();
                let _ = daemon.wait();
                panic!("engine {index} did not stop within {PATIENCE:?} of SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every running engine cleanly, all at once; panics if one does not exit with success.
    pub fn terminate_all(&mut self) {
        let running: Vec<usize> = (0..self.daemons.len()).filter(|&index| self.daemons[index].is_some()).collect();
        for &index in &running {
            self.resume(index);
            self.signal(index, libc::SIGTERM);
        }
        for index in running {
            let status = self.terminate(index);
            assert!(status.success(), "engine {index} stopped with {status}:\n{}", self.logs());
        }
    }

    /// Whether engine `index` is still running (a process that exited is reaped here).
    pub fn is_running(&mut self, index: usize) -> bool {
        let Some(daemon) = self.daemons[index].as_mut() else { return false };
        if matches!(daemon.try_wait(), Ok(None)) {
            return true;
        }
        self.daemons[index] = None;
        false
    }

    /// Everything engine `index` has logged, over all its starts.
    pub fn log(&self, index: usize) -> String {
        text(&fs::read(self.log_path(index)).unwrap_or_default())
    }

    /// Where engine `index`'s log ends now: a later wait can look only at what comes after.
    pub fn log_mark(&self, index: usize) -> usize {
        fs::metadata(self.log_path(index)).map(|meta| meta.len() as usize).unwrap_or(0)
    }

    /// Every engine's log, for a failure's message.
    pub fn logs(&self) -> String {
        (0..self.daemons.len()).map(|index| format!("--- engine {index} ---\n{}", self.log(index))).collect()
    }

    /// Waits until engine `index` logs a line containing `needle` after `mark`; returns that line.
    pub fn wait_for_line(&self, index: usize, mark: usize, needle: &str) -> String {
        self.wait_for_line_within(PATIENCE, index, mark, needle)
    }

    pub fn wait_for_line_within(&self, within: Duration, index: usize, mark: usize, needle: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = fs::read(self.log_path(index)).unwrap_or_default();
            let after = text(log.get(mark..).unwrap_or_default());
            if let Some(line) = after.lines().find(|line| line.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "engine {index} logged no line with `{needle}` within {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `condition` holds, polling; panics naming `what` (and showing the logs) if it never does.
    pub fn wait_until(&self, what: &str, condition: impl FnMut() -> bool) {
        self.wait_until_within(PATIENCE, what, condition);
    }

    pub fn wait_until_within(&self, within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A query on the test database, through a connection of its own (so a test that terminates the
    /// database's sessions does not break the next read); `Err` if the database cannot answer.
    pub fn try_query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.runtime.block_on(async {
            let client = self.db.connect().await?;
            client.query(sql, params).await
        })
    }

    /// Like `try_query`, tried again for a while if the database does not answer (its sessions being
    /// terminated, say); panics with the last error.
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.try_query(sql, params) {
                Ok(rows) => return rows,
                Err(error) if Instant::now() > deadline => panic!("the test database did not answer `{sql}`: {error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The engine holding the scheduler's lease now (its lease not lapsed), if it is one of this test's.
    pub fn leader(&self) -> Option<Leader> {
        let rows = self
            .try_query(
                "SELECT e.pid, l.holder, l.term FROM leases l JOIN engines e ON e.id = l.holder
                 WHERE l.name = 'scheduler' AND l.expires_at > now()",
                &[],
            )
            .ok()?;
        let row = rows.first()?;
        let pid: i64 = row.get("pid");
        let index = (0..self.daemons.len())
            .find(|&index| self.daemons[index].as_ref().is_some_and(|daemon| i64::from(daemon.id()) == pid))?;
        Some(Leader { index, engine: row.get("holder"), term: row.get("term") })
    }

    /// Waits until one of the engines holds the lease. (An engine that wins its very first bid says nothing
    /// of it in its log, so the database is what is asked.)
    pub fn wait_for_leader(&self) -> Leader {
        let mut found = None;
        self.wait_until("an engine holds the scheduler's lease", || {
            found = self.leader();
            found.is_some()
        });
        found.unwrap()
    }

    /// The lease's term as the database has it, lapsed or not (0: never taken).
    pub fn term(&self) -> i64 {
        let rows = self.query("SELECT term FROM leases WHERE name = 'scheduler'", &[]);
        rows.first().map_or(0, |row| row.get("term"))
    }

    /// Stops the test's private server (fast shutdown), as a database outage.
    pub fn stop_server(&self) {
        self.server.as_ref().expect("a private server (Engines::on_private_server)").stop_server();
    }

    pub fn start_server(&self) {
        self.server.as_ref().expect("a private server (Engines::on_private_server)").start_server();
    }

    /// `conveyor trigger WORKFLOW` from another shell, through the database; returns the new run's id.
    pub fn trigger(&self, workflow: &str) -> String {
        let output = conveyor()
            .args(["trigger", "--store", &self.db.url, "--state"])
            .arg(self.root.path().join("shell"))
            .arg("--workflows")
            .arg(self.root.path().join("workflows"))
            .arg(workflow)
            .current_dir(self.root.path())
            .output()
            .expect("the conveyor binary runs");
        let said = text(&output.stdout);
        assert!(output.status.success(), "trigger {workflow}: {said}{}\n{}", text(&output.stderr), self.logs());
        let run = said.strip_prefix("started run ").and_then(|rest| rest.split_whitespace().next());
        run.unwrap_or_else(|| panic!("`trigger {workflow}` said no run id: {said}")).to_string()
    }

    /// A run's state in the database.
    pub fn run_state(&self, run: &str) -> Option<String> {
        let rows = self.query("SELECT state FROM runs WHERE id = $1", &[&run]);
        rows.first().map(|row| row.get("state"))
    }

    /// The engine (its id in `engines`) recorded as the one that ran an attempt.
    pub fn attempt_engine(&self, run: &str, task: &str, attempt: i64) -> Option<i64> {
        let rows = self.query(
            "SELECT engine FROM attempts WHERE run_id = $1 AND task = $2 AND attempt = $3",
            &[&run, &task, &attempt],
        );
        rows.first().and_then(|row| row.get("engine"))
    }

    /// A task's attempts, in order: (number, state).
    pub fn attempts(&self, run: &str, task: &str) -> Vec<(i64, String)> {
        let rows = self.query(
            "SELECT attempt, state FROM attempts WHERE run_id = $1 AND task = $2 ORDER BY attempt",
            &[&run, &task],
        );
        rows.iter().map(|row| (row.get("attempt"), row.get("state"))).collect()
    }

    /// What was decided for each instant of `workflow`'s schedule: the outcomes recorded per instant. A fire
    /// queued and later started counts once (the queued record is superseded by the start's); one still
    /// queued counts as its decision.
    pub fn decisions(&self, workflow: &str) -> BTreeMap<DateTime<Utc>, Vec<String>> {
        decisions_from(&self.query(
            "SELECT workflow, scheduled_at, outcome, pending FROM fires WHERE workflow = $1 ORDER BY scheduled_at, id",
            &[&workflow],
        ))
        .remove(workflow)
        .unwrap_or_default()
    }

    /// `decisions` for every workflow at once.
    pub fn all_decisions(&self) -> BTreeMap<String, BTreeMap<DateTime<Utc>, Vec<String>>> {
        decisions_from(&self.query(
            "SELECT workflow, scheduled_at, outcome, pending FROM fires ORDER BY workflow, scheduled_at, id",
            &[],
        ))
    }

    /// The words the test's task scripts wrote to `marks/NAME`, a line each; a line still being written is
    /// left out.
    pub fn marked_words(&self, name: &str) -> Vec<Vec<String>> {
        let written = fs::read_to_string(self.marks().join(name)).unwrap_or_default();
        let complete = written.rsplit_once('\n').map_or("", |(complete, _)| complete);
        complete.lines().map(|line| line.split_whitespace().map(str::to_string).collect()).collect()
    }

    /// The numbers the test's task scripts wrote to `marks/NAME`, a line each (say `$$ $PPID`: the task's
    /// PID and the engine's that started it).
    pub fn marked(&self, name: &str) -> Vec<Vec<i32>> {
        let lines = self.marked_words(name);
        lines.iter().map(|words| words.iter().filter_map(|word| word.parse().ok()).collect()).collect()
    }

    /// Every live process carrying this test's marker: its engines and their task processes.
    pub fn marked_processes(&self) -> Vec<i32> {
        let needle = format!("{MARKER_VARIABLE}={}", self.marker);
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| is_alive(pid))
            .filter(|pid| {
                let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                environ.split(|byte| *byte == 0).any(|entry| entry == needle.as_bytes())
            })
            .collect()
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        for index in 0..self.daemons.len() {
            self.kill(index);
        }
        // Then whatever the engines' tasks left: killed until none is left (a shell may fork meanwhile).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.marked_processes();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in left {
                // SAFETY: a process carrying this test's marker was started by this test's engines.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `pid` is a live process (not a zombie waiting to be reaped).
pub fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

fn decisions_from(rows: &[Row]) -> BTreeMap<String, BTreeMap<DateTime<Utc>, Vec<String>>> {
    let mut decided: BTreeMap<String, BTreeMap<DateTime<Utc>, Vec<String>>> = BTreeMap::new();
    for row in rows {
        let outcome: String = row.get("outcome");
        let pending: bool = row.get("pending");
        if outcome.starts_with("queued") && !pending {
            continue;
        }
        let (workflow, at): (String, DateTime<Utc>) = (row.get("workflow"), row.get("scheduled_at"));
        decided.entry(workflow).or_default().entry(at).or_default().push(outcome);
    }
    decided
}

/// Checks that every instant `period` apart from `from` to `to` has exactly one decision and no instant
/// outside that grid has any; returns what is wrong, instant by instant.
pub fn exactly_once(
    decisions: &BTreeMap<DateTime<Utc>, Vec<String>>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    period: chrono::Duration,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut at = from;
    while at <= to {
        match decisions.get(&at).map(Vec::len) {
            None => problems.push(format!("{at}: missed")),
            Some(1) => {}
            Some(_) => problems.push(format!("{at}: {:?}", decisions[&at])),
        }
        at += period;
    }
    for (at, outcomes) in decisions.range(from..=to) {
        if (*at - from).num_milliseconds() % period.num_milliseconds() != 0 {
            problems.push(format!("{at} is off the schedule: {outcomes:?}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

/// The instants with more than one decision, anywhere.
pub fn doubled(decisions: &BTreeMap<DateTime<Utc>, Vec<String>>) -> Vec<String> {
    decisions
        .iter()
        .filter(|(_, outcomes)| outcomes.len() > 1)
        .map(|(at, outcomes)| format!("{at}: {outcomes:?}"))
        .collect()
}

/// A workflow firing on `cron` (6 fields: seconds first) in UTC, with `options` at the top level, whose one
/// task runs `script`.
pub fn scheduled(id: &str, cron: &str, options: &str, script: &str) -> String {
    format!(
        "id = \"{id}\"\n{options}\n[trigger]\ntype = \"schedule\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\n\
         [[tasks]]\nname = \"Work\"\nrun = '{script}'\n"
    )
}

/// A manually triggered workflow whose one task runs `script`.
pub fn manual(id: &str, script: &str) -> String {
    format!("id = \"{id}\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Work\"\nrun = '{script}'\n")
}
