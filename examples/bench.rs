//! The benchmark workloads of shared/BENCHMARKS.md, with their raw-redb baselines measured in
//! the same process run.
//!
//! ```text
//! cargo run --release --example bench -- [--json] [--quick]
//! ```
//!
//! With `--json`, stdout holds one JSON object per line, one per workload and baseline, and
//! nothing else; without it the same objects go to stderr, pretty-printed.
//!
//! How a figure is made trustworthy on a shared, noisy machine:
//! - A baseline and the workload it bounds are measured in alternating repetitions (B1 with
//!   W1a, B2 with W1b), each on a fresh file with the same warm-up and lasting about as long,
//!   so that a burst of other processes' writes lands on both, and their ratio is the median of
//!   the per-pair ratios.
//! - Each repetition's figures are in the JSON, with the disk's flush requests counted around
//!   it (`/sys/block/<disk>/stat`; `null` where the kernel does not report them). The count is
//!   the whole disk's, so other processes' flushes are in it too.
//! - A pairing is marked `"valid":false`, with why, when the baseline is below the workload
//!   in any pair, or when either's repetitions spread more than 1.5x.

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
/// Durable commits made on each new file before anything on it is timed: a new file is slower
/// while redb grows it, and a baseline gets the same warm-up as the workload it bounds.
const WARM_UP_COMMITS: u64 = 200;
/// Rows per write transaction of B2: what one group commit of W1b would hold at best.
const B2_ROWS_PER_TRANSACTION: u64 = 200;
/// The time after which W5 starts no further repetition, so a full run stays under 3 minutes.
const W5_BUDGET: Duration = Duration::from_secs(45);
/// Runs W3 starts together (below its limit of executing runs).
const W3_STARTS_AT_ONCE: usize = 100;
/// Above this ratio between a series' fastest and slowest repetition, the sitting was too
/// noisy for its figures to mean anything.
const MAX_SPREAD: f64 = 1.5;

struct Sizes {
    /// Baseline/workload pairs (B1 with W1a, B2 with W1b), and repetitions of W2 and W4.
    pairs: usize,
    /// The least time one repetition of B1, W1a, B2, W1b or W4 is timed for: it repeats its
    /// unit of work until this has passed.
    min_repetition: Duration,
    w1a_steps: u64,
    w1b_runs: u64,
    w1b_steps: u64,
    w2_steps: u64,
    w3_runs: u64,
    w5_steps: u64,
    w5_window: u64,
    /// Repetitions of W3 and W5, the slow ones.
    slow_repetitions: usize,
}

const FULL: Sizes = Sizes {
    pairs: 5,
    min_repetition: Duration::from_secs(1),
    w1a_steps: 1_000,
    w1b_runs: 200,
    w1b_steps: 10,
    w2_steps: 10_000,
    w3_runs: 10_000,
    w5_steps: 20_000,
    w5_window: 2_000,
    slow_repetitions: 3,
};

const QUICK: Sizes = Sizes {
    pairs: 3,
    min_repetition: Duration::from_millis(100),
    w1a_steps: 100,
    w1b_runs: 20,
    w1b_steps: 5,
    w2_steps: 1_000,
    w3_runs: 500,
    w5_steps: 1_000,
    w5_window: 100,
    slow_repetitions: 1,
};

/// Latencies of the recorded steps of sequential runs, in the order they finished.
static STEP_LATENCIES: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
/// When each recorded step of a sequential run finished.
static STEP_FINISHES: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// Locks a bench-only global; a panic elsewhere has already failed the bench.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// N sequential steps, each returning a 100-byte string; with `record`, each step's latency
/// and finish time go to the globals above.
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
                    lock(&STEP_LATENCIES).push(started.elapsed());
                    lock(&STEP_FINISHES).push(Instant::now());
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

/// Where the bench's files go, and the counter of the disk under them.
struct Bench {
    dir: tempfile::TempDir,
    files: u64,
    flushes: FlushCounter,
}

impl Bench {
    fn fresh_file(&mut self) -> PathBuf {
        self.files += 1;
        self.dir.path().join(format!("bench-{}.redb", self.files))
    }
}

/// Counts the flush requests (cache flushes, what an fsync becomes) the disk completed, from
/// the 16th field of its `stat` file in sysfs.
struct FlushCounter {
    stat: Option<PathBuf>,
}

impl FlushCounter {
    /// The counter of the whole disk holding `dir`; none if sysfs does not say which, or the
    /// kernel is too old to count flushes.
    fn for_dir(dir: &Path) -> FlushCounter {
        use std::os::unix::fs::MetadataExt;
        let stat = std::fs::metadata(dir).ok().and_then(|m| {
            let dev = m.dev();
            // glibc's encoding of a device number: 12 bits of major, 20 of minor, interleaved.
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            let device = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
            // A partition's flushes are counted on the disk that holds it.
            let disk = if device.join("partition").exists() {
                device.parent()?.to_path_buf()
            } else {
                device
            };
            Some(disk.join("stat"))
        });
        let counter = FlushCounter { stat };
        match counter.read() {
            Some(_) => counter,
            None => FlushCounter { stat: None },
        }
    }

    fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.stat.as_ref()?).ok()?;
        text.split_whitespace().nth(15)?.parse().ok()
    }

    /// Flushes completed since `before` (a `read`), if counted.
    fn since(&self, before: Option<u64>) -> Option<u64> {
        Some(self.read()?.saturating_sub(before?))
    }
}

/// The CPU time this process has used (all its threads, user and system), from
/// `/proc/self/stat` in clock ticks of 10 ms (USER_HZ is 100 on Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 14th and 15th fields of the line, so the 12th and 13th after it.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// Measures what a repetition costs besides its units: wall time, the disk's flushes, and
/// this process's CPU time.
struct Meter<'a> {
    counter: &'a FlushCounter,
    started: Instant,
    flushes: Option<u64>,
    cpu: Option<Duration>,
}

impl Meter<'_> {
    fn start(counter: &FlushCounter) -> Meter<'_> {
        Meter {
            counter,
            flushes: counter.read(),
            cpu: process_cpu(),
            started: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The repetition of `units` done since the start; `latencies`, in any order, are the
    /// units' own if each was timed (else empty).
    fn stop(self, units: u64, mut latencies: Vec<Duration>) -> Repetition {
        let elapsed = self.started.elapsed();
        let flushes = self.counter.since(self.flushes);
        let cpu = process_cpu()
            .zip(self.cpu)
            .map(|(now, then)| now.saturating_sub(then));
        latencies.sort();
        Repetition {
            units,
            elapsed,
            flushes,
            cpu,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
        }
    }
}

/// One timed repetition: `units` (commits, rows or steps) done in `elapsed`, with the disk's
/// flushes and the process's CPU time meanwhile and, where each unit was timed, the median
/// unit latency.
struct Repetition {
    units: u64,
    elapsed: Duration,
    flushes: Option<u64>,
    cpu: Option<Duration>,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

impl Repetition {
    fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_unit(&self) -> Option<Duration> {
        self.cpu.map(|cpu| cpu / self.units.max(1) as u32)
    }

    fn flushes_per_unit(&self) -> Option<f64> {
        self.flushes.map(|f| f as f64 / self.units as f64)
    }

    fn to_json(&self) -> Value {
        let mut line = json!({
            "rate": self.rate().round(),
            "units": self.units,
            "ms": round3(self.elapsed.as_secs_f64() * 1e3),
            "flushes": self.flushes,
            "flushes_per_unit": self.flushes_per_unit().map(round3),
            "cpu_us_per_unit": self.cpu_per_unit().map(micros),
        });
        if let Some(p50) = self.p50 {
            line["p50_us"] = json!(micros(p50));
        }
        if let Some(p99) = self.p99 {
            line["p99_us"] = json!(micros(p99));
        }
        line
    }
}

/// A latency in microseconds, to one decimal.
fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Option<Vec<f64>> = values.collect();
    values.filter(|v| !v.is_empty()).map(median)
}

/// The ratio of the fastest repetition's rate to the slowest's.
fn spread(reps: &[Repetition]) -> f64 {
    let rates = reps.iter().map(Repetition::rate);
    let max = rates.clone().fold(f64::MIN, f64::max);
    let min = rates.fold(f64::MAX, f64::min);
    max / min
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    let index = (last as f64 * p).round() as usize;
    sorted.get(index.min(last)).copied()
}

/// The JSON line of a series of repetitions: median rate, median flushes per unit, spread,
/// and every repetition.
fn series_json(name: &str, rate_key: &str, reps: &[Repetition]) -> Value {
    let mut line = json!({
        "name": name,
        rate_key: median(reps.iter().map(Repetition::rate).collect()).round(),
        "flushes_per_unit": median_of(reps.iter().map(Repetition::flushes_per_unit)).map(round3),
        "spread": round3(spread(reps)),
        "repetitions": reps.iter().map(Repetition::to_json).collect::<Vec<_>>(),
    });
    if let Some(p50) = median_of(reps.iter().map(|r| r.p50.map(micros))) {
        line["p50_us"] = json!(p50);
    }
    if let Some(p99) = median_of(reps.iter().map(|r| r.p99.map(micros))) {
        line["p99_us"] = json!(p99);
    }
    line
}

/// Whether a baseline bounded its workload in every pair, and both series were steady; the
/// reasons if not.
fn validity(
    baseline_name: &str,
    baseline: &[Repetition],
    workload_name: &str,
    workload: &[Repetition],
) -> Vec<String> {
    let mut why = Vec::new();
    for (pair, (b, w)) in baseline.iter().zip(workload).enumerate() {
        if b.rate() < w.rate() {
            why.push(format!(
                "pair {pair}: {baseline_name} {:.0}/s below {workload_name} {:.0}/s",
                b.rate(),
                w.rate()
            ));
        }
    }
    for (name, reps) in [(baseline_name, baseline), (workload_name, workload)] {
        let spread = spread(reps);
        if spread > MAX_SPREAD {
            why.push(format!(
                "{name}'s repetitions spread {spread:.2}x (more than {MAX_SPREAD}x)"
            ));
        }
    }
    why
}

/// Adds the pairing's figures to the workload's line: the median of the per-pair ratios, and
/// whether the sitting is valid.
fn add_pairing(
    line: &mut Value,
    ratio_key: &str,
    baseline: &[Repetition],
    workload: &[Repetition],
    why: &[String],
) {
    let ratios: Vec<f64> = baseline
        .iter()
        .zip(workload)
        .map(|(b, w)| w.rate() / b.rate())
        .collect();
    line[ratio_key] = json!(round3(median(ratios.clone())));
    line["pair_ratios"] = json!(ratios.into_iter().map(round3).collect::<Vec<_>>());
    mark_validity(line, why);
}

/// Marks a line valid, or invalid with the reasons.
fn mark_validity(line: &mut Value, why: &[String]) {
    line["valid"] = json!(why.is_empty());
    if !why.is_empty() {
        line["why"] = json!(why.join("; "));
    }
}

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");

/// One durable write transaction inserting `rows` 100-byte rows from key `first`.
fn raw_commit(db: &Database, first: u64, rows: u64) {
    let row = [7u8; 100];
    let mut tx = db.begin_write().expect("begin");
    tx.set_durability(Durability::Immediate)
        .expect("durability");
    {
        let mut table = tx.open_table(ROWS).expect("table");
        for key in first..first + rows {
            table.insert(key, row.as_slice()).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

/// A new raw redb file with the warm-up every timed file gets.
fn warmed_raw_database(path: &Path) -> Database {
    let db = Database::create(path).expect("create the baseline database");
    for i in 0..WARM_UP_COMMITS {
        raw_commit(&db, u64::MAX - WARM_UP_COMMITS + i, 1);
    }
    db
}

/// B1 (`rows` = 1) and B2: durable write transactions of `rows` rows each, for at least
/// `min_time`; a unit is a row.
fn raw_redb(path: &Path, rows: u64, min_time: Duration, flushes: &FlushCounter) -> Repetition {
    let db = warmed_raw_database(path);
    let mut latencies = Vec::new();
    let meter = Meter::start(flushes);
    let mut units = 0;
    while meter.elapsed() < min_time {
        let commit_started = Instant::now();
        raw_commit(&db, units, rows);
        latencies.push(commit_started.elapsed());
        units += rows;
    }
    meter.stop(units, latencies)
}

/// An engine on a new file, warmed up like a raw baseline's file: one run of as many
/// sequential steps as the baseline's warm-up commits.
async fn warmed_engine(path: &Path) -> Engine {
    let engine = Engine::open(path).await.expect("open");
    engine
        .start::<Sequential>("warm-up", (WARM_UP_COMMITS, false))
        .await
        .expect("start")
        .result()
        .await
        .expect("warm-up run");
    engine
}

/// W1a: runs of `steps` sequential steps, one after another, for at least `min_time`.
async fn w1a(path: &Path, steps: u64, min_time: Duration, flushes: &FlushCounter) -> Repetition {
    let engine = warmed_engine(path).await;
    lock(&STEP_LATENCIES).clear();
    let meter = Meter::start(flushes);
    let mut units = 0;
    while units == 0 || meter.elapsed() < min_time {
        engine
            .start::<Sequential>(format!("w1a-{units}"), (steps, true))
            .await
            .expect("start")
            .result()
            .await
            .expect("W1a run");
        units += steps;
    }
    let repetition = meter.stop(units, std::mem::take(&mut *lock(&STEP_LATENCIES)));
    engine.shutdown().await;
    repetition
}

/// W1b (`work_ms` = 0) and W4: rounds of `runs` runs started together, each of `steps` steps,
/// for at least `min_time`; a unit is a step.
async fn concurrent(
    path: &Path,
    (runs, steps, work_ms): (u64, u64, u64),
    min_time: Duration,
    flushes: &FlushCounter,
) -> Repetition {
    let engine = warmed_engine(path).await;
    engine.register::<Working>().await.expect("register");
    let meter = Meter::start(flushes);
    let mut round = 0;
    while round == 0 || meter.elapsed() < min_time {
        // Started together, as concurrent clients would: their creations share commits too.
        let starts = (0..runs)
            .map(|r| engine.start::<Working>(format!("run-{round}-{r}"), (steps, work_ms)));
        let handles = futures::future::join_all(starts).await;
        let results = handles.into_iter().map(|handle| async move {
            handle
                .expect("start")
                .result()
                .await
                .expect("concurrent run")
        });
        futures::future::join_all(results).await;
        round += 1;
    }
    let repetition = meter.stop(round * runs * steps, Vec::new());
    engine.shutdown().await;
    repetition
}

/// W2: a journal holding one unfinished run with `steps` completed steps, resumed to its end;
/// the repetition's elapsed time is open-to-done.
async fn w2(path: &Path, steps: u64, flushes: &FlushCounter) -> Repetition {
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
    let meter = Meter::start(flushes);
    let engine = Engine::open(path).await.expect("open");
    engine.register::<Sequential>().await.expect("register");
    engine
        .handle::<Sequential>("w2")
        .result()
        .await
        .expect("W2 run");
    let repetition = meter.stop(steps, Vec::new());
    engine.shutdown().await;
    repetition
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
    // Started a few hundred at a time, as concurrent clients would, so that their creations
    // share commits: one by one, 10,000 creations take 10,000 fsyncs (40 s on a slow disk).
    let ids: Vec<u64> = (0..runs).collect();
    for chunk in ids.chunks(W3_STARTS_AT_ONCE) {
        let starts = chunk
            .iter()
            .map(|r| engine.start::<Sleeper>(format!("sleeper-{r}"), ()));
        for started in futures::future::join_all(starts).await {
            started.expect("start");
        }
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

/// W5's figures: steps/s over the first and the last window, and file bytes per step.
struct Growth {
    first: f64,
    last: f64,
    bytes_per_step: f64,
}

/// W5: steps/s over the last window against the first, and file bytes per step.
async fn w5(path: &Path, steps: u64, window: u64) -> Growth {
    lock(&STEP_FINISHES).clear();
    let engine = Engine::open(path).await.expect("open");
    let started = Instant::now();
    engine
        .start::<Sequential>("w5", (steps, true))
        .await
        .expect("start")
        .result()
        .await
        .expect("W5 run");
    engine.shutdown().await;
    drop(engine);
    lock(&STEP_LATENCIES).clear();
    let finishes = std::mem::take(&mut *lock(&STEP_FINISHES));
    let window = (window as usize).clamp(1, finishes.len().max(1));
    let rate = |from: Instant, to: Instant| window as f64 / (to - from).as_secs_f64();
    let n = finishes.len();
    let (first, last) = match (finishes.get(window - 1), n.checked_sub(window + 1)) {
        (Some(&end), Some(from)) => (rate(started, end), rate(finishes[from], finishes[n - 1])),
        _ => (f64::NAN, f64::NAN),
    };
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64;
    Growth {
        first,
        last,
        bytes_per_step: bytes / steps as f64,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = if quick { &QUICK } else { &FULL };
    // `--only W1b,W2` runs those workloads (with their baselines) alone, for profiling one.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|names| names.split(',').map(str::to_owned).collect());
    let wanted = |names: &[&str]| {
        only.as_ref()
            .is_none_or(|only| names.iter().any(|n| only.iter().any(|o| o == n)))
    };
    // Not /tmp: it may be a tmpfs, where fsync costs nothing.
    let parent = std::env::current_dir()
        .expect("current directory")
        .join("target");
    std::fs::create_dir_all(&parent).expect("create the target directory");
    let dir = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(&parent)
        .expect("create the bench directory");
    let flushes = FlushCounter::for_dir(dir.path());
    let mut bench = Bench {
        dir,
        files: 0,
        flushes,
    };
    let min_time = sizes.min_repetition;

    let emit = |line: Value| {
        if json {
            println!("{line}");
        } else {
            eprintln!("{line:#}");
        }
    };

    // B1 and W1a, alternating.
    if wanted(&["B1", "W1a"]) {
        let section = Instant::now();
        let (mut b1, mut w1a_reps) = (Vec::new(), Vec::new());
        for _ in 0..sizes.pairs {
            b1.push(raw_redb(&bench.fresh_file(), 1, min_time, &bench.flushes));
            let path = bench.fresh_file();
            w1a_reps.push(w1a(&path, sizes.w1a_steps, min_time, &bench.flushes).await);
        }
        let why = validity("B1", &b1, "W1a", &w1a_reps);
        let mut line = series_json("B1", "commits_per_s", &b1);
        mark_validity(&mut line, &why);
        line["seconds"] = json!(round3(section.elapsed().as_secs_f64()));
        emit(line);
        let mut line = series_json("W1a", "steps_per_s", &w1a_reps);
        add_pairing(&mut line, "ratio_to_B1", &b1, &w1a_reps, &why);
        emit(line);
    }

    // B2 and W1b, alternating.
    let mut w1b_rate = None;
    if wanted(&["B2", "W1b", "W4"]) {
        let section = Instant::now();
        let (mut b2, mut w1b) = (Vec::new(), Vec::new());
        let w1b_shape = (sizes.w1b_runs, sizes.w1b_steps, 0);
        for _ in 0..sizes.pairs {
            let path = bench.fresh_file();
            b2.push(raw_redb(
                &path,
                B2_ROWS_PER_TRANSACTION,
                min_time,
                &bench.flushes,
            ));
            let path = bench.fresh_file();
            w1b.push(concurrent(&path, w1b_shape, min_time, &bench.flushes).await);
        }
        let why = validity("B2", &b2, "W1b", &w1b);
        let mut line = series_json("B2", "rows_per_s", &b2);
        line["rows_per_transaction"] = json!(B2_ROWS_PER_TRANSACTION);
        mark_validity(&mut line, &why);
        line["seconds"] = json!(round3(section.elapsed().as_secs_f64()));
        emit(line);
        let mut line = series_json("W1b", "steps_per_s", &w1b);
        add_pairing(&mut line, "ratio_to_B2", &b2, &w1b, &why);
        emit(line);
        w1b_rate = Some(median(w1b.iter().map(Repetition::rate).collect()));
    }

    if wanted(&["W2"]) {
        let section = Instant::now();
        let mut w2_reps = Vec::new();
        for _ in 0..sizes.pairs {
            let path = bench.fresh_file();
            w2_reps.push(w2(&path, sizes.w2_steps, &bench.flushes).await);
        }
        let mut line = series_json("W2", "replayed_steps_per_s", &w2_reps);
        let open_to_done = w2_reps.iter().map(|r| r.elapsed.as_secs_f64() * 1e3);
        line["open_to_done_ms"] = json!(round3(median(open_to_done.collect())));
        line["steps"] = json!(sizes.w2_steps);
        line["seconds"] = json!(round3(section.elapsed().as_secs_f64()));
        emit(line);
    }

    if wanted(&["W3"]) {
        let section = Instant::now();
        let mut per_run = Vec::new();
        for _ in 0..sizes.slow_repetitions {
            per_run.push(w3(&bench.fresh_file(), sizes.w3_runs).await);
        }
        emit(
            json!({"name": "W3", "bytes_per_parked_run": median(per_run).round(),
        "runs": sizes.w3_runs, "seconds": round3(section.elapsed().as_secs_f64())}),
        );
    }

    if wanted(&["W4"]) {
        let section = Instant::now();
        let mut w4 = Vec::new();
        let w4_shape = (sizes.w1b_runs, sizes.w1b_steps, 1);
        for _ in 0..sizes.pairs {
            let path = bench.fresh_file();
            w4.push(concurrent(&path, w4_shape, min_time, &bench.flushes).await);
        }
        let mut line = series_json("W4", "steps_per_s", &w4);
        let w4_rate = median(w4.iter().map(Repetition::rate).collect());
        if let Some(w1b_rate) = w1b_rate {
            line["ratio_to_W1b"] = json!(round3(w4_rate / w1b_rate));
        }
        line["seconds"] = json!(round3(section.elapsed().as_secs_f64()));
        emit(line);
    }

    if wanted(&["W5"]) {
        let section = Instant::now();
        let mut growth = Vec::new();
        // 60,000 sequential fsyncs: on a disk throttled to 4 ms per flush that alone would
        // take 4 minutes, so W5 stops repeating once its budget is spent, and says so.
        while growth.len() < sizes.slow_repetitions
            && (growth.is_empty() || section.elapsed() < W5_BUDGET)
        {
            let path = bench.fresh_file();
            growth.push(w5(&path, sizes.w5_steps, sizes.w5_window).await);
        }
        let first = median(growth.iter().map(|g| g.first).collect());
        let last = median(growth.iter().map(|g| g.last).collect());
        let bytes = median(growth.iter().map(|g| g.bytes_per_step).collect());
        let mut line = json!({"name": "W5", "first_steps_per_s": first.round(),
            "last_steps_per_s": last.round(), "last_to_first": round3(last / first),
            "file_bytes_per_step": bytes.round(), "repetitions": growth.len(),
            "seconds": round3(section.elapsed().as_secs_f64())});
        if growth.len() < sizes.slow_repetitions {
            let why = format!(
                "{} of {} repetitions within {} s: the disk is slow today",
                growth.len(),
                sizes.slow_repetitions,
                W5_BUDGET.as_secs()
            );
            mark_validity(&mut line, &[why]);
        }
        emit(line);
    }
}
