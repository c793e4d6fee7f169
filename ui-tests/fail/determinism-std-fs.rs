use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let notes = std::fs::read_to_string("notes.txt")?;
    Ok(format!("{goal}: {notes}"))
}

fn main() {}
