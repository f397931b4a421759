//! The engine client: how a process that does not hold the state folder (a command in another shell, a
//! console attached to a daemon) has a command carried out by the engine that does. The command is written
//! to the store; that engine polls for it, acts, and records its answer, which is read back here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Command, Reply, current_user};
use crate::store::{StateLock, StoreLocation};

/// The engine polls for commands every 250 ms; this leaves room for a busy one. A command no engine took by
/// then is expired in the store, so it never runs later behind the operator's back.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Why a command sent to another process's engine was not carried out. The kinds differ in what the
/// operator can do: start an engine, read the refusal, look at the store, or look at a wedged engine.
/// Each one's text is what the operator has always been shown.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "no engine holds {}: start one with `conveyor daemon` or the console (`conveyor`), or run a workflow here with `conveyor run WORKFLOW`",
        state.display()
    )]
    NoEngine { state: PathBuf },
    /// The engine answered, and its answer is no.
    #[error("{0}")]
    Refused(String),
    /// The store could not be opened, the command not queued, or its outcome not read.
    #[error("{0}")]
    StoreUnreachable(String),
    /// No engine took the command within `within`; `unwritable` says why it could not be marked expired
    /// here (then the engine's own deadline check records it so).
    #[error("{}", timed_out(state, *within, unwritable.as_deref()))]
    TimedOut { state: PathBuf, within: Duration, unwritable: Option<String> },
}

fn timed_out(state: &Path, within: Duration, unwritable: Option<&str>) -> String {
    match unwritable {
        None => format!(
            "not carried out: the engine holding {} did not take the command within {}s (it may be busy or stuck; see its log); nothing was done",
            state.display(),
            within.as_secs_f64()
        ),
        Some(error) => format!(
            "not carried out: no engine took the command within {}s, and the store is not writable ({error}); the engine will record it as expired",
            within.as_secs_f64()
        ),
    }
}

/// Sends `command` to the engine holding `state` and waits for its answer.
/// On a PostgreSQL store the engine's lock is in its own state folder, maybe on another host, so it is not
/// looked for: a command no engine takes expires after the wait instead.
pub fn send(state: &Path, location: &StoreLocation, command: &Command) -> Result<Reply, CommandError> {
    if *location == StoreLocation::StateFolder && !StateLock::is_held(state) {
        return Err(CommandError::NoEngine { state: state.to_path_buf() });
    }
    send_within(state, location, command, answer_within())
}

/// `CONVEYOR_ANSWER_WITHIN` (seconds) shortens or lengthens the wait, for scripts and tests.
fn answer_within() -> Duration {
    std::env::var("CONVEYOR_ANSWER_WITHIN")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 86_400.0)
        .map_or(ANSWER_WITHIN, Duration::from_secs_f64)
}

fn send_within(
    state: &Path,
    location: &StoreLocation,
    command: &Command,
    within: Duration,
) -> Result<Reply, CommandError> {
    let unreachable = CommandError::StoreUnreachable;
    let store = crate::store::open(state, location).map_err(|error| unreachable(error.to_string()))?;
    let now = chrono::Utc::now();
    let deadline = now + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::seconds(30));
    let id = store
        .enqueue_command(now, &current_user(), &command.to_json(), deadline)
        .map_err(|error| unreachable(format!("the command could not be queued: {error}")))?;
    let asked = Instant::now();
    loop {
        let result = match store.command_result(id) {
            Ok(result) => result,
            // A busy store is retried until the deadline; what counts is what the engine recorded.
            Err(_) if asked.elapsed() <= within => None,
            Err(error) => return Err(unreachable(format!("cannot read the command's outcome: {error}"))),
        };
        match result {
            Some(answer) => return answered(answer),
            None if asked.elapsed() > within => {
                // Either this marks it expired (it will never run) or the engine took it first (read its answer).
                let timed_out = |unwritable| CommandError::TimedOut { state: state.to_path_buf(), within, unwritable };
                return match store.expire_command(id, chrono::Utc::now()) {
                    Ok(true) => Err(timed_out(None)),
                    Ok(false) => match store.command_result(id) {
                        Ok(Some(answer)) => answered(answer),
                        _ => Err(unreachable("the command's outcome could not be read; see `conveyor history`".into())),
                    },
                    // The engine's own deadline check records it as not carried out: it never runs late.
                    Err(error) => Err(timed_out(Some(error.to_string()))),
                };
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The engine's recorded answer: a reply (JSON, or plain text from an older engine) or its refusal.
fn answered((carried_out, outcome): (bool, String)) -> Result<Reply, CommandError> {
    if !carried_out {
        return Err(CommandError::Refused(outcome));
    }
    Ok(serde_json::from_str(&outcome).unwrap_or_else(|_| Reply::new(outcome)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Command {
        Command::AckAlert { id: 1 }
    }

    #[test]
    fn a_folder_no_engine_holds_is_no_engine_with_the_operator_text() {
        let dir = tempfile::tempdir().unwrap();
        let error = send(dir.path(), &StoreLocation::StateFolder, &ack()).unwrap_err();
        assert!(matches!(&error, CommandError::NoEngine { state } if state == dir.path()), "{error:?}");
        assert!(error.to_string().starts_with(&format!("no engine holds {}: start one", dir.path().display())));
    }

    #[test]
    fn a_held_folder_whose_engine_takes_nothing_is_timed_out_and_the_command_expires() {
        let dir = tempfile::tempdir().unwrap();
        // A wedged engine: the folder is held, nobody reads the commands.
        let _lock = StateLock::acquire(dir.path()).unwrap();
        let within = Duration::from_millis(200);
        let error = send_within(dir.path(), &StoreLocation::StateFolder, &ack(), within).unwrap_err();
        assert!(
            matches!(&error, CommandError::TimedOut { state, within: waited, unwritable: None }
                if state == dir.path() && *waited == within),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "not carried out: the engine holding {} did not take the command within 0.2s (it may be busy or stuck; see its log); nothing was done",
                dir.path().display()
            )
        );
        let store = crate::store::Store::open(dir.path()).unwrap();
        assert!(store.pending_commands(chrono::Utc::now()).unwrap().is_empty(), "the command was left to run later");
    }

    #[test]
    fn an_engine_that_answers_no_is_refused_with_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = StateLock::acquire(dir.path()).unwrap();
        let state = dir.path().to_path_buf();
        // Stands in for the engine's command poll: refuses the first command it finds. Like an engine, it has
        // its store open before anyone sends it a command.
        let (opened, ready) = std::sync::mpsc::channel();
        let engine = std::thread::spawn(move || {
            let store = crate::store::Store::open(&state).unwrap();
            opened.send(()).unwrap();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Some(command) = store.pending_commands(chrono::Utc::now()).unwrap().first() {
                    store.complete_command(command.id, chrono::Utc::now(), false, "no alert 1").unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ready.recv().unwrap();
        let error = send_within(dir.path(), &StoreLocation::StateFolder, &ack(), Duration::from_secs(30)).unwrap_err();
        engine.join().unwrap();
        assert!(matches!(&error, CommandError::Refused(words) if words == "no alert 1"), "{error:?}");
        assert_eq!(error.to_string(), "no alert 1");
    }

    #[test]
    fn a_state_path_that_is_a_file_is_store_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, "x").unwrap();
        let error = send_within(&file, &StoreLocation::StateFolder, &ack(), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, CommandError::StoreUnreachable(_)), "{error:?}");
    }
}
