//! A simulated LLM: deterministic from its prompt, with latency, token usage, cost, and
//! transient failures decided from the step's idempotency key and attempt number.
//!
//! Because failures depend only on (key, attempt), a run replays the same sequence of failures
//! every time it is run from scratch, and a retried attempt sees a fresh roll of the dice.

use std::fmt;
use std::time::Duration;

use workflow_runtime::{StepContext, Usage};

/// Prices of the simulated model, in US dollars per million tokens.
pub const INPUT_USD_PER_MTOK: f64 = 3.0;
/// Prices of the simulated model, in US dollars per million tokens.
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
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// What the call cost.
    pub usage: Usage,
}

/// A failed call of the simulated model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmError {
    /// The HTTP status the simulated API answered.
    pub status: u16,
    /// Its message.
    pub message: String,
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)
    }
}

impl std::error::Error for LlmError {}

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
    /// Completes `prompt`. Inside a step, the failure roll uses the step's idempotency key and
    /// attempt, and the usage is reported to the step.
    pub async fn complete(&self, prompt: &str, words: usize) -> Result<Completion, LlmError> {
        let step = StepContext::current();
        let (key, attempt) = step
            .as_ref()
            .map(|s| (s.idempotency_key().to_owned(), s.attempt()))
            .unwrap_or_else(|| (prompt.to_owned(), 1));
        let roll = stable_hash(&[&key, &attempt.to_string()]);
        let jitter = 0.5 + unit_interval(stable_hash(&[prompt, "latency", &attempt.to_string()]));
        tokio::time::sleep(self.latency.mul_f64(jitter)).await;

        let input_tokens = (prompt.split_whitespace().count() as u64 * 4).div_ceil(3) + 20;
        if unit_interval(roll) < self.fail_rate {
            // The request was billed for its input even though it failed.
            let usage = usage(input_tokens, 0);
            if let Some(step) = &step {
                step.report_usage(usage);
            }
            return Err(LlmError {
                status: 503,
                message: "the model is overloaded (simulated)".into(),
            });
        }
        let mut text = Vec::with_capacity(words);
        let mut seed = stable_hash(&[prompt]);
        for _ in 0..words {
            text.push(WORDS[(seed % WORDS.len() as u64) as usize]);
            seed = seed.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
        }
        let text = text.join(" ");
        let output_tokens = (words as u64 * 4).div_ceil(3);
        let usage = usage(input_tokens, output_tokens);
        if let Some(step) = &step {
            step.report_usage(usage.clone());
        }
        Ok(Completion { text, usage })
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    let cost = input_tokens as f64 * INPUT_USD_PER_MTOK / 1e6
        + output_tokens as f64 * OUTPUT_USD_PER_MTOK / 1e6;
    Usage::tokens(MODEL, input_tokens, output_tokens).with_cost_usd(cost)
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
        assert!(a.usage.cost_usd > 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn fail_rate_one_always_fails_and_zero_never() {
        let failing = SimLlm {
            latency: Duration::ZERO,
            fail_rate: 1.0,
        };
        assert_eq!(failing.complete("p", 3).await.unwrap_err().status, 503);
        let healthy = SimLlm {
            latency: Duration::ZERO,
            fail_rate: 0.0,
        };
        assert!(healthy.complete("p", 3).await.is_ok());
    }
}
