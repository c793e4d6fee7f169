//! The error type's `Classify` implementation, found at the call site, decides the retries:
//! a terminal error is not retried even with `retries = 3`. Also the switches and `circuit`.

use std::sync::atomic::{AtomicU32, Ordering};

use workflow_runtime::{Classify, ErrorClass, StepError, StepErrorKind, workflow};

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}

impl std::error::Error for Declined {}

impl Classify for Declined {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

async fn charge(cents: u64) -> Result<u64, Declined> {
    CHARGES.fetch_add(1, Ordering::SeqCst);
    let _ = cents;
    Err(Declined)
}

async fn refund(cents: u64) -> Result<u64, std::io::Error> {
    Ok(cents)
}

#[workflow]
async fn pay(cents: u64) -> Result<u64, StepError> {
    #[step(retries = 3, circuit = "payments", at_most_once)]
    let charged = charge(cents).await;
    let error = charged.unwrap_err();
    assert_eq!(error.kind, StepErrorKind::Terminal);
    assert_eq!(error.attempts, 1);
    #[step(non_retryable, at_most_once = false)]
    let refunded = refund(cents).await?;
    Ok(refunded)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(pay(250).await.unwrap(), 250);
    assert_eq!(CHARGES.load(Ordering::SeqCst), 1);
}
