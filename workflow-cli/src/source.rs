//! Where `wf` reads a journal from, and steers its runs through.
//!
//! redb lets one process hold a journal file. At rest, `wf` reads the file with a
//! [`RedbReader`], which writes nothing to it; the commands that change runs open it with
//! [`Engine::open`] and register no workflow, so nothing resumes: they only change records, as
//! the engine's own methods do. When an engine in another process holds the file,
//! the open fails with [`OpenError::Locked`]; `wf` then reads that engine's admin info file
//! ([`AdminInfo::path_for`]) and asks its admin endpoint, with the token it reads there (every
//! request needs it, reads included).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use workflow_runtime::admin::AdminInfo;
use workflow_runtime::store::RedbReader;
use workflow_runtime::{
    Engine, Error, HistoryEvent, HistoryPage, Inspector, LedgerGroup, LedgerRow, OpenError,
    RunRecord, StepRecord,
};

use crate::error::CliError;
use crate::http::{self, HttpError, percent_encode};

/// The environment variable that overrides the token read from the admin info file.
pub(crate) const TOKEN_VAR: &str = "WF_ADMIN_TOKEN";

/// A command that changes a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steer {
    /// End it now, for good.
    Cancel,
    /// Queue a failed run again from its failed step; with `force`, also when that step is
    /// at-most-once and its outcome unknown.
    Retry {
        /// Make the call of an at-most-once step whose outcome is unknown again.
        force: bool,
    },
    /// Queue a parked run again.
    Resume,
}

impl Steer {
    /// The command's name, as in the endpoint's paths.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Steer::Cancel => "cancel",
            Steer::Retry { .. } => "retry",
            Steer::Resume => "resume",
        }
    }
}

/// A journal reached one way or the other.
pub(crate) struct Source {
    db: PathBuf,
    via: Via,
}

enum Via {
    /// The file at rest, opened here: for reading only, unless the command changes runs.
    Local {
        inspector: Inspector,
        engine: Option<Engine>,
    },
    /// The admin endpoint of the engine that holds the file.
    Remote { info: AdminInfo, info_file: PathBuf },
}

impl Source {
    /// Opens the journal at `db` (for reading only unless `steering`: the command changes
    /// runs), or finds the endpoint of the engine holding it.
    pub(crate) async fn open(db: &Path, steering: bool) -> Result<Source, CliError> {
        // Engine::open would create a missing file: a typo must not leave an empty journal.
        if !db.is_file() {
            let what = if db.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            return Err(CliError::failure(format!(
                "no journal at {}: the path {what}",
                db.display()
            )));
        }
        let db = db.to_path_buf();
        let opened = if steering {
            Engine::open(&db).await.map(|engine| Via::Local {
                inspector: engine.inspector(),
                engine: Some(engine),
            })
        } else {
            // Reads never change the file, not even its header.
            RedbReader::open(&db)
                .map(|reader| Via::Local {
                    inspector: Inspector::new(reader),
                    engine: None,
                })
                .map_err(Error::Open)
        };
        match opened {
            Ok(via) => Ok(Source { db, via }),
            Err(Error::Open(OpenError::Locked { .. })) => {
                let info_file = AdminInfo::path_for(&db);
                let info = AdminInfo::read(&info_file).map_err(|e| {
                    CliError::failure(match e.kind() {
                        std::io::ErrorKind::NotFound => format!(
                            "journal {} is held by another process, which serves no admin endpoint ({} does not exist): call `engine.serve_admin(addr, AdminInfo::path_for(db))` in that process, or stop it to inspect the file at rest",
                            db.display(),
                            info_file.display()
                        ),
                        std::io::ErrorKind::PermissionDenied => format!(
                            "journal {} is held by another process, and its admin info file {} is not readable by this user (it is the engine owner's only)",
                            db.display(),
                            info_file.display()
                        ),
                        _ => format!(
                            "journal {} is held by another process, and its admin info file {} cannot be read: {e}",
                            db.display(),
                            info_file.display()
                        ),
                    })
                })?;
                Ok(Source {
                    db,
                    via: Via::Remote { info, info_file },
                })
            }
            Err(e) => Err(CliError::failure(e.to_string())),
        }
    }

    /// The journal file.
    pub(crate) fn db(&self) -> &Path {
        &self.db
    }

    /// Whether an engine in another process holds the journal.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.via, Via::Remote { .. })
    }

    /// Where the runs were read: `journal.redb` or `the engine at 127.0.0.1:4321`.
    pub(crate) fn describe(&self) -> String {
        match &self.via {
            Via::Local { .. } => self.db.display().to_string(),
            Via::Remote { info, .. } => {
                format!("the engine at {} holding {}", info.addr, self.db.display())
            }
        }
    }

    /// Every run, ordered by id.
    pub(crate) async fn runs(&self) -> Result<Vec<RunRecord>, CliError> {
        match &self.via {
            Via::Local { inspector, .. } => inspector.runs().await.map_err(|e| self.store_error(e)),
            Via::Remote { info, .. } => Ok(self.get(info, "/runs").await?),
        }
    }

    /// The runs whose records are damaged, with what is wrong with each (a file read here;
    /// through an engine's endpoint, none are listed).
    pub(crate) async fn damaged(&self) -> Result<Vec<(String, String)>, CliError> {
        match &self.via {
            Via::Local { inspector, .. } => Ok(inspector
                .damaged_runs()
                .await
                .map_err(|e| self.store_error(e))?
                .into_iter()
                .map(|damaged| (damaged.run_id, damaged.error.to_string()))
                .collect()),
            Via::Remote { .. } => Ok(Vec::new()),
        }
    }

    /// Run `run_id`; an unknown id is an error naming it.
    pub(crate) async fn run(&self, run_id: &str) -> Result<RunRecord, CliError> {
        let found = match &self.via {
            Via::Local { inspector, .. } => inspector
                .run(run_id)
                .await
                .map_err(|e| self.store_error(e))?,
            Via::Remote { info, .. } => {
                match self
                    .get::<RunRecord>(info, &format!("/runs/{}", percent_encode(run_id)))
                    .await
                {
                    Ok(run) => Some(run),
                    Err(e) if e.not_found => None,
                    Err(e) => return Err(e.error),
                }
            }
        };
        found.ok_or_else(|| self.unknown_run(run_id))
    }

    /// The journaled steps of run `run_id`, by sequence number.
    pub(crate) async fn journal(&self, run_id: &str) -> Result<Vec<StepRecord>, CliError> {
        match &self.via {
            Via::Local { inspector, .. } => inspector
                .journal(run_id)
                .await
                .map_err(|e| self.store_error(e)),
            Via::Remote { info, .. } => {
                let path = format!("/runs/{}/journal", percent_encode(run_id));
                self.get(info, &path)
                    .await
                    .map_err(|e| self.or_unknown(e, run_id))
            }
        }
    }

    /// The whole history of run `run_id`, oldest first.
    pub(crate) async fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, CliError> {
        const PAGE: usize = 1000;
        let mut events = Vec::new();
        let mut after = 0;
        // Bounded: a history has a few events per step, and steps are finite.
        for _ in 0..100_000 {
            let page: HistoryPage = match &self.via {
                Via::Local { inspector, .. } => inspector
                    .history(run_id, after, PAGE)
                    .await
                    .map_err(|e| match e {
                        Error::RunNotFound { .. } => self.unknown_run(run_id),
                        e => self.store_error(e),
                    })?,
                Via::Remote { info, .. } => {
                    let path = format!(
                        "/runs/{}/history?after={after}&limit={PAGE}",
                        percent_encode(run_id)
                    );
                    self.get(info, &path)
                        .await
                        .map_err(|e| self.or_unknown(e, run_id))?
                }
            };
            events.extend(page.events);
            match page.next {
                Some(next) if next > after => after = next,
                _ => break,
            }
        }
        Ok(events)
    }

    /// What runs created at or after `since` cost, grouped by `group`.
    pub(crate) async fn ledger(
        &self,
        group: &LedgerGroup,
        since: Option<SystemTime>,
    ) -> Result<Vec<LedgerRow>, CliError> {
        match &self.via {
            Via::Local { inspector, .. } => inspector
                .ledger(group.clone(), since)
                .await
                .map_err(|e| self.store_error(e)),
            Via::Remote { info, .. } => {
                let by = match group {
                    LedgerGroup::Workflow => "workflow".to_owned(),
                    LedgerGroup::Tag(key) => format!("tag:{key}"),
                    other => {
                        return Err(CliError::failure(format!(
                            "the admin endpoint cannot group by {other:?}"
                        )));
                    }
                };
                let mut path = format!("/ledger?by={}", percent_encode(&by));
                if let Some(since) = since {
                    let us = since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros() as u64);
                    path.push_str(&format!("&since_us={us}"));
                }
                self.get(info, &path).await.map_err(|e| e.error)
            }
        }
    }

    /// Sends `command` for run `run_id`; returns whether the run changed.
    pub(crate) async fn steer(&self, command: Steer, run_id: &str) -> Result<bool, CliError> {
        match &self.via {
            Via::Local { engine: None, .. } => Err(CliError::failure(format!(
                "{} needs the journal opened for writing; it was opened for reading",
                command.name()
            ))),
            Via::Local {
                engine: Some(engine),
                ..
            } => {
                let changed = match command {
                    Steer::Cancel => engine.cancel(run_id).await,
                    Steer::Retry { force: false } => engine.retry(run_id).await,
                    Steer::Retry { force: true } => engine.force_retry(run_id).await,
                    Steer::Resume => engine.resume(run_id).await,
                };
                changed.map_err(|e| match e {
                    Error::RunNotFound { .. } => self.unknown_run(run_id),
                    Error::OutcomeUnknown { seq, step, .. } => CliError::failure(format!(
                        "run {run_id} was not retried: it stopped at step `{step}` (#{seq}), which is at-most-once, and its process ended during the call, so whether the call took effect is unknown; a retry calls it again. Check what it did, then `wf retry {} {run_id} --force` to call it again",
                        self.db.display()
                    )),
                    e => self.store_error(e),
                })
            }
            Via::Remote { info, info_file } => {
                let mut path = format!("/runs/{}/{}", percent_encode(run_id), command.name());
                if command == (Steer::Retry { force: true }) {
                    path.push_str("?force=true");
                }
                #[derive(serde::Deserialize)]
                struct Changed {
                    changed: bool,
                }
                match http::request::<Changed>(info.addr, "POST", &path, Some(&token(info))).await {
                    Ok(answer) => Ok(answer.changed),
                    Err(HttpError::Status {
                        status: 401,
                        message,
                    }) => Err(CliError::failure(format!(
                        "{} refused by the engine at {} (401 Unauthorized: {message}); the token is read from {} or ${TOKEN_VAR}",
                        command.name(),
                        info.addr,
                        info_file.display()
                    ))),
                    // A refusal that says why (an at-most-once step's unknown outcome).
                    Err(HttpError::Status {
                        status: 409,
                        message,
                    }) => Err(CliError::failure(message)),
                    Err(e) => Err(self.or_unknown(self.remote_error(e), run_id)),
                }
            }
        }
    }

    /// Lets the engine opened here finish what a command queued and close the file.
    pub(crate) async fn close(self) {
        if let Via::Local {
            engine: Some(engine),
            ..
        } = self.via
        {
            engine.shutdown().await;
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        info: &AdminInfo,
        path: &str,
    ) -> Result<T, RemoteError> {
        http::request(info.addr, "GET", path, Some(&token(info)))
            .await
            .map_err(|e| self.remote_error(e))
    }

    fn remote_error(&self, error: HttpError) -> RemoteError {
        let not_found = matches!(error, HttpError::Status { status: 404, .. });
        let (addr, info_file) = match &self.via {
            Via::Remote { info, info_file } => (info.addr.to_string(), info_file.display()),
            Via::Local { .. } => (String::new(), self.db.display()),
        };
        let message = match &error {
            HttpError::Status {
                status: 401,
                message,
            } => format!(
                "reading {} refused by the engine at {addr} (401 Unauthorized: {message}); the token is read from {info_file} or ${TOKEN_VAR}",
                self.db.display()
            ),
            HttpError::Transport(detail) => format!(
                "journal {} is held by another process, but its admin endpoint at {addr} did not answer ({detail})",
                self.db.display()
            ),
            _ => format!("the engine at {addr} answered: {error}"),
        };
        RemoteError {
            not_found,
            error: CliError::failure(message),
        }
    }

    fn or_unknown(&self, error: RemoteError, run_id: &str) -> CliError {
        if error.not_found {
            self.unknown_run(run_id)
        } else {
            error.error
        }
    }

    fn unknown_run(&self, run_id: &str) -> CliError {
        CliError::failure(format!("no run {run_id:?} in {}", self.describe()))
    }

    fn store_error(&self, error: Error) -> CliError {
        CliError::failure(format!("reading {}: {error}", self.db.display()))
    }
}

/// The token to send: `$WF_ADMIN_TOKEN` if set, else the info file's.
fn token(info: &AdminInfo) -> String {
    std::env::var(TOKEN_VAR).unwrap_or_else(|_| info.token.clone())
}

/// An error of the endpoint, remembering whether it was a 404 (an unknown run).
struct RemoteError {
    not_found: bool,
    error: CliError,
}

impl From<RemoteError> for CliError {
    fn from(error: RemoteError) -> CliError {
        error.error
    }
}
