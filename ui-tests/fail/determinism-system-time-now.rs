use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let started = std::time::SystemTime::now();
    Ok(format!("{goal} at {started:?}"))
}

fn main() {}
