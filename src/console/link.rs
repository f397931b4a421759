//! The console's line to an engine: one it embeds, or a daemon's that holds the state folder, reached
//! through the store. On a PostgreSQL store the console always attaches: engines there are daemons, and any
//! of them may be the one that acts, so the console reads and commands through the shared database.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::Message;
use crate::definition::Catalog;
use crate::engine::{Command, Engine, EngineConfig, Origin, Reply};
use crate::store::{StateLock, Store, StoreLocation};

/// How often an attached console reads the daemon's state from the store.
const ATTACHED_REFRESH: Duration = Duration::from_millis(500);
/// The least time between two reads of a console woken by the store's notifications of changes.
const WOKEN_GAP: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub enum Link {
    Embedded(Engine),
    /// Reads the store the engines write and queues commands there: `state` is this host's folder (logs
    /// written out for the viewer), `location` the records.
    Attached {
        state: PathBuf,
        location: StoreLocation,
    },
}

impl Link {
    pub async fn connect(
        workflows: &Path,
        state: &Path,
        location: &StoreLocation,
        catalog: &Catalog,
    ) -> Result<Link, String> {
        let attached = || Link::Attached { state: state.to_path_buf(), location: location.clone() };
        if *location != StoreLocation::StateFolder || StateLock::is_held(state) {
            return Ok(attached());
        }
        // Metrics are an extra here: a taken port is said in the monitor, and the console carries on.
        let metrics = crate::metrics::Metrics::open(None, catalog).unwrap_or_else(|error| {
            tracing::error!("{error}: the console's engine serves no metrics");
            None
        });
        let commit_timer = metrics.as_ref().map(crate::metrics::Metrics::commit_timer);
        let engine = Engine::open(
            EngineConfig { subreaper: true, commit_timer, ..EngineConfig::new(workflows, state) },
            catalog.registry.clone(),
        )
        .map_err(|e| e.to_string())?;
        if let Some(metrics) = metrics {
            metrics.serve(&engine, workflows, state, &StoreLocation::StateFolder);
        }
        for workflow in &catalog.workflows {
            engine.register(workflow.clone());
        }
        if let Err(error) = engine.start_all().await {
            tracing::error!("some workflows could not be activated: {error}");
        }
        if let Err(error) = engine.watch_workflows().await {
            tracing::warn!("the workflows folder is not watched: {error}");
        }
        Ok(Link::Embedded(engine))
    }

    pub fn attached(&self) -> bool {
        matches!(self, Link::Attached { .. })
    }

    /// Where the records are that this link's engine keeps.
    pub fn location(&self) -> StoreLocation {
        match self {
            Link::Embedded(_) => StoreLocation::StateFolder,
            Link::Attached { location, .. } => location.clone(),
        }
    }

    pub async fn send(&self, command: Command) -> Result<Reply, String> {
        match self {
            Link::Embedded(engine) => engine.send_as(command, Origin::local("console")).await,
            Link::Attached { state, location } => {
                let (state, location) = (state.clone(), location.clone());
                tokio::task::spawn_blocking(move || crate::engine::client::send(&state, &location, &command))
                    .await
                    .map_err(|error| error.to_string())?
                    .map_err(|error| error.to_string())
            }
        }
    }

    /// Engine events to the screen: the event stream when embedded, store snapshots when attached.
    pub fn forward_events(&self, tx: mpsc::Sender<Message>, store: &Arc<Mutex<Store>>) {
        match self {
            Link::Embedded(engine) => {
                let mut events = engine.subscribe();
                let (watched, failed) = (engine.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Err(reason) = watched.ended().await {
                        let _ = failed.send(Message::EngineFailed(reason)).await;
                    }
                });
                tokio::spawn(async move {
                    loop {
                        let message = match events.recv().await {
                            Ok(event) => Message::Engine(Box::new(event)),
                            Err(broadcast::error::RecvError::Lagged(_)) => Message::Resync,
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        if tx.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Link::Attached { .. } => {
                let store = store.clone();
                tokio::spawn(async move {
                    // Where the daemon's records end now, before any key can give a command.
                    let start = store.clone();
                    let Ok((mut trail, mut woken)) = tokio::task::spawn_blocking(move || {
                        let store = start.lock().expect("store lock");
                        (super::monitor::read_trail(&store, None).2, store.change_wake_ups())
                    })
                    .await
                    else {
                        return;
                    };
                    let feed = Arc::new(Mutex::new(super::change_feed::Feed::default()));
                    loop {
                        match &mut woken {
                            Some(wake_ups) => {
                                // A burst of writes makes one read at a time, each at least WOKEN_GAP apart.
                                tokio::time::sleep(WOKEN_GAP).await;
                                tokio::select! {
                                    hint = wake_ups.recv() => if hint.is_none() { woken = None },
                                    () = tokio::time::sleep(ATTACHED_REFRESH - WOKEN_GAP) => {}
                                }
                            }
                            None => tokio::time::sleep(ATTACHED_REFRESH).await,
                        }
                        let (store, feed) = (store.clone(), feed.clone());
                        let Ok((read, audits, fires, next)) = tokio::task::spawn_blocking(move || {
                            let store = store.lock().expect("store lock");
                            // What a snapshot lacks for the engine log: who gave which command, and fires.
                            let (audits, fires, next) = super::monitor::read_trail(&store, Some(trail));
                            let read = feed.lock().expect("feed lock").read(&store, std::time::Instant::now());
                            (read, audits, fires, next)
                        })
                        .await
                        else {
                            return;
                        };
                        trail = next;
                        let message = match read {
                            super::change_feed::Read::Whole(snapshot) => Message::Snapshot(snapshot),
                            super::change_feed::Read::Changes(changes) => Message::Changes(changes),
                        };
                        if tx.send(message).await.is_err() {
                            return;
                        }
                        if !(audits.is_empty() && fires.is_empty())
                            && tx.send(Message::Trail(audits, fires)).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    }

    /// Stops an embedded engine: running tasks get their grace period, their runs stay resumable.
    pub async fn close(&self) {
        if let Link::Embedded(engine) = self {
            engine.shutdown().await;
        }
    }
}
