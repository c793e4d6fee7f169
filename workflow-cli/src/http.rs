//! A client of the admin endpoint an engine serves on loopback (see
//! `workflow_runtime::admin`): HTTP/1.1 through hyper, one request per connection, JSON bodies,
//! no TLS.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// The longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole exchange may take. A cancel waits for the run's task to journal the
/// cancellation, and the endpoint gives each connection 10 s to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a journal of many thousand steps fits.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// What a path segment or query value keeps as it is: the unreserved characters of RFC 3986.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Sends `method target` to `addr` (with `Authorization: Bearer token` when given) and decodes
/// the JSON body of a 200 answer.
pub(crate) async fn request<T: DeserializeOwned>(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Result<T, HttpError> {
    let (status, body) =
        tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, method, target, token))
            .await
            .map_err(|_| {
                HttpError::Transport(format!(
                    "{method} {target}: no answer from {addr} within {REQUEST_TIMEOUT:?}"
                ))
            })??;
    let body = interpret(status, body)?;
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::Malformed(format!("{method} {target}: {e}")))
}

/// One request on a connection of its own: the answer's status and body.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Result<(u16, Bytes), HttpError> {
    let transport = |e: &dyn std::fmt::Display| HttpError::Transport(format!("{addr}: {e}"));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::Transport(format!("{addr}: connection timed out")))?
        .map_err(|e| transport(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&e))?;
    // The connection is driven beside the request; it ends with the answer.
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header(HOST, addr.to_string())
        .header(ACCEPT, "application/json");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| HttpError::Malformed(format!("{method} {target}: {e}")))?;
    let answer = sender.send_request(request).await.map_err(|e| {
        if e.is_incomplete_message() {
            HttpError::Transport("the endpoint closed the connection without answering".into())
        } else {
            transport(&e)
        }
    })?;
    let status = answer.status().as_u16();
    let body = Limited::new(answer.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                HttpError::Malformed(format!("the answer exceeds {MAX_RESPONSE_BYTES} bytes"))
            } else {
                HttpError::Transport(format!("{addr}: the answer was cut: {e}"))
            }
        })?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// The body of a 200 answer; any other status becomes an error carrying the body's `error`
/// message (or the body as received).
fn interpret(status: u16, body: Bytes) -> Result<Bytes, HttpError> {
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
    fn answers_other_than_200_carry_the_endpoints_message() {
        let ok = interpret(200, Bytes::from_static(b"true")).unwrap();
        assert_eq!(&ok[..], b"true");
        match interpret(401, Bytes::from_static(br#"{"error":"needs a token"}"#)) {
            Err(HttpError::Status { status, message }) => {
                assert_eq!(status, 401);
                assert_eq!(message, "needs a token");
            }
            other => panic!("expected a 401, got {other:?}"),
        }
        match interpret(502, Bytes::from_static(b"bad gateway")) {
            Err(HttpError::Status { status, message }) => {
                assert_eq!((status, message.as_str()), (502, "bad gateway"));
            }
            other => panic!("expected a 502, got {other:?}"),
        }
    }
}
