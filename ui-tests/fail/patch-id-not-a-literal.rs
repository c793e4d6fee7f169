use workflow_runtime::{durable, workflow};

const RECEIPT: &str = "send-receipt";

async fn send_receipt(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

#[workflow]
async fn purchase(amount: u32) -> anyhow::Result<u32> {
    if durable::patched(RECEIPT) {
        #[step]
        send_receipt(amount).await?;
    }
    Ok(amount)
}

fn main() {}
