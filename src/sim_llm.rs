//! A simulated LLM: deterministic from its prompt, with latency, token usage, cost, and
//! transient failures decided from the step's idempotency key and attempt number.
//!
//! Because failures depend only on (key, attempt), a run replays the same sequence of failures
//! every time it is run from scratch, and a retried attempt sees a fresh roll of the dice.

use std::fmt;
use std::time::Duration;

use workflow_runtime::{Classify, ErrorClass, HttpError, StepContext, Usage};

/// The price of the simulated model's input, in US dollars per million tokens.
pub const INPUT_USD_PER_MTOK: f64 = 3.0;
/// The price of the simulated model's output, in US dollars per million tokens.
pub const OUTPUT_USD_PER_MTOK: f64 = 15.0;
/// The simulated model's name.
pub const MODEL: &str = "sim-llm-1";

/// How the simulated model behaves.
#[derive(Debug, Clone, Copy)]
pub struct SimLlm {
    /// Mean latency of a call.
    pub latency: Duration,
    /// Probability that an attempt fails transiently, from 0 to 1.
    pub fail_rate: f64,
}

/// A completion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// What the call cost.
    pub usage: Usage,
}

/// A failed call of the simulated model. Its cause is a type the runtime classifies (an
/// [`HttpError`], an I/O timeout, a JSON error), so retries follow the class table whether
/// or not the error goes through `#[step]`.
#[derive(Debug)]
pub enum LlmError {
    /// The API answered with an error status.
    Http(HttpError),
    /// The request timed out.
    Timeout(std::io::Error),
    /// The model's answer does not match the schema asked for.
    Schema(serde_json::Error),
    /// A real API's failure, already classified.
    Api(workflow_runtime::StepFailure),
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Http(e) => e.fmt(f),
            LlmError::Timeout(e) => write!(f, "request timed out: {e}"),
            LlmError::Schema(e) => write!(f, "the model's answer is not the JSON asked for: {e}"),
            LlmError::Api(e) => write!(f, "{}", e.message()),
        }
    }
}

impl std::error::Error for LlmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LlmError::Http(e) => Some(e),
            LlmError::Timeout(e) => Some(e),
            LlmError::Schema(e) => Some(e),
            LlmError::Api(e) => Some(e),
        }
    }
}

impl Classify for LlmError {
    fn class(&self) -> ErrorClass {
        match self {
            LlmError::Http(e) => e.class(),
            LlmError::Timeout(_) => ErrorClass::Timeout,
            LlmError::Schema(_) => ErrorClass::Schema,
            LlmError::Api(e) => e.class(),
        }
    }
}

/// What the simulated API does to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    RateLimited {
        retry_after_s: u64,
    },
    Overloaded,
    Timeout,
    /// Prose where JSON was asked for.
    Malformed,
}

/// FNV-1a with a finalizer: stable across processes and builds, unlike std's randomly seeded hasher.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // FNV mixes its last bytes poorly into the high bits; a splitmix64 finalizer spreads them,
    // so keys that differ in one digit roll independent dice.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

fn unit_interval(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

const WORDS: &[&str] = &[
    "durable",
    "journal",
    "replay",
    "latency",
    "throughput",
    "idempotent",
    "retry",
    "budget",
    "commit",
    "fsync",
    "workflow",
    "agent",
    "evidence",
    "trade-off",
    "benchmark",
    "failure",
    "recovery",
    "checkpoint",
    "determinism",
    "queue",
];

impl SimLlm {
    /// Decides what happens to this attempt: with probability `fail_rate`, one of the failures
    /// of a real LLM API, chosen from the step's idempotency key and attempt.
    fn fault(&self, key: &str, attempt: u32, wants_json: bool) -> Fault {
        let attempt = attempt.to_string();
        if unit_interval(stable_hash(&[key, &attempt])) >= self.fail_rate {
            return Fault::None;
        }
        match stable_hash(&[key, &attempt, "fault"]) % 20 {
            0..=5 => Fault::Overloaded,
            6..=10 => Fault::RateLimited {
                retry_after_s: 1 + stable_hash(&[key, &attempt, "wait"]) % 2,
            },
            11..=14 => Fault::Timeout,
            _ if wants_json => Fault::Malformed,
            _ => Fault::Overloaded,
        }
    }

    /// Completes `prompt` with `words` words. Inside a step, what goes wrong depends on the
    /// step's idempotency key and attempt, and the tokens used are reported to the step (the
    /// engine's pricing table turns them into dollars). A prompt that contains "JSON" gets a
    /// JSON array of strings, unless the simulated model slips into prose.
    pub async fn complete(&self, prompt: &str, words: usize) -> Result<Completion, LlmError> {
        let step = StepContext::current();
        let (key, attempt) = step
            .as_ref()
            .map(|s| (s.idempotency_key().to_owned(), s.attempt()))
            .unwrap_or_else(|| (prompt.to_owned(), 1));
        let wants_json = prompt.contains("JSON");
        let fault = self.fault(&key, attempt, wants_json);
        let jitter = 0.5 + unit_interval(stable_hash(&[prompt, "latency", &attempt.to_string()]));
        tokio::time::sleep(self.latency.mul_f64(jitter)).await;

        let input_tokens = (prompt.split_whitespace().count() as u64 * 4).div_ceil(3) + 20;
        let report = |usage: Usage| {
            if let Some(step) = &step {
                step.report_usage(usage);
            }
        };
        match fault {
            Fault::Overloaded => {
                return Err(LlmError::Http(HttpError::new(
                    503,
                    None,
                    "the model is overloaded (simulated)",
                )));
            }
            Fault::RateLimited { retry_after_s } => {
                return Err(LlmError::Http(HttpError::new(
                    429,
                    Some(&retry_after_s.to_string()),
                    "rate limit reached (simulated)",
                )));
            }
            Fault::Timeout => {
                // The request was billed for its input even though no answer came back.
                report(usage(input_tokens, 0));
                return Err(LlmError::Timeout(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within the deadline (simulated)",
                )));
            }
            Fault::None | Fault::Malformed => {}
        }
        let mut text = Vec::with_capacity(words);
        let mut seed = stable_hash(&[prompt]);
        for _ in 0..words {
            text.push(WORDS[(seed % WORDS.len() as u64) as usize]);
            seed = seed.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
        }
        let text = match (wants_json, fault) {
            (true, Fault::Malformed) => format!("Sure! Here is what I found: {}", text.join(" ")),
            (true, _) => serde_json::to_string(&text).unwrap_or_default(),
            (false, _) => text.join(" "),
        };
        let output_tokens = (words as u64 * 4).div_ceil(3);
        let usage = usage(input_tokens, output_tokens);
        report(usage.clone());
        Ok(Completion { text, usage })
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    // Tokens only: the engine's pricing table (3 and 15 USD per million) sets the cost.
    Usage::tokens(MODEL, input_tokens, output_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn same_prompt_same_text_and_usage() {
        let llm = SimLlm {
            latency: Duration::from_millis(100),
            fail_rate: 0.0,
        };
        let a = llm
            .complete("what is durable execution?", 12)
            .await
            .unwrap();
        let b = llm
            .complete("what is durable execution?", 12)
            .await
            .unwrap();
        let c = llm.complete("something else", 12).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a.text, c.text);
        assert_eq!(a.text.split(' ').count(), 12);
        assert!(a.usage.input_tokens > 0 && a.usage.output_tokens == 16);
    }

    #[tokio::test(start_paused = true)]
    async fn fail_rate_one_always_fails_and_zero_never() {
        let failing = SimLlm {
            latency: Duration::ZERO,
            fail_rate: 1.0,
        };
        // Without a JSON request every fault is an error...
        assert!(failing.complete("plain prose please", 3).await.is_err());
        // ...with one, the model may also answer prose instead of the JSON asked for.
        match failing.complete("give me JSON", 3).await {
            Err(_) => {}
            Ok(answer) => assert!(serde_json::from_str::<Vec<String>>(&answer.text).is_err()),
        }
        let healthy = SimLlm {
            latency: Duration::ZERO,
            fail_rate: 0.0,
        };
        assert!(healthy.complete("p", 3).await.is_ok());
    }
}
