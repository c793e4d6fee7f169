//! The [`Workflow`] trait: what the engine needs to know about a workflow.
//!
//! `#[workflow]` implements it on a companion type named like the function; it can also be
//! implemented by hand, over any async code that calls [`step`](crate::step).

use std::any::TypeId;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::budget::Budget;
use crate::error::{Error, WorkflowFailure};
use crate::store::BoxFuture;

/// A durable workflow.
///
/// ```
/// use workflow_runtime::{BoxFuture, Budget, Workflow, WorkflowFailure, step};
///
/// /// Counts the characters of a page, by hand instead of with `#[workflow]`.
/// struct PageLength;
///
/// impl Workflow for PageLength {
///     type Input = (String,);
///     type Output = usize;
///     const NAME: &'static str = "page_length";
///
///     fn run((url,): (String,)) -> BoxFuture<'static, Result<usize, WorkflowFailure>> {
///         Box::pin(async move {
///             let page = step("fetch")
///                 .run(|| async { Ok::<_, std::io::Error>(format!("<html>{url}</html>")) })
///                 .await
///                 .map_err(|e| WorkflowFailure::new(e.to_string()))?;
///             Ok(page.len())
///         })
///     }
/// }
/// # let _ = Budget::UNLIMITED;
/// ```
pub trait Workflow: Send + Sync + 'static {
    /// The arguments, as a tuple; journaled when the run starts.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The value of a completed run; journaled when it completes.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The name under which runs are journaled. Keep it stable: an engine finds the code of an
    /// unfinished run by this name.
    const NAME: &'static str;
    /// A hash of the workflow body, computed by `#[workflow]` at compile time; a run resumed
    /// under another fingerprint is reported as resumed under changed code.
    const FINGERPRINT: u64 = 0;
    /// The version of the workflow under its name (`#[workflow(version = 2)]`). Several
    /// versions of one name live side by side in a binary: a run is pinned to the version it
    /// started on and always continues on it, and new runs start on the latest version. All
    /// versions of a name take the same input and return the same output.
    const VERSION: u32 = 1;

    /// The budget of every run, unless overridden when the run is started.
    fn budget() -> Budget {
        Budget::UNLIMITED
    }

    /// The most runs of this workflow that execute at once in an engine; `None`: no limit
    /// of its own.
    fn concurrency() -> Option<u32> {
        None
    }

    /// Runs the body.
    fn run(input: Self::Input) -> BoxFuture<'static, Result<Self::Output, WorkflowFailure>>;
}

/// How a body ended: its value as JSON, or its failure.
pub(crate) type BodyOutcome = Result<Box<RawValue>, WorkflowFailure>;

/// What a run needs of its engine to run child workflows, so that a run's context does not
/// hold the engine: start (or find) the child run, and wait for its value.
pub(crate) trait Children: Send + Sync {
    /// Starts run `run_id` of `workflow` with `input` as a child of run `parent` unless it
    /// exists (as that parent's child: a run of that id that `parent` did not start is an
    /// error), and waits for its output.
    fn run_child(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
        parent: String,
        run_id: String,
        input: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>>;
}

/// A workflow with its types erased, so that one engine can hold many.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn budget(&self) -> Budget;
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// The input and output types, which every version of a name shares.
    fn io_types(&self) -> (TypeId, TypeId);
    fn fingerprint(&self) -> u64;
    fn type_id(&self) -> TypeId;
    fn concurrency(&self) -> Option<u32>;
    /// Decodes the journaled input and builds the body's future.
    fn start(
        &self,
        run_id: &str,
        input: &RawValue,
    ) -> Result<BoxFuture<'static, BodyOutcome>, Error>;
}

pub(crate) struct Erased<W>(std::marker::PhantomData<fn() -> W>);

impl<W> Erased<W> {
    pub(crate) fn new() -> Self {
        Erased(std::marker::PhantomData)
    }
}

impl<W: Workflow> ErasedWorkflow for Erased<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn version(&self) -> u32 {
        W::VERSION
    }

    fn io_types(&self) -> (TypeId, TypeId) {
        (TypeId::of::<W::Input>(), TypeId::of::<W::Output>())
    }

    fn fingerprint(&self) -> u64 {
        W::FINGERPRINT
    }

    fn type_id(&self) -> TypeId {
        TypeId::of::<W>()
    }

    fn budget(&self) -> Budget {
        W::budget()
    }

    fn concurrency(&self) -> Option<u32> {
        W::concurrency()
    }

    fn start(
        &self,
        run_id: &str,
        input: &RawValue,
    ) -> Result<BoxFuture<'static, BodyOutcome>, Error> {
        let input: W::Input = serde_json::from_str(input.get()).map_err(|e| Error::Decode {
            run_id: run_id.to_owned(),
            what: "input".into(),
            type_name: std::any::type_name::<W::Input>(),
            detail: e.to_string(),
        })?;
        let body = W::run(input);
        Ok(Box::pin(async move {
            let output = body.await?;
            crate::journal::encode_value(&output)
                .map_err(|e| WorkflowFailure::new(format!("the workflow's output: {e}")))
        }))
    }
}
