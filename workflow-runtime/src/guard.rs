//! Panics of user code (a step's attempt, a workflow's body) caught where they happen, so that
//! one run fails and the engine and its other runs go on.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why an attempt of user code produced no value.
pub(crate) enum AttemptError {
    /// It panicked, with this message.
    Panic(String),
    /// It ran past its limit.
    Timeout(Duration),
}

/// Polls a future, turning a panic inside it into an error.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, AttemptError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(AttemptError::Panic(panic_message(payload)))),
        }
    }
}

/// `future`, with a panic inside it turned into its message.
pub(crate) fn catch_unwind_future<F: Future>(
    future: F,
) -> impl Future<Output = Result<F::Output, String>> {
    let guarded = CatchUnwind(future);
    async move {
        guarded.await.map_err(|e| match e {
            AttemptError::Panic(message) => message,
            AttemptError::Timeout(limit) => format!("timed out after {limit:?}"),
        })
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
