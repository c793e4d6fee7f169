//! Resources: the clients, pools and configuration that steps use, registered on the engine.
//!
//! See [`resource`]: the one way in.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::retry::{Classify, ErrorClass, StepFailure};
use crate::step::StepContext;

/// The resources of one engine, one value per type.
#[derive(Default, Clone)]
pub(crate) struct Resources {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    /// Registers `value`, replacing the one of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// How many values are registered.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The value of type `T`, if one is registered.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self.values.get(&TypeId::of::<T>())?;
        Arc::clone(value).downcast::<T>().ok()
    }
}

/// The resource of type `T` registered on the engine of the step that runs
/// ([`EngineBuilder::resource`](crate::EngineBuilder::resource)). Call it inside a step's
/// attempt: a `#[step] async fn`, a `#[step]` call's expression, or the closure given to
/// [`Step::run`](crate::Step::run). Shorthand for
/// [`StepContext::resource`] on the current step's context.
///
/// A workflow function cannot take `self`, so what its steps need (an HTTP client, an API
/// key, a database pool) would otherwise live in a static, which a test cannot swap. Register
/// it on the engine instead, one value per type, and read it from inside a step:
///
/// ```
/// use std::sync::Arc;
/// use workflow_runtime::{Engine, StepError, resource, step, workflow};
///
/// /// The client a step calls: a real one in production, a fake one in tests.
/// struct Greeter {
///     greeting: String,
/// }
///
/// #[step]
/// async fn greet(name: String) -> Result<String, workflow_runtime::ResourceError> {
///     let greeter: Arc<Greeter> = resource()?;
///     Ok(format!("{}, {name}", greeter.greeting))
/// }
///
/// #[workflow]
/// async fn welcome(name: String) -> Result<String, StepError> {
///     greet(name).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
/// let engine = Engine::builder()
///     .resource(Greeter { greeting: "Hello".into() })
///     .in_memory();
/// let run = engine.start::<welcome>("w-1", ("Ada".to_owned(),)).await?;
/// assert_eq!(run.result().await?, "Hello, Ada");
/// # Ok(()) }
/// ```
///
/// # What is journaled
///
/// Nothing a resource holds. The journal holds the steps' values, not the resources they were
/// computed with: a run resumed on an engine with another client replays its finished steps
/// as they were and calls the new client only for the steps still to run.
///
/// # Only inside a step
///
/// [`resource`] answers only inside a step's attempt. In the workflow body (outside steps) it
/// returns [`ResourceError::OutsideStep`]: the body is re-executed on every replay, and what it
/// computed from a resource would not be journaled, so a replay with another resource (or the
/// same one in another state) could take another path. Read the resource in a step and let the
/// step's journaled value carry what the body needs.
///
/// # Errors
///
/// [`ResourceError::OutsideStep`] in a workflow body, outside steps (and in a task a step
/// spawned, which does not inherit the step's context); [`ResourceError::NoEngine`] in a step
/// called outside an engine; [`ResourceError::Missing`] when the engine has no `T`. Its
/// [`Classify`] class is [`ErrorClass::Terminal`], so a `#[step]` that returns it does not
/// retry: another attempt would not find the resource either.
pub fn resource<T: Send + Sync + 'static>() -> Result<Arc<T>, ResourceError> {
    match StepContext::current() {
        Some(context) => context.resource::<T>(),
        None => Err(ResourceError::OutsideStep {
            type_name: type_name::<T>(),
        }),
    }
}

/// A resource a step asked for and did not get.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceError {
    /// Asked for outside a step's attempt: in a workflow body, or in a task a step spawned.
    OutsideStep {
        /// The type asked for.
        type_name: &'static str,
    },
    /// Asked for in a step called outside an engine (a workflow function called directly),
    /// where there is no engine to hold resources.
    NoEngine {
        /// The type asked for.
        type_name: &'static str,
    },
    /// The engine has no resource of this type.
    Missing {
        /// The type asked for.
        type_name: &'static str,
    },
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceError::OutsideStep { type_name } => write!(
                f,
                "resource `{type_name}` was asked for outside a step: resources are not journaled, so only steps may read them (a workflow body replays without them); read it in a step and return what the body needs as the step's value"
            ),
            ResourceError::NoEngine { type_name } => write!(
                f,
                "resource `{type_name}` was asked for by a step running outside an engine: register it with `Engine::builder().resource(..)` and start the workflow on that engine (in tests, `testing::TestEngine::with`)"
            ),
            ResourceError::Missing { type_name } => write!(
                f,
                "no resource of type `{type_name}` is registered on this engine: add it with `Engine::builder().resource(..)`"
            ),
        }
    }
}

impl std::error::Error for ResourceError {}

impl Classify for ResourceError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

/// A step that returns [`StepFailure`] reads a resource with `resource::<T>()?`: never retried.
impl From<ResourceError> for StepFailure {
    fn from(error: ResourceError) -> StepFailure {
        StepFailure::classified(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BoxFuture;
    use crate::{Engine, Workflow, WorkflowFailure, step};

    #[test]
    fn a_resource_is_found_by_its_type_and_replaced_by_another_of_that_type() {
        let mut resources = Resources::default();
        resources.insert(Arc::new(String::from("first")));
        resources.insert(Arc::new(7_u32));
        resources.insert(Arc::new(String::from("second")));
        assert_eq!(
            resources.get::<String>().as_deref().map(String::as_str),
            Some("second")
        );
        assert_eq!(resources.get::<u32>().as_deref(), Some(&7));
        assert!(resources.get::<u64>().is_none());
    }

    /// Reads the engine's `String` in its body and in a step: (body's, step's).
    struct Greeting;

    impl Workflow for Greeting {
        type Input = ();
        type Output = (String, String);
        const NAME: &'static str = "greeting";

        fn run(_: ()) -> BoxFuture<'static, Result<(String, String), WorkflowFailure>> {
            Box::pin(async {
                let in_body = match resource::<String>() {
                    Ok(value) => format!("read {value}"),
                    Err(error) => error.to_string(),
                };
                let in_step = step("greet")
                    .run(|| async { resource::<String>().map(|s| (*s).clone()) })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
                Ok((in_body, in_step))
            })
        }
    }

    #[tokio::test]
    async fn a_step_reads_its_own_engines_resource_and_the_body_is_refused() {
        for greeting in ["hello", "bonjour"] {
            let engine = Engine::builder().resource(greeting.to_owned()).in_memory();
            let run = engine.start::<Greeting>("g", ()).await.unwrap();
            let (in_body, in_step) = run.result().await.unwrap();
            assert_eq!(in_step, greeting);
            assert!(
                in_body
                    .starts_with("resource `alloc::string::String` was asked for outside a step"),
                "{in_body}"
            );
        }
    }

    #[tokio::test]
    async fn a_step_called_outside_an_engine_is_told_to_use_one() {
        let error = step("greet")
            .non_retryable()
            .run(|| async { resource::<String>().map(|s| (*s).clone()) })
            .await
            .unwrap_err();
        assert!(error.message.contains("outside an engine"), "{error}");
        assert_eq!(
            resource::<String>().err(),
            Some(ResourceError::OutsideStep {
                type_name: "alloc::string::String"
            })
        );
    }
}
