//! Support code shared by the examples and integration tests of workflow-runtime: a simulated
//! LLM that is deterministic from its prompt, so every run of the examples is reproducible
//! offline.

pub mod llm_http;
pub mod sim_llm;
