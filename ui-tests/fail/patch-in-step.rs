use workflow_runtime::{durable, workflow};

async fn charge(amount: u32, with_fee: bool) -> anyhow::Result<u32> {
    Ok(if with_fee { amount + 1 } else { amount })
}

#[workflow]
async fn purchase(amount: u32) -> anyhow::Result<u32> {
    #[step]
    let charged = charge(amount, durable::patched("fee")).await?;
    Ok(charged)
}

fn main() {}
