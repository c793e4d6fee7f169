use std::time::Duration;

use workflow_runtime::{durable, workflow};

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let answer = tokio::select! {
        found = search(&goal) => found?,
        () = durable::sleep(Duration::from_secs(60)) => "no answer in time".to_owned(),
    };
    Ok(answer)
}

fn main() {}
