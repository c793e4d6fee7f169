//! A journal that cannot be written (a full disk; here a file-size limit, which fails the
//! write with EFBIG the way a full disk fails it with ENOSPC) says so to every caller, and
//! the engine recovers once there is space, without a restart.
//!
//! One test in its own binary: the file-size limit is the process's.

mod support;

use std::io;
use std::time::Duration;

use support::fail;
use workflow_runtime::{BoxFuture, Engine, Workflow, WorkflowFailure, step};

struct Writer;

impl Workflow for Writer {
    type Input = (usize,);
    type Output = usize;
    const NAME: &'static str = "writer";

    fn run((steps,): (usize,)) -> BoxFuture<'static, Result<usize, WorkflowFailure>> {
        Box::pin(async move {
            let mut total = 0;
            for i in 0..steps {
                let chunk = step("chunk")
                    .run(move || async move {
                        Ok::<_, io::Error>(
                            format!("{i}")
                                .repeat(1)
                                .chars()
                                .chain(std::iter::repeat_n('x', 65536 - format!("{i}").len()))
                                .collect::<String>(),
                        )
                    })
                    .await
                    .map_err(fail)?;
                total += chunk.len();
            }
            Ok(total)
        })
    }
}

fn limit_file_size(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain libc calls with valid arguments; SIGXFSZ ignored so that an oversized
    // write fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_named_to_every_caller_and_the_engine_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let engine = Engine::open(&path).await.unwrap();
    let small = engine.start::<Writer>("before", (1,)).await.unwrap();
    assert_eq!(small.result().await.unwrap(), 65536);

    let size = std::fs::metadata(&path).unwrap().len();
    limit_file_size(size + 256 * 1024);
    let big = engine.start::<Writer>("big", (64,)).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), big.result())
        .await
        .expect("result() answers")
        .expect_err("the journal cannot grow");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains("disk is full"), "{message}");

    limit_file_size(libc::RLIM_INFINITY);
    assert!(engine.resume("big").await.unwrap(), "the run resumes");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), big.result())
            .await
            .expect("result() answers")
            .unwrap(),
        64 * 65536
    );
    let after = engine.start::<Writer>("after", (2,)).await.unwrap();
    assert_eq!(after.result().await.unwrap(), 2 * 65536);
    // Nothing journaled before the failure was lost, and the resumed run is whole.
    assert_eq!(engine.journal("before").await.unwrap().len(), 1);
    assert_eq!(engine.journal("big").await.unwrap().len(), 64);
}
