//! The bundled grant pipeline does no work twice: each application is taken by one run, awarded at most once,
//! whatever the reruns, retries and crashes, and `grants/reset.sh` brings the demo back.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use conveyor::state::RunState;
use conveyor::store::Store;

use crate::common::*;
use crate::engine_harness::wait_until;

/// A copy of the bundled workflows in a fresh folder, reset to the demo's first state (the checkout's own
/// inbox may have been worked through). With `hold_nothing`, no application waits at the gate (the approval
/// threshold is raised), so a run goes through without an operator.
pub fn grants_folder(hold_nothing: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .args(["-r", bundled_workflows().to_str().unwrap(), dir.path().join("workflows").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let reset = script(dir.path(), "reset.sh", &[], &[], "");
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset.stderr));
    if hold_nothing {
        let registry = dir.path().join("workflows/conveyor.toml");
        let text = std::fs::read_to_string(&registry).unwrap();
        assert!(text.contains("approval = \"item.amount > 100000\""), "{text}");
        std::fs::write(&registry, text.replace("item.amount > 100000", "item.amount > 100000000")).unwrap();
    }
    dir
}

fn grants(dir: &Path) -> PathBuf {
    dir.join("workflows/grants")
}

/// Runs one of the grant scripts as the engine would (from the workflows folder, input on stdin).
fn script(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut child = std::process::Command::new("sh")
        .arg(format!("grants/{name}"))
        .args(args)
        .env_remove("CONVEYOR_OUTPUT")
        .env_remove("GRANTS_FAILPOINT")
        .envs(env.iter().copied())
        .current_dir(dir.join("workflows"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `Ingest` as `run` would: its output (the applications it took) and its log.
fn ingest(dir: &Path, run: &str) -> (String, String) {
    let output_file = dir.join("ingest.output.json");
    let output_path = output_file.to_str().unwrap();
    let ingested = script(dir, "ingest.sh", &[], &[("CONVEYOR_RUN_ID", run), ("CONVEYOR_OUTPUT", output_path)], "{}");
    assert_eq!(ingested.status.code(), Some(0), "{}", text(&ingested.stderr));
    (std::fs::read_to_string(&output_file).unwrap(), text(&ingested.stdout))
}

fn run_pipeline(dir: &Path) -> String {
    let output = run(&["run", "DailyGrantPipeline"], dir);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    stdout
}

/// The application ids in `out/awards.jsonl`, in order, duplicates kept.
fn awarded(dir: &Path) -> Vec<String> {
    let awards = std::fs::read_to_string(grants(dir).join("out/awards.jsonl")).unwrap_or_default();
    awards
        .lines()
        .map(|line| {
            let award: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(award["id"], award["award"]["id"], "{line}");
            award["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The file names in a folder, sorted; none when it does not exist.
fn names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn ledger_states(dir: &Path, id: &str) -> Vec<String> {
    let ledger = std::fs::read_to_string(grants(dir).join("out/ledger.jsonl")).unwrap_or_default();
    ledger
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["id"] == id)
        .map(|entry| entry["state"].as_str().unwrap().to_string())
        .collect()
}

/// Whether `out/.lock` is there (a symlink to its holder's PID, dangling once the holder is gone).
fn locked(dir: &Path) -> bool {
    std::fs::symlink_metadata(grants(dir).join("out/.lock")).is_ok()
}

const DEMO: [&str; 4] = ["A-1001.json", "A-1002.json", "A-1003.json", "A-1004.json"];

#[test]
fn running_the_bundled_pipeline_twice_awards_each_application_once_with_one_letter_each() {
    let dir = grants_folder(true);
    let first = run_pipeline(dir.path());
    assert!(first.contains("ingest: took 4 application(s)"), "{first}");
    assert!(first.contains("award: A-1003 was not approved: filed as rejected"), "{first}");
    let second = run_pipeline(dir.path());
    assert!(second.contains("ingest: nothing new in grants/applications"), "{second}");
    assert!(second.contains("notify: 0 notice(s) sent"), "{second}");

    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"], "A-1003 scores 0.35: the rule drops it");
    assert_eq!(names(&grants(dir.path()).join("out/letters")), ["A-1001.txt", "A-1002.txt", "A-1004.txt"]);
    let letter = std::fs::read_to_string(grants(dir.path()).join("out/letters/A-1002.txt")).unwrap();
    assert!(
        letter.starts_with("Award letter A-1002\n\nTo: Northgate Job Training\nAmount awarded: 150000\n"),
        "{letter}"
    );
    assert!(names(&grants(dir.path()).join("applications")).is_empty(), "the inbox is worked through");
    assert_eq!(names(&grants(dir.path()).join("processed")), DEMO);
    assert_eq!(ledger_states(dir.path(), "A-1003"), ["claimed", "rejected"]);
    let notices = std::fs::read_to_string(grants(dir.path()).join("out/notices.log")).unwrap();
    assert_eq!(notices.lines().count(), 3, "{notices}");
}

#[test]
fn the_award_step_given_the_same_input_again_awards_nothing_twice() {
    let dir = grants_folder(false);
    let (input, _) = ingest(dir.path(), "run-1");
    // At least once per attempt: the same attempt's input delivered twice, and a retry of it.
    for attempt in ["1", "1", "2"] {
        let env = [("CONVEYOR_RUN_ID", "run-1"), ("CONVEYOR_ATTEMPT", attempt)];
        let award = script(dir.path(), "award.sh", &[], &env, &input);
        assert_eq!(award.status.code(), Some(0), "{}", text(&award.stderr));
    }
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1003", "A-1004"]);
    assert_eq!(
        names(&grants(dir.path()).join("out/letters")),
        ["A-1001.txt", "A-1002.txt", "A-1003.txt", "A-1004.txt"]
    );
    assert_eq!(names(&grants(dir.path()).join("processed")), DEMO);
    let again = script(dir.path(), "award.sh", &[], &[("CONVEYOR_RUN_ID", "run-2")], &input);
    assert!(text(&again.stdout).contains("award: A-1001 was awarded by run run-1 already: not again"));
    assert_eq!(awarded(dir.path()).len(), 4, "another run with the same applications awards nothing");
}

#[test]
fn award_steps_running_at_the_same_time_award_each_application_once() {
    let dir = grants_folder(false);
    let (input, _) = ingest(dir.path(), "run-1");
    let awards: Vec<_> = (0..4)
        .map(|attempt| {
            let input = input.clone();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let attempt = attempt.to_string();
                script(&root, "award.sh", &[], &[("CONVEYOR_RUN_ID", "run-1"), ("CONVEYOR_ATTEMPT", &attempt)], &input)
            })
        })
        .collect();
    for award in awards {
        let output = award.join().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1003", "A-1004"]);
    assert!(!locked(dir.path()));
}

#[test]
fn an_application_held_by_a_run_is_not_taken_by_another_until_that_run_releases_it() {
    let dir = grants_folder(false);
    let ingest = |run: &str| {
        let (output, log) = ingest(dir.path(), run);
        (output.matches("\"id\"").count(), log)
    };
    assert_eq!(ingest("run-1").0, 4);
    let (taken, log) = ingest("run-2");
    assert_eq!(taken, 0, "run-1 holds them all");
    assert!(log.contains("ingest: A-1001 is held by run run-1, which took it first"), "{log}");
    assert_eq!(ingest("run-1").0, 4, "a retry of run-1's Ingest takes its own claims again");

    let released = script(dir.path(), "release.sh", &["run-1"], &[], "");
    assert!(text(&released.stdout).ends_with("release: 4 application(s) released by run run-1\n"));
    assert_eq!(ingest("run-3").0, 4);
    assert_eq!(ledger_states(dir.path(), "A-1002"), ["claimed", "released", "claimed"]);
    let refused = script(dir.path(), "release.sh", &[], &[], "");
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(text(&refused.stderr), "release: expected a run id: sh grants/release.sh RUN\n");
}

#[test]
fn a_run_that_fails_after_awarding_gives_back_the_rest_and_the_next_run_awards_nothing_twice() {
    let dir = grants_folder(true);
    let failed = conveyor()
        .args(["run", "DailyGrantPipeline"])
        .env("GRANTS_FAILPOINT", "award.fail")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = text(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("  Release │ release: A-1003 is free for the next run\n"), "{stdout}");
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"]);
    assert_eq!(names(&grants(dir.path()).join("applications")), DEMO, "nothing filed away yet");

    let next = run_pipeline(dir.path());
    assert!(next.contains("ingest: A-1001 was awarded by run "), "{next}");
    assert!(next.contains("ingest: took 1 application(s)"), "only A-1003, which the failed run released: {next}");
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"]);
    assert_eq!(names(&grants(dir.path()).join("out/letters")), ["A-1001.txt", "A-1002.txt", "A-1004.txt"]);
    assert_eq!(names(&grants(dir.path()).join("processed")), DEMO);
    assert_eq!(ledger_states(dir.path(), "A-1003"), ["claimed", "released", "claimed", "rejected"]);
    let notices = std::fs::read_to_string(grants(dir.path()).join("out/notices.log")).unwrap();
    assert_eq!(notices.lines().count(), 3, "the next run's Notify sends what the failed run's did not: {notices}");
}

#[test]
fn an_engine_killed_between_the_award_and_the_move_resumes_the_run_without_awarding_twice() {
    let dir = grants_folder(true);
    let mut engine: Child = conveyor()
        .args(["run", "DailyGrantPipeline"])
        .env("GRANTS_FAILPOINT", "award.hang")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let failpoint = grants(dir.path()).join("out/.failpoint");
    wait_until("Award has recorded the awards and stopped", || failpoint.exists());
    engine.kill().unwrap();
    engine.wait().unwrap();
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"]);
    let store = Store::open(&dir.path().join(".conveyor")).unwrap();
    let run = store.runs(Some("DailyGrantPipeline"), 1).unwrap().remove(0);

    // The next engine stops what the dead one left running (Award still holds the lock) and carries the run on.
    let mut daemon =
        conveyor().arg("daemon").current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until("the resumed run has succeeded", || {
        store.run(&run.id).unwrap().is_some_and(|run| run.state == RunState::Succeeded)
    });
    let stopped = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert_eq!(daemon.wait().unwrap().code(), Some(0));

    assert_eq!(store.attempts(&run.id, Some("Award")).unwrap().len(), 2, "Award ran again after the crash");
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"]);
    assert_eq!(names(&grants(dir.path()).join("out/letters")), ["A-1001.txt", "A-1002.txt", "A-1004.txt"]);
    assert_eq!(names(&grants(dir.path()).join("processed")), DEMO);
    assert!(!locked(dir.path()), "the dead attempt's lock was taken over and let go");
}

#[test]
fn reset_brings_back_the_demo_inbox_and_clears_every_record() {
    let dir = grants_folder(true);
    let before: Vec<Vec<u8>> =
        DEMO.iter().map(|name| std::fs::read(grants(dir.path()).join("applications").join(name)).unwrap()).collect();
    run_pipeline(dir.path());
    assert!(names(&grants(dir.path()).join("applications")).is_empty());

    let reset = script(dir.path(), "reset.sh", &[], &[], "");
    assert_eq!(
        text(&reset.stdout),
        "reset: 4 application(s) in grants/applications, grants/out removed\n",
        "{}",
        text(&reset.stderr)
    );
    let after: Vec<Vec<u8>> =
        DEMO.iter().map(|name| std::fs::read(grants(dir.path()).join("applications").join(name)).unwrap()).collect();
    assert_eq!(before, after);
    assert!(!grants(dir.path()).join("out").exists());
    assert!(!grants(dir.path()).join("processed").exists());
    let again = run_pipeline(dir.path());
    assert!(again.contains("ingest: took 4 application(s)"), "{again}");
}

#[test]
fn a_lock_left_by_a_process_that_died_is_taken_over() {
    let dir = grants_folder(false);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::create_dir_all(grants(dir.path()).join("out")).unwrap();
    std::os::unix::fs::symlink(gone.id().to_string(), grants(dir.path()).join("out/.lock")).unwrap();
    let ingested = script(dir.path(), "ingest.sh", &[], &[("CONVEYOR_RUN_ID", "run-1")], "{}");
    assert_eq!(ingested.status.code(), Some(0));
    assert!(text(&ingested.stderr).contains(&format!("grants: taking over grants/out/.lock from PID {}", gone.id())));
    assert!(!locked(dir.path()));
}

#[test]
fn what_an_operator_rejects_at_the_gate_is_filed_as_rejected_and_never_taken_again() {
    let dir = grants_folder(false);
    let pipeline = conveyor()
        .args(["run", "DailyGrantPipeline"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the run waits at the gate", || {
        dir.path().join(".conveyor/conveyor.db").exists()
            && Store::open(&dir.path().join(".conveyor"))
                .unwrap()
                .runs(Some("DailyGrantPipeline"), 1)
                .unwrap()
                .first()
                .is_some_and(|run| run.state == RunState::WaitingApproval)
    });
    let store = Store::open(&dir.path().join(".conveyor")).unwrap();
    let run_id = store.runs(Some("DailyGrantPipeline"), 1).unwrap().remove(0).id;
    let rejected = run(&["reject", &run_id, "Review"], dir.path());
    assert_eq!(rejected.status.code(), Some(0), "{}", text(&rejected.stderr));
    let output = pipeline.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("award: A-1004 was not approved: filed as rejected"), "{stdout}");

    assert_eq!(awarded(dir.path()), ["A-1001"], "A-1002 and A-1004 waited at the gate and were rejected");
    assert_eq!(names(&grants(dir.path()).join("out/letters")), ["A-1001.txt"]);
    assert_eq!(ledger_states(dir.path(), "A-1002"), ["claimed", "rejected"]);
    assert_eq!(names(&grants(dir.path()).join("processed")), DEMO);
    let again = run_pipeline(dir.path());
    assert!(again.contains("ingest: nothing new in grants/applications"), "{again}");
    assert_eq!(awarded(dir.path()), ["A-1001"]);
}

/// The `[agents.EligibilityAgent]` block the README gives for a local model, pointed at `url`.
fn readme_local_model_agent(url: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find(
            "[agents.EligibilityAgent]\ndescription = \"Scores each application's eligibility from 0 to 1, by a local",
        )
        .expect("the README shows how to point EligibilityAgent at a local model");
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(block.contains("url = \"http://127.0.0.1:11434/v1\""), "{block}");
    block.replace("http://127.0.0.1:11434/v1", url)
}

#[test]
fn the_readmes_local_model_setup_scores_the_bundled_applications_with_the_bundled_prompt() {
    let server = crate::llm::FakeLlm::start(|_, body| {
        let item: serde_json::Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
        let score = if item["id"] == "A-1003" { 0.2 } else { 0.8 };
        crate::llm::reply_with(&serde_json::json!({"score": score, "reason": "a model's reason"}).to_string())
    });
    let dir = grants_folder(true);
    let registry = dir.path().join("workflows/conveyor.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let bundled = "[agents.EligibilityAgent]\ndescription = \"Scores each application's eligibility from 0 to 1\"\ncommand = [\"sh\", \"grants/score.sh\"]\n";
    assert!(text.contains(bundled), "{text}");
    std::fs::write(&registry, text.replace(bundled, &readme_local_model_agent(&server.url))).unwrap();

    let stdout = run_pipeline(dir.path());
    assert!(stdout.contains("award: A-1003 was not approved"), "{stdout}");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one question per application");
    let prompt = std::fs::read_to_string(grants(dir.path()).join("eligibility.prompt")).unwrap();
    assert_eq!(seen[0].body["messages"][0]["content"].as_str().unwrap().trim(), prompt.trim());
    assert_eq!(seen[0].body["model"], "llama3.2");
    assert_eq!(awarded(dir.path()), ["A-1001", "A-1002", "A-1004"]);
    let awards = std::fs::read_to_string(grants(dir.path()).join("out/awards.jsonl")).unwrap();
    assert!(awards.contains("\"reason\":\"a model's reason\""), "{awards}");
}

#[test]
fn an_application_without_a_usable_id_or_with_another_ones_id_is_skipped_and_said_so() {
    let dir = grants_folder(false);
    let inbox = grants(dir.path()).join("applications");
    write(&inbox, "no-id.json", "{\"applicant\": \"Nobody\", \"amount\": 5}\n");
    write(&inbox, "odd-id.json", "{\"id\": \"../../etc/passwd\", \"amount\": 5}\n");
    write(&inbox, "A-1001-again.json", &std::fs::read_to_string(inbox.join("A-1001.json")).unwrap());
    let output_file = dir.path().join("out.json");
    let env = [("CONVEYOR_RUN_ID", "run-1"), ("CONVEYOR_OUTPUT", output_file.to_str().unwrap())];
    let ingested = script(dir.path(), "ingest.sh", &[], &env, "{}");
    assert_eq!(ingested.status.code(), Some(0), "{}", text(&ingested.stderr));
    let log = text(&ingested.stderr);
    assert!(
        log.contains("ingest: skipped no-id.json: expected an \"id\" of letters, digits, '.', '_' or '-', found \"\""),
        "{log}"
    );
    assert!(log.contains("ingest: skipped odd-id.json: expected an \"id\""), "{log}");
    assert!(log.contains("ingest: skipped A-1001.json: another file has the id A-1001"), "{log}");
    let output: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&output_file).unwrap()).unwrap();
    let ids: Vec<&str> = output["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A-1001", "A-1002", "A-1003", "A-1004"]);
}
