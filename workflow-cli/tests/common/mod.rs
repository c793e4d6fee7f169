//! What the `wf` tests share: hand-written workflows (the macros are not used here), a journal
//! holding a completed run with retries, a failed run and a pending one, and a runner of the
//! `wf` binary bounded in time.
#![allow(dead_code)] // Each test file uses its own part of this module.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workflow_runtime::BoxFuture;
use workflow_runtime::{
    Backoff, Engine, RunOptions, RunStatus, StepContext, StepFailure, StepStatus, Usage, Workflow,
    WorkflowFailure, step,
};

/// Waits between attempts short enough for a fast test, long enough to see on a timeline.
pub const TINY: Backoff = Backoff::DEFAULT
    .with_initial(Duration::from_millis(40))
    .with_factor(1.0)
    .with_max(Duration::from_millis(40))
    .with_jitter(0.0);

/// Reports what a step spent, as a model call would.
fn spend(input: u64, output: u64, usd: f64) {
    if let Some(context) = StepContext::current() {
        context.report_usage(Usage::tokens("sim-model", input, output).with_cost_usd(usd));
    }
}

/// Charges, then ships: `charge` fails transiently on its first `failures` attempts.
pub struct Order;

impl Workflow for Order {
    type Input = (String, u32);
    type Output = String;
    const NAME: &'static str = "order";

    fn run((item, failures): (String, u32)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let receipt: u64 = step("charge")
                .retries(3)
                .backoff(TINY)
                .run(|| async move {
                    spend(100, 20, 0.0010);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    let attempt = StepContext::current().map_or(1, |c| c.attempt());
                    if attempt <= failures {
                        return Err(StepFailure::transient(std::io::Error::other(
                            "card network busy",
                        )));
                    }
                    Ok(4242)
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            let item = item.clone();
            let label = step("ship")
                .run(|| {
                    let item = item.clone();
                    async move {
                        spend(200, 40, 0.0020);
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        Ok::<_, std::io::Error>(format!("shipped {item} (receipt {receipt})"))
                    }
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            Ok(label)
        })
    }
}

/// Refunds an item: `validate` fails for good unless the file `gate` exists.
pub struct Refund;

impl Workflow for Refund {
    type Input = (String, PathBuf);
    type Output = String;
    const NAME: &'static str = "refund";

    fn run((item, gate): (String, PathBuf)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let gate = gate.clone();
            step("validate")
                .run(|| {
                    let gate = gate.clone();
                    async move {
                        spend(50, 10, 0.0005);
                        if gate.exists() {
                            Ok(())
                        } else {
                            Err(StepFailure::terminal(std::io::Error::other(
                                "refund window closed",
                            )))
                        }
                    }
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            Ok(format!("refunded {item}"))
        })
    }
}

/// A journal at `dir/journal.redb` with: `order-ok` (completed, `charge` retried twice, tags
/// user=alice team=web), `refund-bad` (failed at `validate`, tag user=bob; it passes once
/// `dir/refund.gate` exists) and `order-later` (pending for an hour, tag user=carol). The
/// engine is shut down and dropped, so the file is at rest.
pub async fn order_journal(dir: &Path) -> PathBuf {
    let db = dir.join("journal.redb");
    let engine = Engine::open(&db).await.expect("open the journal");
    let ok = engine
        .start_with::<Order>(
            "order-ok",
            ("widget".into(), 2),
            RunOptions::default()
                .tag("user", "alice")
                .tag("team", "web"),
        )
        .await
        .expect("start order-ok");
    let bad = engine
        .start_with::<Refund>(
            "refund-bad",
            ("gadget".into(), dir.join("refund.gate")),
            RunOptions::default().tag("user", "bob"),
        )
        .await
        .expect("start refund-bad");
    engine
        .start_with::<Order>(
            "order-later",
            ("gizmo".into(), 0),
            RunOptions::default()
                .tag("user", "carol")
                .delay(Duration::from_secs(3600)),
        )
        .await
        .expect("start order-later");
    let ok = tokio::time::timeout(Duration::from_secs(30), ok.result())
        .await
        .expect("order-ok ends within 30 s");
    assert_eq!(
        ok.expect("order-ok completes"),
        "shipped widget (receipt 4242)"
    );
    let bad = tokio::time::timeout(Duration::from_secs(30), bad.result())
        .await
        .expect("refund-bad ends within 30 s");
    assert!(bad.is_err(), "refund-bad must fail: {bad:?}");
    engine.shutdown().await;
    drop(engine);
    db
}

/// Sends a reply at most once: the call hangs until the file `gate` exists.
pub struct Reply;

impl Workflow for Reply {
    type Input = (PathBuf,);
    type Output = String;
    const NAME: &'static str = "reply";

    fn run((gate,): (PathBuf,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let sent = step("send_reply")
                .at_most_once()
                .retries(0)
                .run(|| {
                    let gate = gate.clone();
                    async move {
                        // Bounded: a test ends long before.
                        for _ in 0..60_000 {
                            if gate.exists() {
                                return Ok::<_, std::io::Error>("sent".to_owned());
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(std::io::Error::other("the gate never opened"))
                    }
                })
                .await?;
            Ok(sent)
        })
    }
}

/// Journals at `db` the run `reply-1` of [`Reply`], failed at its at-most-once step
/// `send_reply` with an unknown outcome: a first engine shuts down (as a process would die)
/// during the call, and the next finds the call's outcome unknown. The engines are shut down.
pub async fn unknown_reply_outcome(db: &Path, gate: &Path) {
    let engine = Engine::open(db).await.expect("open the journal");
    engine
        .start::<Reply>("reply-1", (gate.to_path_buf(),))
        .await
        .expect("start reply-1");
    for _ in 0..1000 {
        if engine.journal("reply-1").await.expect("read").len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let journal = engine.journal("reply-1").await.expect("read");
    assert_eq!(journal.first().map(|s| s.status), Some(StepStatus::Started));
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open(db).await.expect("open the journal again");
    engine.register::<Reply>().await.expect("register");
    for _ in 0..1000 {
        let run = engine.run("reply-1").await.expect("read").expect("the run");
        if run.status == RunStatus::Failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = engine.run("reply-1").await.expect("read").expect("the run");
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.error);
    engine.shutdown().await;
}

/// What a finished `wf` printed, and how it exited.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Panics, showing everything, unless `wf` exited with `code`.
    pub fn expect_code(self, code: i32) -> Outcome {
        assert_eq!(
            self.code,
            Some(code),
            "wf exited with {:?}, expected {code}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless `wf` succeeded; returns its standard output.
    pub fn ok(self) -> String {
        self.expect_code(0).stdout
    }
}

/// Runs `program` with `args` (and `env`), killing it after `limit`.
pub fn run_bounded(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Outcome {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // Read both pipes while waiting, so a large output cannot block the child.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {args:?} did not finish within {limit:?}",
                    program.display()
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs `wf` with `args`, for at most 60 s.
pub fn wf(args: &[&str]) -> Outcome {
    wf_env(args, &[])
}

/// Runs `wf` with `args` and extra environment variables, for at most 60 s.
pub fn wf_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    run_bounded(
        Path::new(env!("CARGO_BIN_EXE_wf")),
        args,
        env,
        Duration::from_secs(60),
    )
}

/// The cells of the table line whose first cell is `first`, split on runs of two spaces.
pub fn table_row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|c| c == first))
        .unwrap_or_else(|| panic!("no row starting with {first:?} in\n{table}"))
}
