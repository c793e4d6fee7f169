//! Rewriting of `#[step]` in a workflow body, form by form, and the expansion around it.

use super::{step, workflow, workflow_body};

const NOT_A_CALL: &str = "#[step] marks an awaited call, like `#[step] let x = fetch(url).await?;`";

#[test]
fn step_on_let_with_question_mark() {
    let expansion = workflow_body(
        "#[step(retries = 3, timeout = \"1m 30s\")] let page = fetch(&url).await?; Ok(1)",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "let page = ::workflow_runtime::__private::step(\"fetch\")
            .retries(3u32)
            .timeout(::core::time::Duration::new(90u64, 0u32))
            .run(|| fetch(&url)).await?;",
    );
}

#[test]
fn step_on_let_without_question_mark() {
    let expansion = workflow_body("#[step] let page = fetch(&url).await; Ok(1)");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "let page = ::workflow_runtime::__private::step(\"fetch\").run(|| fetch(&url)).await;",
    );
}

#[test]
fn step_on_the_awaited_expression() {
    let expansion = workflow_body(
        "let a = #[step] fetch(&url).await; let b = #[step(name = \"again\")] fetch(&url).await?; Ok(1)",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "let a = ::workflow_runtime::__private::step(\"fetch\").run(|| fetch(&url)).await;",
    );
    expansion.assert_contains(
        "let b = ::workflow_runtime::__private::step(\"again\").run(|| fetch(&url)).await?;",
    );
}

#[test]
fn step_on_expression_statements() {
    let expansion = workflow_body(
        "#[step(retries = 1)] notify(&url).await; #[step] notify(&url).await?; Ok(1)",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "::workflow_runtime::__private::step(\"notify\").retries(1u32).run(|| notify(&url)).await;
         ::workflow_runtime::__private::step(\"notify\").run(|| notify(&url)).await?;",
    );
}

#[test]
fn step_as_the_tail_expression() {
    let expansion = workflow_body("#[step] count(&url).await");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "{ ::workflow_runtime::__private::step(\"count\").run(|| count(&url)).await }",
    );
}

#[test]
fn method_calls_are_named_after_the_method() {
    let expansion = workflow_body("#[step] let r = client.get(&url).send().await?; Ok(r)");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "let r = ::workflow_runtime::__private::step(\"send\").run(|| client.get(&url).send()).await?;",
    );
}

#[test]
fn paths_are_named_after_their_last_segment() {
    let expansion = workflow_body("#[step] let r = llm::chat::<Model>(&url).await?; Ok(r)");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "::workflow_runtime::__private::step(\"chat\").run(|| llm::chat::<Model>(&url)).await?",
    );
    let raw = workflow_body("#[step] let r = r#type(&url).await?; Ok(r)");
    raw.assert_contains("step(\"type\")");
}

#[test]
fn steps_at_any_depth() {
    let expansion = workflow_body(
        "
        for q in &questions {
            #[step] let a = ask(q).await?;
            if a > 1 {
                match a {
                    1 => { #[step] notify(&url).await?; }
                    _ => loop { #[step] let _ = notify(&url).await; break; }
                }
            }
        }
        let f = async { #[step] let b = ask(&url).await?; Ok::<_, StepError>(b) };
        let g = |x: u32| async move { #[step] poll(x).await };
        while let Some(x) = #[step] next().await? {}
        Ok(1)
        ",
    );
    expansion.assert_no_errors();
    for expected in [
        "let a = ::workflow_runtime::__private::step(\"ask\").run(|| [q] ask(q)).await?;",
        "1 => { ::workflow_runtime::__private::step(\"notify\").run(|| notify(&url)).await?; }",
        "loop { let _ = ::workflow_runtime::__private::step(\"notify\").run(|| notify(&url)).await; break; }",
        "async { let b = ::workflow_runtime::__private::step(\"ask\").run(|| ask(&url)).await?; Ok::<_, StepError>(b) }",
        "async move { ::workflow_runtime::__private::step(\"poll\").run(|| [x] poll(x)).await }",
        "while let Some(x) = ::workflow_runtime::__private::step(\"next\").run(|| next()).await? {}",
    ] {
        expansion.assert_contains(expected);
    }
}

#[test]
fn let_else_keeps_its_else() {
    let expansion =
        workflow_body("#[step] let Some(x) = find(&url).await? else { return Ok(0) }; Ok(x)");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "let Some(x) = ::workflow_runtime::__private::step(\"find\").run(|| find(&url)).await? else { return Ok(0) };",
    );
}

#[test]
fn other_attributes_are_kept() {
    let expansion = workflow_body("#[allow(unused)] #[step] let x = f().await?; Ok(1)");
    expansion.assert_no_errors();
    expansion.assert_contains(
        "#[allow(unused)] let x = ::workflow_runtime::__private::step(\"f\").run(|| f()).await?;",
    );
}

#[test]
fn crate_option_applies_to_steps_in_the_body() {
    let expansion = workflow(
        "crate = \"::wr\"",
        "async fn w() -> anyhow::Result<u32> { #[step] let x = f().await?; Ok(x) }",
    );
    expansion.assert_no_errors();
    expansion.assert_contains_with(
        "let x = ::wr::__private::step(\"f\").run(|| f()).await?;",
        "::wr",
    );
    expansion.assert_contains("impl ::wr::Workflow for w");
    expansion.assert_lacks("workflow_runtime");
}

#[test]
fn crate_option_on_a_body_step_is_an_error() {
    let expansion = workflow_body("#[step(crate = \"::wr\")] let x = f().await?; Ok(x)");
    expansion.assert_errors(&[(
        "a step in a workflow body takes the workflow's `crate`; remove it here, and set it once on `#[workflow(crate = \"...\")]`",
        "crate",
    )]);
    expansion.assert_contains("::workflow_runtime::__private::step(\"f\")");
}

#[test]
fn not_an_awaited_call() {
    let expansion = workflow_body(
        "
        #[step] let a = fetch(&url)?;
        #[step] let b = fut.await?;
        #[step] let c = fetch(&url).await.unwrap();
        #[step] let d;
        #[step] println!(\"x\");
        #[step] { fetch(&url).await }
        Ok(1)
        ",
    );
    expansion.assert_errors(&[
        (NOT_A_CALL, "fetch(&url)?"),
        (NOT_A_CALL, "fut"),
        (NOT_A_CALL, "fetch(&url).await.unwrap()"),
        (NOT_A_CALL, "#[step]"),
        (NOT_A_CALL, "#[step]"),
        (NOT_A_CALL, "{ fetch(&url).await }"),
    ]);
    // Each attribute is removed all the same, so rustc does not report it again.
    expansion.assert_lacks("# [step]");
    expansion.assert_contains("let a = fetch(&url)?;");
    expansion.assert_contains("let b = fut.await?;");
}

#[test]
fn calls_without_a_name_need_the_name_option() {
    let expansion = workflow_body("#[step] let a = (self.f)(1).await?; Ok(a)");
    expansion.assert_errors(&[(
        "cannot name this step after the function it calls; add `name = \"...\"`, like `#[step(name = \"fetch\")]`",
        "step",
    )]);
    let named = workflow_body("#[step(name = \"f\")] let a = (callbacks.f)(1).await?; Ok(a)");
    named.assert_no_errors();
    named.assert_contains(
        "::workflow_runtime::__private::step(\"f\").run(|| (callbacks.f)(1)).await?",
    );
}

#[test]
fn a_step_inside_a_step_is_an_error() {
    let expansion = workflow_body("#[step] let a = outer(#[step] inner().await?).await?; Ok(a)");
    expansion.assert_errors(&[(
        "a step cannot contain another step: the inner call would run inside each attempt of the outer one; bind it with its own `#[step] let` first",
        "#[step]",
    )]);
    // Neither is rewritten, so the error above is the only one.
    expansion.assert_contains("let a = outer(inner().await?).await?;");
}

#[test]
fn two_steps_on_one_call() {
    workflow_body("#[step] #[step(retries = 1)] let a = f().await?; Ok(a)")
        .assert_errors(&[("duplicate #[step] on the same call", "#[step(retries = 1)]")]);
    workflow_body("#[step] let a = #[step] f().await?; Ok(a)")
        .assert_errors(&[("duplicate #[step] on the same call", "#[step]")]);
}

#[test]
fn nested_items_are_not_rewritten() {
    let expansion = workflow_body(
        "
        fn helper() { #[step] let x = f().await?; }
        #[step(retries = 2)]
        async fn own_step(x: u32) -> anyhow::Result<u32> { Ok(x) }
        Ok(1)
        ",
    );
    expansion.assert_errors(&[(
        "#[step] only marks calls in the body of the #[workflow] fn itself; this one is inside a nested item",
        "#[step]",
    )]);
    // A nested `#[step] async fn` expands on its own.
    expansion.assert_contains("#[step(retries = 2)] async fn own_step(x: u32)");
    expansion.assert_contains("fn helper() { let x = f().await?; }");
}

#[test]
fn step_options_are_validated_in_the_body() {
    let expansion = workflow_body("#[step(retry = 3, timeout = 60)] let a = f().await?; Ok(a)");
    expansion.assert_errors(&[
        (
            "unknown option `retry`; did you mean `retries`? valid options: `name`, `retries`, `timeout`, `backoff`, `circuit`, `rate`, `at_most_once`, `non_retryable`, `crate`",
            "retry",
        ),
        (
            "`timeout` takes a duration string with a unit: `timeout = \"60s\"`",
            "60",
        ),
    ]);
    // The step is still rewritten, with the valid options.
    expansion
        .assert_contains("let a = ::workflow_runtime::__private::step(\"f\").run(|| f()).await?;");
    workflow_body("#[step = \"x\"] let a = f().await?; Ok(a)").assert_errors(&[(
        "expected `#[step]` or `#[step(option = value, ...)]`",
        "step = \"x\"",
    )]);
}

#[test]
fn a_workflow_with_a_bad_signature_still_has_its_steps_rewritten() {
    let expansion = workflow(
        "",
        "fn w(url: &str) -> anyhow::Result<u32> { #[step] let x = f(url).await?; Ok(x) }",
    );
    assert_eq!(expansion.errors.len(), 2);
    expansion.assert_contains(
        "let x = ::workflow_runtime::__private::step(\"f\").run(|| [url] f(url)).await?;",
    );
}

#[test]
fn workflow_impl() {
    let expansion = workflow(
        "name = \"agent-v2\"",
        "
        /// Docs stay.
        #[cfg(feature = \"agents\")]
        pub(crate) async fn agent(goal: String, (x, y): (u8, u8), mut n: u32) -> anyhow::Result<Vec<String>> { todo!() }
        ",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "#[doc = \" Docs stay.\"] #[cfg(feature = \"agents\")] pub(crate) async fn agent(goal: String, (x, y): (u8, u8), mut n: u32)",
    );
    expansion
        .assert_contains("#[cfg(feature = \"agents\")] #[allow(non_camel_case_types, dead_code)]");
    expansion.assert_contains("pub(crate) struct agent {}");
    expansion.assert_contains(
        "#[cfg(feature = \"agents\")] impl ::workflow_runtime::Workflow for agent
         where
             for<'__w> String: ::workflow_runtime::__private::WorkflowArgument,
             for<'__w> (u8, u8): ::workflow_runtime::__private::WorkflowArgument,
             for<'__w> u32: ::workflow_runtime::__private::WorkflowArgument,
             for<'__w> <anyhow::Result<Vec<String>> as ::workflow_runtime::__private::WorkflowResult>::Ok:
                 ::workflow_runtime::__private::WorkflowOutput,",
    );
    expansion.assert_contains(
        "type Input = (
             <String as ::workflow_runtime::__private::WorkflowArgument>::Journaled,
             <(u8, u8) as ::workflow_runtime::__private::WorkflowArgument>::Journaled,
             <u32 as ::workflow_runtime::__private::WorkflowArgument>::Journaled,
         );
         type Output = <<anyhow::Result<Vec<String>> as ::workflow_runtime::__private::WorkflowResult>::Ok
             as ::workflow_runtime::__private::WorkflowOutput>::Journaled;
         const NAME: &'static str = \"agent-v2\";",
    );
    expansion.assert_contains(
        "let (goal, __arg1, n,) = input;
         ::core::result::Result::map(
             ::workflow_runtime::__private::WorkflowResult::into_outcome(agent(
                 <String as ::workflow_runtime::__private::WorkflowArgument>::from_journaled(goal),
                 <(u8, u8) as ::workflow_runtime::__private::WorkflowArgument>::from_journaled(__arg1),
                 <u32 as ::workflow_runtime::__private::WorkflowArgument>::from_journaled(n)
             ).await),
             ::workflow_runtime::__private::WorkflowOutput::into_journaled,
         )",
    );
    // Serializability is checked once per type, by calls outside the impl (whose `where`
    // clause makes it hold only for serializable types), under the fn's `cfg`.
    expansion.assert_contains(
        "#[cfg(feature = \"agents\")] const _: () = {
             #[allow(dead_code)]
             fn journaled() {
                 <String as ::workflow_runtime::__private::WorkflowArgument>::journaled();
                 <(u8, u8) as ::workflow_runtime::__private::WorkflowArgument>::journaled();
                 <u32 as ::workflow_runtime::__private::WorkflowArgument>::journaled();
                 <<anyhow::Result<Vec<String>> as ::workflow_runtime::__private::WorkflowResult>::Ok
                     as ::workflow_runtime::__private::WorkflowOutput>::journaled();
             }
         };",
    );
}

/// The source text under the first `ident` token of the expansion: where rustc reports the
/// errors about the item it starts.
fn text_under(expansion: &super::Expansion, ident: &str) -> String {
    fn find(tokens: proc_macro2::TokenStream, ident: &str) -> Option<proc_macro2::Span> {
        tokens.into_iter().find_map(|token| match token {
            proc_macro2::TokenTree::Ident(i) if i == ident => Some(i.span()),
            proc_macro2::TokenTree::Group(g) => find(g.stream(), ident),
            _ => None,
        })
    }
    find(expansion.tokens.clone(), ident)
        .and_then(|span| span.source_text())
        .unwrap_or_default()
}

#[test]
fn unserializable_types_are_reported_at_the_type() {
    // One argument: its type. Several: the argument list, whose tuple is `Input`.
    let one = workflow(
        "",
        "async fn w(goal: Goal) -> anyhow::Result<Report> { todo!() }",
    );
    assert_eq!(text_under(&one, "Input"), "Goal");
    assert_eq!(text_under(&one, "Output"), "Report");
    let two = workflow(
        "",
        "async fn w(a: u8, b: Goal) -> Result<Report, E> { todo!() }",
    );
    assert_eq!(text_under(&two, "Input"), "(a: u8, b: Goal)");
    assert_eq!(text_under(&two, "Output"), "Report");
    // The checks that report an unserializable type, at each argument's type and at `T`.
    assert_eq!(text_under(&two, "WorkflowArgument"), "u8");
    assert_eq!(text_under(&two, "WorkflowOutput"), "Report");
    // A return type that is not spelled `...Result<T, ..>`: the whole type.
    let alias = workflow("", "async fn w() -> Outcome { todo!() }");
    assert_eq!(text_under(&alias, "Output"), "Outcome");
}

#[test]
fn a_moved_local_is_checked_to_be_copy() {
    let expansion = workflow_body(
        "#[step] let a = f(url, &url, n, MAX, Unit, url.clone(), (url), self::x).await?;
         #[step] let b = client.get(url).await?;
         Ok(1)",
    );
    expansion.assert_no_errors();
    // Only the locals alone: references, clones, consts, unit structs and paths are fine.
    expansion.assert_contains(
        "let a = ::workflow_runtime::__private::step(\"f\")
            .run(|| [url, n] f(url, &url, n, MAX, Unit, url.clone(), (url), self::x)).await?;",
    );
    expansion.assert_contains(
        "let b = ::workflow_runtime::__private::step(\"get\").run(|| [url] client.get(url)).await?;",
    );
    expansion.assert_contains(&super::moved_check("url"));
}

#[test]
fn workflow_without_arguments() {
    let expansion = workflow("", "async fn tick() -> Result<(), String> { Ok(()) }");
    expansion.assert_no_errors();
    expansion.assert_contains("type Input = ();");
    expansion.assert_contains("const NAME: &'static str = \"tick\";");
    expansion.assert_contains("let () = input;");
    expansion.assert_contains("into_outcome(tick().await)");
}

#[test]
fn fingerprint_is_of_the_body_before_rewriting() {
    let fingerprint = |expansion: super::Expansion| {
        let output = expansion.tokens.to_string();
        let start = output.find("const FINGERPRINT : u64 =").unwrap();
        output[start..].split(';').next().unwrap().to_owned()
    };
    let a = workflow(
        "",
        "async fn w() -> Result<u8, E> { #[step] let x = f().await?; Ok(x) }",
    );
    let b = workflow(
        "name = \"other\", crate = \"::wr\"",
        "async fn w() -> Result<u8, E> {
        #[step]
        let x = f()
            .await?;
        Ok(x)
    }",
    );
    let c = workflow(
        "",
        "async fn w() -> Result<u8, E> { #[step(retries = 1)] let x = f().await?; Ok(x) }",
    );
    assert_eq!(fingerprint(a), fingerprint(b));
    let a = workflow(
        "",
        "async fn w() -> Result<u8, E> { #[step] let x = f().await?; Ok(x) }",
    );
    assert_ne!(fingerprint(a), fingerprint(c));
}

#[test]
fn step_fn_expansion() {
    let expansion = step(
        "retries = 2, timeout = \"500ms\", name = \"search\"",
        "
        /// Searches.
        pub async fn search_and_summarize<'a>(q: &'a str, mut depth: u32, (a, b): (u8, u8)) -> anyhow::Result<String> {
            depth += 1;
            Ok(format!(\"{q}{depth}{a}{b}\"))
        }
        ",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "#[doc = \" Searches.\"]
        pub async fn search_and_summarize<'a>(q: &'a str, depth: u32, __arg2: (u8, u8))
            -> ::core::result::Result<<anyhow::Result<String> as ::workflow_runtime::__private::StepResult>::Ok, ::workflow_runtime::StepError>
        {
            async fn __workflow_step_body<'a>(q: &'a str, mut depth: u32, (a, b): (u8, u8)) -> anyhow::Result<String> {
                depth += 1;
                Ok(format!(\"{q}{depth}{a}{b}\"))
            }
            ::workflow_runtime::__private::step(\"search\")
                .retries(2u32)
                .timeout(::core::time::Duration::new(0u64, 500000000u32))
                .run(|| __workflow_step_body(q, ::core::clone::Clone::clone(&depth), ::core::clone::Clone::clone(&__arg2)))
                .await
        }",
    );
}

#[test]
fn step_fn_defaults_and_crate() {
    let expansion = step(
        "crate = \"wr\"",
        "async fn r#loop() -> Result<(), std::io::Error> { Ok(()) }",
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "async fn r#loop() -> ::core::result::Result<<Result<(), std::io::Error> as wr::__private::StepResult>::Ok, wr::StepError>",
    );
    expansion.assert_contains_with(
        "wr::__private::step(\"loop\").run(|| __workflow_step_body()).await",
        "wr",
    );
}
