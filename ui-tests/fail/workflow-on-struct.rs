use workflow_runtime::workflow;

#[workflow]
struct Agent {
    goal: String,
}

fn main() {}
