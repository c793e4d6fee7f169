//! A corpus of workflow shapes for the crash checker: a seeded generator of trees of steps,
//! and a workflow that interprets a tree with the plain API (no macros).
//!
//! A shape is a tree of sequential and concurrent groups (join_all, try_join_all) of steps,
//! durable timers, event waits with deadlines, races (a step against a timer, two steps) and
//! child workflows, with steps that fail transiently before they succeed, or for good. Each
//! step's value is a hash of its path in the tree and of the values before it in its branch,
//! so a value replayed into the wrong branch changes the output; the output renders every value
//! in tree order.
//!
//! Timing is chosen so that a crash cannot legitimately change the outcome: a race's winner,
//! and whether an event beats its deadline, hold whatever a crash delays (see
//! [`Generator`]). A divergence is therefore a bug of the runtime (or of the checker).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow_runtime::BoxFuture;
use workflow_runtime::durable::{self, Either};
use workflow_runtime::{
    Backoff, StepContext, StepError, StepFailure, Workflow, WorkflowFailure, step,
};

/// The steps' names: few, so that branches share names and a value replayed into the wrong
/// branch is not caught by a name check.
const NAMES: [&str; 4] = ["fetch", "parse", "summarize", "store"];

/// A workflow shape: the tree, and a salt that child runs get from their parent's values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shape {
    pub root: Node,
    pub salt: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Node {
    Step(StepSpec),
    Seq(Vec<Node>),
    /// Every branch runs; failures are folded into the value.
    Join(Vec<Node>),
    /// The first failing branch fails the group and drops the others.
    TryJoin(Vec<Node>),
    Sleep {
        ms: u64,
    },
    Wait {
        event: String,
        timeout_ms: u64,
    },
    /// `durable::race` of a step against a timer.
    RaceTimer {
        step: StepSpec,
        timer_ms: u64,
    },
    /// `durable::race` of two steps.
    RaceSteps(StepSpec, StepSpec),
    Child(Box<Shape>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    /// How long the step's own work takes (virtual time), on top of the checker's latency.
    pub work_ms: u64,
    /// Attempts that fail (transient) before one succeeds.
    pub failures: u32,
    pub retries: u32,
    /// A short backoff without jitter, or the default policy's.
    pub quick_backoff: bool,
    /// The failures are terminal: never retried.
    pub terminal: bool,
    /// Each failing attempt takes 600 s: see [`Generator`].
    pub slow_failure: bool,
}

/// An event the checker sends to the run.
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub name: String,
    pub payload: u64,
    pub at: Duration,
}

impl Shape {
    /// The number of nodes that are not groups.
    pub fn leaves(&self) -> usize {
        fn count(node: &Node) -> usize {
            match node {
                Node::Seq(nodes) | Node::Join(nodes) | Node::TryJoin(nodes) => {
                    nodes.iter().map(count).sum()
                }
                Node::Child(shape) => 1 + count(&shape.root),
                _ => 1,
            }
        }
        count(&self.root)
    }

    /// A compact rendering, for failure messages.
    pub fn render(&self) -> String {
        fn render(node: &Node, out: &mut String) {
            let group = |out: &mut String, tag: &str, nodes: &[Node]| {
                out.push_str(tag);
                out.push('(');
                for (i, node) in nodes.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    render(node, out);
                }
                out.push(')');
            };
            match node {
                Node::Step(s) => out.push_str(&step(s)),
                Node::Seq(nodes) => group(out, "seq", nodes),
                Node::Join(nodes) => group(out, "join", nodes),
                Node::TryJoin(nodes) => group(out, "try_join", nodes),
                Node::Sleep { ms } => out.push_str(&format!("sleep {ms}ms")),
                Node::Wait { event, timeout_ms } => {
                    out.push_str(&format!("wait {event} {timeout_ms}ms"))
                }
                Node::RaceTimer { step: s, timer_ms } => {
                    out.push_str(&format!("race({}, timer {timer_ms}ms)", step(s)))
                }
                Node::RaceSteps(a, b) => out.push_str(&format!("race({}, {})", step(a), step(b))),
                Node::Child(shape) => {
                    out.push_str("child(");
                    render(&shape.root, out);
                    out.push(')');
                }
            }
        }
        fn step(s: &StepSpec) -> String {
            let mut text = s.name.clone();
            if s.work_ms > 0 {
                text.push_str(&format!(" {}ms", s.work_ms));
            }
            if s.failures > 0 {
                let kind = if s.terminal { "terminal" } else { "transient" };
                text.push_str(&format!(" {}x{kind}/{}r", s.failures, s.retries));
            }
            text
        }
        let mut out = String::new();
        render(&self.root, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Generates shapes whose outcome no crash can legitimately change, with the checker's step
/// latencies of at most 50 ms. A crash restarts the steps in flight, so after it steps finish in
/// another order, get other sequence numbers and so other latencies; the shapes are built so
/// that none of this changes the output or the steps journaled:
///
/// - a race's winner holds: a step racing a 5 s timer takes under 400 ms even started twice; a
///   step racing a timer of at most 200 ms does 2 s of work; of two racing steps, one does 1 s
///   of work and the other at most 100 ms. Steps in races never fail for good;
/// - a step that fails for good under a try_join (with no join between them to absorb the
///   failure) does so after 600 s of work per attempt, when everything beside it has finished,
///   and at most one branch of a try_join may fail: the steps journaled beside a failure, and
///   which failure a try_join reports, do not depend on timing. Other failures are quick;
/// - an event is sent before the wait's deadline could pass (`at` < timeout, and the deadline
///   is set when the wait begins, after the start), or never;
/// - timers and waits longer than the engine's 10 s park the run out of memory, dropping the
///   steps in flight: they appear only where nothing runs beside them (not under a join).
pub struct Generator {
    rng: Rng,
    events: Vec<EventPlan>,
    leaves: usize,
    max_leaves: usize,
}

/// Where a node is generated.
#[derive(Clone, Copy)]
struct Place {
    depth: u32,
    /// Under a join: other branches run beside it.
    concurrent: bool,
    /// Inside a child workflow: no event waits (events go to the checked run only).
    in_child: bool,
    /// Nothing in it may fail for good (a try_join that has a branch that may).
    no_failure: bool,
    /// A failure here reaches a try_join (no join absorbs it on the way).
    exposed: bool,
}

impl Generator {
    /// The shape of seed `seed`, and the events the checker sends to its run.
    pub fn shape(seed: u64) -> (Shape, Vec<EventPlan>) {
        let mut rng = Rng::new(seed);
        let max_leaves = 3 + rng.below(10) as usize;
        let mut generator = Generator {
            rng,
            events: Vec::new(),
            leaves: 0,
            max_leaves,
        };
        let place = Place {
            depth: 0,
            concurrent: false,
            in_child: false,
            no_failure: false,
            exposed: false,
        };
        let len = 2 + generator.rng.below(3) as usize;
        let root = generator.sequence(place, len);
        let salt = generator.rng.next() % 1_000;
        (Shape { root, salt }, generator.events)
    }

    fn sequence(&mut self, place: Place, len: usize) -> Node {
        let mut nodes = Vec::new();
        for _ in 0..len {
            if self.leaves >= self.max_leaves && !nodes.is_empty() {
                break;
            }
            nodes.push(self.node(place));
        }
        Node::Seq(nodes)
    }

    fn node(&mut self, place: Place) -> Node {
        let room = self.leaves + 2 <= self.max_leaves;
        if place.depth < 4 && room && self.rng.chance(if place.depth == 0 { 60 } else { 35 }) {
            let inner = Place {
                depth: place.depth + 1,
                ..place
            };
            let width = 2 + self.rng.below(2) as usize;
            return match self.rng.below(3) {
                0 => self.sequence(inner, width),
                1 => {
                    let branch = Place {
                        concurrent: true,
                        exposed: false,
                        ..inner
                    };
                    Node::Join((0..width).map(|_| self.branch(branch)).collect())
                }
                _ => {
                    let mut branch = Place {
                        concurrent: true,
                        exposed: true,
                        ..inner
                    };
                    let mut branches = Vec::new();
                    for _ in 0..width {
                        let node = self.branch(branch);
                        // One branch at most may fail: which failure wins must not be a race.
                        branch.no_failure |= may_fail(&node);
                        branches.push(node);
                    }
                    Node::TryJoin(branches)
                }
            };
        }
        self.leaves += 1;
        match self.rng.below(100) {
            0..=44 => Node::Step(self.step(place, Role::Plain)),
            45..=54 => Node::Sleep {
                ms: if !place.concurrent && self.rng.chance(30) {
                    3_600_000
                } else {
                    1 + self.rng.below(300)
                },
            },
            55..=66 if !place.in_child => self.wait(place),
            67..=76 => {
                if self.rng.chance(50) {
                    Node::RaceTimer {
                        step: self.step(place, Role::Quick),
                        timer_ms: 5_000,
                    }
                } else {
                    Node::RaceTimer {
                        step: self.step(place, Role::Slow),
                        timer_ms: 1 + self.rng.below(200),
                    }
                }
            }
            77..=86 => {
                let (quick, slow) = (self.step(place, Role::Quick), self.step(place, Role::Slow));
                if self.rng.chance(50) {
                    Node::RaceSteps(quick, slow)
                } else {
                    Node::RaceSteps(slow, quick)
                }
            }
            87..=99 if !place.in_child && place.depth < 3 => {
                let child = Place {
                    depth: place.depth + 1,
                    concurrent: false,
                    in_child: true,
                    ..place
                };
                let len = 1 + self.rng.below(3) as usize;
                let root = self.sequence(child, len);
                Node::Child(Box::new(Shape { root, salt: 0 }))
            }
            _ => Node::Step(self.step(place, Role::Plain)),
        }
    }

    /// A branch of a join: one node, or a short sequence.
    fn branch(&mut self, place: Place) -> Node {
        if self.rng.chance(60) {
            let len = 2 + self.rng.below(2) as usize;
            self.sequence(place, len)
        } else {
            self.node(place)
        }
    }

    fn step(&mut self, place: Place, role: Role) -> StepSpec {
        let name = self.rng.pick(&NAMES).to_string();
        let work_ms = match role {
            Role::Slow => 1_000 + self.rng.below(1_000),
            Role::Quick => self.rng.below(100) * u64::from(self.rng.chance(30)),
            Role::Plain => self.rng.below(300) * u64::from(self.rng.chance(30)),
        };
        let may_fail_for_good = role == Role::Plain && !place.no_failure;
        let (failures, retries, terminal) = match self.rng.below(100) {
            // Transient failures that the retries outlast.
            0..=19 if role != Role::Slow => {
                let failures = 1 + self.rng.below(2) as u32;
                (failures, failures + self.rng.below(2) as u32, false)
            }
            // More failures than retries: the step fails for good.
            20..=26 if may_fail_for_good => (3, 1, false),
            27..=30 if may_fail_for_good => (1, 3, true),
            _ => (0, 0, false),
        };
        StepSpec {
            name,
            work_ms,
            failures,
            retries,
            quick_backoff: role != Role::Plain || self.rng.chance(70),
            terminal,
            slow_failure: place.exposed,
        }
    }

    fn wait(&mut self, place: Place) -> Node {
        let event = format!("ev{}", self.leaves);
        let long = !place.concurrent && self.rng.chance(30);
        let timeout_ms = if long {
            7_200_000
        } else {
            100 + self.rng.below(1_900)
        };
        if self.rng.chance(65) {
            let at = self.rng.below(timeout_ms / 2);
            self.events.push(EventPlan {
                name: event.clone(),
                payload: self.rng.below(1_000),
                at: Duration::from_millis(at),
            });
        }
        Node::Wait { event, timeout_ms }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    /// In a race, the step that wins.
    Quick,
    /// In a race, the step that loses.
    Slow,
}

/// Whether `node` may fail (so fail the branch it is in).
pub fn may_fail(node: &Node) -> bool {
    match node {
        Node::Step(step) => step.fails_for_good(),
        Node::Seq(nodes) | Node::TryJoin(nodes) => nodes.iter().any(may_fail),
        Node::Child(shape) => may_fail(&shape.root),
        Node::Join(_)
        | Node::Sleep { .. }
        | Node::Wait { .. }
        | Node::RaceTimer { .. }
        | Node::RaceSteps(..) => false,
    }
}

impl StepSpec {
    /// Whether the step fails after its retries.
    pub fn fails_for_good(&self) -> bool {
        self.failures > 0 && (self.terminal || self.failures > self.retries)
    }
}

// ---------------------------------------------------------------------------------------------
// The interpreter
// ---------------------------------------------------------------------------------------------

/// Runs a [`Shape`]; its output renders every value in tree order.
pub struct Interpreter;

impl Workflow for Interpreter {
    type Input = (Shape,);
    type Output = String;
    const NAME: &'static str = "interpreter";

    fn run((shape,): (Shape,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let (acc, text) = eval(shape.root, "r".to_owned(), shape.salt)
                .await
                .map_err(WorkflowFailure::new)?;
            Ok(format!("{text} => {acc:08x}"))
        })
    }
}

/// FNV-1a over the parts, then a SplitMix finish.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain([0xff].iter()) {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (h ^ (h >> 33)) & 0xffff_ffff
}

fn fold(acc: u64, path: &str, what: &str) -> u64 {
    hash(&[&acc.to_le_bytes(), path.as_bytes(), what.as_bytes()])
}

/// A value and its rendering; an error fails the enclosing sequence up to the nearest join.
type Eval = Result<(u64, String), String>;

fn failure_text(error: &StepError) -> String {
    format!("{}!{:?}", error.step, error.kind)
}

/// Evaluates `node` at `path`, `acc` being the value of what came before in its branch.
fn eval(node: Node, path: String, acc: u64) -> BoxFuture<'static, Eval> {
    Box::pin(async move {
        match node {
            Node::Step(spec) => match run_step(&spec, &path, acc).await {
                Ok(value) => Ok((value, format!("{}={value:08x}", spec.name))),
                Err(error) => Err(failure_text(&error)),
            },
            Node::Seq(nodes) => {
                let mut acc = acc;
                let mut parts = Vec::new();
                for (i, node) in nodes.into_iter().enumerate() {
                    let (value, text) = eval(node, format!("{path}.{i}"), acc).await?;
                    acc = value;
                    parts.push(text);
                }
                Ok((acc, format!("[{}]", parts.join(" "))))
            }
            Node::Join(nodes) => {
                let branches = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, node)| eval(node, format!("{path}.{i}"), acc));
                let results = join_all(branches).await;
                let mut acc = acc;
                let mut parts = Vec::new();
                for result in results {
                    let text = match result {
                        Ok((value, text)) => {
                            acc = fold(acc, &path, &format!("{value}"));
                            text
                        }
                        Err(error) => {
                            acc = fold(acc, &path, &error);
                            format!("<{error}>")
                        }
                    };
                    parts.push(text);
                }
                Ok((acc, format!("{{{}}}", parts.join(" | "))))
            }
            Node::TryJoin(nodes) => {
                let branches = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, node)| eval(node, format!("{path}.{i}"), acc));
                let results = try_join_all(branches).await?;
                let mut acc = acc;
                let mut parts = Vec::new();
                for (value, text) in results {
                    acc = fold(acc, &path, &format!("{value}"));
                    parts.push(text);
                }
                Ok((acc, format!("{{{}}}!", parts.join(" & "))))
            }
            Node::Sleep { ms } => {
                durable::sleep(Duration::from_millis(ms)).await;
                Ok((fold(acc, &path, "slept"), "z".to_owned()))
            }
            Node::Wait { event, timeout_ms } => {
                let got: Option<u64> =
                    durable::wait_for_event_timeout(&event, Duration::from_millis(timeout_ms))
                        .await
                        .map_err(|e| failure_text(&e))?;
                let text = match got {
                    Some(payload) => format!("{event}:{payload}"),
                    None => format!("{event}:timeout"),
                };
                Ok((fold(acc, &path, &text), text))
            }
            Node::RaceTimer { step, timer_ms } => {
                let raced = durable::race(
                    run_step(&step, &path, acc),
                    durable::sleep(Duration::from_millis(timer_ms)),
                )
                .await;
                match raced {
                    Either::First(Ok(value)) => Ok((value, format!("{}={value:08x}<t", step.name))),
                    Either::First(Err(error)) => Err(failure_text(&error)),
                    Either::Second(()) => Ok((fold(acc, &path, "timer"), "t<".to_owned())),
                }
            }
            Node::RaceSteps(first, second) => {
                let raced = durable::race(
                    run_step(&first, &format!("{path}.a"), acc),
                    run_step(&second, &format!("{path}.b"), acc),
                )
                .await;
                let (side, outcome) = match raced {
                    Either::First(outcome) => ("a", outcome),
                    Either::Second(outcome) => ("b", outcome),
                };
                match outcome {
                    Ok(value) => Ok((value, format!("{side}:{value:08x}"))),
                    Err(error) => Err(format!("{side}:{}", failure_text(&error))),
                }
            }
            Node::Child(shape) => {
                let input = Shape {
                    root: shape.root,
                    salt: acc,
                };
                match durable::child::<Interpreter>((input,)).await {
                    Ok(output) => Ok((fold(acc, &path, &output), format!("child({output})"))),
                    Err(error) => Err(format!("child!{:?}", error.kind)),
                }
            }
        }
    })
}

/// Runs one step: its value is a hash of its path and of `acc`.
async fn run_step(spec: &StepSpec, path: &str, acc: u64) -> Result<u64, StepError> {
    let value = hash(&[path.as_bytes(), spec.name.as_bytes(), &acc.to_le_bytes()]);
    let mut builder = step(spec.name.clone()).retries(spec.retries);
    if spec.quick_backoff {
        builder = builder.backoff(
            Backoff::DEFAULT
                .with_initial(Duration::from_millis(5))
                .with_factor(2.0)
                .with_max(Duration::from_millis(20))
                .with_jitter(0.0),
        );
    }
    let (work, failures, terminal) = (
        Duration::from_millis(spec.work_ms),
        spec.failures,
        spec.terminal,
    );
    let slow_failure = spec.fails_for_good() && spec.slow_failure;
    builder
        .run(move || async move {
            let attempt = StepContext::current().map_or(1, |ctx| ctx.attempt());
            if attempt <= failures {
                if slow_failure {
                    // Fails once everything beside it has finished: see `Generator`.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                let error = std::io::Error::other(format!("flaky (attempt {attempt})"));
                return Err(if terminal {
                    StepFailure::terminal(error)
                } else {
                    StepFailure::transient(error)
                });
            }
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            Ok(value)
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// join_all and try_join_all, as the futures crate's (small) versions behave
// ---------------------------------------------------------------------------------------------

/// Polls every unfinished future, in order, each time; resolves when all have.
pub fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> JoinAll<F> {
    JoinAll {
        futures: futures.into_iter().map(|f| Some(Box::pin(f))).collect(),
        outputs: Vec::new(),
    }
}

pub struct JoinAll<F: Future> {
    futures: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.outputs.is_empty() {
            this.outputs = this.futures.iter().map(|_| None).collect();
        }
        let mut done = true;
        for (slot, output) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if !done {
            return Poll::Pending;
        }
        Poll::Ready(
            this.outputs
                .drain(..)
                .map(|o| o.expect("finished"))
                .collect(),
        )
    }
}

impl<F: Future> Unpin for JoinAll<F> {}

/// [`join_all`] of fallible futures: the first error (in the order they are polled) resolves
/// it, and the other futures are dropped.
pub async fn try_join_all<T, E, F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut futures: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(Ok(value)) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(Ok(outputs
                .drain(..)
                .map(|o| o.expect("finished"))
                .collect()))
        } else {
            Poll::Pending
        }
    })
    .await
}
