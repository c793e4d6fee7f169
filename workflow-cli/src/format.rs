//! How numbers read in tables and on the timeline: durations, ages, dollars, run summaries.

use std::time::{SystemTime, UNIX_EPOCH};

use workflow_runtime::{RunRecord, StepRecord};

/// The wall clock, in microseconds since the Unix epoch (the journal's unit).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A duration given in microseconds, to about three significant digits: `850µs`, `2.5ms`,
/// `120ms`, `1.25s`, `2m05s`, `1h02m`, `3d04h`.
pub(crate) fn duration_us(us: u64) -> String {
    let ms = us as f64 / 1e3;
    let s = us as f64 / 1e6;
    let whole_s = us / 1_000_000;
    match us {
        0 => "0s".to_owned(),
        1..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{ms:.1}ms"),
        10_000..1_000_000 => format!("{ms:.0}ms"),
        1_000_000..10_000_000 => format!("{s:.2}s"),
        10_000_000..60_000_000 => format!("{s:.1}s"),
        60_000_000..3_600_000_000 => format!("{}m{:02}s", whole_s / 60, whole_s % 60),
        3_600_000_000..86_400_000_000 => format!("{}h{:02}m", whole_s / 3600, whole_s / 60 % 60),
        _ => format!("{}d{:02}h", whole_s / 86_400, whole_s / 3600 % 24),
    }
}

/// How long ago `at_us` was, coarsely: `12s`, `5m`, `3h`, `2d`.
pub(crate) fn age(at_us: u64, now_us: u64) -> String {
    let s = now_us.saturating_sub(at_us) / 1_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A time in microseconds since the Unix epoch, as RFC 3339 UTC to the second.
pub(crate) fn timestamp(at_us: u64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_micros(at_us);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Dollars, to the millionth (model calls cost fractions of a cent).
pub(crate) fn usd(cost: f64) -> String {
    format!("${cost:.6}")
}

/// What a run's journal adds up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    /// Journaled steps.
    pub(crate) steps: u64,
    /// Attempts beyond the first, over all steps.
    pub(crate) retries: u64,
    /// Input tokens.
    pub(crate) input_tokens: u64,
    /// Output tokens.
    pub(crate) output_tokens: u64,
    /// US dollars.
    pub(crate) cost_usd: f64,
}

impl Totals {
    /// Sums a run's steps. Timers, event waits and the other records of durable primitives
    /// are in the journal too, but they are not steps (see [`StepRecord::is_step`]).
    pub(crate) fn of(steps: &[StepRecord]) -> Totals {
        let mut totals = Totals::default();
        for step in steps {
            totals.steps += u64::from(step.is_step());
            totals.retries += u64::from(step.attempts.saturating_sub(1));
            totals.input_tokens += step.usage.input_tokens;
            totals.output_tokens += step.usage.output_tokens;
            totals.cost_usd += step.usage.cost_usd;
        }
        totals
    }

    /// Input plus output tokens.
    pub(crate) fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// When a run's journal says it ended (or last moved): the later of its record's last change
/// and its last step's end.
pub(crate) fn last_activity_us(run: &RunRecord, steps: &[StepRecord]) -> u64 {
    steps
        .iter()
        .flat_map(|s| {
            let waits = s
                .attempt_log
                .iter()
                .map(|a| a.finished_at_us.saturating_add(a.wait_after_us));
            waits.chain([s.finished_at_us])
        })
        .chain([run.updated_at_us, run.created_at_us])
        .max()
        .unwrap_or(run.created_at_us)
}

/// The run's tags as `k=v, k=v`, or `-`.
pub(crate) fn tags(run: &RunRecord) -> String {
    if run.tags.is_empty() {
        return "-".into();
    }
    run.tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_about_three_digits() {
        assert_eq!(duration_us(0), "0s");
        assert_eq!(duration_us(850), "850µs");
        assert_eq!(duration_us(2_500), "2.5ms");
        assert_eq!(duration_us(120_400), "120ms");
        assert_eq!(duration_us(1_250_000), "1.25s");
        assert_eq!(duration_us(42_000_000), "42.0s");
        assert_eq!(duration_us(125_000_000), "2m05s");
        assert_eq!(duration_us(3_720_000_000), "1h02m");
        assert_eq!(duration_us(100_800_000_000), "1d04h");
    }

    #[test]
    fn ages_are_coarse() {
        let now = 10_000_000_000;
        assert_eq!(age(now - 3_000_000, now), "3s");
        assert_eq!(age(now - 300_000_000, now), "5m");
        assert_eq!(age(now + 1, now), "0s");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }
}
