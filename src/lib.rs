//! Support code shared by the examples and integration tests of workflow-runtime.
