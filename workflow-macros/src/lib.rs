//! The `#[workflow]` and `#[step]` attribute macros of
//! [`workflow-runtime`](https://docs.rs/workflow-runtime).
//!
//! Depend on `workflow-runtime`, not on this crate: it re-exports both macros, and the code they
//! generate calls into it. Its documentation has complete, runnable examples.
//!
//! - [`macro@workflow`] marks an `async fn` as a durable workflow: it checks the signature, rewrites
//!   every `#[step]` in the body into a journaled step, and generates the companion type through
//!   which the engine starts, registers and resumes the workflow.
//! - [`macro@step`] marks an awaited call inside a workflow body as a step (its outcome is journaled,
//!   and replay returns it without running the call again), or marks an `async fn` so that every
//!   call of it is a step.
//!
//! ```ignore
//! use workflow_runtime::workflow;
//!
//! #[workflow(max_steps = 50, max_cost_usd = 2.00)]
//! async fn research_agent(goal: String) -> anyhow::Result<String> {
//!     #[step]
//!     let plan = plan_questions(&goal).await?;
//!     let mut findings = Vec::new();
//!     for q in &plan {
//!         #[step(retries = 3, timeout = "60s")]
//!         let answer = search_and_summarize(q).await?;
//!         findings.push((q.clone(), answer));
//!     }
//!     #[step]
//!     let report = synthesize(&goal, &findings).await?;
//!     Ok(report)
//! }
//! ```
//!
//! Mistakes are compile errors at the offending tokens, all reported at once, and the annotated
//! item is emitted even then, so one typo does not turn into errors at every call site.

mod check;
mod ctxt;
mod determinism;
mod entry;
mod expand;
mod fingerprint;
mod model;
mod parse;
mod patches;
mod rewrite;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Makes an `async fn` a durable workflow.
///
/// ```ignore
/// #[workflow(name = "research-agent", max_steps = 50, max_cost_usd = 2.00, max_tokens = 200_000)]
/// pub async fn research_agent(goal: String) -> anyhow::Result<String> { ... }
/// ```
///
/// The fn keeps its signature and can still be called directly (its steps then run without a
/// journal). Next to it, in the type namespace, the macro generates a struct of the same name
/// implementing `workflow_runtime::Workflow`, which is how the engine names the workflow:
/// `Engine::start::<research_agent>`.
///
/// # Requirements
///
/// The fn is an `async fn` without `self`, generics, `const`, `unsafe` or `extern`. Its
/// arguments are journaled, so each is an owned type implementing `Serialize` and
/// `DeserializeOwned` (`String`, not `&str`). It returns a `Result` whose `Ok` type is
/// serializable too; the error type implements `Display`.
///
/// # Options
///
/// | option | value | default |
/// | --- | --- | --- |
/// | `name` | the stable name the journal records, a string | the fn's name |
/// | `version` | the version of the workflow under its name, an integer of at least 1 | 1 |
/// | `max_steps` | an integer of at least 1 | unlimited |
/// | `max_cost_usd` | a non-negative number | unlimited |
/// | `max_tokens` | an integer of at least 1 | unlimited |
/// | `max_duration` | a non-zero duration string: `"10m"`, `"1h 30m"` | unlimited |
/// | `max_in_flight_steps` | an integer of at least 1: the steps of one run in flight at once | unlimited |
/// | `concurrency` | an integer of at least 1: the runs of this workflow executing at once in an engine | no limit of its own |
/// | `crate` | the path to `workflow_runtime`, a string, for renamed dependencies | `"::workflow_runtime"` |
///
/// The `max_*` options make `Workflow::budget()`, `concurrency` makes `Workflow::concurrency()`,
/// `version` makes `Workflow::VERSION`. Renaming the fn renames the workflow: set `name` to keep
/// resuming the runs that were journaled under the old name.
///
/// # Versions and patches
///
/// To change a workflow while runs are in flight, keep the old fn and add the new one beside it
/// under the same `name`, with the next `version`:
///
/// ```ignore
/// #[workflow(name = "purchase")] // version 1
/// async fn purchase_v1(amount: u32) -> anyhow::Result<String> { ... }
///
/// #[workflow(name = "purchase", version = 2)]
/// async fn purchase_v2(amount: u32) -> anyhow::Result<String> { ... }
/// ```
///
/// Register both. A run is pinned to the version it started on and always continues on it; new
/// runs start on the latest version registered, whichever of the types `Engine::start` is given.
/// Every version of a name takes the same arguments and returns the same type, and no two share
/// a number: `Engine::register` refuses either mistake, since each `#[workflow]` sees only its
/// own fn.
///
/// For a small change inside one version, branch on `workflow_runtime::durable::patched("id")`
/// instead. The macro checks each patch call of the body: the id is a string literal, each id is
/// used once in the body (`patched` and `deprecated_patch` alike), and no patch is called inside
/// a step (a `#[step]` expression, the closure of `step("..").run(..)`, a `#[step]` fn), where
/// it would not be journaled. A call is recognised by a path ending in `durable::patched` or
/// `durable::deprecated_patch`; a bare `patched("id")` after a `use` only with a string literal,
/// so that a fn of your own named `patched` is left alone.
///
/// # Steps in the body
///
/// Each `#[step]` in the body, at any depth (loops, `if`/`match` arms, closures, async blocks,
/// but not nested fn items), becomes a journaled step. The forms are:
///
/// ```ignore
/// #[step] let x = fetch(url).await?;      // on a `let`
/// let x = #[step] fetch(url).await;       // on the awaited expression (here without `?`)
/// #[step(retries = 3)] notify(&user).await?; // on an expression statement
/// ```
///
/// rustfmt formats the second form by moving the expression to a line of its own after
/// `#[step]`; the first reads better once formatted.
///
/// The marked expression is an awaited call, `path(args).await` or `recv.method(args).await`,
/// optionally followed by `?`. The call is wrapped in a closure (`|| fetch(&url)`) that builds a
/// fresh future for each attempt, so its arguments are evaluated anew each time: they must not
/// move a variable (pass a reference or a clone; a local passed alone, `fetch(url)`, is checked
/// to be `Copy`, with an error saying so), and they cannot borrow a temporary such as
/// `&format!(..)` (bind it to a local before the step). The awaited value is the `Ok` value
/// decoded from the journal, and the error is the runtime's `StepError`, whether the step ran
/// now or was replayed. See [`macro@step`] for its options. These attributes need no import:
/// `#[workflow]` removes them before rustc sees them, which is also why they work on stable
/// Rust.
///
/// The body's tokens are hashed into `Workflow::FINGERPRINT`, so resuming a run journaled by a
/// different body is detected.
///
/// # Determinism
///
/// Outside its steps the body runs again on every resume, and must take the same path each
/// time. So `#[workflow]` rejects, outside `#[step]` expressions, what would differ from one
/// execution to the next, and names the deterministic alternative:
///
/// | rejected | instead |
/// | --- | --- |
/// | the clock: `SystemTime::now`, `Instant::now`, `chrono::Utc::now` | `workflow_runtime::durable::now().await` |
/// | randomness: `rand::random`, `thread_rng`, `Uuid::new_v4` | `durable::random().await`, `durable::uuid().await` |
/// | tasks and threads: `tokio::spawn`, `std::thread::spawn`, `.spawn(..)` | `durable::child::<W>(input).await`, or steps awaited with `join_all` |
/// | tokio's timers: `tokio::time::sleep`, `interval`; `tokio::time::timeout` | `durable::sleep(d).await`; `#[step(timeout = "60s")]` |
/// | files, network, processes, environment: `std::fs`, `reqwest`, `TcpStream`, `Command`, `std::env::var` | a `#[step]` |
/// | iterating a `HashMap` or `HashSet` (its order differs between processes) | a `BTreeMap`/`BTreeSet`, or sort first |
/// | racing futures with `tokio::select!`, `futures::select!`, `select_biased!` | `durable::race(a, b).await`, `durable::race_all(futures).await` |
///
/// Detection is by name (paths, method and macro names; for `HashMap` iteration, a local whose
/// type or initializer names `HashMap`/`HashSet`), so a call inside a helper fn, behind a
/// `use .. as` alias or inside a macro whose arguments are not expressions is not seen. When a
/// flagged call is harmless (a log line's timestamp), accept it with `#[allow_nondeterministic]`
/// on the statement or expression; the macro removes the attribute, so it needs no import, and
/// it is easy to grep for.
///
/// ```ignore
/// #[allow_nondeterministic] // only logged
/// let started = std::time::Instant::now();
/// ```
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::workflow(args.into(), item.into()).into()
}

/// Marks a step: an awaited call inside a `#[workflow]` body, or an `async fn` every call of
/// which is a step.
///
/// # Options
///
/// | option | value | default |
/// | --- | --- | --- |
/// | `name` | the name journaled for the step, a string | the called fn's or method's name |
/// | `retries` | retries after the first attempt, an integer from 0 to 100 | the runtime's default |
/// | `timeout` | a per-attempt timeout, a non-zero duration string: `"60s"`, `"1m 30s"`, `"500ms"` | none |
/// | `backoff(initial = "1s", factor = 2.0, max = "30s", jitter = 0.1)` | the waits between attempts; each field optional: `initial` and `max` are durations, `factor` a number from 1 to 10, `jitter` a fraction from 0 to 1 | `Backoff::DEFAULT`'s, field by field |
/// | `circuit` | the name of the circuit breaker the calls go through, a string | none |
/// | `rate` | the name of the engine's rate-limit bucket each attempt draws from, a string | none |
/// | `at_most_once` | a switch: never call the body again after a crash during a call | off |
/// | `non_retryable` | a switch: never retry, whatever the error's class | off |
/// | `crate` | on an `async fn` only: the path to `workflow_runtime`, a string | `"::workflow_runtime"` |
///
/// Switches are written alone (`#[step(at_most_once)]`) or as `at_most_once = true`.
///
/// The awaited call returns a `Result` whose error converts into
/// `Box<dyn Error + Send + Sync>` (`anyhow::Error`, `std::io::Error`, your own error type). Its
/// class decides whether an attempt is retried: the error type's `workflow_runtime::Classify`
/// implementation if it has one, found at the call site where the type is known, and otherwise
/// the error's chain of causes.
///
/// A step's identity is its sequence number in the run plus its name; renaming a step (or the fn
/// it calls) makes runs journaled before the change fail to resume with a `NonDeterminism` error,
/// unless `name` keeps the old name.
///
/// # In a workflow body
///
/// See [`macro@workflow`]. `#[step]` is only meaningful inside a `#[workflow]` fn: anywhere else,
/// rustc rejects an attribute on a statement ("custom attributes cannot be applied to
/// statements"), and this macro adds that the fn needs `#[workflow]`.
///
/// # On an `async fn`
///
/// ```ignore
/// #[step(retries = 3, timeout = "30s")]
/// async fn search_and_summarize(question: &str, depth: u32) -> anyhow::Result<String> { ... }
/// ```
///
/// Every call of the fn becomes a step. Its return type changes from `R` to
/// `Result<<R as StepResult>::Ok, workflow_runtime::StepError>`: callers see the same type
/// whether the step ran or was replayed. Arguments keep their types. Since a retry runs the body
/// again, each attempt gets a fresh clone of every owned argument, so owned arguments must be
/// `Clone`; shared references are passed as they are, and `&mut` arguments are rejected. The fn
/// cannot be a method (`self`) or have type parameters, and its body cannot contain `#[step]`s.
/// Do not also mark its calls with `#[step]`: that would make a step of a step.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::step(args.into(), item.into()).into()
}
