use workflow_runtime::workflow;

/// A stand-in for the `rand` crate: the check goes by the name, `thread_rng`.
mod rand {
    pub struct Rng;
    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            4
        }
    }
    pub fn thread_rng() -> Rng {
        Rng
    }
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let pick = rand::thread_rng().next_u64();
    Ok(format!("{goal} #{pick}"))
}

fn main() {}
