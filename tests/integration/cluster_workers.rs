//! Attempts claimed by every engine: the leader offers them, each engine's worker claims what its routes
//! serve, and a worker that dies or goes silent loses its claims to the others.

use std::collections::BTreeSet;

use crate::cluster::{Engines, PATIENCE, is_alive};

/// The registry: a service only some engines serve, and a service nobody serves in these tests (what an
/// engine that should claim nothing of the test's work serves).
fn registry(engines: &Engines) -> String {
    let marks = engines.marks().display().to_string();
    format!(
        "[services.Special]\ncommand = [\"sh\", \"-c\", \"echo $PPID >> {marks}/special\"]\n\
         [services.Other]\ncommand = [\"true\"]\n"
    )
}

/// A manual workflow of one inline task: `retries` extra attempts, no delay; the attempt notes its PID and
/// its engine's (`pids`), then the first sleeps long and later ones end at once; each notes its number at its
/// end (`finished`).
fn slow_first(engines: &Engines, retries: u32) -> String {
    let marks = engines.marks().display().to_string();
    format!(
        "id = \"Slow\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Work\"\nretries = {retries}\nretry_delay = \"0s\"\n\
         run = 'echo $$ $PPID >> {marks}/pids; if [ \"$CONVEYOR_ATTEMPT\" = 1 ]; then sleep 60; fi; \
         echo $CONVEYOR_ATTEMPT >> {marks}/finished'\n"
    )
}

fn finished(engines: &Engines) -> String {
    std::fs::read_to_string(engines.marks().join("finished")).unwrap_or_default()
}

/// An attempt's state and error.
fn attempt(engines: &Engines, run: &str, number: i64) -> Option<(String, Option<String>)> {
    let rows = engines.query(
        "SELECT state, error FROM attempts WHERE run_id = $1 AND task = 'Work' AND attempt = $2",
        &[&run, &number],
    );
    rows.first().map(|row| (row.get("state"), row.get("error")))
}

#[test]
fn each_route_runs_only_on_an_engine_that_serves_it_and_an_unknown_route_is_refused() {
    let mut engines = Engines::new();
    engines.workflow("conveyor.toml", &registry(&engines));
    let marks = engines.marks().display().to_string();
    engines.workflow(
        "both.toml",
        &format!(
            "id = \"Both\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Inline\"\nrun = 'echo $PPID >> {marks}/inline'\n\
             [[tasks]]\nname = \"Call\"\nservice = \"Special\"\n"
        ),
    );
    let special = engines.start_with(&["--serves", "Special"]);
    let inline = engines.start_with(&["--serves", "inline"]);
    engines.wait_for_leader();
    let (special_id, inline_id) = (engines.engine_id(special), engines.engine_id(inline));
    let run = engines.trigger("Both");
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));

    let ran_on = |file: &str| engines.marked(file).iter().map(|line| line[0] as u32).collect::<Vec<_>>();
    assert_eq!(ran_on("inline"), [engines.pid(inline)], "{}", engines.logs());
    assert_eq!(ran_on("special"), [engines.pid(special)], "{}", engines.logs());
    let recorded = |task: &str| {
        let rows = engines.query("SELECT engine FROM attempts WHERE run_id = $1 AND task = $2", &[&run, &task]);
        rows.first().and_then(|row| row.get::<_, Option<i64>>("engine"))
    };
    assert_eq!(recorded("Inline"), Some(inline_id));
    assert_eq!(recorded("Call"), Some(special_id));
    let routes = engines.query("SELECT routes FROM engines WHERE id = $1", &[&special_id]);
    assert_eq!(routes[0].get::<_, Vec<String>>("routes"), ["Special"], "the Engines view shows what it serves");
    engines.terminate_all();

    let refused = engines.start_with(&["--serves", "Nowhere"]);
    let deadline = std::time::Instant::now() + PATIENCE;
    while engines.is_running(refused) {
        assert!(std::time::Instant::now() < deadline, "an engine serving an unknown route runs:\n{}", engines.logs());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = engines.log(refused);
    assert!(log.contains("--serves Nowhere: no service or agent of that name is registered"), "{log}");
}

#[test]
fn a_worker_killed_mid_attempt_loses_its_claim_and_the_retry_runs_on_an_engine_started_again() {
    let mut engines = Engines::new();
    engines.workflow("conveyor.toml", &registry(&engines));
    engines.workflow("slow.toml", &slow_first(&engines, 1));
    // The leader serves none of the test's routes, so the task runs on the other engine.
    let leader = engines.start_with(&["--serves", "Other"]);
    engines.wait_for_leader();
    let worker = engines.start();
    let worker_pid = engines.pid(worker);
    let run = engines.trigger("Slow");
    engines.wait_until("the first attempt runs", || engines.marked("pids").len() == 1);
    let first = engines.marked("pids")[0].clone();
    assert_eq!(first[1] as u32, worker_pid, "the worker engine runs it, not the leader\n{}", engines.logs());

    // Its process is known to the database (told with the worker's next check of its claims) before the kill.
    engines.wait_until("the attempt's process is recorded", || {
        !engines.query("SELECT 1 FROM work WHERE pid IS NOT NULL", &[]).is_empty()
    });
    let mark = engines.log_mark(leader);
    engines.kill(worker);
    engines.wait_for_line(leader, mark, "gave up 1 attempt(s) held by engines silent");
    engines.wait_until("the first attempt has failed as lost", || {
        attempt(&engines, &run, 1).is_some_and(|(state, _)| state == "failed")
    });
    let (_, error) = attempt(&engines, &run, 1).unwrap();
    let error = error.unwrap_or_default();
    assert!(error.starts_with("lost: engine") && error.contains("went silent"), "{error}");
    engines.wait_until("the killed worker's task process is stopped", || !is_alive(first[0]));
    // The retry waits: the only engine left does not serve inline tasks, and the attempt's log says so.
    let retry_log = engines.state(leader).join("logs").join(&run).join("Work.2.log");
    engines.wait_until("the retry's log says no engine claimed it", || {
        std::fs::read_to_string(&retry_log).is_ok_and(|log| log.contains("no engine has claimed it for 5s"))
    });
    assert_eq!(engines.marked("pids").len(), 1, "{}", engines.logs());

    engines.restart(worker);
    let again = engines.engine_id(worker);
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));
    assert_eq!(engines.attempts(&run, "Work"), [(1, "failed".to_string()), (2, "succeeded".to_string())]);
    assert_eq!(engines.attempt_engine(&run, "Work", 2), Some(again), "recorded as the restarted engine's");
    assert_eq!(finished(&engines), "2\n", "only the retry ran to its end");
    engines.terminate_all();
}

#[test]
fn a_worker_paused_past_the_rescue_finds_its_claim_lost_once_resumed_and_discards_its_attempt() {
    let mut engines = Engines::new();
    engines.workflow("conveyor.toml", &registry(&engines));
    engines.workflow("slow.toml", &slow_first(&engines, 1));
    let leader = engines.start_with(&["--serves", "Other"]);
    engines.wait_for_leader();
    let workers = [engines.start(), engines.start()];
    for &worker in &workers {
        engines.engine_id(worker);
    }
    let run = engines.trigger("Slow");
    engines.wait_until("the first attempt runs", || engines.marked("pids").len() == 1);
    let first = engines.marked("pids")[0].clone();
    let paused = *workers.iter().find(|&&worker| engines.pid(worker) == first[1] as u32).expect("a worker runs it");
    let other = workers.into_iter().find(|&worker| worker != paused).unwrap();

    let leader_mark = engines.log_mark(leader);
    engines.pause(paused);
    engines.wait_for_line(leader, leader_mark, "gave up 1 attempt(s) held by engines silent");
    engines.wait_until("the retry has succeeded on the other worker", || {
        engines.run_state(&run).as_deref() == Some("succeeded")
    });
    assert_eq!(engines.marked("pids")[1][1] as u32, engines.pid(other), "{}", engines.logs());

    let mark = engines.log_mark(paused);
    engines.resume(paused);
    engines.wait_for_line(paused, mark, "the claim was lost");
    engines.wait_until_within(PATIENCE, "the first attempt's process is gone", || !is_alive(first[0]));
    assert!(engines.is_running(paused), "the resumed engine carries on:\n{}", engines.logs());
    assert_eq!(
        engines.attempts(&run, "Work"),
        [(1, "failed".to_string()), (2, "succeeded".to_string())],
        "the late attempt's result is not recorded\n{}",
        engines.logs()
    );
    assert_eq!(finished(&engines), "2\n", "the first attempt never ran to its end");
    engines.terminate_all();
}

#[test]
fn a_timeout_counts_from_when_an_engine_runs_the_attempt_not_while_it_waits_for_one() {
    let mut engines = Engines::new();
    engines.workflow("conveyor.toml", &registry(&engines));
    let marks = engines.marks().display().to_string();
    engines.workflow(
        "timed.toml",
        &format!(
            "id = \"Timed\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Quick\"\ntimeout = \"2s\"\n\
             run = 'sleep 1; echo done >> {marks}/quick'\n\
             [[tasks]]\nname = \"Slow\"\ntimeout = \"2s\"\ndepends_on = [\"Quick\"]\nrun = 'sleep 30; echo done >> {marks}/slow'\n"
        ),
    );
    // Nobody serves inline tasks at first: the attempt waits, offered, longer than its timeout.
    engines.start_with(&["--serves", "Other"]);
    engines.wait_for_leader();
    let run = engines.trigger("Timed");
    engines.wait_until("the first task is offered", || {
        !engines.query("SELECT 1 FROM work WHERE task = 'Quick' AND state = 'ready'", &[]).is_empty()
    });
    // Nothing to wait on but time: the wait must outlast the timeout.
    std::thread::sleep(std::time::Duration::from_secs(3));
    engines.start();
    engines.wait_until("the run has ended", || engines.run_state(&run).is_some_and(|state| state != "running"));
    let quick = engines.query("SELECT state FROM attempts WHERE run_id = $1 AND task = 'Quick'", &[&run]);
    assert_eq!(quick[0].get::<_, String>("state"), "succeeded", "the wait did not count\n{}", engines.logs());
    let slow = engines.query("SELECT state, error FROM attempts WHERE run_id = $1 AND task = 'Slow'", &[&run]);
    assert_eq!(slow[0].get::<_, String>("state"), "failed");
    assert_eq!(slow[0].get::<_, Option<String>>("error").as_deref(), Some("timed out after 2s"));
    assert!(!engines.marks().join("slow").exists(), "the process that ran too long was stopped");
    engines.terminate_all();
}

#[test]
fn parallel_tasks_spread_over_engines_that_each_have_room_for_one_and_each_is_recorded_as_its_runners() {
    let mut engines = Engines::new();
    let marks = engines.marks().display().to_string();
    // One attempt at a time per engine, and every task holds its place until two run at once: two engines
    // had to claim them.
    engines.workflow("conveyor.toml", "max_parallel_tasks = 1\n");
    let mut wide =
        "id = \"Wide\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Start\"\nrun = 'true'\n".to_string();
    let tasks: Vec<String> = (1..=4).map(|number| format!("T{number}")).collect();
    for task in &tasks {
        wide += &format!(
            "[[tasks]]\nname = \"{task}\"\ndepends_on = [\"Start\"]\nrun = 'echo $PPID {task} >> {marks}/ran; n=0; \
             while [ $(wc -l < {marks}/ran) -lt 2 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done'\n"
        );
    }
    engines.workflow("wide.toml", &wide);
    engines.start_many(2);
    engines.wait_for_leader();
    let ids = [engines.engine_id(0), engines.engine_id(1)];
    let run = engines.trigger("Wide");
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));

    let ran = engines.marked_words("ran");
    assert_eq!(ran.len(), tasks.len(), "each task ran once: {ran:?}");
    let pids = [engines.pid(0), engines.pid(1)];
    let mut runners = BTreeSet::new();
    for line in &ran {
        let (pid, task): (u32, &str) = (line[0].parse().unwrap(), &line[1]);
        let index = pids.iter().position(|engine| *engine == pid);
        let index = index.unwrap_or_else(|| panic!("{task} ran on {pid}, not one of the engines {pids:?}"));
        runners.insert(pid);
        assert_eq!(
            engines.attempt_engine(&run, task, 1),
            Some(ids[index]),
            "{task} is recorded as run by the engine whose process ran it"
        );
    }
    assert_eq!(runners.len(), 2, "both engines ran tasks: {ran:?}\n{}", engines.logs());
    engines.terminate_all();
}
