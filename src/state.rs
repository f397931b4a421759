//! The states a run and a task go through (ARCHITECTURE §6), shared by the engine, the store and the views.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} `{other}`", stringify!($name))),
                }
            }
        }
    };
}

states! {
    /// `queued → running → succeeded | failed | cancelled`, with `paused`, `waiting_approval` and
    /// `interrupted` (found unfinished when an engine starts again: resumable).
    RunState {
        Queued = "queued",
        Running = "running",
        Paused = "paused",
        WaitingApproval = "waiting_approval",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
}

states! {
    /// `pending → running → succeeded | failed | skipped | cancelled`, with `retry_wait` between attempts.
    TaskState {
        Pending = "pending",
        Running = "running",
        RetryWait = "retry_wait",
        WaitingApproval = "waiting_approval",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
        Cancelled = "cancelled",
    }
}

states! {
    /// How one attempt of a task ended; `interrupted`: cut short by its engine stopping or dying.
    AttemptState {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed | RunState::Cancelled | RunState::Interrupted)
    }

    /// A run that holds or may take engine resources.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running | RunState::Paused | RunState::WaitingApproval)
    }
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Skipped | TaskState::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text() {
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>().unwrap(), *state);
        }
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), *state);
        }
        assert_eq!("sleeping".parse::<TaskState>().unwrap_err(), "unknown TaskState `sleeping`");
    }
}
