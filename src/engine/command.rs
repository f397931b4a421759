//! What operators (console, CLI, other shells through the store) ask the engine to do.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Start a run now. `params` may be strings (from a command line): they are converted to the declared types.
    Trigger {
        workflow: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, Value>,
    },
    PauseWorkflow {
        workflow: String,
    },
    ResumeWorkflow {
        workflow: String,
    },
    PauseRun {
        run: String,
    },
    ResumeRun {
        run: String,
    },
    CancelRun {
        run: String,
    },
    RetryTask {
        run: String,
        task: String,
    },
    SkipTask {
        run: String,
        task: String,
    },
    RerouteTask {
        run: String,
        task: String,
        to: String,
    },
    /// An answer at a governance gate. `task` may be empty when one gate waits in the run; `items` (by
    /// `tasks::item_id`) picks held items, empty answers all of them. Both new fields default, so commands
    /// queued by an older version still parse.
    Approve {
        run: String,
        #[serde(default)]
        task: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Reject {
        run: String,
        #[serde(default)]
        task: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    AckAlert {
        id: i64,
    },
    /// Start a run for one past instant of a workflow's schedule, as its schedule would have, recorded with
    /// trigger `backfill`. Declined (not refused) when a run for that instant exists, unless `rerun`, or when
    /// the workflow has `max_active_runs` runs active: a backfill sends the next instant once there is room.
    Backfill {
        workflow: String,
        scheduled_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rerun: bool,
    },
}

impl Command {
    /// Approve (or reject) every item held at a gate, without a comment.
    pub fn answer_all(approve: bool, run: impl Into<String>, task: impl Into<String>) -> Command {
        let (run, task) = (run.into(), task.into());
        match approve {
            true => Command::Approve { run, task, items: Vec::new(), comment: None },
            false => Command::Reject { run, task, items: Vec::new(), comment: None },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("commands serialise")
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub message: String,
    /// The run the command started or acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Why nothing was done, when that is not a fault: a client may act on it (wait, or count a skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined: Option<Declined>,
}

/// A command that was understood and did nothing, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Declined {
    /// The instant already has a run (named in the reply's `run`).
    AlreadyRun,
    /// The workflow has `max_active_runs` runs active: ask again when one ends.
    AtCapacity,
}

impl Reply {
    pub fn new(message: impl Into<String>) -> Reply {
        Reply { message: message.into(), run: None, declined: None }
    }

    pub fn for_run(message: impl Into<String>, run: &str) -> Reply {
        Reply { message: message.into(), run: Some(run.to_string()), declined: None }
    }

    pub fn declined(message: impl Into<String>, why: Declined, run: Option<&str>) -> Reply {
        Reply { message: message.into(), run: run.map(str::to_string), declined: Some(why) }
    }
}

/// A refusal says why, in words an operator can act on ("task Score is not failed").
pub type CommandResult = Result<Reply, String>;

/// Who sent a command and through what, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub who: String,
    pub via: String,
}

impl Origin {
    pub fn local(via: &str) -> Origin {
        Origin { who: current_user(), via: via.to_string() }
    }
}

/// The operating-system user running this process.
pub fn current_user() -> String {
    for variable in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(variable)
            && !name.is_empty()
        {
            return name;
        }
    }
    // SAFETY: getuid cannot fail; getpwuid's answer is read before any other call could overwrite it.
    unsafe {
        let uid = libc::getuid();
        let entry = libc::getpwuid(uid);
        if !entry.is_null() && !(*entry).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*entry).pw_name).to_string_lossy().into_owned();
        }
        format!("uid {uid}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_travel_as_tagged_json() {
        let command = Command::RetryTask { run: "r1".into(), task: "Score".into() };
        assert_eq!(command.to_json(), r#"{"command":"retry_task","run":"r1","task":"Score"}"#);
        let back: Command = serde_json::from_str(&command.to_json()).unwrap();
        assert_eq!(back, command);
        let trigger: Command =
            serde_json::from_value(json!({"command": "trigger", "workflow": "W", "params": {"n": "3"}})).unwrap();
        assert_eq!(
            trigger,
            Command::Trigger { workflow: "W".into(), input: None, params: BTreeMap::from([("n".into(), json!("3"))]) }
        );
    }

    #[test]
    fn an_answer_queued_by_an_older_version_still_parses_and_a_new_one_carries_items_and_comment() {
        let old: Command = serde_json::from_str(r#"{"command":"approve","run":"r1","task":"Review"}"#).unwrap();
        assert_eq!(old, Command::answer_all(true, "r1", "Review"));
        assert_eq!(old.to_json(), r#"{"command":"approve","run":"r1","task":"Review"}"#);
        let new = Command::Reject {
            run: "r1".into(),
            task: "".into(),
            items: vec!["A-2".into()],
            comment: Some("no".into()),
        };
        assert_eq!(new.to_json(), r#"{"command":"reject","run":"r1","task":"","items":["A-2"],"comment":"no"}"#);
        assert_eq!(serde_json::from_str::<Command>(&new.to_json()).unwrap(), new);
    }

    #[test]
    fn a_backfill_instant_travels_as_utc_and_a_declined_reply_says_why() {
        let at = DateTime::parse_from_rfc3339("2026-03-08T02:00:00-05:00").unwrap().with_timezone(&Utc);
        let command = Command::Backfill { workflow: "W".into(), scheduled_at: at, rerun: false };
        assert_eq!(command.to_json(), r#"{"command":"backfill","workflow":"W","scheduled_at":"2026-03-08T07:00:00Z"}"#);
        assert_eq!(serde_json::from_str::<Command>(&command.to_json()).unwrap(), command);
        let reply = Reply::declined("already ran", Declined::AlreadyRun, Some("r1"));
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"message":"already ran","run":"r1","declined":"already_run"}"#);
        let older: Reply = serde_json::from_str(r#"{"message":"started","run":"r2"}"#).unwrap();
        assert_eq!(older, Reply::for_run("started", "r2"));
    }
}
