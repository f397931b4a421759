//! An agent that is a language model behind an OpenAI-compatible chat-completions API (OpenAI, Ollama, vLLM,
//! llama.cpp's server, most gateways): per item of the input (or once for the whole input) it sends the
//! agent's prompt and the item as JSON, asks for JSON back, checks the reply against the agent's schema and
//! merges it into the item.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::supervise::{StopReason, Waited, timed_out};
use super::{Attempt, Ending, Execution, Executor, LogSink, Usage};
use crate::definition::LlmAgent;
use crate::definition::schema::violation;

/// Used when neither the task nor the agent sets a timeout.
pub const DEFAULT_LLM_TIMEOUT: Duration = Duration::from_secs(300);
/// 429 answers waited out within one attempt before it fails (and the task's retries take over).
const MAX_RATE_LIMITED: usize = 5;
/// How much of a reply an error message quotes.
const QUOTED: usize = 200;

pub struct LlmExecutor {
    pub agent: Arc<LlmAgent>,
    /// Shared by every attempt of this agent: `max_concurrency` requests in flight at once.
    pub permits: Arc<Semaphore>,
}

impl Executor for LlmExecutor {
    fn execute(&self, attempt: Attempt) -> Execution {
        Box::pin(ask(self.agent.clone(), self.permits.clone(), attempt))
    }

    fn default_timeout(&self) -> Option<Duration> {
        Some(DEFAULT_LLM_TIMEOUT)
    }
}

/// One question's answer: the reply as JSON, and the tokens it cost.
type Answer = Result<(Value, Usage), String>;

/// When the attempt's time is up, and how long it was given (for the message when no answer came); and how
/// large an answer may be (the task's `max_output_size`, as for an HTTP service's answer).
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
    max_answer: u64,
}

impl Deadline {
    fn missed(&self) -> String {
        format!("{} (the attempt's timeout)", timed_out(self.timeout, Waited::Answer))
    }
}

async fn ask(agent: Arc<LlmAgent>, permits: Arc<Semaphore>, mut attempt: Attempt) -> Ending {
    let log = attempt.log.clone();
    let key = match &agent.api_key_env {
        Some(variable) => match attempt.env.get(variable).cloned().or_else(|| std::env::var(variable).ok()) {
            Some(key) if !key.is_empty() => Some(key),
            _ => {
                let message = format!(
                    "the environment variable {variable} (the agent's `api_key_env`) is not set: set it where the engine runs, or in the agent's `env`"
                );
                log.engine_line(&message);
                return Ending::failed(message);
            }
        },
        None => None,
    };
    let items: Vec<Value> = match &agent.items {
        Some(field) => match attempt.input.get(field) {
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                return Ending::failed(format!("the input's `{field}` is not a list (the agent's `items`): {other}"));
            }
            None => return Ending::failed(format!("the input has no `{field}` (the agent's `items`)")),
        },
        None => vec![attempt.input.clone()],
    };
    // The engine's clock decides when the attempt's time is up (`attempt.stop`); this deadline is the
    // transport's backstop, which frees the blocking threads a stopped attempt can only abandon.
    let timeout = attempt.stop.timeout().unwrap_or(DEFAULT_LLM_TIMEOUT);
    let deadline = Deadline { at: Instant::now() + timeout, timeout, max_answer: attempt.limits.max_output_size };
    let endpoint = format!("{}/chat/completions", agent.url.trim_end_matches('/'));
    log.engine_line(&format!(
        "asking {} at {endpoint} about {} item(s), at most {} at once",
        agent.model,
        items.len(),
        agent.max_concurrency
    ));
    let mut questions = tokio::task::JoinSet::new();
    for (index, item) in items.iter().cloned().enumerate() {
        let (agent, permits, log, key, endpoint) =
            (agent.clone(), permits.clone(), log.clone(), key.clone(), endpoint.clone());
        let count = items.len();
        questions.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else { return (index, Err("the agent is closed".into())) };
            let answer = tokio::task::spawn_blocking(move || {
                // Held by the thread, not by this task: a cancelled attempt abandons the thread, which may still
                // be asking, and its place must stay taken until it is done.
                let _permit = permit;
                let label = if count > 1 { format!("item {}/{count}", index + 1) } else { "the input".to_string() };
                question(&agent, &endpoint, key.as_deref(), &item, &label, deadline, &log)
            })
            .await
            .unwrap_or_else(|error| Err(format!("the request failed: {error}")));
            (index, answer)
        });
    }
    let mut answers: Vec<Option<Answer>> = vec![None; items.len()];
    loop {
        let next = tokio::select! {
            next = questions.join_next() => next,
            reason = attempt.stop.requested() => {
                questions.abort_all();
                reason.announce(&log, "the requests still in flight are abandoned");
                match reason {
                    StopReason::Cancelled => return Ending::Cancelled,
                    // The questions not yet answered fail as if their transport had given up: the answers
                    // that came are still counted and their tokens reported.
                    StopReason::TimedOut(_) => break,
                }
            }
        };
        match next {
            Some(Ok((index, answer))) => answers[index] = Some(answer),
            Some(Err(error)) => return Ending::failed(format!("a request task failed: {error}")),
            None => break,
        }
    }
    let mut usage = Usage::default();
    let mut merged = Vec::with_capacity(items.len());
    let mut failure = None;
    for (index, (item, answer)) in items.into_iter().zip(answers).enumerate() {
        match answer.unwrap_or_else(|| Err(deadline.missed())) {
            Ok((reply, cost)) => {
                usage.prompt_tokens += cost.prompt_tokens;
                usage.completion_tokens += cost.completion_tokens;
                merged.push(merge(item, reply));
            }
            Err(error) if failure.is_none() => {
                failure = Some(if agent.items.is_some() { format!("item {}: {error}", index + 1) } else { error });
            }
            Err(_) => {}
        }
    }
    log.engine_line(&format!("tokens: {} prompt, {} completion", usage.prompt_tokens, usage.completion_tokens));
    if let Some(report) = attempt.usage.take() {
        report(usage);
    }
    if let Some(error) = failure {
        log.engine_line(&error);
        return Ending::failed(error);
    }
    let output = match &agent.items {
        Some(field) => {
            let mut input = attempt.input;
            input[field.as_str()] = Value::Array(merged);
            input
        }
        None => merged.pop().unwrap_or(Value::Null),
    };
    Ending::Succeeded { output }
}

/// The item with the reply's fields added (the reply wins); a reply that is not an object replaces it.
fn merge(item: Value, reply: Value) -> Value {
    match (item, reply) {
        (Value::Object(mut item), Value::Object(reply)) => {
            item.extend(reply);
            Value::Object(item)
        }
        (_, reply) => reply,
    }
}

/// One request and its reply, blocking: rate limits waited out, the reply checked.
fn question(
    agent: &LlmAgent,
    endpoint: &str,
    key: Option<&str>,
    item: &Value,
    label: &str,
    deadline: Deadline,
    log: &LogSink,
) -> Answer {
    let content = serde_json::to_string(item).expect("JSON values serialise");
    let mut strict = agent.output_schema.is_some();
    let mut rate_limited = 0;
    loop {
        let remaining = deadline.at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(deadline.missed());
        }
        let body = request_body(agent, &content, strict);
        log.engine_line(&format!("POST {endpoint} for {label} ({} bytes)", body.len()));
        log.line(super::Stream::Stdout, format!("> {content}"));
        let agent_http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(remaining))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let mut request = agent_http.post(endpoint).header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let started = Instant::now();
        let mut response = match request.send(&body[..]) {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => return Err(deadline.missed()),
            Err(error) => return Err(format!("the request failed: {error}")),
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|value| value.to_str().ok()).map(str::to_string);
        let text = match response.body_mut().with_config().limit(deadline.max_answer).read_to_string() {
            Ok(text) => text,
            Err(ureq::Error::Timeout(_)) => return Err(deadline.missed()),
            Err(error) => return Err(format!("reading the reply failed: {error}")),
        };
        log.engine_line(&format!("HTTP {status} in {} ms", started.elapsed().as_millis()));
        if status == 429 && rate_limited < MAX_RATE_LIMITED {
            let wait = retry_after.as_deref().and_then(|seconds| seconds.trim().parse::<f64>().ok()).unwrap_or(1.0);
            let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
            if Instant::now() + wait >= deadline.at {
                return Err(format!(
                    "HTTP 429: the server asks to wait {}s, past the attempt's timeout",
                    wait.as_secs()
                ));
            }
            rate_limited += 1;
            log.engine_line(&format!("HTTP 429: waiting {:.1}s as Retry-After asks", wait.as_secs_f64()));
            std::thread::sleep(wait);
            continue;
        }
        // Servers without structured output refuse `json_schema`: ask once more for any JSON object.
        if status == 400 && strict && text.contains("response_format") {
            log.engine_line("the server does not take a JSON schema: asking for a JSON object instead");
            strict = false;
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {}", quote(&text)));
        }
        return read_reply(agent, &text, log);
    }
}

fn request_body(agent: &LlmAgent, content: &str, strict: bool) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("model".into(), json!(agent.model));
    body.insert(
        "messages".into(),
        json!([{"role": "system", "content": agent.prompt}, {"role": "user", "content": content}]),
    );
    let format = match &agent.output_schema {
        Some(schema) if strict => json!({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}),
        _ => json!({"type": "json_object"}),
    };
    body.insert("response_format".into(), format);
    if let Some(temperature) = agent.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    serde_json::to_vec(&Value::Object(body)).expect("JSON values serialise")
}

/// The reply's message as JSON, checked against the schema, and its `usage`.
fn read_reply(agent: &LlmAgent, text: &str, log: &LogSink) -> Answer {
    let envelope: Value = serde_json::from_str(text)
        .map_err(|error| format!("the server's answer is not JSON ({error}): {}", quote(text)))?;
    let usage = Usage {
        prompt_tokens: envelope.pointer("/usage/prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: envelope.pointer("/usage/completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    };
    let Some(content) = envelope.pointer("/choices/0/message/content").and_then(Value::as_str) else {
        return Err(format!("the answer has no choices[0].message.content: {}", quote(text)));
    };
    for line in content.lines().take(200) {
        log.line(super::Stream::Stdout, format!("< {line}"));
    }
    let reply: Value = serde_json::from_str(strip_fences(content))
        .map_err(|error| format!("the reply is not JSON ({error}): {}", quote(content)))?;
    if let Some(problem) = agent.output_schema.as_ref().and_then(|schema| violation(schema, &reply)) {
        return Err(format!("the reply breaks the output schema: {problem}; the reply: {}", quote(content)));
    }
    Ok((reply, usage))
}

/// Models often wrap JSON in a Markdown code fence even when asked not to.
fn strip_fences(content: &str) -> &str {
    let trimmed = content.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// The start of a text, on one line, for an error message.
fn quote(text: &str) -> String {
    let one_line: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(QUOTED).collect();
    if text.trim().chars().count() > QUOTED { format!("{one_line}…") } else { one_line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_reply_is_read_as_the_json_inside() {
        assert_eq!(strip_fences("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_fences(" {\"a\": 1} "), "{\"a\": 1}");
    }

    #[test]
    fn a_reply_adds_its_fields_to_the_item() {
        assert_eq!(
            merge(json!({"id": "A-1", "amount": 5}), json!({"score": 0.8, "amount": 6})),
            json!({"id": "A-1", "amount": 6, "score": 0.8})
        );
        assert_eq!(merge(json!([1]), json!({"score": 1})), json!({"score": 1}));
    }

    #[test]
    fn the_request_asks_for_the_schema_and_falls_back_to_any_object() {
        let agent = LlmAgent {
            url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key_env: None,
            prompt: "Score it.".into(),
            items: None,
            output_schema: Some(json!({"type": "object"})),
            max_concurrency: 1,
            temperature: Some(0.0),
        };
        let strict: Value = serde_json::from_slice(&request_body(&agent, "{}", true)).unwrap();
        assert_eq!(strict["response_format"]["type"], "json_schema");
        assert_eq!(strict["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
        assert_eq!(strict["messages"][0], json!({"role": "system", "content": "Score it."}));
        assert_eq!(strict["temperature"], json!(0.0));
        let loose: Value = serde_json::from_slice(&request_body(&agent, "{}", false)).unwrap();
        assert_eq!(loose["response_format"], json!({"type": "json_object"}));
    }
}
