//! The commands: each reads (or steers) through a [`Source`] and returns the text to print.

use std::path::Path;
use std::time::{Duration, SystemTime};

use workflow_runtime::{HistoryEvent, LedgerGroup, RunRecord, RunStatus, StepRecord, StepStatus};

use crate::error::CliError;
use crate::format::{Totals, age, duration_us, last_activity_us, now_us, tags, timestamp, usd};
use crate::source::{Source, Steer};
use crate::table::{Align, Table, clip};
use crate::timeline::{self, plural, pretty, snake};

/// Which runs `wf runs` lists.
#[derive(Debug, Default)]
pub(crate) struct RunFilter {
    /// Only runs with this status.
    pub(crate) status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub(crate) workflow: Option<String>,
    /// Only runs with all these tags.
    pub(crate) tags: Vec<(String, String)>,
}

impl RunFilter {
    fn keeps(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| run.status == s)
            && self.workflow.as_ref().is_none_or(|w| &run.workflow == w)
            && self
                .tags
                .iter()
                .all(|(k, v)| run.tags.get(k).is_some_and(|value| value == v))
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|e| CliError::failure(format!("cannot encode JSON: {e}")))
}

/// `wf runs`: the runs, newest first.
pub(crate) async fn runs(
    source: &Source,
    filter: &RunFilter,
    json: bool,
) -> Result<String, CliError> {
    let mut runs: Vec<RunRecord> = source
        .runs()
        .await?
        .into_iter()
        .filter(|run| filter.keeps(run))
        .collect();
    runs.sort_by(|a, b| {
        b.created_at_us
            .cmp(&a.created_at_us)
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    if json {
        return to_json(&runs);
    }
    let mut table = Table::new(&[
        ("RUN", Align::Left),
        ("WORKFLOW", Align::Left),
        ("STATUS", Align::Left),
        ("STEPS", Align::Right),
        ("RETRIES", Align::Right),
        ("COST", Align::Right),
        ("AGE", Align::Right),
    ]);
    let now = now_us();
    for run in &runs {
        let totals = Totals::of(&source.journal(&run.run_id).await?);
        table.row(vec![
            run.run_id.clone(),
            run.workflow.clone(),
            run.status.to_string(),
            totals.steps.to_string(),
            totals.retries.to_string(),
            usd(totals.cost_usd),
            age(run.created_at_us, now),
        ]);
    }
    // A damaged record is listed as such: the rest of the journal reads, and the user learns
    // which run to look at instead of a listing that fails whole.
    let damaged = source.damaged().await?;
    for (run_id, _) in &damaged {
        let dash = || "-".to_owned();
        table.row(vec![
            run_id.clone(),
            "?".into(),
            "damaged".into(),
            dash(),
            dash(),
            dash(),
            dash(),
        ]);
    }
    if table.is_empty() {
        return Ok(format!("no runs in {} match\n", source.describe()));
    }
    let mut text = table.render();
    for (run_id, error) in &damaged {
        text.push_str(&format!("damaged: {run_id}: {error}\n"));
    }
    Ok(text)
}

/// `wf show`: a run's header, its journal as a table, its input and output; with `history`,
/// its history events too; with `html`, a timeline page written to that file instead.
pub(crate) async fn show(
    source: &Source,
    run_id: &str,
    history: bool,
    json: bool,
    html: Option<&Path>,
) -> Result<String, CliError> {
    let run = source.run(run_id).await?;
    let steps = source.journal(run_id).await?;
    if let Some(path) = html {
        let page = timeline::render(&run, &steps);
        std::fs::write(path, page)
            .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
        let calls = steps.iter().filter(|s| s.is_step());
        let attempts: usize = calls.clone().map(|s| s.attempt_log.len().max(1)).sum();
        return Ok(format!(
            "wrote the timeline of run {} ({} steps, {attempts} attempts) to {}\n",
            run.run_id,
            calls.count(),
            path.display()
        ));
    }
    let events = if history {
        Some(source.history(run_id).await?)
    } else {
        None
    };
    if json {
        let mut value = serde_json::json!({ "run": run, "steps": steps });
        if let Some(events) = &events {
            value["history"] = serde_json::to_value(events)
                .map_err(|e| CliError::failure(format!("cannot encode JSON: {e}")))?;
        }
        return to_json(&value);
    }
    let mut out = header(&run, &steps);
    out.push('\n');
    out.push_str(&steps_table(&steps));
    if let Some(events) = events {
        out.push_str("\nhistory\n");
        out.push_str(&history_table(&run, &events));
    }
    out.push_str("\ninput\n");
    out.push_str(&indent(&pretty(run.input.get())));
    if let Some(output) = &run.output {
        out.push_str("output\n");
        out.push_str(&indent(&pretty(output.get())));
    }
    Ok(out)
}

fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str("  ");
            out.push_str(line);
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("  \"\"\n");
    }
    out
}

fn header(run: &RunRecord, steps: &[StepRecord]) -> String {
    let totals = Totals::of(steps);
    let mut lines = vec![
        ("run", run.run_id.clone()),
        ("workflow", run.workflow.clone()),
        ("status", run.status.to_string()),
        (
            "created",
            format!(
                "{} ({} ago)",
                timestamp(run.created_at_us),
                age(run.created_at_us, now_us())
            ),
        ),
        (
            "duration",
            duration_us(last_activity_us(run, steps).saturating_sub(run.created_at_us)),
        ),
        (
            "spent",
            format!(
                "{}, {}, {} tokens ({} in, {} out), {}",
                plural(totals.steps, "step", "steps"),
                plural(totals.retries, "retry", "retries"),
                totals.tokens(),
                totals.input_tokens,
                totals.output_tokens,
                usd(totals.cost_usd)
            ),
        ),
    ];
    if !run.tags.is_empty() {
        lines.push(("tags", tags(run)));
    }
    if !run.resumed_at_us.is_empty() {
        lines.push(("resumed", format!("{} times", run.resumed_at_us.len())));
    }
    if let Some(waiting) = &run.waiting_for {
        lines.push(("waiting", waiting_for(run, waiting, now_us())));
    }
    if let Some(error) = &run.error {
        lines.push(("error", error.clone()));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// What a waiting run waits for, and until when: the journal words a timer by its due time in
/// seconds since the Unix epoch, which the run's `not_before_us` gives as a time to read.
fn waiting_for(run: &RunRecord, waiting: &str, now: u64) -> String {
    let what = if waiting.starts_with("timer until ") {
        "a timer"
    } else {
        waiting
    };
    match run.not_before_us {
        Some(due) if due > now => format!(
            "{what}, due {} (in {})",
            timestamp(due),
            duration_us(due - now)
        ),
        Some(due) => format!("{what}, due {} (now)", timestamp(due)),
        None => what.to_owned(),
    }
}

fn steps_table(steps: &[StepRecord]) -> String {
    if steps.is_empty() {
        return "no step journaled yet\n".into();
    }
    let mut table = Table::new(&[
        ("SEQ", Align::Right),
        ("STEP", Align::Left),
        ("STATUS", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("ERRORS", Align::Right),
        ("LATENCY", Align::Right),
        ("TOKENS", Align::Right),
        ("COST", Align::Right),
        ("ERROR", Align::Left),
    ]);
    let mut several_errors = false;
    for step in steps {
        let failed_attempts: Vec<_> = step
            .attempt_log
            .iter()
            .filter_map(|a| a.error.as_ref().map(|e| (a.attempt, e)))
            .collect();
        // A step failed in one attempt logs none: its error is the step's own.
        let errors = failed_attempts.len().max(usize::from(step.error.is_some()));
        several_errors |= errors > 1;
        let error = match (&step.error, failed_attempts.last()) {
            (Some(error), _) => format!("{}: {}", snake(&error.kind), error.message),
            (None, Some((attempt, retried))) => format!(
                "attempt {attempt} {}: {}",
                snake(&retried.kind),
                retried.message
            ),
            (None, None) if step.status == StepStatus::Started => {
                "in flight (at-most-once), or its process died".into()
            }
            (None, None) => String::new(),
        };
        let latency = duration_us(step.finished_at_us.saturating_sub(step.started_at_us));
        if !step.is_step() {
            // A timer, an event wait, its deadline or a journaled value: not a step, and
            // nothing of a step's to count.
            let none = || "-".to_owned();
            table.row(vec![
                step.seq.to_string(),
                step.name.clone(),
                "durable".into(),
                none(),
                none(),
                latency,
                none(),
                none(),
                String::new(),
            ]);
            continue;
        }
        table.row(vec![
            step.seq.to_string(),
            step.name.clone(),
            snake(&step.status),
            step.attempts.to_string(),
            errors.to_string(),
            latency,
            (step.usage.input_tokens + step.usage.output_tokens).to_string(),
            usd(step.usage.cost_usd),
            clip(&error, 72),
        ]);
    }
    let mut out = table.render();
    if several_errors {
        out.push_str("(ERROR is each step's last error; --history lists every attempt's)\n");
    }
    out
}

fn history_table(run: &RunRecord, events: &[HistoryEvent]) -> String {
    let mut table = Table::new(&[
        ("AT", Align::Right),
        ("EVENT", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for event in events {
        let name = serde_json::to_value(&event.kind)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        table.row(vec![
            format!(
                "+{}",
                duration_us(event.at_us.saturating_sub(run.created_at_us))
            ),
            name,
            // The last column, whole: a clipped line lost the wait ("waiting 1.…") or the
            // error, which is what a reader of the history came for.
            event.kind.to_string(),
        ]);
    }
    table.render()
}

/// `wf cost`: what runs created since `since` ago cost, grouped by `group`, with a total.
pub(crate) async fn cost(
    source: &Source,
    group: &LedgerGroup,
    since: Option<Duration>,
    json: bool,
) -> Result<String, CliError> {
    let since_time = match since {
        Some(ago) => Some(SystemTime::now().checked_sub(ago).ok_or_else(|| {
            CliError::failure(format!(
                "--since {} reaches before the Unix epoch",
                humantime::format_duration(ago)
            ))
        })?),
        None => None,
    };
    let rows = source.ledger(group, since_time).await?;
    if json {
        return to_json(&rows);
    }
    let key = match group {
        LedgerGroup::Workflow => "WORKFLOW".to_owned(),
        LedgerGroup::Tag(tag) => format!("TAG {}", tag.to_uppercase()),
        _ => "GROUP".to_owned(),
    };
    let mut table = Table::new(&[
        (&key, Align::Left),
        ("RUNS", Align::Right),
        ("FAILED", Align::Right),
        ("ERROR RATE", Align::Right),
        ("STEPS", Align::Right),
        ("RETRIES", Align::Right),
        ("TOKENS IN", Align::Right),
        ("TOKENS OUT", Align::Right),
        ("COST", Align::Right),
    ]);
    let mut total = workflow_runtime::LedgerRow::default();
    for row in &rows {
        table.row(vec![
            row.key.clone(),
            row.runs.to_string(),
            row.failed_runs.to_string(),
            format!("{:.0}%", row.error_rate * 100.0),
            row.steps.to_string(),
            row.retries.to_string(),
            row.input_tokens.to_string(),
            row.output_tokens.to_string(),
            usd(row.cost_usd),
        ]);
        total.runs += row.runs;
        total.failed_runs += row.failed_runs;
        total.steps += row.steps;
        total.retries += row.retries;
        total.input_tokens += row.input_tokens;
        total.output_tokens += row.output_tokens;
        total.cost_usd += row.cost_usd;
    }
    let window = match since {
        Some(ago) => format!(" created in the last {}", humantime::format_duration(ago)),
        None => String::new(),
    };
    if table.is_empty() {
        return Ok(format!("no runs{window} in {}\n", source.describe()));
    }
    if rows.len() > 1 {
        table.row(vec![
            "total".into(),
            total.runs.to_string(),
            total.failed_runs.to_string(),
            String::new(),
            total.steps.to_string(),
            total.retries.to_string(),
            total.input_tokens.to_string(),
            total.output_tokens.to_string(),
            usd(total.cost_usd),
        ]);
    }
    Ok(table.render())
}

/// `wf cancel`, `wf retry`, `wf resume`: sends the command and says what it did; a command the
/// run's status does not allow is an [`UNCHANGED`](CliError::UNCHANGED) error saying why.
pub(crate) async fn steer(
    source: &Source,
    command: Steer,
    run_id: &str,
) -> Result<String, CliError> {
    let before = source.run(run_id).await?;
    let failed_step = match command {
        Steer::Retry { .. } => source
            .journal(run_id)
            .await?
            .pop()
            .filter(|s| s.status == StepStatus::Failed),
        _ => None,
    };
    let changed = source.steer(command, run_id).await?;
    let after = source.run(run_id).await.map_or(before.status, |r| r.status);
    let where_next = if source.is_live() {
        format!(
            "; {} runs it if workflow `{}` is registered there",
            source.describe(),
            before.workflow
        )
    } else {
        format!(
            "; it runs when an engine that registers workflow `{}` opens {}",
            before.workflow,
            source.db().display()
        )
    };
    match (command, changed) {
        (Steer::Cancel, true) => Ok(format!(
            "run {run_id} cancelled (it was {})\n",
            before.status
        )),
        (Steer::Cancel, false) => Err(CliError::unchanged(format!(
            "run {run_id} was not cancelled: it had already ended ({after})"
        ))),
        (Steer::Retry { .. }, true) => {
            let from = match failed_step {
                Some(step) => format!("from its failed step #{} `{}`", step.seq, step.name),
                None => "(its journaled steps replay, and the body goes on from there)".into(),
            };
            Ok(format!("run {run_id} queued again {from}{where_next}\n"))
        }
        (Steer::Retry { .. }, false) => Err(CliError::unchanged(format!(
            "run {run_id} was not retried: it is {after}; only failed runs (or runs stopped by a budget) are retried"
        ))),
        (Steer::Resume, true) => {
            let what = if before.status == RunStatus::Parked {
                "resumed: journaled as pending".to_owned()
            } else {
                format!("queued to resume (it is {after})")
            };
            Ok(format!("run {run_id} {what}{where_next}\n"))
        }
        (Steer::Resume, false) if after.is_terminal() => Err(CliError::unchanged(format!(
            "run {run_id} was not resumed: it ended ({after}) and never resumes"
        ))),
        (Steer::Resume, false) => Err(CliError::unchanged(format!(
            "run {run_id} was not resumed: it is {after}, already queued or executing in {}",
            source.describe()
        ))),
    }
}

/// One workflow version's runs, by where they stand.
#[derive(Debug, Default, serde::Serialize)]
struct VersionRow {
    workflow: String,
    version: u32,
    /// Pending or running: a binary with this version must be there to carry them on.
    running: usize,
    waiting: usize,
    parked: usize,
    finished: usize,
    /// When the newest of its runs was started, in microseconds since the Unix epoch.
    newest_started_us: u64,
}

/// `wf versions`: per workflow and version, how many runs are unfinished. A version can leave
/// the binary once none of its runs is unfinished (or they were migrated); until then its runs
/// wait for a binary that has it.
pub(crate) async fn versions(source: &Source, json: bool) -> Result<String, CliError> {
    let mut rows = std::collections::BTreeMap::<(String, u32), VersionRow>::new();
    for run in source.runs().await? {
        let row = rows
            .entry((run.workflow.clone(), run.version))
            .or_insert_with(|| VersionRow {
                workflow: run.workflow.clone(),
                version: run.version,
                ..VersionRow::default()
            });
        match run.status {
            status if status.is_terminal() => row.finished += 1,
            RunStatus::Parked => row.parked += 1,
            RunStatus::Waiting => row.waiting += 1,
            _ => row.running += 1,
        }
        row.newest_started_us = row.newest_started_us.max(run.created_at_us);
    }
    let rows: Vec<VersionRow> = rows.into_values().collect();
    if json {
        return to_json(&rows);
    }
    if rows.is_empty() {
        return Ok(format!("no runs in {}\n", source.describe()));
    }
    let mut table = Table::new(&[
        ("WORKFLOW", Align::Left),
        ("VERSION", Align::Right),
        ("RUNNING", Align::Right),
        ("WAITING", Align::Right),
        ("PARKED", Align::Right),
        ("FINISHED", Align::Right),
        ("NEWEST", Align::Right),
    ]);
    let now = now_us();
    for row in &rows {
        table.row(vec![
            row.workflow.clone(),
            row.version.to_string(),
            row.running.to_string(),
            row.waiting.to_string(),
            row.parked.to_string(),
            row.finished.to_string(),
            age(row.newest_started_us, now),
        ]);
    }
    let mut text = table.render();
    for row in &rows {
        let unfinished = row.running + row.waiting + row.parked;
        if unfinished > 0 {
            text.push_str(&format!(
                "{} version {}: {unfinished} unfinished run{}, which only a binary with this version carries on\n",
                row.workflow,
                row.version,
                if unfinished == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(text)
}
