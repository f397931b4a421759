//! Every metric Conveyor exports, registered once under the `conveyor_` prefix. The README's "Metrics" table
//! and `contrib/` name these; a test checks they are all in a scrape.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::definition::{Trigger, Workflow};
use crate::state::RunState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabel {
    pub workflow: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub workflow: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub workflow: String,
    pub task: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub workflow: String,
    pub task: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

/// Tasks take from a tenth of a second to hours.
const TASK_SECONDS: [f64; 12] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];
/// A fire is due on the second; a minute late is worth an alert (`contrib/conveyor-alerts.yml`), hours late is
/// a catch-up after the engine was down.
const LATENESS_SECONDS: [f64; 11] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0];
/// A commit is a millisecond on a quiet disk; seconds mean the store is in trouble.
const COMMIT_SECONDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Clone)]
pub struct Families {
    pub runs_started: Family<WorkflowLabel, Counter>,
    pub runs_finished: Family<RunLabels, Counter>,
    pub task_attempts: Family<AttemptLabels, Counter>,
    pub task_duration: Histograms<TaskLabels>,
    pub fire_lateness: Histograms<WorkflowLabel>,
    pub store_commit: Histogram,
    pub active_runs: Family<WorkflowLabel, Gauge>,
    pub queued_fires: Family<WorkflowLabel, Gauge>,
    pub waiting_gates: Family<WorkflowLabel, Gauge>,
    pub gate_wait: Family<WorkflowLabel, Gauge<f64, AtomicU64>>,
    pub unacknowledged_alerts: Family<SeverityLabel, Gauge>,
    pub broken_workflow_files: Gauge,
}

impl Families {
    pub fn register() -> (Families, Registry) {
        let families = Families {
            runs_started: Family::default(),
            runs_finished: Family::default(),
            task_attempts: Family::default(),
            task_duration: Family::new_with_constructor(|| Histogram::new(TASK_SECONDS)),
            fire_lateness: Family::new_with_constructor(|| Histogram::new(LATENESS_SECONDS)),
            store_commit: Histogram::new(COMMIT_SECONDS),
            active_runs: Family::default(),
            queued_fires: Family::default(),
            waiting_gates: Family::default(),
            gate_wait: Family::default(),
            unacknowledged_alerts: Family::default(),
            broken_workflow_files: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("conveyor");
        let f = families.clone();
        registry.register("runs_started", "Runs started, by workflow", f.runs_started);
        registry.register("runs_finished", "Runs that reached an end, by workflow and end state", f.runs_finished);
        registry.register(
            "task_attempts",
            "Task attempts that ended, by workflow, task and end state",
            f.task_attempts,
        );
        registry.register_with_unit(
            "task_duration",
            "How long task attempts ran, by workflow and task (attempts cut short by an engine stop are left out)",
            Unit::Seconds,
            f.task_duration,
        );
        registry.register_with_unit(
            "fire_lateness",
            "How long after its scheduled instant a fire was acted on, by workflow",
            Unit::Seconds,
            f.fire_lateness,
        );
        registry.register_with_unit(
            "store_commit_duration",
            "How long the engine's store commits took (one per engine step)",
            Unit::Seconds,
            f.store_commit,
        );
        registry.register(
            "active_runs",
            "Runs queued, running, paused or waiting for approval, by workflow",
            f.active_runs,
        );
        registry.register("queued_fires", "Scheduled fires waiting in their workflow's queue", f.queued_fires);
        registry.register("waiting_gates", "Governance gates waiting for an operator, by workflow", f.waiting_gates);
        registry.register_with_unit(
            "gate_wait",
            "How long the longest-waiting gate of each workflow has waited (0 when none waits)",
            Unit::Seconds,
            f.gate_wait,
        );
        registry.register(
            "unacknowledged_alerts",
            "Alerts nobody has acknowledged yet, by severity",
            f.unacknowledged_alerts,
        );
        registry.register(
            "broken_workflow_files",
            "Workflow files (and the registry) that do not load",
            f.broken_workflow_files,
        );
        registry.register(
            "build",
            "The engine's version",
            Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        );
        (families, registry)
    }

    /// A workflow's run series start at 0 when it loads, not at 1 with its first run: a rule over
    /// `increase()` sees the first failure too, and a dashboard shows a line before anything happened.
    pub fn initialize(&self, workflows: &[Workflow]) {
        for workflow in workflows {
            let label = WorkflowLabel { workflow: workflow.id.clone() };
            let _ = self.runs_started.get_or_create(&label);
            for state in RunState::ALL.iter().filter(|state| state.is_finished()) {
                let _ = self
                    .runs_finished
                    .get_or_create(&RunLabels { workflow: workflow.id.clone(), state: state.to_string() });
            }
            if matches!(workflow.trigger, Trigger::Schedule(_)) {
                let _ = self.fire_lateness.get_or_create(&label);
            }
        }
    }
}

/// The metric names a scrape shows, as Prometheus sees them (`_total` on counters, units on the rest; a
/// histogram's series add `_bucket`, `_sum` and `_count`).
pub const EXPORTED: &[&str] = &[
    "conveyor_runs_started_total",
    "conveyor_runs_finished_total",
    "conveyor_task_attempts_total",
    "conveyor_task_duration_seconds",
    "conveyor_fire_lateness_seconds",
    "conveyor_store_commit_duration_seconds",
    "conveyor_active_runs",
    "conveyor_queued_fires",
    "conveyor_waiting_gates",
    "conveyor_gate_wait_seconds",
    "conveyor_unacknowledged_alerts",
    "conveyor_broken_workflow_files",
    "conveyor_build_info",
];
