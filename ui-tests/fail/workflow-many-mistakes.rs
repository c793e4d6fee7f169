//! Independent mistakes in one workflow are all reported at once, each at its own tokens.

use std::time::Instant;

use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow(max_step = 10, max_cost_usd = "2")]
async fn agent(goal: &str, budget: &[u8]) -> anyhow::Result<String> {
    let started = Instant::now();
    #[step(retry = 3, timeout = 60)]
    let answer = search(goal).await?;
    #[step]
    let count = budget.len();
    Ok(format!("{answer} {count} {:?}", started.elapsed()))
}

fn main() {}
