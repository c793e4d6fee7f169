//! Signature checks of `#[workflow]` and `#[step] async fn`, and what is emitted when they fail.

use super::{step, workflow};

const OWNED: &str = "workflow arguments are persisted to the journal, so they must be owned";

#[test]
fn workflow_must_be_async() {
    let expansion = workflow(
        "",
        "fn agent(goal: String) -> anyhow::Result<String> { todo!() }",
    );
    expansion.assert_errors(&[(
        "a workflow must be an `async fn`; add `async` before `fn`",
        "fn",
    )]);
    // The fn is still emitted (callers keep compiling), the impl is not.
    expansion.assert_contains("fn agent(goal: String) -> anyhow::Result<String> { todo!() }");
    expansion.assert_lacks("impl ::workflow_runtime::Workflow");
}

#[test]
fn reference_arguments_suggest_an_owned_type() {
    let expansion = workflow(
        "",
        "async fn agent(a: &str, b: &[u8], c: &'static Config, d: &mut Vec<u8>, e: &std::path::Path) -> anyhow::Result<()> { todo!() }",
    );
    expansion.assert_errors(&[
        (&format!("{OWNED}; use `String` instead of `&str`"), "&str"),
        (
            &format!("{OWNED}; use `Vec<u8>` instead of `&[u8]`"),
            "&[u8]",
        ),
        (
            &format!("{OWNED}; use `Config` instead of `&'static Config`"),
            "&'static Config",
        ),
        (
            &format!("{OWNED}; use `Vec<u8>` instead of `&mut Vec<u8>`"),
            "&mut Vec<u8>",
        ),
        (
            &format!("{OWNED}; use `PathBuf` instead of `&std::path::Path`"),
            "&std::path::Path",
        ),
    ]);
}

#[test]
fn borrowing_arguments_are_rejected_wherever_the_lifetime_is() {
    workflow(
        "",
        "async fn agent(a: Cow<'a, str>, b: Cow<'static, str>, c: impl Into<String>) -> anyhow::Result<()> { todo!() }",
    )
    .assert_errors(&[
        (&format!("{OWNED}; `Cow<'a, str>` borrows for `'a`"), "Cow<'a, str>"),
        (
            "workflow arguments are decoded from the journal, so they need a concrete type, not `impl Trait`",
            "impl Into<String>",
        ),
    ]);
}

#[test]
fn every_signature_error_is_reported_at_once() {
    let expansion = workflow(
        "",
        "pub const unsafe extern \"C\" fn agent<T: Clone>(&self, goal: &str) where T: Send { todo!() }",
    );
    expansion.assert_errors(&[
        ("a workflow must be an `async fn`; add `async` before `fn`", "fn"),
        ("a workflow cannot be `const`", "const"),
        ("a workflow cannot be `unsafe`", "unsafe"),
        ("a workflow cannot be `extern`", "extern \"C\""),
        (
            "a workflow returns a `Result`, whose `Ok` value is journaled; add a return type like `-> anyhow::Result<String>`",
            "const unsafe extern \"C\" fn agent<T: Clone>(&self, goal: &str) where T: Send",
        ),
        (
            "a workflow cannot take `self`: the engine starts it from its arguments alone; make it a free function",
            "&self",
        ),
        (
            "a workflow cannot be generic: the journal records one name, input type and output type for it",
            "<T: Clone>",
        ),
        (
            "a workflow cannot have a `where` clause: it cannot be generic",
            "where T: Send",
        ),
        (&format!("{OWNED}; use `String` instead of `&str`"), "&str"),
    ]);
}

#[test]
fn workflow_return_type_is_concrete() {
    workflow(
        "",
        "async fn agent() -> impl Future<Output = ()> { todo!() }",
    )
    .assert_errors(&[(
        "a workflow needs a concrete return type, not `impl Trait`: its output is journaled",
        "impl Future<Output = ()>",
    )]);
}

#[test]
fn workflow_on_something_else() {
    let expansion = workflow("", "pub struct Agent { goal: String }");
    expansion.assert_errors(&[(
        "#[workflow] goes on an `async fn`, like `#[workflow] async fn agent(goal: String) -> anyhow::Result<String>`",
        "struct Agent",
    )]);
    expansion.assert_contains("pub struct Agent { goal: String }");
}

#[test]
fn step_fn_checks() {
    let expansion = step(
        "",
        "fn fetch<T>(&self, out: &mut String, t: T) -> impl Sized { todo!() }",
    );
    expansion.assert_errors(&[
        ("a #[step] fn must be an `async fn`; add `async` before `fn`", "fn"),
        (
            "a #[step] fn needs a concrete return type, not `impl Trait`: its output is journaled",
            "impl Sized",
        ),
        (
            "#[step] cannot go on a method: a retry re-runs the body, which cannot hold on to `self`; make it a free function taking what it needs",
            "&self",
        ),
        (
            "a #[step] fn cannot have type or const parameters: its value is journaled as one concrete type",
            "T",
        ),
        (
            "a #[step] fn cannot take `&mut`: a retry runs its body again, so it takes shared references or owned (`Clone`) values",
            "&mut String",
        ),
    ]);
    expansion
        .assert_contains("fn fetch<T>(&self, out: &mut String, t: T) -> impl Sized { todo!() }");
}

#[test]
fn step_fn_may_have_lifetimes() {
    step(
        "",
        "async fn fetch<'a>(url: &'a str) -> anyhow::Result<String> { todo!() }",
    )
    .assert_no_errors();
}

#[test]
fn step_on_something_else() {
    step("", "impl Agent {}").assert_errors(&[(
        "#[step] goes on an `async fn`, or on an awaited call inside a #[workflow] fn, like `#[step] let x = fetch(url).await?;`",
        "impl Agent",
    )]);
}

#[test]
fn steps_inside_a_step_fn_are_errors() {
    let expansion = step(
        "",
        "async fn fetch(url: String) -> anyhow::Result<String> { #[step] let page = get(url).await?; Ok(page) }",
    );
    expansion.assert_errors(&[(
        "a #[step] fn runs as one step, so its body cannot contain steps; mark the calls in the calling #[workflow] instead",
        "#[step]",
    )]);
    // Removed, so rustc does not add "cannot find attribute `step`".
    expansion.assert_contains("let page = get(url).await?;");
    expansion.assert_lacks("# [step]");
}
