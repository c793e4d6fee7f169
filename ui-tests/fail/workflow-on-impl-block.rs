use workflow_runtime::workflow;

struct Agent;

#[workflow]
impl Agent {
    async fn run(goal: String) -> anyhow::Result<String> {
        Ok(goal)
    }
}

fn main() {}
