//! `o`: a log in `$PAGER`. The console gives the terminal to the pager and takes it back after; meanwhile the
//! input thread holds still, or it would read the keys meant for the pager.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::model::{Effect, Model, Pane};

/// `o` on the Log pane pages the open log; on a task, its latest attempt's log.
pub fn open(model: &mut Model) -> Vec<Effect> {
    let path: Option<PathBuf> = match model.focus {
        Pane::Log => model.log.as_ref().map(|log| log.path.clone()),
        Pane::Tasks => match model.open_log_effect(false) {
            Some(Effect::OpenLog { path, .. }) => Some(path),
            _ => None,
        },
        _ => None,
    };
    match path {
        Some(path) => vec![Effect::Pager(path)],
        None => {
            model.set_status("open a log, or select a task that has run, to page it (o)");
            Vec::new()
        }
    }
}

/// `$PAGER` (by default `less -R`) on the file, through `sh` so that a pager given with its options splits into
/// words as the shell would split it; the path goes as an argument, never into the script.
pub fn command(path: &Path) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg("exec ${PAGER:-less -R} \"$1\"").arg("conveyor-pager").arg(path);
    command
}

/// Lets the runtime stop the input thread between two reads and start it again.
#[derive(Debug, Default)]
pub struct InputGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// The runtime asked the thread to stop reading.
    paused: bool,
    /// The thread is waiting at the gate, reading nothing.
    parked: bool,
    /// The thread has ended: nobody will ever park.
    closed: bool,
}

impl InputGate {
    /// Returns once the input thread reads nothing more, until `resume`.
    pub fn pause(&self) {
        self.ask_pause();
        self.wait_parked();
    }

    fn ask_pause(&self) {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).paused = true;
    }

    /// Waits for the thread to finish the poll it is in and stop at the gate.
    fn wait_parked(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while !state.parked && !state.closed {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn resume(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.paused = false;
        self.changed.notify_all();
    }

    /// The input thread, before each poll: waits here while paused.
    fn wait_open(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while state.paused {
            state.parked = true;
            self.changed.notify_all();
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.parked = false;
    }

    fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.closed = true;
        self.changed.notify_all();
    }
}

/// The input thread's loop: `poll` waits a short while for an event (so the gate is looked at often), `read`
/// takes it, `send` passes it on and says whether anyone still listens. It ends when reading fails or nobody
/// listens.
pub fn input_loop<T>(
    gate: &InputGate,
    mut poll: impl FnMut() -> std::io::Result<bool>,
    mut read: impl FnMut() -> std::io::Result<T>,
    mut send: impl FnMut(T) -> bool,
) {
    loop {
        gate.wait_open();
        match poll() {
            Ok(false) => continue,
            Ok(true) => match read() {
                Ok(event) => {
                    if !send(event) {
                        break;
                    }
                }
                Err(_) => break,
            },
            Err(_) => break,
        }
    }
    gate.close();
}

/// Leaves the console's screen, runs the pager on the file and waits for it, then takes the screen back (the
/// caller draws everything again).
pub fn show(path: &Path, gate: &InputGate, mouse_captured: bool) -> Result<(), String> {
    use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
    let mut stdout = std::io::stdout();
    gate.pause();
    let _ = crossterm::execute!(stdout, DisableMouseCapture);
    ratatui::restore();
    let status = command(path).status();
    let _ = crossterm::terminal::enable_raw_mode();
    let _ = crossterm::execute!(stdout, crossterm::terminal::EnterAlternateScreen);
    if mouse_captured {
        let _ = crossterm::execute!(stdout, EnableMouseCapture);
    }
    gate.resume();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("the pager ended with {status}: set $PAGER to one that works")),
        Err(error) => Err(format!("cannot start the pager: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    #[test]
    fn the_pager_runs_through_sh_with_the_path_as_an_argument() {
        let command = command(Path::new("/tmp/a b;rm.log"));
        assert_eq!(command.get_program(), "sh");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["-c", "exec ${PAGER:-less -R} \"$1\"", "conveyor-pager", "/tmp/a b;rm.log"]);
    }

    #[test]
    fn a_paused_input_thread_reads_nothing_until_resumed() {
        let gate = Arc::new(InputGate::default());
        // Each poll asks the test for its answer, so the test knows where the thread is.
        let (poll_tx, poll_rx) = mpsc::channel::<bool>();
        let (asked_tx, asked_rx) = mpsc::channel::<()>();
        let (sent_tx, sent_rx) = mpsc::channel::<u32>();
        let thread = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut next = 0;
                input_loop(
                    &gate,
                    || {
                        asked_tx.send(()).ok();
                        Ok(poll_rx.recv().unwrap_or(false))
                    },
                    || {
                        next += 1;
                        Ok(next)
                    },
                    |event| sent_tx.send(event).is_ok() && event < 2,
                )
            })
        };
        asked_rx.recv().unwrap();
        poll_tx.send(true).unwrap();
        assert_eq!(sent_rx.recv().unwrap(), 1);
        // The thread is in its next poll when the pause is asked: it stops once that poll is answered.
        asked_rx.recv().unwrap();
        gate.ask_pause();
        assert!(!gate.state.lock().unwrap().parked, "a thread inside a poll is not parked yet");
        poll_tx.send(false).unwrap();
        gate.wait_parked();
        assert!(asked_rx.try_recv().is_err(), "a paused thread does not poll");
        assert!(gate.state.lock().unwrap().parked);
        gate.resume();
        asked_rx.recv().unwrap();
        poll_tx.send(true).unwrap();
        assert_eq!(sent_rx.recv().unwrap(), 2);
        thread.join().unwrap();
        assert!(gate.state.lock().unwrap().closed);
        // With the thread gone, pausing does not wait for it.
        gate.pause();
    }
}
