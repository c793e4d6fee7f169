//! The patch checks of a workflow body: literal ids, one use of each, none inside a step.

use super::{step, workflow_body};
use crate::patches::PATCH_IN_STEP;

const NOT_A_LITERAL: &str = "a patch id is a string literal, like `durable::patched(\"send-receipt\")`: the journal records it, so it must be the same in every build, and the macro checks that each id marks one point of the body";

#[test]
fn patches_with_distinct_literal_ids_outside_steps_are_accepted() {
    workflow_body(
        r#"
        if durable::patched("receipt") {
            #[step]
            send_receipt(&url).await?;
        }
        workflow_runtime::durable::deprecated_patch("audit");
        let fast = ::workflow_runtime::durable::patched("fast-path");
        let later = async { durable::patched("in-an-async-block") };
        assert!(patched("bare-after-a-use"));
        Ok(1)
        "#,
    )
    .assert_no_errors();
}

#[test]
fn a_patch_id_must_be_a_string_literal() {
    workflow_body(
        r#"
        if durable::patched(RECEIPT) { }
        durable::deprecated_patch(&format!("v{}", 2));
        let x = durable::patched(3);
        Ok(1)
        "#,
    )
    .assert_errors(&[
        (NOT_A_LITERAL, "RECEIPT"),
        (
            &NOT_A_LITERAL.replace("durable::patched", "durable::deprecated_patch"),
            "&format!(\"v{}\", 2)",
        ),
        (NOT_A_LITERAL, "3"),
    ]);
    workflow_body(r#"durable::patched(" "); Ok(1)"#)
        .assert_errors(&[("a patch id cannot be empty", "\" \"")]);
}

#[test]
fn a_bare_call_counts_only_in_the_shape_of_a_patch() {
    // A helper of the user's own named `patched`, and a method of that name.
    workflow_body(
        "let p = patched(&order); let q = order.patched(\"x\"); let r = patched(\"x\"); Ok(1)",
    )
    .assert_no_errors();
    workflow_body(r#"let a = patched("x"); deprecated_patch("x"); Ok(1)"#).assert_errors(&[(
        "patch id \"x\" is both `patched` and `deprecated_patch` in this body; `deprecated_patch(\"x\")` replaces the `patched(\"x\")` call once no run from before the patch remains, so keep one of them",
        "\"x\"",
    )]);
}

#[test]
fn a_patch_id_is_used_once_per_body_and_reported_at_the_second_use() {
    workflow_body(
        r#"
        if durable::patched("receipt") { }
        for x in xs {
            if durable::patched("receipt") { }
        }
        durable::deprecated_patch("receipt");
        durable::patched("other");
        Ok(1)
        "#,
    )
    .assert_errors(&[
        (
            "patch id \"receipt\" is already used in this workflow body; each patch marks one point of the path, where its marker is journaled, so give this one an id of its own",
            "\"receipt\"",
        ),
        (
            "patch id \"receipt\" is both `patched` and `deprecated_patch` in this body; `deprecated_patch(\"receipt\")` replaces the `patched(\"receipt\")` call once no run from before the patch remains, so keep one of them",
            "\"receipt\"",
        ),
    ]);
}

#[test]
fn a_patch_inside_a_step_is_reported_at_the_call() {
    workflow_body(
        r#"
        #[step]
        let a = fetch(durable::patched("in-a-let")).await?;
        let b = #[step] fetch(durable::patched("in-an-expression")).await;
        let c = workflow_runtime::step("charge")
            .retries(3)
            .run(|| async { Ok::<_, std::io::Error>(durable::patched("in-a-closure")) })
            .await?;
        Ok(1)
        "#,
    )
    .assert_errors(&[
        (PATCH_IN_STEP, "durable::patched(\"in-a-let\")"),
        (PATCH_IN_STEP, "durable::patched(\"in-an-expression\")"),
        (PATCH_IN_STEP, "durable::patched(\"in-a-closure\")"),
    ]);
    // The `else` of a `#[step] let` runs after the step, on the workflow's path.
    workflow_body(
        r#"
        #[step]
        let Some(x) = find(&url).await? else {
            if durable::patched("not-found") { return Ok(0); }
            return Ok(1);
        };
        Ok(x)
        "#,
    )
    .assert_no_errors();
    step(
        "",
        r#"async fn fetch(url: String) -> anyhow::Result<bool> { Ok(durable::patched("x")) }"#,
    )
    .assert_errors(&[(PATCH_IN_STEP, "durable::patched(\"x\")")]);
}

#[test]
fn patches_in_nested_items_are_not_the_body_s() {
    workflow_body(
        r#"
        fn helper() -> bool { durable::patched("receipt") }
        if durable::patched("receipt") { }
        Ok(1)
        "#,
    )
    .assert_no_errors();
}

#[test]
fn an_id_from_a_macro_rules_fragment_is_read_through_its_invisible_group() {
    use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
    use quote::quote;

    // `durable::patched($id)` with `$id:expr`: rustc passes the fragment in a group without
    // delimiters.
    let body = |id: TokenStream| {
        let id = TokenTree::Group(Group::new(Delimiter::None, id));
        quote!(async fn w() -> anyhow::Result<u32> { durable::patched(#id); Ok(1) })
    };
    let expand = |item: TokenStream| {
        let ctxt = crate::ctxt::Ctxt::new();
        crate::entry::workflow_with(TokenStream::new(), item, &ctxt);
        ctxt.into_errors()
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(expand(body(quote!("receipt"))), Vec::<String>::new());
    assert_eq!(expand(body(quote!(RECEIPT))), [NOT_A_LITERAL]);
}
