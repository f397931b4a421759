//! The work queue on PostgreSQL (see `store::work`): each decision is one statement whose outcome (a row
//! inserted, claimed, finished; or none) is the decision. Notifications on `conveyor_offers` and
//! `conveyor_endings` are hints that wake workers and offerers; both poll as well.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Config;

use super::connection::{Conn, Worker};
use super::rows::{self, get};
use crate::store::work::{Claimed, Holder, Look, Offer, Settled, Shipment, ShippedLine, Standing, WorkId};
use crate::store::{EngineId, Result, SCHEDULER_LEASE, StoreError, Term};

/// Workers are woken on it when work is offered.
pub const OFFERS_CHANNEL: &str = "conveyor_offers";
/// Offerers are woken on it when work they offered settles.
pub const ENDINGS_CHANNEL: &str = "conveyor_endings";

/// A connection of its own for offering, claiming and finishing work, never inside an engine's batch: every
/// call commits at once. Calls are async (the answer is awaited), for the tasks that run attempts.
pub struct WorkQueue {
    worker: Worker,
    config: Config,
    target: String,
}

pub(crate) fn connect(address: &str, _state_dir: &Path) -> Result<WorkQueue> {
    let config = Config::from_str(address).map_err(|error| {
        StoreError::Database(format!("the store address cannot be read: {}", super::connection::words(&error)))
    })?;
    let target = super::describe(&config);
    let config = super::connection::with_defaults(config);
    let worker = Worker::start(config.clone(), target.clone())?;
    worker.run(super::schema::migrate)?;
    Ok(WorkQueue { worker, config, target })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl WorkQueue {
    /// Wakes the receiver when something is notified on `channel` (and once per reconnection).
    pub fn wake_ups(&self, channel: &'static str) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match super::listen::listen(self.config.clone(), self.target.clone(), channel) {
            Ok(woken) => Some(woken),
            Err(error) => {
                tracing::warn!("cannot listen on {channel} ({error}): work is polled for");
                None
            }
        }
    }

    /// Offers an attempt, as `engine` leading at `term`: `None` when the lease is no longer that holding
    /// (the offer is not made, as no write of a former leader lands).
    pub async fn offer(&self, engine: EngineId, term: Term, offer: Offer) -> Result<Option<WorkId>> {
        Ok(self.offer_many(engine, term, vec![offer]).await?.pop().flatten())
    }

    /// Offers attempts in one statement, ids in their order; all `None` when the lease is no longer that
    /// holding. Offering an attempt again (the answer to the first offer was lost) gives the first offer's id.
    pub async fn offer_many(&self, engine: EngineId, term: Term, offers: Vec<Offer>) -> Result<Vec<Option<WorkId>>> {
        let (engine, term) = (engine.0 as i64, term.0 as i64);
        let keys: Vec<(String, String, i64)> =
            offers.iter().map(|offer| (offer.run_id.clone(), offer.task.clone(), i64::from(offer.attempt))).collect();
        let runs: Vec<String> = offers.iter().map(|offer| offer.run_id.clone()).collect();
        let tasks: Vec<String> = offers.iter().map(|offer| offer.task.clone()).collect();
        let attempts: Vec<i64> = offers.iter().map(|offer| i64::from(offer.attempt)).collect();
        let routes: Vec<String> = offers.iter().map(|offer| offer.route.clone()).collect();
        let specs: Vec<Value> = offers.into_iter().map(|offer| offer.spec).collect();
        let rows = self
            .worker
            .ask(move |conn| {
                conn.query(
                    "WITH offered AS (
                        INSERT INTO work (run_id, task, attempt, route, term, spec)
                        SELECT o.run_id, o.task, o.attempt, o.route, $5, o.spec
                        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $6::json[])
                            AS o(run_id, task, attempt, route, spec)
                        WHERE EXISTS (SELECT 1 FROM leases WHERE name = $7 AND holder = $8 AND term = $5)
                        ON CONFLICT (run_id, task, attempt) DO UPDATE SET run_id = excluded.run_id
                        RETURNING id, run_id, task, attempt)
                     SELECT id, run_id, task, attempt, pg_notify('conveyor_offers', '') FROM offered",
                    &[&runs, &tasks, &attempts, &routes, &term, &specs, &SCHEDULER_LEASE, &engine],
                )
            })
            .await?;
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: (String, String, i64) = (get(row, "run_id")?, get(row, "task")?, get(row, "attempt")?);
            ids.insert(key, WorkId(get(row, "id")?));
        }
        Ok(keys.iter().map(|key| ids.get(key).copied()).collect())
    }

    /// Whether an offer is still waiting for an engine to claim it.
    pub async fn unclaimed(&self, id: WorkId) -> Result<bool> {
        let row = self
            .worker
            .ask(move |conn| {
                conn.query_opt("SELECT 1 AS waiting FROM work WHERE id = $1 AND state = 'ready'", &[&id.0])
            })
            .await?;
        Ok(row.is_some())
    }

    /// Takes back an offer nobody claimed yet (`true`); a claimed one is asked to stop instead, and its
    /// worker settles it (`false`).
    pub async fn withdraw(&self, id: WorkId) -> Result<bool> {
        self.worker
            .ask(move |conn| {
                if conn.execute("DELETE FROM work WHERE id = $1 AND state = 'ready'", &[&id.0])? == 1 {
                    return Ok(true);
                }
                conn.execute("UPDATE work SET cancel = true WHERE id = $1", &[&id.0])?;
                Ok(false)
            })
            .await
    }

    /// What became of the offerer's outstanding work (`outstanding`: each id with the number of its next line
    /// not yet read): who holds what (for `started`, the ids whose holder is not yet known), the lines shipped
    /// since, and what settled. Settled rows are taken (deleted, with their lines) as they are read, so a late
    /// finisher finds its claim gone; the lines of running work stay, for a reader on another host.
    pub async fn look(&self, outstanding: Vec<(i64, i64)>, started: Vec<i64>) -> Result<Look> {
        let (ids, next): (Vec<i64>, Vec<i64>) = outstanding.into_iter().unzip();
        self.worker
            .ask(move |conn| {
                conn.atomically(|conn| {
                    let mut look = Look::default();
                    if !started.is_empty() {
                        for row in conn.query(
                            "SELECT id, claimed_by, host, pid, pid_start FROM work
                             WHERE id = ANY($1) AND claimed_by IS NOT NULL AND pid IS NOT NULL",
                            &[&started],
                        )? {
                            look.holders.push((WorkId(get(&row, "id")?), holder(&row)?.expect("claimed")));
                        }
                    }
                    // Endings before lines: a worker commits its last lines with its ending, so every line of
                    // an attempt whose ending is read here is read below.
                    for row in conn.query(
                        "DELETE FROM work WHERE id = ANY($1) AND state IN ('done', 'lost')
                         RETURNING id, state, ending, claimed_by, host, pid, pid_start",
                        &[&ids],
                    )? {
                        let state: String = get(&row, "state")?;
                        let ending: Option<Value> = get(&row, "ending")?;
                        let settled = match (state.as_str(), ending) {
                            ("done", Some(ending)) => Settled::Done(ending),
                            (_, Some(Value::String(why))) => Settled::Lost(Some(why)),
                            _ => Settled::Lost(None),
                        };
                        look.settled.push((WorkId(get(&row, "id")?), settled, holder(&row)?));
                    }
                    let mut shipments = conn.query(
                        "SELECT l.work, l.seq, l.lines FROM work_lines l
                         JOIN unnest($1::bigint[], $2::bigint[]) AS w(id, next) ON l.work = w.id AND l.seq >= w.next",
                        &[&ids, &next],
                    )?;
                    shipments.sort_by_key(|row| (row.get::<_, i64>("work"), row.get::<_, i64>("seq")));
                    for row in shipments {
                        let work = WorkId(get(&row, "work")?);
                        let first: i64 = get(&row, "seq")?;
                        for (index, (stream, text)) in unpack(get(&row, "lines")?)?.into_iter().enumerate() {
                            look.lines.push(ShippedLine { work, seq: first + index as i64, stream, text });
                        }
                    }
                    let settled: Vec<i64> = look.settled.iter().map(|(id, _, _)| id.0).collect();
                    if !settled.is_empty() {
                        conn.execute("DELETE FROM work_lines WHERE work = ANY($1)", &[&settled])?;
                    }
                    Ok(look)
                })
            })
            .await
    }

    /// Gives up claims held by engines the database has not heard from for `silent` (killed, cut off, paused):
    /// their work settles as lost, and their offerers retry it by the task's policy.
    pub async fn rescue(&self, silent: Duration) -> Result<u64> {
        let silent = millis(silent);
        self.worker
            .ask(move |conn| {
                conn.execute(
                    "WITH lost AS (
                        UPDATE work SET state = 'lost', finished_at = now()
                        WHERE state = 'running' AND claimed_by NOT IN (
                            SELECT id FROM engines WHERE heartbeat_at > now() - $1::bigint * interval '1 millisecond')
                        RETURNING id)
                     SELECT pg_notify('conveyor_endings', '') FROM lost",
                    &[&silent],
                )
            })
            .await
    }

    /// Removes work earlier leaders offered that settled after they stopped looking (a worker finished an
    /// attempt it was asked to stop), with its lines.
    pub async fn clear_earlier(&self, term: Term) -> Result<u64> {
        let term = term.0 as i64;
        self.worker
            .ask(move |conn| {
                let cleared =
                    conn.execute("DELETE FROM work WHERE term < $1 AND state IN ('done', 'lost')", &[&term])?;
                if cleared > 0 {
                    conn.execute("DELETE FROM work_lines WHERE work NOT IN (SELECT id FROM work)", &[])?;
                }
                Ok(cleared)
            })
            .await
    }

    /// For a new leader at `term`: work offered at earlier terms is withdrawn (not claimed yet) or asked to
    /// stop (claimed), as the runs it belongs to are recovered and run again under this term. Also clears
    /// what earlier leaders left settled and never took.
    pub fn take_over(&self, term: Term) -> Result<u64> {
        let term = term.0 as i64;
        self.worker.run(move |conn| {
            conn.atomically(|conn| {
                let stopping = conn.execute(
                    "UPDATE work SET cancel = true WHERE term < $1 AND state = 'running' AND NOT cancel",
                    &[&term],
                )?;
                conn.execute("DELETE FROM work WHERE term < $1 AND state <> 'running'", &[&term])?;
                conn.execute("DELETE FROM work_lines WHERE work NOT IN (SELECT id FROM work)", &[])?;
                Ok(stopping)
            })
        })
    }

    /// Claims up to `limit` offers on `routes` (`*` for any) for `engine` on `host`, oldest first; offers
    /// others hold locked are skipped, never waited for.
    pub async fn claim(
        &self,
        engine: EngineId,
        host: String,
        routes: Vec<String>,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let engine = engine.0 as i64;
        let any = routes.iter().any(|route| route == "*");
        let limit = limit as i64;
        let rows = self
            .worker
            .ask(move |conn| {
                conn.query(
                    "UPDATE work SET state = 'running', claimed_by = $1, claimed_at = now(), host = $2
                     FROM (SELECT id FROM work WHERE state = 'ready' AND NOT cancel AND ($3 OR route = ANY($4))
                           ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) AS picked
                     WHERE work.id = picked.id
                     RETURNING work.id, work.run_id, work.task, work.attempt, work.route, work.spec",
                    &[&engine, &host, &any, &routes, &limit],
                )
            })
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(Claimed {
                    id: WorkId(get(row, "id")?),
                    offer: Offer {
                        run_id: get(row, "run_id")?,
                        task: get(row, "task")?,
                        attempt: get::<i64>(row, "attempt")? as u32,
                        route: get(row, "route")?,
                        spec: get(row, "spec")?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|claimed| claimed.id);
        Ok(claimed)
    }

    /// Ships lines, notes the processes of attempts that started (`pids`: work, pid, its start time), gives
    /// back claims this engine holds but does not know of (`known`: every claim it knows, `held` among them),
    /// and says which of `held` it still holds (and whether each is to stop).
    pub async fn keep(
        &self,
        engine: EngineId,
        known: Vec<i64>,
        held: Vec<i64>,
        lines: Vec<Shipment>,
        pids: Vec<(WorkId, u32, Option<u64>)>,
    ) -> Result<Vec<Standing>> {
        let engine = engine.0 as i64;
        self.worker
            .ask(move |conn| {
                ship(conn, &lines)?;
                if !pids.is_empty() {
                    let ids: Vec<i64> = pids.iter().map(|pid| pid.0.0).collect();
                    let numbers: Vec<i64> = pids.iter().map(|pid| i64::from(pid.1)).collect();
                    let starts: Vec<Option<i64>> = pids.iter().map(|pid| pid.2.map(|start| start as i64)).collect();
                    conn.execute(
                        "UPDATE work SET pid = p.pid, pid_start = p.start
                         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(id, pid, start)
                         WHERE work.id = p.id AND claimed_by = $4 AND state = 'running'",
                        &[&ids, &numbers, &starts, &engine],
                    )?;
                }
                // A claim whose answer was lost (the connection cut after its commit) is held by this engine
                // without its knowing: nothing of it ran here, so it is given back to be claimed again.
                conn.execute(
                    "UPDATE work SET state = 'ready', claimed_by = NULL, claimed_at = NULL, host = NULL, pid = NULL,
                        pid_start = NULL
                     WHERE claimed_by = $2 AND state = 'running' AND NOT (id = ANY($1))",
                    &[&known, &engine],
                )?;
                let rows = conn.query(
                    "SELECT id, cancel FROM work WHERE id = ANY($1) AND claimed_by = $2 AND state = 'running'",
                    &[&held, &engine],
                )?;
                rows.iter()
                    .map(|row| Ok(Standing { id: WorkId(get(row, "id")?), cancel: get(row, "cancel")? }))
                    .collect()
            })
            .await
    }

    /// Finishes a claimed attempt with its last lines and its ending (`Ok`: a JSON ending; `Err`: lost, with
    /// why). `false`: the claim no longer stands, and nothing was written.
    pub async fn finish(
        &self,
        engine: EngineId,
        id: WorkId,
        lines: Vec<Shipment>,
        ending: std::result::Result<Value, String>,
    ) -> Result<bool> {
        let finished = self.finish_many(engine, vec![Finish { id, lines, ending }]).await?;
        Ok(finished.contains(&id))
    }

    /// Finishes several claimed attempts in one transaction; returns those whose claim stood (the others'
    /// endings and lines are not written).
    pub async fn finish_many(&self, engine: EngineId, finishes: Vec<Finish>) -> Result<Vec<WorkId>> {
        let engine = engine.0 as i64;
        let ids: Vec<i64> = finishes.iter().map(|finish| finish.id.0).collect();
        let states: Vec<String> =
            finishes.iter().map(|finish| if finish.ending.is_ok() { "done" } else { "lost" }.to_string()).collect();
        let endings: Vec<Value> = finishes
            .iter()
            .map(|finish| match &finish.ending {
                Ok(ending) => ending.clone(),
                Err(why) => Value::String(why.clone()),
            })
            .collect();
        self.worker
            .ask(move |conn| {
                conn.atomically(|conn| {
                    let rows = conn.query(
                        "WITH finished AS (
                            UPDATE work SET state = f.state, ending = f.ending, finished_at = now()
                            FROM unnest($1::bigint[], $2::text[], $3::json[]) AS f(id, state, ending)
                            WHERE work.id = f.id AND claimed_by = $4 AND work.state = 'running'
                            RETURNING work.id)
                         SELECT id, pg_notify('conveyor_endings', '') FROM finished",
                        &[&ids, &states, &endings, &engine],
                    )?;
                    let stood: Vec<WorkId> =
                        rows.iter().map(|row| get(row, "id").map(WorkId)).collect::<Result<_>>()?;
                    let lines: Vec<_> = finishes
                        .into_iter()
                        .filter(|finish| stood.contains(&finish.id))
                        .flat_map(|finish| finish.lines)
                        .collect();
                    ship(conn, &lines)?;
                    Ok(stood)
                })
            })
            .await
    }
}

/// An attempt a worker finishes: its last lines and its ending (`Err`: given back as lost, with why).
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: WorkId,
    pub lines: Vec<Shipment>,
    pub ending: std::result::Result<Value, String>,
}

/// Shipments of lines from a worker, each one row, all in one statement; one already there is left as it is.
fn ship(conn: &mut Conn, shipments: &[Shipment]) -> Result<()> {
    let shipments: Vec<&Shipment> = shipments.iter().filter(|shipment| !shipment.lines.is_empty()).collect();
    if shipments.is_empty() {
        return Ok(());
    }
    let works: Vec<i64> = shipments.iter().map(|shipment| shipment.work.0).collect();
    let firsts: Vec<i64> = shipments.iter().map(|shipment| shipment.first).collect();
    let bodies: Vec<Value> = shipments
        .iter()
        .map(|shipment| {
            let lines = shipment.lines.iter().map(|(stream, text)| {
                Value::from(vec![Value::from(*stream), Value::from(rows::text(text).into_owned())])
            });
            Value::Array(lines.collect())
        })
        .collect();
    conn.execute(
        "INSERT INTO work_lines (work, seq, lines)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::json[])
         ON CONFLICT DO NOTHING",
        &[&works, &firsts, &bodies],
    )?;
    Ok(())
}

/// A shipment's lines: (stream, text) each.
pub(super) fn unpack(lines: Value) -> Result<Vec<(i16, String)>> {
    let corrupt = || StoreError::Corrupt("column `lines`: not a list of [stream, text] pairs".into());
    let Value::Array(lines) = lines else { return Err(corrupt()) };
    lines
        .into_iter()
        .map(|line| match line {
            Value::Array(pair) => match pair.as_slice() {
                [Value::Number(stream), Value::String(text)] => {
                    Ok((stream.as_i64().ok_or_else(corrupt)? as i16, text.clone()))
                }
                _ => Err(corrupt()),
            },
            _ => Err(corrupt()),
        })
        .collect()
}

fn holder(row: &tokio_postgres::Row) -> Result<Option<Holder>> {
    let Some(engine) = get::<Option<i64>>(row, "claimed_by")? else { return Ok(None) };
    Ok(Some(Holder {
        engine: EngineId(engine as u64),
        host: get::<Option<String>>(row, "host")?.unwrap_or_default(),
        pid: get::<Option<i64>>(row, "pid")?.map(|pid| pid as u32),
        pid_start: get::<Option<i64>>(row, "pid_start")?.map(|start| start as u64),
    }))
}
