//! Executors: how one attempt of a task runs against its route — a process, an HTTP endpoint, or an
//! in-process executor supplied by a program that embeds the engine.

pub mod budget;
mod governance;
mod http;
pub mod limits;
mod llm;
mod log;
mod process;
pub mod reclaim;
pub mod route;
pub mod secrets;
pub mod supervise;
pub mod when;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

pub use governance::{Answer, Decided, GovernanceExecutor, decide as decide_approval, held_items, item_id};
pub use governance::{GateSummary, plain as plain_field, summary as gate_summary};
pub use http::HttpExecutor;
pub use limits::Limits;
pub use llm::LlmExecutor;
pub use log::{LogSink, Progress, Stream, parse_progress, stderr_index_path, write_kept_log};
pub use process::ProcessExecutor;
pub use route::{INLINE_ROUTE, Offering, Route, Routes, executor_for};
pub use supervise::{Stop, StopReason};

/// Everything one attempt needs, owned so it can move into a spawned task.
pub struct Attempt {
    pub run_id: String,
    pub workflow: String,
    pub task: String,
    pub action: Option<String>,
    pub number: u32,
    pub input: Value,
    pub params: serde_json::Map<String, Value>,
    /// The task's and the route's `env`, merged (the task wins).
    pub env: BTreeMap<String, String>,
    /// Where processes start: the workflows folder, against which relative paths resolve.
    pub workdir: PathBuf,
    /// `CONVEYOR_OUTPUT`: JSON written there becomes the task's output.
    pub output_file: PathBuf,
    pub log: LogSink,
    /// The attempt's timeout on the engine's clock and the operator's cancel, as one signal to stop on.
    pub stop: Stop,
    /// How long a process group gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The state folder's id (`CONVEYOR_STATE_ID`), by which a later engine finds what this attempt left.
    pub state_id: String,
    /// The schedule's instant the run stands for (`CONVEYOR_SCHEDULED_AT`): a scheduled, caught-up or
    /// backfilled run's `scheduled_at`, so a task can work on the period it is for, not on "now".
    pub scheduled_at: Option<String>,
    /// Told the process group's PID and its start time (and, if another engine runs it, which) once the
    /// process has started.
    pub spawned: Option<Spawned>,
    /// How long a line, how large an output, how large a log (the log sink was made with it).
    pub limits: Limits,
    /// Told the tokens used, by executors that call a language model.
    pub usage: Option<UsageReport>,
}

pub type Spawned = Box<dyn FnOnce(Started) + Send + Sync>;

/// Where an attempt's process runs, once it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Started {
    /// Its process group (`None`: not learnt, as when another engine ran it and ended it before this one
    /// heard of its process).
    pub pid: Option<u32>,
    /// Its leader's start time, which tells it from a later process given the same PID.
    pub pid_start: Option<u64>,
    /// The engine that runs it, when that is not this one (an offered attempt).
    pub engine: Option<u64>,
}

/// Told what a language model's answers cost, once the attempt's questions are answered.
pub type UsageReport = Box<dyn FnOnce(Usage) + Send + Sync>;

/// Tokens a language model counted for an attempt (its `usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Attempt {
    /// The `CONVEYOR_*` variables of the task contract, parameters as `CONVEYOR_PARAM_<NAME>`, then `env`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("CONVEYOR_RUN_ID".to_string(), self.run_id.clone()),
            ("CONVEYOR_WORKFLOW".to_string(), self.workflow.clone()),
            ("CONVEYOR_TASK".to_string(), self.task.clone()),
            ("CONVEYOR_ACTION".to_string(), self.action.clone().unwrap_or_default()),
            ("CONVEYOR_ATTEMPT".to_string(), self.number.to_string()),
            ("CONVEYOR_OUTPUT".to_string(), self.output_file.to_string_lossy().into_owned()),
            ("CONVEYOR_STATE_ID".to_string(), self.state_id.clone()),
        ];
        if let Some(at) = &self.scheduled_at {
            vars.push(("CONVEYOR_SCHEDULED_AT".to_string(), at.clone()));
        }
        for (name, value) in &self.params {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            vars.push((format!("CONVEYOR_PARAM_{}", name.to_ascii_uppercase()), text));
        }
        vars.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars
    }

    /// `run-task-attempt`: the same for every retry of the same attempt, different for the next one.
    pub fn idempotency_key(&self) -> String {
        format!("{}-{}-{}", self.run_id, self.task, self.number)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Succeeded {
        output: Value,
    },
    Failed {
        error: String,
        exit_code: Option<i32>,
    },
    /// Stopped on purpose: cancelled by an operator, or the engine shutting down.
    Cancelled,
    /// A governance gate holds `waiting` items for an operator; `output` records them.
    AwaitingApproval {
        output: Value,
        waiting: usize,
    },
}

impl Ending {
    pub fn failed(error: impl Into<String>) -> Ending {
        Ending::Failed { error: error.into(), exit_code: None }
    }
}

pub type Execution = Pin<Box<dyn Future<Output = Ending> + Send>>;

pub trait Executor: Send + Sync {
    fn execute(&self, attempt: Attempt) -> Execution;

    /// The timeout an attempt gets when neither its task nor its route sets one.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }
}

pub type SharedExecutor = Arc<dyn Executor>;

/// Fires once, when the attempt is to stop (an operator's cancel, or shutdown).
#[derive(Clone)]
pub struct Cancel(watch::Receiver<bool>);

#[derive(Clone)]
pub struct CancelHandle(Arc<watch::Sender<bool>>);

pub fn cancel_pair() -> (CancelHandle, Cancel) {
    let (sender, receiver) = watch::channel(false);
    (CancelHandle(Arc::new(sender)), Cancel(receiver))
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl Cancel {
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|cancelled| *cancelled).await.is_err() {
            // The handle is gone without cancelling: this attempt will never be cancelled.
            std::future::pending::<()>().await;
        }
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }
}

/// A route that cannot run, failing every attempt with the reason (a layer before governance exists).
pub struct Refusal(pub String);

impl Executor for Refusal {
    fn execute(&self, attempt: Attempt) -> Execution {
        let reason = self.0.clone();
        Box::pin(async move {
            attempt.log.engine_line(&reason);
            Ending::failed(reason)
        })
    }
}

/// Reads what a task wrote to `CONVEYOR_OUTPUT`: nothing means `null`; anything else must be JSON of at
/// most `max_output_size` bytes, which is checked before reading so a huge file is never loaded.
pub fn read_output(path: &std::path::Path, max_output_size: u64) -> Result<Value, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Null),
        Err(error) => return Err(format!("cannot read CONVEYOR_OUTPUT ({}): {error}", path.display())),
    };
    let too_large = |size: u64| {
        format!(
            "CONVEYOR_OUTPUT is {size} bytes, over max_output_size ({}): write less to it (large data belongs in a file whose path the output names), or raise `max_output_size` on the task or in conveyor.toml",
            limits::format_size(max_output_size)
        )
    };
    let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    if size > max_output_size {
        let _ = std::fs::remove_file(path);
        return Err(too_large(size));
    }
    // A file still growing after the check is read no further than one byte past the limit.
    let mut bytes = Vec::with_capacity(size as usize);
    let read = file.take(max_output_size + 1).read_to_end(&mut bytes);
    let _ = std::fs::remove_file(path);
    if let Err(error) = read {
        return Err(format!("cannot read CONVEYOR_OUTPUT ({}): {error}", path.display()));
    }
    if bytes.len() as u64 > max_output_size {
        return Err(too_large(bytes.len() as u64));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|error| format!("CONVEYOR_OUTPUT is not valid JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_file_over_the_limit_is_refused_without_being_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("T.1.output.json");
        std::fs::write(&path, format!("\"{}\"", "x".repeat(2048))).unwrap();
        let error = read_output(&path, 1024).unwrap_err();
        assert!(error.starts_with("CONVEYOR_OUTPUT is 2050 bytes, over max_output_size (1 KiB): "), "{error}");
        assert!(!path.exists(), "the refused file is removed");
        std::fs::write(&path, "{\"ok\": true}").unwrap();
        assert_eq!(read_output(&path, 1024), Ok(serde_json::json!({"ok": true})));
    }
}
