//! The benchmark workloads of shared/BENCHMARKS.md, with their raw-redb baselines measured in
//! the same process run.
//!
//! ```text
//! cargo run --release --example bench -- [--json] [--quick]
//! ```
//!
//! Each figure is the median of 3 repetitions. With `--json`, stdout holds one JSON object per
//! line, one per workload and baseline, and nothing else.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition};
use serde_json::{Value, json};
use workflow_runtime::store::{Store, Write};
use workflow_runtime::{
    BoxFuture, Engine, RunRecord, RunStatus, StepRecord, Workflow, WorkflowFailure, step,
};

const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop";
const REPETITIONS: usize = 3;
/// Commits made on a new file before B1 and W1a are timed.
const WARM_UP_COMMITS: u64 = 200;

struct Sizes {
    w1a_steps: u64,
    w1b_runs: u64,
    w1b_steps: u64,
    w2_steps: u64,
    w5_steps: u64,
    w5_window: u64,
    w3_runs: u64,
    b1_commits: u64,
    b2_transactions: u64,
}

const FULL: Sizes = Sizes {
    w1a_steps: 1_000,
    w1b_runs: 200,
    w1b_steps: 10,
    w2_steps: 10_000,
    w5_steps: 20_000,
    w5_window: 2_000,
    w3_runs: 10_000,
    b1_commits: 1_000,
    b2_transactions: 50,
};

const QUICK: Sizes = Sizes {
    w1a_steps: 100,
    w1b_runs: 20,
    w1b_steps: 5,
    w2_steps: 1_000,
    w5_steps: 1_000,
    w5_window: 100,
    w3_runs: 500,
    b1_commits: 100,
    b2_transactions: 5,
};

/// Latencies of the steps of the W1a run, in the order they finished.
static STEP_LATENCIES: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
/// When each step of the W5 run finished.
static STEP_FINISHES: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// N sequential steps, each returning a 100-byte string.
struct Sequential;

impl Workflow for Sequential {
    type Input = (u64, bool);
    type Output = u64;
    const NAME: &'static str = "bench_sequential";

    fn run((steps, record): (u64, bool)) -> BoxFuture<'static, Result<u64, WorkflowFailure>> {
        Box::pin(async move {
            let mut bytes = 0;
            for _ in 0..steps {
                let started = Instant::now();
                let value = step("s")
                    .run(|| async { Ok::<_, Infallible>(PAYLOAD.to_owned()) })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
                if record {
                    STEP_LATENCIES.lock().unwrap().push(started.elapsed());
                    STEP_FINISHES.lock().unwrap().push(Instant::now());
                }
                bytes += value.len() as u64;
            }
            Ok(bytes)
        })
    }
}

/// N sequential steps, each sleeping `work_ms` before returning a 100-byte string.
struct Working;

impl Workflow for Working {
    type Input = (u64, u64);
    type Output = u64;
    const NAME: &'static str = "bench_working";

    fn run((steps, work_ms): (u64, u64)) -> BoxFuture<'static, Result<u64, WorkflowFailure>> {
        Box::pin(async move {
            for _ in 0..steps {
                step("s")
                    .run(|| async {
                        if work_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(work_ms)).await;
                        }
                        Ok::<_, Infallible>(PAYLOAD.to_owned())
                    })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            }
            Ok(steps)
        })
    }
}

struct Bench {
    dir: PathBuf,
    files: u64,
}

impl Bench {
    fn fresh_file(&mut self) -> PathBuf {
        self.files += 1;
        let path = self.dir.join(format!("bench-{}.redb", self.files));
        let _ = std::fs::remove_file(&path);
        path
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");

/// B1: one 100-byte row per durable write transaction.
fn baseline_b1(path: &Path, commits: u64) -> f64 {
    let db = Database::create(path).expect("create the baseline database");
    let row = [7u8; 100];
    // A new file is slower while redb grows it; W1a gets the same warm-up (see `w1a`).
    for i in 0..WARM_UP_COMMITS {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(Durability::Immediate)
            .expect("durability");
        tx.open_table(ROWS)
            .expect("table")
            .insert(u64::MAX - i, row.as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let started = Instant::now();
    for i in 0..commits {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(Durability::Immediate)
            .expect("durability");
        tx.open_table(ROWS)
            .expect("table")
            .insert(i, row.as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    commits as f64 / started.elapsed().as_secs_f64()
}

/// B2: 200 rows per durable write transaction.
fn baseline_b2(path: &Path, transactions: u64) -> f64 {
    let db = Database::create(path).expect("create the baseline database");
    let row = [7u8; 100];
    let started = Instant::now();
    for t in 0..transactions {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut table = tx.open_table(ROWS).expect("table");
            for i in 0..200 {
                table.insert(t * 200 + i, row.as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    (transactions * 200) as f64 / started.elapsed().as_secs_f64()
}

async fn w1a(path: &Path, steps: u64) -> (f64, Duration, Duration) {
    let engine = Engine::open(path).await.expect("open");
    engine
        .start::<Sequential>("warm-up", (WARM_UP_COMMITS, false))
        .await
        .expect("start")
        .result()
        .await
        .expect("warm-up run");
    STEP_LATENCIES.lock().unwrap().clear();
    let started = Instant::now();
    let run = engine
        .start::<Sequential>("w1a", (steps, true))
        .await
        .expect("start");
    run.result().await.expect("W1a run");
    let rate = steps as f64 / started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *STEP_LATENCIES.lock().unwrap());
    latencies.sort();
    (
        rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

async fn concurrent(path: &Path, runs: u64, steps: u64, work_ms: u64) -> f64 {
    let engine = Engine::open(path).await.expect("open");
    engine.register::<Working>().await.expect("register");
    let started = Instant::now();
    // Started together, as concurrent clients would: their creations share commits too.
    let starts = (0..runs).map(|r| engine.start::<Working>(format!("run-{r}"), (steps, work_ms)));
    let handles = futures::future::join_all(starts).await;
    let results = handles.into_iter().map(|handle| async move {
        handle
            .expect("start")
            .result()
            .await
            .expect("concurrent run")
    });
    futures::future::join_all(results).await;
    (runs * steps) as f64 / started.elapsed().as_secs_f64()
}

/// W2: a journal holding one unfinished run with `steps` completed steps, resumed to its end.
async fn w2(path: &Path, steps: u64) -> (f64, Duration) {
    {
        let store = workflow_runtime::RedbStore::open(path).expect("open the store");
        let mut run = RunRecord::new(
            "w2",
            Sequential::NAME,
            Sequential::FINGERPRINT,
            serde_json::value::to_raw_value(&(steps, false)).expect("input"),
        );
        run.status = RunStatus::Running;
        store.create_run(run).await.expect("create");
        let output = serde_json::value::to_raw_value(PAYLOAD).expect("payload");
        // Setup writes the journal in large transactions: W2 measures replay, not recording.
        for chunk in (0..steps).collect::<Vec<_>>().chunks(5_000) {
            let writes = chunk
                .iter()
                .map(|&seq| Write::Step {
                    run_id: "w2".into(),
                    step: StepRecord::completed(seq, "s", output.clone()),
                })
                .collect();
            store.commit(writes).await.expect("commit");
        }
    }
    let started = Instant::now();
    let engine = Engine::open(path).await.expect("open");
    engine.register::<Sequential>().await.expect("register");
    engine
        .handle::<Sequential>("w2")
        .result()
        .await
        .expect("W2 run");
    let elapsed = started.elapsed();
    (steps as f64 / elapsed.as_secs_f64(), elapsed)
}

/// A run that sleeps for an hour.
struct Sleeper;

impl Workflow for Sleeper {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "bench_sleeper";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            workflow_runtime::durable::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
    }
}

fn resident_bytes() -> u64 {
    // The second field of /proc/self/statm is the resident set, in pages (4 KiB here).
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// W3: resident memory per run parked in a durable sleep of one hour.
async fn w3(path: &Path, runs: u64) -> f64 {
    // Few runs execute at once, so that the peak of the runs being parked does not count as
    // the cost of the parked ones.
    let engine = Engine::builder()
        .max_concurrent_runs(200)
        .open(path)
        .await
        .expect("open");
    engine.register::<Sleeper>().await.expect("register");
    let before = resident_bytes();
    for r in 0..runs {
        engine
            .start::<Sleeper>(format!("sleeper-{r}"), ())
            .await
            .expect("start");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while engine.load() != (runs as usize, 0) {
        assert!(
            Instant::now() < deadline,
            "W3: the runs did not all park: {:?}",
            engine.load()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = resident_bytes();
    engine.shutdown().await;
    after.saturating_sub(before) as f64 / runs as f64
}

/// W5: steps/s over the last window against the first, and file bytes per step.
async fn w5(path: &Path, steps: u64, window: u64) -> (f64, f64, f64) {
    STEP_FINISHES.lock().unwrap().clear();
    let engine = Engine::open(path).await.expect("open");
    let started = Instant::now();
    engine
        .start::<Sequential>("w5", (steps, true))
        .await
        .expect("start")
        .result()
        .await
        .expect("W5 run");
    drop(engine);
    let finishes = std::mem::take(&mut *STEP_FINISHES.lock().unwrap());
    let window = window as usize;
    let first = window as f64 / (finishes[window - 1] - started).as_secs_f64();
    let n = finishes.len();
    let last = window as f64 / (finishes[n - 1] - finishes[n - 1 - window]).as_secs_f64();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64;
    (first, last, bytes / steps as f64)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = if quick { &QUICK } else { &FULL };
    // Not /tmp: it may be a tmpfs, where fsync costs nothing.
    let dir = std::env::current_dir()
        .expect("current directory")
        .join("target")
        .join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let mut bench = Bench {
        dir: dir.clone(),
        files: 0,
    };

    let mut lines: Vec<Value> = Vec::new();
    let mut emit = |line: Value| {
        if json {
            println!("{line}");
        } else {
            eprintln!("{line:#}");
        }
        lines.push(line);
    };

    let b1 = median(
        (0..REPETITIONS)
            .map(|_| baseline_b1(&bench.fresh_file(), sizes.b1_commits))
            .collect(),
    );
    emit(json!({"name": "B1", "commits_per_s": b1.round()}));
    let b2 = median(
        (0..REPETITIONS)
            .map(|_| baseline_b2(&bench.fresh_file(), sizes.b2_transactions))
            .collect(),
    );
    emit(json!({"name": "B2", "rows_per_s": b2.round()}));

    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..REPETITIONS {
        let (rate, p50, p99) = w1a(&bench.fresh_file(), sizes.w1a_steps).await;
        rates.push(rate);
        p50s.push(p50.as_secs_f64() * 1e6);
        p99s.push(p99.as_secs_f64() * 1e6);
    }
    let w1a_rate = median(rates);
    emit(
        json!({"name": "W1a", "steps_per_s": w1a_rate.round(), "p50_us": median(p50s).round(),
        "p99_us": median(p99s).round(), "ratio_to_B1": round3(w1a_rate / b1)}),
    );

    let mut rates = Vec::new();
    for _ in 0..REPETITIONS {
        rates.push(concurrent(&bench.fresh_file(), sizes.w1b_runs, sizes.w1b_steps, 0).await);
    }
    let w1b = median(rates);
    emit(json!({"name": "W1b", "steps_per_s": w1b.round(), "ratio_to_B2": round3(w1b / b2)}));

    let mut rates = Vec::new();
    let mut times = Vec::new();
    for _ in 0..REPETITIONS {
        let (rate, elapsed) = w2(&bench.fresh_file(), sizes.w2_steps).await;
        rates.push(rate);
        times.push(elapsed.as_secs_f64() * 1e3);
    }
    emit(
        json!({"name": "W2", "replayed_steps_per_s": median(rates).round(),
        "open_to_done_ms": round3(median(times)), "steps": sizes.w2_steps}),
    );

    let mut per_run = Vec::new();
    for _ in 0..REPETITIONS {
        per_run.push(w3(&bench.fresh_file(), sizes.w3_runs).await);
    }
    emit(
        json!({"name": "W3", "bytes_per_parked_run": median(per_run).round(), "runs": sizes.w3_runs}),
    );

    let mut rates = Vec::new();
    for _ in 0..REPETITIONS {
        rates.push(concurrent(&bench.fresh_file(), sizes.w1b_runs, sizes.w1b_steps, 1).await);
    }
    let w4 = median(rates);
    emit(json!({"name": "W4", "steps_per_s": w4.round(), "ratio_to_W1b": round3(w4 / w1b)}));

    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..REPETITIONS {
        let (first, last, per_step) =
            w5(&bench.fresh_file(), sizes.w5_steps, sizes.w5_window).await;
        firsts.push(first);
        lasts.push(last);
        bytes.push(per_step);
    }
    let (first, last) = (median(firsts), median(lasts));
    emit(
        json!({"name": "W5", "first_steps_per_s": first.round(), "last_steps_per_s": last.round(),
        "last_to_first": round3(last / first), "file_bytes_per_step": median(bytes).round()}),
    );

    let _ = std::fs::remove_dir_all(&dir);
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
