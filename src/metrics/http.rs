//! Serving `/metrics`. A scrape is one `GET` per interval, and nothing else is served, so this answers it on
//! tokio's listener (tokio is already in the tree) instead of taking in an HTTP stack: hyper brings http,
//! http-body, httparse, futures and more; tiny_http threads of its own and four crates. Each connection gets
//! one answer and is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::Scrape;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A request's head past this is not a scrape.
const HEAD_LIMIT: usize = 8 * 1024;
/// A client that does not finish its request by then is dropped, so it cannot hold a place.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered at once; more wait to be accepted.
const CONNECTIONS: usize = 8;

pub(super) fn spawn(listener: std::net::TcpListener, scrape: Scrape) {
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => return tracing::error!("metrics: cannot serve: {error}"),
        };
        let places = Arc::new(Semaphore::new(CONNECTIONS));
        loop {
            let Ok(place) = places.clone().acquire_owned().await else { return };
            match listener.accept().await {
                Ok((stream, _)) => {
                    let scrape = scrape.clone();
                    tokio::spawn(async move {
                        answer(stream, scrape).await;
                        drop(place);
                    });
                }
                Err(error) => {
                    // Out of file descriptors, say: try again shortly rather than spin.
                    tracing::warn!("metrics: accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

async fn answer(mut stream: TcpStream, scrape: Scrape) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return respond(&mut stream, "400 Bad Request", "text/plain", b"expected an HTTP request\n").await,
    };
    match route(&head) {
        Route::Metrics { head_only } => {
            let rendered = tokio::task::spawn_blocking(move || scrape.render()).await;
            match rendered {
                Ok(Ok(page)) => {
                    let body = if head_only { &b""[..] } else { page.as_bytes() };
                    respond_sized(&mut stream, "200 OK", CONTENT_TYPE, body, page.len()).await
                }
                Ok(Err(error)) => {
                    tracing::warn!("metrics: a scrape failed: {error}");
                    let body = format!("the metrics could not be read: {error}\n");
                    respond(&mut stream, "500 Internal Server Error", "text/plain", body.as_bytes()).await
                }
                Err(_) => respond(&mut stream, "500 Internal Server Error", "text/plain", b"the scrape failed\n").await,
            }
        }
        Route::NotFound => {
            respond(&mut stream, "404 Not Found", "text/plain", b"not found: metrics are at /metrics\n").await
        }
        Route::WrongMethod => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain", b"expected GET /metrics\n").await
        }
        Route::Bad => respond(&mut stream, "400 Bad Request", "text/plain", b"expected an HTTP request\n").await,
    }
}

/// The request's head (up to the blank line), or `None` if the client closed or sent too much.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..read]);
        if head.windows(4).any(|window| window == b"\r\n\r\n") || head.windows(2).any(|window| window == b"\n\n") {
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        if head.len() > HEAD_LIMIT {
            return None;
        }
    }
}

#[derive(Debug, PartialEq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    WrongMethod,
    Bad,
}

fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next()) else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Route::NotFound;
    }
    match method {
        "GET" => Route::Metrics { head_only: false },
        "HEAD" => Route::Metrics { head_only: true },
        _ => Route::WrongMethod,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    respond_sized(stream, status, content_type, body, body.len()).await
}

async fn respond_sized(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8], length: usize) {
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{allow}Connection: close\r\n\r\n"
    );
    // The client may have gone; there is nobody to tell.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_or_head_of_metrics_is_served() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics { head_only: false });
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics { head_only: false });
        assert_eq!(route("HEAD /metrics HTTP/1.1\r\n\r\n"), Route::Metrics { head_only: true });
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::WrongMethod);
        assert_eq!(route("hello\r\n\r\n"), Route::Bad);
        assert_eq!(route("GET /metrics SPDY/3\r\n\r\n"), Route::Bad);
    }
}
