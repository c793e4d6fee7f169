//! The admin endpoint: lets an inspector (the `wf` command) read and steer the runs of an
//! engine that holds the journal file, which redb lets only one process open.
//!
//! It speaks plain HTTP/1.1 (hyper) with JSON bodies, one request per connection. Every
//! request, reads included (they show every run's inputs and outputs), needs
//! `Authorization: Bearer <token>`; anything else is answered 401. The token is 32 bytes from the operating system's random
//! source, generated when the endpoint starts and written, with the address, to an info file
//! only the owner can read; it is compared in constant time.
//!
//! The endpoint listens on a loopback address. Another address (`0.0.0.0`, a LAN interface) is
//! refused unless [`AdminOptions::allow_non_loopback`] says you mean it: the traffic is plain
//! HTTP, token included, so put TLS or an SSH tunnel in front of it.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /runs` | every [`RunRecord`](crate::RunRecord) |
//! | `GET /runs/{id}` | one run |
//! | `GET /runs/{id}/journal` | its [`StepRecord`](crate::StepRecord)s |
//! | `GET /runs/{id}/history?after=N&limit=M` | a [`HistoryPage`](crate::HistoryPage) |
//! | `GET /ledger?by=workflow` or `?by=tag:KEY`, optional `&since_us=T` | [`LedgerRow`](crate::LedgerRow)s |
//! | `POST /runs/{id}/cancel`, `/retry`, `/resume` | `{"changed": bool}` |
//! | `POST /runs/{id}/retry?force=true` | [`Engine::force_retry`](crate::Engine::force_retry); `/retry` alone answers 409 where it refuses |
//!
//! Run ids in paths are percent-encoded (child run ids contain `/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::engine::Engine;
use crate::error::AdminError;
use crate::error::Error;
use crate::history::LedgerGroup;

/// Where an admin endpoint listens and the token its commands need: the content of the info
/// file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminInfo {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The bearer token every request needs.
    pub token: String,
}

impl AdminInfo {
    /// The info file of the journal at `db`: beside it, named `<file>.admin`.
    pub fn path_for(db: impl AsRef<Path>) -> PathBuf {
        let db = db.as_ref();
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".admin");
        db.with_file_name(name)
    }

    /// Reads an info file.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<AdminInfo> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

/// A running admin endpoint. Dropping it stops the endpoint and removes its info file.
#[derive(Debug)]
pub struct AdminServer {
    info: AdminInfo,
    info_file: PathBuf,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Where it listens and its token.
    pub fn info(&self) -> &AdminInfo {
        &self.info
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.info_file);
    }
}

/// How an admin endpoint is served: see [`Engine::serve_admin_with`].
///
/// ```
/// use workflow_runtime::admin::AdminOptions;
/// // Listening beyond this machine is a decision, spelled out.
/// let options = AdminOptions::new().allow_non_loopback(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminOptions {
    allow_non_loopback: bool,
}

impl AdminOptions {
    /// The defaults: loopback addresses only.
    pub fn new() -> Self {
        AdminOptions::default()
    }

    /// Lets the endpoint listen on an address that is not a loopback one (`0.0.0.0`, a LAN
    /// interface). Off by default: the endpoint serves every run's inputs and outputs and lets
    /// its caller cancel runs, over plain HTTP, so anyone who can see the traffic can read the
    /// token. Turn it on behind TLS, an SSH tunnel or a private network.
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
        self
    }
}

/// 32 bytes from the operating system's random source, in hex: never derived from the clock,
/// so nobody can recompute it from the time the endpoint started.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Whether `given` is `token`, in a time that depends on the token's length only (which is
/// public: 64 hex digits), never on where the first difference is.
fn token_matches(given: &str, token: &str) -> bool {
    let (given, token) = (given.as_bytes(), token.as_bytes());
    let mut difference = given.len() ^ token.len();
    for (i, expected) in token.iter().enumerate() {
        let byte = given.get(i).copied().unwrap_or(!expected);
        difference |= usize::from(byte ^ expected);
    }
    std::hint::black_box(difference) == 0
}

fn write_info_file(path: &Path, info: &AdminInfo) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // An older file may have had wider permissions: narrow them before writing the token.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(serde_json::to_string(info)?.as_bytes())?;
    file.sync_all()
}

impl Engine {
    /// Serves the admin endpoint on `addr`, a loopback address such as `127.0.0.1:0`, and
    /// writes its address and a fresh token to `info_file`, readable by the owner only;
    /// [`AdminInfo::path_for`] names the file the `wf` inspector looks for. Another address is
    /// an error: see [`serve_admin_with`](Engine::serve_admin_with).
    pub async fn serve_admin(
        &self,
        addr: SocketAddr,
        info_file: impl AsRef<Path>,
    ) -> Result<AdminServer, Error> {
        self.serve_admin_with(addr, info_file, AdminOptions::default())
            .await
    }

    /// [`serve_admin`](Engine::serve_admin) with options: an address that is not a loopback
    /// one needs [`AdminOptions::allow_non_loopback`].
    pub async fn serve_admin_with(
        &self,
        addr: SocketAddr,
        info_file: impl AsRef<Path>,
        options: AdminOptions,
    ) -> Result<AdminServer, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source: std::io::Error| Error::Admin(AdminError::Io { what, source })
        };
        // `::ffff:127.0.0.1` is loopback too.
        if !addr.ip().to_canonical().is_loopback() && !options.allow_non_loopback {
            return Err(Error::Admin(AdminError::NotLoopback { addr }));
        }
        let token = new_token().map_err(|e| {
            Error::Admin(AdminError::Random {
                detail: e.to_string(),
            })
        })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(io(&format!("binding {addr}")))?;
        let info = AdminInfo {
            addr: listener
                .local_addr()
                .map_err(io("reading the bound address"))?,
            token,
        };
        let info_file = info_file.as_ref().to_path_buf();
        write_info_file(&info_file, &info).map_err(io(&format!(
            "writing the info file {}",
            info_file.display()
        )))?;
        let engine = self.clone();
        let token = info.token.clone();
        let task = tokio::spawn(async move {
            // The connections belong to the accepting task: aborting it (dropping the
            // AdminServer) drops the set, which aborts them too.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                // Reap the finished ones, so the set holds only open connections.
                while connections.try_join_next().is_some() {}
                let engine = engine.clone();
                let token = token.clone();
                connections.spawn(serve_connection(stream, engine, token));
            }
        });
        Ok(AdminServer {
            info,
            info_file,
            task,
        })
    }
}

/// The largest request head accepted (hyper's smallest buffer is 8 KiB): requests carry no
/// body, and a head is a request line and a few headers.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

async fn serve_connection(stream: tokio::net::TcpStream, engine: Engine, token: String) {
    let service = service_fn(move |request| {
        let engine = engine.clone();
        let token = token.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&engine, &token, request).await) }
    });
    // A slow or silent client cannot hold a connection for long: its request head must arrive
    // within 10 s. Answering may take longer (a cancel waits until the cancellation is durable).
    // One request per connection, as clients that read to the end of the stream expect.
    let _ = http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A request, decoded: the path's segments and the query's pairs percent-decoded.
struct Request {
    method: Method,
    path: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
}

impl Request {
    fn new(request: &hyper::Request<Incoming>) -> Request {
        let uri = request.uri();
        Request {
            method: request.method().clone(),
            path: uri.path().to_owned(),
            segments: path_segments(uri.path()),
            query: query_pairs(uri.query().unwrap_or("")),
        }
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The segments of a path, each percent-decoded (`%2F` is a `/` inside a run id; `+` is a
/// plus).
fn path_segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// The pairs of a query string, as forms encode them (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The bearer token of an `Authorization` header, if there is one.
fn bearer(request: &hyper::Request<Incoming>) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("Bearer ")
}

async fn answer(
    engine: &Engine,
    token: &str,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    // Every route, reads included: they show every run's inputs and outputs.
    let authorized = bearer(&request).is_some_and(|given| token_matches(given, token));
    let (status, body) = if authorized {
        route(engine, &Request::new(&request)).await
    } else {
        let message = "every request needs `Authorization: Bearer <token>`; the token is in the engine's admin info file (`<journal>.admin`)";
        (401, serde_json::json!({"error": message}))
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == 401 {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn error_body(error: &Error) -> (u16, serde_json::Value) {
    let status = match error {
        Error::RunNotFound { .. } => 404,
        Error::OutcomeUnknown { .. } => 409,
        Error::ShuttingDown => 503,
        _ => 500,
    };
    (status, serde_json::json!({"error": error.to_string()}))
}

fn json<T: Serialize>(value: Result<T, Error>) -> (u16, serde_json::Value) {
    match value.map(|v| serde_json::to_value(v)) {
        Ok(Ok(value)) => (200, value),
        Ok(Err(e)) => (500, serde_json::json!({"error": e.to_string()})),
        Err(error) => error_body(&error),
    }
}

/// Answers an authorized request.
async fn route(engine: &Engine, request: &Request) -> (u16, serde_json::Value) {
    let query = |name: &str| request.query(name);
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["runs"]) => json(engine.runs().await),
        ("GET", ["runs", id]) => match engine.run(id).await {
            Ok(Some(run)) => json(Ok(run)),
            Ok(None) => error_body(&Error::RunNotFound {
                run_id: (*id).to_owned(),
            }),
            Err(e) => error_body(&e),
        },
        ("GET", ["runs", id, "journal"]) => json(engine.journal(id).await),
        ("GET", ["runs", id, "history"]) => {
            let after = query("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit = query("limit").and_then(|v| v.parse().ok()).unwrap_or(1000);
            json(engine.history(id, after, limit).await)
        }
        ("GET", ["ledger"]) => {
            let group = match query("by").unwrap_or("workflow") {
                "workflow" => LedgerGroup::Workflow,
                by => match by.strip_prefix("tag:") {
                    Some(tag) => LedgerGroup::Tag(tag.to_owned()),
                    None => {
                        let message = format!("by={by}: use `workflow` or `tag:KEY`");
                        return (400, serde_json::json!({"error": message}));
                    }
                },
            };
            let since = query("since_us")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|us| UNIX_EPOCH + Duration::from_micros(us));
            json(engine.ledger(group, since).await)
        }
        ("POST", ["runs", id, command]) => {
            let changed = match *command {
                "cancel" => engine.cancel(id).await,
                "retry" if query("force") == Some("true") => engine.force_retry(id).await,
                "retry" => engine.retry(id).await,
                "resume" => engine.resume(id).await,
                other => {
                    let message = format!("unknown command `{other}`: use cancel, retry or resume");
                    return (404, serde_json::json!({"error": message}));
                }
            };
            match changed {
                Ok(changed) => (200, serde_json::json!({"changed": changed})),
                Err(e) => error_body(&e),
            }
        }
        (method, _) => (
            if method == "GET" || method == "POST" {
                404
            } else {
                405
            },
            serde_json::json!({"error": format!("no route for {method} {}", request.path)}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_a_plus_in_paths_and_reads_it_as_a_space_in_queries() {
        assert_eq!(
            path_segments("/runs/family%2F0%2Fchild/journal"),
            ["runs", "family/0/child", "journal"]
        );
        assert_eq!(path_segments("/runs/a+b"), ["runs", "a+b"]);
        assert_eq!(path_segments("/runs/100%"), ["runs", "100%"]);
        assert_eq!(path_segments("/runs/%zz"), ["runs", "%zz"]);
        assert_eq!(
            query_pairs("by=tag%3Auser&note=a+b&empty"),
            [
                ("by".to_owned(), "tag:user".to_owned()),
                ("note".to_owned(), "a b".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
    }

    /// Sends `request` (a request line and headers) to `addr`; the status and the body.
    async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("{request}\r\n").as_bytes())
            .await
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, body.to_owned())
    }

    fn info_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "workflow-admin-{}-{name}-{}.admin",
            std::process::id(),
            new_token().unwrap()
        ))
    }

    #[tokio::test]
    async fn reads_without_the_token_exposed_every_run_and_are_now_401() {
        let engine = Engine::in_memory();
        let file = info_file("reads");
        let admin = engine
            .serve_admin("127.0.0.1:0".parse().unwrap(), &file)
            .await
            .unwrap();
        let addr = admin.info().addr;
        let token = admin.info().token.clone();
        let wrong_same_length = "0".repeat(token.len());
        for target in [
            "/runs",
            "/runs/a%2Fb",
            "/runs/a/journal",
            "/runs/a/history?after=0",
            "/ledger?by=workflow",
            "/nowhere",
        ] {
            for authorization in [
                String::new(),
                "authorization: Bearer \r\n".to_owned(),
                format!("authorization: Bearer {wrong_same_length}\r\n"),
                format!("authorization: Bearer {token}x\r\n"),
                format!("authorization: {token}\r\n"),
            ] {
                let request = format!("GET {target} HTTP/1.1\r\nhost: x\r\n{authorization}");
                let (status, body) = exchange(addr, &request).await;
                assert_eq!(status, 401, "{request:?}: {body}");
                assert!(body.contains("Authorization: Bearer <token>"), "{body}");
            }
        }
        let (status, body) = exchange(
            addr,
            &format!("GET /runs HTTP/1.1\r\nauthorization: Bearer {token}\r\n"),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "[]"));
        let (status, _) = exchange(
            addr,
            &format!("GET /runs/nope HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"),
        )
        .await;
        assert_eq!(status, 404);
        drop(admin);
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn binding_a_non_loopback_address_needs_the_opt_in() {
        let engine = Engine::in_memory();
        let file = info_file("bind");
        for addr in ["0.0.0.0:0", "[::]:0"] {
            let error = engine
                .serve_admin(addr.parse().unwrap(), &file)
                .await
                .expect_err("a non-loopback address is refused");
            assert!(
                matches!(error, Error::Admin(AdminError::NotLoopback { .. })),
                "a typed error of the endpoint, not of the journal: {error:?}"
            );
            let message = error.to_string();
            assert!(message.contains("allow_non_loopback"), "{message}");
            assert!(message.contains(addr), "{message}");
            assert!(!file.exists(), "nothing written for a refused address");
        }
        // Loopback, in any spelling, needs no opt-in.
        for addr in ["127.0.0.1:0", "[::1]:0", "[::ffff:127.0.0.1]:0"] {
            match engine.serve_admin(addr.parse().unwrap(), &file).await {
                Ok(admin) => drop(admin),
                // A machine without IPv6 cannot bind [::1]; the check passed all the same.
                Err(e) => assert!(!e.to_string().contains("allow_non_loopback"), "{e}"),
            }
        }
        let admin = engine
            .serve_admin_with(
                "0.0.0.0:0".parse().unwrap(),
                &file,
                AdminOptions::new().allow_non_loopback(true),
            )
            .await
            .expect("with the opt-in");
        assert!(admin.info().addr.ip().is_unspecified());
    }

    #[test]
    fn the_token_came_from_a_hash_of_the_clock_and_now_comes_from_the_os() {
        // Many tokens within the same few microseconds: a token derived from the clock would
        // repeat; 32 random bytes do not.
        let tokens: Vec<String> = (0..1000).map(|_| new_token().unwrap()).collect();
        let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        for token in &tokens {
            assert_eq!(token.len(), 64, "{token}");
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        }
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        let token = new_token().unwrap();
        assert!(token_matches(&token, &token));
        assert!(!token_matches("", &token));
        assert!(!token_matches(&token[..63], &token));
        assert!(!token_matches(&format!("{token}0"), &token));
        let mut last_differs = token.clone().into_bytes();
        last_differs[63] = if last_differs[63] == b'0' { b'1' } else { b'0' };
        assert!(!token_matches(
            &String::from_utf8(last_differs).unwrap(),
            &token
        ));
    }

    #[test]
    fn the_info_file_sits_beside_the_journal() {
        assert_eq!(
            AdminInfo::path_for("/data/agent.redb"),
            PathBuf::from("/data/agent.redb.admin")
        );
    }
}
