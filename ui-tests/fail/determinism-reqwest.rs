use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let page = reqwest::get(format!("https://example.com/?q={goal}")).await?;
    Ok(page.text().await?)
}

fn main() {}
