//! Engines sharing one PostgreSQL lead one at a time: a leader's commits are fenced by its term, an engine
//! opens only while it leads, and the lead passes to a standby when the leader leaves. The whole-process
//! faults (a leader paused or killed, the server stopped) are in `cluster`.

use std::sync::Arc;
use std::time::Duration;

use conveyor::engine::membership::{Standing, Timing};
use conveyor::engine::{Engine, EngineConfig, EngineError, Membership};
use conveyor::store::{SCHEDULER_LEASE, Store, StoreError, StoreLocation, Term};

use crate::postgres::database;
use crate::store_postgres::run;

/// Quick to hand over (a bid every 250 ms), yet a lease long enough that a loaded machine's stall does not make
/// a leader unsure of itself mid-test.
const FAST: Timing = Timing { ttl: Duration::from_secs(10), renew: Duration::from_millis(250) };

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
    assert_eq!(a.forget_engines(Duration::from_secs(3600)).unwrap(), 0, "both were heard from just now");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(a.forget_engines(Duration::from_millis(10)).unwrap(), 1, "only the silent one that does not lead");
    assert_eq!(a.engines().unwrap().iter().map(|engine| engine.id).collect::<Vec<_>>(), [id_b]);
    b.leave().unwrap();
    assert!(a.engines().unwrap().is_empty(), "an engine that leaves is gone from the list");
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
    assert!(first.leading_now().is_some(), "the first to bid leads: {}", first.standing());
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

/// Waits for the answer to command `id`, reading the store every 20 ms for at most 30 s.
fn answer_of(store: &Store, id: i64) -> (bool, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = store.command_result(id).unwrap_or(None) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "command {id} was never taken");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_from_another_shell_wakes_the_leader_even_after_its_listening_connection_was_killed() {
    let db = database();
    let location = StoreLocation::parse(&db.url).unwrap();
    let (workflows, state, shell) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(
        workflows.path().join("hello.toml"),
        "id = \"Hello\"\n[trigger]\ntype = \"manual\"\n[[tasks]]\nname = \"Greet\"\nrun = 'true'\n",
    )
    .unwrap();
    let catalog = conveyor::definition::load_folder(workflows.path());
    let membership = Arc::new(Membership::join_with(state.path(), &location, FAST).unwrap().unwrap());
    let mut config = EngineConfig::new(workflows.path(), state.path());
    config.store = location.clone();
    config.membership = Some(Arc::clone(&membership));
    // No poll to speak of after the first: only a wake-up can bring a queued command in.
    config.command_poll = Duration::from_secs(3600);
    let engine = Engine::open(config, catalog.registry.clone()).unwrap();
    for workflow in catalog.workflows {
        engine.register(workflow);
    }
    engine.barrier().await.unwrap();

    let trigger = serde_json::to_string(&conveyor::engine::Command::Trigger {
        workflow: "Hello".into(),
        input: None,
        params: Default::default(),
    })
    .unwrap();
    let other = Store::connect(&db.url, shell.path()).unwrap();
    let queue = |other: &Store| {
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::seconds(60);
        // A write on a connection found cut is not retried by the store (it may have landed): once here.
        other
            .enqueue_command(now, "tester", &trigger, expires)
            .or_else(|_| other.enqueue_command(now, "tester", &trigger, expires))
            .unwrap()
    };
    let first = queue(&other);
    let (ok, outcome) = tokio::task::block_in_place(|| answer_of(&other, first));
    assert!(ok && outcome.contains("started run"), "{outcome}");

    // Every session is cut, the listening one included: it listens again, and looks once it has.
    crate::postgres::kill_connections(&db);
    let second = queue(&other);
    let (ok, outcome) = tokio::task::block_in_place(|| answer_of(&other, second));
    assert!(ok && outcome.contains("started run"), "{outcome}");
    engine.shutdown().await;
}
