//! How `wf` fails: a message for stderr and an exit status.

use std::process::ExitCode;

/// A failure of a command, reported as `wf: <message>` on stderr.
#[derive(Debug)]
pub(crate) struct CliError {
    /// What went wrong, and what to do about it when there is something to do.
    pub(crate) message: String,
    /// The exit status: [`FAILURE`](CliError::FAILURE) or [`UNCHANGED`](CliError::UNCHANGED).
    pub(crate) code: u8,
}

impl CliError {
    /// A missing journal, an unknown run, a refused command, an unreachable engine.
    pub(crate) const FAILURE: u8 = 1;
    /// A command the run's status does not allow (cancel a finished run, retry a completed
    /// one): nothing was changed.
    pub(crate) const UNCHANGED: u8 = 3;

    /// A failure.
    pub(crate) fn failure(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: CliError::FAILURE,
        }
    }

    /// A command that changed nothing.
    pub(crate) fn unchanged(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: CliError::UNCHANGED,
        }
    }

    /// Prints the message and turns the error into the process's exit status.
    pub(crate) fn report(self) -> ExitCode {
        eprintln!("wf: {}", self.message);
        ExitCode::from(self.code)
    }
}
