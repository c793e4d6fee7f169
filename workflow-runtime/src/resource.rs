//! Resources: the clients, pools and configuration that steps use, registered on the engine.
//!
//! A step reads them with [`resource`](crate::resource), the one way in; this module holds
//! them and the error of a step that does not get one.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
