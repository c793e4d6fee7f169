use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let x = 5;
    Ok(format!("{goal}{x}"))
}

fn main() {}
