//! `wf show --html`: the timeline page, rendered by headless Chromium (Debian's `chromium`).
//!
//! The DOM that Chromium parsed must hold one `.attempt` per attempt, one `.wait` per retry,
//! a cost label per step and the run's header; a screenshot is kept as the test artifact
//! `target/wf-timeline.png`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{order_journal, run_bounded, wf};
use workflow_runtime::{Engine, StepRecord};

const INSTALL: &str = "headless Chromium renders the timeline page in this test, and it is not installed: \
install Debian's package with `apt-get install -y chromium` (CI's .ci/run runs \
`command -v chromium || (apt-get update && apt-get install -y chromium)`), or point WF_CHROMIUM at a Chromium binary";

/// The Chromium binary: `$WF_CHROMIUM`, else `chromium` (or `chromium-browser`) on the PATH.
///
/// Absent in CI (`CI` set, as `.ci/run` runs), the test fails saying how to install it: there
/// it must not pass without rendering. On a developer's machine with only Rust installed,
/// `cargo test --workspace` must still pass, so there the test says loudly that it rendered
/// nothing and returns `None`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WF_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{INSTALL}");
        eprintln!("SKIPPED the headless-Chromium check of the timeline: {INSTALL}");
    }
    found
}

/// Runs headless Chromium on `page` with `extra` arguments, in a fresh profile, for at most
/// two minutes; returns its standard output.
fn chromium_run(chromium: &Path, page: &Path, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let url = format!("file://{}", page.display());
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        &profile_arg,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run_bounded(chromium, &args, &[], Duration::from_secs(120));
    assert_eq!(
        out.code,
        Some(0),
        "chromium {args:?} failed\nstderr:\n{}",
        out.stderr
    );
    out.stdout
}

/// An element of the page: its tag, attributes and the text right after its start tag.
#[derive(Debug)]
struct Element {
    attrs: HashMap<String, String>,
    text: String,
}

impl Element {
    fn has_class(&self, class: &str) -> bool {
        self.attrs
            .get("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }

    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }
}

/// The start tags of an HTML serialization (as `--dump-dom` prints it), with quoted
/// attribute values that may hold `<` or `>`.
fn parse_elements(html: &str) -> Vec<Element> {
    let bytes = html.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        i += offset + 1;
        if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'>' | b'/' | b'\n') {
            i += 1;
        }
        let mut attrs = HashMap::new();
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' || bytes[i] == b'/' {
                break;
            }
            let name_start = i;
            while i < bytes.len() && !matches!(bytes[i], b'=' | b' ' | b'>' | b'\n') {
                i += 1;
            }
            let name = html[name_start..i].to_ascii_lowercase();
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                i += 1;
                let quote = bytes[i];
                i += 1;
                let end = html[i..].find(quote as char).map_or(html.len(), |e| i + e);
                value = html[i..end].replace("&amp;", "&").replace("&quot;", "\"");
                i = end + 1;
            }
            attrs.insert(name, value);
        }
        let text_start = html[i..].find('>').map_or(html.len(), |e| i + e + 1);
        let text_end = html[text_start..]
            .find('<')
            .map_or(html.len(), |e| text_start + e);
        found.push(Element {
            attrs,
            text: html[text_start..text_end].to_owned(),
        });
        i = text_start;
    }
    found
}

async fn journal_of(db: &Path, run_id: &str) -> Vec<StepRecord> {
    let engine = Engine::open(db).await.unwrap();
    let steps = engine.journal(run_id).await.unwrap();
    engine.shutdown().await;
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_timeline_draws_attempts_waits_and_costs_in_headless_chromium() {
    // Before anything else, so that a missing Chromium fails fast (in CI) and says why.
    let Some(chromium_path) = chromium() else {
        return;
    };
    assert!(chromium_path.is_file(), "{INSTALL}");
    let dir = tempfile::tempdir().unwrap();
    let db = order_journal(dir.path()).await;
    let steps = journal_of(&db, "order-ok").await;
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let page = target.join("wf-timeline.html");
    let said = wf(&[
        "show",
        db.to_str().unwrap(),
        "order-ok",
        "--html",
        page.to_str().unwrap(),
    ])
    .ok();
    assert!(said.contains("(2 steps, 4 attempts)"), "{said}");

    let dom = chromium_run(&chromium_path, &page, &["--dump-dom"]);
    let elements = parse_elements(&dom);
    let header = elements
        .iter()
        .find(|e| e.has_class("run-header"))
        .unwrap_or_else(|| panic!("no .run-header in\n{dom}"));
    assert_eq!(header.attr("data-run-id"), "order-ok");
    assert_eq!(header.attr("data-workflow"), "order");
    assert_eq!(header.attr("data-status"), "completed");
    let total = elements
        .iter()
        .find(|e| e.has_class("total-cost"))
        .expect("a .total-cost");
    assert_eq!(total.text, "total $0.005000");

    // One bar per attempt, numbered, per step.
    let attempts: Vec<&Element> = elements.iter().filter(|e| e.has_class("attempt")).collect();
    let journaled: u32 = steps.iter().map(|s| s.attempts).sum();
    assert_eq!(
        attempts.len(),
        journaled as usize,
        "one .attempt per attempt"
    );
    assert_eq!(attempts.len(), 4);
    for step in &steps {
        let numbers: Vec<&str> = attempts
            .iter()
            .filter(|a| a.attr("data-seq") == step.seq.to_string())
            .map(|a| a.attr("data-attempt"))
            .collect();
        let expected: Vec<String> = (1..=step.attempts).map(|n| n.to_string()).collect();
        assert_eq!(numbers, expected, "attempts of step #{}", step.seq);
    }
    assert_eq!(attempts.iter().filter(|a| a.has_class("failed")).count(), 2);
    assert_eq!(attempts.iter().filter(|a| a.has_class("ok")).count(), 2);

    // One wait per retry, with its journaled length written on it.
    let waits: Vec<&Element> = elements.iter().filter(|e| e.has_class("wait")).collect();
    let retries: u32 = steps.iter().map(|s| s.attempts - 1).sum();
    assert_eq!(waits.len(), retries as usize, "one .wait per retry");
    for (wait, after) in waits.iter().zip(["1", "2"]) {
        assert_eq!(wait.attr("data-seq"), "0");
        assert_eq!(wait.attr("data-after-attempt"), after);
        assert_eq!(wait.attr("data-wait-us"), "40000");
    }
    let wait_labels: Vec<&str> = elements
        .iter()
        .filter(|e| e.has_class("wait-label"))
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(wait_labels, ["wait 40ms", "wait 40ms"]);

    // A cost and a token label per step.
    for step in &steps {
        let seq = step.seq.to_string();
        let cost = elements
            .iter()
            .find(|e| e.has_class("cost") && e.attr("data-seq") == seq)
            .unwrap_or_else(|| panic!("no .cost for step #{seq}"));
        assert_eq!(cost.text, format!("${:.6}", step.usage.cost_usd));
        let tokens = elements
            .iter()
            .find(|e| e.has_class("tokens") && e.attr("data-seq") == seq)
            .unwrap_or_else(|| panic!("no .tokens for step #{seq}"));
        let total = step.usage.input_tokens + step.usage.output_tokens;
        assert_eq!(tokens.attr("data-tokens"), total.to_string());
        assert!(
            tokens.text.starts_with(&format!("{total} tok")),
            "{}",
            tokens.text
        );
    }

    // The bars are placed in proportion to time: the second attempt starts after the first
    // attempt and its wait.
    let left = |e: &Element| -> f64 {
        let style = e.attr("style");
        let value = style
            .split(';')
            .find_map(|p| p.trim().strip_prefix("left:"))
            .and_then(|v| v.trim().strip_suffix('%'))
            .unwrap_or_else(|| panic!("no left in {style:?}"));
        value.parse().unwrap()
    };
    assert!(left(attempts[0]) < left(waits[0]) && left(waits[0]) < left(attempts[1]));
    assert!(left(attempts[1]) < left(waits[1]) && left(waits[1]) < left(attempts[2]));
    assert!(left(attempts[2]) < left(attempts[3]));

    // The page loads nothing.
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(
            !dom.contains(external),
            "the page must be self-contained: {external}"
        );
    }

    // A failed run: one failed attempt, no wait.
    let failed_page = target.join("wf-timeline-failed.html");
    wf(&[
        "show",
        db.to_str().unwrap(),
        "refund-bad",
        "--html",
        failed_page.to_str().unwrap(),
    ])
    .ok();
    let failed = parse_elements(&chromium_run(&chromium_path, &failed_page, &["--dump-dom"]));
    let failed_attempts: Vec<&Element> = failed.iter().filter(|e| e.has_class("attempt")).collect();
    assert_eq!(failed_attempts.len(), 1);
    assert!(failed_attempts[0].has_class("failed"));
    assert_eq!(failed.iter().filter(|e| e.has_class("wait")).count(), 0);
    let header = failed.iter().find(|e| e.has_class("run-header")).unwrap();
    assert_eq!(header.attr("data-status"), "failed");

    // The screenshot, kept as the test's artifact.
    let png = target.join("wf-timeline.png");
    let _ = std::fs::remove_file(&png);
    let screenshot = format!("--screenshot={}", png.display());
    chromium_run(
        &chromium_path,
        &page,
        &[&screenshot, "--window-size=1200,800"],
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "a nearly empty screenshot: {} bytes",
        bytes.len()
    );
}
