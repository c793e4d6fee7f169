//! The checks: a crashed-and-resumed simulation against the uninterrupted run of the same seed.

use std::collections::{BTreeMap, BTreeSet};

use super::Latencies;
use super::simulate::{self, CrashAt, Ending, Outcome, Plan, RunView, Simulation, StepView};
use super::store::Commit;
use crate::journal::StepStatus;

/// The uninterrupted run of one seed, which the crashed ones are compared with.
pub(crate) struct Reference {
    pub(crate) latencies: Latencies,
    /// Every commit of the run, in order: the crash points.
    pub(crate) commits: Vec<Commit>,
    ending: Result<Ending, String>,
}

impl Reference {
    pub(crate) fn record(plan: &Plan, latencies: Latencies) -> Reference {
        let simulation = simulate::simulate(plan, latencies, None);
        Reference {
            latencies,
            commits: simulation.commits,
            ending: simulation.ending,
        }
    }

    /// What is wrong with the uninterrupted run itself, and whether it can still serve as the
    /// reference of the crashed ones (it cannot when it did not finish).
    pub(crate) fn check(&self) -> (Vec<String>, bool) {
        let ending = match &self.ending {
            Ok(ending) => ending,
            Err(why) => return (vec![format!("the uninterrupted run {why}")], false),
        };
        if let Outcome::Unfinished(error) = &ending.outcome {
            let problem = format!("the uninterrupted run did not finish: {error}");
            return (vec![problem], false);
        }
        if ending.replay != ending.outcome {
            let problem = format!(
                "Engine::replay of the uninterrupted run returns {}, the run returned {}",
                show_outcome(&ending.replay),
                show_outcome(&ending.outcome)
            );
            return (vec![problem], true);
        }
        (Vec::new(), true)
    }

    /// What diverged in `simulation`, crashed at `crash`, the most telling first.
    pub(crate) fn compare(&self, simulation: &Simulation, crash: CrashAt) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(reference) = &self.ending else {
            return problems;
        };
        // Before the crash, the run must have made the uninterrupted run's commits.
        for (ours, theirs) in simulation.commits.iter().zip(&self.commits) {
            if ours.wrote != theirs.wrote {
                problems.push(format!(
                    "before the crash, commit {} wrote {}, where the uninterrupted run's wrote {}: the workflow is not deterministic even without a crash (does its body read something that is not journaled?)",
                    ours.number, ours.wrote, theirs.wrote
                ));
                break;
            }
        }
        if !simulation.crashed {
            problems.push(format!(
                "the run never reached commit {}: it made {} commits where the uninterrupted run made {}",
                crash.commit,
                simulation.commits.len(),
                self.commits.len()
            ));
            return problems;
        }
        let ending = match &simulation.ending {
            Ok(ending) => ending,
            Err(why) => {
                problems.push(why.clone());
                return problems;
            }
        };
        if let Some(step) = unknown_outcome_kept(simulation, ending) {
            // The at-most-once step's promise, kept: the crash came during its call, and the
            // resumed run was told the outcome is unknown instead of calling it again. That run
            // ends otherwise than the uninterrupted one, by design.
            if simulation
                .resumed_executions
                .iter()
                .any(|e| (e.run_id.as_str(), e.seq) == (step.0.as_str(), step.1))
            {
                problems.push(format!(
                    "at-most-once step #{} of run {} executed again after the resume, though its intent was journaled before the crash",
                    step.1, step.0
                ));
            }
            return problems;
        }
        if ending.outcome != reference.outcome {
            problems.push(format!(
                "the output differs: uninterrupted {}, resumed {}",
                show_outcome(&reference.outcome),
                show_outcome(&ending.outcome)
            ));
        }
        // What was durable at the crash: the latest record of each step, by run and seq.
        let mut committed: BTreeMap<(String, u64), StepView> = BTreeMap::new();
        for commit in &simulation.commits {
            if !(commit.applied || commit.acknowledged) {
                continue;
            }
            for (run_id, step) in &commit.steps {
                committed.insert((run_id.clone(), step.seq), StepView::of(step));
            }
        }
        // Only outcomes are final: an intent (`started`) or a timer not yet fired (`pending`)
        // is meant to be written over.
        committed
            .retain(|_, step| matches!(step.status, StepStatus::Completed | StepStatus::Failed));
        for ((run_id, seq), before) in &committed {
            let after = ending
                .runs
                .get(run_id)
                .and_then(|run| run.steps.iter().find(|s| s.seq == *seq));
            match after {
                Some(after) if after == before => {}
                Some(after) => problems.push(format!(
                    "{} was committed before the crash as {}, and is {} at the end",
                    step_label(run_id, &self.main_run(), before),
                    show_step(before),
                    show_step(after)
                )),
                None => problems.push(format!(
                    "{} was committed before the crash as {}, and is gone at the end",
                    step_label(run_id, &self.main_run(), before),
                    show_step(before)
                )),
            }
        }
        if let Some(difference) = journal_difference(reference, ending, &self.main_run()) {
            problems.push(difference);
        }
        for execution in &simulation.resumed_executions {
            let key = (execution.run_id.clone(), execution.seq);
            if let Some(step) = committed.get(&key)
                && step.name == execution.name
            {
                problems.push(format!(
                    "{} executed again after the resume (attempt {}), though its outcome was committed before the crash",
                    step_label(&execution.run_id, &self.main_run(), step),
                    execution.attempt
                ));
                break;
            }
        }
        // Unless the uninterrupted run does not replay either: said once, there.
        if ending.replay != ending.outcome && reference.replay == reference.outcome {
            problems.push(format!(
                "Engine::replay of the resumed run returns {}, the run returned {}",
                show_outcome(&ending.replay),
                show_outcome(&ending.outcome)
            ));
        }
        problems
    }

    fn main_run(&self) -> String {
        super::RUN_ID.to_owned()
    }
}

/// Whether the crash of `simulation` came during an at-most-once step's call, which the resumed
/// run ended with an unknown outcome.
pub(crate) fn unknown_outcome_of(simulation: &Simulation) -> bool {
    match &simulation.ending {
        Ok(ending) if simulation.crashed => unknown_outcome_kept(simulation, ending).is_some(),
        _ => false,
    }
}

/// The at-most-once step (run id, seq) whose intent was durable at the crash, without its
/// outcome, and which the resumed run journaled as `outcome_unknown`; if there is one.
fn unknown_outcome_kept(simulation: &Simulation, ending: &Ending) -> Option<(String, u64)> {
    let mut latest: BTreeMap<(String, u64), StepStatus> = BTreeMap::new();
    for commit in &simulation.commits {
        if !(commit.applied || commit.acknowledged) {
            continue;
        }
        for (run_id, step) in &commit.steps {
            latest.insert((run_id.clone(), step.seq), step.status);
        }
    }
    latest.into_iter().find_map(|((run_id, seq), status)| {
        let unknown = ending
            .runs
            .get(&run_id)?
            .steps
            .iter()
            .any(|s| s.seq == seq && s.value.starts_with("outcomeunknown:"));
        (status == StepStatus::Started && unknown).then_some((run_id, seq))
    })
}

/// A step as the journal comparison sees it: records of times and random values by name only
/// (a timer that lost a race may be left pending, or be found due when the run replays).
fn comparable(step: &StepView) -> (String, String, Option<String>) {
    if holds_time_or_randomness(&step.name) {
        return (step.name.clone(), String::new(), None);
    }
    let status = format!("{:?}", step.status).to_lowercase();
    (step.name.clone(), status, Some(step.value.clone()))
}

fn holds_time_or_randomness(name: &str) -> bool {
    matches!(name, "sleep" | "sleep_until" | "now" | "random" | "uuid")
        || name.starts_with("deadline:")
}

fn multiset(steps: &[StepView]) -> BTreeMap<(String, String, Option<String>), usize> {
    let mut counts = BTreeMap::new();
    for step in steps {
        *counts.entry(comparable(step)).or_insert(0) += 1;
    }
    counts
}

/// The first difference between the two end states' journals, in words.
fn journal_difference(reference: &Ending, resumed: &Ending, main_run: &str) -> Option<String> {
    let empty = Vec::new();
    let steps_of = |ending: &Ending| {
        ending
            .runs
            .get(main_run)
            .map_or(&empty, |run: &RunView| &run.steps)
            .clone()
    };
    if let Some(difference) = steps_difference(&steps_of(reference), &steps_of(resumed)) {
        return Some(format!("the run's journal differs: {difference}"));
    }
    // Child runs, whose ids hold their parent's sequence numbers, as a multiset too.
    let children = |ending: &Ending| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for run in ending.runs.values().filter(|r| r.run_id != main_run) {
            let mut steps: Vec<_> = run.steps.iter().map(comparable).collect();
            steps.sort();
            let summary = format!(
                "run of `{}`, {}, output {}, steps {:?}",
                run.workflow,
                run.status,
                run.output.as_deref().map_or("none".into(), shorten),
                steps
            );
            *counts.entry(summary).or_insert(0) += 1;
        }
        counts
    };
    let (theirs, ours) = (children(reference), children(resumed));
    if theirs != ours {
        let missing = theirs
            .iter()
            .find(|(k, n)| ours.get(*k).is_none_or(|m| m < n));
        let extra = ours
            .iter()
            .find(|(k, n)| theirs.get(*k).is_none_or(|m| m < n));
        return Some(match (extra, missing) {
            (Some((extra, _)), Some((missing, _))) => format!(
                "the child runs differ: the resumed end has a {}, the uninterrupted one a {}",
                shorten(extra),
                shorten(missing)
            ),
            (Some((extra, _)), None) => {
                format!(
                    "the child runs differ: the resumed end has an extra {}",
                    shorten(extra)
                )
            }
            (None, Some((missing, _))) => {
                format!(
                    "the child runs differ: the resumed end lacks a {}",
                    shorten(missing)
                )
            }
            (None, None) => "the child runs differ".to_owned(),
        });
    }
    None
}

/// The first step of `resumed` (by sequence number) that `reference` lacks, or the first of
/// `reference` that `resumed` lacks.
fn steps_difference(reference: &[StepView], resumed: &[StepView]) -> Option<String> {
    let (theirs, ours) = (multiset(reference), multiset(resumed));
    if theirs == ours {
        return None;
    }
    let surplus = |from: &[StepView], other: &BTreeMap<_, usize>| {
        let mut seen: BTreeMap<(String, String, Option<String>), usize> = BTreeMap::new();
        let mut out = Vec::new();
        for step in from {
            let key = comparable(step);
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            let allowed = other.get(&key).copied().unwrap_or(0);
            if *n > allowed {
                out.push(step.clone());
            }
        }
        out
    };
    let extra = surplus(resumed, &theirs);
    let missing = surplus(reference, &ours);
    let names: BTreeSet<&str> = missing.iter().map(|s| s.name.as_str()).collect();
    Some(match (extra.first(), missing.first()) {
        (Some(extra), _) if names.contains(extra.name.as_str()) => {
            let instead: Vec<String> = missing
                .iter()
                .filter(|s| s.name == extra.name)
                .map(|s| format!("#{} {}", s.seq, show_step(s)))
                .collect();
            format!(
                "first divergent step: #{} {} {} in the resumed journal, where the uninterrupted one has {}",
                extra.seq,
                extra.name,
                show_step(extra),
                instead.join(", ")
            )
        }
        (Some(extra), _) => format!(
            "first divergent step: #{} {} {} is in the resumed journal only",
            extra.seq,
            extra.name,
            show_step(extra)
        ),
        (None, Some(missing)) => format!(
            "first divergent step: #{} {} {} of the uninterrupted journal is not in the resumed one",
            missing.seq,
            missing.name,
            show_step(missing)
        ),
        (None, None) => "the journals differ".to_owned(),
    })
}

fn step_label(run_id: &str, main_run: &str, step: &StepView) -> String {
    if run_id == main_run {
        format!("step #{} {}", step.seq, step.name)
    } else {
        format!("step #{} {} of run `{run_id}`", step.seq, step.name)
    }
}

fn show_step(step: &StepView) -> String {
    match step.status {
        StepStatus::Completed => format!("= {}", shorten(&step.value)),
        status => format!(
            "({}: {})",
            format!("{status:?}").to_lowercase(),
            shorten(&step.value)
        ),
    }
}

fn show_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Output(output) => shorten(output),
        Outcome::Error(error) => format!("an error ({})", shorten(error)),
        Outcome::Unfinished(why) => format!("no end ({})", shorten(why)),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 240;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}…")
}
