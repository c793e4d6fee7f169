use workflow_runtime::{durable, workflow};

async fn send_receipt(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

async fn notify(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

#[workflow]
async fn purchase(amount: u32) -> anyhow::Result<u32> {
    if durable::patched("send-receipt") {
        #[step]
        send_receipt(amount).await?;
    }
    if durable::patched("send-receipt") {
        #[step]
        notify(amount).await?;
    }
    Ok(amount)
}

fn main() {}
