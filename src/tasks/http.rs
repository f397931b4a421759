//! A task against an HTTP endpoint: POST `{url}/{action}` with the input as JSON; a 2xx JSON answer is the
//! output; anything else, or no answer in time, is a failure.

use std::time::{Duration, Instant};

use super::{Attempt, Ending, Execution, Executor};

/// Used when neither the task nor the route sets a timeout: an HTTP call must not hang a run forever.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(300);

pub struct HttpExecutor {
    pub url: String,
}

impl Executor for HttpExecutor {
    fn execute(&self, attempt: Attempt) -> Execution {
        let url = match &attempt.action {
            Some(action) if !action.is_empty() => format!("{}/{}", self.url.trim_end_matches('/'), action),
            _ => self.url.clone(),
        };
        Box::pin(call(url, attempt))
    }
}

async fn call(url: String, mut attempt: Attempt) -> Ending {
    let log = attempt.log.clone();
    let timeout = attempt.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT);
    let key = attempt.idempotency_key();
    let body = serde_json::to_vec(&attempt.input).expect("JSON values serialise");
    log.engine_line(&format!("POST {url} ({} bytes, Idempotency-Key {key})", body.len()));
    let started = Instant::now();
    // The answer becomes the output: it is held to the same limit as a process's `CONVEYOR_OUTPUT`.
    let max_answer = attempt.limits.max_output_size;
    let request = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        let response = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("Idempotency-Key", &key)
            .send(&body[..]);
        response.and_then(|mut response| {
            let status = response.status().as_u16();
            let text = response.body_mut().with_config().limit(max_answer).read_to_vec()?;
            Ok((status, text))
        })
    });
    let result = tokio::select! {
        result = request => result,
        _ = attempt.cancel.cancelled() => {
            log.engine_line("cancelled: the request is abandoned");
            return Ending::Cancelled;
        }
    };
    let elapsed = started.elapsed().as_millis();
    let (status, body) = match result {
        Ok(Ok(answer)) => answer,
        Ok(Err(ureq::Error::Timeout(_))) => {
            let message = format!("no answer within {}", humantime::format_duration(timeout));
            log.engine_line(&message);
            return Ending::failed(message);
        }
        Ok(Err(error)) => {
            let message = format!("request failed: {error}");
            log.engine_line(&message);
            return Ending::failed(message);
        }
        Err(error) => return Ending::failed(format!("request task failed: {error}")),
    };
    let text = String::from_utf8_lossy(&body);
    for line in text.lines().take(200) {
        log.line(super::Stream::Stdout, line);
    }
    log.engine_line(&format!("HTTP {status} in {elapsed} ms"));
    if !(200..300).contains(&status) {
        let excerpt: String = text.chars().take(200).collect();
        return Ending::Failed { error: format!("HTTP {status}: {}", excerpt.trim()), exit_code: None };
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ending::Succeeded { output: serde_json::Value::Null };
    }
    match serde_json::from_slice(&body) {
        Ok(output) => Ending::Succeeded { output },
        Err(error) => {
            let message = format!("HTTP {status} answer is not valid JSON: {error}");
            log.engine_line(&message);
            Ending::failed(message)
        }
    }
}
