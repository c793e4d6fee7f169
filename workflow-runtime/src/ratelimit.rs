//! Rate limits that understand LLMs: token buckets that count requests per minute and tokens
//! per minute, shared by every run of an engine. A step that draws from a bucket
//! (`#[step(rate = "llm")]`) waits for capacity instead of failing, and a 429 from the
//! provider closes the bucket for the Retry-After period.
//!
//! Tokens are known only after a call, so a call needs a positive token balance to start and
//! is charged what it used when it ends; a large call leaves the bucket in debt, which later
//! calls wait out.
//!
//! A limit of 0 allows no calls at all: no capacity would ever come, so a step drawing from
//! such a bucket is refused at once, with a message naming the bucket and the limit, instead
//! of waiting forever.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The capacity of a bucket. Unset limits do not apply; a limit of 0 allows no calls, and a
/// step that draws from the bucket fails at once, never retried, saying so (it does not wait:
/// no capacity would ever come).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RateLimit {
    /// Calls per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens (input plus output) per minute.
    pub tokens_per_minute: Option<u64>,
}

impl RateLimit {
    /// A limit of `requests` calls per minute (0: no calls at all).
    pub fn requests_per_minute(requests: u32) -> Self {
        RateLimit {
            requests_per_minute: Some(requests),
            ..RateLimit::default()
        }
    }

    /// This limit with a cap of `tokens` per minute too (0: no calls at all).
    pub fn with_tokens_per_minute(mut self, tokens: u64) -> Self {
        self.tokens_per_minute = Some(tokens);
        self
    }
}

/// Why a bucket let no call through: its limit is 0, so no capacity will ever come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    bucket: String,
    limit: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit `{}` allows no calls ({} = 0): the step was refused without waiting; \
             give the bucket a positive limit with `EngineBuilder::rate_limit`",
            self.bucket, self.limit
        )
    }
}

impl std::error::Error for Refused {}

/// What [`RateLimits::acquire`] answers. Not `#[must_use]` on purpose: ignoring a refusal
/// lets the call through, which is the behaviour of a bucket without limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The call may go ahead.
    Granted,
    /// The bucket allows no calls: the step must fail, not retry.
    Refused(Refused),
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

    /// The limit that is 0, if one is: such a bucket never lets a call through.
    fn zero_limit(&self) -> Option<&'static str> {
        if self.limit.requests_per_minute == Some(0) {
            Some("requests_per_minute")
        } else if self.limit.tokens_per_minute == Some(0) {
            Some("tokens_per_minute")
        } else {
            None
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
    /// never configured has no limit; a bucket with a limit of 0 refuses at once.
    pub(crate) async fn acquire(&self, name: &str) -> Admission {
        // Bounded: each round waits for the time the bucket said, and the bucket refills; a
        // bucket that never refills (a limit of 0) is refused before any wait.
        loop {
            let wait = match self.buckets().get_mut(name) {
                None => return Admission::Granted,
                Some(bucket) => {
                    if let Some(limit) = bucket.zero_limit() {
                        return Admission::Refused(Refused {
                            bucket: name.to_owned(),
                            limit,
                        });
                    }
                    match bucket.try_take(Instant::now()) {
                        Ok(()) => return Admission::Granted,
                        Err(wait) => wait,
                    }
                }
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
            // A Retry-After of centuries closes the bucket for as long as the clock can say.
            let now = Instant::now();
            let until = now
                .checked_add(wait)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
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
    async fn a_limit_of_zero_slept_forever_and_now_refuses_at_once() {
        let limits = RateLimits::default();
        limits.configure("none", RateLimit::requests_per_minute(0));
        limits.configure(
            "no-tokens",
            RateLimit::requests_per_minute(60).with_tokens_per_minute(0),
        );
        for (bucket, limit) in [
            ("none", "requests_per_minute = 0"),
            ("no-tokens", "tokens_per_minute = 0"),
        ] {
            let started = Instant::now();
            // Today's code waited a minute at a time, forever: bound the wait to see it fail.
            let admission = tokio::time::timeout(Duration::from_secs(3600), limits.acquire(bucket))
                .await
                .expect("a bucket with a zero limit must answer, not wait");
            assert_eq!(
                started.elapsed(),
                Duration::ZERO,
                "{bucket}: no wait at all"
            );
            let Admission::Refused(refused) = admission else {
                panic!("{bucket}: a zero limit lets no call through, got {admission:?}");
            };
            let message = refused.to_string();
            assert!(message.contains(&format!("`{bucket}`")), "{message}");
            assert!(message.contains(limit), "{message}");
        }
        assert_eq!(limits.acquire("unconfigured").await, Admission::Granted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_duration_max_does_not_overflow_the_clock() {
        let limits = RateLimits::default();
        limits.configure("llm", RateLimit::requests_per_minute(1));
        limits.back_off("llm", Duration::MAX);
        let waited = tokio::time::timeout(Duration::from_secs(3600), limits.acquire("llm")).await;
        assert!(waited.is_err(), "the bucket stays closed");
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
