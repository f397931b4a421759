//! Secrets: `env` references read when an attempt starts, masked as `***` in everything the engine keeps or
//! says — the state folder byte for byte, events, `history --json` and `conveyor logs`.

use std::path::Path;

use conveyor::engine::Event;
use conveyor::state::RunState;
use serde_json::json;

use crate::engine_harness::*;
use crate::llm::{FakeLlm, reply_with};

/// Set in the engine's environment, reached through `[env]` and an agent's `env`.
const TOKEN: &str = "tok-4f9c2e71-from-env";
/// In a file beside the workflows, reached through a service's `env`.
const FILE_SECRET: &str = "file-secret-8d31b0aa";

fn registry(url: &str) -> String {
    format!(
        r#"
[env]
TOKEN = "${{env:CONVEYOR_SECRETS_IT_TOKEN}}"

[services.Leaky]
command = ["sh", "-c", "echo \"service sees $FILE_TOKEN\"; echo \"{{\\\"file\\\": \\\"$FILE_TOKEN\\\"}}\" > \"$CONVEYOR_OUTPUT\""]
env = {{ FILE_TOKEN = "${{file:secret.txt}}" }}

[agents.Echoer]
env = {{ LLM_KEY = "${{env:CONVEYOR_SECRETS_IT_TOKEN}}" }}
llm = {{ url = "{url}", model = "tiny", api_key_env = "LLM_KEY", prompt = "Say something." }}
"#
    )
}

const WORKFLOW: &str = r#"
id = "Leaks"
[[tasks]]
name = "Print"
run = '''echo "length ${#TOKEN}"; echo "stdout $TOKEN"; echo "stderr $TOKEN" >&2; printf '{"token": "%s", "nested": ["%s!"]}' "$TOKEN" "$TOKEN" > "$CONVEYOR_OUTPUT"'''
[[tasks]]
name = "File"
service = "Leaky"
action = "leak"
[[tasks]]
name = "Ask"
agent = "Echoer"
"#;

/// Every file under `dir`, as bytes, with its path.
fn every_file(dir: &Path, found: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_file(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_printing_its_secrets_leaves_them_nowhere_in_the_state_folder_events_history_or_logs() {
    // The language model "echoes" the key in a reply that is not JSON: the task's error quotes it.
    let server = FakeLlm::start(|_, _| reply_with(&format!("no JSON here, but your key is {TOKEN}")));
    // SAFETY: this test's own variable, set before its engine starts and read by nothing else.
    unsafe { std::env::set_var("CONVEYOR_SECRETS_IT_TOKEN", TOKEN) };
    let mut h =
        Setup::new(WORKFLOW).registry(&registry(&server.url)).file("secret.txt", &format!("{FILE_SECRET}\n")).start();
    let run = h.trigger("Leaks").await;
    let mut seen = Vec::new();
    h.until(|event| {
        seen.push(serde_json::to_string(event).unwrap());
        match event {
            Event::Run(record) if record.id == run && record.state.is_finished() => Some(()),
            _ => None,
        }
    })
    .await;
    // The alert for the failed task comes after the run's ending is stored; its record is checked below.

    // The secrets did reach the task and the model, unmasked.
    let log = h.log(&run, "Print", 1);
    assert!(log.contains(&format!("length {}\n", TOKEN.len())), "{log}");
    assert_eq!(server.requests()[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    // And what they printed is masked.
    assert!(log.contains("stdout ***\n") && log.contains("stderr ***\n"), "{log}");
    assert!(h.log(&run, "File", 1).contains("service sees ***\n"));
    assert_eq!(h.task(&run, "Print").output, Some(json!({"token": "***", "nested": ["***!"]})));
    assert_eq!(h.task(&run, "File").output, Some(json!({"file": "***"})));
    let ask = h.task(&run, "Ask");
    let error = ask.error.unwrap();
    assert!(error.contains("the reply is not JSON") && error.contains("your key is ***"), "{error}");
    let run_record = h.store().run(&run).unwrap().unwrap();
    assert_eq!(run_record.state, RunState::Failed);

    for line in &seen {
        assert!(!line.contains(TOKEN) && !line.contains(FILE_SECRET), "an event shows a secret: {line}");
    }
    let history = crate::common::conveyor().args(["history", "--json", "--state"]).arg(h.state()).output().unwrap();
    let logs = crate::common::conveyor().args(["logs", &run, "--state"]).arg(h.state()).output().unwrap();
    let logs_text = crate::common::text(&logs.stdout);
    assert!(logs_text.contains("stdout ***"), "{logs_text}{}", crate::common::text(&logs.stderr));
    for (what, bytes) in [("history --json", &history.stdout), ("conveyor logs", &logs.stdout)] {
        assert!(!contains(bytes, TOKEN) && !contains(bytes, FILE_SECRET), "{what} shows a secret");
    }
    let alerts = h.store().alerts(100).unwrap();
    assert!(alerts.iter().any(|alert| alert.message.contains("your key is ***")), "{alerts:?}");

    h.engine.shutdown().await;
    let mut files = Vec::new();
    every_file(&h.state(), &mut files);
    assert!(files.iter().any(|(path, _)| path.extension().is_some_and(|e| e == "log")), "the logs are there");
    for (path, bytes) in &files {
        assert!(!contains(bytes, TOKEN), "{} holds the environment's secret", path.display());
        assert!(!contains(bytes, FILE_SECRET), "{} holds the file's secret", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_secret_is_said_not_masked_an_unset_one_fails_its_attempt_and_the_registry_env_is_under_the_tasks() {
    let workflow = r#"
id = "Unset"
[[tasks]]
name = "Layers"
run = 'echo "mode $MODE level $LEVEL"'
env = { LEVEL = "task" }
[[tasks]]
name = "Short"
run = 'echo "pin $PIN"'
env = { PIN = "${file:pin}" }
[[tasks]]
name = "Needs"
run = 'echo never'
env = { KEY = "${env:CONVEYOR_SECRETS_IT_NEVER_SET}" }
"#;
    let mut h = Setup::new(workflow)
        .registry("[env]\nMODE = \"registry\"\nLEVEL = \"registry\"\n")
        .file("pin", "123\n")
        .start();
    let run = h.trigger("Unset").await;
    h.run_reaches(&run, RunState::Failed).await;
    assert!(h.log(&run, "Layers", 1).contains("mode registry level task\n"), "the task's env wins over [env]");
    let short = h.log(&run, "Short", 1);
    assert!(
        short.contains("[conveyor] env PIN = \"${file:pin}\" is shorter than 4 characters: it is not masked in logs\n")
            && short.contains("pin 123\n"),
        "{short}"
    );
    let error = h.task(&run, "Needs").error.unwrap();
    assert_eq!(
        error,
        "env KEY = \"${env:CONVEYOR_SECRETS_IT_NEVER_SET}\": the engine's environment variable CONVEYOR_SECRETS_IT_NEVER_SET is not set: set it where the engine runs"
    );
    assert!(h.log(&run, "Needs", 1).contains(&error), "the reason is in the attempt's log too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_of_a_timed_out_attempt_does_not_stay_in_the_state_folder_while_its_task_waits_to_retry() {
    const SECRET: &str = "timed-out-secret-52c7";
    let workflow = r#"
id = "Slow"
[[tasks]]
name = "Hang"
run = '''printf '{"token": "%s"}' "$TOKEN" > "$CONVEYOR_OUTPUT"; echo written; sleep 30'''
env = { TOKEN = "${file:token}" }
timeout = "300ms"
retries = 1
retry_delay = "1h"
"#;
    let mut h = Setup::new(workflow).file("token", SECRET).start();
    let run = h.trigger("Slow").await;
    h.task_reaches(&run, "Hang", conveyor::state::TaskState::RetryWait).await;
    assert!(h.log(&run, "Hang", 1).contains("written\n"), "the task wrote its output before it was stopped");
    let mut files = Vec::new();
    every_file(&h.state(), &mut files);
    for (path, bytes) in &files {
        assert!(!contains(bytes, SECRET), "{} holds the secret", path.display());
    }
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_agents_key_from_the_engines_environment_is_masked_where_a_reply_quotes_it() {
    const KEY: &str = "sk-engine-env-key-0b5e";
    let server = FakeLlm::start(|_, _| reply_with(&format!("I cannot answer; you sent {KEY}")));
    // SAFETY: this test's own variable, set before its engine starts and read by nothing else.
    unsafe { std::env::set_var("CONVEYOR_SECRETS_IT_LLM_KEY", KEY) };
    let registry = format!(
        "[agents.Model]\nllm = {{ url = \"{}\", model = \"tiny\", api_key_env = \"CONVEYOR_SECRETS_IT_LLM_KEY\", prompt = \"Answer.\" }}\n",
        server.url
    );
    let mut h = Setup::new("id = \"Ask\"\n[[tasks]]\nname = \"Ask\"\nagent = \"Model\"\n").registry(&registry).start();
    let run = h.trigger("Ask").await;
    h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(server.requests()[0].authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let error = h.task(&run, "Ask").error.unwrap();
    assert!(error.contains("you sent ***"), "{error}");
    let log = h.log(&run, "Ask", 1);
    assert!(log.contains("you sent ***") && !log.contains(KEY), "{log}");
}
