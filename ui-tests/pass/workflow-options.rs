//! Every `#[workflow]` option: `name`, the budget (`max_steps`, `max_cost_usd`, `max_tokens`,
//! `max_duration`, `max_in_flight_steps`) and the scheduler's `concurrency`.

use std::time::Duration;

use workflow_runtime::{Budget, Workflow, workflow};

#[workflow(
    name = "limited-agent",
    max_steps = 50,
    max_cost_usd = 2.5,
    max_tokens = 200_000,
    max_duration = "10m",
    max_in_flight_steps = 8,
    concurrency = 4
)]
async fn limited(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

#[workflow]
async fn unlimited(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {
    assert_eq!(limited::NAME, "limited-agent");
    assert_eq!(
        limited::budget(),
        Budget::UNLIMITED
            .with_max_steps(50)
            .with_max_cost_usd(2.5)
            .with_max_tokens(200_000)
            .with_max_duration(Duration::from_secs(600))
            .with_max_in_flight_steps(8)
    );
    assert_eq!(limited::concurrency(), Some(4));
    // Without options, the trait's defaults.
    assert_eq!(unlimited::budget(), Budget::UNLIMITED);
    assert_eq!(unlimited::concurrency(), None);
}
