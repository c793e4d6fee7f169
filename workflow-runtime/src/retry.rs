//! Retry policy by error class: what is retried, how often, and how long to wait.
//!
//! | failure | class | default |
//! | --- | --- | --- |
//! | network error, plain std error | [`ErrorClass::Transient`] | 3 retries, backoff 1 s, 5 s, 25 s (x5, capped at 30 s), 10% jitter |
//! | attempt timeout, HTTP 408 | [`ErrorClass::Timeout`] | as transient |
//! | HTTP 429 | [`ErrorClass::RateLimited`] | waits for Retry-After when given, else backoff; 5 attempts, then the step's circuit opens |
//! | HTTP 5xx | [`ErrorClass::Server`] | 3 retries; repeated 503s raise an alert |
//! | model output does not match the schema (`serde_json::Error`) | [`ErrorClass::Schema`] | 1 retry, the previous error readable by the step |
//! | HTTP 4xx other than 401, 403, 408, 429 | [`ErrorClass::Client`] | never retried |
//! | HTTP 401, 403 | [`ErrorClass::Auth`] | never retried; alert; the run stops |
//! | marked terminal by the user | [`ErrorClass::Terminal`] | never retried |
//!
//! A step's error type says its class by implementing [`Classify`]. The `#[step]` macro finds
//! that implementation for the concrete error type at the call site. Errors that do not
//! implement it (anyhow errors, boxed errors) are classified by looking through their chain of
//! causes for a type this crate knows: [`StepFailure`], [`HttpError`], [`StepError`],
//! `serde_json::Error`, `std::io::Error` of kind `TimedOut`; anything else is transient.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::error::{StepError, StepErrorKind};
use crate::resource::ResourceError;

/// What kind of failure an error is; decides whether and how a step retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// May succeed on a second try: a network error, an overloaded dependency.
    Transient,
    /// The attempt ran out of time.
    Timeout,
    /// The service asked to slow down, maybe saying for how long.
    RateLimited {
        /// The wait the service asked for (the Retry-After header).
        retry_after: Option<Duration>,
    },
    /// The service failed (HTTP 5xx).
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// The model's output does not match the expected schema: one retry, with the error
    /// readable through [`StepContext::previous_error`](crate::StepContext::previous_error) so
    /// it can be fed back to the model.
    Schema,
    /// The request is wrong (HTTP 4xx): it will fail the same way again.
    Client {
        /// The HTTP status.
        status: u16,
    },
    /// Authentication or permission failure (HTTP 401, 403): never retried, raises an alert,
    /// and stops the run.
    Auth {
        /// The HTTP status.
        status: u16,
    },
    /// The user said so: never retried.
    Terminal,
}

impl ErrorClass {
    /// The kind journaled in a [`StepError`] of this class.
    pub fn kind(self) -> StepErrorKind {
        match self {
            ErrorClass::Transient => StepErrorKind::Transient,
            ErrorClass::Timeout => StepErrorKind::Timeout,
            ErrorClass::RateLimited { .. } => StepErrorKind::RateLimited,
            ErrorClass::Server { .. } => StepErrorKind::Server,
            ErrorClass::Schema => StepErrorKind::Schema,
            ErrorClass::Client { .. } => StepErrorKind::Client,
            ErrorClass::Auth { .. } => StepErrorKind::Auth,
            ErrorClass::Terminal => StepErrorKind::Terminal,
        }
    }

    /// Whether a failure of this class may succeed on another attempt.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            ErrorClass::Client { .. } | ErrorClass::Auth { .. } | ErrorClass::Terminal
        )
    }

    /// The retries this class gets when the step does not set `retries`.
    pub fn default_retries(self) -> u32 {
        match self {
            ErrorClass::Transient | ErrorClass::Timeout | ErrorClass::Server { .. } => 3,
            ErrorClass::RateLimited { .. } => 4,
            ErrorClass::Schema => 1,
            ErrorClass::Client { .. } | ErrorClass::Auth { .. } | ErrorClass::Terminal => 0,
        }
    }

    /// Whether a failure of this class says the resource behind a circuit is unhealthy.
    /// A client error or a schema mismatch says nothing about the service's health.
    pub(crate) fn counts_against_circuit(self) -> bool {
        matches!(
            self,
            ErrorClass::Transient
                | ErrorClass::Timeout
                | ErrorClass::RateLimited { .. }
                | ErrorClass::Server { .. }
        )
    }

    fn from_kind(kind: StepErrorKind) -> ErrorClass {
        match kind {
            StepErrorKind::Timeout => ErrorClass::Timeout,
            StepErrorKind::RateLimited => ErrorClass::RateLimited { retry_after: None },
            StepErrorKind::Server => ErrorClass::Server { status: 500 },
            StepErrorKind::Schema => ErrorClass::Schema,
            StepErrorKind::Client => ErrorClass::Client { status: 400 },
            StepErrorKind::Auth => ErrorClass::Auth { status: 401 },
            StepErrorKind::Transient => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }
}

/// An error type that knows its [`ErrorClass`].
///
/// ```
/// use workflow_runtime::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum ToolError { BadArguments(String), Unavailable }
/// # impl std::fmt::Display for ToolError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
/// # }
/// # impl std::error::Error for ToolError {}
///
/// impl Classify for ToolError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             ToolError::BadArguments(_) => ErrorClass::Terminal,
///             ToolError::Unavailable => ErrorClass::Transient,
///         }
///     }
/// }
/// ```
pub trait Classify {
    /// This error's class.
    fn class(&self) -> ErrorClass;
}

/// An error with an explicit class: return it from a step to decide how it is retried, or use
/// [`StepFailure::classified`] to carry a [`Classify`] implementation through the closure API.
#[derive(Debug)]
pub struct StepFailure {
    class: ErrorClass,
    error: Box<dyn StdError + Send + Sync>,
}

impl StepFailure {
    /// `error`, of class `class`.
    pub fn new(class: ErrorClass, error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StepFailure {
            class,
            error: error.into(),
        }
    }

    /// `error`, never retried.
    pub fn terminal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StepFailure::new(ErrorClass::Terminal, error)
    }

    /// `error`, retried as transient.
    pub fn transient(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StepFailure::new(ErrorClass::Transient, error)
    }

    /// `error`, whose class its [`Classify`] implementation gives.
    pub fn classified<E>(error: E) -> Self
    where
        E: Classify + Into<Box<dyn StdError + Send + Sync>>,
    {
        StepFailure::new(error.class(), error)
    }

    /// Any error: its class is found in its chain of causes (see the [module docs](self)).
    pub fn from_error(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        let error = error.into();
        if error.is::<StepFailure>() {
            if let Ok(failure) = error.downcast::<StepFailure>() {
                return *failure;
            }
            unreachable!("`is` said it was a StepFailure");
        }
        StepFailure {
            class: classify_chain(error.as_ref()),
            error,
        }
    }

    /// The class.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message: the error's `Display`, followed by its causes.
    pub fn message(&self) -> String {
        let mut message = self.error.to_string();
        let mut source = self.error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl StdError for StepFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

impl Classify for StepFailure {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

impl Classify for StepError {
    fn class(&self) -> ErrorClass {
        ErrorClass::from_kind(self.kind)
    }
}

impl Classify for HttpError {
    fn class(&self) -> ErrorClass {
        classify_http_status(self.status, self.retry_after)
    }
}

impl Classify for serde_json::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Schema
    }
}

impl Classify for std::io::Error {
    fn class(&self) -> ErrorClass {
        match self.kind() {
            std::io::ErrorKind::TimedOut => ErrorClass::Timeout,
            _ => ErrorClass::Transient,
        }
    }
}

/// A failed HTTP call: its status and the wait its Retry-After header asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: u16,
    /// The Retry-After wait, if the response gave one.
    pub retry_after: Option<Duration>,
    /// What the response said.
    pub message: String,
}

impl HttpError {
    /// An error for a response with `status` and, if present, its Retry-After header value.
    pub fn new(status: u16, retry_after_header: Option<&str>, message: impl Into<String>) -> Self {
        HttpError {
            status,
            retry_after: retry_after_header.and_then(|v| parse_retry_after(v, SystemTime::now())),
            message: message.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)?;
        if let Some(wait) = self.retry_after {
            write!(f, " (retry after {wait:?})")?;
        }
        Ok(())
    }
}

impl StdError for HttpError {}

/// Classifies an HTTP status with its optional Retry-After header value (seconds, or an HTTP
/// date).
///
/// ```
/// use std::time::Duration;
/// use workflow_runtime::{ErrorClass, classify_http};
///
/// assert_eq!(
///     classify_http(429, Some("7")),
///     ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(7)) }
/// );
/// assert_eq!(classify_http(503, None), ErrorClass::Server { status: 503 });
/// assert_eq!(classify_http(403, None), ErrorClass::Auth { status: 403 });
/// assert_eq!(classify_http(404, None), ErrorClass::Client { status: 404 });
/// ```
pub fn classify_http(status: u16, retry_after: Option<&str>) -> ErrorClass {
    classify_http_status(
        status,
        retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
    )
}

fn classify_http_status(status: u16, retry_after: Option<Duration>) -> ErrorClass {
    match status {
        408 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited { retry_after },
        401 | 403 => ErrorClass::Auth { status },
        400..=499 => ErrorClass::Client { status },
        500..=599 => ErrorClass::Server { status },
        _ => ErrorClass::Transient,
    }
}

/// Parses a Retry-After value: a number of seconds, or an HTTP date (a date in the past is no
/// wait). `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A missing resource stays missing: another attempt would not find it either.
impl Classify for ResourceError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

/// A step that returns [`StepFailure`] reads a resource with `resource::<T>()?`: never retried.
impl From<ResourceError> for StepFailure {
    fn from(error: ResourceError) -> StepFailure {
        StepFailure::classified(error)
    }
}

/// The class of an error found by looking through its chain of causes.
pub(crate) fn classify_chain(error: &(dyn StdError + 'static)) -> ErrorClass {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(e) = error.downcast_ref::<StepFailure>() {
            return e.class();
        }
        if let Some(e) = error.downcast_ref::<HttpError>() {
            return e.class();
        }
        if let Some(e) = error.downcast_ref::<StepError>() {
            return e.class();
        }
        if let Some(e) = error.downcast_ref::<serde_json::Error>() {
            return e.class();
        }
        if let Some(e) = error.downcast_ref::<ResourceError>() {
            return e.class();
        }
        if let Some(e) = error.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::TimedOut
        {
            return ErrorClass::Timeout;
        }
        if error.is::<tokio::time::error::Elapsed>() {
            return ErrorClass::Timeout;
        }
        current = error.source();
    }
    ErrorClass::Transient
}

/// Waits between attempts: `initial`, then multiplied by `factor` each time, capped at `max`,
/// each spread by up to `jitter` (a fraction) either way so that many runs failing together do
/// not retry together.
///
/// The fields are plain numbers, so nothing stops a computed one from being NaN, negative or
/// infinite; a wait is never a panic. Out-of-range values are clamped where the wait is
/// computed, to what keeps a backoff a backoff (waits that never shrink, never beyond `max`):
///
/// | field | value | taken as |
/// | --- | --- | --- |
/// | `factor` | NaN, or below 1 (negative included) | 1: every wait is `initial` |
/// | `factor` | +infinity | `initial`, then `max` |
/// | `jitter` | NaN, or negative | 0: no spread |
/// | `jitter` | above 1, +infinity | 1: between no wait and twice the wait |
/// | `initial` | above `max` | `max` |
///
/// A spread wait never exceeds [`Duration::MAX`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The wait before the second attempt.
    pub initial: Duration,
    /// How much each wait grows over the previous one.
    pub factor: f64,
    /// The longest wait.
    pub max: Duration,
    /// The spread of each wait, as a fraction of it (0.1: up to 10% shorter or longer).
    pub jitter: f64,
}

impl Backoff {
    /// 1 s, 5 s, 25 s, then 30 s, with 10% jitter.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        factor: 5.0,
        max: Duration::from_secs(30),
        jitter: 0.1,
    };

    /// This backoff with another wait before the second attempt.
    pub const fn with_initial(mut self, initial: Duration) -> Backoff {
        self.initial = initial;
        self
    }

    /// This backoff with another growth of each wait over the previous one.
    pub const fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = factor;
        self
    }

    /// This backoff with another longest wait.
    pub const fn with_max(mut self, max: Duration) -> Backoff {
        self.max = max;
        self
    }

    /// This backoff with another spread of each wait (0.1: up to 10% shorter or longer).
    pub const fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The wait after failed attempt number `attempt` (from 1) before the next one, without
    /// jitter. See the [type's docs](Backoff) for factors that are NaN, below 1 or infinite.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        // `f64::max` returns the number when the other operand is NaN: a NaN factor is 1.
        let factor = self.factor.max(1.0);
        if exponent == 0 || factor == 1.0 || self.initial.is_zero() {
            return self.initial.min(self.max);
        }
        let scaled = self.initial.as_secs_f64() * factor.powi(exponent);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            self.max
        } else {
            // `scaled` is finite, positive and below `max`: it converts, but saturate anyway.
            Duration::try_from_secs_f64(scaled)
                .unwrap_or(self.max)
                .min(self.max)
        }
    }

    /// The wait after failed attempt `attempt`, spread by the jitter according to `seed` (a
    /// hash of the step's key and attempt, so the spread is reproducible). See the [type's
    /// docs](Backoff) for a jitter that is NaN, negative or above 1.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let base = self.base_delay(attempt);
        // NaN compares false with everything: `jitter > 0.0` is false for it too.
        let jitter = if self.jitter > 0.0 {
            self.jitter.min(1.0)
        } else {
            0.0
        };
        if jitter == 0.0 {
            return base;
        }
        let unit = (seed >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
        let spread = base.as_secs_f64() * (1.0 + jitter * (2.0 * unit - 1.0));
        // At most twice `base`, which may be near `Duration::MAX`: saturate.
        Duration::try_from_secs_f64(spread).unwrap_or(if spread > 0.0 {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// How a step retries. Unset fields follow the defaults of the failure's class.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryPolicy {
    /// Retries after the first attempt for every retryable class; `None`: the class's default.
    pub retries: Option<u32>,
    /// Waits between attempts; `None`: [`Backoff::DEFAULT`].
    pub backoff: Option<Backoff>,
    /// The limit of each attempt; an attempt past it is dropped and fails as a timeout.
    pub timeout: Option<Duration>,
    /// Never retry, whatever the class.
    pub non_retryable: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// The decision after the `failures`-th failure of class `class` (from 1); `seed` spreads
    /// the jitter.
    pub(crate) fn decide(&self, class: ErrorClass, failures: u32, seed: u64) -> Decision {
        if self.non_retryable || !class.is_retryable() {
            return Decision::GiveUp;
        }
        let retries = self.retries.unwrap_or_else(|| class.default_retries());
        if failures > retries {
            return Decision::GiveUp;
        }
        if let ErrorClass::RateLimited {
            retry_after: Some(wait),
        } = class
        {
            return Decision::RetryAfter(wait);
        }
        Decision::RetryAfter(self.backoff.unwrap_or_default().delay(failures, seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_grows_by_five_and_caps_at_thirty_seconds() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.base_delay(1), Duration::from_secs(1));
        assert_eq!(b.base_delay(2), Duration::from_secs(5));
        assert_eq!(b.base_delay(3), Duration::from_secs(25));
        assert_eq!(b.base_delay(4), Duration::from_secs(30));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::DEFAULT;
        for seed in [0, 1, u64::MAX, 0x1234_5678_9abc_def0] {
            let d = b.delay(2, seed).as_secs_f64();
            assert!((4.5..=5.5).contains(&d), "{d}");
        }
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(2, 99), Duration::from_secs(5));
    }

    #[test]
    fn backoff_with_nan_negative_or_infinite_jitter_does_not_panic() {
        let seeds = [0, 1, u64::MAX, 0x1234_5678_9abc_def0];
        for jitter in [f64::NAN, -0.5, f64::NEG_INFINITY] {
            let b = Backoff {
                jitter,
                ..Backoff::DEFAULT
            };
            for seed in seeds {
                assert_eq!(b.delay(2, seed), Duration::from_secs(5), "jitter {jitter}");
            }
        }
        for jitter in [7.0, f64::INFINITY] {
            let b = Backoff {
                jitter,
                ..Backoff::DEFAULT
            };
            for seed in seeds {
                assert!(
                    b.delay(2, seed) <= Duration::from_secs(10),
                    "jitter {jitter}"
                );
            }
        }
        let huge = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            jitter: 1.0,
            ..Backoff::DEFAULT
        };
        for seed in seeds {
            assert!(huge.delay(3, seed) <= Duration::MAX);
        }
        assert_eq!(huge.delay(3, u64::MAX), Duration::MAX);
    }

    #[test]
    fn backoff_with_nan_negative_or_infinite_factor_never_shrinks_and_stops_at_max() {
        for factor in [f64::NAN, -3.0, f64::NEG_INFINITY, 0.0, 0.5] {
            let b = Backoff {
                factor,
                ..Backoff::DEFAULT
            };
            for attempt in [1, 2, 3, 64, u32::MAX] {
                assert_eq!(b.base_delay(attempt), Duration::from_secs(1), "{factor}");
                let jittered = b.delay(attempt, 99).as_secs_f64();
                assert!((0.9..=1.1).contains(&jittered), "{factor}: {jittered}");
            }
        }
        let b = Backoff {
            factor: f64::INFINITY,
            ..Backoff::DEFAULT
        };
        assert_eq!(b.base_delay(1), Duration::from_secs(1));
        assert_eq!(b.base_delay(2), Duration::from_secs(30));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(30));
        let above_max = Backoff {
            initial: Duration::from_secs(90),
            factor: 1.0,
            ..Backoff::DEFAULT
        };
        assert_eq!(above_max.base_delay(1), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777; 60 s later:
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn policy_follows_the_class_table() {
        let policy = RetryPolicy::default();
        let transient = ErrorClass::Transient;
        assert!(matches!(
            policy.decide(transient, 3, 0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(policy.decide(transient, 4, 0), Decision::GiveUp);
        assert!(matches!(
            policy.decide(ErrorClass::Schema, 1, 0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(policy.decide(ErrorClass::Schema, 2, 0), Decision::GiveUp);
        assert_eq!(
            policy.decide(ErrorClass::Client { status: 404 }, 1, 0),
            Decision::GiveUp
        );
        assert_eq!(
            policy.decide(ErrorClass::Auth { status: 401 }, 1, 0),
            Decision::GiveUp
        );
        let limited = ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(9)),
        };
        assert_eq!(
            policy.decide(limited, 4, 0),
            Decision::RetryAfter(Duration::from_secs(9))
        );
        assert_eq!(policy.decide(limited, 5, 0), Decision::GiveUp);
        let strict = RetryPolicy {
            non_retryable: true,
            ..policy
        };
        assert_eq!(strict.decide(transient, 1, 0), Decision::GiveUp);
        let more = RetryPolicy {
            retries: Some(6),
            ..policy
        };
        assert!(matches!(
            more.decide(ErrorClass::Schema, 6, 0),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn the_chain_is_searched_for_a_known_class() {
        #[derive(Debug)]
        struct Wrapper(HttpError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("calling the model")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrapper(HttpError::new(401, None, "bad key"));
        assert_eq!(classify_chain(&wrapped), ErrorClass::Auth { status: 401 });
        let plain = std::fmt::Error;
        assert_eq!(classify_chain(&plain), ErrorClass::Transient);
        let failure = StepFailure::from_error(StepFailure::terminal("no"));
        assert_eq!(failure.class(), ErrorClass::Terminal);
        // A missing resource wrapped in a caller's error (anyhow's context, say) is not
        // retried: it stays missing.
        #[derive(Debug)]
        struct Context(crate::resource::ResourceError);
        impl fmt::Display for Context {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("reaching the model")
            }
        }
        impl StdError for Context {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let missing = Context(ResourceError::Missing {
            type_name: "Client",
        });
        assert_eq!(classify_chain(&missing), ErrorClass::Terminal);
    }
}
