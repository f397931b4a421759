//! A throwaway PostgreSQL server for the tests, started from the machine's server binaries.
//!
//! One shared cluster per test binary, started on first use, hands every test its own fresh database
//! ([`database`]). Tests that stop or restart the server take a [`Cluster::start_private`] one instead, so they
//! cannot disturb tests running beside them. A cluster lives in a folder of its own under
//! `$TMPDIR/conveyor-pg-tests/` and listens on a Unix socket only: no TCP port to collide with.
//!
//! Teardown, since Rust runs no destructors for statics at exit:
//! - every server is spawned with its parent-death signal set to SIGINT (PostgreSQL's fast shutdown). The
//!   kernel sends it when the *thread* that spawned the server ends, so all spawns go through one dedicated
//!   thread that lives as long as the process: the server goes down however the test binary ends, even by
//!   SIGKILL or an abort;
//! - on a normal exit an `atexit` handler also stops the shared server, waits for it and removes its folder,
//!   so nothing is left the moment `cargo test` returns;
//! - each cluster folder holds an `flock` for the life of its test process; a later run that can take the lock
//!   knows the owner is dead, stops a server still running there and removes the folder.
//!
//! A private cluster stops and removes itself on drop.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::chown;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

const SUPERUSER: &str = "conveyor";
const READY_WITHIN: Duration = Duration::from_secs(30);
const STOPPED_WITHIN: Duration = Duration::from_secs(15);
const INSTALL_HINT: &str = "install the PostgreSQL server binaries (Debian/Ubuntu: `apt-get install postgresql`; \
                            .ci/run does this) or put their `pg_config` on PATH";

/// A fresh database of its own for one test.
pub struct TestDatabase {
    pub name: String,
    /// `host=SOCKETDIR user=conveyor dbname=NAME`
    pub conninfo: String,
    /// The same as a `postgres://` URL, the socket folder percent-encoded as the host.
    pub url: String,
    socket_dir: PathBuf,
}

impl TestDatabase {
    /// A client on the current tokio runtime; its connection is driven by a spawned task.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        connect(&self.conninfo).await
    }
}

/// A fresh database in the shared cluster; panics with the reason (e.g. how to install PostgreSQL) if there is none.
pub fn database() -> TestDatabase {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let cluster = SHARED.get_or_init(|| {
        let cluster = Cluster::start(false)?;
        stop_at_exit(&cluster);
        Ok(cluster)
    });
    match cluster {
        Ok(cluster) => cluster.database(),
        Err(reason) => panic!("no PostgreSQL for the tests: {reason}"),
    }
}

/// Terminates every session connected to `db`, waiting until they are gone; returns how many there were.
pub fn kill_connections(db: &TestDatabase) -> u64 {
    let admin = conninfo(&db.socket_dir, "postgres");
    block_on(async {
        let client = connect(&admin).await.expect("an administrative connection to the test cluster");
        // The timeout makes pg_terminate_backend wait for the session to end, so the caller sees it gone.
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db.name],
            )
            .await
            .expect("terminating the test database's sessions");
        row.get::<_, i64>(0) as u64
    })
}

pub struct Cluster {
    bindir: PathBuf,
    run_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    account: Option<Account>,
    server: Mutex<Option<Child>>,
    next_database: AtomicUsize,
    private: bool,
    /// Held (flock) while this process lives; see the module's notes on teardown.
    _owner_lock: File,
}

impl Cluster {
    /// A cluster of the calling test's own, for stopping and restarting; stopped and removed on drop.
    pub fn start_private() -> Cluster {
        Cluster::start(true).unwrap_or_else(|reason| panic!("no PostgreSQL for the tests: {reason}"))
    }

    /// A fresh database in this cluster.
    pub fn database(&self) -> TestDatabase {
        let name = format!("test_{}", self.next_database.fetch_add(1, Ordering::Relaxed));
        let admin = conninfo(&self.socket_dir, "postgres");
        block_on(async {
            let client = connect(&admin).await.expect("an administrative connection to the test cluster");
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("creating a test database");
        });
        TestDatabase {
            conninfo: conninfo(&self.socket_dir, &name),
            url: url(&self.socket_dir, &name),
            socket_dir: self.socket_dir.clone(),
            name,
        }
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits until it is gone.
    pub fn stop_server(&self) {
        if let Some(mut server) = self.server.lock().unwrap().take() {
            stop_child(&mut server);
        }
    }

    /// Starts the server again on the same data; returns once it accepts connections.
    pub fn start_server(&self) {
        let mut server = self.server.lock().unwrap();
        assert!(server.is_none(), "the test cluster's server is already running");
        *server = Some(self.launch().unwrap_or_else(|reason| panic!("restarting the test cluster: {reason}")));
    }

    pub fn restart(&self) {
        self.stop_server();
        self.start_server();
    }

    /// The running server's process id, if it runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.lock().unwrap().as_ref().map(Child::id)
    }

    pub fn folder(&self) -> &Path {
        &self.run_dir
    }

    fn start(private: bool) -> Result<Cluster, String> {
        let bindir = locate_bindir("pg_config", Path::new("/usr/lib/postgresql"))?;
        let account = server_account()?;
        let root = std::env::temp_dir().join("conveyor-pg-tests");
        fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        sweep_stale(&root);

        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let run_dir = root.join(format!("run-{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&run_dir); // left by a dead process that had our pid
        fs::create_dir(&run_dir).map_err(|e| format!("creating {}: {e}", run_dir.display()))?;
        let owner_lock =
            lock_as_owner(&run_dir.join("owner.lock")).map_err(|e| format!("locking {}: {e}", run_dir.display()))?;
        let socket_dir = run_dir.join("socket");
        fs::create_dir(&socket_dir).map_err(|e| format!("creating {}: {e}", socket_dir.display()))?;
        // A Unix socket path is limited to 107 bytes; PostgreSQL adds "/.s.PGSQL.5432".
        if socket_dir.as_os_str().len() + 14 > 107 {
            return Err(format!(
                "the socket folder {} is too long for a Unix socket; set TMPDIR shorter",
                socket_dir.display()
            ));
        }
        if let Some(account) = &account {
            for dir in [&run_dir, &socket_dir] {
                chown(dir, Some(account.uid), Some(account.gid))
                    .map_err(|e| format!("handing {} to the postgres user: {e}", dir.display()))?;
            }
        }
        let cluster = Cluster {
            data_dir: run_dir.join("data"),
            log: run_dir.join("server.log"),
            bindir,
            run_dir,
            socket_dir,
            account,
            server: Mutex::new(None),
            next_database: AtomicUsize::new(0),
            private,
            _owner_lock: owner_lock,
        };
        cluster.initdb()?;
        *cluster.server.lock().unwrap() = Some(cluster.launch()?);
        Ok(cluster)
    }

    fn initdb(&self) -> Result<(), String> {
        let mut initdb = self.command("initdb")?;
        initdb.arg("-D").arg(&self.data_dir).args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"]);
        initdb.arg("--no-sync");
        let mut child = spawn_guarded(initdb).map_err(|e| format!("running initdb: {e}"))?;
        let status = child.wait().map_err(|e| format!("waiting for initdb: {e}"))?;
        if !status.success() {
            return Err(format!("initdb failed ({status}):\n{}", self.log_tail()));
        }
        Ok(())
    }

    /// Spawns the server and waits until it accepts a connection.
    fn launch(&self) -> Result<Child, String> {
        let mut postgres = self.command("postgres")?;
        postgres.arg("-D").arg(&self.data_dir).arg("-k").arg(&self.socket_dir);
        // Durability is worthless for a throwaway cluster; connections for many pools at once.
        for setting in
            ["listen_addresses=", "fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
        {
            postgres.args(["-c", setting]);
        }
        let mut server = spawn_guarded(postgres).map_err(|e| format!("starting postgres: {e}"))?;
        let admin = conninfo(&self.socket_dir, "postgres");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = server.try_wait() {
                return Err(format!("postgres exited ({status}) before accepting connections:\n{}", self.log_tail()));
            }
            if block_on(connect(&admin)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                stop_child(&mut server);
                return Err(format!("postgres accepted no connection within {READY_WITHIN:?}:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A command for one of the server binaries, as the server's account, its output appended to the log.
    fn command(&self, program: &str) -> Result<Command, String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let log_too = log.try_clone().map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let mut command = Command::new(self.bindir.join(program));
        command.current_dir(&self.run_dir).stdin(Stdio::null()).stdout(log).stderr(log_too);
        if let Some(account) = &self.account {
            command.uid(account.uid).gid(account.gid);
        }
        Ok(command)
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(length.saturating_sub(4000)));
            let _ = file.read_to_string(&mut text);
        }
        format!("--- {} ---\n{text}", self.log.display())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.private {
            self.stop_server();
            let _ = fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// The folder of `initdb` and `postgres`: `pg_config --bindir`, else the newest `SEARCH_ROOT/*/bin`.
pub fn locate_bindir(pg_config: &str, search_root: &Path) -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(output) = Command::new(pg_config).arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(search_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        format!(
            "no PostgreSQL server binaries: `{pg_config} --bindir` names none and {}/*/bin has no initdb; {INSTALL_HINT}",
            search_root.display()
        )
    })
}

struct Account {
    uid: u32,
    gid: u32,
}

/// initdb and postgres refuse to run as root: as root, the server runs as the `postgres` user.
fn server_account() -> Result<Option<Account>, String> {
    // SAFETY: geteuid cannot fail; getpwnam's result is read at once, before any other passwd lookup.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(None);
        }
        let name = CString::new("postgres").unwrap();
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            return Err(format!(
                "the tests run as root, and PostgreSQL will not: create a `postgres` user \
                 (`useradd --system --user-group postgres`) or {INSTALL_HINT}"
            ));
        }
        Ok(Some(Account { uid: (*entry).pw_uid, gid: (*entry).pw_gid }))
    }
}

/// Spawns `command` so that it gets SIGINT when this process ends (see the module's notes on teardown).
fn spawn_guarded(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop and the thread last as long as the process.
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("a thread to spawn the test PostgreSQL from");
        requests
    });
    // SAFETY: prctl is async-signal-safe; this runs in the child after it took the server's uid (which would
    // clear the setting) and before exec (which keeps it).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner.send((command, reply)).map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// SIGINT is PostgreSQL's fast shutdown: sessions end, a checkpoint, exit. SIGKILL if it takes too long.
fn stop_child(server: &mut Child) {
    signal(server.id(), libc::SIGINT);
    let deadline = Instant::now() + STOPPED_WITHIN;
    while matches!(server.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if matches!(server.try_wait(), Ok(None)) {
        let _ = server.kill();
        let _ = server.wait();
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a process that is already gone only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Stops the shared server when the test binary exits normally and removes its folder.
fn stop_at_exit(cluster: &Cluster) {
    static AT_EXIT: OnceLock<(u32, PathBuf)> = OnceLock::new();
    let pid = cluster.server_pid().expect("the shared server runs");
    if AT_EXIT.set((pid, cluster.run_dir.clone())).is_err() {
        return;
    }
    extern "C" fn at_exit() {
        if let Some((pid, run_dir)) = AT_EXIT.get() {
            signal(*pid, libc::SIGINT);
            let deadline = Instant::now() + STOPPED_WITHIN;
            let mut status = 0;
            // SAFETY: the server is our child and nothing else waits for it once the tests are done.
            while unsafe { libc::waitpid(*pid as libc::pid_t, &mut status, libc::WNOHANG) } == 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = fs::remove_dir_all(run_dir);
        }
    }
    // SAFETY: registers a plain function; it only signals, waits and removes files.
    unsafe {
        libc::atexit(at_exit);
    }
}

/// Takes the folder's owner lock (blocking: a sweeper may hold it for a moment) and marks it taken.
fn lock_as_owner(path: &Path) -> io::Result<File> {
    let mut file = File::create(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // A sweeper leaves an unmarked lock file alone: its owner may not have taken it yet.
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Removes the cluster folders of test processes that are gone, stopping a server still running in one.
pub fn sweep_stale(root: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(mut lock) = File::open(dir.join("owner.lock")) else { continue };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == -1 {
            continue; // its test process is alive
        }
        let mut owner = String::new();
        if lock.read_to_string(&mut owner).is_err() || owner.trim().is_empty() {
            continue; // being created right now
        }
        let data_dir = dir.join("data");
        if let Some(pid) = running_postmaster(&data_dir) {
            signal(pid, libc::SIGINT);
            let deadline = Instant::now() + STOPPED_WITHIN;
            while running_postmaster(&data_dir) == Some(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if running_postmaster(&data_dir) == Some(pid) {
                signal(pid, libc::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// The pid in `postmaster.pid`, if that process is alive and is the postgres serving `data_dir`.
fn running_postmaster(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    // A pid may have been reused: it must be a live (not zombie) process whose command line names this folder.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let names_folder = cmdline.split(|b| *b == 0).any(|arg| OsStr::from_bytes(arg) == data_dir.as_os_str());
    (state != "Z" && state != "X" && names_folder).then_some(pid)
}

async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs async work to completion from sync or async code alike: on a thread with a runtime of its own.
fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                runtime.expect("a tokio runtime for the test cluster").block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn conninfo(socket_dir: &Path, dbname: &str) -> String {
    format!("host={} user={SUPERUSER} dbname={dbname}", conninfo_value(&socket_dir.to_string_lossy()))
}

/// libpq's quoting: a value with spaces, quotes or backslashes goes in single quotes, those two escaped.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\']) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn url(socket_dir: &Path, dbname: &str) -> String {
    format!("postgres://{SUPERUSER}@{}/{dbname}", percent_encode(socket_dir.as_os_str().as_bytes()))
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
