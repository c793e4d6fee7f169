use std::collections::HashSet;

use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let words: HashSet<&str> = goal.split(' ').collect();
    let first = words.iter().next().copied().unwrap_or_default();
    Ok(first.to_owned())
}

fn main() {}
