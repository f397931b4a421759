//! The tables on PostgreSQL: SQLite's latest schema in native types, plus what engines sharing the database
//! agree through (`engines`, `leases`). JSON columns are `json`, which keeps the text as written (key order
//! included, as SQLite's text does) and still answers `->>`. Ids and texts that are sorted on use the "C"
//! collation, so they order by bytes as SQLite's do, whatever the database's locale.

use super::connection::Conn;
use super::rows::get;
use crate::store::Result;

/// Each entry moves the schema one version up; `schema_version` records where a database stands.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    workflow text NOT NULL,
    state text NOT NULL,
    trigger text NOT NULL,
    input json NOT NULL,
    params json NOT NULL,
    definition_file text NOT NULL,
    definition text NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    error text,
    recover boolean NOT NULL DEFAULT false
);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_state ON runs (state);
CREATE TABLE tasks (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name text NOT NULL,
    position bigint NOT NULL,
    state text NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    route text,
    input json,
    output json,
    started_at timestamptz,
    finished_at timestamptz,
    error text,
    route_index bigint NOT NULL DEFAULT 0,
    route_attempts bigint NOT NULL DEFAULT 0,
    retry_at timestamptz,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX tasks_by_state ON tasks (state);
CREATE TABLE attempts (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task text NOT NULL,
    attempt bigint NOT NULL,
    route text NOT NULL,
    state text NOT NULL,
    exit_code integer,
    error text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    log_path text NOT NULL,
    log_bytes bigint NOT NULL DEFAULT 0,
    pid bigint,
    pid_start bigint,
    progress double precision,
    prompt_tokens bigint,
    completion_tokens bigint,
    log_text text,
    PRIMARY KEY (run_id, task, attempt)
);
CREATE TABLE workflow_state (
    workflow text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL,
    scheduled_through timestamptz
);
CREATE TABLE alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    severity text NOT NULL,
    workflow text,
    run_id text,
    task text,
    message text NOT NULL,
    acked_at timestamptz
);
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    who text NOT NULL,
    origin text NOT NULL,
    command text NOT NULL,
    ok boolean NOT NULL,
    outcome text NOT NULL
);
CREATE TABLE commands (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    who text NOT NULL,
    command text NOT NULL,
    done_at timestamptz,
    ok boolean,
    outcome text,
    expires_at timestamptz
);
CREATE INDEX commands_pending ON commands (done_at);
-- Keyed by id, not (workflow, scheduled_at): the contract lets one instant be recorded more than once.
CREATE TABLE fires (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    outcome text NOT NULL,
    run_id text,
    pending boolean NOT NULL DEFAULT false
);
CREATE INDEX fires_by_workflow ON fires (workflow, id);
CREATE TABLE processed_files (
    workflow text NOT NULL,
    path text NOT NULL,
    size bigint NOT NULL,
    modified timestamptz NOT NULL,
    run_id text,
    at timestamptz NOT NULL,
    PRIMARY KEY (workflow, path, size, modified)
);
CREATE INDEX processed_files_by_age ON processed_files (at);
CREATE TABLE meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE engines (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host text NOT NULL,
    pid bigint NOT NULL,
    routes text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE leases (
    name text PRIMARY KEY,
    -- NULL once released: the next holding, whoever takes it, gets a greater term.
    holder bigint,
    term bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
    r#"
-- Which engine ran what (NULL: before engines registered, or SQLite's data copied over).
ALTER TABLE runs ADD COLUMN engine bigint;
ALTER TABLE attempts ADD COLUMN engine bigint;
-- A task's log in pieces, so a console on any host reads any attempt's log.
CREATE TABLE log_chunks (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task text NOT NULL,
    attempt bigint NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, task, attempt, seq)
);
"#,
    r#"
-- Every write of a run, task or attempt is stamped from one sequence by the database itself, so a console
-- reads what changed since its last stamp instead of every run again; no engine code takes part. Rows
-- written before this migration get a stamp of their own (the default) so the first read can see them.
-- The notification wakes listening consoles once the transaction commits: per row written rather than per
-- statement, so the engines' statements that match no row wake no one, and PostgreSQL folds a
-- transaction's identical notifications into one.
CREATE SEQUENCE changes;
CREATE FUNCTION stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed := nextval('changes');
    PERFORM pg_notify('conveyor_changes', '');
    RETURN NEW;
END
$$;
ALTER TABLE runs ADD COLUMN changed bigint NOT NULL DEFAULT nextval('changes');
ALTER TABLE tasks ADD COLUMN changed bigint NOT NULL DEFAULT nextval('changes');
ALTER TABLE attempts ADD COLUMN changed bigint NOT NULL DEFAULT nextval('changes');
CREATE TRIGGER runs_changed BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION stamp_change();
CREATE TRIGGER tasks_changed BEFORE INSERT OR UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION stamp_change();
CREATE TRIGGER attempts_changed BEFORE INSERT OR UPDATE ON attempts FOR EACH ROW EXECUTE FUNCTION stamp_change();
CREATE INDEX runs_by_change ON runs (changed);
CREATE INDEX tasks_by_change ON tasks (changed);
CREATE INDEX attempts_by_change ON attempts (changed);
"#,
    r#"
-- Attempts offered to every engine (store::work): the leader offers, any engine serving the route claims,
-- only the claimer finishes. `term` is the offering leader's; a new leader stops work of earlier terms.
CREATE TABLE work (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL,
    task text NOT NULL,
    attempt bigint NOT NULL,
    route text NOT NULL,
    term bigint NOT NULL,
    spec json NOT NULL,
    state text NOT NULL DEFAULT 'ready',
    cancel boolean NOT NULL DEFAULT false,
    claimed_by bigint,
    claimed_at timestamptz,
    host text,
    pid bigint,
    pid_start bigint,
    ending json,
    offered_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- One row per attempt: an offer sent again (its answer lost with a connection) finds the first.
CREATE UNIQUE INDEX work_attempt ON work (run_id, task, attempt);
CREATE INDEX work_ready ON work (id) WHERE state = 'ready';
CREATE INDEX work_claimed ON work (claimed_by) WHERE state = 'running';
-- Lines an attempt printed on its worker, one row per shipment (`seq`: the number of its first line;
-- `lines`: [[stream, text], …]), kept while the attempt runs.
CREATE TABLE work_lines (
    work bigint NOT NULL,
    seq bigint NOT NULL,
    lines json NOT NULL,
    PRIMARY KEY (work, seq)
);
"#,
];

/// Any number that names Conveyor's migrations among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x636f_6e76_6579_6f72; // "conveyor"

/// Brings the schema up to date. Under a transaction-scoped advisory lock, and the version read again under
/// it: engines starting together do not both migrate.
pub(super) fn migrate(conn: &mut Conn) -> Result<()> {
    conn.atomically(|conn| {
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        conn.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")?;
        let version: i32 = match conn.query_opt("SELECT version FROM schema_version", &[])? {
            Some(row) => get(&row, "version")?,
            None => 0,
        };
        if version as usize > MIGRATIONS.len() {
            return Err(crate::store::StoreError::Database(format!(
                "the database's schema is version {version}, newer than this Conveyor knows ({}): upgrade Conveyor",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.batch_execute(migration)?;
            let reached = index as i32 + 1;
            conn.execute("DELETE FROM schema_version", &[])?;
            conn.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&reached])?;
        }
        Ok(())
    })
}

/// The version the database is at (after `migrate`, which makes the table).
pub(super) fn version(conn: &mut Conn) -> Result<usize> {
    let row = conn.query_one("SELECT COALESCE(max(version), 0) AS version FROM schema_version", &[])?;
    Ok(get::<i32>(&row, "version")?.max(0) as usize)
}
