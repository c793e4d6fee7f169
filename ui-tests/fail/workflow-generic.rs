use workflow_runtime::workflow;

#[workflow]
async fn agent<T: ToString>(goal: T) -> anyhow::Result<String> {
    Ok(goal.to_string())
}

fn main() {}
