//! The workflow and registry files exactly as written, with the position of every value that a later
//! check may need to point at. Validation turns these into the types in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub id: Spanned<String>,
    pub description: Option<String>,
    pub trigger: Option<Spanned<RawTrigger>>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<toml::Value>>,
    pub overlap: Option<Spanned<String>>,
    pub catchup: Option<Spanned<String>>,
    pub max_active_runs: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub keep_runs: Option<Spanned<i64>>,
    pub max_parallel: Option<Spanned<i64>>,
    pub on_interrupt: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<RawTask>>,
    pub on_success: Option<Spanned<RawTask>>,
    pub on_cancel: Option<Spanned<RawTask>>,
    pub tasks: Option<Spanned<Vec<Spanned<RawTask>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub cron: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub watch: Option<Spanned<String>>,
    pub settle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: Option<Spanned<String>>,
    pub service: Option<Spanned<String>>,
    pub agent: Option<Spanned<String>>,
    pub layer: Option<Spanned<String>>,
    pub run: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub action: Option<String>,
    pub retries: Option<Spanned<i64>>,
    pub retry_delay: Option<Spanned<String>>,
    pub backoff: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub fallback: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub continue_on_failure: bool,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub max_output_size: Option<Spanned<String>>,
    pub max_log_size: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<RawEndpoint>>,
    #[serde(default)]
    pub agents: BTreeMap<String, Spanned<RawEndpoint>>,
    #[serde(default)]
    pub layers: BTreeMap<String, Spanned<RawLayer>>,
    pub alerts: Option<Spanned<RawAlerts>>,
    /// The `on_interrupt` of every workflow that does not name its own.
    pub on_interrupt: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawRetention>>,
    /// The `max_output_size` and `max_log_size` of every task that does not set its own.
    pub max_output_size: Option<Spanned<String>>,
    pub max_log_size: Option<Spanned<String>>,
    /// Task attempts running at once in the whole engine.
    pub max_parallel_tasks: Option<Spanned<i64>>,
    /// `[env]`: every task's environment, under its route's and its own `env`.
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    /// `[metrics]`: where the engine serves Prometheus metrics.
    pub metrics: Option<Spanned<RawMetrics>>,
    /// Where the records live: a PostgreSQL address, or a secret reference to one.
    pub store: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub alerts: Option<Spanned<i64>>,
    pub audit: Option<Spanned<i64>>,
    pub fires: Option<Spanned<i64>>,
    pub processed_files: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub description: Option<String>,
    pub command: Option<Spanned<Vec<String>>>,
    pub url: Option<Spanned<String>>,
    pub llm: Option<Spanned<RawLlm>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_concurrency: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    pub url: Spanned<String>,
    pub model: Spanned<String>,
    pub api_key_env: Option<Spanned<String>>,
    pub prompt: Option<Spanned<String>>,
    pub prompt_file: Option<Spanned<String>>,
    pub items: Option<Spanned<String>>,
    pub output_schema: Option<Spanned<serde_json::Value>>,
    pub max_concurrency: Option<Spanned<i64>>,
    pub temperature: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLayer {
    pub description: Option<String>,
    pub items: Option<String>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
    pub approval: Option<Spanned<String>>,
    #[serde(default)]
    pub show: Vec<String>,
    pub approval_timeout: Option<Spanned<String>>,
    pub on_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub expr: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub command: Option<Spanned<Vec<String>>>,
    pub webhook: Option<Spanned<String>>,
}
