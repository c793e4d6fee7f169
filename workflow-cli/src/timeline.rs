//! `wf show --html`: one self-contained HTML page drawing a run as a timeline.
//!
//! The page loads nothing (inline CSS, absolutely positioned divs, system fonts, no script), so
//! it opens from a file, a mail attachment or a CI artifact alike. Each step is a row; each of
//! its attempts is a bar placed and sized in proportion to time, and each wait between two
//! attempts (the retry's backoff) is a hatched bar with its length written under it. The
//! elements carry stable classes and data attributes for tests and for anyone scripting the
//! page:
//!
//! | element | class | data attributes |
//! | --- | --- | --- |
//! | the run's header | `run-header` | `data-run-id`, `data-workflow`, `data-status` |
//! | its total cost | `total-cost` | `data-cost-usd` |
//! | a step's row | `step` | `data-seq`, `data-name`, `data-status`, `data-attempts` |
//! | an attempt | `attempt` (with `ok` or `failed`) | `data-seq`, `data-attempt`, `data-duration-us` |
//! | a wait before a retry | `wait` | `data-seq`, `data-after-attempt`, `data-wait-us` |
//! | a step's tokens | `tokens` | `data-seq`, `data-tokens` |
//! | a step's cost | `cost` | `data-seq`, `data-cost-usd` |
//! | a resume of the run | `resumed` | `data-at-us` |

use std::fmt::Write as _;

use workflow_runtime::{RunRecord, StepErrorKind, StepRecord, StepStatus};

use crate::format::{Totals, duration_us, last_activity_us, tags, timestamp, usd};

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The serde name of a journaled enum value: `completed`, `rate_limited`.
pub(crate) fn snake(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One bar of a step's row, in microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    start_us: u64,
    end_us: u64,
    kind: BarKind,
}

#[derive(Debug, Clone, PartialEq)]
enum BarKind {
    /// An attempt: its number (or `1-N` for a step journaled without its attempt log) and its
    /// error, if it failed.
    Attempt {
        number: String,
        failed: bool,
        error: Option<String>,
    },
    /// The wait after attempt `after` before the next one, as journaled.
    Wait { after: u32, wait_us: u64 },
}

/// The attempts and waits of a step, from its attempt log when it has one, else from its start
/// and finish.
fn bars(step: &StepRecord) -> Vec<Bar> {
    if step.attempt_log.is_empty() {
        let number = if step.attempts > 1 {
            format!("1-{}", step.attempts)
        } else {
            "1".to_owned()
        };
        let failed = step.status == StepStatus::Failed;
        return vec![Bar {
            start_us: step.started_at_us,
            end_us: step.finished_at_us.max(step.started_at_us),
            kind: BarKind::Attempt {
                number,
                failed,
                error: step.error.as_ref().map(error_text),
            },
        }];
    }
    let mut bars = Vec::new();
    let log = &step.attempt_log;
    for (i, attempt) in log.iter().enumerate() {
        let end_us = attempt.finished_at_us.max(attempt.started_at_us);
        bars.push(Bar {
            start_us: attempt.started_at_us,
            end_us,
            kind: BarKind::Attempt {
                number: attempt.attempt.to_string(),
                failed: attempt.error.is_some(),
                error: attempt.error.as_ref().map(error_text),
            },
        });
        // A wait follows every attempt that another one follows (a retry), even a zero one.
        let next_start = log.get(i + 1).map(|next| next.started_at_us);
        if next_start.is_some() || attempt.wait_after_us > 0 {
            let planned_end = end_us.saturating_add(attempt.wait_after_us);
            let wait_end = next_start.unwrap_or(planned_end).max(end_us);
            bars.push(Bar {
                start_us: end_us,
                end_us: wait_end,
                kind: BarKind::Wait {
                    after: attempt.attempt,
                    wait_us: attempt.wait_after_us,
                },
            });
        }
    }
    bars
}

fn error_text(error: &workflow_runtime::StepError) -> String {
    format!("{}: {}", snake(&error.kind), error.message)
}

/// How a step ended, as its row shows it: a cancelled step is journaled as failed with a
/// `cancelled` error.
fn step_status(step: &StepRecord) -> String {
    match (&step.status, &step.error) {
        (StepStatus::Failed, Some(e)) if e.kind == StepErrorKind::Cancelled => "cancelled".into(),
        (status, _) => snake(status),
    }
}

/// A "nice" tick interval (1, 2 or 5 times a power of ten microseconds) giving at most
/// `max_ticks` ticks over `span_us`.
fn tick_interval(span_us: u64, max_ticks: u64) -> u64 {
    let raw = span_us.div_ceil(max_ticks.max(1)).max(1);
    let mut magnitude = 1u64;
    loop {
        for factor in [1, 2, 5] {
            let step = magnitude.saturating_mul(factor);
            if step >= raw {
                return step;
            }
        }
        if magnitude > u64::MAX / 10 {
            return u64::MAX;
        }
        magnitude *= 10;
    }
}

/// The width the track is assumed to have when deciding whether a label fits inside a bar.
const TRACK_PX: f64 = 560.0;
/// The width of a character of the bar labels, roughly.
const CHAR_PX: f64 = 7.0;

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 24px; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; font-weight: 600; }
h1 .run-id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 8px; margin-bottom: 10px; }
.fact { border: 1px solid #d0d7de; border-radius: 12px; padding: 1px 10px; background: #f6f8fa; white-space: nowrap; }
.fact b { font-weight: 600; }
.status { color: #fff; border-color: transparent; font-weight: 600; }
.status-completed { background: #2f9e44; }
.status-failed, .status-budget_exceeded { background: #d9480f; }
.status-cancelled { background: #868e96; }
.status-parked, .status-waiting, .status-pending, .status-running { background: #1971c2; }
.total-cost { background: #fff4e6; border-color: #ffc078; font-weight: 600; }
.run-error { color: #c92a2a; margin: 0 0 10px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: pre-wrap; }
.timeline { border: 1px solid #d0d7de; border-radius: 6px; overflow: hidden; }
.row { display: grid; grid-template-columns: 270px 1fr 190px; border-top: 1px solid #eaeef2; }
.row:first-child { border-top: 0; }
.row > div { padding: 0 10px; }
.axis { background: #f6f8fa; height: 28px; font-size: 11px; color: #57606a; }
.axis .label, .axis .stats { line-height: 28px; font-weight: 600; }
.label { overflow: hidden; padding-top: 6px !important; }
.label .seq { color: #57606a; font-family: ui-monospace, "DejaVu Sans Mono", monospace; margin-right: 4px; }
.label .name { font-weight: 600; }
.label .sub { font-size: 11px; color: #57606a; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.label .sub.err { color: #c92a2a; }
.track { position: relative; height: 46px; margin: 0 14px; padding: 0 !important; }
.axis .track { height: 28px; }
.grid { position: absolute; top: 0; bottom: 0; width: 0; border-left: 1px solid #eaeef2; }
.tick { position: absolute; top: 6px; transform: translateX(-50%); white-space: nowrap; }
.tick.first { transform: none; }
.span { position: absolute; top: 18px; height: 2px; background: #adb5bd; }
.attempt { position: absolute; top: 9px; height: 20px; min-width: 3px; border-radius: 3px; color: #fff; font-size: 11px; line-height: 20px; padding: 0 4px; white-space: nowrap; overflow: hidden; }
.attempt.ok { background: #2f9e44; }
.attempt.failed { background: #e03131; }
.attempt.cancelled { background: #868e96; }
.attempt.started { background: #f59f00; }
.wait { position: absolute; top: 13px; height: 12px; min-width: 2px; border: 1px solid #e8a200; border-radius: 2px; background: repeating-linear-gradient(135deg, #ffe066 0 3px, #fff9db 3px 6px); }
.wait-label { position: absolute; top: 13px; left: 0; font-size: 10px; color: #8a6100; white-space: nowrap; }
.resumed { position: absolute; top: 0; bottom: 0; width: 0; border-left: 2px dashed #1971c2; }
.resumed-label { position: absolute; top: 6px; left: 3px; font-size: 10px; color: #1971c2; white-space: nowrap; font-weight: 600; }
.stats { text-align: right; padding-top: 6px !important; font-variant-numeric: tabular-nums; }
.stats .cost { font-weight: 600; display: block; }
.stats .tokens { font-size: 11px; color: #57606a; }
.run-row .track { height: 34px; }
.run-bar { position: absolute; top: 9px; height: 16px; min-width: 3px; border-radius: 3px; opacity: 0.85; color: #fff; font-size: 11px; line-height: 16px; padding: 0 6px; white-space: nowrap; overflow: hidden; }
.legend { display: flex; gap: 18px; margin: 10px 0; font-size: 12px; color: #57606a; align-items: center; flex-wrap: wrap; }
.swatch { display: inline-block; width: 22px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 5px; }
details { margin-top: 8px; }
summary { cursor: pointer; color: #57606a; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; white-space: pre-wrap; word-break: break-word; font-size: 12px; max-height: 320px; overflow: auto; }
"#;

/// The page of `run` with its journaled `steps`.
pub(crate) fn render(run: &RunRecord, steps: &[StepRecord]) -> String {
    let totals = Totals::of(steps);
    let t0 = steps
        .iter()
        .flat_map(|s| {
            s.attempt_log
                .iter()
                .map(|a| a.started_at_us)
                .chain([s.started_at_us])
        })
        .chain([run.created_at_us])
        .min()
        .unwrap_or(run.created_at_us);
    let t_end = last_activity_us(run, steps).max(t0);
    let span = (t_end - t0).max(1);
    let pct = |t: u64| (t.saturating_sub(t0)) as f64 / span as f64 * 100.0;
    let width_pct = |from: u64, to: u64| to.saturating_sub(from) as f64 / span as f64 * 100.0;
    let tick = tick_interval(span, 8);
    let ticks: Vec<u64> = (0..=span / tick).map(|i| i * tick).collect();
    let grid: String = ticks
        .iter()
        .map(|t| {
            format!(
                r#"<div class="grid" style="left:{:.3}%"></div>"#,
                *t as f64 / span as f64 * 100.0
            )
        })
        .collect();
    let resumes: String = run
        .resumed_at_us
        .iter()
        .map(|&at| {
            format!(
                r#"<div class="resumed" data-at-us="{at}" style="left:{:.3}%"></div>"#,
                pct(at)
            )
        })
        .collect();

    let mut html = String::new();
    let title = format!("run {} · {}", run.run_id, run.workflow);
    let status = run.status.as_str();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<header class="run-header" data-run-id="{id}" data-workflow="{workflow}" data-status="{status}">
<h1>run <span class="run-id">{id}</span></h1>
<div class="facts">
<span class="fact">workflow <b>{workflow}</b></span>
<span class="fact status status-{status}">{status}</span>
<span class="fact total-cost" data-cost-usd="{cost}">total {cost_text}</span>
<span class="fact">{tokens} tokens ({input} in, {output} out)</span>
<span class="fact">{steps}, {retries}</span>
<span class="fact">{duration}</span>
<span class="fact">created {created}</span>
"#,
        title = escape(&title),
        id = escape(&run.run_id),
        workflow = escape(&run.workflow),
        cost = totals.cost_usd,
        cost_text = usd(totals.cost_usd),
        tokens = totals.tokens(),
        input = totals.input_tokens,
        output = totals.output_tokens,
        steps = plural(totals.steps, "step", "steps"),
        retries = plural(totals.retries, "retry", "retries"),
        duration = duration_us(t_end - t0),
        created = timestamp(run.created_at_us),
    );
    if !run.tags.is_empty() {
        let _ = writeln!(
            html,
            r#"<span class="fact">tags {}</span>"#,
            escape(&tags(run))
        );
    }
    if !run.resumed_at_us.is_empty() {
        let _ = writeln!(
            html,
            r#"<span class="fact">resumed {} times</span>"#,
            run.resumed_at_us.len()
        );
    }
    html.push_str("</div>\n");
    if let Some(error) = &run.error {
        let _ = writeln!(html, r#"<div class="run-error">{}</div>"#, escape(error));
    }
    html.push_str("</header>\n<section class=\"timeline\">\n");

    // The axis.
    let tick_labels: String = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let label = if *t == 0 {
                "0".to_owned()
            } else {
                duration_us(*t)
            };
            let first = if i == 0 { " first" } else { "" };
            format!(
                r#"<div class="tick{first}" style="left:{:.3}%">{label}</div>"#,
                *t as f64 / span as f64 * 100.0
            )
        })
        .collect();
    let resume_labels: String = run
        .resumed_at_us
        .iter()
        .map(|&at| {
            format!(
                r#"<div class="resumed" data-at-us="{at}" style="left:{:.3}%"><span class="resumed-label">resumed</span></div>"#,
                pct(at)
            )
        })
        .collect();
    let _ = writeln!(
        html,
        r#"<div class="row axis"><div class="label">step</div><div class="track">{tick_labels}{resume_labels}</div><div class="stats">tokens · cost</div></div>"#
    );

    // The whole run.
    let _ = writeln!(
        html,
        r#"<div class="row run-row"><div class="label"><span class="name">run</span><div class="sub">{status} after {duration}</div></div><div class="track">{grid}{resumes}<div class="run-bar status-{status}" style="left:0%;width:100%">{status}</div></div><div class="stats"><span class="cost">{cost}</span><span class="tokens">{tokens} tok</span></div></div>"#,
        duration = duration_us(t_end - t0),
        cost = usd(totals.cost_usd),
        tokens = totals.tokens(),
    );

    for step in steps {
        let status = step_status(step);
        let failures: Vec<&workflow_runtime::StepError> = step
            .attempt_log
            .iter()
            .filter_map(|a| a.error.as_ref())
            .collect();
        let sub = match (&step.error, failures.last()) {
            (Some(error), _) => format!(
                r#"<div class="sub err" title="{full}">{status} · {attempts} · {short}</div>"#,
                full = escape(&error_text(error)),
                attempts = plural(step.attempts, "attempt", "attempts"),
                short = escape(&crate::table::clip(&error_text(error), 60)),
            ),
            (None, Some(_)) => {
                // The kinds of the failed attempts, in order and without repeats: `timeout, server`.
                let mut kinds: Vec<String> = Vec::new();
                for failure in &failures {
                    let kind = snake(&failure.kind);
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                let full: Vec<String> = failures.iter().map(|e| error_text(e)).collect();
                format!(
                    r#"<div class="sub" title="{full}">{status} · {attempts} · {kinds}</div>"#,
                    full = escape(&full.join("\n")),
                    attempts = plural(step.attempts, "attempt", "attempts"),
                    kinds = escape(&kinds.join(", ")),
                )
            }
            (None, None) => format!(
                r#"<div class="sub">{status} · {attempts} · {latency}</div>"#,
                attempts = plural(step.attempts, "attempt", "attempts"),
                latency = duration_us(step.finished_at_us.saturating_sub(step.started_at_us)),
            ),
        };
        let _ = write!(
            html,
            r#"<div class="row step" data-seq="{seq}" data-name="{name}" data-status="{status}" data-attempts="{attempts}"><div class="label" title="{name}"><span class="seq">#{seq}</span><span class="name">{name}</span>{sub}</div><div class="track">{grid}{resumes}"#,
            seq = step.seq,
            name = escape(&step.name),
            attempts = step.attempts,
        );
        let _ = write!(
            html,
            r#"<div class="span" style="left:{:.3}%;width:{:.3}%"></div>"#,
            pct(step.started_at_us),
            width_pct(step.started_at_us, step.finished_at_us)
        );
        for bar in bars(step) {
            let left = pct(bar.start_us);
            let width = width_pct(bar.start_us, bar.end_us);
            let duration = bar.end_us - bar.start_us;
            match bar.kind {
                BarKind::Attempt {
                    number,
                    failed,
                    error,
                } => {
                    let class = match (failed, status.as_str()) {
                        (true, "cancelled") => "failed cancelled",
                        (true, _) => "failed",
                        (false, "started") => "started",
                        (false, _) => "ok",
                    };
                    let label = format!("#{number} {}", duration_us(duration));
                    let fits = width / 100.0 * TRACK_PX >= label.len() as f64 * CHAR_PX + 8.0;
                    let title = match &error {
                        Some(error) => {
                            format!("attempt {number}: {} · {error}", duration_us(duration))
                        }
                        None => format!("attempt {number}: {}", duration_us(duration)),
                    };
                    let _ = write!(
                        html,
                        r#"<div class="attempt {class}" data-seq="{seq}" data-attempt="{number}" data-duration-us="{duration}" style="left:{left:.3}%;width:{width:.3}%" title="{title}">{label}</div>"#,
                        seq = step.seq,
                        title = escape(&title),
                        label = if fits { escape(&label) } else { String::new() },
                    );
                }
                BarKind::Wait { after, wait_us } => {
                    let _ = write!(
                        html,
                        r#"<div class="wait" data-seq="{seq}" data-after-attempt="{after}" data-wait-us="{wait_us}" style="left:{left:.3}%;width:{width:.3}%" title="waited {waited} before attempt {next}"><span class="wait-label">wait {wait}</span></div>"#,
                        seq = step.seq,
                        waited = duration_us(duration),
                        next = after + 1,
                        wait = duration_us(wait_us),
                    );
                }
            }
        }
        let tokens = step.usage.input_tokens + step.usage.output_tokens;
        let model = step
            .usage
            .model
            .as_deref()
            .map(|m| format!("model {}", escape(m)))
            .unwrap_or_default();
        let _ = writeln!(
            html,
            r#"</div><div class="stats" title="{model}"><span class="cost" data-seq="{seq}" data-cost-usd="{cost}">{cost_text}</span><span class="tokens" data-seq="{seq}" data-tokens="{tokens}">{tokens} tok ({input} in, {output} out)</span></div></div>"#,
            seq = step.seq,
            cost = step.usage.cost_usd,
            cost_text = usd(step.usage.cost_usd),
            input = step.usage.input_tokens,
            output = step.usage.output_tokens,
        );
    }
    if steps.is_empty() {
        html.push_str(
            r#"<div class="row"><div class="label"><div class="sub">no step journaled yet</div></div><div class="track"></div><div class="stats"></div></div>"#,
        );
        html.push('\n');
    }
    html.push_str("</section>\n");
    html.push_str(concat!(
        r#"<div class="legend">"#,
        r#"<span><span class="swatch" style="background:#2f9e44"></span>attempt that succeeded</span>"#,
        r#"<span><span class="swatch" style="background:#e03131"></span>failed attempt</span>"#,
        r#"<span><span class="swatch" style="background:repeating-linear-gradient(135deg,#ffe066 0 3px,#fff9db 3px 6px);border:1px solid #e8a200"></span>wait before a retry (backoff)</span>"#,
        r#"<span><span class="swatch" style="border-left:2px dashed #1971c2;width:2px;border-radius:0"></span>resumed by a new process</span>"#,
        r#"<span>bars are proportional to time; hover for details</span>"#,
        "</div>\n"
    ));
    let _ = writeln!(
        html,
        "<details><summary>input</summary><pre class=\"input\">{}</pre></details>",
        escape(&crate::table::clip(&pretty(run.input.get()), 20_000))
    );
    if let Some(output) = &run.output {
        let _ = writeln!(
            html,
            "<details><summary>output</summary><pre class=\"output\">{}</pre></details>",
            escape(&crate::table::clip(&pretty(output.get()), 20_000))
        );
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// `1 attempt`, `3 attempts`: `n` with the singular `one` or the plural `many`.
pub(crate) fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// A JSON value for reading: a string as its text, anything else indented.
pub(crate) fn pretty(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| json.to_owned()),
        Err(_) => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use workflow_runtime::{AttemptRecord, StepError, Usage};

    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    fn retried_step() -> StepRecord {
        let mut step = StepRecord::completed(0, "charge <card>", raw("1"));
        step.attempts = 3;
        step.started_at_us = 1_000_000;
        step.finished_at_us = 1_300_000;
        step.usage = Usage::tokens("m", 100, 20).with_cost_usd(0.0012);
        let error = StepError {
            step: "charge <card>".into(),
            kind: StepErrorKind::Transient,
            message: "declined & retried".into(),
            attempts: 1,
        };
        step.attempt_log = vec![
            AttemptRecord {
                attempt: 1,
                started_at_us: 1_000_000,
                finished_at_us: 1_050_000,
                error: Some(error.clone()),
                wait_after_us: 50_000,
            },
            AttemptRecord {
                attempt: 2,
                started_at_us: 1_100_000,
                finished_at_us: 1_150_000,
                error: Some(error),
                wait_after_us: 0,
            },
            AttemptRecord {
                attempt: 3,
                started_at_us: 1_150_000,
                finished_at_us: 1_300_000,
                error: None,
                wait_after_us: 0,
            },
        ];
        step
    }

    #[test]
    fn every_retry_gets_a_wait_even_a_zero_one() {
        let bars = bars(&retried_step());
        let waits: Vec<_> = bars
            .iter()
            .filter_map(|b| match b.kind {
                BarKind::Wait { after, wait_us } => Some((after, wait_us, b.start_us, b.end_us)),
                _ => None,
            })
            .collect();
        assert_eq!(
            waits,
            vec![
                (1, 50_000, 1_050_000, 1_100_000),
                (2, 0, 1_150_000, 1_150_000)
            ]
        );
        assert_eq!(bars.len(), 5);
    }

    #[test]
    fn a_step_without_attempt_log_is_one_bar() {
        let step = StepRecord::completed(4, "plan", raw("[]"));
        let bars = bars(&step);
        assert_eq!(bars.len(), 1);
        assert!(
            matches!(&bars[0].kind, BarKind::Attempt { number, failed: false, .. } if number == "1")
        );
    }

    #[test]
    fn the_page_escapes_user_text_and_loads_nothing() {
        let mut run = RunRecord::new(
            "run <1>",
            "order",
            0,
            raw(r#"["<script>alert(1)</script>"]"#),
        );
        run.created_at_us = 900_000;
        run.updated_at_us = 1_400_000;
        let html = render(&run, &[retried_step()]);
        assert!(!html.contains("<script"), "user text must be escaped");
        assert!(html.contains("run &lt;1&gt;"));
        assert!(html.contains("charge &lt;card&gt;"));
        for external in ["src=", "href=", "<link", "@import", "url("] {
            assert!(
                !html.contains(external),
                "the page must load nothing: {external}"
            );
        }
        assert_eq!(html.matches(r#"class="attempt "#).count(), 3);
        assert_eq!(html.matches(r#"class="wait""#).count(), 2);
        assert!(html.contains(r#"data-cost-usd="0.0012""#));
    }

    #[test]
    fn ticks_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(tick_interval(1_000_000, 8), 200_000);
        assert_eq!(tick_interval(7, 8), 1);
        assert_eq!(tick_interval(3_600_000_000, 8), 500_000_000);
    }
}
