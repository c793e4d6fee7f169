use workflow_runtime::workflow;

struct Report {
    text: String,
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<Report> {
    Ok(Report { text: goal })
}

fn main() {}
