//! `#[step]` on an `async fn`: every call is a step, with owned arguments cloned per attempt.

use std::sync::atomic::{AtomicU32, Ordering};

use workflow_runtime::{StepError, step, workflow};

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails once, then succeeds: the retry gets a fresh clone of `prefix`.
#[step(retries = 2, timeout = "5s")]
pub async fn flaky(
    prefix: String,
    question: &str,
    (a, b): (u8, u8),
) -> Result<String, std::io::Error> {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(std::io::Error::other("transient"));
    }
    Ok(format!("{prefix}{question}{}", a + b))
}

#[step(name = "count")]
async fn count_words<'a>(text: &'a str) -> anyhow::Result<usize> {
    Ok(text.split_whitespace().count())
}

#[workflow]
async fn agent(goal: String) -> Result<String, StepError> {
    let answer: String = flaky("> ".to_owned(), &goal, (1, 2)).await?;
    let words: Result<usize, StepError> = count_words(&answer).await;
    Ok(format!("{answer} ({} words)", words?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(agent("why".to_owned()).await.unwrap(), "> why3 (2 words)");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2);
}
