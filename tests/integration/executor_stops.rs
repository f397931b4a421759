//! An HTTP attempt stops on the engine's clock and on an operator's cancel, as a process does: no real
//! waiting for the timeout, and a cancel does not wait for the server.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use conveyor::clock::ManualClock;
use conveyor::engine::Command;
use conveyor::state::{AttemptState, RunState, TaskState};

use crate::engine_harness::*;

/// A server that takes one request and never answers it: `arrived` says when the request is in, and the
/// connection is held until `release` is dropped.
struct Silent {
    url: String,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    _release: mpsc::Sender<()>,
}

fn silent_server() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/svc", listener.local_addr().unwrap());
    let (told, arrived) = tokio::sync::mpsc::unbounded_channel();
    let (release, held) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Some(Ok(stream)) = listener.incoming().next() else { return };
        let mut reader = BufReader::new(&stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = told.send(());
        // Blocks until the test drops its sender: the request stays unanswered until then.
        let _ = held.recv();
        drop(stream);
    });
    Silent { url, arrived, _release: release }
}

fn workflow(timeout: &str) -> String {
    format!("id = \"Call\"\n[[tasks]]\nname = \"Slow\"\nservice = \"Api\"\naction = \"slow\"\n{timeout}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_task_times_out_when_the_engines_clock_passes_its_timeout() {
    let mut server = silent_server();
    let clock = ManualClock::new(chrono::Utc::now());
    let registry = format!("[services.Api]\nurl = \"{}\"\n", server.url);
    let mut h = Setup::new(&workflow("timeout = \"1h\"")).registry(&registry).clock(&clock).start();
    let run = h.trigger("Call").await;
    tokio::time::timeout(WAIT, server.arrived.recv()).await.expect("the request reached the server");
    // The transport's own timeout is an hour of real time away: only the clock can end the attempt now.
    clock.advance(Duration::from_secs(3600));
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("task Slow failed: no answer within 1h"));
    let log = h.log(&run, "Slow", 1);
    assert!(log.contains("[conveyor] timed out after 1h: the request is abandoned"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_http_attempt_ends_at_once_without_its_answer() {
    let mut server = silent_server();
    let clock = ManualClock::new(chrono::Utc::now());
    let registry = format!("[services.Api]\nurl = \"{}\"\n", server.url);
    let mut h = Setup::new(&workflow("")).registry(&registry).clock(&clock).start();
    let run = h.trigger("Call").await;
    tokio::time::timeout(WAIT, server.arrived.recv()).await.expect("the request reached the server");
    h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap();
    h.run_reaches(&run, RunState::Cancelled).await;
    assert_eq!(h.task(&run, "Slow").state, TaskState::Cancelled);
    let attempts = h.store().attempts(&run, Some("Slow")).unwrap();
    assert_eq!(attempts.iter().map(|attempt| attempt.state).collect::<Vec<_>>(), vec![AttemptState::Cancelled]);
    let log = h.log(&run, "Slow", 1);
    assert!(log.contains("[conveyor] cancelled: the request is abandoned"), "{log}");
}
