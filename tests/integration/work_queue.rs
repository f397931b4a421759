//! The work queue on PostgreSQL, through the library: an offer is made only under the lease's current term,
//! one claimer gets each offer, only the claimer finishes it, its lines come before its ending, and a claim
//! given up or taken over is gone for its late finisher.

use std::time::Duration;

use conveyor::store::work::{Offer, Settled, Shipment, WorkQueue, open_queue};
use conveyor::store::{AttemptRecord, EngineId, Store, StoreLocation, Term};
use serde_json::json;

use crate::postgres::{TestDatabase, database};

const TTL: Duration = Duration::from_secs(30);

/// Two engines joined to one database (a store each, as their membership has), the first leading, and a work
/// queue for each.
struct Two {
    _db: TestDatabase,
    _dirs: Vec<tempfile::TempDir>,
    stores: Vec<Store>,
    engines: Vec<EngineId>,
    queues: Vec<WorkQueue>,
    term: Term,
}

fn two() -> Two {
    let db = database();
    let location = StoreLocation::parse(&db.url).unwrap();
    let (mut dirs, mut stores, mut engines, mut queues) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for host in ["host-a", "host-b"] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&db.url, dir.path()).unwrap();
        engines.push(store.join(host, std::process::id(), &["*".to_string()]).unwrap());
        queues.push(open_queue(&location, dir.path()).unwrap().expect("a shared store has a work queue"));
        stores.push(store);
        dirs.push(dir);
    }
    let term = stores[0].hold_lease("scheduler", TTL).unwrap().expect("the first engine leads");
    Two { _db: db, _dirs: dirs, stores, engines, queues, term }
}

fn offer(task: &str, route: &str) -> Offer {
    Offer { run_id: "r1".into(), task: task.into(), attempt: 1, route: route.into(), spec: json!({"argv": ["true"]}) }
}

#[tokio::test]
async fn one_claimer_gets_an_offer_only_it_finishes_it_and_its_lines_come_before_its_ending() {
    let two = two();
    let (a, b) = (&two.queues[0], &two.queues[1]);
    let (leader, other) = (two.engines[0], two.engines[1]);
    let id = a.offer(leader, two.term, offer("T", "inline")).await.unwrap().expect("offered under the held term");
    assert_eq!(b.claim(other, "host-b".into(), vec!["Special".into()], 4).await.unwrap(), vec![], "not its route");
    let (first, second) = tokio::join!(
        a.claim(leader, "host-a".into(), vec!["*".into()], 4),
        b.claim(other, "host-b".into(), vec!["inline".into()], 4)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.len() + second.len(), 1, "exactly one claimer: {first:?} {second:?}");
    let (holder, loser, host) = if first.len() == 1 { (leader, other, "host-a") } else { (other, leader, "host-b") };
    let claimed = first.into_iter().chain(second).next().unwrap();
    assert_eq!(
        (claimed.id, claimed.offer.task.as_str(), claimed.offer.spec.clone()),
        (id, "T", json!({"argv": ["true"]}))
    );

    let queue = if holder == leader { a } else { b };
    let standing = queue
        .keep(
            holder,
            vec![id.0],
            vec![id.0],
            vec![Shipment { work: id, first: 0, lines: vec![(1, "one".into())] }],
            vec![(id, 4242, Some(7))],
        )
        .await
        .unwrap();
    assert_eq!(standing.len(), 1, "the claim stands");
    assert!(!standing[0].cancel);
    assert!(!queue.finish(loser, id, Vec::new(), Ok(json!({"ended": "cancelled"}))).await.unwrap(), "not its claim");
    let ending = json!({"ended": "succeeded", "output": {"n": 1}});
    let lines = vec![Shipment { work: id, first: 1, lines: vec![(2, "two\0".to_string())] }];
    assert!(queue.finish(holder, id, lines, Ok(ending.clone())).await.unwrap());
    assert!(!queue.finish(holder, id, Vec::new(), Ok(ending.clone())).await.unwrap(), "finished once");

    let look = a.look(vec![(id.0, 0)], vec![id.0]).await.unwrap();
    assert_eq!(look.holders.len(), 1);
    let found = &look.holders[0].1;
    assert_eq!((found.engine, found.host.as_str(), found.pid, found.pid_start), (holder, host, Some(4242), Some(7)));
    let lines: Vec<(i16, &str)> = look.lines.iter().map(|line| (line.stream, line.text.as_str())).collect();
    assert_eq!(lines, [(1, "one"), (2, "two\u{fffd}")], "in order, a NUL kept as a replacement character");
    assert_eq!(look.settled.len(), 1);
    assert_eq!(look.settled[0].1, Settled::Done(ending));
    let again = a.look(vec![(id.0, 0)], Vec::new()).await.unwrap();
    assert!(again.settled.is_empty() && again.lines.is_empty(), "taken as read: {again:?}");
}

#[tokio::test]
async fn an_offer_is_made_only_under_the_term_that_holds_the_lease() {
    let two = two();
    let (leader, other) = (two.engines[0], two.engines[1]);
    let stale = Term(two.term.0 + 1);
    assert_eq!(two.queues[0].offer(leader, stale, offer("T", "inline")).await.unwrap(), None, "not its term");
    assert_eq!(two.queues[1].offer(other, two.term, offer("T", "inline")).await.unwrap(), None, "not the holder");
    two.stores[0].release_lease("scheduler").unwrap();
    assert_eq!(two.queues[0].offer(leader, two.term, offer("T", "inline")).await.unwrap(), None, "released");
}

#[tokio::test]
async fn a_withdrawn_offer_is_gone_a_claimed_one_is_asked_to_stop_and_a_rescue_gives_up_every_silent_claim() {
    let two = two();
    let (queue, leader) = (&two.queues[0], two.engines[0]);
    let worker = (&two.queues[1], two.engines[1]);
    let unclaimed = queue.offer(leader, two.term, offer("A", "inline")).await.unwrap().unwrap();
    assert!(queue.withdraw(unclaimed).await.unwrap(), "nobody claimed it: withdrawn");
    assert!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 4).await.unwrap().is_empty());

    let id = queue.offer(leader, two.term, offer("B", "inline")).await.unwrap().unwrap();
    assert_eq!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 4).await.unwrap().len(), 1);
    assert!(!queue.withdraw(id).await.unwrap(), "claimed: asked to stop instead");
    let standing = worker.0.keep(worker.1, vec![id.0], vec![id.0], Vec::new(), Vec::new()).await.unwrap();
    assert!(standing[0].cancel, "the worker hears it is to stop");

    // A silence of no time at all: every engine's heartbeat is older than that.
    assert_eq!(queue.rescue(Duration::ZERO).await.unwrap(), 1);
    let look = queue.look(vec![(id.0, 0)], Vec::new()).await.unwrap();
    assert_eq!(look.settled.len(), 1);
    assert_eq!(look.settled[0].1, Settled::Lost(None));
    assert_eq!(look.settled[0].2.as_ref().map(|holder| holder.engine), Some(worker.1));
    assert!(
        worker.0.keep(worker.1, vec![id.0], vec![id.0], Vec::new(), Vec::new()).await.unwrap().is_empty(),
        "the claim is gone"
    );
    let late = worker.0.finish(worker.1, id, Vec::new(), Ok(json!({"ended": "cancelled"}))).await.unwrap();
    assert!(!late, "the late finisher finds its claim lost");
}

#[tokio::test]
async fn a_new_leader_withdraws_unclaimed_work_of_earlier_terms_and_asks_claimed_work_to_stop() {
    let two = two();
    let (queue, leader) = (&two.queues[0], two.engines[0]);
    let worker = (&two.queues[1], two.engines[1]);
    let claimed = queue.offer(leader, two.term, offer("A", "inline")).await.unwrap().unwrap();
    assert_eq!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 1).await.unwrap().len(), 1);
    let waiting = queue.offer(leader, two.term, offer("B", "inline")).await.unwrap().unwrap();

    two.stores[0].release_lease("scheduler").unwrap();
    let newer = two.stores[1].hold_lease("scheduler", TTL).unwrap().expect("the second engine takes over");
    assert!(newer > two.term);
    assert_eq!(worker.0.take_over(newer).unwrap(), 1, "one claimed attempt asked to stop");
    let standing = worker.0.keep(worker.1, vec![claimed.0], vec![claimed.0], Vec::new(), Vec::new()).await.unwrap();
    assert!(standing[0].cancel);
    assert!(!queue.withdraw(waiting).await.unwrap(), "the unclaimed offer was already withdrawn");
    assert!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 4).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_offer_sent_again_finds_the_first_and_a_claim_its_worker_never_heard_of_is_given_back() {
    let two = two();
    let (queue, leader) = (&two.queues[0], two.engines[0]);
    let worker = (&two.queues[1], two.engines[1]);
    let first = queue.offer(leader, two.term, offer("A", "inline")).await.unwrap().unwrap();
    let again = queue.offer(leader, two.term, offer("A", "inline")).await.unwrap().unwrap();
    assert_eq!(again, first, "one row per attempt");

    // The claim commits, but (as if its answer were lost with the connection) the worker does not know it.
    assert_eq!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 4).await.unwrap().len(), 1);
    assert!(worker.0.keep(worker.1, Vec::new(), Vec::new(), Vec::new(), Vec::new()).await.unwrap().is_empty());
    let claimed = queue.claim(leader, "host-a".into(), vec!["*".into()], 4).await.unwrap();
    assert_eq!(claimed.iter().map(|claimed| claimed.id).collect::<Vec<_>>(), [first], "given back, claimed again");
}

#[tokio::test]
async fn a_running_offered_attempts_lines_are_read_from_any_host_and_each_line_reaches_its_offerer_once() {
    let two = two();
    let (queue, leader) = (&two.queues[0], two.engines[0]);
    let worker = (&two.queues[1], two.engines[1]);
    let id = queue.offer(leader, two.term, offer("T", "inline")).await.unwrap().unwrap();
    assert_eq!(worker.0.claim(worker.1, "host-b".into(), vec!["*".into()], 1).await.unwrap().len(), 1);
    let lines = vec![Shipment { work: id, first: 0, lines: vec![(1, "first".into()), (2, "second".into())] }];
    worker.0.keep(worker.1, vec![id.0], vec![id.0], lines.clone(), Vec::new()).await.unwrap();
    // Sent again (as after a lost answer): the same row, not a second copy.
    worker.0.keep(worker.1, vec![id.0], vec![id.0], lines, Vec::new()).await.unwrap();

    let look = queue.look(vec![(id.0, 0)], Vec::new()).await.unwrap();
    assert_eq!(look.lines.iter().map(|line| line.seq).collect::<Vec<_>>(), [0, 1]);
    let look = queue.look(vec![(id.0, 2)], Vec::new()).await.unwrap();
    assert!(look.lines.is_empty(), "lines already read are not read again: {look:?}");

    // A console on a host without the attempt's log file (it runs elsewhere) reads what was shipped so far.
    let record = AttemptRecord::started("r1", "T", 1, "inline", chrono::Utc::now(), "/nowhere/T.1.log".into());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut two.stores[0].logs().open(&record).unwrap(), &mut text).unwrap();
    assert_eq!(text, "first\nsecond\n");

    assert!(worker.0.finish(worker.1, id, Vec::new(), Ok(json!({"ended": "cancelled"}))).await.unwrap());
    let look = queue.look(vec![(id.0, 2)], Vec::new()).await.unwrap();
    assert_eq!(look.settled.len(), 1);
    let left = queue.look(vec![(id.0, 0)], Vec::new()).await.unwrap();
    assert!(left.lines.is_empty(), "a settled attempt's lines go with it");
}
