//! Validated workflow definitions: what the engine, scheduler and console work from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// The file's text, kept with each run so that a resumed run uses the definition it started with.
    pub source: Arc<str>,
    pub trigger: Trigger,
    pub params: Vec<Param>,
    pub overlap: Overlap,
    pub catchup: Catchup,
    pub max_active_runs: u32,
    /// Attempts of this workflow's tasks running at once, across its runs (`None`: only the engine's cap).
    pub max_parallel: Option<u32>,
    pub timeout: Option<Duration>,
    pub jitter: Option<Duration>,
    pub keep_runs: u32,
    /// What an engine starting after a crash or a stop does with this workflow's active runs; `None`
    /// follows the registry's default.
    pub on_interrupt: Option<OnInterrupt>,
    pub on_failure: Option<Task>,
    pub on_success: Option<Task>,
    /// Run once after an operator (or `overlap = "cancel_previous"`) cancels a run.
    pub on_cancel: Option<Task>,
    pub tasks: Vec<Task>,
    /// Whether any task names `depends_on` (kept, as it is asked for on every scheduling step).
    pub dag: bool,
}

impl Workflow {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// A workflow whose tasks name no `depends_on` runs its list in order.
    pub fn is_dag(&self) -> bool {
        self.dag
    }
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Schedule(Box<Schedule>),
    /// One run per new file matching `watch` (a glob, relative to the workflows folder or absolute).
    Event {
        watch: String,
        /// How long a file must stay unchanged before it counts as completely written.
        settle: std::time::Duration,
    },
    Manual,
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Event { .. } => "event",
            Trigger::Manual => "manual",
        }
    }

    /// One line for lists: `schedule 0 2 * * * (America/New_York)`, `event inbox/*.json`, `manual`.
    pub fn summary(&self) -> String {
        match self {
            Trigger::Schedule(schedule) => format!("schedule {} ({})", schedule.expression(), schedule.zone()),
            Trigger::Event { watch, .. } => format!("event {watch}"),
            Trigger::Manual => "manual".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    Skip,
    Queue,
    CancelPrevious,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    None,
    Latest,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<serde_json::Value>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Float,
    Boolean,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Float => "float",
            ParamType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
    pub action: Option<String>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub backoff: f64,
    pub timeout: Option<Duration>,
    /// Registered services or agents tried in order once the task's own attempts are exhausted.
    pub fallback: Vec<String>,
    /// A CEL expression over `input`; the task is skipped when it is false.
    pub when: Option<String>,
    pub depends_on: Vec<String>,
    pub continue_on_failure: bool,
    /// Values may be `${env:NAME}` or `${file:PATH}`, read when an attempt starts (`tasks::secrets`).
    pub env: BTreeMap<String, String>,
    /// Bytes; `None` follows the registry, then the defaults in `tasks::limits`.
    pub max_output_size: Option<u64>,
    pub max_log_size: Option<u64>,
    /// Where the task starts in its file, for messages that point back at it.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    Service(String),
    Agent(String),
    Layer(String),
    /// An inline shell line, run with `sh -c`.
    Run(String),
    /// An inline argument vector, run without a shell.
    Command(Vec<String>),
}

impl TaskKind {
    pub fn label(&self) -> String {
        match self {
            TaskKind::Service(name) => format!("service {name}"),
            TaskKind::Agent(name) => format!("agent {name}"),
            TaskKind::Layer(name) => format!("layer {name}"),
            TaskKind::Run(_) => "run".to_string(),
            TaskKind::Command(_) => "command".to_string(),
        }
    }
}

/// `workflows/conveyor.toml`: the services, agents and governance layers that tasks refer to by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub services: BTreeMap<String, Endpoint>,
    pub agents: BTreeMap<String, Endpoint>,
    pub layers: BTreeMap<String, Layer>,
    pub alerts: Alerts,
    pub on_interrupt: OnInterrupt,
    pub retention: Retention,
    /// Bytes; `None` leaves the defaults in `tasks::limits`.
    pub max_output_size: Option<u64>,
    pub max_log_size: Option<u64>,
    /// Task attempts running at once in the whole engine (`None`: `engine::default_max_parallel()`).
    pub max_parallel_tasks: Option<u32>,
    /// `[env]`: under every route's and task's `env` (theirs win); values may be secret references.
    pub env: BTreeMap<String, String>,
    /// `[metrics] listen`: where an engine serves `/metrics` (`--metrics` of the daemon wins over it).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `store`: where the records live, as written (a secret reference is resolved when the store is
    /// opened); `None` is the state folder. `--store` wins over it.
    pub store: Option<String>,
}

/// `[retention]`: how much of what only grows the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest alerts kept.
    pub alerts: u32,
    /// The newest entries of the audit trail kept.
    pub audit: u32,
    /// The newest recorded fires kept per workflow.
    pub fires: u32,
    /// How long a processed file's record outlives the file (it keeps a file from running twice).
    pub processed_files: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { alerts: 10_000, audit: 10_000, fires: 1_000, processed_files: Duration::from_secs(30 * 86_400) }
    }
}

/// `on_interrupt`: what becomes of a run that an engine left active when it crashed or was stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInterrupt {
    /// Carry on by itself: succeeded tasks stay done, an interrupted task gets a new attempt.
    #[default]
    Resume,
    /// Stay `interrupted` until an operator resumes it.
    Wait,
    /// Fail the run, with an alert.
    Fail,
}

pub const ON_INTERRUPT_CHOICES: &[(&str, OnInterrupt)] =
    &[("resume", OnInterrupt::Resume), ("wait", OnInterrupt::Wait), ("fail", OnInterrupt::Fail)];

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub description: Option<String>,
    pub target: Target,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// Attempts on this service or agent at once, across the engine (a licence, an API's rate).
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Program and arguments; relative paths are resolved against the workflows folder.
    Command(Vec<String>),
    /// POST `{url}/{action}` with JSON in and JSON out.
    Url(String),
    /// An OpenAI-compatible chat-completions endpoint, asked once per item (agents only).
    Llm(std::sync::Arc<LlmAgent>),
}

/// An agent that is a language model: `llm = { url, model, prompt | prompt_file, … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmAgent {
    /// The API's base, e.g. `http://127.0.0.1:11434/v1`: requests go to `{url}/chat/completions`.
    pub url: String,
    pub model: String,
    /// The variable holding the API key, read when an attempt starts (never stored, never logged).
    pub api_key_env: Option<String>,
    /// The system prompt (`prompt`, or the text of `prompt_file` as it was when the registry loaded).
    pub prompt: String,
    /// The input's field holding the list of items, each asked about on its own; absent, the whole input is
    /// asked about once.
    pub items: Option<String>,
    /// What each reply must be (a JSON Schema subset, see `definition::schema`).
    pub output_schema: Option<serde_json::Value>,
    /// Requests in flight at once for this agent, across all its attempts.
    pub max_concurrency: usize,
    pub temperature: Option<f64>,
}

/// Requests an LLM agent has in flight at once unless it says otherwise.
pub const DEFAULT_LLM_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub description: Option<String>,
    pub items: Option<String>,
    pub rules: Vec<Rule>,
    pub approval: Option<String>,
    /// The fields of a held item an operator judges it by (`show = ["id", "amount"]`); empty shows them all.
    pub show: Vec<String>,
    /// How long items may wait at the gate before `on_timeout` decides them.
    pub approval_timeout: Option<Duration>,
    pub on_timeout: OnTimeout,
}

/// `on_timeout`: what becomes of the items still held when a gate's `approval_timeout` expires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Reject,
    Approve,
}

impl OnTimeout {
    pub fn approves(self) -> bool {
        self == OnTimeout::Approve
    }
}

pub const ON_TIMEOUT_CHOICES: &[(&str, OnTimeout)] = &[("reject", OnTimeout::Reject), ("approve", OnTimeout::Approve)];

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub expr: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alerts {
    pub command: Option<Vec<String>>,
    pub webhook: Option<String>,
}
