//! Ticket triage: a fan-out of concurrent branches, each of several steps.
//!
//! Every ticket gets a branch that summarizes it, then drafts a reply from the summary; the
//! branches run at once, and a last step posts every reply. The longer a ticket, the longer
//! the (simulated) model takes to read it, so the branches finish out of order. Kill the
//! process mid-run (Ctrl-C, or `kill -9`), run the same command again: the journaled steps
//! replay, in the order they first reached the workflow, and each ticket gets its own summary
//! and draft back.
//!
//! ```text
//! cargo run --example fan_out -- [--db PATH] [--new] [--latency-ms N]
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use workflow_examples::sim_llm::{LlmError, SimLlm};
use workflow_runtime::{Engine, Event, RunStatus, StepError, StepFailure, resource, workflow};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ticket {
    id: u32,
    subject: String,
    body: String,
}

/// Triage: summarize and draft a reply for every ticket at once, then post the replies.
#[workflow]
async fn triage(tickets: Vec<Ticket>) -> anyhow::Result<Vec<String>> {
    let branches = tickets.iter().map(|ticket| async move {
        #[step]
        let summary = summarize(ticket).await?;
        #[step]
        let draft = draft_reply(&summary).await?;
        Ok::<_, StepError>(format!("#{} {}: {draft}", ticket.id, ticket.subject))
    });
    let replies = futures::future::try_join_all(branches).await?;
    #[step]
    let posted = post_replies(&replies).await?;
    Ok(posted)
}

/// The mean latency of a model call, set from `--latency-ms`: the engine's resource, which the
/// steps read (`Engine::builder().resource(..)`).
struct Latency(Duration);

/// The simulated model, taking `scale` times the mean latency (varied by the prompt).
fn model(scale: f64) -> Result<SimLlm, LlmError> {
    let base = resource::<Latency>().map_err(|e| LlmError::Api(StepFailure::classified(e)))?;
    Ok(SimLlm {
        latency: base.0.mul_f64(scale),
        fail_rate: 0.0,
    })
}

/// Reads the ticket: the longer it is, the longer it takes.
async fn summarize(ticket: &Ticket) -> Result<String, LlmError> {
    let words = ticket.body.split_whitespace().count();
    let prompt = format!("Summarize in a few words: {}", ticket.body);
    let answer = model(words as f64 / 10.0)?.complete(&prompt, 4).await?;
    Ok(format!(
        "'{}' ({})",
        ticket.subject.to_lowercase(),
        answer.text
    ))
}

async fn draft_reply(summary: &str) -> Result<String, LlmError> {
    let prompt = format!("Draft a short reply to a ticket about {summary}");
    let answer = model(1.0)?.complete(&prompt, 6).await?;
    Ok(format!("about {summary}: {}", answer.text))
}

/// Posts every reply to the help desk (here: waits a little) and returns them as posted.
async fn post_replies(replies: &[String]) -> Result<Vec<String>, LlmError> {
    tokio::time::sleep(model(0.25)?.latency).await;
    Ok(replies.to_vec())
}

fn tickets() -> Vec<Ticket> {
    let ticket = |id, subject: &str, body: &str| Ticket {
        id,
        subject: subject.into(),
        body: body.into(),
    };
    vec![
        ticket(
            101,
            "Refund not received",
            "I returned the blender three weeks ago, the tracking number says it arrived at your \
             warehouse on the 3rd, and I still have not been refunded. Order 5521.",
        ),
        ticket(102, "Password reset", "The reset link has expired."),
        ticket(
            103,
            "App crashes on login",
            "Since the last update the app closes as soon as I log in.",
        ),
        ticket(
            104,
            "Invoice address",
            "Please put our new address on invoices.",
        ),
    ]
}

struct Options {
    db: String,
    new: bool,
    latency_ms: u64,
}

const USAGE: &str = "usage: fan_out [--db PATH] [--new] [--latency-ms N]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "fan_out.redb".into(),
        new: false,
        latency_ms: 400,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => options.db = args.next().ok_or(USAGE)?,
            "--new" => options.new = true,
            "--latency-ms" => {
                let text = args.next().ok_or(USAGE)?;
                options.latency_ms = text.parse().map_err(|_| {
                    format!("--latency-ms wants a whole number of milliseconds, not {text:?}")
                })?;
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let mut run_id = "triage-demo".to_owned();
    if options.new {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        run_id = format!("triage-{now}");
    }
    let engine = Engine::builder()
        .resource(Latency(Duration::from_millis(options.latency_ms)))
        .open(&options.db)
        .await
        .map_err(|e| e.to_string())?;

    // One line per step, as it executes or replays: (executed, replayed) counts.
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let (watched, seen) = (run_id.clone(), Arc::clone(&counts));
    engine.on_event(move |event| match event {
        Event::StepReplayed { run_id, seq, name } if *run_id == watched => {
            seen.1.fetch_add(1, Ordering::SeqCst);
            println!("  #{seq:<2} {name:<12} replayed from the journal");
        }
        Event::StepFinished {
            run_id,
            seq,
            name,
            latency,
            ..
        } if *run_id == watched => {
            seen.0.fetch_add(1, Ordering::SeqCst);
            println!("  #{seq:<2} {name:<12} executed  {latency:>6.0?}");
        }
        _ => {}
    });

    let tickets = tickets();
    println!(
        "run {run_id}: {} tickets, journal {}",
        tickets.len(),
        options.db
    );
    let started = Instant::now();
    let record = engine.run(&run_id).await.map_err(|e| e.to_string())?;
    let replies = if record.is_some_and(|r| r.status == RunStatus::Completed) {
        // Finished in an earlier process: replay it, which runs no step and checks that this
        // code still takes the journaled path.
        engine.replay::<triage>(&run_id).await
    } else {
        let run = engine.start::<triage>(run_id.as_str(), (tickets,)).await;
        run.map_err(|e| e.to_string())?.result().await
    }
    .map_err(|e| e.to_string())?;

    println!();
    for reply in &replies {
        println!("{reply}");
    }
    let (executed, replayed) = (
        counts.0.load(Ordering::SeqCst),
        counts.1.load(Ordering::SeqCst),
    );
    println!(
        "\nrun {run_id} completed in {:.2?}: {} steps ({executed} executed, {replayed} replayed)",
        started.elapsed(),
        executed + replayed,
    );
    Ok(())
}
