//! A task against an HTTP endpoint: POST `{url}/{action}` with the input as JSON; a 2xx JSON answer is the
//! output; anything else, or no answer in time, is a failure. Redirects are followed only within the origin
//! and only when they keep the POST (307, 308): anything else would send the body, or drop it, somewhere the
//! registry never named.

use std::time::{Duration, Instant};

use ureq::http::Uri;

use super::supervise::{Waited, timed_out};
use super::{Attempt, Ending, Execution, Executor};

/// Used when neither the task nor the route sets a timeout: an HTTP call must not hang a run forever.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(300);
/// Same-origin 307/308 hops followed before the attempt fails: a loop must not spin until the timeout.
pub const MAX_REDIRECTS: usize = 5;

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

    fn default_timeout(&self) -> Option<Duration> {
        Some(DEFAULT_HTTP_TIMEOUT)
    }
}

/// What one answer asks of the caller.
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    /// Not a redirect: the answer is the result.
    None,
    /// POST the same body and headers again, to this URL.
    Follow(String),
    /// The attempt fails with this message.
    Refuse(String),
}

/// Decides what a `status` with `location` from `from` means. Only same-origin 307/308 are followed: they are
/// the redirects that keep the method and the body; 301/302/303 would turn the POST into a GET without its
/// body, and another origin would receive the input and the idempotency key it was never meant to get.
fn redirect(from: &str, status: u16, location: Option<&str>) -> Redirect {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Redirect::None;
    }
    let Some(target) = location.and_then(|location| resolve(from, location)) else {
        return Redirect::Refuse(format!(
            "HTTP {status} without a usable Location header ({}): the service must answer with a 2xx",
            location.unwrap_or("none")
        ));
    };
    if origin(from) != origin(&target) {
        return Redirect::Refuse(format!(
            "redirected to {target}: a redirect to another origin is not followed (point the registry's `url` there if that is where the service lives)"
        ));
    }
    if matches!(status, 307 | 308) {
        Redirect::Follow(target)
    } else {
        Redirect::Refuse(format!(
            "HTTP {status} redirected to {target}: only 307 and 308 are followed, as a {status} would resend the POST as a GET without its body (point the registry's `url` there, or answer 307/308)"
        ))
    }
}

/// `location` made absolute against `from` (RFC 3986 reference forms: absolute, `//authority…`, `/path…`,
/// relative path). `None` when it does not parse.
fn resolve(from: &str, location: &str) -> Option<String> {
    let base: Uri = from.parse().ok()?;
    let (scheme, authority) = (base.scheme_str()?, base.authority()?.as_str());
    let absolute = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let folder = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
        let folder = if folder.is_empty() { "/" } else { folder };
        format!("{scheme}://{authority}{folder}{location}")
    };
    let parsed: Uri = absolute.parse().ok()?;
    parsed.host()?;
    Some(absolute)
}

/// Scheme, host and port (the scheme's default when none is written), compared case-insensitively.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

async fn call(url: String, mut attempt: Attempt) -> Ending {
    let log = attempt.log.clone();
    // The engine's clock decides when the attempt's time is up (`attempt.stop`); the transport's own timeout is
    // a backstop that frees the blocking thread, which a stopped attempt can only abandon.
    let timeout = attempt.stop.timeout().unwrap_or(DEFAULT_HTTP_TIMEOUT);
    let key = attempt.idempotency_key();
    let body = serde_json::to_vec(&attempt.input).expect("JSON values serialise");
    log.engine_line(&format!("POST {url} ({} bytes, Idempotency-Key {key})", body.len()));
    let started = Instant::now();
    let hops = log.clone();
    // The answer becomes the output: it is held to the same limit as a process's `CONVEYOR_OUTPUT`.
    let max_answer = attempt.limits.max_output_size;
    let request = tokio::task::spawn_blocking(move || {
        // ureq must not follow redirects itself: it would follow any of them anywhere, as a GET.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let mut target = url;
        let mut followed = 0;
        loop {
            let mut response = agent
                .post(&target)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .header("Idempotency-Key", &key)
                .send(&body[..])?;
            let status = response.status().as_u16();
            let location = response.headers().get("location").and_then(|value| value.to_str().ok());
            match redirect(&target, status, location) {
                Redirect::None => {}
                Redirect::Refuse(message) => return Ok(Err(message)),
                Redirect::Follow(next) if followed == MAX_REDIRECTS => {
                    return Ok(Err(format!("more than {MAX_REDIRECTS} redirects (the last to {next})")));
                }
                Redirect::Follow(next) => {
                    hops.engine_line(&format!("HTTP {status}: POST again to {next}"));
                    followed += 1;
                    target = next;
                    continue;
                }
            }
            let text = response.body_mut().with_config().limit(max_answer).read_to_vec()?;
            return Ok(Ok((status, text)));
        }
    });
    let result = tokio::select! {
        result = request => result,
        reason = attempt.stop.requested() => {
            reason.announce(&log, "the request is abandoned");
            return reason.ending(Waited::Answer);
        }
    };
    let elapsed = started.elapsed().as_millis();
    let (status, body) = match result {
        Ok(Ok(Ok(answer))) => answer,
        Ok(Ok(Err(refused))) => {
            log.engine_line(&refused);
            return Ending::failed(refused);
        }
        Ok(Err(ureq::Error::Timeout(_))) => {
            let message = timed_out(timeout, Waited::Answer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_same_origin_307_or_308_is_followed() {
        let from = "http://Api.local:8080/svc/ok";
        let follow = |to: &str| Redirect::Follow(to.to_string());
        assert_eq!(redirect(from, 200, Some("/x")), Redirect::None);
        assert_eq!(redirect(from, 304, Some("/x")), Redirect::None);
        assert_eq!(redirect(from, 307, Some("/v2/ok")), follow("http://Api.local:8080/v2/ok"));
        assert_eq!(redirect(from, 308, Some("http://api.LOCAL:8080/a")), follow("http://api.LOCAL:8080/a"));
        assert_eq!(redirect(from, 307, Some("again")), follow("http://Api.local:8080/svc/again"));
        assert_eq!(redirect("http://h/svc", 307, Some("//h:80/y")), follow("http://h:80/y"));
        for other in ["http://api.local:8081/a", "https://api.local:8080/a", "//elsewhere/a"] {
            let Redirect::Refuse(message) = redirect(from, 307, Some(other)) else { panic!("{other} is followed") };
            assert!(message.contains("a redirect to another origin is not followed"), "{message}");
        }
        let Redirect::Refuse(message) = redirect(from, 302, Some("/x")) else { panic!("a 302 is followed") };
        assert!(message.starts_with("HTTP 302 redirected to http://Api.local:8080/x: only 307 and 308"), "{message}");
        let Redirect::Refuse(message) = redirect(from, 307, None) else { panic!("no Location is followed") };
        assert!(message.starts_with("HTTP 307 without a usable Location header"), "{message}");
    }
}
