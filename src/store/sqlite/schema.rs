use rusqlite::Connection;

/// Each entry moves the schema one version up; `PRAGMA user_version` records where a file stands.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    input TEXT NOT NULL,
    params TEXT NOT NULL,
    definition_file TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT
);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_state ON runs (state);
CREATE TABLE tasks (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    route TEXT,
    input TEXT,
    output TEXT,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE attempts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    route TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    log_path TEXT NOT NULL,
    log_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, task, attempt)
);
CREATE TABLE workflow_state (
    workflow TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    changed_at TEXT NOT NULL
);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    severity TEXT NOT NULL,
    workflow TEXT,
    run_id TEXT,
    task TEXT,
    message TEXT NOT NULL,
    acked_at TEXT
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    origin TEXT NOT NULL,
    command TEXT NOT NULL,
    ok INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    command TEXT NOT NULL,
    done_at TEXT,
    ok INTEGER,
    outcome TEXT
);
CREATE INDEX commands_pending ON commands (done_at);
"#,
    r#"
ALTER TABLE workflow_state ADD COLUMN scheduled_through TEXT;
CREATE TABLE fires (
    id INTEGER PRIMARY KEY,
    workflow TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT
);
CREATE INDEX fires_by_workflow ON fires (workflow, id);
CREATE TABLE processed_files (
    workflow TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    modified TEXT NOT NULL,
    run_id TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (workflow, path, size, modified)
);
"#,
    // Unattended recovery: what a crashed engine leaves must be enough for the next one to carry on alone.
    r#"
ALTER TABLE runs ADD COLUMN recover INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN route_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN route_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN retry_at TEXT;
ALTER TABLE attempts ADD COLUMN pid INTEGER;
ALTER TABLE attempts ADD COLUMN pid_start INTEGER;
ALTER TABLE commands ADD COLUMN expires_at TEXT;
ALTER TABLE fires ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // A task's last reported progress, for consoles that read the store instead of the event stream.
    r#"
ALTER TABLE attempts ADD COLUMN progress REAL;
"#,
    // What a language model counted for an LLM agent's attempt.
    r#"
ALTER TABLE attempts ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE attempts ADD COLUMN completion_tokens INTEGER;
"#,
    // The log of an attempt that had only the engine's lines, which never got a file of its own.
    r#"
ALTER TABLE attempts ADD COLUMN log_text TEXT;
"#,
];

pub fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    let version: usize = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version >= MIGRATIONS.len() {
        return Ok(());
    }
    // Under the write lock, and read again: a daemon and a CLI command opening a new store at the same
    // moment must not both migrate it.
    let transaction = rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)?;
    let version: usize = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
    }
    transaction.commit()
}
