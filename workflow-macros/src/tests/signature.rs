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
        ("a workflow cannot be `const`: it runs at run time, driven by the engine; remove `const`", "const"),
        ("a workflow cannot be `unsafe`: the engine calls it with no way to uphold a safety contract; remove `unsafe` and keep `unsafe` blocks inside the body", "unsafe"),
        ("a workflow cannot be `extern`: the engine calls it as a Rust `async fn`; remove `extern \"C\"`", "extern \"C\""),
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
fn the_ok_value_is_owned_and_concrete() {
    let ok = "the `Ok` value of a workflow";
    for (output, message, at) in [
        (
            "anyhow::Result<&'static str>",
            format!(
                "{ok} is persisted to the journal, so it must be owned; use `String` instead of `&'static str`"
            ),
            "&'static str",
        ),
        (
            "Result<Vec<&'static [u8]>, E>",
            format!(
                "{ok} is persisted to the journal, so it must be owned; use `Vec<u8>` instead of `&'static [u8]`"
            ),
            "&'static [u8]",
        ),
        ("io::Result<Cow<'static, str>>", String::new(), ""),
        (
            "Result<Box<impl Display>, E>",
            format!(
                "{ok} is decoded from the journal, so it needs a concrete type, not `impl Trait`"
            ),
            "impl Display",
        ),
    ] {
        let expansion = workflow("", &format!("async fn agent() -> {output} {{ todo!() }}"));
        if message.is_empty() {
            expansion.assert_no_errors();
        } else {
            expansion.assert_errors(&[(&message, at)]);
        }
    }
    // The error type is not journaled: it may borrow.
    workflow(
        "",
        "async fn agent() -> Result<u8, &'static str> { todo!() }",
    )
    .assert_no_errors();
}

#[test]
fn a_return_type_that_cannot_be_a_result() {
    for output in [
        "String",
        "()",
        "Option<u8>",
        "std::vec::Vec<u8>",
        "&'static str",
        "(u8, u8)",
    ] {
        let expected = format!(
            "a workflow must return a `Result`: its `Ok` value is journaled, its `Err` value is a failure; write `-> anyhow::Result<{output}>` or `-> Result<{output}, YourError>`"
        );
        workflow("", &format!("async fn agent() -> {output} {{ todo!() }}"))
            .assert_errors(&[(&expected, output)]);
    }
    // An alias may be a `Result`: the compiler decides.
    workflow("", "async fn agent() -> Outcome { todo!() }").assert_no_errors();
}

#[test]
fn an_invalid_fn_is_emitted_without_const() {
    // rustc would add "functions cannot be both `const` and `async`" to the macro's error.
    let expansion = workflow("", "const async fn agent() -> Result<(), E> { Ok(()) }");
    assert_eq!(expansion.errors.len(), 1);
    expansion.assert_contains("async fn agent() -> Result<(), E> { Ok(()) }");
    expansion.assert_lacks("const async fn");
}

#[test]
fn step_on_a_statement_outside_a_workflow() {
    // rustc rejects the attribute, then still expands it on the statement.
    step("", "let page = fetch(&url).await?;").assert_errors(&[(
        "#[step] marks a call inside a #[workflow] fn, which removes it before the compiler sees it; add #[workflow] to the enclosing `async fn`, or put #[step] on the called `async fn` itself",
        "let page = fetch(&url).await?;",
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
