//! Prometheus metrics: `/metrics` in the OpenMetrics text format. Counters and histograms are a view over
//! the engine's events (`view`); gauges are read from the store at each scrape, so they say what is true
//! now even for what an earlier engine left. The engine itself only reports its store commits' timing.

mod families;
mod http;
mod labels;
mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use chrono::Utc;
use prometheus_client::registry::Registry;

pub use families::EXPORTED;
use families::{Families, SeverityLabel, WorkflowLabel};
use labels::Known;
pub use labels::OTHER;

use crate::definition::Catalog;
use crate::engine::{CommitTimer, Engine};
use crate::store::{Store, StoreLocation};

/// The metrics of one engine, from before it opens (its commit timer goes into its config) to its end.
pub struct Metrics {
    listener: Option<std::net::TcpListener>,
    families: Families,
    registry: Arc<Registry>,
    known: Arc<RwLock<Known>>,
    since: chrono::DateTime<Utc>,
}

impl Metrics {
    /// Metrics on the address `--metrics` gives, else the registry's `[metrics] listen`; `None` when neither
    /// asks for them. The address is bound now, before any engine opens: the daemon refuses to start on a bad
    /// or taken address, the console says so and carries on without.
    pub fn open(flag: Option<&str>, catalog: &Catalog) -> Result<Option<Metrics>, String> {
        let address = match flag {
            Some(text) => crate::listen::parse_listen(text).map_err(|error| format!("--metrics: {error}"))?,
            None => match catalog.registry.metrics_listen {
                Some(address) => address,
                None => return Ok(None),
            },
        };
        let mut metrics = Metrics::new(catalog);
        metrics.listener = Some(bind(address)?);
        Ok(Some(metrics))
    }

    fn new(catalog: &Catalog) -> Metrics {
        let (families, registry) = Families::register();
        families.broken_workflow_files.set(catalog.broken.len() as i64);
        families.initialize(&catalog.workflows);
        Metrics {
            listener: None,
            families,
            registry: Arc::new(registry),
            known: Arc::new(RwLock::new(Known::from_catalog(catalog))),
            since: Utc::now(),
        }
    }

    /// For `EngineConfig::commit_timer`.
    pub fn commit_timer(&self) -> CommitTimer {
        let histogram = self.families.store_commit.clone();
        Arc::new(move |took| histogram.observe(took.as_secs_f64()))
    }

    /// Follows the engine's events and serves `/metrics` until the runtime ends. Call it right after the
    /// engine opens, before its workflows start, so no event is missed.
    pub fn serve(mut self, engine: &Engine, workflows: &Path, state: &Path, location: &StoreLocation) {
        let Some(listener) = self.listener.take() else { return };
        match listener.local_addr() {
            Ok(address) if address.ip().is_loopback() => tracing::info!("serving metrics at http://{address}/metrics"),
            Ok(address) => tracing::warn!(
                "serving metrics at http://{address}/metrics, beyond this machine: whoever reaches it reads workflow and task names"
            ),
            Err(error) => tracing::warn!("metrics: the listening address is unknown: {error}"),
        }
        let mut events = engine.subscribe();
        let mut view = self.view(workflows);
        match crate::store::open(state, location) {
            Ok(store) => view = view.with_store(store),
            Err(error) => tracing::warn!(
                "metrics: the store cannot be read ({error}): runs resumed from an earlier engine are labelled `{OTHER}`"
            ),
        }
        // A thread of its own: it reads the store and the workflows folder, which must not hold up the runtime.
        let spawned = std::thread::Builder::new().name("metrics".into()).spawn(move || {
            loop {
                match events.blocking_recv() {
                    Ok(event) => view.apply(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!("metrics: {missed} engine events were missed; counters are short by them");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!("metrics: cannot start the event thread: {error}");
        }
        http::spawn(listener, self.scrape(state, location));
    }

    fn view(&self, workflows: &Path) -> view::EventView {
        view::EventView::new(self.families.clone(), self.known.clone(), workflows.to_path_buf(), self.since)
    }

    fn scrape(&self, state: &Path, location: &StoreLocation) -> Scrape {
        Scrape {
            families: self.families.clone(),
            registry: self.registry.clone(),
            known: self.known.clone(),
            state: state.to_path_buf(),
            location: location.clone(),
            store: Arc::new(Mutex::new(None)),
        }
    }
}

const CHOOSE_ANOTHER: &str = "choose another with --metrics or the registry's [metrics] listen";

/// Binds the address before the engine opens, so a port in use is an error the operator sees at once.
pub fn bind(address: SocketAddr) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|error| format!("cannot serve metrics on {address}: {error} ({CHOOSE_ANOTHER})"))?;
    listener.set_nonblocking(true).map_err(|error| format!("cannot serve metrics on {address}: {error}"))?;
    Ok(listener)
}

/// What a scrape reads: the registry, refreshed with the store's gauges first.
#[derive(Clone)]
struct Scrape {
    families: Families,
    registry: Arc<Registry>,
    known: Arc<RwLock<Known>>,
    state: PathBuf,
    location: StoreLocation,
    /// Opened at the first scrape, then kept.
    store: Arc<Mutex<Option<Store>>>,
}

impl Scrape {
    /// The page, in the OpenMetrics text format; blocking (it reads the store).
    fn render(&self) -> Result<String, String> {
        // One scrape at a time: the gauges are cleared and filled again for each.
        let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if store.is_none() {
            *store = Some(crate::store::open(&self.state, &self.location).map_err(|error| error.to_string())?);
        }
        let gauges = store.as_ref().expect("opened above").gauges().map_err(|error| error.to_string())?;
        self.set_gauges(&gauges);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|error| error.to_string())?;
        Ok(text)
    }

    fn set_gauges(&self, gauges: &crate::store::Gauges) {
        let known = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let families = &self.families;
        // Every loaded workflow has its series, at 0 when nothing is there, so a dashboard shows a line and
        // an alert rule can compare; a removed workflow's series goes.
        let by_workflow = [
            (&families.active_runs, &gauges.active_runs),
            (&families.queued_fires, &gauges.queued_fires),
            (&families.waiting_gates, &gauges.waiting_gates),
        ];
        for (family, counts) in by_workflow {
            family.clear();
            for workflow in known.workflows() {
                family.get_or_create(&WorkflowLabel { workflow: workflow.to_string() }).set(0);
            }
            for (workflow, count) in counts {
                let label = WorkflowLabel { workflow: known.workflow(workflow) };
                family.get_or_create(&label).inc_by(*count as i64);
            }
        }
        families.gate_wait.clear();
        for workflow in known.workflows() {
            families.gate_wait.get_or_create(&WorkflowLabel { workflow: workflow.to_string() }).set(0.0);
        }
        let now = Utc::now();
        for (workflow, since) in &gauges.oldest_gate {
            let waited = (now - *since).num_milliseconds().max(0) as f64 / 1000.0;
            let gauge = families.gate_wait.get_or_create(&WorkflowLabel { workflow: known.workflow(workflow) });
            if waited > gauge.get() {
                gauge.set(waited);
            }
        }
        families.unacknowledged_alerts.clear();
        for severity in ["info", "warning", "error"] {
            families.unacknowledged_alerts.get_or_create(&SeverityLabel { severity: severity.into() }).set(0);
        }
        for (severity, count) in &gauges.unacknowledged_alerts {
            // Severities are the engine's own few words; anything else is one series, not many.
            let severity = if matches!(severity.as_str(), "info" | "warning" | "error") { severity } else { OTHER };
            families
                .unacknowledged_alerts
                .get_or_create(&SeverityLabel { severity: severity.into() })
                .inc_by(*count as i64);
        }
    }
}

#[cfg(test)]
mod tests;
