//! A human in the loop: an agent prepares a purchase, then waits for a person to approve it.
//! The wait is durable: kill the process while it waits and run it again, and it waits only
//! for what remains of the deadline; no approval within the deadline cancels the purchase.
//!
//! ```text
//! cargo run --example approval -- [--db PATH] [--run-id ID] [--timeout-s N] [--auto approve|reject]
//! ```
//!
//! While it waits, type `approve` or `reject` (and Enter). `--auto` answers after a second,
//! for scripts; closing standard input (or `< /dev/null`) lets the deadline run out.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow_runtime::{Engine, Event, durable, workflow};

/// What the agent proposes to buy.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Quote {
    item: String,
    vendor: String,
    amount_usd: f64,
}

/// A person's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Decision {
    approved: bool,
    by: String,
}

async fn find_best_quote(item: &str) -> Result<Quote, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Quote {
        item: item.to_owned(),
        vendor: "Example Supply Co.".into(),
        amount_usd: 1_249.00,
    })
}

async fn place_order(quote: &Quote) -> Result<String, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(format!(
        "PO-{:06}",
        (quote.amount_usd * 100.0) as u64 % 1_000_000
    ))
}

/// Finds a quote, asks a person, and orders only with their approval.
#[workflow(max_steps = 10)]
async fn purchase(item: String, timeout_s: u64) -> anyhow::Result<String> {
    #[step(retries = 2, timeout = "30s")]
    let quote = find_best_quote(&item).await?;
    // The deadline is journaled: a restarted process waits only for what remains.
    let decision: Option<Decision> =
        durable::wait_for_event_timeout("approval", Duration::from_secs(timeout_s)).await?;
    Ok(match decision {
        Some(Decision { approved: true, by }) => {
            #[step(at_most_once)]
            let order = place_order(&quote).await?;
            format!(
                "ordered {} from {} for ${:.2} ({order}), approved by {by}",
                quote.item, quote.vendor, quote.amount_usd
            )
        }
        Some(Decision {
            approved: false,
            by,
        }) => format!("purchase rejected by {by}"),
        None => format!("no approval within {timeout_s} s: purchase cancelled"),
    })
}

struct Options {
    db: String,
    run_id: String,
    timeout_s: u64,
    auto: Option<bool>,
}

fn parse_options() -> Result<Options, String> {
    let usage = "usage: approval [--db PATH] [--run-id ID] [--timeout-s N] [--auto approve|reject]";
    let mut options = Options {
        db: "approval.redb".into(),
        run_id: "purchase-1".into(),
        timeout_s: 60,
        auto: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--db" => options.db = value("--db")?,
            "--run-id" => options.run_id = value("--run-id")?,
            "--timeout-s" => {
                let text = value("--timeout-s")?;
                options.timeout_s = text
                    .parse()
                    .map_err(|_| format!("--timeout-s wants whole seconds, not {text:?}"))?;
            }
            "--auto" => {
                options.auto = match value("--auto")?.as_str() {
                    "approve" => Some(true),
                    "reject" => Some(false),
                    other => return Err(format!("--auto wants approve or reject, not {other:?}")),
                }
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{usage}")),
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
    let engine = Engine::builder()
        // A durable wait is silent: say when the run leaves memory to wait (after the engine's
        // park threshold, 10 s by default), so that it is clear a restart loses nothing.
        .on_event(|event| {
            if let Event::RunWaiting { waiting_for, .. } = event {
                println!("  the run left memory to wait for {waiting_for}; stop and rerun at will");
            }
        })
        .open(&options.db)
        .await
        .map_err(|e| e.to_string())?;
    let run = engine
        .start::<purchase>(
            options.run_id.clone(),
            ("GPU workstation".into(), options.timeout_s),
        )
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "run {}: a purchase awaits approval; type `approve` or `reject` (deadline {} s from the first start)",
        options.run_id, options.timeout_s
    );
    let sender = engine.clone();
    let run_id = options.run_id.clone();
    match options.auto {
        Some(approved) => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let decision = Decision {
                    approved,
                    by: "auto".into(),
                };
                let _ = sender.send_event(&run_id, "approval", decision).await;
            });
        }
        None => {
            // Standard input is read on a thread of its own: reading it blocks.
            let handle = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    let approved = match line.trim() {
                        "approve" => true,
                        "reject" => false,
                        _ => {
                            println!("type `approve` or `reject`");
                            continue;
                        }
                    };
                    let by = std::env::var("USER").unwrap_or_else(|_| "someone".into());
                    let decision = Decision { approved, by };
                    if let Err(e) =
                        handle.block_on(sender.send_event(&run_id, "approval", decision))
                    {
                        println!("{e}");
                    }
                    break;
                }
            });
        }
    }
    let outcome = run.result().await.map_err(|e| e.to_string())?;
    println!("{outcome}");
    Ok(())
}
