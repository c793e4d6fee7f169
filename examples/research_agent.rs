//! A research agent: plan sub-questions, research each one, synthesize a cited report.
//!
//! Every model call is a journaled step. Kill the process at any moment (Ctrl-C, or
//! `kill -9`), run the same command again, and the run continues from the step that was
//! running; run it once more after it finished and every step replays in milliseconds.
//!
//! ```text
//! cargo run --example research_agent -- [GOAL] [--db PATH] [--run-id ID] [--new]
//!     [--latency-ms N] [--fail-rate F] [--json]
//! ```
//!
//! It runs offline against a simulated LLM (see `src/sim_llm.rs`) that is deterministic from
//! its prompt and fails like a real API at `--fail-rate` (429 with Retry-After, 503, timeouts,
//! prose where JSON was asked for), decided from each step's idempotency key and attempt, so
//! that every run is reproducible. With ANTHROPIC_API_KEY or OPENAI_API_KEY set, it calls that
//! API instead (see `src/llm_http.rs`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use workflow_examples::llm_http::LlmClient;
use workflow_examples::sim_llm::{
    Completion, INPUT_USD_PER_MTOK, LlmError, MODEL, OUTPUT_USD_PER_MTOK, SimLlm, stable_hash,
};
use workflow_runtime::{
    Engine, Event, RunOptions, RunStatus, StepContext, StepFailure, StepRecord, Workflow, resource,
    workflow,
};

/// What the agent learned about one sub-question.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finding {
    question: String,
    summary: String,
    sources: Vec<String>,
}

/// The model the agent talks to: the simulation, or a real API when a key is set. It is the
/// engine's resource (`Engine::builder().resource(model)`), which the steps read: nothing it
/// holds is journaled, and a test engine registers another.
#[derive(Debug, Clone)]
enum Model {
    Simulated(SimLlm),
    Real(LlmClient),
}

impl Model {
    async fn complete(&self, prompt: &str, words: usize) -> Result<Completion, LlmError> {
        match self {
            Model::Simulated(sim) => sim.complete(prompt, words).await,
            Model::Real(client) => client
                .complete(prompt, (words as u32 * 2).max(64))
                .await
                .map_err(LlmError::Api),
        }
    }

    fn name(&self) -> String {
        match self {
            Model::Simulated(_) => MODEL.to_owned(),
            Model::Real(client) => client.model().to_owned(),
        }
    }
}

/// The engine's model; only a step can reach it.
fn llm() -> Result<Arc<Model>, LlmError> {
    resource::<Model>().map_err(|e| LlmError::Api(StepFailure::classified(e)))
}

async fn plan_questions(goal: &str) -> Result<Vec<String>, LlmError> {
    let mut prompt = format!(
        "Break this research goal into 3 or 4 sub-questions, as a JSON array of strings: {goal}"
    );
    // A schema mismatch is retried once; feed the error back so the model can correct itself.
    if let Some(previous) = StepContext::current().and_then(|c| c.previous_error().cloned()) {
        prompt.push_str(&format!(
            "\nYour previous answer was rejected ({}). Answer with the JSON array only.",
            previous.message
        ));
    }
    let completion = llm()?.complete(&prompt, 16).await?;
    let proposed: Vec<String> = serde_json::from_str(&completion.text).map_err(LlmError::Schema)?;
    if proposed.iter().all(|q| q.ends_with('?')) && (3..=4).contains(&proposed.len()) {
        return Ok(proposed);
    }
    // The simulated model answers with well-formed JSON but no real questions: use a fixed set
    // of angles, as many as its answer has words (3 or 4).
    let angles = [
        "What is {}, and what problem does it solve?",
        "How do the main approaches to {} differ?",
        "What fails in production with {}, and how is it recovered?",
        "What do benchmarks say about {}?",
    ];
    let count = 3 + (stable_hash(&[goal]) % 2) as usize;
    Ok(angles[..count]
        .iter()
        .map(|angle| angle.replace("{}", goal))
        .collect())
}

async fn search_and_summarize(question: &str) -> Result<Finding, LlmError> {
    let completion = llm()?
        .complete(&format!("Search the web and summarize: {question}"), 24)
        .await?;
    let slug = format!("{:x}", stable_hash(&[question]) & 0xff_ffff);
    Ok(Finding {
        question: question.to_owned(),
        summary: completion.text,
        sources: vec![
            format!("https://example.org/papers/{slug}"),
            format!("https://example.com/blog/{slug}-field-notes"),
        ],
    })
}

async fn synthesize(goal: &str, findings: &[Finding]) -> Result<String, LlmError> {
    let prompt = format!(
        "Write a cited answer to '{goal}' from: {}",
        findings
            .iter()
            .map(|f| f.summary.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let conclusion = llm()?.complete(&prompt, 30).await?;
    let mut report = format!("# {goal}\n\n");
    let mut sources = Vec::new();
    for finding in findings {
        let first = sources.len() + 1;
        sources.extend(finding.sources.iter().cloned());
        report.push_str(&format!(
            "- {} {} [{first}][{}]\n",
            finding.question,
            finding.summary,
            first + 1
        ));
    }
    report.push_str(&format!("\nIn short: {}.\n\nSources:\n", conclusion.text));
    for (i, source) in sources.iter().enumerate() {
        report.push_str(&format!("[{}] {source}\n", i + 1));
    }
    Ok(report)
}

/// The agent: plan, research each sub-question, synthesize.
#[workflow(max_steps = 50, max_cost_usd = 2.00)]
async fn research_agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let plan = plan_questions(&goal).await?;
    let mut findings = Vec::new();
    for question in &plan {
        #[step(retries = 3, timeout = "60s")]
        let finding = search_and_summarize(question).await?;
        findings.push(finding);
    }
    #[step]
    let report = synthesize(&goal, &findings).await?;
    Ok(report)
}

struct Options {
    goal: String,
    db: String,
    run_id: Option<String>,
    new: bool,
    latency_ms: u64,
    fail_rate: f64,
    max_cost_usd: Option<f64>,
    max_steps: Option<u64>,
    json: bool,
}

const USAGE: &str = "usage: research_agent [GOAL] [--db PATH] [--run-id ID] [--new] [--latency-ms N] [--fail-rate F] [--max-cost-usd X] [--max-steps N] [--json]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        goal: "durable execution for AI agents".into(),
        db: "research_agent.redb".into(),
        run_id: None,
        new: false,
        latency_ms: 300,
        fail_rate: 0.1,
        max_cost_usd: None,
        max_steps: None,
        json: false,
    };
    let mut goal_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--db" => options.db = value("--db")?,
            "--run-id" => options.run_id = Some(value("--run-id")?),
            "--new" => options.new = true,
            "--json" => options.json = true,
            "--latency-ms" => {
                let text = value("--latency-ms")?;
                options.latency_ms = text.parse().map_err(|_| {
                    format!("--latency-ms wants a whole number of milliseconds, not {text:?}")
                })?;
            }
            "--fail-rate" => {
                let text = value("--fail-rate")?;
                options.fail_rate = text
                    .parse()
                    .ok()
                    .filter(|rate: &f64| (0.0..=1.0).contains(rate))
                    .ok_or_else(|| {
                        format!("--fail-rate wants a number from 0 to 1, not {text:?}")
                    })?;
            }
            "--max-cost-usd" => {
                let text = value("--max-cost-usd")?;
                options.max_cost_usd = Some(
                    text.parse()
                        .ok()
                        .filter(|usd: &f64| *usd >= 0.0)
                        .ok_or_else(|| format!("--max-cost-usd wants a non-negative number of dollars, not {text:?}"))?,
                );
            }
            "--max-steps" => {
                let text = value("--max-steps")?;
                options.max_steps = Some(
                    text.parse()
                        .map_err(|_| format!("--max-steps wants a whole number, not {text:?}"))?,
                );
            }
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            goal if !goal_given => {
                options.goal = goal.to_owned();
                goal_given = true;
            }
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// What this process did: steps it executed and steps it replayed.
#[derive(Default)]
struct Counts {
    executed: u64,
    replayed: u64,
}

/// The run's totals, from its journal: the same however many processes it took.
struct Totals {
    steps: usize,
    retries: usize,
    cost_usd: f64,
}

impl Totals {
    fn of(journal: &[StepRecord]) -> Totals {
        let steps = journal.iter().filter(|record| record.is_step());
        let mut totals = Totals {
            steps: 0,
            retries: 0,
            cost_usd: 0.0,
        };
        for step in steps {
            totals.steps += 1;
            // A step resumed after a crash counts this process's attempts; its log, them all.
            let attempts = (step.attempts as usize).max(step.attempt_log.len());
            totals.retries += attempts.saturating_sub(1);
            totals.cost_usd += step.usage.cost_usd;
        }
        totals
    }
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
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<ExitCode, String> {
    let model = match LlmClient::from_env() {
        Some(client) => Model::Real(client),
        None => Model::Simulated(SimLlm {
            latency: Duration::from_millis(options.latency_ms),
            fail_rate: options.fail_rate,
        }),
    };
    let model_name = model.name();
    let mut run_id = options
        .run_id
        .clone()
        .unwrap_or_else(|| format!("research-{:012x}", stable_hash(&[&options.goal]) >> 16));
    if options.new {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        run_id = format!("{run_id}-{now}");
    }

    // The example prices every model alike: 3 and 15 USD per million input and output tokens.
    let engine = Engine::builder()
        .resource(model)
        .price(model_name.clone(), INPUT_USD_PER_MTOK, OUTPUT_USD_PER_MTOK)
        .open(&options.db)
        .await
        .map_err(|e| e.to_string())?;
    // `wf` inspects and steers the run while it executes, through this loopback endpoint.
    let admin_file = workflow_runtime::admin::AdminInfo::path_for(&options.db);
    let _admin = engine
        .serve_admin(([127, 0, 0, 1], 0).into(), admin_file)
        .await
        .map_err(|e| e.to_string())?;
    // A per-run cap overrides the workflow's own (a per-user limit, say).
    let mut budget = research_agent::budget();
    if let Some(usd) = options.max_cost_usd {
        budget = budget.with_max_cost_usd(usd);
    }
    if let Some(steps) = options.max_steps {
        budget = budget.with_max_steps(steps);
    }
    let counts = Arc::new(Mutex::new(Counts::default()));
    let watched = run_id.clone();
    let listener_counts = Arc::clone(&counts);
    engine.on_event(move |event| print_step_line(event, &watched, &listener_counts));

    println!("run {run_id}: {} (model {model_name})", options.goal);
    let started = Instant::now();
    let finished_before = engine
        .run(&run_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some_and(|record| record.status == RunStatus::Completed);
    let result = if finished_before {
        // The run completed in an earlier process: replay it from its journal, which runs
        // no step and checks that this code still takes the journaled path.
        engine.replay::<research_agent>(&run_id).await
    } else {
        let handle = engine
            .start_with::<research_agent>(
                run_id.clone(),
                (options.goal.clone(),),
                RunOptions::default().budget(budget),
            )
            .await
            .map_err(|e| e.to_string())?;
        handle.result().await
    };
    let elapsed = started.elapsed();

    // The run's totals come from its journal, so that a replayed run reports what it did when
    // it executed; the events of this process say only what ran here and what replayed.
    let journal = engine.journal(&run_id).await.map_err(|e| e.to_string())?;
    let totals = Totals::of(&journal);
    let status = engine
        .run(&run_id)
        .await
        .map_err(|e| e.to_string())?
        .map_or(RunStatus::Running, |record| record.status);
    let counts = std::mem::take(&mut *counts.lock().unwrap_or_else(|p| p.into_inner()));

    let output = result.as_ref().ok().cloned();
    if let Some(report) = &output {
        println!("\n{report}");
    }
    println!(
        "run {run_id} {status} in {:.2?}: {} steps ({} executed now, {} replayed), {} {}, ${:.6} spent in total",
        elapsed,
        totals.steps,
        counts.executed,
        counts.replayed,
        totals.retries,
        if totals.retries == 1 {
            "retry"
        } else {
            "retries"
        },
        totals.cost_usd,
    );
    if options.json {
        let summary = serde_json::json!({
            "run_id": run_id,
            "status": status.as_str(),
            "steps_total": totals.steps,
            "steps_executed": counts.executed,
            "steps_replayed": counts.replayed,
            "retries": totals.retries,
            "cost_usd": totals.cost_usd,
            "output": output,
        });
        println!("{summary}");
    }
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_step_line(event: &Event, run_id: &str, counts: &Mutex<Counts>) {
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    match event {
        Event::StepReplayed {
            run_id: id,
            seq,
            name,
        } if id == run_id => {
            counts.replayed += 1;
            println!("  #{seq:<2} {name:<22} replayed from the journal");
        }
        Event::StepRetrying {
            run_id: id,
            seq,
            name,
            attempt,
            error,
            delay,
        } if id == run_id => {
            println!(
                "  #{seq:<2} {name:<22} attempt {attempt} failed: {}; retrying in {delay:.1?}",
                error.message
            );
        }
        Event::StepFinished {
            run_id: id,
            seq,
            name,
            attempts,
            latency,
            usage,
            error,
            ..
        } if id == run_id => {
            counts.executed += 1;
            let outcome = match error {
                None => "executed".to_owned(),
                Some(error) => format!("FAILED ({})", error.message),
            };
            println!(
                "  #{seq:<2} {name:<22} {outcome}  attempt {attempts}  {:>6.0?}  {} in / {} out tokens  ${:.6}",
                latency, usage.input_tokens, usage.output_tokens, usage.cost_usd
            );
        }
        _ => {}
    }
}
