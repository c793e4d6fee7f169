use workflow_runtime::workflow;

struct Report {
    text: String,
}

async fn write_report(goal: &str) -> anyhow::Result<Report> {
    Ok(Report {
        text: goal.to_owned(),
    })
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let report = write_report(&goal).await?;
    Ok(report.text)
}

fn main() {}
