//! `wf`: the inspector of workflow-runtime journals.
//!
//! ```text
//! wf runs DB [--status S] [--workflow W] [--tag KEY=VALUE]... [--json]
//! wf show DB RUN [--history] [--json] [--html FILE]
//! wf cost DB [--by workflow|tag:KEY] [--since 24h] [--json]
//! wf cancel DB RUN
//! wf retry DB RUN [--force]
//! wf resume DB RUN
//! ```
//!
//! It works on a journal at rest (it opens the file, registers no workflow, so nothing
//! resumes) and on one an engine holds in another process, through that engine's admin
//! endpoint (`Engine::serve_admin`), whose address and token it reads from the info file
//! beside the journal (`<db>.admin`).
#![warn(missing_docs, unreachable_pub)]

mod commands;
mod error;
mod format;
mod http;
mod source;
mod table;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use workflow_runtime::{LedgerGroup, RunStatus};

use crate::commands::RunFilter;
use crate::error::CliError;
use crate::source::{Source, Steer};

const AFTER_HELP: &str = "\
A journal held by a running engine is reached through that engine's admin endpoint (see \
Engine::serve_admin): its address and token are read from <DB>.admin; WF_ADMIN_TOKEN overrides \
the token.

Exit status: 0 done; 1 error (no journal, unknown run, refused command, unreachable engine); \
2 bad usage; 3 the command changed nothing (cancel of a finished run, retry of a completed one).";

/// Inspect and steer the runs of a workflow-runtime journal.
#[derive(Debug, Parser)]
#[command(name = "wf", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List runs, newest first: id, workflow, status, steps, retries, cost, age.
    Runs {
        /// The journal file.
        db: PathBuf,
        /// Only runs with this status (pending, running, completed, failed, parked,
        /// budget_exceeded, waiting, cancelled).
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with this tag (repeat for several: all must match).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Print the run records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: its journal as a table of steps, its input and output.
    Show {
        /// The journal file.
        db: PathBuf,
        /// The run id.
        run: String,
        /// Also print the run's history events.
        #[arg(long)]
        history: bool,
        /// Print the run and its steps (and history) as JSON.
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// Write a self-contained HTML timeline of the run to FILE instead.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// What runs cost, grouped by workflow or by a tag's value.
    Cost {
        /// The journal file.
        db: PathBuf,
        /// `workflow`, or `tag:KEY` to group by the value of tag KEY.
        #[arg(long, default_value = "workflow", value_parser = parse_group)]
        by: LedgerGroup,
        /// Only runs created this long ago or later (24h, 30m, 7days).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Print the ledger rows as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per workflow and version, how many runs are running, waiting, parked and finished: a
    /// version can leave the binary once none of its runs is unfinished.
    Versions {
        /// The journal file.
        db: PathBuf,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run: it ends now, for good.
    Cancel {
        /// The journal file.
        db: PathBuf,
        /// The run id.
        run: String,
    },
    /// Queue a failed run again from its failed step.
    Retry {
        /// The journal file.
        db: PathBuf,
        /// The run id.
        run: String,
        /// Retry even when the failed step is at-most-once and its outcome unknown (its
        /// process ended during the call): the call is made again. Check first that it did not
        /// take effect.
        #[arg(long)]
        force: bool,
    },
    /// Queue a parked run again (once its code is fixed).
    Resume {
        /// The journal file.
        db: PathBuf,
        /// The run id.
        run: String,
    },
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    let name = text.trim().to_ascii_lowercase().replace('-', "_");
    serde_json::from_value(serde_json::Value::String(name)).map_err(|_| {
        format!(
            "unknown status {text:?}: use pending, running, completed, failed, parked, budget_exceeded, waiting or cancelled"
        )
    })
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_group(text: &str) -> Result<LedgerGroup, String> {
    match text {
        "workflow" => Ok(LedgerGroup::Workflow),
        _ => match text.strip_prefix("tag:") {
            Some(key) if !key.is_empty() => Ok(LedgerGroup::Tag(key.to_owned())),
            _ => Err(format!("{text:?}: use `workflow` or `tag:KEY`")),
        },
    }
}

fn main() -> ExitCode {
    // redb panics on some damaged files; the journal reader catches those panics and wf
    // reports the file or the record as damaged, so the panic's own trace is only noise.
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|at| at.file().contains("redb")) {
            report_panic(info);
        }
    }));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::failure(format!("cannot start the runtime: {e}")).report(),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => error.report(),
    }
}

impl Command {
    /// The journal file the command works on.
    fn db(&self) -> &Path {
        match self {
            Command::Runs { db, .. }
            | Command::Show { db, .. }
            | Command::Cost { db, .. }
            | Command::Versions { db, .. }
            | Command::Cancel { db, .. }
            | Command::Retry { db, .. }
            | Command::Resume { db, .. } => db,
        }
    }
}

async fn run(command: Command) -> Result<String, CliError> {
    let steering = matches!(
        command,
        Command::Cancel { .. } | Command::Retry { .. } | Command::Resume { .. }
    );
    let source = Source::open(command.db(), steering).await?;
    let result = match command {
        Command::Runs {
            status,
            workflow,
            tags,
            json,
            ..
        } => {
            let filter = RunFilter {
                status,
                workflow,
                tags,
            };
            commands::runs(&source, &filter, json).await
        }
        Command::Show {
            run,
            history,
            json,
            html,
            ..
        } => commands::show(&source, &run, history, json, html.as_deref()).await,
        Command::Cost {
            by, since, json, ..
        } => commands::cost(&source, &by, since, json).await,
        Command::Versions { json, .. } => commands::versions(&source, json).await,
        Command::Cancel { run, .. } => commands::steer(&source, Steer::Cancel, &run).await,
        Command::Retry { run, force, .. } => {
            commands::steer(&source, Steer::Retry { force }, &run).await
        }
        Command::Resume { run, .. } => commands::steer(&source, Steer::Resume, &run).await,
    };
    // Also on error: an engine opened here finishes what it queued and closes the file.
    source.close().await;
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statuses_parse_as_the_journal_spells_them() {
        assert_eq!(
            parse_status("budget-exceeded"),
            Ok(RunStatus::BudgetExceeded)
        );
        assert_eq!(parse_status("Failed"), Ok(RunStatus::Failed));
        assert!(parse_status("done").unwrap_err().contains("completed"));
    }

    #[test]
    fn groups_and_tags_parse() {
        assert_eq!(parse_group("workflow"), Ok(LedgerGroup::Workflow));
        assert_eq!(parse_group("tag:user"), Ok(LedgerGroup::Tag("user".into())));
        assert!(parse_group("tag:").is_err());
        assert_eq!(parse_tag("user=a=b"), Ok(("user".into(), "a=b".into())));
        assert!(parse_tag("=x").is_err());
    }
}
