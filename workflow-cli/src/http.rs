//! A client of the admin endpoint an engine serves on loopback (see
//! `workflow_runtime::admin`): HTTP/1.1, one request per connection, JSON bodies, no TLS.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole exchange may take. A cancel waits for the run's task to journal the
/// cancellation, and the endpoint gives each connection 10 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a journal of many thousand steps fits.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why an exchange with the endpoint failed.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// No answer: refused, timed out, or cut.
    Transport(String),
    /// An answer with a status other than 200, and the message of its `error` field.
    Status {
        /// The HTTP status.
        status: u16,
        /// The endpoint's message, or the body as received.
        message: String,
    },
    /// An answer that is not what the endpoint sends.
    Malformed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Transport(detail) => f.write_str(detail),
            HttpError::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            HttpError::Malformed(detail) => write!(f, "malformed answer: {detail}"),
        }
    }
}

/// Percent-encodes `text` for one path segment or query value: everything but the unreserved
/// characters of RFC 3986 (so `/`, `+`, `%`, spaces and non-ASCII are all escaped).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Sends `method target` to `addr` (with `Authorization: Bearer token` when given) and decodes
/// the JSON body of a 200 answer.
pub(crate) async fn request<T: DeserializeOwned>(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Result<T, HttpError> {
    let body = tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, method, target, token))
        .await
        .map_err(|_| {
            HttpError::Transport(format!(
                "{method} {target}: no answer from {addr} within {REQUEST_TIMEOUT:?}"
            ))
        })??;
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::Malformed(format!("{method} {target}: {e}")))
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Result<Vec<u8>, HttpError> {
    let transport = |e: std::io::Error| HttpError::Transport(format!("{addr}: {e}"));
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::Transport(format!("{addr}: connection timed out")))?
        .map_err(transport)?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\naccept: application/json\r\ncontent-length: 0\r\nconnection: close\r\n"
    );
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(transport)?;
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(transport)?;
        if n == 0 {
            break;
        }
        if answer.len() + n > MAX_RESPONSE_BYTES {
            return Err(HttpError::Malformed(format!(
                "the answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    parse_response(&answer)
}

/// Splits an HTTP/1.1 answer into its status and body; the body of a non-200 answer becomes
/// the error's message.
fn parse_response(answer: &[u8]) -> Result<Vec<u8>, HttpError> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            if answer.is_empty() {
                HttpError::Transport("the endpoint closed the connection without answering".into())
            } else {
                HttpError::Malformed("no end of headers".into())
            }
        })?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut body = answer[split + 4..].to_vec();
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    if let Some(length) = length {
        if body.len() < length {
            return Err(HttpError::Transport(format!(
                "the answer was cut after {} of {length} bytes",
                body.len()
            )));
        }
        body.truncate(length);
    }
    if status == 200 {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err(HttpError::Status { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_escapes_everything_a_path_segment_cannot_hold() {
        assert_eq!(percent_encode("run-1_a.b~"), "run-1_a.b~");
        assert_eq!(percent_encode("parent/child 2"), "parent%2Fchild%202");
        assert_eq!(percent_encode("a+b%c?d#e&f"), "a%2Bb%25c%3Fd%23e%26f");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn answers_split_into_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue";
        assert_eq!(parse_response(ok).unwrap(), b"true");
        let refused =
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\r\n{\"error\":\"needs a token\"}";
        match parse_response(refused) {
            Err(HttpError::Status { status, message }) => {
                assert_eq!(status, 401);
                assert_eq!(message, "needs a token");
            }
            other => panic!("expected a 401, got {other:?}"),
        }
        assert!(matches!(parse_response(b""), Err(HttpError::Transport(_))));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
            Err(HttpError::Transport(_))
        ));
    }
}
