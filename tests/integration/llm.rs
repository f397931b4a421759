//! LLM agents against a small OpenAI-compatible server started on 127.0.0.1: a good reply, a reply that is
//! not JSON, a schema violation, a 500 then success, a 429 with Retry-After, a reply slower than the timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::state::{AttemptState, RunState, TaskState};
use serde_json::{Value, json};

use crate::engine_harness::*;

/// What the server answers to its `n`th request (from 0).
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

pub fn reply_with(content: &str) -> Answer {
    let body = json!({
        "choices": [{"message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7}
    });
    Answer { status: 200, headers: Vec::new(), body: body.to_string(), delay: Duration::ZERO }
}

fn status(code: u16, body: &str) -> Answer {
    Answer { status: code, headers: Vec::new(), body: body.to_string(), delay: Duration::ZERO }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

pub struct FakeLlm {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    address: std::net::SocketAddr,
}

impl FakeLlm {
    pub fn start(answer: impl Fn(usize, &Value) -> Answer + Send + Sync + 'static) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (recorded, stopping, answer) = (seen.clone(), stop.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (recorded, answer) = (recorded.clone(), answer.clone());
                // Each connection on its own thread: a slow answer must not hold the others.
                std::thread::spawn(move || serve(stream, &recorded, &*answer));
            }
        });
        FakeLlm { url: format!("http://{address}/v1"), seen, stop, address }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, answer: &(dyn Fn(usize, &Value) -> Answer + Send + Sync)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let (mut length, mut authorization) = (0, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.trim_end().split_once(':').unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
    let number = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen { at: Instant::now(), path, authorization, body: body.clone() });
        seen.len() - 1
    };
    let reply = answer(number, &body);
    std::thread::sleep(reply.delay);
    let mut stream = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
}

/// The score of the user's item, as a model would answer about it.
fn scored(body: &Value) -> String {
    let item: Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
    let amount = item["amount"].as_f64().unwrap_or(0.0);
    json!({"score": if amount > 1000.0 { 0.9 } else { 0.3 }, "reason": format!("amount {amount}")}).to_string()
}

fn registry(url: &str, extra: &str) -> String {
    format!(
        r#"
[agents.Scorer]
description = "scores each application"
timeout = "2s"
llm = {{ url = "{url}", model = "tiny", api_key_env = "CONVEYOR_TEST_LLM_KEY", prompt = "Score the application from 0 to 1.", items = "applications", max_concurrency = 2, output_schema = {{ type = "object", required = ["score", "reason"], properties = {{ score = {{ type = "number", minimum = 0, maximum = 1 }}, reason = {{ type = "string" }} }} }} {extra} }}
"#
    )
}

const WORKFLOW: &str = r#"
id = "Grants"
[[tasks]]
name = "Ingest"
run = '''echo '{"applications": [{"id": "A-1", "amount": 500}, {"id": "A-2", "amount": 5000}, {"id": "A-3", "amount": 20}]}' > "$CONVEYOR_OUTPUT"'''
[[tasks]]
name = "Score"
agent = "Scorer"
retries = 1
retry_delay = "10ms"
"#;

fn start(server: &FakeLlm) -> Harness {
    // SAFETY: set once, before any engine thread reads it; every test here sets the same value.
    unsafe { std::env::set_var("CONVEYOR_TEST_LLM_KEY", "sk-test-secret-key") };
    Setup::new(WORKFLOW).registry(&registry(&server.url, "")).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_agent_scores_each_item_and_its_replies_are_merged_in() {
    let server = FakeLlm::start(|_, body| reply_with(&scored(body)));
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let output = h.task(&run, "Score").output.unwrap();
    assert_eq!(
        output["applications"],
        json!([
            {"id": "A-1", "amount": 500, "score": 0.3, "reason": "amount 500"},
            {"id": "A-2", "amount": 5000, "score": 0.9, "reason": "amount 5000"},
            {"id": "A-3", "amount": 20, "score": 0.3, "reason": "amount 20"}
        ])
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one question per item");
    let first = &requests[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.authorization.as_deref(), Some("Bearer sk-test-secret-key"));
    assert_eq!(first.body["model"], "tiny");
    assert_eq!(first.body["messages"][0]["content"], "Score the application from 0 to 1.");
    assert_eq!(first.body["response_format"]["type"], "json_schema");
    let attempt = &h.store().attempts(&run, Some("Score")).unwrap()[0];
    assert_eq!((attempt.prompt_tokens, attempt.completion_tokens), (Some(90), Some(21)), "usage summed over items");
    let history = crate::common::conveyor().args(["history", "--json", "--state"]).arg(h.state()).output().unwrap();
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history[0]["tokens"], json!({"prompt": 90, "completion": 21}), "{history}");
    let log = h.log(&run, "Score", 1);
    assert!(log.contains("POST ") && log.contains("\"amount\":5000") && log.contains("\"score\":0.9"), "{log}");
    assert!(!log.contains("sk-test-secret-key"), "the API key is never written to the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_is_not_json_fails_the_task_quoting_it() {
    let server = FakeLlm::start(|_, _| reply_with("Sure! The score is high."));
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Failed).await;
    let task = h.task(&run, "Score");
    assert_eq!((task.state, task.attempts), (TaskState::Failed, 2), "a bad reply is retried like any failure");
    let error = task.error.unwrap();
    assert!(error.contains("item 1: the reply is not JSON") && error.contains("Sure! The score is high."), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_breaks_the_schema_fails_the_task_naming_the_field() {
    let server = FakeLlm::start(|_, _| reply_with(r#"{"score": "very high", "reason": "x"}"#));
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Failed).await;
    let error = h.task(&run, "Score").error.unwrap();
    assert!(
        error.contains("the reply breaks the output schema: $.score: expected number, found a string (\"very high\")"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_by_the_tasks_retry_policy() {
    let server =
        FakeLlm::start(
            |n, body| if n == 0 { status(500, "{\"error\": \"overloaded\"}") } else { reply_with(&scored(body)) },
        );
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let attempts = h.store().attempts(&run, Some("Score")).unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].state, AttemptState::Failed);
    assert!(attempts[0].error.as_deref().unwrap().contains("HTTP 500: {\"error\": \"overloaded\"}"), "{attempts:?}");
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_as_long_as_retry_after_asks_within_the_attempt() {
    let server = FakeLlm::start(|n, body| {
        if n == 0 {
            Answer { headers: vec![("Retry-After".into(), "1".into())], ..status(429, "{\"error\": \"slow down\"}") }
        } else {
            reply_with(&scored(body))
        }
    });
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(h.store().attempts(&run, Some("Score")).unwrap().len(), 1, "no new attempt was needed");
    let requests = server.requests();
    let limited = &requests[0];
    let again =
        requests[1..].iter().find(|seen| seen.body == limited.body).expect("the refused question is asked again");
    assert!(again.at - limited.at >= Duration::from_millis(950), "asked again {:?} later", again.at - limited.at);
    assert!(h.log(&run, "Score", 1).contains("HTTP 429: waiting 1.0s as Retry-After asks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_slower_than_the_timeout_fails_the_attempt() {
    let server = FakeLlm::start(|_, body| Answer { delay: Duration::from_secs(4), ..reply_with(&scored(body)) });
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Failed).await;
    let error = h.task(&run, "Score").error.unwrap();
    assert!(error.contains("item 1: no answer within 2s (the attempt's timeout)"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrency_questions_are_in_flight() {
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counting, highest) = (in_flight.clone(), most.clone());
    let server = FakeLlm::start(move |_, body| {
        let now = counting.fetch_add(1, Ordering::SeqCst) + 1;
        highest.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        counting.fetch_sub(1, Ordering::SeqCst);
        reply_with(&scored(body))
    });
    let mut h = start(&server);
    let run = h.trigger("Grants").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(most.load(Ordering::SeqCst), 2, "max_concurrency = 2 with three items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempts_questions_still_in_flight_keep_their_places() {
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counting, highest) = (in_flight.clone(), most.clone());
    let server = FakeLlm::start(move |_, body| {
        let now = counting.fetch_add(1, Ordering::SeqCst) + 1;
        highest.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        counting.fetch_sub(1, Ordering::SeqCst);
        reply_with(&scored(body))
    });
    let mut h = start(&server);
    let first = h.trigger("Grants").await;
    let started = Instant::now();
    while server.requests().len() < 2 {
        assert!(started.elapsed() < WAIT, "the first run's questions were asked");
        tokio::task::yield_now().await;
    }
    h.engine.send(conveyor::engine::Command::CancelRun { run: first.clone() }).await.unwrap();
    h.run_reaches(&first, RunState::Cancelled).await;
    let second = h.trigger("Grants").await;
    h.run_reaches(&second, RunState::Succeeded).await;
    assert_eq!(most.load(Ordering::SeqCst), 2, "the abandoned questions held their places (max_concurrency = 2)");
}
