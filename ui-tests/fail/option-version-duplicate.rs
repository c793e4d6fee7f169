use workflow_runtime::workflow;

#[workflow(name = "purchase", version = 2, version = 3)]
async fn purchase(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

fn main() {}
