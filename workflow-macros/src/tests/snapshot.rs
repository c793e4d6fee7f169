//! The full expansion of a small research agent, compared with
//! `tests/snapshots/research_agent.expanded.rs`. When an intended change alters the expansion,
//! regenerate the file with `UPDATE_SNAPSHOTS=1 cargo test -p workflow-macros` and review the
//! diff like code.

use std::path::PathBuf;

use proc_macro2::TokenStream;

use super::{step, workflow};

const WORKFLOW_ARGS: &str = "max_steps = 50, max_cost_usd = 2.00, concurrency = 4";
const WORKFLOW: &str = r#"
/// Plans questions about a goal, researches each, and writes a report.
pub async fn research_agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let plan = plan_questions(&goal).await?;
    let mut findings = Vec::new();
    for q in &plan {
        #[step(retries = 3, timeout = "60s")]
        let answer = search_and_summarize(q).await?;
        findings.push((q.clone(), answer));
    }
    let draft = #[step(name = "draft")] llm.complete(&goal, &findings).await;
    #[step]
    notify_reviewer(&goal).await?;
    #[step]
    let report = synthesize(&goal, &findings, draft.ok()).await?;
    Ok(report)
}
"#;

const STEP_ARGS: &str =
    "retries = 3, timeout = \"60s\", backoff(initial = \"2s\", max = \"1m\"), rate = \"llm\"";
const STEP_FN: &str = r#"
async fn search_and_summarize(question: &str, depth: u32) -> anyhow::Result<String> {
    Ok(format!("{question} at depth {depth}"))
}
"#;

#[test]
fn research_agent_expansion_matches_the_snapshot() {
    let workflow = workflow(WORKFLOW_ARGS, WORKFLOW);
    workflow.assert_no_errors();
    let step = step(STEP_ARGS, STEP_FN);
    step.assert_no_errors();
    let actual = format!(
        "// The expansion of `#[workflow({WORKFLOW_ARGS})]` and `#[step({STEP_ARGS})]` in\n\
         // workflow-macros/src/tests/snapshot.rs. Regenerate with\n\
         // `UPDATE_SNAPSHOTS=1 cargo test -p workflow-macros`; not compiled.\n\n{}\n{}",
        pretty(workflow.tokens),
        pretty(step.tokens)
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("snapshots")
        .join("research_agent.expanded.rs");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "the expansion differs from {} from line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended, regenerate with UPDATE_SNAPSHOTS=1 and review the diff.",
            path.display(),
            first_difference + 1,
            expected.lines().nth(first_difference),
            actual.lines().nth(first_difference),
        );
    }
}

/// The expansion laid out as rustfmt would, by prettyplease (pinned by the lockfile, so the
/// layout changes only when it is upgraded, and then in this file's diff alone).
fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as items");
    prettyplease::unparse(&file)
}
