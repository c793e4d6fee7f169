use std::time::Instant;

use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let started = Instant::now();
    Ok(format!("{goal} after {:?}", started.elapsed()))
}

fn main() {}
