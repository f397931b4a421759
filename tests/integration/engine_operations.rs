//! Operator commands, HTTP routes, the state-folder lock, commands from other shells, restarts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use conveyor::engine::{Command, Engine, EngineConfig};
use conveyor::state::{RunState, TaskState};
use conveyor::store::Store;
use serde_json::json;

use crate::engine_harness::*;

/// A tiny HTTP server on 127.0.0.1 that answers by path: `/svc/ok` echoes, `/svc/broken` is a 500,
/// One HTTP/1.1 request off the wire: method, path, `Idempotency-Key`, body.
fn read_request(stream: &std::net::TcpStream) -> (String, String, String, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let (mut length, mut key) = (0usize, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "idempotency-key" => key = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    (method, path, key, body)
}

/// `/svc/slow` answers after 3 s. It serves at most `connections` requests.
fn http_server(connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let (_, path, key, body) = read_request(&stream);
                let (status, answer) = match path.as_str() {
                    "/svc/ok" => {
                        let input: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        ("200 OK", json!({"echo": input["trigger"], "key": key}).to_string())
                    }
                    "/svc/slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        ("200 OK", "{}".to_string())
                    }
                    _ => ("500 Internal Server Error", "database down".to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    format!("http://{address}/svc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_services_answer_fail_and_time_out() {
    let url = http_server(3);
    let registry = format!("[services.Api]\nurl = \"{url}\"\n");
    let workflow = r#"
id = "Http"
[[tasks]]
name = "Ok"
service = "Api"
action = "ok"
[[tasks]]
name = "Broken"
service = "Api"
action = "broken"
continue_on_failure = true
[[tasks]]
name = "Slow"
service = "Api"
action = "slow"
timeout = "500ms"
"#;
    let mut h = Setup::new(workflow).registry(&registry).start();
    let run = h.trigger("Http").await;
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("task Slow failed: no answer within 500ms"));
    assert_eq!(h.task(&run, "Ok").output, Some(json!({"echo": "manual", "key": format!("{run}-Ok-1")})));
    let broken = h.task(&run, "Broken");
    assert_eq!((broken.state, broken.error.as_deref()), (TaskState::Failed, Some("HTTP 500: database down")));
    assert!(h.log(&run, "Ok", 1).contains(&format!("POST {url}/ok")));
    assert!(h.log(&run, "Broken", 1).contains("[conveyor] HTTP 500 in "));
}

/// One request as a test server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    key: String,
    body: String,
}

/// A 127.0.0.1 server that sends every request it gets to the returned channel and answers with `answer(path)`:
/// a status line and extra headers. The body echoes the request's as `{"path", "key", "input"}`.
fn recording_server(
    answer: impl Fn(&str) -> (&'static str, Vec<String>) + Send + Sync + 'static,
) -> (String, std::sync::mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, seen) = std::sync::mpsc::channel();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (sender, answer) = (sender.clone(), answer.clone());
            std::thread::spawn(move || {
                let (method, path, key, body) = read_request(&stream);
                let body = String::from_utf8(body).unwrap();
                let (status, headers) = answer(&path);
                let input: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                let reply = json!({"path": path, "key": key, "input": input}).to_string();
                let _ = sender.send(Seen { method, path, key, body });
                let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n");
                for header in headers {
                    head.push_str(&format!("{header}\r\n"));
                }
                let _ = write!(stream, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
            });
        }
    });
    (format!("http://{address}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_fails_the_task_and_the_other_server_hears_nothing() {
    let (elsewhere, heard_elsewhere) = recording_server(|_| ("200 OK", vec![]));
    let target = format!("{elsewhere}/svc/ok");
    let (url, heard) = recording_server(move |_| ("302 Found", vec![format!("Location: {target}")]));
    let registry = format!("[services.Api]\nurl = \"{url}/svc\"\n");
    let workflow = "id = \"Away\"\n[[tasks]]\nname = \"Call\"\nservice = \"Api\"\naction = \"away\"\n";
    let mut h = Setup::new(workflow).registry(&registry).start();
    let run = h.trigger("Away").await;
    h.run_reaches(&run, RunState::Failed).await;
    let call = h.task(&run, "Call");
    let expected = format!(
        "redirected to {elsewhere}/svc/ok: a redirect to another origin is not followed (point the registry's `url` there if that is where the service lives)"
    );
    assert_eq!((call.state, call.error.as_deref()), (TaskState::Failed, Some(expected.as_str())));
    assert_eq!(heard.try_iter().map(|seen| seen.path).collect::<Vec<_>>(), vec!["/svc/away"]);
    // The task failed only after the redirect was decided on, so a followed one would have arrived by now.
    assert!(heard_elsewhere.try_recv().is_err(), "the other origin got a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_origin_307_is_posted_again_with_its_body_and_idempotency_key() {
    let (url, heard) = recording_server(|path| match path {
        "/svc/old" => ("307 Temporary Redirect", vec!["Location: /svc/new".to_string()]),
        _ => ("200 OK", vec![]),
    });
    let registry = format!("[services.Api]\nurl = \"{url}/svc\"\n");
    let workflow = "id = \"Moved\"\n[[tasks]]\nname = \"Call\"\nservice = \"Api\"\naction = \"old\"\n";
    let mut h = Setup::new(workflow).registry(&registry).start();
    let run = h.trigger("Moved").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let requests: Vec<Seen> = heard.try_iter().collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (first, second) = (&requests[0], &requests[1]);
    assert_eq!((first.path.as_str(), second.path.as_str()), ("/svc/old", "/svc/new"));
    assert_eq!(second.method, "POST");
    assert_eq!(second.key, format!("{run}-Call-1"));
    assert_eq!(second.body, first.body);
    assert!(second.body.contains("\"trigger\":\"manual\""), "{}", second.body);
    let output = h.task(&run, "Call").output.unwrap();
    assert_eq!(output["path"], "/svc/new");
    assert!(h.log(&run, "Call", 1).contains(&format!("HTTP 307: POST again to {url}/svc/new")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_state_folder_is_refused() {
    let h = Setup::new("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"true\"\n").start();
    let second = Engine::open(EngineConfig::new(h.workflows(), h.state()), Default::default());
    let error = second.err().expect("the second engine is refused").to_string();
    assert_eq!(
        error,
        format!(
            "another engine (PID {}) holds the state folder {}: stop it, or point --state elsewhere",
            std::process::id(),
            h.state().display()
        )
    );
    h.engine.shutdown().await;
    assert!(Engine::open(EngineConfig::new(h.workflows(), h.state()), Default::default()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_written_to_the_store_is_acted_on_by_the_running_engine() {
    let mut h =
        Setup::new("id = \"W\"\n[params]\nn = 1\n[[tasks]]\nname = \"T\"\nrun = 'echo \"n=$CONVEYOR_PARAM_N\"'\n")
            .start();
    let store = Store::open(&h.state()).unwrap();
    let command =
        Command::Trigger { workflow: "W".into(), input: None, params: [("n".to_string(), json!("7"))].into() };
    let id = store
        .enqueue_command(
            chrono::Utc::now(),
            "someone",
            &command.to_json(),
            chrono::Utc::now() + chrono::Duration::seconds(30),
        )
        .unwrap();
    let started = std::time::Instant::now();
    let (ok, outcome) = loop {
        if let Some(result) = store.command_result(id).unwrap() {
            break result;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the engine picked the command up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(ok, "{outcome}");
    let reply: serde_json::Value = serde_json::from_str(&outcome).unwrap();
    let run = reply["run"].as_str().unwrap().to_string();
    h.run_reaches(&run, RunState::Succeeded).await;
    assert!(h.log(&run, "T", 1).contains("n=7\n"));
    let bad = store
        .enqueue_command(
            chrono::Utc::now(),
            "someone",
            r#"{"command": "retry_task", "run": "nope", "task": "T"}"#,
            chrono::Utc::now() + chrono::Duration::seconds(30),
        )
        .unwrap();
    let (ok, outcome) = loop {
        if let Some(result) = store.command_result(bad).unwrap() {
            break result;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((ok, outcome.as_str()), (false, "no run `nope`"));
    let audit = store.audit_trail(10).unwrap();
    assert!(audit.iter().any(|a| a.who == "someone" && a.origin == "cli" && !a.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_run_lets_the_running_task_finish_and_starts_nothing_new() {
    let workflow = "id = \"P\"\n[[tasks]]\nname = \"A\"\nrun = 'sleep 0.4'\n[[tasks]]\nname = \"B\"\nrun = 'true'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("P").await;
    h.task_reaches(&run, "A", TaskState::Running).await;
    h.engine.send(Command::PauseRun { run: run.clone() }).await.unwrap();
    h.task_reaches(&run, "A", TaskState::Succeeded).await;
    h.engine.barrier().await.unwrap();
    assert_eq!(h.task(&run, "B").state, TaskState::Pending);
    assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::Paused);
    let refused = h.engine.send(Command::PauseRun { run: run.clone() }).await.unwrap_err();
    assert_eq!(refused, format!("run {run} is paused, not running"));
    h.engine.send(Command::ResumeRun { run: run.clone() }).await.unwrap();
    h.run_reaches(&run, RunState::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerouting_a_failed_task_runs_it_on_the_chosen_service() {
    let registry =
        "[services.Down]\ncommand = [\"false\"]\n[services.Up]\ncommand = [\"sh\", \"-c\", \"echo up for $0\"]\n";
    let mut h = Setup::new("id = \"R\"\n[[tasks]]\nname = \"Call\"\nservice = \"Down\"\naction = \"go\"\n")
        .registry(registry)
        .start();
    let run = h.trigger("R").await;
    h.run_reaches(&run, RunState::Failed).await;
    let unknown =
        h.engine.send(Command::RerouteTask { run: run.clone(), task: "Call".into(), to: "Nowhere".into() }).await;
    assert_eq!(unknown.unwrap_err(), "no service or agent `Nowhere` (known: Down, Up)");
    let reply =
        h.engine.send(Command::RerouteTask { run: run.clone(), task: "Call".into(), to: "Up".into() }).await.unwrap();
    assert_eq!(reply.message, "task Call runs again on Up");
    h.run_reaches(&run, RunState::Succeeded).await;
    let attempts = h.store().attempts(&run, Some("Call")).unwrap();
    let routes: Vec<&str> = attempts.iter().map(|a| a.route.as_str()).collect();
    assert_eq!(routes, vec!["Down", "Up"]);
    assert!(h.log(&run, "Call", 2).contains("up for go"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_typed_and_unknown_ones_refused() {
    let workflow = "id = \"W\"\n[params]\nlimit = { type = \"integer\", default = 3 }\n[[tasks]]\nname = \"T\"\nrun = 'echo \"limit $CONVEYOR_PARAM_LIMIT\"; cat > \"$CONVEYOR_OUTPUT\"'\n";
    let mut h = Setup::new(workflow).file("note.txt", "x").start();
    let bad =
        Command::Trigger { workflow: "W".into(), input: None, params: [("limit".to_string(), json!("lots"))].into() };
    assert_eq!(h.engine.send(bad).await.unwrap_err(), "parameter `limit` of workflow `W` is a integer: got \"lots\"");
    let unknown =
        Command::Trigger { workflow: "W".into(), input: None, params: [("limt".to_string(), json!("1"))].into() };
    assert_eq!(
        h.engine.send(unknown).await.unwrap_err(),
        "workflow `W` has no parameter `limt`: expected one of limit"
    );
    let good = Command::Trigger {
        workflow: "W".into(),
        input: Some(json!({"batch": 9})),
        params: [("limit".to_string(), json!("12"))].into(),
    };
    let run = h.engine.send(good).await.unwrap().run.unwrap();
    h.run_reaches(&run, RunState::Succeeded).await;
    let output = h.task(&run, "T").output.unwrap();
    assert_eq!((output["params"].clone(), output["batch"].clone()), (json!({"limit": 12}), json!(9)));
    assert!(h.log(&run, "T", 1).contains("limit 12\n"));
}

#[test]
fn an_engine_dropped_mid_task_leaves_no_process_behind() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let workflow = "id = \"Hang\"\n[[tasks]]\nname = \"Hang\"\nrun = 'echo $$ > hang.pid; sleep 300 & sleep 300'\n";
    let h = runtime.block_on(async {
        let mut h = Setup::new(workflow).start();
        h.trigger("Hang").await;
        h
    });
    let pid_file = h.workflows().join("hang.pid");
    wait_until("the task has started", || std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid.ends_with('\n')));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // No shutdown: the runtime, and the engine on it, simply go away (a test ending, a panic unwinding).
    drop(runtime);
    wait_until("the task's process group is gone", || process_is_gone(pid));
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_an_alert_announces_it_acknowledged() {
    let mut h = Setup::new("id = \"F\"\n[[tasks]]\nname = \"T\"\nrun = 'exit 3'\n").start();
    let run = h.trigger("F").await;
    let alert = h
        .until(|event| match event {
            conveyor::engine::Event::Alert(alert) if alert.run_id.as_deref() == Some(run.as_str()) => {
                Some(alert.clone())
            }
            _ => None,
        })
        .await;
    h.engine.send(Command::AckAlert { id: alert.id }).await.unwrap();
    let acked = h
        .until(|event| match event {
            conveyor::engine::Event::Alert(known) if known.id == alert.id => Some(known.clone()),
            _ => None,
        })
        .await;
    assert!(acked.acked_at.is_some(), "{acked:?}");
    assert_eq!(acked.message, alert.message);
}
