//! `#[step]` on expression statements, with and without `?`, and as the tail expression.

use std::sync::atomic::{AtomicUsize, Ordering};

use workflow_runtime::{StepError, workflow};

static NOTIFIED: AtomicUsize = AtomicUsize::new(0);

async fn notify(who: &str) -> Result<(), std::io::Error> {
    assert!(!who.is_empty());
    NOTIFIED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn count(goal: &str) -> Result<usize, std::io::Error> {
    Ok(goal.len())
}

#[workflow]
async fn agent(goal: String) -> Result<usize, StepError> {
    #[step]
    notify(&goal).await?;
    #[step(name = "notify-again")]
    let _ = notify(&goal).await;
    #[step]
    count(&goal).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(agent("rust".to_owned()).await.unwrap(), 4);
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 2);
}
