//! The embedded default: one redb file.
//!
//! Layout: `workflow_meta` (magic string and format version, written on create and checked on
//! open), `workflow_runs` (run id -> JSON [`RunRecord`]) and `workflow_steps`
//! ((run id, sequence number) -> JSON [`StepRecord`]).
//!
//! Writes go through leader/follower group commit (the `group` module), so concurrent runs
//! share one fsync.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    StorageError, TableDefinition, TableHandle,
};
use tokio::sync::oneshot;

mod group;

use self::group::{Op, Writer};

use super::{BoxFuture, CreateRun, Store, Write};
use crate::error::{OpenError, StoreError};
use crate::journal::{InboxEvent, RunRecord, StepRecord};

const META: TableDefinition<&str, &str> = TableDefinition::new("workflow_meta");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflow_runs");
const STEPS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("workflow_steps");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("workflow_events");

const MAGIC: &str = "workflow-runtime journal";
/// Bumped on any change to the tables or records that an older build would misread.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A journal in one redb file, with group commit.
pub struct RedbStore {
    path: PathBuf,
    writer: Arc<Writer>,
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
        }
        let db = Database::open(&path).map_err(|e| open_error(&path, e))?;
        check_or_initialize(&db, &path)?;
        Ok(RedbStore {
            path,
            writer: Arc::new(Writer::new(db)),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ReadableDatabase) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let writer = Arc::clone(&self.writer);
        read_blocking(move || f(&writer.db))
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.writer.wait_idle();
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
    let temporary = path.with_file_name(format!(".{file_name}.creating-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    {
        let db = Database::create(&temporary).map_err(|e| open_error(&temporary, e))?;
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

fn check_or_initialize(db: &Database, path: &Path) -> Result<(), OpenError> {
    match check_journal(db, path)? {
        Contents::Empty => initialize(db).map_err(storage(path)),
        Contents::Journal => Ok(()),
    }
}

/// What a readable redb file holds.
enum Contents {
    /// No table at all: a file just created.
    Empty,
    /// A journal of a format this build reads.
    Journal,
}

fn check_journal(db: &dyn ReadableDatabase, path: &Path) -> Result<Contents, OpenError> {
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
    Ok(Contents::Journal)
}

/// A journal file opened for reading only: nothing is written to it, not even on open, so
/// tools (`wf`, an [`Inspector`](crate::Inspector)) can read a file at rest without changing
/// a byte of it. Starting runs and committing are refused with [`StoreError::ReadOnly`].
pub struct RedbReader {
    path: PathBuf,
    db: Arc<ReadOnlyDatabase>,
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
        let db = ReadOnlyDatabase::open(&path).map_err(|e| open_error(&path, e))?;
        match check_journal(&db, &path)? {
            Contents::Journal => Ok(RedbReader {
                path,
                db: Arc::new(db),
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
        f: impl FnOnce(&dyn ReadableDatabase) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let db = Arc::clone(&self.db);
        read_blocking(move || f(&*db))
    }
}

impl Store for RedbReader {
    fn create_run(&self, _run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async { Err(StoreError::ReadOnly) })
    }

    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        self.read(move |db| read_run(db, &run_id))
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        self.read(read_runs)
    }

    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        self.read(move |db| read_steps(db, &run_id))
    }

    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
        self.read(move |db| read_events(db, &run_id))
    }

    fn commit(&self, _writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Err(StoreError::ReadOnly) })
    }
}

fn initialize(db: &Database) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("magic", MAGIC)?;
        meta.insert("format_version", FORMAT_VERSION.to_string().as_str())?;
        tx.open_table(RUNS)?;
        tx.open_table(STEPS)?;
        tx.open_table(EVENTS)?;
    }
    tx.commit()?;
    Ok(())
}

/// Applies every op of `batch` in one durable transaction; returns the outcome of each create.
fn write_batch(
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
                        .map(|bytes| decode_run(&run.run_id, bytes.value()));
                    match existing {
                        Some(Ok(existing)) => {
                            created.push(Ok(CreateRun::Existing(Box::new(existing))))
                        }
                        // A damaged record is never overwritten: report it to this caller.
                        Some(Err(e)) => created.push(Err(e)),
                        None => {
                            runs.insert(run.run_id.as_str(), encode(run).as_slice())?;
                            created.push(Ok(CreateRun::Created));
                        }
                    }
                }
                Op::Commit(writes, _) => {
                    for write in writes {
                        match write {
                            Write::Run(run) => {
                                open(&tx, &mut runs, RUNS)?
                                    .insert(run.run_id.as_str(), encode(run).as_slice())?;
                            }
                            Write::Step { run_id, step } => {
                                open(&tx, &mut steps, STEPS)?
                                    .insert((run_id.as_str(), step.seq), encode(step).as_slice())?;
                            }
                            Write::Event(event) => {
                                let key = (event.run_id.as_str(), event.arrival);
                                open(&tx, &mut events, EVENTS)?
                                    .insert(key, encode(event).as_slice())?;
                            }
                            Write::DeleteStep { run_id, seq } => {
                                open(&tx, &mut steps, STEPS)?.remove((run_id.as_str(), *seq))?;
                            }
                            Write::ConsumeEvent { run_id, arrival } => {
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

fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    // Records are plain structs of strings, numbers and already-encoded JSON: they always
    // serialize.
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode_run(run_id: &str, bytes: &[u8]) -> Result<RunRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::CorruptRecord {
        record: format!("run {run_id:?}"),
        detail: e.to_string(),
    })
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

// The reads of a journal file, shared by the store that writes it and the one that only reads.

fn read_run(db: &dyn ReadableDatabase, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let runs = tx.open_table(RUNS).map_err(backend)?;
    let found = runs.get(run_id).map_err(backend)?;
    found
        .map(|bytes| decode_run(run_id, bytes.value()))
        .transpose()
}

fn read_runs(db: &dyn ReadableDatabase) -> Result<Vec<RunRecord>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let runs = tx.open_table(RUNS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in runs.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        out.push(decode_run(key.value(), value.value())?);
    }
    Ok(out)
}

fn read_steps(db: &dyn ReadableDatabase, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let steps = tx.open_table(STEPS).map_err(backend)?;
    let mut out = Vec::new();
    let range = steps
        .range((run_id, 0)..=(run_id, u64::MAX))
        .map_err(backend)?;
    for entry in range {
        let (key, value) = entry.map_err(backend)?;
        let seq = key.value().1;
        let step: StepRecord =
            serde_json::from_slice(value.value()).map_err(|e| StoreError::CorruptRecord {
                record: format!("run {run_id:?} step #{seq}"),
                detail: e.to_string(),
            })?;
        if step.seq != seq {
            return Err(StoreError::CorruptRecord {
                record: format!("run {run_id:?} step #{seq}"),
                detail: format!("the record says it is step #{}", step.seq),
            });
        }
        out.push(step);
    }
    Ok(out)
}

fn read_events(db: &dyn ReadableDatabase, run_id: &str) -> Result<Vec<InboxEvent>, StoreError> {
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
        let event: InboxEvent =
            serde_json::from_slice(value.value()).map_err(|e| StoreError::CorruptRecord {
                record: format!("run {run_id:?} event #{arrival}"),
                detail: e.to_string(),
            })?;
        out.push(event);
    }
    Ok(out)
}

/// Runs a read of the file on tokio's blocking threads: redb reads block on file I/O.
fn read_blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| StoreError::Backend(format!("journal read task failed: {e}")))?
    })
}

impl Store for RedbStore {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.writer.submit(Op::Create(Box::new(run), reply));
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        self.read(move |db| read_run(db, &run_id))
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        self.read(read_runs)
    }

    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        self.read(move |db| read_steps(db, &run_id))
    }

    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
        self.read(move |db| read_events(db, &run_id))
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.writer.submit(Op::Commit(writes, reply));
            answer.await.map_err(|_| StoreError::Closed)?
        })
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
