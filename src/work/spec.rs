//! What a worker needs to run an offered attempt, and how its ending travels back, as JSON in the work row.
//! Secrets travel as the references the definitions hold (`${env:…}`, `${file:…}`): the worker reads them on
//! its own host, so no secret's value is ever written to the database.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tasks::{Attempt, Ending, Limits, Stream};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The program and its arguments, the action already appended where the route asks for it.
    pub argv: Vec<String>,
    /// The attempt's environment as defined, references unresolved.
    pub env: BTreeMap<String, String>,
    pub workflow: String,
    pub action: Option<String>,
    pub input: Value,
    pub params: Map<String, Value>,
    pub scheduled_at: Option<String>,
    pub max_line: usize,
    pub max_output_size: u64,
    pub max_log_size: u64,
    pub kill_grace_ms: u64,
    /// The attempt's timeout, counted by the engine that runs it from when its process starts (waiting for a
    /// free engine does not use it up).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Spec {
    pub fn of(attempt: &Attempt, argv: Vec<String>, timeout: Option<Duration>) -> Spec {
        Spec {
            argv,
            env: attempt.env.clone(),
            workflow: attempt.workflow.clone(),
            action: attempt.action.clone(),
            input: attempt.input.clone(),
            params: attempt.params.clone(),
            scheduled_at: attempt.scheduled_at.clone(),
            max_line: attempt.limits.max_line,
            max_output_size: attempt.limits.max_output_size,
            max_log_size: attempt.limits.max_log_size,
            kill_grace_ms: millis(attempt.kill_grace),
            timeout_ms: timeout.map(millis),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits { max_line: self.max_line, max_output_size: self.max_output_size, max_log_size: self.max_log_size }
    }

    pub fn kill_grace(&self) -> Duration {
        Duration::from_millis(self.kill_grace_ms)
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "ended", rename_all = "snake_case")]
enum Ended {
    Succeeded { output: Value },
    Failed { error: String, exit_code: Option<i32> },
    Cancelled,
}

pub fn ending_to_json(ending: &Ending) -> Value {
    let ended = match ending {
        Ending::Succeeded { output } => Ended::Succeeded { output: output.clone() },
        Ending::Failed { error, exit_code } => Ended::Failed { error: error.clone(), exit_code: *exit_code },
        Ending::Cancelled => Ended::Cancelled,
        // A process never waits for an approval; should one say so, it is not taken for a success.
        Ending::AwaitingApproval { .. } => {
            Ended::Failed { error: "a process cannot wait for an approval".into(), exit_code: None }
        }
    };
    serde_json::to_value(ended).expect("endings serialise")
}

pub fn ending_from_json(value: Value) -> Ending {
    match serde_json::from_value::<Ended>(value) {
        Ok(Ended::Succeeded { output }) => Ending::Succeeded { output },
        Ok(Ended::Failed { error, exit_code }) => Ending::Failed { error, exit_code },
        Ok(Ended::Cancelled) => Ending::Cancelled,
        Err(error) => Ending::failed(format!("the engine that ran it sent an ending this one cannot read: {error}")),
    }
}

pub fn stream_code(stream: Stream) -> i16 {
    match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
        Stream::Engine => 0,
    }
}

pub fn stream_of(code: i16) -> Stream {
    match code {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => Stream::Engine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_a_process_can_have_comes_back_as_it_went() {
        for ending in [
            Ending::Succeeded { output: serde_json::json!({"n": 1}) },
            Ending::Failed { error: "exit status 3".into(), exit_code: Some(3) },
            Ending::Cancelled,
        ] {
            assert_eq!(ending_from_json(ending_to_json(&ending)), ending);
        }
        let unreadable = ending_from_json(serde_json::json!({"ended": "exploded"}));
        assert!(
            matches!(unreadable, Ending::Failed { ref error, .. } if error.contains("cannot read")),
            "{unreadable:?}"
        );
        for stream in [Stream::Stdout, Stream::Stderr, Stream::Engine] {
            assert_eq!(stream_of(stream_code(stream)), stream);
        }
    }
}
