//! The shared store: PostgreSQL, which several engines on several hosts can use at once. Everything
//! PostgreSQL-shaped lives here: the connection and its thread, the schema and the SQL. Logs and work files
//! stay in a local state folder, as with SQLite.

mod batch;
mod changes;
mod connection;
mod gauges;
mod listen;
mod logs;
mod records;
mod rows;
mod schema;
pub(super) mod work;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::{Coordination, EngineId, LogReader, Result, StoreError, Term, create_state_dir};
use connection::Worker;

pub struct PgStore {
    worker: Worker,
    state_dir: PathBuf,
    batch: batch::SharedBatch,
    /// This handle's registration, from `join` on.
    engine: Cell<Option<EngineId>>,
    /// The lease holding every commit of this handle checks first (`Coordination::fence`).
    fence: std::cell::RefCell<Option<batch::Fence>>,
    /// How to reach the database again, for the connection that listens for wake-ups.
    config: Config,
    target: String,
}

/// The channel a queued command is notified on.
pub(super) const COMMANDS_CHANNEL: &str = "conveyor_commands";
/// The channel every write of a run, task or attempt is notified on (migration 3's trigger).
pub(super) const CHANGES_CHANNEL: &str = "conveyor_changes";

impl PgStore {
    /// Connects to the database at `address` (a `postgres://` URL or a `key=value` conninfo), migrating its
    /// schema as needed; `state_dir` keeps this host's logs and work files. No error names the password.
    pub fn connect(address: &str, state_dir: &Path) -> Result<PgStore> {
        let config = Config::from_str(address).map_err(|error| {
            StoreError::Database(super::location::hide_password(
                &format!(
                    "the store address is neither a postgres:// URL nor a key=value conninfo: {}",
                    connection::words(&error)
                ),
                address,
            ))
        })?;
        create_state_dir(state_dir)?;
        let target = describe(&config);
        let config = connection::with_defaults(config);
        let worker = Worker::start(config.clone(), target.clone())?;
        worker.run(schema::migrate)?;
        Ok(PgStore {
            worker,
            state_dir: state_dir.to_path_buf(),
            batch: Default::default(),
            engine: Cell::new(None),
            fence: Default::default(),
            config,
            target,
        })
    }

    pub(super) fn state_id(&self) -> Result<String> {
        self.worker.run(|conn| {
            let id = format!("{:016x}", rand::random::<u64>());
            conn.execute("INSERT INTO meta (key, value) VALUES ('state_id', $1) ON CONFLICT (key) DO NOTHING", &[&id])?;
            rows::get(&conn.query_one("SELECT value FROM meta WHERE key = 'state_id'", &[])?, "value")
        })
    }

    /// PostgreSQL checks its pages itself; what is checked here is that the server answers and its schema is
    /// the one this build knows.
    pub(super) fn integrity_check(&self) -> Result<String> {
        let version = self.worker.run(schema::version)?;
        Ok(if version == schema::MIGRATIONS.len() {
            "ok".to_string()
        } else {
            format!("the schema is at version {version}, this Conveyor expects {}", schema::MIGRATIONS.len())
        })
    }

    pub(super) fn logs(&self) -> Arc<dyn LogReader> {
        Arc::new(logs::ClusterLogs(self.worker.reader()))
    }

    /// The engine this handle writes for, if it has joined (or been fenced as one).
    fn engine_id(&self) -> Option<i64> {
        self.engine.get().map(|EngineId(id)| id as i64)
    }

    fn engine(&self) -> Result<i64> {
        self.engine.get().map(|EngineId(id)| id as i64).ok_or_else(|| {
            StoreError::Database(
                "this store has not joined as an engine: call join before heartbeats and leases".into(),
            )
        })
    }
}

/// Engines sharing the database agree through it: the `engines` table (who is there, who is alive, on the
/// database's clock) and `leases` (one holder at a time, a term that grows with every new holding). On a
/// connection of its own, so each call commits at once whether or not a batch is open.
impl Coordination for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn join(&self, host: &str, pid: u32, routes: &[String]) -> Result<EngineId> {
        let (host, routes, earlier) = (host.to_string(), routes.to_vec(), self.engine.get());
        let id = self.worker.coordinate(move |conn| {
            conn.atomically(|conn| {
                if let Some(EngineId(earlier)) = earlier {
                    conn.execute("DELETE FROM engines WHERE id = $1", &[&(earlier as i64)])?;
                }
                let row = conn.query_one(
                    "INSERT INTO engines (host, pid, routes) VALUES ($1, $2, $3) RETURNING id",
                    &[&host, &i64::from(pid), &routes],
                )?;
                rows::get::<i64>(&row, "id")
            })
        })?;
        let id = EngineId(id as u64);
        self.engine.set(Some(id));
        Ok(id)
    }

    fn heartbeat(&self) -> Result<()> {
        let me = self.engine()?;
        let found = self
            .worker
            .run(move |conn| conn.execute("UPDATE engines SET heartbeat_at = now() WHERE id = $1", &[&me]))?;
        if found == 0 {
            return Err(StoreError::Database(format!("engine {me} is no longer registered in the store: join again")));
        }
        Ok(())
    }

    fn hold_lease(&self, name: &str, ttl: Duration) -> Result<Option<Term>> {
        let (me, name) = (self.engine()?, name.to_string());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let row = self.worker.coordinate(move |conn| {
            // One statement decides: a renewal keeps the term, a takeover of a lapsed or released lease adds
            // one, and a lease another engine holds updates nothing (no row: `None`).
            conn.query_opt(
                "INSERT INTO leases (name, holder, term, expires_at)
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                    term = leases.term + (leases.holder IS DISTINCT FROM excluded.holder)::int,
                    expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.holder IS NULL OR leases.expires_at < now()
                 RETURNING term",
                &[&name, &me, &ttl_ms],
            )
        })?;
        row.map(|row| Ok(Term(rows::get::<i64>(&row, "term")? as u64))).transpose()
    }

    fn release_lease(&self, name: &str) -> Result<()> {
        let (me, name) = (self.engine()?, name.to_string());
        self.worker.coordinate(move |conn| {
            conn.execute(
                "UPDATE leases SET holder = NULL, expires_at = now() WHERE name = $1 AND holder = $2",
                &[&name, &me],
            )
        })?;
        Ok(())
    }

    fn fence(&self, engine: EngineId, lease: &str, term: Term) {
        self.engine.set(Some(engine));
        *self.fence.borrow_mut() =
            Some(batch::Fence { engine: engine.0 as i64, lease: lease.to_string(), term: term.0 as i64 });
    }

    fn lease_holder(&self, lease: &str) -> Result<Option<(EngineId, Term)>> {
        let lease = lease.to_string();
        let row = self.worker.coordinate(move |conn| {
            conn.query_opt(
                "SELECT holder, term FROM leases WHERE name = $1 AND holder IS NOT NULL AND expires_at > now()",
                &[&lease],
            )
        })?;
        row.map(|row| {
            Ok((EngineId(rows::get::<i64>(&row, "holder")? as u64), Term(rows::get::<i64>(&row, "term")? as u64)))
        })
        .transpose()
    }

    fn engines(&self) -> Result<Vec<super::EngineRecord>> {
        let found = self.worker.coordinate(|conn| {
            conn.query(
                "SELECT e.id, e.host, e.pid, e.routes, e.started_at, e.heartbeat_at,
                        (EXTRACT(EPOCH FROM (now() - e.heartbeat_at)) * 1000)::bigint AS silent_ms,
                        (l.holder IS NOT NULL) AS leads
                 FROM engines e
                 LEFT JOIN leases l ON l.name = $1 AND l.holder = e.id AND l.expires_at > now()
                 ORDER BY e.id",
                &[&super::SCHEDULER_LEASE],
            )
        })?;
        found
            .iter()
            .map(|row| {
                let silent: i64 = rows::get(row, "silent_ms")?;
                Ok(super::EngineRecord {
                    id: EngineId(rows::get::<i64>(row, "id")? as u64),
                    host: rows::get(row, "host")?,
                    pid: rows::get::<i64>(row, "pid")? as u32,
                    routes: rows::get(row, "routes")?,
                    started_at: rows::get(row, "started_at")?,
                    heartbeat_at: rows::get(row, "heartbeat_at")?,
                    silent_for: chrono::Duration::milliseconds(silent),
                    leads: rows::get(row, "leads")?,
                })
            })
            .collect()
    }

    fn forget_engines(&self, silent_for: Duration) -> Result<u64> {
        let silent_ms = i64::try_from(silent_for.as_millis()).unwrap_or(i64::MAX);
        self.worker.coordinate(move |conn| {
            conn.execute(
                "DELETE FROM engines WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'
                    AND id NOT IN (SELECT holder FROM leases WHERE holder IS NOT NULL)",
                &[&silent_ms],
            )
        })
    }

    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match listen::listen(self.config.clone(), self.target.clone(), COMMANDS_CHANNEL) {
            Ok(woken) => Some(woken),
            Err(error) => {
                tracing::warn!("cannot listen for wake-ups ({error}): queued commands are polled for");
                None
            }
        }
    }

    fn leave(&self) -> Result<()> {
        let Some(EngineId(me)) = self.engine.get() else { return Ok(()) };
        let me = me as i64;
        self.worker.coordinate(move |conn| {
            conn.atomically(|conn| {
                conn.execute("UPDATE leases SET holder = NULL, expires_at = now() WHERE holder = $1", &[&me])?;
                conn.execute("DELETE FROM engines WHERE id = $1", &[&me])
            })
        })?;
        self.engine.set(None);
        Ok(())
    }
}

/// `describe` of an address, if it can be read.
pub(super) fn place(address: &str) -> Option<String> {
    Config::from_str(address).ok().map(|config| describe(&config))
}

/// Where the database is, for messages and logs: user, host, port and database, never the password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|user| format!("{user}@")).unwrap_or_default();
    let database = config.get_dbname().unwrap_or_default();
    format!("{user}{host}:{port}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_described_without_its_password() {
        let config = Config::from_str("postgres://ann:s3cret@db.example:5433/conveyor").unwrap();
        assert_eq!(describe(&config), "ann@db.example:5433/conveyor");
        let config = Config::from_str("host=/run/pg dbname=c").unwrap();
        assert_eq!(describe(&config), "/run/pg:5432/c");
    }

    #[test]
    fn an_address_that_cannot_be_read_is_refused_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let error = PgStore::connect("host=db password=s3cret sslmode=maybe", dir.path()).err().unwrap();
        let text = error.to_string();
        assert!(text.contains("neither a postgres:// URL nor a key=value conninfo"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
