//! The connection to PostgreSQL and the thread it lives on. The store's interface is synchronous and its
//! callers run inside tokio runtimes (a current-thread one in `conveyor run`, where nothing may block the
//! runtime's thread on another runtime), so the client lives on a thread of its own with its own
//! current-thread runtime: a store call sends its work there and waits for the answer.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::store::{Result, StoreError};

/// How long a connection attempt may take when the address does not say.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// How long one statement may wait for its answer: a server that stops answering is an error, never a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce(&mut Connections) + Send>;

/// The two connections of a store: one for records (where the engine's batch is a transaction), and one for
/// coordination, so that a lease or a heartbeat is decided and committed on its own, never held up by, nor
/// rolled back with, a step's writes.
struct Connections {
    records: Conn,
    coordination: Conn,
}

/// The thread that owns the connections; store calls run on it one at a time.
pub(super) struct Worker {
    /// Shared only weakly (`Reader`), so the thread still ends when the store is dropped.
    jobs: Option<Arc<mpsc::Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

/// Reads on the store's thread for something that may outlive the store (a `LogReader` handed out by it):
/// once the store is gone, its reads fail instead of keeping the thread alive.
#[derive(Clone)]
pub(super) struct Reader(Weak<mpsc::Sender<Job>>);

impl Reader {
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static) -> Result<T> {
        let jobs = self.0.upgrade().ok_or_else(gone)?;
        send(&jobs, move |connections| work(&mut connections.records))
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the PostgreSQL connection's thread is gone".into())
}

fn send<T: Send + 'static>(
    jobs: &mpsc::Sender<Job>,
    work: impl FnOnce(&mut Connections) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |connections| {
        let _ = reply.send(work(connections));
    });
    jobs.send(job).map_err(|_| gone())?;
    // Every wait on the thread is bounded (ANSWER_WITHIN, CONNECT_WITHIN), so this returns.
    answer.recv().map_err(|_| gone())?
}

impl Worker {
    /// Starts the thread; the first connection is made by the first job.
    pub fn start(config: Config, target: String) -> Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Unavailable(format!("a runtime for the PostgreSQL connection: {error}")))?;
        let (jobs, incoming) = mpsc::channel::<Job>();
        // Log lines of the connection go where the opener's go (a test's capture, the console's log pane).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let thread = std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let _logging = tracing::dispatcher::set_default(&dispatch);
                let runtime = Rc::new(runtime);
                let conn = |runtime: &Rc<Runtime>| Conn {
                    runtime: Rc::clone(runtime),
                    config: config.clone(),
                    target: target.clone(),
                    client: None,
                    statements: HashMap::new(),
                    transaction: Transaction::None,
                };
                // The coordination connection is made when first used: a CLI command never needs it.
                let mut connections = Connections { records: conn(&runtime), coordination: conn(&runtime) };
                for job in incoming {
                    job(&mut connections);
                }
            })
            .map_err(StoreError::Io)?;
        Ok(Worker { jobs: Some(Arc::new(jobs)), thread: Some(thread) })
    }

    /// Runs `work` on the records' connection and waits for its answer.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static) -> Result<T> {
        self.send(move |connections| work(&mut connections.records))
    }

    /// Runs `work` on the coordination connection (outside any batch) and waits for its answer.
    pub fn coordinate<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.send(move |connections| work(&mut connections.coordination))
    }

    fn send<T: Send + 'static>(&self, work: impl FnOnce(&mut Connections) -> Result<T> + Send + 'static) -> Result<T> {
        send(self.jobs.as_ref().ok_or_else(gone)?, work)
    }

    /// `run` for async callers: the answer is awaited rather than waited for, so a runtime's thread is free
    /// while the database answers.
    pub async fn ask<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connections| {
            let _ = reply.send(work(&mut connections.records));
        });
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// A handle for reads that does not keep the thread alive.
    pub fn reader(&self) -> Reader {
        Reader(self.jobs.as_ref().map(Arc::downgrade).unwrap_or_default())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The thread ends once its queue is closed; its connection closes with it.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the connection stands with respect to a transaction this store opened.
#[derive(Debug, Clone, PartialEq)]
enum Transaction {
    None,
    Open,
    /// A statement failed or the connection was lost inside it: the transaction is gone (rolled back), and
    /// nothing more may be written as if it were still open.
    Broken(String),
}

/// The client and what goes with it, used only on the connection's thread.
pub(super) struct Conn {
    /// Shared by the thread's connections.
    runtime: Rc<Runtime>,
    config: Config,
    /// Where the store is, for messages: never the password.
    target: String,
    client: Option<Client>,
    /// Statements prepared on the current client.
    statements: HashMap<&'static str, Statement>,
    transaction: Transaction,
}

impl Conn {
    pub fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.prepare(sql)?;
        let client = self.client.as_ref().expect("prepared on a client");
        let answer = self.runtime.block_on(within(client.execute(&statement, params)));
        self.settle(answer)
    }

    pub fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let started = std::time::Instant::now();
        let answer = self.query_once(sql, params);
        // A read outside a transaction whose connection turned out closed (a session killed while idle, a
        // server restarted) is asked once more on a new one: it changes nothing, so asking twice is safe.
        // Not after a timeout (the wait would double), and never a write, which may have landed.
        let read = sql.trim_start().get(..6).is_some_and(|verb| verb.eq_ignore_ascii_case("SELECT"));
        match answer {
            Err(StoreError::Unavailable(_))
                if read
                    && self.client.is_none()
                    && self.transaction == Transaction::None
                    && started.elapsed() < ANSWER_WITHIN =>
            {
                self.query_once(sql, params)
            }
            answer => answer,
        }
    }

    fn query_once(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.prepare(sql)?;
        let client = self.client.as_ref().expect("prepared on a client");
        let answer = self.runtime.block_on(within(client.query(&statement, params)));
        self.settle(answer)
    }

    pub fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub fn query_one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Database(format!("no row where one was expected: {}", first_line(sql))))
    }

    /// Statements without parameters, sent as one (migrations, transaction control).
    pub fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.connected()?;
        let client = self.client.as_ref().expect("connected above");
        let answer = self.runtime.block_on(within(client.batch_execute(sql)));
        self.settle(answer)
    }

    /// Opens a transaction for the engine's batch.
    pub fn begin(&mut self) -> Result<()> {
        self.rollback();
        self.batch_execute("BEGIN")?;
        self.transaction = Transaction::Open;
        Ok(())
    }

    /// Commits the open transaction; a broken one is an error (PostgreSQL would answer a COMMIT of an
    /// aborted transaction with a silent ROLLBACK).
    pub fn commit(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.transaction, Transaction::None) {
            Transaction::Open => {
                self.transaction = Transaction::Open;
                let committed = self.batch_execute("COMMIT");
                self.transaction = Transaction::None;
                committed
            }
            Transaction::Broken(why) => Err(StoreError::Unavailable(why)),
            Transaction::None => Err(StoreError::Unavailable("no transaction is open to commit".into())),
        }
    }

    /// Ends the transaction without its writes, if one is open; best effort (a lost connection has ended it).
    pub fn rollback(&mut self) {
        if std::mem::replace(&mut self.transaction, Transaction::None) == Transaction::Open
            && let Some(client) = &self.client
        {
            let _ = self.runtime.block_on(within(client.batch_execute("ROLLBACK")));
        }
    }

    /// Why the open transaction cannot take more writes, if it cannot.
    pub fn broken(&self) -> Option<String> {
        match &self.transaction {
            Transaction::Broken(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Runs `work` as one unit: inside the open transaction it is part of it; outside one, a transaction
    /// of its own. Never on its own while a transaction is broken: it would land without the rest.
    pub fn atomically<T>(&mut self, work: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        match &self.transaction {
            Transaction::Open => return work(self),
            Transaction::Broken(why) => return Err(StoreError::Unavailable(why.clone())),
            Transaction::None => {}
        }
        self.begin()?;
        match work(self) {
            Ok(value) => {
                self.commit()?;
                Ok(value)
            }
            Err(error) => {
                self.rollback();
                Err(error)
            }
        }
    }

    fn prepare(&mut self, sql: &'static str) -> Result<Statement> {
        self.connected()?;
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let client = self.client.as_ref().expect("connected above");
        let answer = self.runtime.block_on(within(client.prepare(sql)));
        let statement = self.settle(answer)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// A live client, connecting first when there is none (or it was lost). Never inside a transaction:
    /// a new connection has none, and a write sent there would land on its own.
    fn connected(&mut self) -> Result<()> {
        if self.client.is_some() {
            // Lets the connection's task read what the server sent while nobody was asking (a session killed
            // while idle), so a closed connection is noticed before a statement is sent on it.
            self.runtime.block_on(tokio::task::yield_now());
            if self.client.as_ref().is_some_and(Client::is_closed) {
                let why = format!("the connection to PostgreSQL at {} was closed", self.target);
                let in_transaction = self.transaction == Transaction::Open;
                self.lost(why.clone());
                if in_transaction {
                    return Err(StoreError::Unavailable(why));
                }
            }
        }
        if self.client.is_none() {
            let config = self.config.clone();
            let target = self.target.clone();
            let connected = self.runtime.block_on(async move {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::warn!("the connection to PostgreSQL at {target} ended: {}", words(&error));
                    }
                });
                Ok::<_, tokio_postgres::Error>(client)
            });
            let client = connected.map_err(|error| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL at {}: {}", self.target, words(&error)))
            })?;
            self.statements.clear();
            self.client = Some(client);
        }
        Ok(())
    }

    /// Turns an answer (or its absence) into the store's terms, and notes a failure inside a transaction.
    fn settle<T>(
        &mut self,
        answer: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        let error = match answer {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if error.is_closed() || self.client.as_ref().is_none_or(Client::is_closed) => {
                let why = format!("the connection to PostgreSQL at {} was lost: {}", self.target, words(&error));
                self.lost(why.clone());
                StoreError::Unavailable(why)
            }
            Ok(Err(error)) => StoreError::Database(words(&error)),
            Err(_) => {
                let why = format!("PostgreSQL at {} did not answer within {ANSWER_WITHIN:?}", self.target);
                // Its state is unknown: a new connection starts clean.
                self.lost(why.clone());
                StoreError::Unavailable(why)
            }
        };
        if self.transaction == Transaction::Open {
            // PostgreSQL has aborted the transaction: end it, so reads go on, and remember why.
            self.rollback();
            self.transaction = Transaction::Broken(error.reason());
        }
        Err(error)
    }

    fn lost(&mut self, why: String) {
        self.client = None;
        self.statements.clear();
        if self.transaction == Transaction::Open {
            self.transaction = Transaction::Broken(why);
        }
    }
}

/// `work`, or `Elapsed` once ANSWER_WITHIN has passed (the timer is made inside the runtime).
async fn within<F: std::future::Future>(work: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(ANSWER_WITHIN, work).await
}

/// PostgreSQL's own words for a refusal (`ERROR: …`, with its detail and hint), else the client's with
/// their causes.
pub(super) fn words(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// How long the server keeps a transaction of ours open while nothing is sent on it. An engine paused in the
/// middle of a step (SIGSTOP, a frozen VM) would otherwise hold its rows' locks, and the engine that takes
/// over would wait on them for as long as the pause lasts; ended by the server, the step's writes are written
/// again by the redo list if the engine still leads, and refused by its term if not.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

/// The defaults for what the address does not say: `connect_timeout`, and the idle transaction limit.
pub(super) fn with_defaults(mut config: Config) -> Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_WITHIN);
    }
    let limit = format!("-c idle_in_transaction_session_timeout={}", IDLE_IN_TRANSACTION.as_millis());
    let options = match config.get_options() {
        Some(given) if given.contains("idle_in_transaction_session_timeout") => given.to_string(),
        Some(given) => format!("{given} {limit}"),
        None => limit,
    };
    config.options(&options);
    config
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn a_transaction_left_idle_is_ended_by_the_server_unless_the_address_says_otherwise() {
        let config = with_defaults(Config::from_str("host=/run/pg dbname=c").unwrap());
        assert_eq!(config.get_options(), Some("-c idle_in_transaction_session_timeout=10000"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_WITHIN));
        let config = with_defaults(Config::from_str("host=/run/pg options='-c search_path=x'").unwrap());
        assert_eq!(config.get_options(), Some("-c search_path=x -c idle_in_transaction_session_timeout=10000"));
        let given = "-c idle_in_transaction_session_timeout=0";
        let config = with_defaults(Config::from_str(&format!("host=/run/pg options='{given}'")).unwrap());
        assert_eq!(config.get_options(), Some(given), "the operator's own limit wins");
    }
}
