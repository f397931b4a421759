use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::*;
use crate::engine::Event;
use crate::state::{AttemptState, RunState, TaskState};
use crate::store::{AlertRecord, AttemptRecord, FireRecord, RunRecord, TaskRecord};

const WORKFLOW: &str = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = 'true'\n[[tasks]]\nname = \"Gate\"\nrun = 'true'\n";

fn run(id: &str, workflow: &str, state: RunState, started: DateTime<Utc>) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        state,
        trigger: "manual".into(),
        input: json!({}),
        params: json!({}),
        definition_file: "w.toml".into(),
        definition: WORKFLOW.into(),
        created_at: started,
        started_at: Some(started),
        finished_at: state.is_finished().then_some(started),
        error: None,
    }
}

fn attempt(run_id: &str, task: &str, state: AttemptState, seconds: i64) -> AttemptRecord {
    let started_at = Utc::now();
    AttemptRecord {
        state,
        finished_at: (state != AttemptState::Running).then(|| started_at + Duration::seconds(seconds)),
        ..AttemptRecord::started(run_id, task, 1, "inline", started_at, "a.log".into())
    }
}

struct Served {
    _dir: tempfile::TempDir,
    /// Serves until the test drops it.
    _runtime: tokio::runtime::Runtime,
    address: SocketAddr,
}

impl Served {
    fn get(&self, path: &str) -> (u16, String, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&format!("http://{}{path}", self.address)).call().expect("the server answers");
        let content_type =
            response.headers().get("content-type").map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
        (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap())
    }
}

/// A store holding a gate that has waited two hours, an active run, a queued fire and an alert; events of
/// a run that failed; the page served over HTTP.
fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("w.toml"), WORKFLOW).unwrap();
    std::fs::write(workflows.join("broken.toml"), "id = \"B\"\n[[tasks]]\n").unwrap();
    let catalog = crate::definition::load_folder(&workflows);
    let store = Store::open(&state).unwrap();
    let two_hours_ago = Utc::now() - Duration::hours(2);
    let waiting = run("20261126-100000-aaaa", "W", RunState::WaitingApproval, two_hours_ago);
    let mut gate = TaskRecord::pending(&waiting.id, "Gate", 1);
    gate.state = TaskState::WaitingApproval;
    gate.started_at = Some(two_hours_ago);
    gate.output = Some(json!({"waiting_since": crate::store::timestamp(two_hours_ago)}));
    store.insert_run(&waiting, &[TaskRecord::pending(&waiting.id, "A", 0), gate]).unwrap();
    let queued = FireRecord {
        workflow: "W".into(),
        scheduled_at: Utc::now(),
        fired_at: Utc::now(),
        outcome: "queued".into(),
        run_id: None,
        queued: true,
    };
    store.record_fire(&queued, 10).unwrap();
    let alert = AlertRecord {
        id: 0,
        at: Utc::now(),
        severity: "error".into(),
        workflow: Some("W".into()),
        run_id: None,
        task: None,
        message: "m".into(),
        acked_at: None,
    };
    store.add_alert(&alert).unwrap();

    let metrics = Metrics::new(&catalog);
    let mut view = metrics.view(&workflows).with_store(store);
    let failed = "20261126-110000-bbbb";
    view.apply(&Event::Run(run(failed, "W", RunState::Running, Utc::now())));
    view.apply(&Event::Attempt(attempt(failed, "A", AttemptState::Running, 0)));
    let ended = attempt(failed, "A", AttemptState::Failed, 2);
    view.apply(&Event::Attempt(ended.clone()));
    view.apply(&Event::Attempt(ended));
    view.apply(&Event::Run(run(failed, "W", RunState::Failed, Utc::now())));
    view.apply(&Event::Run(run(failed, "W", RunState::Failed, Utc::now())));
    view.apply(&Event::Run(run("20261126-120000-cccc", "Gone", RunState::Running, Utc::now())));
    view.apply(&Event::Run(run("20261126-090000-dddd", "W", RunState::Running, Utc::now() - Duration::days(1))));
    let late = FireRecord {
        scheduled_at: Utc::now() - Duration::seconds(90),
        outcome: "started".into(),
        queued: false,
        ..queued
    };
    view.apply(&Event::Fire(late.clone()));
    view.apply(&Event::Fire(FireRecord { outcome: "started from the queue".into(), ..late }));
    metrics.commit_timer()(std::time::Duration::from_millis(3));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = bind(crate::listen::parse_listen("0").unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    {
        let _entered = runtime.enter();
        http::spawn(listener, metrics.scrape(&state, &crate::store::StoreLocation::StateFolder));
    }
    Served { _dir: dir, _runtime: runtime, address }
}

#[test]
fn a_scrape_counts_each_end_once_under_labels_from_definitions() {
    let served = served();
    assert!(served.address.ip().is_loopback());
    let (status, content_type, page) = served.get("/metrics");
    assert_eq!(status, 200, "{page}");
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(page.ends_with("# EOF\n"), "{page}");
    let expected = [
        "conveyor_runs_started_total{workflow=\"W\"} 1",
        "conveyor_runs_started_total{workflow=\"other\"} 1",
        "conveyor_runs_finished_total{workflow=\"W\",state=\"failed\"} 1",
        "conveyor_runs_finished_total{workflow=\"W\",state=\"cancelled\"} 0",
        "conveyor_task_attempts_total{workflow=\"W\",task=\"A\",state=\"failed\"} 1",
        "conveyor_task_duration_seconds_count{workflow=\"W\",task=\"A\"} 1",
        "conveyor_task_duration_seconds_sum{workflow=\"W\",task=\"A\"} 2.0",
        "conveyor_task_duration_seconds_bucket{le=\"1.0\",workflow=\"W\",task=\"A\"} 0",
        "conveyor_task_duration_seconds_bucket{le=\"5.0\",workflow=\"W\",task=\"A\"} 1",
        "conveyor_fire_lateness_seconds_count{workflow=\"W\"} 1",
        "conveyor_fire_lateness_seconds_bucket{le=\"60.0\",workflow=\"W\"} 0",
        "conveyor_fire_lateness_seconds_bucket{le=\"300.0\",workflow=\"W\"} 1",
        "conveyor_store_commit_duration_seconds_count 1",
        "conveyor_active_runs{workflow=\"W\"} 1",
        "conveyor_queued_fires{workflow=\"W\"} 1",
        "conveyor_waiting_gates{workflow=\"W\"} 1",
        "conveyor_unacknowledged_alerts{severity=\"error\"} 1",
        "conveyor_unacknowledged_alerts{severity=\"warning\"} 0",
        "conveyor_broken_workflow_files 1",
        "conveyor_build_info{version=\"0.1.0\"} 1",
    ];
    for line in expected {
        assert!(page.lines().any(|written| written == line), "`{line}` in:\n{page}");
    }
    let gate_wait: f64 = page
        .lines()
        .find_map(|line| line.strip_prefix("conveyor_gate_wait_seconds{workflow=\"W\"} "))
        .expect("the gate's wait")
        .parse()
        .unwrap();
    assert!((7200.0..7300.0).contains(&gate_wait), "{gate_wait}");
    assert!(!page.contains("20261126-"), "no run id is a label");
    for name in EXPORTED {
        assert!(page.contains(&format!("\n{name}")), "{name} in:\n{page}");
    }
}

#[test]
fn anything_but_get_metrics_is_answered_with_what_is_served() {
    let served = served();
    let (status, _, body) = served.get("/");
    assert_eq!((status, body.as_str()), (404, "not found: metrics are at /metrics\n"));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = agent.post(&format!("http://{}/metrics", served.address)).send("x").unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get("allow").unwrap(), "GET, HEAD");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = taken.local_addr().unwrap();
    let error = bind(address).unwrap_err();
    assert!(error.starts_with(&format!("cannot serve metrics on {address}: ")), "{error}");
    assert!(error.ends_with("(choose another with --metrics or the registry's [metrics] listen)"), "{error}");
}
