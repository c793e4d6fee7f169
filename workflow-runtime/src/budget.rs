//! Budgets: caps on steps, tokens and cost that a crash cannot reset.
//!
//! What each step spent is journaled in its [`StepRecord`](crate::StepRecord); a resumed run
//! sums the journal before its first step, so the totals survive any number of crashes.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The limits of a run. `None` means unlimited.
///
/// ```
/// use workflow_runtime::Budget;
/// const AGENT: Budget = Budget::UNLIMITED.with_max_steps(50).with_max_cost_usd(2.0);
/// assert_eq!(AGENT.max_steps, Some(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Budget {
    /// The most steps the run may execute (journaled steps count; replayed ones are not
    /// counted twice).
    pub max_steps: Option<u64>,
    /// The most the run may spend, in US dollars, as reported by its steps.
    pub max_cost_usd: Option<f64>,
    /// The most tokens (input plus output) the run may use, as reported by its steps.
    pub max_tokens: Option<u64>,
    /// The longest the run may take, from its start (wall clock, so a crash does not reset it).
    #[serde(default)]
    pub max_duration: Option<Duration>,
    /// The most steps of the run in flight at once (a fan-out width cap); more wait their turn.
    #[serde(default)]
    pub max_in_flight_steps: Option<u32>,
}

impl Budget {
    /// No limits.
    pub const UNLIMITED: Budget = Budget {
        max_steps: None,
        max_cost_usd: None,
        max_tokens: None,
        max_duration: None,
        max_in_flight_steps: None,
    };

    /// This budget with a step cap.
    pub const fn with_max_steps(mut self, steps: u64) -> Budget {
        self.max_steps = Some(steps);
        self
    }

    /// This budget with a cost cap in US dollars.
    pub const fn with_max_cost_usd(mut self, usd: f64) -> Budget {
        self.max_cost_usd = Some(usd);
        self
    }

    /// This budget with a token cap.
    pub const fn with_max_tokens(mut self, tokens: u64) -> Budget {
        self.max_tokens = Some(tokens);
        self
    }

    /// This budget with a cap on the run's duration.
    pub const fn with_max_duration(mut self, duration: Duration) -> Budget {
        self.max_duration = Some(duration);
        self
    }

    /// This budget with a cap on the steps in flight at once.
    pub const fn with_max_in_flight_steps(mut self, steps: u32) -> Budget {
        self.max_in_flight_steps = Some(steps);
        self
    }

    /// Whether a run that has spent `spent` may start another step; if not, the message says
    /// which budget, its limit and the amount spent.
    pub(crate) fn check_before_step(&self, spent: &Spent) -> Result<(), BudgetExhausted> {
        if let Some(limit) = self.max_duration
            && spent.elapsed >= limit
        {
            return Err(BudgetExhausted::Duration {
                limit,
                spent: spent.elapsed,
            });
        }
        if let Some(limit) = self.max_steps
            && spent.steps >= limit
        {
            return Err(BudgetExhausted::Steps {
                limit,
                spent: spent.steps,
            });
        }
        if let Some(limit) = self.max_cost_usd
            && spent.cost_usd >= limit
        {
            return Err(BudgetExhausted::CostUsd {
                limit,
                spent: spent.cost_usd,
            });
        }
        if let Some(limit) = self.max_tokens
            && spent.tokens >= limit
        {
            return Err(BudgetExhausted::Tokens {
                limit,
                spent: spent.tokens,
            });
        }
        Ok(())
    }
}

/// Which budget a run exhausted: its limit, and what the run had spent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "budget", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetExhausted {
    /// `max_steps`.
    Steps {
        /// The limit.
        limit: u64,
        /// Steps executed.
        spent: u64,
    },
    /// `max_cost_usd`.
    CostUsd {
        /// The limit, in US dollars.
        limit: f64,
        /// Dollars spent.
        spent: f64,
    },
    /// `max_tokens`.
    Tokens {
        /// The limit.
        limit: u64,
        /// Tokens used.
        spent: u64,
    },
    /// `max_duration`.
    Duration {
        /// The limit.
        limit: Duration,
        /// How long the run has taken.
        spent: Duration,
    },
}

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetExhausted::Duration { limit, spent } => write!(
                f,
                "budget exceeded: max_duration = {limit:?}, the run has taken {spent:.1?}"
            ),
            BudgetExhausted::Steps { limit, spent } => write!(
                f,
                "budget exceeded: max_steps = {limit}, {spent} steps executed"
            ),
            BudgetExhausted::CostUsd { limit, spent } => write!(
                f,
                "budget exceeded: max_cost_usd = {limit:.4}, spent {spent:.4} USD"
            ),
            BudgetExhausted::Tokens { limit, spent } => write!(
                f,
                "budget exceeded: max_tokens = {limit}, used {spent} tokens"
            ),
        }
    }
}

/// What a step reports it spent, summed over its attempts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output (completion) tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// The model that was called, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Usage {
    /// Usage of a model call.
    pub fn tokens(model: impl Into<String>, input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
            cost_usd: 0.0,
            model: Some(model.into()),
        }
    }

    /// This usage with a cost in US dollars.
    pub fn with_cost_usd(mut self, usd: f64) -> Usage {
        self.cost_usd = usd;
        self
    }

    /// True when nothing was spent (the journal then leaves the usage out).
    pub fn is_zero(&self) -> bool {
        self.input_tokens == 0
            && self.output_tokens == 0
            && self.cost_usd == 0.0
            && self.model.is_none()
    }

    /// Input plus output tokens, saturating at `u64::MAX` (a step reports what it likes).
    pub(crate) fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Adds `other` to this usage. Token counts saturate at `u64::MAX`: a budget read from
    /// them is then exceeded, never wrapped back to a small number, and nothing panics.
    pub(crate) fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
        if other.model.is_some() {
            self.model.clone_from(&other.model);
        }
    }
}

/// Prices of models, per million tokens, that turn reported token counts into US dollars.
///
/// ```
/// use workflow_runtime::{Pricing, Usage};
/// let mut pricing = Pricing::default();
/// pricing.set("claude-sonnet", 3.0, 15.0);
/// let usage = pricing.price(Usage::tokens("claude-sonnet", 1_000_000, 100_000));
/// assert!((usage.cost_usd - 4.5).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    per_million: HashMap<String, (f64, f64)>,
}

impl Pricing {
    /// Sets a model's price in US dollars per million input and output tokens.
    pub fn set(&mut self, model: impl Into<String>, input_usd: f64, output_usd: f64) {
        self.per_million
            .insert(model.into(), (input_usd, output_usd));
    }

    /// `usage` with its cost computed from its tokens, when it names a priced model and
    /// reports no cost of its own.
    pub fn price(&self, mut usage: Usage) -> Usage {
        if usage.cost_usd == 0.0
            && let Some((input, output)) = usage
                .model
                .as_deref()
                .and_then(|model| self.per_million.get(model))
        {
            usage.cost_usd =
                (usage.input_tokens as f64 * input + usage.output_tokens as f64 * output) / 1e6;
        }
        usage
    }
}

/// What a run has spent so far: journaled steps plus steps run in this process. Counts
/// saturate at `u64::MAX` (see [`Usage::add`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Spent {
    /// Steps executed (each journaled step counts once).
    pub(crate) steps: u64,
    /// Tokens used, input plus output.
    pub(crate) tokens: u64,
    /// Cost in US dollars.
    pub(crate) cost_usd: f64,
    /// Time since the run started.
    pub(crate) elapsed: Duration,
}

impl Spent {
    /// What `self` would be once `usage` (of a step still running) is charged too, without
    /// counting a step.
    pub(crate) fn with_pending(&self, usage: &Usage) -> Spent {
        Spent {
            steps: self.steps,
            tokens: self.tokens.saturating_add(usage.total_tokens()),
            cost_usd: self.cost_usd + usage.cost_usd,
            elapsed: self.elapsed,
        }
    }

    /// Adds what a step's attempts spent, without counting a step.
    pub(crate) fn charge_usage(&mut self, usage: &Usage) {
        self.tokens = self.tokens.saturating_add(usage.total_tokens());
        self.cost_usd += usage.cost_usd;
    }

    pub(crate) fn charge(&mut self, usage: &Usage) {
        self.steps = self.steps.saturating_add(1);
        self.tokens = self.tokens.saturating_add(usage.total_tokens());
        self.cost_usd += usage.cost_usd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_cap_allows_exactly_max_steps() {
        let budget = Budget::UNLIMITED.with_max_steps(2);
        let mut spent = Spent::default();
        assert!(budget.check_before_step(&spent).is_ok());
        spent.charge(&Usage::default());
        assert!(budget.check_before_step(&spent).is_ok());
        spent.charge(&Usage::default());
        let message = budget
            .check_before_step(&spent)
            .expect_err("third step must be refused")
            .to_string();
        assert!(message.contains("max_steps = 2"), "{message}");
    }

    #[test]
    fn cost_cap_names_limit_and_amount() {
        let budget = Budget::UNLIMITED.with_max_cost_usd(0.01);
        let mut spent = Spent::default();
        spent.charge(&Usage::tokens("m", 1000, 1000).with_cost_usd(0.018));
        let message = budget
            .check_before_step(&spent)
            .expect_err("over the cap")
            .to_string();
        assert!(message.contains("max_cost_usd = 0.0100"), "{message}");
        assert!(message.contains("0.0180"), "{message}");
    }

    #[test]
    fn token_cap_counts_input_and_output() {
        let budget = Budget::UNLIMITED.with_max_tokens(100);
        let mut spent = Spent::default();
        spent.charge(&Usage::tokens("m", 60, 30));
        assert!(budget.check_before_step(&spent).is_ok());
        spent.charge(&Usage::tokens("m", 5, 5));
        assert!(budget.check_before_step(&spent).is_err());
    }

    #[test]
    fn token_sums_that_overflow_saturate_instead_of_panicking() {
        let huge = Usage::tokens("m", u64::MAX, u64::MAX);
        assert_eq!(huge.total_tokens(), u64::MAX);

        let mut usage = Usage::tokens("m", u64::MAX - 1, 5);
        usage.add(&Usage::tokens("m", 10, u64::MAX));
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (u64::MAX, u64::MAX)
        );

        let mut spent = Spent {
            steps: u64::MAX,
            ..Spent::default()
        };
        spent.charge(&huge);
        spent.charge_usage(&huge);
        assert_eq!((spent.steps, spent.tokens), (u64::MAX, u64::MAX));
        assert_eq!(spent.with_pending(&huge).tokens, u64::MAX);

        let budget = Budget::UNLIMITED.with_max_tokens(1_000);
        let message = budget
            .check_before_step(&Spent::default().with_pending(&huge))
            .expect_err("a saturated count exceeds any cap")
            .to_string();
        assert!(message.contains("max_tokens = 1000"), "{message}");
    }
}
