use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> impl std::fmt::Display {
    goal
}

fn main() {}
