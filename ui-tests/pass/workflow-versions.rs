//! Two versions of one workflow side by side in one crate, each a fn of its own under the same
//! `name`, and patches in a body: literal ids, each used once, outside the steps (a bare
//! `patched` after a `use` too).

use workflow_runtime::durable::{self, deprecated_patch, patched};
use workflow_runtime::{Engine, Workflow, workflow};

async fn charge(amount: u32) -> anyhow::Result<u32> {
    Ok(amount)
}

async fn fee(amount: u32) -> anyhow::Result<u32> {
    Ok(amount / 10)
}

#[workflow(name = "purchase")]
async fn purchase_v1(amount: u32) -> anyhow::Result<u32> {
    #[step]
    let charged = charge(amount).await?;
    Ok(charged)
}

#[workflow(name = "purchase", version = 2)]
async fn purchase_v2(amount: u32) -> anyhow::Result<u32> {
    deprecated_patch("audit");
    let with_fee = durable::patched("fee");
    #[step]
    let charged = charge(amount).await?;
    if with_fee && patched("fee-rounding") {
        #[step]
        let fee = fee(amount).await?;
        return Ok(charged + fee);
    }
    Ok(charged)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!((purchase_v1::VERSION, purchase_v2::VERSION), (1, 2));
    let engine = Engine::in_memory();
    engine.register::<purchase_v1>().await.unwrap();
    engine.register::<purchase_v2>().await.unwrap();
    let run = engine.start::<purchase_v1>("p", (100,)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 110);
}
