//! `conveyor gates` and `conveyor approve|reject RUN [TASK] --item ID --comment TEXT`, through the real binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const REGISTRY: &str = r#"
[layers.Gate]
items = "applications"
rules = [ { name = "eligible", expr = "item.score >= 0.7" } ]
approval = "item.amount > 100000"
show = ["id", "applicant", "amount"]
approval_timeout = "24h"
"#;

const GOVERNED: &str = r#"
id = "Governed"
[[tasks]]
name = "Produce"
run = '''echo '{"applications": [{"id": "A-1", "applicant": "Small", "score": 0.9, "amount": 5000}, {"id": "A-2", "applicant": "Northgate", "score": 0.8, "amount": 250000}, {"id": "A-4", "applicant": "Lakeside", "score": 0.95, "amount": 300000}]}' > "$CONVEYOR_OUTPUT"'''
[[tasks]]
name = "Review"
layer = "Gate"
[[tasks]]
name = "Use"
run = 'cat > "$CONVEYOR_OUTPUT"'
"#;

fn json_of(args: &[&str], dir: &std::path::Path) -> Value {
    let output = run(args, dir);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn gates_lists_what_waits_and_approve_and_reject_answer_one_item_each_with_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "conveyor.toml", REGISTRY);
    write(&dir.path().join("workflows"), "governed.toml", GOVERNED);
    assert_eq!(json_of(&["gates", "--json"], dir.path()), json!([]), "no store yet, nothing waits");
    let pipeline = conveyor()
        .args(["run", "Governed"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let gates = loop {
        if dir.path().join(".conveyor/conveyor.db").exists() {
            let gates = json_of(&["gates", "--json"], dir.path());
            if gates.as_array().is_some_and(|gates| !gates.is_empty()) {
                break gates;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the run reached the gate");
        std::thread::sleep(Duration::from_millis(50));
    };
    let gate = &gates[0];
    let run_id = gate["run"].as_str().unwrap().to_string();
    assert_eq!((&gate["workflow"], &gate["task"]), (&json!("Governed"), &json!("Review")));
    assert_eq!(
        gate["items"],
        json!([
            {"id": "A-2", "fields": {"id": "A-2", "applicant": "Northgate", "amount": 250000}},
            {"id": "A-4", "fields": {"id": "A-4", "applicant": "Lakeside", "amount": 300000}},
        ])
    );
    assert_eq!((&gate["rules"], &gate["held_by"]), (&json!(["eligible"]), &json!("item.amount > 100000")));
    let since = chrono::DateTime::parse_from_rfc3339(gate["waiting_since"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(gate["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - since, chrono::Duration::hours(24));
    let table = text(&run(&["gates"], dir.path()).stdout);
    assert!(table.contains("A-4") && table.contains("applicant=Lakeside amount=300000"), "{table}");

    let approved = run(&["approve", &run_id, "--item", "A-2", "--comment", "board said yes"], dir.path());
    assert_eq!(
        text(&approved.stdout),
        format!("approved 1 item(s) (A-2) at task Review of run {run_id}; 1 still held\n"),
        "{}",
        text(&approved.stderr)
    );
    let wrong = run(&["reject", &run_id, "Review", "--item", "A-9"], dir.path());
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(text(&wrong.stderr), "conveyor: no item `A-9` is held at this gate (held: A-4)\n");
    let rejected = run(&["reject", &run_id, "Review", "--item", "A-4", "--comment", "too much"], dir.path());
    assert_eq!(rejected.status.code(), Some(0), "{}", text(&rejected.stderr));
    let output = pipeline.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    let store = conveyor::store::Store::open(&dir.path().join(".conveyor")).unwrap();
    let tasks = store.tasks(&run_id).unwrap();
    let used = tasks.iter().find(|task| task.name == "Use").unwrap().output.clone().unwrap();
    let passed: Vec<&str> =
        used["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(passed, vec!["A-1", "A-2"]);
    assert_eq!(used["governance"]["approved"][0]["comment"], "board said yes");
    assert_eq!(used["governance"]["rejected"][0]["comment"], "too much");
    let audit = store.audit_trail(5).unwrap();
    let user = conveyor::engine::current_user();
    assert!(
        audit.iter().any(|entry| entry.who == user
            && entry.origin == "cli"
            && entry.command.contains(r#""items":["A-4"],"comment":"too much""#)),
        "{audit:?}"
    );
    assert_eq!(json_of(&["gates", "--json"], dir.path()), json!([]), "nothing waits any more");
}
