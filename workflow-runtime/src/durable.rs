//! Durable primitives for workflow bodies: timers, events, the time, randomness and child
//! workflows.
//!
//! Code outside steps is re-executed on every resume, so it must not read the clock or draw
//! random numbers directly: these functions do it once, journal the result, and hand back the
//! journaled value on replay. Timers and event waits survive crashes: a resumed run sleeps
//! only what remains, and an event sent while no process ran is delivered when one does.
//!
//! ```
//! use std::time::Duration;
//! use workflow_runtime::{Engine, durable, workflow};
//!
//! #[workflow]
//! async fn approval(amount: u64) -> Result<String, workflow_runtime::StepError> {
//!     let request_id = durable::uuid().await;
//!     // Wait up to a day for a person; the run leaves memory while it waits.
//!     let approved: Option<bool> =
//!         durable::wait_for_event_timeout("approval", Duration::from_secs(86_400)).await?;
//!     Ok(match approved {
//!         Some(true) => format!("{request_id}: {amount} approved"),
//!         Some(false) => format!("{request_id}: {amount} rejected"),
//!         None => format!("{request_id}: timed out"),
//!     })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
//! let engine = Engine::in_memory();
//! let run = engine.start::<approval>("purchase-7", (1200,)).await?;
//! engine.send_event("purchase-7", "approval", true).await?;
//! assert!(run.result().await?.ends_with("1200 approved"));
//! # Ok(()) }
//! ```

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Abort, RunContext, current_run};
use crate::error::{ParkReason, StepError, StepErrorKind};
use crate::journal::{self, StepRecord, StepStatus};
use crate::replay::{self, Claim, Journaled, park};
use crate::retry::StepFailure;
use crate::step::step;
use crate::store::Write;
use crate::workflow::{Erased, Workflow};

/// The run whose body calls, if any. Inside a step's attempt there is none: the step's own
/// outcome is what gets journaled, so what it reads there needs no journal of its own.
fn body_run() -> Option<Arc<RunContext>> {
    if crate::StepContext::current().is_some() {
        return None;
    }
    current_run()
}

/// Journals the value `produce` makes under the name `name`, as an outcome the body receives
/// in its turn, or hands back the journaled one. Not a step: it runs no user code that could
/// fail, is not retried and does not count against `max_steps`.
async fn recorded<T: Serialize + DeserializeOwned>(
    run: &Arc<RunContext>,
    name: &str,
    produce: impl FnOnce() -> T,
) -> T {
    let seq = run.allocate_seq();
    let outcome = match run.claim(seq, name) {
        Err(mismatch) => {
            return park(
                run,
                Abort::Park(ParkReason::NonDeterminism(Box::new(mismatch))),
            )
            .await;
        }
        Ok(Claim::Outcome(journaled)) => replay::replay_outcome::<T>(run, journaled).await,
        // Only an outcome is ever journaled under these names.
        Ok(Claim::Unfinished(_) | Claim::Execute) => {
            if run.verify_only {
                return replay::not_journaled(run, seq, name).await;
            }
            let mut record = completed_now(seq, name, &produce());
            replay::record_outcome::<T>(run, &mut record, Vec::new()).await
        }
    };
    match outcome {
        Ok(value) => value,
        Err(error) => park_undecodable(run, error).await,
    }
}

/// Parks the run on a journaled value it cannot use.
async fn park_undecodable<T>(run: &RunContext, error: impl std::fmt::Display) -> T {
    let message = error.to_string();
    park(run, Abort::Park(ParkReason::Undecodable { message })).await
}

/// A record of `seq` named `name` holding `value`, finished now.
fn completed_now<T: Serialize>(seq: u64, name: &str, value: &T) -> StepRecord {
    let now = journal::now_us();
    StepRecord {
        seq,
        name: name.to_owned(),
        status: StepStatus::Completed,
        attempts: 1,
        started_at_us: now,
        finished_at_us: now,
        output: serde_json::value::to_raw_value(value).ok(),
        error: None,
        usage: Default::default(),
        attempt_log: Vec::new(),
        delivery: None,
    }
}

/// What the journal holds of a timer or an event wait's deadline.
enum Deadline {
    /// Due at this time (journaled now, or by an earlier process).
    Due(u64),
    /// A timer that fired: its firing is an outcome, handed back in its turn.
    Fired(Box<Journaled>),
    /// Journaled before timers had positions, as the due time itself, handed back in order of
    /// sequence number: the due time, waited for in memory as then.
    Legacy(u64),
}

/// A durable deadline `after` from when it was first set, journaled as a record that is not
/// an outcome, so that a resumed run keeps it; or what the journal holds of it.
async fn deadline(run: &Arc<RunContext>, seq: u64, name: &str, after: Duration) -> Deadline {
    let record = match run.claim(seq, name) {
        Err(mismatch) => {
            return park(
                run,
                Abort::Park(ParkReason::NonDeterminism(Box::new(mismatch))),
            )
            .await;
        }
        Ok(Claim::Outcome(journaled)) if journaled.record.delivery.is_some() => {
            return Deadline::Fired(Box::new(journaled));
        }
        Ok(Claim::Outcome(journaled)) => {
            return match replay::replay_outcome::<u64>(run, journaled).await {
                Ok(due) => Deadline::Legacy(due),
                Err(error) => park_undecodable(run, error).await,
            };
        }
        Ok(Claim::Unfinished(record)) => record,
        Ok(Claim::Execute) => {
            if run.verify_only {
                return replay::not_journaled(run, seq, name).await;
            }
            let due = journal::now_us().saturating_add(after.as_micros() as u64);
            let mut record = completed_now(seq, name, &due);
            record.status = StepStatus::Pending;
            if let Err(reason) = replay::commit(run, &record).await {
                return park(run, Abort::Park(reason)).await;
            }
            return Deadline::Due(due);
        }
    };
    let due = record
        .output
        .as_deref()
        .map(|raw| replay::decode_value::<u64>(run, &record, raw));
    match due {
        Some(Ok(due)) => Deadline::Due(due),
        Some(Err(error)) => park_undecodable(run, error).await,
        None => {
            let message = format!(
                "the journal's record of `{name}` (#{seq}) in run {:?} holds no due time",
                run.run_id
            );
            park(run, Abort::Park(ParkReason::Undecodable { message })).await
        }
    }
}

/// A timer: waits until its due time, then journals that it fired, as an outcome the body
/// receives in its turn (so a timer racing a step fires at the same point on replay).
async fn timer(run: &Arc<RunContext>, name: &str, after: Duration) {
    let seq = run.allocate_seq();
    let due = match deadline(run, seq, name, after).await {
        Deadline::Fired(journaled) => {
            if let Err(error) = replay::replay_outcome::<u64>(run, *journaled).await {
                park_undecodable::<()>(run, error).await;
            }
            return;
        }
        Deadline::Legacy(due) => {
            return wait_until(
                run,
                seq,
                name,
                due,
                format!("timer until {}", format_time(due)),
            )
            .await;
        }
        Deadline::Due(due) => due,
    };
    if run.verify_only {
        return replay::not_journaled(run, seq, name).await;
    }
    wait_until(
        run,
        seq,
        name,
        due,
        format!("timer until {}", format_time(due)),
    )
    .await;
    let mut fired = completed_now(seq, name, &due);
    if let Err(error) = replay::record_outcome::<u64>(run, &mut fired, Vec::new()).await {
        park_undecodable::<()>(run, error).await;
    }
}

/// Waits until `due_us` in memory, or leaves memory when that is further away than the
/// engine's threshold.
async fn wait_until(run: &Arc<RunContext>, seq: u64, name: &str, due_us: u64, waiting_for: String) {
    // No wait outlasts the run's `max_duration`: the run ends out of budget at its deadline,
    // not at the end of a wait longer than its whole budget.
    // (A replay that only checks the journal stops nothing: it reads a run that ended.)
    let stop_us = run
        .duration_deadline_us()
        .filter(|&deadline| deadline < due_us && !run.verify_only);
    let until_us = stop_us.unwrap_or(due_us);
    let now = journal::now_us();
    if until_us > now {
        let remaining = Duration::from_micros(until_us - now);
        announce_wait(run, seq, &waiting_for, remaining);
        // A long wait lets the run leave memory, which the driver decides once the whole body
        // is idle: not while another branch executes a step or is about to receive an outcome.
        let _long = (remaining > run.shared.park_after())
            .then(|| run.long_wait(seq, Some(until_us), waiting_for));
        tokio::time::sleep(remaining).await;
    }
    if stop_us.is_some() {
        out_of_time(run, name).await
    }
}

/// Says that the run waits, and for how long at most: a durable wait is silent otherwise
/// until the run leaves memory ([`Event::RunWaiting`](crate::Event::RunWaiting)), which it
/// does only after the engine's threshold.
fn announce_wait(run: &RunContext, seq: u64, waiting_for: &str, at_most: Duration) {
    tracing::info!(
        run_id = %run.run_id,
        seq,
        waiting_for,
        at_most = ?at_most,
        leaves_memory_after = ?run.shared.park_after(),
        "run waits durably"
    );
}

/// Ends the run out of budget: its `max_duration` ran out during the durable wait `name`.
async fn out_of_time<T>(run: &RunContext, name: &str) -> T {
    let exhausted = run.exhausted_budget();
    let message = exhausted.as_ref().map_or_else(
        || "budget exceeded: max_duration".to_owned(),
        ToString::to_string,
    );
    run.alert(
        crate::AlertKind::BudgetExceeded,
        Some(name),
        message.clone(),
    );
    park(run, Abort::Budget(message, exhausted)).await
}

/// Sleeps for `duration`, durably: the wake-up time is journaled, so a resumed run sleeps only
/// what remains, and a long sleep costs no memory (the run is brought back by replay when it
/// is due). The firing is journaled too, so that a timer racing other branches fires at the
/// same point of the run on replay. Outside an engine (or inside a step) it is
/// `tokio::time::sleep`.
pub async fn sleep(duration: Duration) {
    let Some(run) = body_run() else {
        return tokio::time::sleep(duration).await;
    };
    timer(&run, "sleep", duration).await;
}

/// Sleeps until `time`, durably (see [`sleep`]).
pub async fn sleep_until(time: SystemTime) {
    let due = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let after = Duration::from_micros(due.saturating_sub(journal::now_us()));
    let Some(run) = body_run() else {
        return tokio::time::sleep(after).await;
    };
    timer(&run, "sleep_until", after).await;
}

fn format_time(us: u64) -> String {
    format!("{:.3} s after the Unix epoch", us as f64 / 1e6)
}

/// Waits for the event `name` sent to this run with
/// [`Engine::send_event`](crate::Engine::send_event), and returns its payload. An event sent
/// before the run waits is delivered at once; events of one name are delivered in the order
/// they were sent, each once. A run that waits longer than the engine's threshold leaves memory
/// until the event arrives.
///
/// Outside an engine there is nobody to send events: it returns an error at once, which points
/// to the test engine, `testing::TestEngine` (feature `testing`), where a test sends the event at
/// a virtual time.
pub async fn wait_for_event<T: Serialize + DeserializeOwned>(name: &str) -> Result<T, StepError> {
    match wait_event(name, None).await? {
        Some(value) => Ok(value),
        None => Err(no_event(name, "the journal records no payload")),
    }
}

/// [`wait_for_event`] with a durable deadline: `None` when `timeout` passed first. The
/// deadline is journaled, so a crash does not restart it.
pub async fn wait_for_event_timeout<T: Serialize + DeserializeOwned>(
    name: &str,
    timeout: Duration,
) -> Result<Option<T>, StepError> {
    wait_event(name, Some(timeout)).await
}

fn no_event(name: &str, why: &str) -> StepError {
    StepError {
        step: format!("event:{name}"),
        kind: StepErrorKind::Terminal,
        message: format!("no event `{name}`: {why}"),
        attempts: 1,
    }
}

async fn wait_event<T: Serialize + DeserializeOwned>(
    name: &str,
    timeout: Option<Duration>,
) -> Result<Option<T>, StepError> {
    let Some(run) = body_run() else {
        let why = match current_run() {
            Some(_) => "a step cannot wait for one: wait in the workflow body, between steps",
            None => {
                "the workflow was called directly, outside an engine, where nobody can send one. In a test, start it on `workflow_runtime::testing::TestEngine` (feature `testing`) and send the event with `TestEngine::send_event_at`, at a virtual time; elsewhere, start it on an `Engine` and send it with `Engine::send_event`"
            }
        };
        return Err(no_event(name, why));
    };
    let deadline = match timeout {
        Some(timeout) => {
            let seq = run.allocate_seq();
            match self::deadline(&run, seq, &format!("deadline:{name}"), timeout).await {
                Deadline::Due(due) | Deadline::Legacy(due) => Some(due),
                Deadline::Fired(_) => {
                    let message = format!(
                        "the journal of run {:?} holds a fired timer where the deadline of event `{name}` (#{seq}) was expected",
                        run.run_id
                    );
                    return park(&run, Abort::Park(ParkReason::Undecodable { message })).await;
                }
            }
        }
        None => None,
    };
    let step_name = format!("event:{name}");
    let seq = run.allocate_seq();
    match run.claim(seq, &step_name) {
        Err(mismatch) => {
            return park(
                &run,
                Abort::Park(ParkReason::NonDeterminism(Box::new(mismatch))),
            )
            .await;
        }
        Ok(Claim::Outcome(journaled)) => {
            return replay::replay_outcome::<Option<T>>(&run, journaled).await;
        }
        Ok(Claim::Unfinished(_) | Claim::Execute) => {}
    }
    if run.verify_only {
        return replay::not_journaled(&run, seq, &step_name).await;
    }
    let started_at_us = journal::now_us();
    // The run's `max_duration`, when it runs out before the event's own deadline (or there is
    // none): the run ends out of budget then.
    let stop_us = run
        .duration_deadline_us()
        .filter(|&stop| deadline.is_none_or(|due| stop < due));
    let until = stop_us.or(deadline);
    let waiting_for = format!("event `{name}`");
    let mut long = None;
    let mut announced = false;
    loop {
        let changed = run.inbox_changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = journal::now_us();
        let (output, consumed) = match run.take_event(name) {
            Some(event) => (Some(event.payload.clone()), Some(event)),
            None if deadline.is_some_and(|due| now >= due) => {
                (serde_json::value::to_raw_value(&()).ok(), None)
            }
            None if stop_us.is_some_and(|stop| now >= stop) => {
                return out_of_time(&run, &step_name).await;
            }
            None => {
                // Nothing yet: wait in memory up to the engine's threshold, then leave memory
                // until the event (or the deadline) brings the run back.
                let in_memory = run.shared.park_after();
                let remaining = until.map(|due| Duration::from_micros(due.saturating_sub(now)));
                if !announced {
                    announced = true;
                    announce_wait(&run, seq, &waiting_for, remaining.unwrap_or(Duration::MAX));
                }
                let wait = match (long.is_some(), remaining) {
                    // Already a long wait: only the event or the deadline wakes it now. (Waking
                    // every threshold again spun without end at a threshold of zero.)
                    (true, Some(remaining)) => remaining,
                    (true, None) => Duration::MAX,
                    (false, remaining) => remaining.map_or(in_memory, |r| r.min(in_memory)),
                };
                tokio::select! {
                    _ = &mut changed => {}
                    _ = tokio::time::sleep(wait) => {
                        // Waited in memory long enough: the run may leave memory, which the
                        // driver decides once the whole body is idle.
                        if remaining.is_none_or(|r| r > in_memory) && long.is_none() {
                            long = Some(run.long_wait(seq, until, waiting_for.clone()));
                        }
                    }
                }
                continue;
            }
        };
        let mut record = completed_now(seq, &step_name, &());
        record.started_at_us = started_at_us;
        record.output = output;
        // The event leaves the inbox in the transaction that journals its delivery: exactly
        // one delivery, whatever crashes.
        let consume = consumed.iter().map(|event| Write::ConsumeEvent {
            run_id: event.run_id.clone(),
            arrival: event.arrival,
        });
        let consume: Vec<Write> = consume.collect();
        // The event is consumed only when the body is sure to receive it: a wait that loses a
        // race gives it back. If the commit fails the run parks, and the event, still in the
        // journal's inbox, is delivered to the next execution.
        let back = Arc::clone(&run);
        let undo = move || {
            if let Some(event) = consumed {
                back.put_back(event);
            }
        };
        return replay::record_outcome_when_first::<Option<T>>(&run, &mut record, consume, undo)
            .await;
    }
}

/// The current time, journaled: the same value on every replay.
pub async fn now() -> SystemTime {
    let us = match body_run() {
        Some(run) => recorded(&run, "now", journal::now_us).await,
        None => journal::now_us(),
    };
    UNIX_EPOCH + Duration::from_micros(us)
}

pub(crate) fn fresh_random() -> u64 {
    // std seeds each RandomState from the OS once per thread and varies it per instance: good
    // enough for ids and jitter, without a dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(journal::now_us());
    hasher.finish()
}

/// A random number, journaled: the same value on every replay.
pub async fn random() -> u64 {
    match body_run() {
        Some(run) => recorded(&run, "random", fresh_random).await,
        None => fresh_random(),
    }
}

/// A random (version 4) UUID, journaled: the same value on every replay.
pub async fn uuid() -> String {
    let make = || {
        let (high, low) = (fresh_random(), fresh_random());
        let bytes =
            ((u128::from(high) << 64) | u128::from(low)) & !(0xf000u128 << 64) | (0x4000u128 << 64);
        let bytes = bytes & !(0xc000u128 << 48) | (0x8000u128 << 48);
        let hex = format!("{bytes:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    };
    match body_run() {
        Some(run) => recorded(&run, "uuid", make).await,
        None => make(),
    }
}

/// The id of the run whose body is executing, if any.
pub fn run_id() -> Option<String> {
    current_run().map(|run| run.run_id.clone())
}

/// Starts workflow `W` as a child of this run and waits for its value. The child is a run of
/// its own, with the id `{parent run id}/{seq}/child`, started durably as a step: a parent
/// resumed after a crash finds the child by its id instead of starting it twice, and a parent
/// whose child finished replays the child's value.
///
/// Outside an engine the child's body is called directly.
pub async fn child<W: Workflow>(input: W::Input) -> Result<W::Output, StepError>
where
    W::Input: Clone,
{
    let Some(children) = body_run().and_then(|run| run.children.clone()) else {
        return W::run(input).await.map_err(|failure| StepError {
            step: format!("child:{}", W::NAME),
            kind: StepErrorKind::Terminal,
            message: failure.message,
            attempts: 1,
        });
    };
    step(format!("child:{}", W::NAME))
        .retries(0)
        .run(|| {
            let children = Arc::clone(&children);
            let input = crate::journal::encode_value(&input);
            async move {
                let input = input.map_err(StepFailure::terminal)?;
                let ctx = crate::StepContext::current();
                let key = ctx
                    .as_ref()
                    .map(|ctx| ctx.idempotency_key().to_owned())
                    .unwrap_or_default();
                let parent = ctx
                    .and_then(|ctx| ctx.run_id().map(str::to_owned))
                    .unwrap_or_default();
                // The key is `run/seq/name`: the child's id keeps the first two.
                let id = match key.rsplit_once('/') {
                    Some((prefix, _)) => format!("{prefix}/child"),
                    None => format!("{key}/child"),
                };
                let output = children
                    .run_child(Arc::new(Erased::<W>::new()), parent, id, input)
                    .await
                    .map_err(StepFailure::terminal)?;
                serde_json::from_str::<W::Output>(output.get()).map_err(StepFailure::terminal)
            }
        })
        .await
}

/// Which of the two futures given to [`race`] finished first, with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future finished first.
    First(A),
    /// The second future finished first.
    Second(B),
}

/// Waits for the first of two futures (steps, timers, event waits, or branches of them) and
/// drops the other: the deterministic replacement for `tokio::select!`, whose random choice
/// between ready branches would make a resumed run take another path.
///
/// Inside a run, outcomes reach the body one at a time in the order the journal records (see
/// Guarantees in the crate docs), so the branch that won live wins again on replay. When both
/// are ready at the same poll, the first wins.
///
/// ```
/// use std::time::Duration;
/// use workflow_runtime::durable::{self, Either};
/// use workflow_runtime::{Engine, StepError, workflow};
///
/// #[workflow]
/// async fn approve_or_escalate(order: u64) -> Result<String, StepError> {
///     let decision = durable::race(
///         durable::wait_for_event::<bool>("approval"),
///         durable::sleep(Duration::from_secs(3_600)),
///     )
///     .await;
///     Ok(match decision {
///         Either::First(approved) => format!("order {order}: approved = {}", approved?),
///         Either::Second(()) => format!("order {order}: escalated after an hour"),
///     })
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
/// let engine = Engine::in_memory();
/// let run = engine.start::<approve_or_escalate>("order-9", (9,)).await?;
/// engine.send_event("order-9", "approval", true).await?;
/// assert_eq!(run.result().await?, "order 9: approved = true");
/// # Ok(()) }
/// ```
pub async fn race<A: Future, B: Future>(first: A, second: B) -> Either<A::Output, B::Output> {
    let mut first = std::pin::pin!(first);
    let mut second = std::pin::pin!(second);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = first.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::First(out));
        }
        if let std::task::Poll::Ready(out) = second.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Second(out));
        }
        std::task::Poll::Pending
    })
    .await
}

/// Waits for the first of any number of futures of one type and drops the others; returns
/// its index and output. Deterministic like [`race`]: on a tie the lowest index wins.
///
/// # Panics
///
/// When `futures` is empty: there would be nothing to wait for.
pub async fn race_all<F: Future>(futures: impl IntoIterator<Item = F>) -> (usize, F::Output) {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    assert!(
        !futures.is_empty(),
        "durable::race_all needs at least one future"
    );
    std::future::poll_fn(|cx| {
        for (index, future) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready((index, out));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Marks a change made inside one version of a workflow while runs are in flight:
///
/// ```
/// # use workflow_runtime::durable;
/// # async fn send_receipt() {} async fn log_sale() {}
/// # async fn body() {
/// if durable::patched("send-receipt") {
///     send_receipt().await; // the new path
/// } else {
///     log_sale().await; // the old path, for runs that passed here before the patch
/// }
/// # }
/// ```
///
/// A run that passed this point before the patch existed keeps the old path when it is
/// replayed (its journal goes on with the old path's steps); a run that reaches it now takes
/// the new path, and that answer is journaled as a marker that rides on the run's next commit
/// (no fsync of its own), so every replay answers the same. Once no run from before the patch
/// remains, replace the call with [`deprecated_patch`] and keep only the new path.
///
/// Each patch id appears once in a workflow body and is called outside steps, in the body's
/// own order; outside an engine it returns `true`. In a `#[workflow]` body these are compile
/// errors at the call: an id that is not a string literal, an id used a second time (by
/// `patched` or `deprecated_patch`), and a patch inside a `#[step]` expression, the closure of
/// [`step`](crate::step())`(..).run(..)` or a `#[step]` fn, where it would not be journaled. The
/// macro sees the body only: a patch in a helper fn is not checked. See
/// [`#[workflow]`](macro@crate::workflow#versions-and-patches) for how calls are recognised,
/// and for versions, the way to make a larger change.
pub fn patched(id: &str) -> bool {
    match body_run() {
        Some(run) => crate::replay::patched(&run, id),
        None => true,
    }
}

/// The second stage of [`patched`]: the old path is gone, and runs that took the patch still
/// replay (their journal holds its marker, which this consumes). Remove the call once no run
/// that took the patch remains in flight. Checked at compile time like [`patched`]: the same
/// id cannot be both `patched` and `deprecated_patch` in one body.
pub fn deprecated_patch(id: &str) {
    if let Some(run) = body_run() {
        crate::replay::deprecated_patch(&run, id);
    }
}
