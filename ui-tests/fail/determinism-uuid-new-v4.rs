use workflow_runtime::workflow;

/// A stand-in for the `uuid` crate: the check goes by the path, `Uuid::new_v4`.
struct Uuid;
impl Uuid {
    fn new_v4() -> u128 {
        4
    }
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let request_id = Uuid::new_v4();
    Ok(format!("{goal} {request_id}"))
}

fn main() {}
