//! Rate limits that understand LLMs: token buckets that count requests per minute and tokens
//! per minute, shared by every run of an engine. A step that draws from a bucket
//! (`#[step(rate = "llm")]`) waits for capacity instead of failing, and a 429 from the
//! provider closes the bucket for the Retry-After period.
//!
//! Tokens are known only after a call, so a call needs a positive token balance to start and
//! is charged what it used when it ends; a large call leaves the bucket in debt, which later
//! calls wait out.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The capacity of a bucket. Unset limits do not apply.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimit {
    /// Calls per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens (input plus output) per minute.
    pub tokens_per_minute: Option<u64>,
}

impl RateLimit {
    /// A limit of `requests` calls per minute.
    pub fn requests_per_minute(requests: u32) -> Self {
        RateLimit {
            requests_per_minute: Some(requests),
            ..RateLimit::default()
        }
    }

    /// This limit with a cap of `tokens` per minute too.
    pub fn with_tokens_per_minute(mut self, tokens: u64) -> Self {
        self.tokens_per_minute = Some(tokens);
        self
    }
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    requests: f64,
    tokens: f64,
    refilled_at: Instant,
    closed_until: Option<Instant>,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Bucket {
            limit,
            requests: limit.requests_per_minute.map_or(0.0, f64::from),
            tokens: limit.tokens_per_minute.map_or(0.0, |t| t as f64),
            refilled_at: Instant::now(),
            closed_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let minutes = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64()
            / 60.0;
        self.refilled_at = now;
        if let Some(rpm) = self.limit.requests_per_minute {
            self.requests = (self.requests + minutes * f64::from(rpm)).min(f64::from(rpm));
        }
        if let Some(tpm) = self.limit.tokens_per_minute {
            self.tokens = (self.tokens + minutes * tpm as f64).min(tpm as f64);
        }
    }

    /// Takes one request if the bucket allows one now; otherwise says how long to wait.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if let Some(until) = self.closed_until {
            if now < until {
                return Err(until - now);
            }
            self.closed_until = None;
        }
        let mut wait = Duration::ZERO;
        if let Some(rpm) = self.limit.requests_per_minute
            && self.requests < 1.0
        {
            let missing = 1.0 - self.requests;
            wait = wait.max(Duration::from_secs_f64(
                missing * 60.0 / f64::from(rpm.max(1)),
            ));
        }
        if let Some(tpm) = self.limit.tokens_per_minute
            && self.tokens <= 0.0
        {
            // Wait until the balance is back above zero.
            let missing = -self.tokens + 1.0;
            wait = wait.max(Duration::from_secs_f64(missing * 60.0 / tpm.max(1) as f64));
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if self.limit.requests_per_minute.is_some() {
            self.requests -= 1.0;
        }
        Ok(())
    }
}

/// The buckets of one engine.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    fn buckets(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn configure(&self, name: &str, limit: RateLimit) {
        self.buckets().insert(name.to_owned(), Bucket::new(limit));
    }

    /// Waits until the bucket `name` lets a call through, and takes it. A bucket that was
    /// never configured has no limit.
    pub(crate) async fn acquire(&self, name: &str) {
        // Bounded: each round waits for the time the bucket said, and the bucket refills.
        loop {
            let wait = match self.buckets().get_mut(name) {
                None => return,
                Some(bucket) => match bucket.try_take(Instant::now()) {
                    Ok(()) => return,
                    Err(wait) => wait,
                },
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges the tokens a call used.
    pub(crate) fn charge_tokens(&self, name: &str, tokens: u64) {
        if let Some(bucket) = self.buckets().get_mut(name) {
            bucket.refill(Instant::now());
            if bucket.limit.tokens_per_minute.is_some() {
                bucket.tokens -= tokens as f64;
            }
        }
    }

    /// Closes the bucket for `wait` (the provider answered 429 with this Retry-After).
    pub(crate) fn back_off(&self, name: &str, wait: Duration) {
        if let Some(bucket) = self.buckets().get_mut(name) {
            let until = Instant::now() + wait;
            bucket.closed_until = Some(bucket.closed_until.map_or(until, |u| u.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_spread_calls_out() {
        let limits = RateLimits::default();
        limits.configure("llm", RateLimit::requests_per_minute(60));
        let started = Instant::now();
        for _ in 0..62 {
            limits.acquire("llm").await;
        }
        // 60 at once (a full bucket), then one per second.
        assert_eq!(started.elapsed().as_secs(), 2);
        limits.acquire("unconfigured").await;
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_make_a_big_call_wait_out_its_debt() {
        let limits = RateLimits::default();
        limits.configure("llm", RateLimit::default().with_tokens_per_minute(1_000));
        let started = Instant::now();
        limits.acquire("llm").await;
        limits.charge_tokens("llm", 1_500);
        limits.acquire("llm").await;
        // 500 tokens of debt plus one: about 30 s at 1,000 per minute.
        let waited = started.elapsed().as_secs_f64();
        assert!((30.0..31.0).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_closes_the_bucket_for_the_retry_after_period() {
        let limits = RateLimits::default();
        limits.configure("llm", RateLimit::requests_per_minute(1_000));
        limits.back_off("llm", Duration::from_secs(7));
        let started = Instant::now();
        limits.acquire("llm").await;
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }
}
