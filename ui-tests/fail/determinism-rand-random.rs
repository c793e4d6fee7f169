use workflow_runtime::workflow;

/// A stand-in for the `rand` crate: the check goes by the path, `rand::random`.
mod rand {
    pub fn random() -> u64 {
        4
    }
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let pick: u64 = rand::random();
    Ok(format!("{goal} #{pick}"))
}

fn main() {}
