// The expansion of `#[workflow(max_steps = 50, max_cost_usd = 2.00, concurrency = 4)]` and `#[step(retries = 3, timeout = "60s", backoff(initial = "2s", max = "1m"), rate = "llm")]` in
// workflow-macros/src/tests/snapshot.rs. Regenerate with
// `UPDATE_SNAPSHOTS=1 cargo test -p workflow-macros`; not compiled.

/// Plans questions about a goal, researches each, and writes a report.
pub async fn research_agent(goal: String) -> anyhow::Result<String> {
    let plan = ::workflow_runtime::__private::StepValue::run(
            ::workflow_runtime::__private::step("plan_questions"),
            || match ::workflow_runtime::__private::classified(
                plan_questions(&goal),
                |__error| {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        ChainKind as _, ClassifyKind as _,
                    };
                    ::workflow_runtime::__private::StepErrorValue::into_failure(
                        (&__error).__workflow_error_kind(),
                        __error,
                    )
                },
            ) {
                attempt => {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        AnyValue as _, BorrowedValue as _,
                    };
                    ::workflow_runtime::__private::OwnedStepValue::must_be_owned(
                        (&&::workflow_runtime::__private::Probe::of(&attempt))
                            .__workflow_step_value(),
                    );
                    attempt
                }
            },
        )
        .await?;
    let mut findings = Vec::new();
    for q in &plan {
        let answer = ::workflow_runtime::__private::StepValue::run(
                ::workflow_runtime::__private::step("search_and_summarize")
                    .retries(3u32)
                    .timeout(::core::time::Duration::new(60u64, 0u32)),
                || {
                    {
                        #[diagnostic::on_unimplemented(
                            message = "`q` is moved into the step's call, which is made again for each attempt",
                            label = "moved here by every attempt",
                            note = "each attempt of a step builds a fresh future from its call, so the call can only borrow what it captures: pass a reference (`&q`) or a clone (`q.clone()`)",
                        )]
                        trait Copy {
                            fn moved_into_step(&self) {}
                        }
                        #[diagnostic::do_not_recommend]
                        impl<T: ::core::marker::Copy> Copy for T {}
                        Copy::moved_into_step(&q);
                    }
                    match ::workflow_runtime::__private::classified(
                        search_and_summarize(q),
                        |__error| {
                            #[allow(unused_imports)]
                            use ::workflow_runtime::__private::{
                                ChainKind as _, ClassifyKind as _,
                            };
                            ::workflow_runtime::__private::StepErrorValue::into_failure(
                                (&__error).__workflow_error_kind(),
                                __error,
                            )
                        },
                    ) {
                        attempt => {
                            #[allow(unused_imports)]
                            use ::workflow_runtime::__private::{
                                AnyValue as _, BorrowedValue as _,
                            };
                            ::workflow_runtime::__private::OwnedStepValue::must_be_owned(
                                (&&::workflow_runtime::__private::Probe::of(&attempt))
                                    .__workflow_step_value(),
                            );
                            attempt
                        }
                    }
                },
            )
            .await?;
        findings.push((q.clone(), answer));
    }
    let draft = ::workflow_runtime::__private::StepValue::run(
            ::workflow_runtime::__private::step("draft"),
            || match ::workflow_runtime::__private::classified(
                llm.complete(&goal, &findings),
                |__error| {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        ChainKind as _, ClassifyKind as _,
                    };
                    ::workflow_runtime::__private::StepErrorValue::into_failure(
                        (&__error).__workflow_error_kind(),
                        __error,
                    )
                },
            ) {
                attempt => {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        AnyValue as _, BorrowedValue as _,
                    };
                    ::workflow_runtime::__private::OwnedStepValue::must_be_owned(
                        (&&::workflow_runtime::__private::Probe::of(&attempt))
                            .__workflow_step_value(),
                    );
                    attempt
                }
            },
        )
        .await;
    ::workflow_runtime::__private::StepValue::run(
            ::workflow_runtime::__private::step("notify_reviewer"),
            || match ::workflow_runtime::__private::classified(
                notify_reviewer(&goal),
                |__error| {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        ChainKind as _, ClassifyKind as _,
                    };
                    ::workflow_runtime::__private::StepErrorValue::into_failure(
                        (&__error).__workflow_error_kind(),
                        __error,
                    )
                },
            ) {
                attempt => {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        AnyValue as _, BorrowedValue as _,
                    };
                    ::workflow_runtime::__private::OwnedStepValue::must_be_owned(
                        (&&::workflow_runtime::__private::Probe::of(&attempt))
                            .__workflow_step_value(),
                    );
                    attempt
                }
            },
        )
        .await?;
    let report = ::workflow_runtime::__private::StepValue::run(
            ::workflow_runtime::__private::step("synthesize"),
            || match ::workflow_runtime::__private::classified(
                synthesize(&goal, &findings, draft.ok()),
                |__error| {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        ChainKind as _, ClassifyKind as _,
                    };
                    ::workflow_runtime::__private::StepErrorValue::into_failure(
                        (&__error).__workflow_error_kind(),
                        __error,
                    )
                },
            ) {
                attempt => {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        AnyValue as _, BorrowedValue as _,
                    };
                    ::workflow_runtime::__private::OwnedStepValue::must_be_owned(
                        (&&::workflow_runtime::__private::Probe::of(&attempt))
                            .__workflow_step_value(),
                    );
                    attempt
                }
            },
        )
        .await?;
    Ok(report)
}
#[allow(non_camel_case_types, dead_code)]
/** The workflow [`research_agent()`](fn@research_agent) as a type, to name it where the engine takes one: `Engine::start::<research_agent>`, `Engine::register::<research_agent>`.

 Generated by `#[workflow]`, with its `Workflow` implementation.*/
pub struct research_agent {}
impl ::workflow_runtime::Workflow for research_agent
where
    for<'__w> String: ::workflow_runtime::__private::WorkflowArgument,
    for<'__w> <anyhow::Result<
        String,
    > as ::workflow_runtime::__private::WorkflowResult>::Ok: ::workflow_runtime::__private::WorkflowOutput,
{
    type Input = (
        <String as ::workflow_runtime::__private::WorkflowArgument>::Journaled,
    );
    type Output = <<anyhow::Result<
        String,
    > as ::workflow_runtime::__private::WorkflowResult>::Ok as ::workflow_runtime::__private::WorkflowOutput>::Journaled;
    const NAME: &'static str = "research_agent";
    const FINGERPRINT: u64 = 1164094690702706236u64;
    fn budget() -> ::workflow_runtime::Budget {
        ::workflow_runtime::Budget::UNLIMITED
            .with_max_steps(50u64)
            .with_max_cost_usd(2f64)
    }
    fn concurrency() -> ::core::option::Option<u32> {
        ::core::option::Option::Some(4u32)
    }
    fn run(
        input: Self::Input,
    ) -> ::workflow_runtime::__private::BoxFuture<
        'static,
        ::core::result::Result<Self::Output, ::workflow_runtime::WorkflowFailure>,
    > {
        ::std::boxed::Box::pin(async move {
            let (goal,) = input;
            ::core::result::Result::map(
                ::workflow_runtime::__private::WorkflowResult::into_outcome(
                    research_agent(
                            <String as ::workflow_runtime::__private::WorkflowArgument>::from_journaled(
                                goal,
                            ),
                        )
                        .await,
                ),
                ::workflow_runtime::__private::WorkflowOutput::into_journaled,
            )
        })
    }
}
const _: () = {
    #[allow(dead_code)]
    fn journaled() {
        <String as ::workflow_runtime::__private::WorkflowArgument>::journaled();
        <<anyhow::Result<
            String,
        > as ::workflow_runtime::__private::WorkflowResult>::Ok as ::workflow_runtime::__private::WorkflowOutput>::journaled();
    }
};

async fn search_and_summarize(
    question: &str,
    depth: u32,
) -> ::core::result::Result<
    <anyhow::Result<String> as ::workflow_runtime::__private::StepResult>::Ok,
    ::workflow_runtime::StepError,
> {
    async fn __workflow_step_body(question: &str, depth: u32) -> anyhow::Result<String> {
        Ok(format!("{question} at depth {depth}"))
    }
    ::workflow_runtime::__private::StepValue::run(
            ::workflow_runtime::__private::step("search_and_summarize")
                .retries(3u32)
                .timeout(::core::time::Duration::new(60u64, 0u32))
                .backoff(
                    ::workflow_runtime::Backoff::DEFAULT
                        .with_initial(::core::time::Duration::new(2u64, 0u32))
                        .with_max(::core::time::Duration::new(60u64, 0u32)),
                )
                .rate("llm"),
            || ::workflow_runtime::__private::classified(
                __workflow_step_body(question, ::core::clone::Clone::clone(&depth)),
                |__error| {
                    #[allow(unused_imports)]
                    use ::workflow_runtime::__private::{
                        ChainKind as _, ClassifyKind as _,
                    };
                    ::workflow_runtime::__private::StepErrorValue::into_failure(
                        (&__error).__workflow_error_kind(),
                        __error,
                    )
                },
            ),
        )
        .await
}
