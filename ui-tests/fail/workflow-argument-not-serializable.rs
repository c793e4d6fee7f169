use workflow_runtime::workflow;

struct Goal {
    text: String,
}

#[workflow]
async fn agent(goal: Goal) -> anyhow::Result<String> {
    Ok(goal.text)
}

fn main() {}
