//! What is true now, counted for the metrics endpoint: a few aggregate reads, cheap enough for every scrape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::PgStore;
use super::connection::Conn;
use super::rows::get;
use crate::state::RunState;
use crate::store::{Gauges, Result, parse_timestamp};

impl PgStore {
    pub(super) fn gauges(&self) -> Result<Gauges> {
        let active: Vec<&'static str> =
            RunState::ALL.iter().filter(|state| state.is_active()).map(|state| state.as_str()).collect();
        let (counts, gates) = self.worker.run(move |conn| {
            let active_runs = counts(
                conn,
                "SELECT workflow AS key, count(*) AS n FROM runs WHERE state = ANY($1) GROUP BY workflow",
                Some(&active),
            )?;
            let queued_fires =
                counts(conn, "SELECT workflow AS key, count(*) AS n FROM fires WHERE pending GROUP BY workflow", None)?;
            let alerts = counts(
                conn,
                "SELECT severity AS key, count(*) AS n FROM alerts WHERE acked_at IS NULL GROUP BY severity",
                None,
            )?;
            let rows = conn.query(
                "SELECT runs.workflow, tasks.output ->> 'waiting_since' AS waiting_since, tasks.started_at
                 FROM tasks JOIN runs ON runs.id = tasks.run_id WHERE tasks.state = 'waiting_approval'",
                &[],
            )?;
            let gates = rows
                .iter()
                .map(|row| {
                    let since: Option<String> = get(row, "waiting_since")?;
                    let started: Option<DateTime<Utc>> = get(row, "started_at")?;
                    Ok((get::<String>(row, "workflow")?, since, started))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(((active_runs, queued_fires, alerts), gates))
        })?;
        let (active_runs, queued_fires, unacknowledged_alerts) = counts;
        let mut waiting_gates = BTreeMap::new();
        let mut oldest_gate = BTreeMap::new();
        for (workflow, since, started) in gates {
            // The gate stamps `waiting_since` in its output when it starts to wait; the task's start stands in
            // for a gate stored before it did.
            let since = match since {
                Some(text) => Some(parse_timestamp(&text)?),
                None => started,
            };
            if let Some(since) = since {
                let oldest = oldest_gate.entry(workflow.clone()).or_insert(since);
                *oldest = (*oldest).min(since);
            }
            *waiting_gates.entry(workflow).or_insert(0) += 1;
        }
        Ok(Gauges { active_runs, queued_fires, waiting_gates, oldest_gate, unacknowledged_alerts })
    }
}

fn counts(conn: &mut Conn, query: &'static str, states: Option<&Vec<&'static str>>) -> Result<BTreeMap<String, u64>> {
    let found = match states {
        Some(states) => conn.query(query, &[states])?,
        None => conn.query(query, &[])?,
    };
    found.iter().map(|row| Ok((get(row, "key")?, get::<i64>(row, "n")?.max(0) as u64))).collect()
}
