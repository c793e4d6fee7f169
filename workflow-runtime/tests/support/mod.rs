//! Helpers shared by the integration tests of the runtime: small ones for in-process tests,
//! and the harness of the crash tests, which re-execute their own test binary as a child
//! process, kill it with SIGKILL and read what it left behind.
//!
//! No helper polls the clock. In-process tests wait for the engine's events ([`Events`]) or for
//! a signal from a step body ([`within`] over a `tokio::sync::Notify`), each wait bounded by
//! [`WAIT`] on tokio's clock (virtual under a paused clock); the crash harness waits for lines
//! on the child's stdout and for its stdout to close, each wait bounded by a deadline.
//!
//! Every file under `tests/` is a crate of its own that declares `mod support;` and compiles
//! this module again, using only part of it.
// Without this, each test binary would warn about the helpers that only the others call.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use workflow_runtime::{
    AlertKind, Engine, Event, RunRecord, StepContext, StepError, StepRecord, WorkflowFailure, step,
};

// ---------------------------------------------------------------------------------------------
// In-process tests
// ---------------------------------------------------------------------------------------------

/// Turns a step's error (or any other) into the failure of the workflow body that got it.
pub fn fail(e: impl std::fmt::Display) -> WorkflowFailure {
    WorkflowFailure::new(e.to_string())
}

/// How long an in-process test waits for an event or a signal before it fails, on tokio's
/// clock: real time in a test on the real clock (generous, for a loaded machine), virtual time
/// under a paused clock, where it must exceed the timers the awaited thing waits behind.
pub const WAIT: Duration = Duration::from_secs(60);

/// Awaits `future`, or fails the test saying it timed out waiting until `what`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting until {what}"),
    }
}

/// The events of an engine, in the order it emitted them, for a test to wait on: listening
/// starts when this is made, so make it before the run that emits what the test waits for.
pub struct Events {
    receiver: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

impl Events {
    pub fn of(engine: &Engine) -> Events {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        engine.on_event(move |event| {
            // A closed receiver means the test is over.
            let _ = sender.send(event.clone());
        });
        Events { receiver }
    }

    /// Waits for the next event that `wanted` accepts, skipping the others, and returns it.
    /// Fails the test if none comes within [`WAIT`].
    pub async fn wait_for(&mut self, what: &str, mut wanted: impl FnMut(&Event) -> bool) -> Event {
        within(what, async {
            loop {
                match self.receiver.recv().await {
                    Some(event) if wanted(&event) => return event,
                    Some(_) => {}
                    None => panic!("the engine is gone, waiting until {what}"),
                }
            }
        })
        .await
    }

    /// Waits until `count` steps of `run_id` have finished executing (their outcomes are
    /// journaled: the engine emits [`Event::StepFinished`] after the commit).
    pub async fn steps_finished(&mut self, run_id: &str, count: usize) {
        for n in 1..=count {
            let what = format!("{n} of {count} steps of run {run_id:?} are journaled");
            self.wait_for(
                &what,
                |event| matches!(event, Event::StepFinished { run_id: id, .. } if id == run_id),
            )
            .await;
        }
    }

    /// Waits until step `name` of `run_id` has finished executing, and returns its event.
    pub async fn step_finished(&mut self, run_id: &str, name: &str) -> Event {
        let what = format!("step `{name}` of run {run_id:?} is journaled");
        self.wait_for(&what, |event| {
            matches!(event, Event::StepFinished { run_id: id, name: n, .. } if id == run_id && n == name)
        })
        .await
    }

    /// Waits until `run_id` has left memory to wait for a timer or an event (its status is
    /// journaled as waiting before the engine emits [`Event::RunWaiting`]).
    pub async fn run_waiting(&mut self, run_id: &str) -> Event {
        let what = format!("run {run_id:?} waits out of memory");
        self.wait_for(
            &what,
            |event| matches!(event, Event::RunWaiting { run_id: id, .. } if id == run_id),
        )
        .await
    }
}

/// Collects the alerts `engine` raises, as (kind, message), in order.
pub fn alerts(engine: &Engine) -> Arc<Mutex<Vec<(AlertKind, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    engine.on_event(move |event| {
        if let Event::Alert { kind, message, .. } = event {
            sink.lock().unwrap().push((*kind, message.clone()));
        }
    });
    seen
}

/// A step named `name`, called from a workflow body, that never returns while `closed` is set:
/// a test sets the flag to catch the run with this step in flight (then shuts the engine down,
/// as a crash would), and clears it before a new engine resumes the run.
pub async fn gate(name: &'static str, closed: &AtomicBool) -> Result<(), StepError> {
    step(name)
        .run(|| async {
            if closed.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Crash tests: the child's side
// ---------------------------------------------------------------------------------------------

/// How a crash test file's parent and child processes find each other.
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// The test that plays the child. It must return at once unless the parent's environment
    /// variables are set, since a plain `cargo test` runs it too.
    pub entry: &'static str,
    /// The marker before the JSON of the child's result.
    pub output: &'static str,
    /// How long the parent waits for any one marker or exit: generous, because a loaded
    /// machine can stall a process for seconds.
    pub timeout: Duration,
}

impl Protocol {
    /// Prints `value` as the child's result, for [`ChildProcess::finish`].
    pub fn print_output(&self, value: &impl serde::Serialize) {
        let json = serde_json::to_string(value).expect("the output encodes as JSON");
        print_flushed(&format!("{}{json}", self.output));
    }
}

/// Prints a line for the parent. It reads stdout through a pipe, so a line left in a buffer is
/// never seen: the line goes out in one `write`, at once.
pub fn print_flushed(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes())
        .expect("stdout");
    out.flush().expect("stdout");
}

/// Blocks this thread until the parent closes the child's stdin, which it does only when it
/// is gone (a parent that failed and left this child behind): a child that waits for its
/// SIGKILL calls this, then exits. Blocking the thread also freezes a current-thread runtime
/// that runs on it, so nothing else of the process moves on until the kill.
pub fn block_until_killed() -> ! {
    let mut sink = Vec::new();
    // EOF or an error: either way the parent is gone.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
    std::process::exit(3)
}

/// Like [`block_until_killed`], for a child whose runtime must go on running meanwhile (its
/// engine's tasks): the blocking read runs on tokio's blocking pool.
pub async fn until_killed() -> ! {
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink)
    })
    .await;
    std::process::exit(3)
}

/// An environment variable the parent must have set for the child.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Runs `future` to its end on a runtime of its own: the crash tests' parent and child are
/// synchronous tests around async engine calls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

// ---------------------------------------------------------------------------------------------
// Crash tests: the side-effect log
// ---------------------------------------------------------------------------------------------

/// Logs in `log` that the body of the step of `ctx` starts in this process.
pub fn log_start(log: &Path, ctx: &StepContext) {
    let pid = std::process::id();
    append_line(
        log,
        &format!("start {} {} {pid}", ctx.idempotency_key(), ctx.attempt()),
    );
}

/// Logs in `log` that the body of the step of `ctx` ends in this process: its effect took place.
pub fn log_end(log: &Path, ctx: &StepContext) {
    let pid = std::process::id();
    append_line(log, &format!("end {} {pid}", ctx.idempotency_key()));
}

fn append_line(path: &Path, line: &str) {
    // One write per line on an O_APPEND file: a line is either wholly in the log or absent,
    // whatever moment the kill lands on, and File has no buffer that could be lost.
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the side-effect log");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("append to the side-effect log");
    file.flush().expect("flush the side-effect log");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    Start { key: String, attempt: u32, pid: u32 },
    End { key: String, pid: u32 },
}

/// The side-effect log, parsed: which process ran which step, under which idempotency key.
pub struct SideEffects {
    pub lines: Vec<LogLine>,
}

impl SideEffects {
    pub fn read(path: &Path) -> SideEffects {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text
            .lines()
            .map(|line| {
                let num = |s: &str| -> u32 {
                    s.parse()
                        .unwrap_or_else(|_| panic!("bad number in log line {line:?}"))
                };
                match line.split(' ').collect::<Vec<_>>().as_slice() {
                    ["start", key, attempt, pid] => LogLine::Start {
                        key: (*key).to_owned(),
                        attempt: num(attempt),
                        pid: num(pid),
                    },
                    ["end", key, pid] => LogLine::End {
                        key: (*key).to_owned(),
                        pid: num(pid),
                    },
                    _ => panic!("malformed side-effect log line {line:?}"),
                }
            })
            .collect();
        SideEffects { lines }
    }

    /// The attempt numbers with which `pid` started the step keyed `key`.
    pub fn starts(&self, key: &str, pid: u32) -> Vec<u32> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Start {
                    key: k,
                    attempt,
                    pid: p,
                } if k == key && *p == pid => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    pub fn ends(&self, key: &str, pid: u32) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line, LogLine::End { key: k, pid: p } if k == key && *p == pid))
            .count()
    }

    pub fn all_starts(&self, key: &str) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line, LogLine::Start { key: k, .. } if k == key))
            .count()
    }

    pub fn all_ends(&self, key: &str) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line, LogLine::End { key: k, .. } if k == key))
            .count()
    }

    /// Every process that logged a line.
    pub fn pids(&self) -> BTreeSet<u32> {
        self.lines
            .iter()
            .map(|line| match line {
                LogLine::Start { pid, .. } | LogLine::End { pid, .. } => *pid,
            })
            .collect()
    }

    /// The log, a line per entry, for failure messages.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self
            .lines
            .iter()
            .map(|line| match line {
                LogLine::Start { key, attempt, pid } => {
                    format!("start {key} attempt {attempt} pid {pid}")
                }
                LogLine::End { key, pid } => format!("end {key} pid {pid}"),
            })
            .collect();
        lines.join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// Crash tests: the parent's side
// ---------------------------------------------------------------------------------------------

/// The files of one test, in a directory removed at the end.
pub struct Files {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn new() -> Files {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().to_owned();
        Files {
            db: root.join("journal.redb"),
            log: root.join("side-effects.log"),
            root,
            _dir: dir,
        }
    }
}

/// A running child. Dropping it kills and reaps the process, so a failed assertion in the
/// parent never leaves a child behind (one blocked at a kill point would live forever).
pub struct ChildProcess {
    child: Child,
    protocol: Protocol,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The last lines read, for failure messages.
    recent: Vec<String>,
    stderr: PathBuf,
    label: String,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    /// Re-executes this test binary to run only `protocol.entry`, with `env` set. Its stderr
    /// goes to `<label>.stderr` in `dir`; its stdin is a pipe for [`send_line`], which a child
    /// that never reads it does not notice.
    ///
    /// [`send_line`]: ChildProcess::send_line
    pub fn spawn(
        protocol: Protocol,
        dir: &Path,
        label: &str,
        env: &[(&str, &OsStr)],
    ) -> ChildProcess {
        let stderr = dir.join(format!("{label}.stderr"));
        let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
            .args(["--exact", protocol.entry, "--nocapture", "--test-threads=1"])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("the child's stderr file"))
            .spawn()
            .expect("spawn the child process");
        let stdin = child.stdin.take();
        // A thread turns the pipe into a channel, so that every wait for a line has a timeout.
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess {
            child,
            protocol,
            stdin,
            lines,
            recent: Vec::new(),
            stderr,
            label: label.to_owned(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child printed, for failure messages.
    pub fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!(
            "child `{}` (pid {}), status {:?}\n--- last stdout lines ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.pid(),
            self.status,
            self.recent.join("\n"),
            stderr
        )
    }

    fn remember(&mut self, line: &str) {
        // Enough for the markers of any child; a child that prints thousands of lines (the
        // group-commit test) would otherwise bury the stderr that follows.
        const KEEP: usize = 40;
        if self.recent.len() == KEEP {
            self.recent.remove(0);
        }
        self.recent.push(line.to_owned());
    }

    /// The next line, `Ok(None)` once the child's stdout is closed, or `Err` if none came by
    /// `deadline`. A line read after the deadline counts as none, so that the deadline also
    /// bounds a child that prints without end.
    fn line_by(&mut self, deadline: Instant) -> Result<Option<String>, RecvTimeoutError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) if Instant::now() <= deadline => {
                self.remember(&line);
                Ok(Some(line))
            }
            Ok(_) => Err(RecvTimeoutError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(timeout) => Err(timeout),
        }
    }

    /// The next line, or `None` once the child's stdout is closed. Panics if no line comes by
    /// `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        self.line_by(deadline)
            .unwrap_or_else(|_| panic!("no line within the time limit\n{}", self.diagnostics()))
    }

    /// Waits for a line containing `marker`; returns what follows the marker. Markers are
    /// searched for inside lines, not matched as whole lines: with `--nocapture` the test
    /// harness prints `test <entry> ... ` and the child's first line follows it.
    pub fn wait_for(&mut self, marker: &str) -> String {
        let timeout = self.protocol.timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let line = match self.line_by(deadline) {
                Ok(Some(line)) => line,
                Ok(None) => {
                    self.wait_exit();
                    panic!(
                        "the child ended without printing {marker:?}\n{}",
                        self.diagnostics()
                    )
                }
                Err(_) => panic!("no {marker:?} within {timeout:?}\n{}", self.diagnostics()),
            };
            if let Some(at) = line.find(marker) {
                return line[at + marker.len()..].to_owned();
            }
        }
    }

    /// Every line still in the pipe of a dead child.
    pub fn drain(&mut self) -> Vec<String> {
        let deadline = Instant::now() + self.protocol.timeout;
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            rest.push(line);
        }
        rest
    }

    /// Writes `line` to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "{line}").expect("write to the child's stdin");
        stdin.flush().expect("flush the child's stdin");
    }

    /// Reaps a child that is expected to exit by itself (its stdout is closed, or it printed
    /// its output). Waits for its stdout to close, which only its exit does (the child starts no
    /// process that could inherit the pipe), reading what it still prints; then `wait` returns
    /// at once. Panics if the pipe is still open at the protocol's deadline.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.protocol.timeout;
        loop {
            match self.line_by(deadline) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => panic!("the child did not exit\n{}", self.diagnostics()),
            }
        }
        let status = self.child.wait().expect("reap the child");
        self.status = Some(status);
        status
    }

    /// Kills the child with SIGKILL now, whatever it is doing, and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        // An error means it has exited already; `wait` tells how.
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the child");
        self.status = Some(status);
        status
    }

    /// Kills a child that must still be alive (blocked at a kill point, or waiting for its
    /// kill), and checks that SIGKILL is what ended it. Unix only, like the crash tests: the
    /// in-process tests that also compile this module build everywhere.
    #[cfg(unix)]
    pub fn kill_alive(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let status = self.kill();
        assert_eq!(
            status.signal(),
            Some(9),
            "the child must die of SIGKILL\n{}",
            self.diagnostics()
        );
    }

    /// Waits for the JSON after the protocol's output marker, and a clean exit.
    pub fn finish<T: serde::de::DeserializeOwned>(&mut self) -> T {
        let json = self.wait_for(self.protocol.output);
        let status = self.wait_exit();
        assert!(
            status.success(),
            "the child must exit 0\n{}",
            self.diagnostics()
        );
        serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("bad output {json:?}: {e}\n{}", self.diagnostics()))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every run in the journal at `db`, and the steps of each, read while no child holds the file.
pub fn inspect_journal(db: &Path) -> BTreeMap<String, (RunRecord, Vec<StepRecord>)> {
    block_on(async {
        // The engine is dropped before this returns, which releases the file for the next child.
        let engine = Engine::open(db)
            .await
            .expect("the parent opens the journal once the child is dead");
        let mut out = BTreeMap::new();
        for run in engine.runs().await.expect("list the runs") {
            let steps = engine.journal(&run.run_id).await.expect("read a journal");
            out.insert(run.run_id.clone(), (run, steps));
        }
        out
    })
}

/// The value of a journaled step that returned a string.
pub fn string_output(step: &StepRecord) -> String {
    let raw = step
        .output
        .as_ref()
        .unwrap_or_else(|| panic!("step #{} ({}) has no value", step.seq, step.name));
    serde_json::from_str(raw.get()).expect("a journaled value is a JSON string")
}

/// Knuth's MMIX LCG: enough to spread kill moments, and reproducible from the printed seed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// The seed of a test's random choices: `CRASH_SEED` if set, else the clock.
pub fn seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    // Shown by the harness when the test fails; CRASH_SEED=<seed> replays the same choices.
    println!("random kill seed: {seed}");
    seed
}
