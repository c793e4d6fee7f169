//! The real-API client (`src/llm_http.rs`) against a local scripted HTTP/1.1 server: the
//! classes, attempts and waits of each kind of failure, both providers' request and response
//! shapes, the idempotency key and the usage reported to the engine.
//!
//! The steps run under tokio's paused clock, so a 25 s backoff takes no time and every wait is
//! measured exactly. The server runs on its own thread, in its own runtime, on the real clock,
//! so that the test's runtime holds no timer but the step's retry waits. With the server's time
//! limits as timers of the test's runtime instead, they ran on the paused clock: a 5 s accept
//! limit expired during the step's 7 s Retry-After wait, and the later attempts met a closed
//! port (transient errors, backoff waits instead of 7 s). Longer limits passed, but only
//! because loopback I/O is ready whenever the runtime looks: tokio advances a paused clock to
//! the next timer each time the runtime parks with nothing ready, a socket wait included.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use workflow_examples::llm_http::{LlmClient, Provider};
use workflow_runtime::{
    BoxFuture, Engine, Error, StepError, StepErrorKind, StepStatus, Usage, Workflow,
    WorkflowFailure, idempotency_key, step,
};

const KEY: &str = "test-key-123";
const MODEL: &str = "test-model";

/// Real time the server waits for each connection, request or write before it gives up, so
/// that a test whose client never comes fails instead of hanging.
const SERVER_PATIENCE: Duration = Duration::from_secs(5);

/// The most a request may weigh; these are a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A scripted response.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Reply {
        self.headers.push((name, value));
        self
    }
}

fn api_error(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

fn anthropic_ok() -> Reply {
    Reply::new(
        200,
        json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-20250101",
            "content": [
                { "type": "text", "text": "Hello " },
                { "type": "text", "text": "there" }
            ],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": 12, "output_tokens": 30 }
        }),
    )
}

fn openai_ok() -> Reply {
    Reply::new(
        200,
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-test-2024-07-18",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": "Hi!", "refusal": null },
                "finish_reason": "stop"
            }],
            "usage": { "prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12 }
        }),
    )
}

/// A request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A server on 127.0.0.1 that answers one connection per scripted reply, in order, then stops.
struct Server {
    url: String,
    thread: JoinHandle<Result<Vec<Seen>, String>>,
}

impl Server {
    fn start(replies: Vec<Reply>) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("server runtime: {e}"))?
                .block_on(serve(listener, replies))
        });
        Server { url, thread }
    }

    /// Waits for the server to answer its whole script and returns the requests it read.
    fn requests(self) -> Vec<Seen> {
        match self.thread.join() {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => panic!("the test server failed: {error}"),
            Err(_) => panic!("the test server panicked"),
        }
    }
}

async fn serve(listener: std::net::TcpListener, replies: Vec<Reply>) -> Result<Vec<Seen>, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let mut seen = Vec::with_capacity(replies.len());
    for (n, reply) in replies.iter().enumerate() {
        let n = n + 1;
        let (mut socket, _) = tokio::time::timeout(SERVER_PATIENCE, listener.accept())
            .await
            .map_err(|_| format!("no connection for request #{n} within {SERVER_PATIENCE:?}"))?
            .map_err(|e| format!("accept #{n}: {e}"))?;
        let request = tokio::time::timeout(SERVER_PATIENCE, read_request(&mut socket))
            .await
            .map_err(|_| format!("request #{n} not read within {SERVER_PATIENCE:?}"))??;
        seen.push(request);
        tokio::time::timeout(SERVER_PATIENCE, write_reply(&mut socket, reply))
            .await
            .map_err(|_| format!("reply #{n} not written within {SERVER_PATIENCE:?}"))?
            .map_err(|e| format!("reply #{n}: {e}"))?;
    }
    Ok(seen)
}

async fn read_request(socket: &mut TcpStream) -> Result<Seen, String> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        read_more(socket, &mut buffer).await?;
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, path) = match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), Some("HTTP/1.1")) => (method.to_owned(), path.to_owned()),
        _ => return Err(format!("not an HTTP/1.1 request line: {request_line:?}")),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| {
            value
                .parse()
                .map_err(|_| format!("content-length {value:?}"))
        })
        .transpose()?
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        read_more(socket, &mut buffer).await?;
    }
    let body = serde_json::from_slice(&buffer[body_start..body_start + length])
        .map_err(|e| format!("request body is not JSON: {e}"))?;
    Ok(Seen {
        method,
        path,
        headers,
        body,
    })
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let read = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if read == 0 {
        return Err("the client closed the connection mid-request".into());
    }
    buffer.extend_from_slice(&chunk[..read]);
    if buffer.len() > MAX_REQUEST_BYTES {
        return Err(format!("request larger than {MAX_REQUEST_BYTES} bytes"));
    }
    Ok(())
}

async fn write_reply(socket: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(reply.body.as_bytes()).await?;
    socket.shutdown().await
}

fn client(provider: Provider, url: &str) -> LlmClient {
    LlmClient::new(provider, url, KEY, MODEL)
}

/// Runs step `ask` outside an engine; returns its outcome and the waits between its attempts,
/// measured on the paused clock as each attempt starts.
async fn ask(client: &LlmClient) -> (Result<(String, Usage), StepError>, Vec<Duration>) {
    let starts = Mutex::new(Vec::new());
    let origin = Instant::now();
    let result = step("ask")
        .run(|| {
            starts.lock().unwrap().push(origin.elapsed());
            async {
                client
                    .complete("hi", 50)
                    .await
                    .map(|completion| (completion.text, completion.usage))
            }
        })
        .await;
    let starts = starts.into_inner().unwrap();
    (result, starts.windows(2).map(|w| w[1] - w[0]).collect())
}

fn near(actual: Duration, expected_secs: f64, spread: f64) -> bool {
    let a = actual.as_secs_f64();
    a >= expected_secs * (1.0 - spread) - 1e-9 && a <= expected_secs * (1.0 + spread) + 1e-9
}

/// Every attempt of one step sends the same key: that is what lets the provider deduplicate.
fn one_key_for_all(requests: &[Seen]) -> String {
    let key = requests[0]
        .header("idempotency-key")
        .expect("an Idempotency-Key header inside a step")
        .to_owned();
    for request in requests {
        assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
    }
    assert!(key.ends_with("/ask"), "{key}");
    key
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_exactly_its_retry_after_and_gives_up_after_five_attempts() {
    let limited = Reply::new(
        429,
        api_error("rate_limit_error", "Number of requests exceeded"),
    )
    .header("retry-after", "7");
    let server = Server::start(vec![limited; 5]);
    let (result, waits) = ask(&client(Provider::Anthropic, &server.url)).await;

    let error = result.unwrap_err();
    assert_eq!(error.kind, StepErrorKind::RateLimited);
    assert_eq!(error.attempts, 5);
    assert!(
        error
            .message
            .contains("HTTP 429: Number of requests exceeded"),
        "{}",
        error.message
    );
    assert_eq!(waits, vec![Duration::from_secs(7); 4]);
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    one_key_for_all(&requests);
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried_three_times_with_the_default_backoff() {
    let overloaded = Reply::new(503, api_error("server_error", "The engine is overloaded"));
    let server = Server::start(vec![overloaded; 4]);
    let (result, waits) = ask(&client(Provider::OpenAi, &server.url)).await;

    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Server, 4));
    assert!(error.message.contains("HTTP 503"), "{}", error.message);
    assert_eq!(waits.len(), 3);
    for (wait, expected) in waits.iter().zip([1.0, 5.0, 25.0]) {
        assert!(near(*wait, expected, 0.1), "{waits:?}");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    one_key_for_all(&requests);
}

#[tokio::test(start_paused = true)]
async fn a_500_is_retried_and_the_next_good_answer_returned() {
    let failed = Reply::new(500, api_error("api_error", "Internal server error"));
    let server = Server::start(vec![failed, anthropic_ok()]);
    let (result, waits) = ask(&client(Provider::Anthropic, &server.url)).await;

    let (text, usage) = result.unwrap();
    assert_eq!(text, "Hello there");
    assert_eq!(usage, Usage::tokens(MODEL, 12, 30));
    assert_eq!(waits.len(), 1);
    assert!(near(waits[0], 1.0, 0.1), "{waits:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_401_is_an_auth_failure_and_is_not_retried() {
    let refused = Reply::new(
        401,
        json!({ "error": { "message": "Incorrect API key provided", "type": "invalid_request_error" } }),
    );
    let server = Server::start(vec![refused]);
    let (result, waits) = ask(&client(Provider::OpenAi, &server.url)).await;

    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Auth, 1));
    assert!(
        error
            .message
            .contains("HTTP 401: Incorrect API key provided"),
        "{}",
        error.message
    );
    assert!(waits.is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_400_is_a_client_error_and_is_not_retried() {
    let rejected = Reply::new(
        400,
        api_error("invalid_request_error", "max_tokens: Field required"),
    );
    let server = Server::start(vec![rejected]);
    let (result, waits) = ask(&client(Provider::Anthropic, &server.url)).await;

    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Client, 1));
    assert!(
        error
            .message
            .contains("HTTP 400: max_tokens: Field required"),
        "{}",
        error.message
    );
    assert!(waits.is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_200_is_a_schema_error_retried_once_that_names_the_missing_field() {
    // OpenAI: no `choices` at all, then a body that is not JSON.
    let no_choices = Reply::new(
        200,
        json!({ "usage": { "prompt_tokens": 9, "completion_tokens": 0 } }),
    );
    let not_json = Reply {
        body: "<html>gateway</html>".into(),
        ..no_choices.clone()
    };
    let server = Server::start(vec![no_choices, not_json]);
    let (result, waits) = ask(&client(Provider::OpenAi, &server.url)).await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Schema, 2));
    assert!(
        error.message.contains("body is not JSON"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("<html>gateway</html>"),
        "{}",
        error.message
    );
    assert_eq!(waits.len(), 1);
    assert!(near(waits[0], 1.0, 0.1), "{waits:?}");
    assert_eq!(server.requests().len(), 2);

    // Anthropic: a usage but no `text` block, twice; the last attempt's error is kept.
    let no_text = Reply::new(
        200,
        json!({ "content": [], "usage": { "input_tokens": 12, "output_tokens": 0 } }),
    );
    let server = Server::start(vec![no_text.clone(), no_text]);
    let (result, _) = ask(&client(Provider::Anthropic, &server.url)).await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Schema, 2));
    assert!(
        error
            .message
            .contains("`content[]` has no block of type \"text\""),
        "{}",
        error.message
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_transient_and_retried_with_the_default_backoff() {
    // A port nothing listens on: bound, then released.
    let free: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (result, waits) = ask(&client(Provider::Anthropic, &format!("http://{free}"))).await;

    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Transient, 4));
    assert!(
        error.message.to_lowercase().contains("connect"),
        "{}",
        error.message
    );
    for (wait, expected) in waits.iter().zip([1.0, 5.0, 25.0]) {
        assert!(near(*wait, expected, 0.1), "{waits:?}");
    }
}

/// One step `ask` with a client of the provider and base URL given as input.
struct AskOnce;

impl Workflow for AskOnce {
    type Input = (Provider, String);
    type Output = String;
    const NAME: &'static str = "ask_once";

    fn run(
        (provider, base_url): Self::Input,
    ) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let client = client(provider, &base_url);
            step("ask")
                .run(|| async { client.complete("hi", 50).await.map(|c| c.text) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))
        })
    }
}

/// Runs [`AskOnce`] as run `run-1` of an engine that prices [`MODEL`] at $3 / $15 per million
/// tokens; returns its result and its journal.
async fn in_engine(
    provider: Provider,
    server: &Server,
) -> (Result<String, Error>, Vec<workflow_runtime::StepRecord>) {
    let engine = Engine::builder().price(MODEL, 3.0, 15.0).in_memory();
    let run = engine
        .start::<AskOnce>("run-1", (provider, server.url.clone()))
        .await
        .expect("start");
    let result = run.result().await;
    (result, engine.journal("run-1").await.expect("journal"))
}

fn cost(input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * 3.0 + output_tokens as f64 * 15.0) / 1e6
}

#[tokio::test(start_paused = true)]
async fn anthropic_success_journals_the_text_priced_usage_and_sends_the_step_key() {
    let server = Server::start(vec![anthropic_ok()]);
    let (result, journal) = in_engine(Provider::Anthropic, &server).await;

    assert_eq!(result.unwrap(), "Hello there");
    assert_eq!(journal.len(), 1);
    let record = &journal[0];
    assert_eq!((record.status, record.attempts), (StepStatus::Completed, 1));
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (12, 30)
    );
    assert_eq!(record.usage.model.as_deref(), Some(MODEL));
    assert!(
        (record.usage.cost_usd - cost(12, 30)).abs() < 1e-12,
        "{:?}",
        record.usage
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("idempotency-key"), Some("run-1/0/ask"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(idempotency_key("run-1", 0, "ask").as_str())
    );
    assert_eq!(
        request.body,
        json!({
            "model": MODEL,
            "max_tokens": 50,
            "messages": [{ "role": "user", "content": "hi" }]
        })
    );
}

#[tokio::test(start_paused = true)]
async fn openai_success_journals_the_text_priced_usage_and_sends_the_step_key() {
    let server = Server::start(vec![openai_ok()]);
    let (result, journal) = in_engine(Provider::OpenAi, &server).await;

    assert_eq!(result.unwrap(), "Hi!");
    let record = &journal[0];
    assert_eq!((record.status, record.attempts), (StepStatus::Completed, 1));
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (9, 3)
    );
    assert_eq!(record.usage.model.as_deref(), Some(MODEL));
    assert!(
        (record.usage.cost_usd - cost(9, 3)).abs() < 1e-12,
        "{:?}",
        record.usage
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(request.header("authorization"), Some("Bearer test-key-123"));
    assert_eq!(request.header("x-api-key"), None);
    assert_eq!(request.header("anthropic-version"), None);
    assert_eq!(request.header("idempotency-key"), Some("run-1/0/ask"));
    assert_eq!(
        request.body,
        json!({
            "model": MODEL,
            "max_tokens": 50,
            "messages": [{ "role": "user", "content": "hi" }]
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_billed_response_without_text_still_charges_the_run_for_every_attempt() {
    let no_text = Reply::new(
        200,
        json!({ "content": [{ "type": "tool_use", "id": "t1" }], "usage": { "input_tokens": 12, "output_tokens": 4 } }),
    );
    let server = Server::start(vec![no_text.clone(), no_text]);
    let (result, journal) = in_engine(Provider::Anthropic, &server).await;

    assert!(result.is_err());
    let record = &journal[0];
    assert_eq!((record.status, record.attempts), (StepStatus::Failed, 2));
    assert_eq!(
        record.error.as_ref().map(|e| e.kind),
        Some(StepErrorKind::Schema)
    );
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (24, 8)
    );
    assert!(
        (record.usage.cost_usd - cost(24, 8)).abs() < 1e-12,
        "{:?}",
        record.usage
    );
    assert_eq!(server.requests().len(), 2);
}
