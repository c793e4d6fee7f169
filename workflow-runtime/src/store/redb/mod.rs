//! The embedded default: one redb file.
//!
//! Layout: `workflow_meta` (magic string and format version, written on create and checked on
//! open), `workflow_runs` (run id -> JSON [`RunRecord`]) and `workflow_steps`
//! ((run id, sequence number) -> JSON [`StepRecord`]).
//!
//! Writes go through leader/follower group commit (the `group` module), so concurrent runs
//! share one fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redb::{
    Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    StorageError, TableDefinition, TableHandle,
};
use tokio::sync::oneshot;

mod group;

use self::group::{Op, Writer};

use super::wire::{self, Accept};
use super::{BoxFuture, CreateRun, DamagedRun, Store, Write};
use crate::error::{OpenError, StoreError};
use crate::journal::{InboxEvent, RunRecord, StepRecord};

const META: TableDefinition<&str, &str> = TableDefinition::new("workflow_meta");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_runs");
const STEPS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("workflow_steps");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("workflow_events");

const MAGIC: &str = "workflow-runtime journal";
/// Bumped on any change to the tables or records that an older build would misread.
/// Version 2: records in the `wire` module's checksummed envelope.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The meta key listing the record formats a journal holds: `2`, or `1,2` for a journal created
/// at version 1 (its old records stay as they were written).
const RECORD_FORMATS: &str = "record_formats";

/// A journal in one redb file, with group commit.
pub struct RedbStore {
    path: PathBuf,
    /// The open database. Replaced after a failed write: redb then refuses every operation
    /// ("Previous I/O error occurred") until the database is opened again, and a full disk
    /// that gets space back must not need a restart of the process.
    writer: RwLock<Option<Arc<Writer>>>,
    /// Set by a failed write; the next operation opens the database again first.
    write_failed: AtomicBool,
    accept: Accept,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the journal at `path`, creating it if the file does not exist or is empty.
    ///
    /// Fails without writing anything when the file is not a journal, was written by a newer
    /// format, or is held by another process.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, OpenError> {
        let path = path.as_ref().to_path_buf();
        let is_new = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
        if is_new {
            create_atomically(&path)?;
        } else {
            refuse_foreign_file(&path)?;
        }
        let db = guard_panics(|| Database::open(&path))
            .map_err(|detail| damaged_file(&path, detail))?
            .map_err(|e| open_error(&path, e))?;
        let accept = check_or_initialize(&db, &path)?;
        Ok(RedbStore {
            path,
            writer: RwLock::new(Some(Arc::new(Writer::new(db)))),
            write_failed: AtomicBool::new(false),
            accept,
        })
    }

    /// The open database, opened again first if a write failed since.
    fn writer(&self) -> Result<Arc<Writer>, StoreError> {
        if self.write_failed.load(Ordering::SeqCst) {
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(|| self.reopen())?
                }
                _ => self.reopen()?,
            }
        }
        self.writer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Closes the database after a failed write and opens it again (redb recovers it to its
    /// last commit). Waits, bounded, for the reads and the commit leader still holding the old
    /// one: the file lock is released only when the last lets go.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.writer.write().unwrap_or_else(|p| p.into_inner());
        if !self.write_failed.swap(false, Ordering::SeqCst) {
            return Ok(()); // another caller reopened it meanwhile
        }
        let still_in_use = |slot: &mut Option<Arc<Writer>>, old: Arc<Writer>| {
            *slot = Some(old);
            self.write_failed.store(true, Ordering::SeqCst);
            StoreError::Backend(
                "the journal could not be opened again after a failed write: it is still in use; the next operation tries again".into(),
            )
        };
        if let Some(mut old) = slot.take() {
            old.wait_idle();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(writer) => {
                        drop(writer);
                        break;
                    }
                    Err(shared) if std::time::Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    Err(shared) => return Err(still_in_use(&mut slot, shared)),
                }
            }
        }
        let reopened = guard_panics(|| Database::open(&self.path))
            .map_err(|detail| StoreError::Damaged { detail })
            .and_then(|opened| {
                opened.map_err(|e| {
                    StoreError::Backend(format!(
                        "the journal could not be opened again after a failed write: {e}"
                    ))
                })
            });
        match reopened {
            Ok(db) => {
                *slot = Some(Arc::new(Writer::new(db)));
                Ok(())
            }
            Err(e) => {
                self.write_failed.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Notes a failed write, so that the next operation opens the database again.
    fn note(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(
            StoreError::DiskFull { .. } | StoreError::Backend(_) | StoreError::Damaged { .. },
        ) = &result
        {
            self.write_failed.store(true, Ordering::SeqCst);
        }
        result
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadableDatabase, Accept) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let writer = match self.writer() {
            Ok(writer) => writer,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let accept = self.accept;
        read_blocking(move || f(&writer.db, accept))
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.get_mut().ok().and_then(|w| w.as_ref()) {
            writer.wait_idle();
        }
    }
}

/// Creates a new, initialized journal at `path` so that no crash can leave a half-created file
/// there: redb writes its magic number last, and a file killed before that would read as "not a
/// redb file" forever. The journal is built under a temporary name, synced, then hard-linked
/// into place, which fails instead of replacing a file another process created meanwhile.
fn create_atomically(path: &Path) -> Result<(), OpenError> {
    let storage_error = |detail: String| OpenError::Storage {
        path: path.to_path_buf(),
        detail,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| storage_error("the path names no file".into()))?
        .to_string_lossy()
        .into_owned();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(storage_error(format!(
            "its directory {} does not exist",
            parent.display()
        )));
    }
    let temporary = path.with_file_name(format!(".{file_name}.creating-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    {
        // Errors name the path the user gave, not the hidden temporary one.
        let db = Database::create(&temporary).map_err(|e| open_error(path, e))?;
        initialize(&db).map_err(|e| storage_error(e.to_string()))?;
    }
    // An empty file is what `touch` or a crash before the first write leaves: nothing to keep.
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(path);
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        // Another process created the journal first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(storage_error(format!("cannot create the journal: {e}"))),
    }
    // Make the new directory entry durable too.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn open_error(path: &Path, e: DatabaseError) -> OpenError {
    let path = path.to_path_buf();
    match e {
        DatabaseError::DatabaseAlreadyOpen => OpenError::Locked { path },
        DatabaseError::Storage(StorageError::Corrupted(detail)) => OpenError::NotAJournal {
            path,
            detail: format!("not a valid redb file: {detail}"),
        },
        DatabaseError::UpgradeRequired(version) => OpenError::NotAJournal {
            path,
            detail: format!("a redb file of old file format {version}"),
        },
        // A file too short for redb's header, or whose bytes make no sense to it: not a
        // database at all (nothing was written to it).
        DatabaseError::Storage(StorageError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            OpenError::NotAJournal {
                path,
                detail: format!("not a valid redb file: {e}"),
            }
        }
        other => OpenError::Storage {
            path,
            detail: other.to_string(),
        },
    }
}

fn storage(path: &Path) -> impl Fn(redb::Error) -> OpenError + '_ {
    move |e| OpenError::Storage {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Checks the journal, initializes a new one and upgrades a version-1 one; returns which
/// record formats it holds.
fn check_or_initialize(db: &Database, path: &Path) -> Result<Accept, OpenError> {
    match check_journal(db, path)? {
        Contents::Empty => {
            initialize(db).map_err(storage(path))?;
            Ok(Accept::V2)
        }
        Contents::Journal { version: 1, .. } => {
            upgrade_from_v1(db).map_err(storage(path))?;
            Ok(Accept::V1AndV2)
        }
        Contents::Journal { accept, .. } => Ok(accept),
    }
}

/// What a readable redb file holds.
enum Contents {
    /// No table at all: a file just created.
    Empty,
    /// A journal of a format this build reads.
    Journal {
        /// Its format version.
        version: u32,
        /// The record formats it may hold.
        accept: Accept,
    },
}

/// Refuses, without writing a byte, a file that is not a journal of a format this build
/// reads: redb's writable open may rewrite the header of any redb file (another program's
/// included) before the journal's own checks could run. A file that needs redb's recovery (an
/// engine was killed) cannot be checked without writing: it is left to the writable open.
fn refuse_foreign_file(path: &Path) -> Result<(), OpenError> {
    let opened =
        guard_panics(|| ReadOnlyDatabase::open(path)).map_err(|d| damaged_file(path, d))?;
    match opened {
        Ok(db) => check_journal(&db, path).map(drop),
        Err(DatabaseError::DatabaseAlreadyOpen) => Err(OpenError::Locked {
            path: path.to_path_buf(),
        }),
        Err(DatabaseError::RepairAborted) => Ok(()),
        Err(e) => match open_error(path, e) {
            refused @ OpenError::NotAJournal { .. } => Err(refused),
            // Anything else (a file needing recovery, say) is the writable open's to report.
            _ => Ok(()),
        },
    }
}

/// Runs `f`, turning a panic into an error: redb panics on some damaged files (an index out of
/// range, an unreachable branch), and a damaged file must be an error, never a dead thread.
fn guard_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

fn damaged_file(path: &Path, detail: String) -> OpenError {
    OpenError::NotAJournal {
        path: path.to_path_buf(),
        detail: format!("the file is damaged (redb failed reading it: {detail})"),
    }
}

fn check_journal(db: &dyn ReadableDatabase, path: &Path) -> Result<Contents, OpenError> {
    guard_panics(|| check_journal_unguarded(db, path)).map_err(|d| damaged_file(path, d))?
}

fn check_journal_unguarded(db: &dyn ReadableDatabase, path: &Path) -> Result<Contents, OpenError> {
    let read = db.begin_read().map_err(|e| storage(path)(e.into()))?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| storage(path)(e.into()))?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.is_empty() {
        return Ok(Contents::Empty);
    }
    if !tables.iter().any(|t| t == META.name()) {
        return Err(OpenError::NotAJournal {
            path: path.to_path_buf(),
            detail: format!(
                "a redb database without a `{}` table (it has: {})",
                META.name(),
                tables.join(", ")
            ),
        });
    }
    let meta = read.open_table(META).map_err(|e| storage(path)(e.into()))?;
    let magic = meta
        .get("magic")
        .map_err(|e| storage(path)(e.into()))?
        .map(|v| v.value().to_owned());
    if magic.as_deref() != Some(MAGIC) {
        return Err(OpenError::NotAJournal {
            path: path.to_path_buf(),
            detail: format!("its magic string is {magic:?}, expected {MAGIC:?}"),
        });
    }
    let version = meta
        .get("format_version")
        .map_err(|e| storage(path)(e.into()))?
        .map(|v| v.value().to_owned())
        .unwrap_or_default();
    let found: u32 = version.parse().map_err(|_| OpenError::NotAJournal {
        path: path.to_path_buf(),
        detail: format!("its format version {version:?} is not a number"),
    })?;
    if found > FORMAT_VERSION {
        return Err(OpenError::NewerFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found == 0 {
        return Err(OpenError::NotAJournal {
            path: path.to_path_buf(),
            detail: "its format version is 0".into(),
        });
    }
    let formats = meta
        .get(RECORD_FORMATS)
        .map_err(|e| storage(path)(e.into()))?
        .map(|v| v.value().to_owned());
    let accept = if found == 1 || formats.is_some_and(|f| f.split(',').any(|v| v == "1")) {
        Accept::V1AndV2
    } else {
        Accept::V2
    };
    Ok(Contents::Journal {
        version: found,
        accept,
    })
}

/// A journal file opened for reading only: nothing is written to it, not even on open, so
/// tools (`wf`, an [`Inspector`](crate::Inspector)) can read a file at rest without changing
/// a byte of it. Starting runs and committing are refused with [`StoreError::ReadOnly`].
pub struct RedbReader {
    path: PathBuf,
    db: Arc<ReadOnlyDatabase>,
    accept: Accept,
}

impl std::fmt::Debug for RedbReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbReader")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbReader {
    /// Opens the journal at `path` for reading. A missing file, a file that is not a journal
    /// (an empty redb file included), and a file held by an engine are errors.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbReader, OpenError> {
        let path = path.as_ref().to_path_buf();
        let db = guard_panics(|| ReadOnlyDatabase::open(&path))
            .map_err(|detail| damaged_file(&path, detail))?
            .map_err(|e| open_error(&path, e))?;
        match check_journal(&db, &path)? {
            Contents::Journal { accept, .. } => Ok(RedbReader {
                path,
                db: Arc::new(db),
                accept,
            }),
            Contents::Empty => Err(OpenError::NotAJournal {
                path,
                detail: "an empty redb file".into(),
            }),
        }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadableDatabase, Accept) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let db = Arc::clone(&self.db);
        let accept = self.accept;
        read_blocking(move || f(&*db, accept))
    }
}

fn initialize(db: &Database) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("magic", MAGIC)?;
        meta.insert("format_version", FORMAT_VERSION.to_string().as_str())?;
        meta.insert(RECORD_FORMATS, "2")?;
        tx.open_table(RUNS)?;
        tx.open_table(STEPS)?;
        tx.open_table(EVENTS)?;
    }
    tx.commit()?;
    Ok(())
}

/// Marks a version-1 journal as version 2, in one transaction: its records stay as they were
/// written and still read; new ones are written in version 2. A build that reads only version 1
/// refuses the file from then on, as it would misread the new records.
fn upgrade_from_v1(db: &Database) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("format_version", FORMAT_VERSION.to_string().as_str())?;
        meta.insert(RECORD_FORMATS, "1,2")?;
        tx.open_table(EVENTS)?;
    }
    tx.commit()?;
    Ok(())
}

/// A run to create, encoded on the caller's task (so the commit leader only writes bytes).
pub(super) struct NewRun {
    run_id: String,
    bytes: Vec<u8>,
    /// To decode an existing run under the same id.
    accept: Accept,
}

/// One write of a commit batch, encoded on the caller's task.
pub(super) enum EncodedWrite {
    Run {
        run_id: String,
        bytes: Vec<u8>,
    },
    Step {
        run_id: String,
        seq: u64,
        bytes: Vec<u8>,
    },
    Event {
        run_id: String,
        arrival: u64,
        bytes: Vec<u8>,
    },
    DeleteStep {
        run_id: String,
        seq: u64,
    },
    ConsumeEvent {
        run_id: String,
        arrival: u64,
    },
}

fn encode_writes(writes: Vec<Write>) -> Result<Vec<EncodedWrite>, StoreError> {
    writes
        .into_iter()
        .map(|write| {
            Ok(match write {
                Write::Run(run) => EncodedWrite::Run {
                    bytes: wire::encode_run(&run)?,
                    run_id: run.run_id,
                },
                Write::Step { run_id, step } => EncodedWrite::Step {
                    bytes: wire::encode_step(&run_id, &step)?,
                    seq: step.seq,
                    run_id,
                },
                Write::Event(event) => EncodedWrite::Event {
                    bytes: wire::encode_event(&event)?,
                    arrival: event.arrival,
                    run_id: event.run_id,
                },
                Write::DeleteStep { run_id, seq } => EncodedWrite::DeleteStep { run_id, seq },
                Write::ConsumeEvent { run_id, arrival } => {
                    EncodedWrite::ConsumeEvent { run_id, arrival }
                }
            })
        })
        .collect()
}

/// Applies every op of `batch` in one durable transaction; returns the outcome of each create.
/// A panic inside redb (a damaged file) is an error of the whole batch.
fn write_batch(
    db: &Database,
    batch: &[Op],
) -> Result<Vec<Result<CreateRun, StoreError>>, StoreError> {
    match guard_panics(|| write_batch_unguarded(db, batch)) {
        Ok(result) => result.map_err(write_error),
        Err(panic) => Err(StoreError::Damaged {
            detail: format!("redb failed writing it: {panic}"),
        }),
    }
}

/// The error of a failed write, with the cause named when it is the disk's.
fn write_error(error: redb::Error) -> StoreError {
    if let redb::Error::Io(io) = &error
        && let Some(code) = io.raw_os_error()
        // ENOSPC, EFBIG (a file-size limit), EDQUOT (a quota).
        && matches!(code, 28 | 27 | 122)
    {
        return StoreError::DiskFull {
            detail: error.to_string(),
        };
    }
    StoreError::Backend(error.to_string())
}

fn write_batch_unguarded(
    db: &Database,
    batch: &[Op],
) -> Result<Vec<Result<CreateRun, StoreError>>, redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    let mut created = Vec::new();
    {
        // Tables are opened on first use: most commits touch only the steps table, and each
        // open costs a lookup.
        let mut runs = None;
        let mut steps = None;
        let mut events = None;
        for op in batch {
            match op {
                Op::Create(run, _) => {
                    let runs = open(&tx, &mut runs, RUNS)?;
                    let existing = runs
                        .get(run.run_id.as_str())?
                        .map(|bytes| wire::decode_run(&run.run_id, bytes.value(), run.accept));
                    match existing {
                        Some(Ok(existing)) => {
                            created.push(Ok(CreateRun::Existing(Box::new(existing))))
                        }
                        // A damaged record is never overwritten: report it to this caller.
                        Some(Err(e)) => created.push(Err(e)),
                        None => {
                            runs.insert(run.run_id.as_str(), run.bytes.as_slice())?;
                            created.push(Ok(CreateRun::Created));
                        }
                    }
                }
                Op::Commit(writes, _) => {
                    for write in writes {
                        match write {
                            EncodedWrite::Run { run_id, bytes } => {
                                open(&tx, &mut runs, RUNS)?
                                    .insert(run_id.as_str(), bytes.as_slice())?;
                            }
                            EncodedWrite::Step { run_id, seq, bytes } => {
                                open(&tx, &mut steps, STEPS)?
                                    .insert((run_id.as_str(), *seq), bytes.as_slice())?;
                            }
                            EncodedWrite::Event {
                                run_id,
                                arrival,
                                bytes,
                            } => {
                                open(&tx, &mut events, EVENTS)?
                                    .insert((run_id.as_str(), *arrival), bytes.as_slice())?;
                            }
                            EncodedWrite::DeleteStep { run_id, seq } => {
                                open(&tx, &mut steps, STEPS)?.remove((run_id.as_str(), *seq))?;
                            }
                            EncodedWrite::ConsumeEvent { run_id, arrival } => {
                                open(&tx, &mut events, EVENTS)?
                                    .remove((run_id.as_str(), *arrival))?;
                            }
                        }
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok(created)
}

fn open<'s, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &'t redb::WriteTransaction,
    slot: &'s mut Option<redb::Table<'t, K, V>>,
    definition: TableDefinition<K, V>,
) -> Result<&'s mut redb::Table<'t, K, V>, redb::Error> {
    if slot.is_none() {
        *slot = Some(tx.open_table(definition)?);
    }
    slot.as_mut()
        .ok_or_else(|| redb::Error::Corrupted("table slot".into()))
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

// The reads of a journal file, shared by the store that writes it and the one that only reads.

fn read_run(
    db: &dyn ReadableDatabase,
    accept: Accept,
    run_id: &str,
) -> Result<Option<RunRecord>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let runs = tx.open_table(RUNS).map_err(backend)?;
    let found = runs.get(run_id).map_err(backend)?;
    found
        .map(|bytes| wire::decode_run(run_id, bytes.value(), accept))
        .transpose()
}

/// Every run record, each decoded on its own: a damaged record is an `Err` in its place, and
/// the others still read.
fn scan_runs(
    db: &dyn ReadableDatabase,
    accept: Accept,
) -> Result<Vec<Result<RunRecord, DamagedRun>>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let runs = tx.open_table(RUNS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in runs.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let run_id = key.value();
        out.push(
            wire::decode_run(run_id, value.value(), accept).map_err(|error| DamagedRun {
                run_id: run_id.to_owned(),
                error,
            }),
        );
    }
    Ok(out)
}

fn read_steps(
    db: &dyn ReadableDatabase,
    accept: Accept,
    run_id: &str,
) -> Result<Vec<StepRecord>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let steps = tx.open_table(STEPS).map_err(backend)?;
    let mut out = Vec::new();
    let range = steps
        .range((run_id, 0)..=(run_id, u64::MAX))
        .map_err(backend)?;
    for entry in range {
        let (key, value) = entry.map_err(backend)?;
        let seq = key.value().1;
        out.push(wire::decode_step(run_id, seq, value.value(), accept)?);
    }
    Ok(out)
}

fn read_events(
    db: &dyn ReadableDatabase,
    accept: Accept,
    run_id: &str,
) -> Result<Vec<InboxEvent>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let events = match tx.open_table(EVENTS) {
        Ok(events) => events,
        // Journals created before events existed have no table: no events.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(backend(e)),
    };
    let mut out = Vec::new();
    let range = events
        .range((run_id, 0)..=(run_id, u64::MAX))
        .map_err(backend)?;
    for entry in range {
        let (key, value) = entry.map_err(backend)?;
        let arrival = key.value().1;
        out.push(wire::decode_event(run_id, arrival, value.value(), accept)?);
    }
    Ok(out)
}

/// Runs a read of the file on tokio's blocking threads (redb reads block on file I/O), with a
/// panic inside redb (a damaged file) turned into an error.
fn read_blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(async move {
        match tokio::task::spawn_blocking(move || guard_panics(read)).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(StoreError::Damaged {
                detail: format!("redb failed reading it: {panic}"),
            }),
            Err(e) if e.is_cancelled() => Err(StoreError::Closed),
            Err(e) => Err(StoreError::Backend(format!(
                "journal read task failed: {e}"
            ))),
        }
    })
}

/// The reads both redb stores answer the same way.
macro_rules! redb_reads {
    () => {
        fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
            self.read(move |db, accept| read_run(db, accept, &run_id))
        }

        fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
            self.read(|db, accept| Ok(scan_runs(db, accept)?.into_iter().flatten().collect()))
        }

        fn list_damaged_runs(&self) -> BoxFuture<'_, Result<Vec<DamagedRun>, StoreError>> {
            self.read(|db, accept| {
                Ok(scan_runs(db, accept)?
                    .into_iter()
                    .filter_map(Result::err)
                    .collect())
            })
        }

        fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
            self.read(move |db, accept| read_steps(db, accept, &run_id))
        }

        fn load_events(
            &self,
            run_id: String,
        ) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
            self.read(move |db, accept| read_events(db, accept, &run_id))
        }
    };
}

impl Store for RedbStore {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async move {
            let new = NewRun {
                bytes: wire::encode_run(&run)?,
                run_id: run.run_id,
                accept: self.accept,
            };
            let (reply, answer) = oneshot::channel();
            self.writer()?.submit(Op::Create(Box::new(new), reply));
            let created = answer.await.map_err(|_| StoreError::Closed)?;
            if let Err(e) = &created {
                self.note(Err(e.clone()))?;
            }
            created
        })
    }

    redb_reads!();

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let writes = encode_writes(writes)?;
            let (reply, answer) = oneshot::channel();
            self.writer()?.submit(Op::Commit(writes, reply));
            self.note(answer.await.map_err(|_| StoreError::Closed)?)
        })
    }
}

impl Store for RedbReader {
    fn create_run(&self, _run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async { Err(StoreError::ReadOnly) })
    }

    redb_reads!();

    fn commit(&self, _writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Err(StoreError::ReadOnly) })
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;
    use crate::{Engine, Inspector, Workflow, WorkflowFailure, step};

    struct Once;

    impl Workflow for Once {
        type Input = ();
        type Output = u32;
        const NAME: &'static str = "once";
        fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
            Box::pin(async {
                Ok(step("one")
                    .run(|| async { Ok::<_, std::io::Error>(1u32) })
                    .await?)
            })
        }
    }

    /// A journal at rest is read without a byte of it changing, and writes are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_reads_a_journal_at_rest_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        {
            let engine = Engine::open(&path).await.unwrap();
            let run = engine.start::<Once>("r1", ()).await.unwrap();
            assert_eq!(run.result().await.unwrap(), 1);
            engine.shutdown().await;
        }
        let before = std::fs::read(&path).unwrap();
        let reader = RedbReader::open(&path).unwrap();
        let refused = reader.commit(Vec::new()).await;
        assert!(matches!(refused, Err(StoreError::ReadOnly)), "{refused:?}");
        let inspector = Inspector::new(reader);
        let runs = inspector.runs().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(inspector.journal("r1").await.unwrap().len(), 1);
        assert!(
            !inspector
                .history("r1", 0, 100)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        drop(inspector);
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the file is unchanged"
        );

        let missing = RedbReader::open(dir.path().join("nope.redb"));
        assert!(
            missing.is_err(),
            "a missing file is an error, not a new journal"
        );
        assert!(!dir.path().join("nope.redb").exists());
    }
}
