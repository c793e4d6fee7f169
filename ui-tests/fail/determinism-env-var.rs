use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let model = std::env::var("MODEL")?;
    Ok(format!("{goal} with {model}"))
}

fn main() {}
