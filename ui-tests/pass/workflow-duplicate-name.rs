//! Two workflows with the same `name` in one crate cannot be detected at compile time (each
//! `#[workflow]` expands on its own); the engine refuses the second at registration, with an
//! error that says how to fix it.

use workflow_runtime::{Engine, Error, workflow};

#[workflow(name = "agent")]
async fn agent_v1(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

#[workflow(name = "agent")]
async fn agent_v2(goal: String) -> anyhow::Result<String> {
    Ok(goal.to_uppercase())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::in_memory();
    engine.register::<agent_v1>().await.unwrap();
    // Registering the same workflow again is fine; another one under its name is not.
    engine.register::<agent_v1>().await.unwrap();
    let error = engine.register::<agent_v2>().await.unwrap_err();
    assert!(matches!(&error, Error::DuplicateWorkflowName { name } if name == "agent"));
    assert_eq!(
        error.to_string(),
        "two different workflows are registered under the name `agent`; give one of them #[workflow(name = \"...\")]"
    );
    // Note: `Engine::start::<agent_v2>` should fail the same way, but today it finds the name
    // registered and queues a run that `agent_v1` executes (reported to the runtime's owners).
}
