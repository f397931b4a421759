//! The engine client: how a process that does not hold the state folder (a command in another shell, a
//! console attached to a daemon) has a command carried out by the engine that does. The command is written
//! to the store; that engine polls for it, acts, and records its answer, which is read back here.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Command, Reply, current_user};
use crate::store::{StateLock, Store};

/// The engine polls for commands every 250 ms; this leaves room for a busy one. A command no engine took by
/// then is expired in the store, so it never runs later behind the operator's back.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

fn no_engine(state: &Path) -> String {
    format!(
        "no engine holds {}: start one with `conveyor daemon` or the console (`conveyor`), or run a workflow here with `conveyor run WORKFLOW`",
        state.display()
    )
}

/// Sends `command` to the engine holding `state` and waits for its answer.
pub fn send(state: &Path, command: &Command) -> Result<Reply, String> {
    if !StateLock::is_held(state) {
        return Err(no_engine(state));
    }
    send_within(state, command, answer_within())
}

/// `CONVEYOR_ANSWER_WITHIN` (seconds) shortens or lengthens the wait, for scripts and tests.
fn answer_within() -> Duration {
    std::env::var("CONVEYOR_ANSWER_WITHIN")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 86_400.0)
        .map_or(ANSWER_WITHIN, Duration::from_secs_f64)
}

fn send_within(state: &Path, command: &Command, within: Duration) -> Result<Reply, String> {
    let store = Store::open(state).map_err(|error| error.to_string())?;
    let now = chrono::Utc::now();
    let deadline = now + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::seconds(30));
    let id = store
        .enqueue_command(now, &current_user(), &command.to_json(), deadline)
        .map_err(|error| format!("the command could not be queued: {error}"))?;
    let asked = Instant::now();
    loop {
        let result = match store.command_result(id) {
            Ok(result) => result,
            // A busy store is retried until the deadline; what counts is what the engine recorded.
            Err(_) if asked.elapsed() <= within => None,
            Err(error) => return Err(format!("cannot read the command's outcome: {error}")),
        };
        match result {
            Some((true, outcome)) => {
                return serde_json::from_str(&outcome).or_else(|_| Ok(Reply::new(outcome)));
            }
            Some((false, error)) => return Err(error),
            None if asked.elapsed() > within => {
                // Either this marks it expired (it will never run) or the engine took it first (read its answer).
                return match store.expire_command(id, chrono::Utc::now()) {
                    Ok(true) => Err(format!(
                        "not carried out: the engine holding {} did not take the command within {}s (it may be busy or stuck; see its log); nothing was done",
                        state.display(),
                        within.as_secs_f64()
                    )),
                    Ok(false) => match store.command_result(id) {
                        Ok(Some((true, outcome))) => {
                            serde_json::from_str(&outcome).or_else(|_| Ok(Reply::new(outcome)))
                        }
                        Ok(Some((false, error))) => Err(error),
                        _ => Err("the command's outcome could not be read; see `conveyor history`".into()),
                    },
                    // The engine's own deadline check records it as not carried out: it never runs late.
                    Err(error) => Err(format!(
                        "not carried out: no engine took the command within {}s, and the store is not writable ({error}); the engine will record it as expired",
                        within.as_secs_f64()
                    )),
                };
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
