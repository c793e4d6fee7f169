use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> String {
    goal
}

fn main() {}
