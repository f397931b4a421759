//! What is true now, counted for the metrics endpoint: a few aggregate reads, cheap enough for every scrape.

use std::collections::BTreeMap;

use super::SqliteStore;
use crate::state::RunState;
use crate::store::{Gauges, Result, parse_timestamp};

impl SqliteStore {
    pub(super) fn gauges(&self) -> Result<Gauges> {
        let active: Vec<String> =
            RunState::ALL.iter().filter(|state| state.is_active()).map(|state| format!("'{state}'")).collect();
        let active_runs = self.counts(&format!(
            "SELECT workflow, COUNT(*) FROM runs WHERE state IN ({}) GROUP BY workflow",
            active.join(", ")
        ))?;
        let queued_fires = self.counts("SELECT workflow, COUNT(*) FROM fires WHERE pending = 1 GROUP BY workflow")?;
        let unacknowledged_alerts =
            self.counts("SELECT severity, COUNT(*) FROM alerts WHERE acked_at IS NULL GROUP BY severity")?;
        let mut waiting_gates = BTreeMap::new();
        let mut oldest_gate = BTreeMap::new();
        // The gate stamps `waiting_since` in its output when it starts to wait; the task's start stands in
        // for a gate stored before it did. Timestamps are all RFC 3339 in UTC, so the least text is the oldest.
        let mut statement = self.connection.prepare_cached(
            "SELECT runs.workflow, COUNT(*), MIN(COALESCE(json_extract(tasks.output, '$.waiting_since'), tasks.started_at))
             FROM tasks JOIN runs ON runs.id = tasks.run_id
             WHERE tasks.state = 'waiting_approval' GROUP BY runs.workflow",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let workflow: String = row.get(0)?;
            let count: i64 = row.get(1)?;
            let since: Option<String> = row.get(2)?;
            if let Some(since) = since {
                oldest_gate.insert(workflow.clone(), parse_timestamp(&since)?);
            }
            waiting_gates.insert(workflow, count.max(0) as u64);
        }
        Ok(Gauges { active_runs, queued_fires, waiting_gates, oldest_gate, unacknowledged_alerts })
    }

    fn counts(&self, query: &str) -> Result<BTreeMap<String, u64>> {
        let mut statement = self.connection.prepare_cached(query)?;
        let rows =
            statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?.max(0) as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
