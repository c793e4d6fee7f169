use workflow_runtime::workflow;

/// A stand-in for the `chrono` crate: the check goes by the path, `chrono::Utc::now`.
mod chrono {
    pub struct Utc;
    impl Utc {
        pub fn now() -> u64 {
            0
        }
    }
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let today = chrono::Utc::now();
    Ok(format!("{goal} on {today}"))
}

fn main() {}
