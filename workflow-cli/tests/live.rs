//! `wf` against a journal held by a running engine (here, in the test process): the file is
//! locked, so `wf` reads the engine's admin info file and talks to its admin endpoint.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Order, Outcome, table_row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workflow_runtime::BoxFuture;
use workflow_runtime::admin::AdminInfo;
use workflow_runtime::{
    Engine, RunOptions, RunStatus, StepErrorKind, StepStatus, Workflow, WorkflowFailure, step,
};

/// Set once the approval step of [`Approval`] is executing.
static APPROVAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Waits in a step for an approval that never comes (for ten minutes, longer than any test).
struct Approval;

impl Workflow for Approval {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "approval";

    fn run((): ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async {
            step("wait for approval")
                .run(|| async {
                    APPROVAL_STARTED.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok::<_, std::io::Error>(())
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))
        })
    }
}

/// Runs `wf` off the runtime's workers, which keep serving the admin endpoint meanwhile.
async fn wf(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::wf_env(&args, &env)
    })
    .await
    .expect("the wf runner")
}

/// Sends `POST path` to the endpoint with `authorization` (a whole header value) if any;
/// returns the status code and body.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n");
        if let Some(value) = authorization {
            request.push_str(&format!("authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the endpoint answers within 10 s");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wf_reads_and_steers_a_running_engine_through_its_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("live.redb");
    let db = db_path.to_str().unwrap();
    let engine = Engine::open(&db_path).await.unwrap();
    let info_file = AdminInfo::path_for(&db_path);
    let admin = engine
        .serve_admin("127.0.0.1:0".parse().unwrap(), &info_file)
        .await
        .unwrap();
    let mode = std::fs::metadata(&info_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the info file holds the token: owner only"
    );
    assert_eq!(&AdminInfo::read(&info_file).unwrap(), admin.info());
    let addr = admin.info().addr;
    assert!(addr.ip().is_loopback());

    // A completed run with a retry, under an id that needs percent-encoding in a path.
    let done_id = "team a/order+1 %";
    let done = engine
        .start_with::<Order>(
            done_id,
            ("lamp".into(), 1),
            RunOptions::default().tag("user", "dana"),
        )
        .await
        .unwrap();
    let value = tokio::time::timeout(Duration::from_secs(30), done.result())
        .await
        .expect("the order ends within 30 s")
        .expect("the order completes");
    assert_eq!(value, "shipped lamp (receipt 4242)");
    // A run blocked in a step.
    let blocked_id = "approval/42";
    let blocked = engine.start::<Approval>(blocked_id, ()).await.unwrap();
    for _ in 0..1000 {
        if APPROVAL_STARTED.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        APPROVAL_STARTED.load(Ordering::SeqCst),
        "the approval step starts within 10 s"
    );

    // Reads need the token too (they show every run's inputs and outputs): `wf` sends the one
    // of the info file, or $WF_ADMIN_TOKEN, which a wrong one shows.
    let wrong = "0".repeat(admin.info().token.len());
    let refused = wf(&["runs", db], &[("WF_ADMIN_TOKEN", &wrong)])
        .await
        .expect_code(1);
    assert!(
        refused.stderr.contains("refused by the engine at")
            && refused.stderr.contains("401")
            && refused.stderr.contains("WF_ADMIN_TOKEN"),
        "{}",
        refused.stderr
    );
    let runs = wf(&["runs", db], &[]).await.ok();
    assert_eq!(
        table_row(&runs, done_id)[1..5],
        ["order", "completed", "2", "1"],
        "{runs}"
    );
    // The engine journals `running` with the run's first commit, so a run blocked in its
    // first step still reads `pending`.
    let blocked_row = table_row(&runs, blocked_id);
    assert_eq!(blocked_row[1], "approval", "{runs}");
    assert!(
        ["pending", "running"].contains(&blocked_row[2].as_str()),
        "{runs}"
    );
    assert_eq!(blocked_row[3..5], ["0", "0"], "{runs}");
    let before = engine.run(blocked_id).await.unwrap().unwrap();
    let listed = wf(
        &["runs", db, "--status", before.status.as_str(), "--json"],
        &[],
    )
    .await
    .ok();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["run_id"], blocked_id);

    let show = wf(&["show", db, done_id, "--history"], &[]).await.ok();
    assert!(
        show.starts_with(&format!("run       {done_id}\n")),
        "{show}"
    );
    assert_eq!(
        table_row(&show, "0")[1..4],
        ["charge", "completed", "2"],
        "{show}"
    );
    assert_eq!(show.matches("step_retried").count(), 1, "{show}");
    assert!(
        show.contains("output\n  shipped lamp (receipt 4242)\n"),
        "{show}"
    );
    let json = wf(&["show", db, done_id, "--json"], &[]).await.ok();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["run"]["run_id"], done_id);
    assert_eq!(json["steps"].as_array().map(Vec::len), Some(2));

    let cost = wf(&["cost", db, "--by", "tag:user", "--since", "1h"], &[])
        .await
        .ok();
    assert_eq!(table_row(&cost, "dana")[1..3], ["1", "0"], "{cost}");
    assert_eq!(table_row(&cost, "dana")[8], "$0.004000", "{cost}");
    let cost = wf(&["cost", db, "--json"], &[]).await.ok();
    let cost: serde_json::Value = serde_json::from_str(&cost).unwrap();
    let keys: Vec<&str> = cost
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["key"].as_str())
        .collect();
    assert_eq!(keys, ["approval", "order"]);

    let unknown = wf(&["show", db, "nope"], &[]).await.expect_code(1);
    assert!(
        unknown.stderr.contains("no run \"nope\" in the engine at"),
        "{}",
        unknown.stderr
    );

    // Commands without the token, or with a wrong one, are refused and change nothing.
    let path = "/runs/approval%2F42/cancel";
    let (status, body) = post(addr, path, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(addr, path, Some("Bearer not-the-token")).await;
    assert_eq!(status, 401, "{body}");
    let wrong = "0".repeat(admin.info().token.len());
    let (status, body) = post(addr, path, Some(&format!("Bearer {wrong}"))).await;
    assert_eq!(status, 401, "{body}");
    let refused = wf(&["cancel", db, blocked_id], &[("WF_ADMIN_TOKEN", &wrong)])
        .await
        .expect_code(1);
    // Refused at its first request: `wf cancel` reads the run before it sends the command.
    assert!(
        refused.stderr.contains("refused by the engine at"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let run = engine.run(blocked_id).await.unwrap().unwrap();
    assert_eq!(
        run.status, before.status,
        "a refused cancel changes nothing"
    );
    assert_eq!(
        run.updated_at_us, before.updated_at_us,
        "a refused cancel changes nothing"
    );
    assert!(engine.journal(blocked_id).await.unwrap().is_empty());
    assert_eq!(engine.load().1, 1, "the blocked run still executes");

    // With the token from the info file, the cancel goes through and the run ends cancelled.
    let cancelled = wf(&["cancel", db, blocked_id], &[]).await.ok();
    assert_eq!(
        cancelled,
        format!("run {blocked_id} cancelled (it was {})\n", before.status)
    );
    assert_eq!(
        engine.run(blocked_id).await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), blocked.result())
        .await
        .expect("the cancelled run's result is ready within 10 s");
    assert!(ended.is_err(), "{ended:?}");
    let journal = engine.journal(blocked_id).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, StepStatus::Failed);
    assert_eq!(
        journal[0].error.as_ref().map(|e| e.kind),
        Some(StepErrorKind::Cancelled)
    );
    let again = wf(&["cancel", db, blocked_id], &[]).await.expect_code(3);
    assert!(
        again.stderr.contains("already ended (cancelled)"),
        "{}",
        again.stderr
    );
    let retry = wf(&["retry", db, done_id], &[]).await.expect_code(3);
    assert!(retry.stderr.contains("it is completed"), "{}", retry.stderr);

    // Without the endpoint, a locked journal is an error that says what to do.
    drop(admin);
    assert!(!info_file.exists(), "the info file goes with the endpoint");
    let no_endpoint = wf(&["runs", db], &[]).await.expect_code(1);
    assert!(
        no_endpoint.stderr.contains("serves no admin endpoint"),
        "{}",
        no_endpoint.stderr
    );
    engine.shutdown().await;
}

/// `wf retry` through the admin endpoint refuses, saying why, a run stopped at an at-most-once
/// step whose outcome is unknown, and `--force` retries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_an_unknown_outcome_through_the_endpoint_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("live.redb");
    let db = db_path.to_str().unwrap();
    let gate = dir.path().join("gate");
    common::unknown_reply_outcome(&db_path, &gate).await;
    let engine = Engine::open(&db_path).await.unwrap();
    let admin = engine
        .serve_admin(
            "127.0.0.1:0".parse().unwrap(),
            &AdminInfo::path_for(&db_path),
        )
        .await
        .unwrap();

    let refused = wf(&["retry", db, "reply-1"], &[]).await.expect_code(1);
    assert!(
        refused.stderr.contains(
            "was not retried: it stopped at step `send_reply` (#0), which is at-most-once"
        ) && refused.stderr.contains("wf retry --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        engine.run("reply-1").await.unwrap().unwrap().status,
        RunStatus::Failed,
        "a refused retry changes nothing"
    );

    std::fs::write(&gate, "").unwrap();
    let reply = engine.handle::<common::Reply>("reply-1");
    engine.register::<common::Reply>().await.unwrap();
    let forced = wf(&["retry", db, "reply-1", "--force"], &[]).await.ok();
    assert!(forced.contains("run reply-1 queued again"), "{forced}");
    let value = tokio::time::timeout(Duration::from_secs(30), reply.result())
        .await
        .expect("the forced retry ends within 30 s");
    assert_eq!(value.expect("the forced retry completes"), "sent");
    drop((reply, admin));
    engine.shutdown().await;
}
