//! How many attempts may run at once: in the whole engine (`max_parallel_tasks`), per workflow
//! (`max_parallel`) and per service or agent (`max_concurrency`). Each bound is a semaphore shared by every
//! attempt under it; a bound changed by a reload starts a new one (attempts already running keep theirs, so
//! for a moment both counts apply).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tasks::{Cancel, LogSink};

/// Task attempts at once when `max_parallel_tasks` is not set: tasks mostly wait (on processes, disks,
/// servers), so several per core, and never fewer than the 16 the engine always allowed.
pub fn default_max_parallel() -> usize {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    (4 * cores).max(16)
}

/// Task attempts at once in one engine: the registry's `max_parallel_tasks`, else `default` (the
/// engine's configured bound); never fewer than one.
pub fn max_parallel_tasks(registry: &crate::definition::Registry, default: usize) -> usize {
    registry.max_parallel_tasks.map_or(default, |bound| bound as usize).max(1)
}

#[derive(Default)]
pub struct Gates {
    shared: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

/// A bound an attempt must pass, and how the log names it when it has to wait.
pub struct Gate {
    pub what: String,
    pub semaphore: Arc<Semaphore>,
}

impl Gates {
    /// The semaphore for `key` with room for `bound`.
    pub fn gate(&self, key: &str, bound: usize, what: String) -> Gate {
        let mut shared = self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (known, semaphore) =
            shared.entry(key.to_string()).or_insert_with(|| (bound, Arc::new(Semaphore::new(bound))));
        if *known != bound {
            *known = bound;
            *semaphore = Arc::new(Semaphore::new(bound));
        }
        Gate { what, semaphore: semaphore.clone() }
    }
}

/// Takes a place under every gate, in order (the narrowest first, so no wider place is held while waiting
/// for a narrow one); says in the attempt's log what it waits for. `None` if the attempt was cancelled
/// meanwhile.
pub async fn pass(gates: Vec<Gate>, cancel: &mut Cancel, log: &LogSink) -> Option<Vec<OwnedSemaphorePermit>> {
    let mut held = Vec::with_capacity(gates.len());
    for gate in gates {
        let permit = match gate.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                log.engine_line(&format!("waiting for a free place: {}", gate.what));
                tokio::select! {
                    permit = gate.semaphore.acquire_owned() => permit.ok()?,
                    _ = cancel.cancelled() => return None,
                }
            }
        };
        held.push(permit);
    }
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bound_shares_one_semaphore_and_a_new_bound_starts_another() {
        let gates = Gates::default();
        let first = gates.gate("route:A", 2, "A".into());
        let again = gates.gate("route:A", 2, "A".into());
        assert!(Arc::ptr_eq(&first.semaphore, &again.semaphore));
        let changed = gates.gate("route:A", 3, "A".into());
        assert!(!Arc::ptr_eq(&first.semaphore, &changed.semaphore));
        assert_eq!(changed.semaphore.available_permits(), 3);
        assert!(default_max_parallel() >= 16);
    }

    #[tokio::test]
    async fn an_attempt_waits_for_a_place_and_a_cancel_ends_the_wait() {
        let gates = Gates::default();
        let dir = tempfile::tempdir().unwrap();
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let listener = {
            let said = said.clone();
            std::sync::Arc::new(move |_, line: &str, _| said.lock().unwrap().push_str(line))
        };
        let log = LogSink::create(&dir.path().join("a.log"), 1 << 20, listener);
        let (_handle, mut cancel) = crate::tasks::cancel_pair();
        let held = pass(vec![gates.gate("w:W", 1, "max_parallel 1 of workflow W".into())], &mut cancel, &log)
            .await
            .expect("a free place");
        let (handle, mut cancel) = crate::tasks::cancel_pair();
        let waiting = tokio::spawn({
            let gate = gates.gate("w:W", 1, "max_parallel 1 of workflow W".into());
            let log = log.clone();
            async move { pass(vec![gate], &mut cancel, &log).await.is_none() }
        });
        // The waiter says so in the log before it waits; the log is the barrier.
        while !said.lock().unwrap().contains("waiting for a free place") {
            tokio::task::yield_now().await;
        }
        handle.cancel();
        assert!(waiting.await.unwrap(), "a cancelled wait takes no place");
        drop(held);
        let (_handle, mut cancel) = crate::tasks::cancel_pair();
        assert!(pass(vec![gates.gate("w:W", 1, String::new())], &mut cancel, &log).await.is_some());
    }
}
