use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[allow_nondeterministic(reason = "only logged")]
    let started = std::time::Instant::now();
    Ok(format!("{goal} {started:?}"))
}

fn main() {}
