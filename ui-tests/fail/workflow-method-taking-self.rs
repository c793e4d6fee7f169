use workflow_runtime::workflow;

struct Agent {
    model: String,
}

impl Agent {
    #[workflow]
    async fn run(&self, goal: String) -> anyhow::Result<String> {
        Ok(format!("{goal} with {}", self.model))
    }
}

fn main() {}
