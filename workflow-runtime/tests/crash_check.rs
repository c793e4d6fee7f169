//! The crash checker of `workflow_runtime::testing`: on the fan-out, on a corpus of
//! generated workflow shapes, and on workflows it must find fault with.

mod shapes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shapes::{Generator, Interpreter, join_all};
use workflow_runtime::BoxFuture;
use workflow_runtime::testing::{CrashCheck, Latencies, Variant};
use workflow_runtime::{StepError, Workflow, WorkflowFailure, durable, step, workflow};

// ---------------------------------------------------------------------------------------------
// The fan-out
// ---------------------------------------------------------------------------------------------

#[step]
async fn fetch(item: u32) -> Result<u32, std::io::Error> {
    Ok(item * 10)
}

#[step]
async fn summarize(value: u32) -> Result<String, std::io::Error> {
    Ok(format!("summary of {value}"))
}

/// Branches of two steps each, at once.
#[workflow]
async fn pipeline(items: Vec<u32>) -> Result<Vec<String>, StepError> {
    let branches = items.into_iter().map(|item| async move {
        let fetched = fetch(item).await?;
        summarize(fetched).await
    });
    join_all(branches).await.into_iter().collect()
}

/// Regression (the fan-out replay bug): the branches of a fan-out finish in another order than
/// they were called (here: the second `fetch` before the first), the process dies, and the
/// resumed run handed each branch the journaled value of another.
#[tokio::test]
async fn crash_check_fan_out_with_inverted_finishing_order() {
    let seeds = 0..8;
    // At least one seed makes the second branch's fetch (#1) finish before the first's (#0).
    let inverted: Vec<u64> = seeds
        .clone()
        .filter(|&seed| {
            let latencies = Latencies::seeded(seed);
            latencies.latency("crash-check", 1, "fetch", 1)
                < latencies.latency("crash-check", 0, "fetch", 1)
        })
        .collect();
    assert!(!inverted.is_empty(), "no seed inverts the finishing order");

    let report = CrashCheck::new::<pipeline>((vec![1, 2],))
        .with_seeds(seeds)
        .run()
        .await;
    println!("{report}");
    report.assert_ok();
    // Per seed: the run's creation, four steps and its end.
    assert_eq!(report.crash_points(), 8 * 6);
    assert_eq!(report.simulations(), 8 * (1 + 2 * 6));
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

/// How many generated shapes the corpus test checks.
const CORPUS: u64 = 500;

/// Every crash point of 500 generated shapes, in both variants, one latency seed each (the
/// shape's): the resumed runs must end as the uninterrupted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_check_corpus_of_generated_shapes() {
    let started = Instant::now();
    let (mut crash_points, mut simulations, mut leaves) = (0, 0, 0);
    let mut failures = Vec::new();
    // CRASH_CHECK_SHAPES=first..end checks those shapes only: to reproduce a failure.
    let seeds = match std::env::var("CRASH_CHECK_SHAPES") {
        Ok(range) => {
            let (first, end) = range
                .split_once("..")
                .expect("CRASH_CHECK_SHAPES=first..end");
            first.parse().expect("a number")..end.parse().expect("a number")
        }
        Err(_) => 0..CORPUS,
    };
    for seed in seeds.clone() {
        let (shape, events) = Generator::shape(seed);
        leaves += shape.leaves();
        let mut check = CrashCheck::new::<Interpreter>((shape.clone(),))
            .with_step_latencies(Latencies::seeded(seed));
        for event in &events {
            check = check.with_event(event.name.clone(), event.payload, event.at);
        }
        let report = check.run().await;
        crash_points += report.crash_points();
        simulations += report.simulations();
        if !report.is_ok() {
            failures.push((seed, shape, report));
        }
    }
    // Straight to stderr, past the test harness's capture: CI's log shows the corpus checked.
    let summary = format!(
        "crash_check corpus: {} shapes ({leaves} leaves), {crash_points} crash points, {simulations} simulations, {} shapes failed, in {:.1?}\n",
        seeds.end - seeds.start,
        failures.len(),
        started.elapsed()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    let listed = failures.len().min(3);
    for (seed, shape, report) in failures
        .iter()
        .take(3)
        .chain(failures.iter().skip(listed).last())
    {
        println!("\nshape {seed}: {}\n{report}", shape.render());
    }
    let failed: Vec<u64> = failures.iter().map(|(seed, ..)| *seed).collect();
    assert!(failed.is_empty(), "shapes that diverged: {failed:?}");
}

/// The generator is reproducible, and its shapes use every construct.
#[test]
fn the_corpus_is_reproducible_and_varied() {
    let render = |seed| Generator::shape(seed).0.render();
    assert_eq!(render(42), render(42));
    assert_ne!(render(42), render(43));
    let all: String = (0..CORPUS).map(render).collect::<Vec<_>>().join("\n");
    for construct in [
        "seq(",
        "join(",
        "try_join(",
        "sleep ",
        "wait ev",
        "timer ",
        "race(",
        "child(",
        "transient",
        "terminal",
    ] {
        assert!(all.contains(construct), "no shape has {construct}");
    }
    let with_events = (0..CORPUS)
        .filter(|&s| !Generator::shape(s).1.is_empty())
        .count();
    assert!(with_events > 50, "only {with_events} shapes get events");
}

// ---------------------------------------------------------------------------------------------
// The checker itself
// ---------------------------------------------------------------------------------------------

/// Five steps in a row: nothing concurrent, nothing to diverge.
struct Sequence;

impl Workflow for Sequence {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "sequence";

    fn run((start,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let mut value = start;
            for i in 0..5 {
                value = step(format!("add-{i}"))
                    .run(|| async move { Ok::<_, std::io::Error>(value * 3 + i) })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            }
            Ok(value)
        })
    }
}

#[tokio::test]
async fn crash_check_counts_every_commit_point_of_a_sequence() {
    let report = CrashCheck::new::<Sequence>((1,)).run().await;
    report.assert_ok();
    // The run's creation, five steps, its end.
    assert_eq!(report.crash_points(), 7);
    assert_eq!(report.simulations(), 1 + 2 * 7);
    assert!(
        report
            .to_string()
            .contains("all resumed runs ended as the uninterrupted ones")
    );
}

static BODY_READS: AtomicU64 = AtomicU64::new(0);

/// Reads a counter in its body, outside any step: every execution of the body, replays
/// included, sees another value.
struct ReadsACounter;

impl Workflow for ReadsACounter {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "reads_a_counter";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let first = step("first")
                .run(|| async { Ok::<_, std::io::Error>(1) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            let read = BODY_READS.fetch_add(1, Ordering::SeqCst);
            let second = step("second")
                .run(|| async move { Ok::<_, std::io::Error>(first + 1) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            Ok(format!("{second} after {read} reads"))
        })
    }
}

#[tokio::test]
async fn crash_check_reports_a_body_that_reads_outside_the_journal() {
    let report = CrashCheck::new::<ReadsACounter>(())
        .with_step_latencies(Latencies::seeded(3))
        .run()
        .await;
    assert!(!report.is_ok(), "a body reading a counter passed: {report}");
    // Even the uninterrupted run fails: its replay sees another count.
    let text = report.to_string();
    assert!(text.contains("seed 3"), "{text}");
    assert!(text.contains("Engine::replay"), "{text}");
    let panic = std::panic::catch_unwind(|| report.assert_ok()).expect_err("assert_ok panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("reads_a_counter"), "{message}");
}

static STEP_CALLS: AtomicU64 = AtomicU64::new(0);

/// Deterministic in its body, but one step's value changes with every execution: a resumed run
/// that executes it again ends with another output.
struct FreshValue;

impl Workflow for FreshValue {
    type Input = ();
    type Output = u64;
    const NAME: &'static str = "fresh_value";

    fn run((): ()) -> BoxFuture<'static, Result<u64, WorkflowFailure>> {
        Box::pin(async move {
            let fresh = step("fresh")
                .run(|| async {
                    Ok::<_, std::io::Error>(STEP_CALLS.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            durable::sleep(Duration::from_millis(5)).await;
            Ok(fresh)
        })
    }
}

#[tokio::test]
async fn crash_check_failures_name_the_seed_the_commit_and_the_variant() {
    let report = CrashCheck::new::<FreshValue>(())
        .with_step_latencies(Latencies::seeded(11))
        .run()
        .await;
    // Every simulation executes `fresh` anew, before or after its crash.
    let failure = report
        .failures()
        .iter()
        .find(|f| {
            f.crash_point()
                .is_some_and(|p| p.variant() == Variant::CommitLost && p.commit() == 2)
        })
        .unwrap_or_else(|| panic!("the lost commit of `fresh` was not reported: {report}"));
    assert_eq!(failure.seed(), Some(11));
    let point = failure.crash_point().expect("a crash point");
    assert_eq!(point.wrote(), "step #0 fresh");
    let text = failure.to_string();
    assert!(
        text.starts_with("seed 11, during commit 2 (lost, side effect done): step #0 fresh"),
        "{text}"
    );
    assert!(text.contains("the output differs"), "{text}");
    assert!(text.contains("first divergent step: #0 fresh"), "{text}");
}

/// Waits for an approval, which the checker sends.
struct Approval;

impl Workflow for Approval {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "approval";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let request = step("request")
                .run(|| async { Ok::<_, std::io::Error>("request-1".to_owned()) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            let approved: Option<bool> =
                durable::wait_for_event_timeout("approval", Duration::from_secs(86_400))
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            Ok(format!("{request}: {approved:?}"))
        })
    }
}

#[tokio::test]
async fn crash_check_sends_events_at_their_virtual_time() {
    let report = CrashCheck::new::<Approval>(())
        .with_event("approval", true, Duration::from_secs(3_600))
        .run()
        .await;
    report.assert_ok();
    // The event's sending is a commit point of its own.
    assert!(report.crash_points() >= 6, "{report}");
}

/// Waits up to two hours for an event that comes after a minute, then races a step of 100 ms
/// against a five-second timer.
struct WokenEarly;

impl Workflow for WokenEarly {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "woken_early";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let go: Option<u32> = durable::wait_for_event_timeout("go", Duration::from_secs(7_200))
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            let raced = durable::race(
                step("quick").run(|| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>("step".to_owned())
                }),
                durable::sleep(Duration::from_secs(5)),
            )
            .await;
            let winner = match raced {
                durable::Either::First(won) => {
                    won.map_err(|e| WorkflowFailure::new(e.to_string()))?
                }
                durable::Either::Second(()) => "timer".to_owned(),
            };
            Ok(format!("go {go:?}, {winner} first"))
        })
    }
}

/// Regression (found by the corpus, shapes 305 and 392): a run that waited out of memory and
/// was woken by its event before its deadline kept the deadline as its `not_before` while it
/// ran; a crash then, and the next process started it only at the old deadline, two hours
/// late, so the five-second timer won the race that the step wins without a crash.
#[tokio::test]
async fn crash_check_a_run_woken_early_by_an_event_resumes_at_once_after_a_crash() {
    let report = CrashCheck::new::<WokenEarly>(())
        .with_event("go", 7, Duration::from_secs(60))
        .run()
        .await;
    report.assert_ok();
}

#[test]
fn latencies_are_reproducible_whole_milliseconds_within_their_bound() {
    let latencies = Latencies::seeded(5).up_to(Duration::from_millis(20));
    let drawn: Vec<Duration> = (0..200)
        .map(|seq| latencies.latency("run", seq, "step", 1))
        .collect();
    assert_eq!(
        drawn,
        (0..200)
            .map(|seq| latencies.latency("run", seq, "step", 1))
            .collect::<Vec<_>>()
    );
    assert!(
        drawn
            .iter()
            .all(|d| *d <= Duration::from_millis(20) && d.subsec_micros() % 1000 == 0)
    );
    assert!(
        drawn.iter().any(|d| d.is_zero()) && drawn.iter().any(|d| *d == Duration::from_millis(20))
    );
    let other = Latencies::seeded(6).up_to(Duration::from_millis(20));
    assert_ne!(
        drawn,
        (0..200)
            .map(|seq| other.latency("run", seq, "step", 1))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        Latencies::none().latency("run", 0, "step", 1),
        Duration::ZERO
    );
}

/// Twenty steps in a row, every crash point: the speed figure of the docs. Run with
/// `cargo test -p workflow-runtime --release --test crash_check -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: run it in a release build"]
async fn crash_check_speed_of_twenty_steps() {
    struct Twenty;
    impl Workflow for Twenty {
        type Input = ();
        type Output = u64;
        const NAME: &'static str = "twenty";
        fn run((): ()) -> BoxFuture<'static, Result<u64, WorkflowFailure>> {
            Box::pin(async move {
                let mut total = 0;
                for i in 0..20u64 {
                    total += step(format!("step-{i}"))
                        .run(|| async move { Ok::<_, std::io::Error>(i) })
                        .await
                        .map_err(|e| WorkflowFailure::new(e.to_string()))?;
                }
                Ok(total)
            })
        }
    }
    for _ in 0..3 {
        let started = Instant::now();
        let report = CrashCheck::new::<Twenty>(())
            .with_step_latencies(Latencies::seeded(1))
            .run()
            .await;
        let elapsed = started.elapsed();
        report.assert_ok();
        println!(
            "crash_check twenty steps: {} crash points, {} simulations in {elapsed:.1?}",
            report.crash_points(),
            report.simulations()
        );
    }
}
