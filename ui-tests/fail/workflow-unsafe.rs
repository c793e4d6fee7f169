use workflow_runtime::workflow;

#[workflow]
async unsafe fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
