//! The ticket-triage agent under the test kit: its resources swapped for fakes, its model's
//! failures injected by step overrides, its approval sent at a virtual time, and a crash at
//! every commit point. Virtual time: a day's wait takes no real time.

#[path = "../examples/ticket_triage.rs"]
#[allow(dead_code)]
mod ticket_triage;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticket_triage::{
    Approval, Desk, Draft, HelpDesk, Model, Resolution, configure, serve_help_desk, triage_ticket,
};
use workflow_runtime::testing::{CrashCheck, StepOverride, TestEngine};
use workflow_runtime::{Engine, Error, ErrorClass, RunStatus, Usage};

/// A test engine with the agent's configuration: the help desk on a loopback port (real I/O,
/// during which the test engine's clock flows at real speed), a model without latency or
/// failures of its own (the tests inject those), the example's directory.
async fn agent() -> (TestEngine, Arc<Mutex<Desk>>) {
    let desk = Arc::new(Mutex::new(Desk::sample()));
    let (address, _server) = serve_help_desk(Arc::clone(&desk)).await.unwrap();
    let model = Model::simulated(Duration::ZERO, 0.0);
    let test = TestEngine::with(configure(Engine::builder(), HelpDesk::new(address), model));
    (test, desk)
}

fn replies(desk: &Mutex<Desk>) -> Vec<(u64, String)> {
    let desk = desk.lock().unwrap();
    desk.replies
        .iter()
        .map(|(id, _, text)| (*id, text.clone()))
        .collect()
}

fn approved() -> Approval {
    Approval {
        approved: true,
        by: "sam".into(),
    }
}

#[tokio::test]
async fn a_429_waits_its_retry_after_and_an_approved_refund_is_replied_once() {
    let (test, desk) = agent().await;
    let rate_limited = ErrorClass::RateLimited {
        retry_after: Some(Duration::from_secs(30)),
    };
    test.override_step(
        "classify",
        StepOverride::running_body().failing_on(1, rate_limited),
    );
    let run = test.start::<triage_ticket>("t-7", (7,)).await.unwrap();

    // The $120 refund waits for a person; the run leaves memory at once.
    let waiting = test.settled("t-7").await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert!(
        test.elapsed() >= Duration::from_secs(30),
        "{:?}",
        test.elapsed()
    );
    let hour = Duration::from_secs(3_600);
    test.send_event_at(hour, "t-7", "approval", approved());

    let resolution = run.result().await.unwrap();
    assert_eq!(
        resolution,
        Resolution::Replied {
            reply_id: "reply-7-1".into(),
            refund_usd: 120
        }
    );
    assert!(test.elapsed() >= hour);
    assert_eq!(
        test.attempts("t-7"),
        [
            "fetch_ticket#1 ok",
            "classify#1 rate_limited",
            "classify#2 ok",
            "lookup_account#1 ok",
            "lookup_orders#1 ok",
            "search_articles#1 ok",
            "draft_reply#1 ok",
            "post_reply#1 ok",
        ]
    );
    let posted = replies(&desk);
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(posted[0].1.contains("We refund $120."), "{posted:?}");
}

#[tokio::test]
async fn a_lookup_that_hangs_past_its_timeout_is_tried_again() {
    let (test, desk) = agent().await;
    // The first attempt takes a minute; the step's timeout is 5 s.
    test.override_step(
        "lookup_orders",
        StepOverride::running_body().taking_on(1, Duration::from_secs(60)),
    );
    let run = test.start::<triage_ticket>("t-9", (9,)).await.unwrap();
    let resolution = run.result().await.unwrap();
    assert!(matches!(
        resolution,
        Resolution::Replied { refund_usd: 0, .. }
    ));
    let attempts = test.attempts("t-9");
    assert!(
        attempts.starts_with(&["fetch_ticket#1 ok".into(), "classify#1 ok".into()])
            && attempts.contains(&"lookup_orders#1 dropped".into())
            && attempts.contains(&"lookup_orders#2 ok".into()),
        "{attempts:?}"
    );
    let steps = test.steps("t-9").await.unwrap();
    assert!(
        steps.contains(&"lookup_orders completed after 2 attempts".into()),
        "{steps:?}"
    );
    let history = test.history_lines("t-9").await.unwrap();
    assert!(
        history
            .iter()
            .any(|line| line.contains("lookup_orders: attempt 1 timed out")),
        "{history:?}"
    );
    assert_eq!(replies(&desk).len(), 1);
}

#[tokio::test]
async fn a_model_that_keeps_failing_is_stopped_by_the_cost_budget() {
    let (test, desk) = agent().await;
    // Each attempt of the draft bills 2 cents and gets a 503: the third passes the 5 cent cap.
    let draft = Draft {
        text: "never sent".into(),
        refund_usd: 0,
    };
    test.override_step(
        "draft_reply",
        StepOverride::returning(draft)
            .failing_always(ErrorClass::Server { status: 503 })
            .reporting(Usage::tokens("sim-llm-1", 2_000, 500).with_cost_usd(0.02)),
    );
    let run = test.start::<triage_ticket>("t-8", (8,)).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(matches!(error, Error::BudgetExceeded { .. }), "{error}");
    assert_eq!(
        test.settled("t-8").await.unwrap().status,
        RunStatus::BudgetExceeded
    );
    let attempts = test.attempts("t-8");
    assert_eq!(
        attempts[attempts.len() - 3..],
        [
            "draft_reply#1 server",
            "draft_reply#2 server",
            "draft_reply#3 server"
        ]
    );
    let spent = test.spent("t-8").await.unwrap();
    assert!(spent.cost_usd > 0.05 && spent.retries == 2, "{spent}");
    assert_eq!(replies(&desk), []);
}

#[tokio::test]
async fn no_answer_within_a_day_escalates_the_refund() {
    let (test, desk) = agent().await;
    let run = test.start::<triage_ticket>("t-7", (7,)).await.unwrap();
    let resolution = run.result().await.unwrap();
    assert_eq!(
        resolution,
        Resolution::Escalated {
            reason: "no approval within a day for $120".into()
        }
    );
    let day = Duration::from_secs(24 * 3_600);
    assert!(test.elapsed() >= day && test.elapsed() < day + Duration::from_secs(60));
    assert_eq!(replies(&desk), []);
}

/// A crash after every commit point, and during every commit (a step's effect done, its
/// outcome lost), with the lookups finishing in several orders: each resumed run ends as the
/// uninterrupted one, except where a crash during the reply leaves its outcome unknown, which
/// the checker accepts as the at-most-once promise kept.
#[tokio::test]
async fn a_crash_anywhere_resumes_to_the_same_reply() {
    // The simulated processes have no sockets: the help desk's two calls are mocks.
    let ticket = Desk::sample().tickets[&7].clone();
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
    let report = CrashCheck::new::<triage_ticket>((7,))
        .with_engine(move |builder| {
            configure(
                builder,
                HelpDesk::new(nowhere),
                Model::simulated(Duration::ZERO, 0.0),
            )
        })
        .override_step("fetch_ticket", StepOverride::returning(ticket))
        .override_step("post_reply", StepOverride::returning("reply-7-1"))
        .with_event("approval", approved(), Duration::from_secs(3_600))
        .with_seeds(0..2)
        .run()
        .await;
    report.assert_ok();
    assert!(report.crash_points() >= 20, "{report}");
    // Per seed, the crash just after the reply's intent is journaled and the one that loses
    // its outcome after the call: each resumed run says the outcome is unknown and does not
    // reply again.
    assert_eq!(report.unknown_outcomes(), 4, "{report}");
}
