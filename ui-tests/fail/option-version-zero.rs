use workflow_runtime::workflow;

#[workflow(name = "purchase", version = 0)]
async fn purchase(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

fn main() {}
