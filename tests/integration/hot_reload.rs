//! The watched workflows folder: reads and rewrites that leave the bytes as they were reload nothing.

use std::time::Duration;

use conveyor::definition::load_folder;
use conveyor::engine::{Engine, EngineConfig, Event};
use tokio::sync::broadcast;

use crate::engine_harness::Setup;

const MANUAL: &str = "id = \"Manual\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n";

/// Over three times the watcher's 300 ms debounce: a reload a change (or a read) caused would be seen by then.
const QUIET: Duration = Duration::from_secs(1);

/// How many `Reloaded` events come within `quiet`.
async fn reloads_within(events: &mut broadcast::Receiver<Event>, quiet: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + quiet;
    let mut count = 0;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return count,
            Ok(Ok(Event::Reloaded { .. })) => count += 1,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(error)) => panic!("event stream ended: {error}"),
        }
    }
}

/// The ids a `Reloaded` names as changed, once one comes.
async fn next_reload(events: &mut broadcast::Receiver<Event>) -> Vec<String> {
    let wait = tokio::time::timeout(crate::engine_harness::WAIT, async {
        loop {
            match events.recv().await {
                Ok(Event::Reloaded { changed, .. }) => return changed,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("event stream ended: {error}"),
            }
        }
    });
    wait.await.expect("a reload came in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_workflow_file_or_rewriting_its_bytes_as_they_were_reloads_nothing_but_an_edit_does() {
    let mut h = Setup::new(MANUAL).start();
    h.engine.watch_workflows().await.unwrap();
    let file = h.workflows().join("w0.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::read_to_string(h.workflows().join("conveyor.toml")).unwrap();
    std::fs::write(&file, &text).unwrap();
    assert_eq!(reloads_within(&mut h.events, QUIET).await, 0, "reads and a same-bytes rewrite reload nothing");

    std::fs::write(&file, text.replace("'true'", "'true # edited'")).unwrap();
    assert_eq!(next_reload(&mut h.events).await, vec!["Manual"], "new bytes are reloaded");
    h.engine.shutdown().await;
    let trail = h.store().audit_trail(10).unwrap();
    let reloads: Vec<_> = trail.iter().filter(|entry| entry.origin == "reload").collect();
    assert_eq!(reloads.len(), 1, "only the reload that changed something is recorded: {trail:?}");
    assert_eq!((reloads[0].who.as_str(), reloads[0].outcome.as_str()), ("engine", "1 changed or added, 0 removed"));
    assert!(reloads[0].command.contains(r#""changed":["Manual"]"#), "{}", reloads[0].command);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_watching_one_folder_do_not_wake_each_other_with_their_reads() {
    let mut h = Setup::new(MANUAL).start();
    let catalog = load_folder(&h.workflows());
    let other =
        Engine::open(EngineConfig::new(h.workflows(), h.dir.path().join("other-state")), catalog.registry).unwrap();
    for workflow in catalog.workflows {
        other.register(workflow);
    }
    let mut other_events = other.subscribe();
    h.engine.watch_workflows().await.unwrap();
    other.watch_workflows().await.unwrap();

    // One edit: each engine reads the folder once, which the other must not take for a change.
    let file = h.workflows().join("w0.toml");
    std::fs::write(&file, MANUAL.replace("'true'", "'true # edited'")).unwrap();
    assert_eq!(next_reload(&mut h.events).await, vec!["Manual"]);
    assert_eq!(next_reload(&mut other_events).await, vec!["Manual"]);
    let (first, second) = tokio::join!(reloads_within(&mut h.events, QUIET), reloads_within(&mut other_events, QUIET));
    assert_eq!((first, second), (0, 0), "reloads after the one edit, on each engine");
    other.shutdown().await;
    h.engine.shutdown().await;
}
