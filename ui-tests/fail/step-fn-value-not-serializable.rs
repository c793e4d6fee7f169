use workflow_runtime::step;

struct Page {
    html: String,
}

#[step]
async fn fetch(url: String) -> anyhow::Result<Page> {
    Ok(Page { html: url })
}

fn main() {}
