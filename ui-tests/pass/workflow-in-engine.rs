//! The companion type: options become `NAME`, `budget()`, and the engine runs the workflow.

use serde::{Deserialize, Serialize};
use workflow_runtime::{Budget, Engine, Workflow, workflow};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Report {
    pub goal: String,
    pub answers: Vec<String>,
}

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(format!("answer to {q}"))
}

/// Researches a goal.
#[workflow(
    name = "research-agent-v1",
    max_steps = 50,
    max_cost_usd = 2,
    max_tokens = 10_000
)]
pub async fn research_agent(goal: String, (depth, _width): (u32, u32)) -> anyhow::Result<Report> {
    let mut answers = Vec::new();
    for i in 0..depth {
        // Bound first: the call is built anew for each attempt, inside a closure that a
        // temporary such as `&format!(..)` would not outlive.
        let query = format!("{goal} #{i}");
        #[step(retries = 3, timeout = "1m 30s")]
        let answer = search(&query).await?;
        answers.push(answer);
    }
    Ok(Report { goal, answers })
}

#[workflow]
async fn no_arguments() -> Result<(), String> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(research_agent::NAME, "research-agent-v1");
    assert_ne!(research_agent::FINGERPRINT, 0);
    assert_eq!(
        research_agent::budget(),
        Budget::UNLIMITED
            .with_max_steps(50)
            .with_max_cost_usd(2.0)
            .with_max_tokens(10_000)
    );
    assert_eq!(<no_arguments as Workflow>::NAME, "no_arguments");

    let engine = Engine::in_memory();
    let run = engine
        .start::<research_agent>("run-1", ("rust".to_owned(), (2, 0)))
        .await
        .unwrap();
    let report = run.result().await.unwrap();
    assert_eq!(report.answers, ["answer to rust #0", "answer to rust #1"]);
    assert_eq!(engine.journal("run-1").await.unwrap().len(), 2);

    // Still callable directly, with its own signature.
    let direct = research_agent("go".to_owned(), (1, 0)).await.unwrap();
    assert_eq!(direct.answers, ["answer to go #0"]);
}
