//! Engines sharing one PostgreSQL lead one at a time: a leader's commits are fenced by its term, an engine
//! opens only while it leads, and the lead passes to a standby when the leader leaves. The whole-process
//! faults (a leader paused or killed, the server stopped) are in `cluster`.

use std::sync::Arc;
use std::time::Duration;

use conveyor::engine::membership::{Standing, Timing};
use conveyor::engine::{Engine, EngineConfig, EngineError, Membership};
use conveyor::store::{SCHEDULER_LEASE, Store, StoreError, StoreLocation, Term};

use crate::postgres::database;

const FAST: Timing = Timing { ttl: Duration::from_millis(1500), renew: Duration::from_millis(250) };

fn run(id: &str) -> conveyor::store::RunRecord {
    let now = chrono::Utc::now();
    conveyor::store::RunRecord {
        id: id.into(),
        workflow: "W".into(),
        state: conveyor::state::RunState::Running,
        trigger: "manual".into(),
        input: serde_json::json!({}),
        params: serde_json::json!({}),
        definition_file: "w.toml".into(),
        definition: "id = \"W\"".into(),
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        error: None,
    }
}

#[test]
fn a_commit_of_a_leader_whose_lease_passed_on_is_refused_by_its_term() {
    let db = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = Store::connect(&db.url, dir_a.path()).unwrap();
    let new = Store::connect(&db.url, dir_b.path()).unwrap();
    let old_engine = old.join("a", 1, &[]).unwrap();
    new.join("b", 2, &[]).unwrap();

    let term = old.hold_lease(SCHEDULER_LEASE, Duration::from_millis(200)).unwrap().expect("nobody else holds it");
    old.fence(old_engine, SCHEDULER_LEASE, term);
    old.begin_batch().unwrap();
    old.insert_run(&run("before"), &[]).unwrap();
    old.commit_batch().expect("the holder's commit lands");

    // The old leader is paused past its lease; another takes over.
    std::thread::sleep(Duration::from_millis(300));
    let taken = new.hold_lease(SCHEDULER_LEASE, Duration::from_secs(30)).unwrap().expect("a lapsed lease is taken");
    assert!(taken > term, "a new holding has a greater term: {taken:?} after {term:?}");

    old.begin_batch().unwrap();
    old.insert_run(&run("after"), &[]).unwrap();
    match old.commit_batch() {
        Err(StoreError::Fenced(why)) => assert!(why.contains(&format!("term {}", term.0)), "{why}"),
        other => panic!("the old leader's commit must be refused by term, got {other:?}"),
    }
    assert!(matches!(old.retry_pending(), Err(StoreError::Fenced(_))), "and stays refused on a retry");
    assert!(new.run("before").unwrap().is_some());
    assert!(new.run("after").unwrap().is_none(), "nothing of the refused batch landed");
    assert_eq!(new.lease_holder(SCHEDULER_LEASE).unwrap().map(|(_, term)| term), Some(taken));
}

#[test]
fn engines_list_each_other_and_the_leader() {
    let db = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::connect(&db.url, dir_a.path()).unwrap();
    let b = Store::connect(&db.url, dir_b.path()).unwrap();
    let id_a = a.join("host-a", 11, &["*".into()]).unwrap();
    let id_b = b.join("host-b", 22, &["gpu".into()]).unwrap();
    assert_eq!(b.hold_lease(SCHEDULER_LEASE, Duration::from_secs(30)).unwrap(), Some(Term(1)));
    let engines = a.engines().unwrap();
    let listed: Vec<_> =
        engines.iter().map(|engine| (engine.id, engine.host.as_str(), engine.pid, engine.leads)).collect();
    assert_eq!(listed, [(id_a, "host-a", 11, false), (id_b, "host-b", 22, true)]);
    assert_eq!(engines[1].routes, ["gpu"]);
    b.leave().unwrap();
    assert_eq!(a.engines().unwrap().len(), 1, "an engine that leaves is gone from the list");
    assert_eq!(a.lease_holder(SCHEDULER_LEASE).unwrap(), None, "and its lease is free at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_opens_only_while_it_leads_and_a_standby_takes_over_when_the_leader_leaves() {
    let db = database();
    let location = StoreLocation::parse(&db.url).unwrap();
    let (workflows, dir_a, dir_b) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Arc::new(Membership::join_with(dir_a.path(), &location, FAST).unwrap().expect("a shared store"));
    let second = Arc::new(Membership::join_with(dir_b.path(), &location, FAST).unwrap().expect("a shared store"));
    assert!(first.leading().is_some(), "the first to bid leads: {}", first.standing());
    assert_eq!(second.standing(), Standing::Standby { leader: Some(first.engine()) });

    let config = |dir: &std::path::Path, membership: &Arc<Membership>| EngineConfig {
        store: location.clone(),
        membership: Some(Arc::clone(membership)),
        ..EngineConfig::new(workflows.path(), dir)
    };
    let leader = Engine::open(config(dir_a.path(), &first), Default::default()).expect("the leader opens");
    match Engine::open(config(dir_b.path(), &second), Default::default()) {
        Err(EngineError::Standby(why)) => assert!(why.contains(&format!("engine {} leads", first.engine().0)), "{why}"),
        Err(other) => panic!("a standby must not open an engine: {other}"),
        Ok(_) => panic!("a standby must not open an engine"),
    }

    leader.shutdown().await;
    drop(first);
    let term =
        tokio::time::timeout(Duration::from_secs(30), second.wait_to_lead()).await.expect("the standby takes over");
    assert!(term > Term(1));
    let taken = Engine::open(config(dir_b.path(), &second), Default::default()).expect("the new leader opens");
    taken.shutdown().await;
}
