//! Retry policy: how many attempts a step gets and how long to wait between them.

use std::time::Duration;

/// Exponential backoff between attempts: `initial`, `initial * factor`, ... capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the second attempt.
    pub initial: Duration,
    /// How much each wait grows over the previous one.
    pub factor: f64,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// 1 s, 2 s, 4 s, ... up to 30 s.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        factor: 2.0,
        max: Duration::from_secs(30),
    };

    /// The wait after failed attempt number `attempt` (1-based) before the next one.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let scaled = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(scaled.max(0.0))
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// How a step retries: the number of retries after the first attempt, the backoff between
/// them, and the timeout of each attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 3 means up to 4 attempts.
    pub retries: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// The limit of each attempt; an attempt past it is dropped and counts as failed.
    pub timeout: Option<Duration>,
}

impl RetryPolicy {
    /// Three retries, the default backoff, no timeout.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        retries: 3,
        backoff: Backoff::DEFAULT,
        timeout: None,
    };
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_doubles_and_caps() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.delay_after(1), Duration::from_secs(1));
        assert_eq!(b.delay_after(2), Duration::from_secs(2));
        assert_eq!(b.delay_after(3), Duration::from_secs(4));
        assert_eq!(b.delay_after(10), Duration::from_secs(30));
        assert_eq!(b.delay_after(u32::MAX), Duration::from_secs(30));
    }
}
