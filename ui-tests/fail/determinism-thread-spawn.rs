use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let worker = std::thread::spawn(move || goal.to_uppercase());
    Ok(worker.join().unwrap_or_default())
}

fn main() {}
