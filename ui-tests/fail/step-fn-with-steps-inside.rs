use workflow_runtime::step;

async fn get(url: &str) -> anyhow::Result<String> {
    Ok(url.to_owned())
}

#[step]
async fn fetch(url: String) -> anyhow::Result<String> {
    #[step]
    let page = get(&url).await?;
    Ok(page)
}

fn main() {}
