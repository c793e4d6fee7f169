//! Quoting: turns a validated model into tokens. Every decision was made before this module, so
//! nothing here can fail.
//!
//! Paths are absolute (`::core`, `::std`, `#krate::__private`) so that a user module that
//! shadows `Result`, `Box` or the runtime's name changes nothing. Tokens whose type errors a user
//! may see are spanned at the user's own tokens with `quote_spanned!`; generated locals use
//! `Span::mixed_site()` so they can neither capture nor be captured by the user's names.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

use crate::model::{BuilderCall, Pass, StepFn, StepSite, Workflow};
use crate::parse::{BackoffValue, Value};

// #[workflow(max_steps = 50)]
// pub async fn research_agent(goal: String) -> anyhow::Result<String> { body }
// becomes
// pub async fn research_agent(goal: String) -> anyhow::Result<String> { rewritten body }
// pub struct research_agent {}
// impl ::workflow_runtime::Workflow for research_agent
// where
//     for<'__w> String: WorkflowArgument,
//     for<'__w> <anyhow::Result<String> as WorkflowResult>::Ok: WorkflowOutput,
// {
//     type Input = (<String as WorkflowArgument>::Journaled,);
//     type Output = <<anyhow::Result<String> as WorkflowResult>::Ok as WorkflowOutput>::Journaled;
//     const NAME: &'static str = "research_agent";
//     const FINGERPRINT: u64 = 0x...;
//     const VERSION: u32 = 2u32; // only with `version = 2`
//     fn budget() -> ::workflow_runtime::Budget { Budget::UNLIMITED.with_max_steps(50u64) }
//     fn run(input) -> BoxFuture<..> {
//         Box::pin(async move {
//             let (goal,) = input;
//             Result::map(
//                 into_outcome(research_agent(<String as WorkflowArgument>::from_journaled(goal)).await),
//                 WorkflowOutput::into_journaled,
//             )
//         })
//     }
// }
// const _: () = {
//     fn journaled() {
//         <String as WorkflowArgument>::journaled();
//         <<anyhow::Result<String> as WorkflowResult>::Ok as WorkflowOutput>::journaled();
//     }
// };
// (`WorkflowArgument` and the others are in `::workflow_runtime::__private`.) The
// `Journaled` projections are the types themselves, but inside the impl, under its `where`
// clause, rustc proves the serde bounds of `Workflow::Input` and `Workflow::Output` from the
// projections' own bounds rather than from the types: an argument or output that is not
// serializable does not fail them in serde's words (and with paths into serde_core). The impl
// then holds only for serializable types, and the calls in `journaled`, at the user's types,
// report each one that is not, in the runtime's words. `for<'__w>` keeps rustc from rejecting a
// bound on concrete types as trivially false; as a `where` clause on the types themselves
// (`String: Serialize`) rustc would find it ambiguous with serde's impls.
pub(crate) fn workflow(model: &Workflow) -> TokenStream {
    let Workflow {
        func,
        krate,
        name,
        fingerprint,
        budget,
        concurrency,
        version,
        args,
        input_span,
        output,
        ok_span,
        cfgs,
    } = model;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let output_span = output.span();

    let input = Ident::new("input", Span::mixed_site());
    let krate_at_output = respan(krate, output_span);
    // Each argument's type as `<Goal as WorkflowArgument>::Journaled`, at the user's `Goal`.
    let journaled_tys = args.iter().map(|arg| {
        let ty = &arg.ty;
        let krate = respan(krate, ty.span());
        quote_spanned!(ty.span()=> <#ty as #krate::__private::WorkflowArgument>::Journaled)
    });
    let input_ty = quote_spanned!(*input_span=> (#(#journaled_tys,)*));
    // `<` and `Ok` at `T` of `Result<T, E>`: the span of the whole type runs from one to the
    // other, so an unserializable `T` is underlined alone.
    let ok_ty = quote_spanned!(*ok_span=>
        <#output as #krate_at_output::__private::WorkflowResult>::Ok
    );
    let output_ty = quote_spanned!(*ok_span=>
        <#ok_ty as #krate_at_output::__private::WorkflowOutput>::Journaled
    );
    // Whole items at the user's spans: "private type in public interface" reports the item.
    let input_item = quote_spanned!(*input_span=> type Input = #input_ty;);
    let output_item = quote_spanned!(*ok_span=> type Output = #output_ty;);
    let lifetime = syn::Lifetime::new("'__w", Span::mixed_site());
    let argument_bounds = args.iter().map(|arg| {
        let ty = &arg.ty;
        let krate = respan(krate, ty.span());
        quote_spanned!(ty.span()=> for<#lifetime> #ty: #krate::__private::WorkflowArgument,)
    });
    let output_bound = quote_spanned!(*ok_span=>
        for<#lifetime> #ok_ty: #krate_at_output::__private::WorkflowOutput,
    );
    // Each call at the user's type, so that the error underlines `Goal` in `goal: Goal`, or
    // `T` in `Result<T, E>`.
    let argument_checks = args.iter().map(|arg| {
        let ty = &arg.ty;
        let krate = respan(krate, ty.span());
        quote_spanned!(ty.span()=> <#ty as #krate::__private::WorkflowArgument>::journaled();)
    });
    let output_check = quote_spanned!(*ok_span=>
        <#ok_ty as #krate_at_output::__private::WorkflowOutput>::journaled();
    );
    let journaled = Ident::new("journaled", Span::mixed_site());
    let budget_calls = budget.iter().map(|call| builder_call(call, krate));
    // Only when set: the trait's default (`None`, no limit of its own) stays the runtime's.
    let concurrency = concurrency.map(|(n, span)| {
        let n = spanned_literal(Literal::u32_suffixed(n), span);
        quote_spanned! {span=>
            fn concurrency() -> ::core::option::Option<u32> {
                ::core::option::Option::Some(#n)
            }
        }
    });
    // Only when set, like `concurrency`: without `version` the trait's default (1) applies.
    let version = version.map(|(n, span)| {
        let n = spanned_literal(Literal::u32_suffixed(n), span);
        quote_spanned!(span=> const VERSION: ::core::primitive::u32 = #n;)
    });
    let fingerprint = Literal::u64_suffixed(*fingerprint);

    let bindings: Vec<&Ident> = args.iter().map(|arg| &arg.binding).collect();
    let unpack = if bindings.is_empty() {
        quote!(let () = #input;)
    } else {
        quote!(let (#(#bindings,)*) = #input;)
    };
    // Spanned at the fn's name: "future cannot be sent between threads safely", or a step
    // value that is not serializable (checked again where the body's future is boxed), then
    // points at the workflow rather than at the attribute.
    let krate_at_ident = respan(krate, ident.span());
    // Each argument back from its journaled form (the identity), which only
    // `T: WorkflowArgument`, the impl's `where` clause, makes known to be `T`.
    let passes = args.iter().map(|arg| {
        let (ty, binding) = (&arg.ty, &arg.binding);
        quote_spanned! {ident.span()=>
            <#ty as #krate_at_ident::__private::WorkflowArgument>::from_journaled(#binding)
        }
    });
    let run = quote_spanned! {ident.span()=>
        fn run(#input: Self::Input) -> #krate_at_ident::__private::BoxFuture<
            'static,
            ::core::result::Result<Self::Output, #krate_at_ident::WorkflowFailure>
        > {
            ::std::boxed::Box::pin(async move {
                #unpack
                ::core::result::Result::map(
                    #krate_at_ident::__private::WorkflowResult::into_outcome(#ident(#(#passes),*).await),
                    #krate_at_ident::__private::WorkflowOutput::into_journaled,
                )
            })
        }
    };

    let doc = format!(
        " The workflow [`{ident}()`](fn@{ident}) as a type, to name it where the engine takes one: \
         `Engine::start::<{ident}>`, `Engine::register::<{ident}>`.\n\n \
         Generated by `#[workflow]`, with its `Workflow` implementation."
    );

    quote! {
        #func

        #(#cfgs)*
        #[allow(non_camel_case_types, dead_code)]
        #[doc = #doc]
        #vis struct #ident {}

        #(#cfgs)*
        impl #krate::Workflow for #ident
        where
            #(#argument_bounds)*
            #output_bound
        {
            #input_item
            #output_item
            const NAME: &'static str = #name;
            const FINGERPRINT: u64 = #fingerprint;
            #version

            fn budget() -> #krate::Budget {
                #krate::Budget::UNLIMITED #(#budget_calls)*
            }

            #concurrency

            #run
        }

        #(#cfgs)*
        const _: () = {
            #[allow(dead_code)]
            fn #journaled() {
                #(#argument_checks)*
                #output_check
            }
        };
    }
}

// #[step(retries = 3)] fetch(&url).await?
// becomes
// ::workflow_runtime::__private::StepValue::run(
//     ::workflow_runtime::__private::step("fetch").retries(3u32),
//     || ::workflow_runtime::__private::classified(fetch(&url), <classify>),
// )
// .await?
// `StepValue::run` is `Step::run` bound by `StepValue` instead of serde's traits: a value that
// is not serializable is reported once, as an unmet `StepValue`, in the runtime's words.
pub(crate) fn step_site(site: &StepSite) -> TokenStream {
    let StepSite {
        krate,
        name,
        calls,
        call,
        dot,
        await_token,
        question,
        moved,
    } = site;
    let calls = calls.iter().map(|call| builder_call(call, krate));
    // `run` carries the call's span, so "the value of a step must be serializable" (the bound
    // of `StepValue::run`) points at the user's call. The closure's pipes keep the macro's span:
    // they are ours, and lints like `redundant_closure` must not fire on `|| plan()`.
    let closure = quote!(||);
    let krate = respan(krate, call.span());
    let classify = classify(&krate, call.span());
    let attempt = quote_spanned!(call.span()=> #krate::__private::classified(#call, #classify));
    let attempt = owned_value_check(attempt, &krate, call.span());
    let attempt = if moved.is_empty() {
        attempt
    } else {
        let checks = moved.iter().map(moved_check);
        quote!({ #(#checks)* #attempt })
    };
    let run = quote_spanned! {call.span()=>
        #krate::__private::StepValue::run(
            #krate::__private::step(#name) #(#calls)*,
            #closure #attempt,
        )
    };
    // `.await` at the call too: the unsatisfied bound of `run` is reported again where its
    // future is awaited, and at the same span rustc reports it once.
    let await_ = quote_spanned!(call.span()=> . await);
    let _ = (dot, await_token);
    quote!(#run #await_ #question)
}

// fetch(url) in a step, `url` a local
// gets, before the call in the attempt closure,
// { #[diagnostic::on_unimplemented(..)] trait Copy { .. } impl<T: ::core::marker::Copy> Copy for T {} Copy::moved_into_step(&url); }
// Each attempt calls the closure again, so moving `url` into the call compiles only if it is
// `Copy`. Without this, rustc says "cannot move out of `url`, a captured variable in an `FnMut`
// closure" and points into the runtime; with it, the type error (which also spares the user
// the borrow checker's) says why, at `url`. The trait is named `Copy` so that rustc's line
// "the trait `Copy` is not implemented for `String`" states the actual requirement, and it is
// local, so it needs nothing from the runtime; `do_not_recommend` keeps rustc from reporting
// its blanket impl instead.
fn moved_check(ident: &Ident) -> TokenStream {
    let mixed = Span::mixed_site();
    let copy = Ident::new("Copy", mixed);
    let method = Ident::new("moved_into_step", mixed);
    let message =
        format!("`{ident}` is moved into the step's call, which is made again for each attempt");
    let note = format!(
        "each attempt of a step builds a fresh future from its call, so the call can only borrow what it captures: pass a reference (`&{ident}`) or a clone (`{ident}.clone()`)"
    );
    let borrow = quote_spanned!(ident.span()=> &#ident);
    quote_spanned! {mixed=>
        {
            #[diagnostic::on_unimplemented(
                message = #message,
                label = "moved here by every attempt",
                note = #note,
            )]
            trait #copy {
                fn #method(&self) {}
            }
            #[diagnostic::do_not_recommend]
            impl<T: ::core::marker::Copy> #copy for T {}
            #copy::#method(#borrow);
        }
    }
}

// classified(fetch(&url), ..), the future of one attempt
// becomes
// match classified(fetch(&url), ..) {
//     attempt => {
//         use ::workflow_runtime::__private::{AnyValue as _, BorrowedValue as _};
//         OwnedStepValue::must_be_owned((&&Probe::of(&attempt)).__workflow_step_value());
//         attempt
//     }
// }
// (`OwnedStepValue` and `Probe` in `::workflow_runtime::__private`.) A step whose value is a
// reference (`&'static str`) meets `StepValue`'s serde bounds up to lifetimes, so rustc's only
// complaint came from the borrow checker, in serde's words: "implementation of `Deserialize`
// is not general enough". Autoref specialization, resolved here where the attempt's output is
// concrete, finds the value's type for a reference and `Owned` otherwise; only `Owned`
// implements `OwnedStepValue`, so a reference fails it, in its words, at the user's call, and
// the borrow checker, which does not run on a body with type errors, says nothing more. A
// reference deeper inside (`Vec<&str>`) still gets serde's words. The scrutinee's temporaries
// live as long as they did in `|| classified(..)`.
pub(crate) fn owned_value_check(
    attempt: TokenStream,
    krate: &TokenStream,
    span: Span,
) -> TokenStream {
    let value = Ident::new("attempt", Span::mixed_site());
    let check = quote_spanned! {span=>
        #krate::__private::OwnedStepValue::must_be_owned(
            (&&#krate::__private::Probe::of(&#value)).__workflow_step_value()
        );
    };
    quote! {
        match #attempt {
            #value => {
                #[allow(unused_imports)]
                use #krate::__private::{AnyValue as _, BorrowedValue as _};
                #check
                #value
            }
        }
    }
}

// The closure that turns an attempt's error into a `StepFailure` with its retry class:
// |error| { StepErrorValue::into_failure((&error).__workflow_error_kind(), error) }
// Autoref specialization, resolved here where the error type is concrete: the method of
// `ClassifyKind` (for `E: Classify`) takes `&E` and wins; otherwise the one of `ChainKind` (for
// `&E`) applies, which classifies by the error's chain of causes. `into_failure` is a method of
// `StepErrorValue` with the error as `Self`, so an error type that does not convert into
// `Box<dyn Error>` is reported once, as an unmet `StepErrorValue`, without a note naming the
// runtime's private items.
fn classify(krate: &TokenStream, span: Span) -> TokenStream {
    // At the user's call, like the rest of the expression: "the error of a step must be an
    // error type" belongs there, and rustc moves an argument of another syntax context (a
    // mixed-site local) to the attribute. No user code is inside this closure to capture it.
    let error = Ident::new("__error", span);
    let classified = quote_spanned!(span=>
        #krate::__private::StepErrorValue::into_failure((&#error).__workflow_error_kind(), #error)
    );
    quote! {
        |#error| {
            #[allow(unused_imports)]
            use #krate::__private::{ChainKind as _, ClassifyKind as _};
            #classified
        }
    }
}

// #[step(retries = 2)]
// pub async fn fetch(url: String, client: &Client) -> anyhow::Result<Page> { body }
// becomes
// pub async fn fetch(url: String, client: &Client)
//     -> ::core::result::Result<<anyhow::Result<Page> as StepResult>::Ok, ::workflow_runtime::StepError>
// {
//     async fn __workflow_step_body(url: String, client: &Client) -> anyhow::Result<Page> { body }
//     ::workflow_runtime::__private::StepValue::run(
//         ::workflow_runtime::__private::step("fetch").retries(2u32),
//         || ::workflow_runtime::__private::classified(
//             __workflow_step_body(::core::clone::Clone::clone(&url), client),
//             <classify>,
//         ),
//     )
//     .await
// }
pub(crate) fn step_fn(model: &StepFn) -> TokenStream {
    let StepFn {
        attrs,
        vis,
        ident,
        generics,
        args,
        output,
        body,
        krate,
        name,
        calls,
    } = model;
    let where_clause = &generics.where_clause;
    let body_fn = Ident::new("__workflow_step_body", Span::mixed_site());
    let outer_params = args.iter().map(|(arg, _)| {
        let binding = &arg.binding;
        let ty = &arg.ty;
        quote!(#binding: #ty)
    });
    let inner_params = args.iter().map(|(arg, _)| {
        let pat = &arg.pat;
        let ty = &arg.ty;
        quote!(#pat: #ty)
    });
    let passes = args.iter().map(|(arg, pass)| {
        let binding = &arg.binding;
        match pass {
            Pass::AsIs => binding.to_token_stream(),
            // At the argument's type: "`Conn: Clone` is not satisfied" belongs there.
            Pass::Clone => {
                quote_spanned!(arg.ty.span()=> ::core::clone::Clone::clone(&#binding))
            }
        }
    });
    let output_span = output.span();
    let krate_at_output = respan(krate, output_span);
    let returns = quote_spanned! {output_span=>
        ::core::result::Result<
            <#output as #krate_at_output::__private::StepResult>::Ok,
            #krate_at_output::StepError
        >
    };
    let calls = calls.iter().map(|call| builder_call(call, krate));
    // At the return type: "the value of a step must be serializable" (the bound of
    // `StepValue::run`) belongs there. The closure's pipes keep the macro's span, as in
    // `step_site`.
    let closure = quote!(||);
    let classify = classify(&krate_at_output, output_span);
    let run = quote_spanned! {output_span=>
        #krate_at_output::__private::StepValue::run(
            #krate_at_output::__private::step(#name) #(#calls)*,
            #closure #krate_at_output::__private::classified(#body_fn(#(#passes),*), #classify),
        )
        .await
    };
    quote! {
        #(#attrs)*
        #vis async fn #ident #generics (#(#outer_params),*) -> #returns #where_clause {
            async fn #body_fn #generics (#(#inner_params),*) -> #output #where_clause #body

            #run
        }
    }
}

/// The runtime's path with every token at `span`. Interpolated tokens keep their own spans even
/// in `quote_spanned!`, and an expression that starts with a token of the macro's own (the
/// default `::workflow_runtime`) is reported at the attribute instead of at the user's code.
fn respan(krate: &syn::Path, span: Span) -> TokenStream {
    fn respan_stream(tokens: TokenStream, span: Span) -> TokenStream {
        tokens
            .into_iter()
            .map(|mut token| {
                if let proc_macro2::TokenTree::Group(group) = &token {
                    let mut inner = proc_macro2::Group::new(
                        group.delimiter(),
                        respan_stream(group.stream(), span),
                    );
                    inner.set_span(span);
                    token = inner.into();
                }
                token.set_span(span);
                token
            })
            .collect()
    }
    respan_stream(krate.to_token_stream(), span)
}

/// `.method(value)`, spanned at the option so a type mismatch points at what the user wrote.
fn builder_call(call: &BuilderCall, krate: &syn::Path) -> TokenStream {
    let method = &call.method;
    let value = value(&call.value, call.span, krate);
    quote_spanned!(call.span=> .#method(#value))
}

fn spanned_literal(mut literal: Literal, span: Span) -> TokenStream {
    literal.set_span(span);
    literal.into_token_stream()
}

fn duration(duration: Duration, span: Span) -> TokenStream {
    let secs = spanned_literal(Literal::u64_suffixed(duration.as_secs()), span);
    let nanos = spanned_literal(Literal::u32_suffixed(duration.subsec_nanos()), span);
    quote_spanned!(span=> ::core::time::Duration::new(#secs, #nanos))
}

fn value(value: &Value, span: Span, krate: &syn::Path) -> TokenStream {
    match value {
        Value::Str(lit) => lit.to_token_stream(),
        Value::Path(path) => path.to_token_stream(),
        Value::U32(n) => spanned_literal(Literal::u32_suffixed(*n), span),
        Value::U64(n) => spanned_literal(Literal::u64_suffixed(*n), span),
        Value::F64(n) => spanned_literal(Literal::f64_suffixed(*n), span),
        Value::Flag(_) => TokenStream::new(),
        Value::Duration(d) => duration(*d, span),
        // backoff(initial = "2s", jitter = 0.0)
        // becomes
        // ::workflow_runtime::Backoff::DEFAULT.with_initial(Duration::new(2u64, 0u32)).with_jitter(0f64)
        Value::Backoff(backoff) => {
            let krate = respan(krate, span);
            let BackoffValue {
                initial,
                factor,
                max,
                jitter,
            } = backoff;
            let initial = initial.map(|d| {
                let d = duration(d, span);
                quote_spanned!(span=> .with_initial(#d))
            });
            let factor = factor.map(|n| {
                let n = spanned_literal(Literal::f64_suffixed(n), span);
                quote_spanned!(span=> .with_factor(#n))
            });
            let max = max.map(|d| {
                let d = duration(d, span);
                quote_spanned!(span=> .with_max(#d))
            });
            let jitter = jitter.map(|n| {
                let n = spanned_literal(Literal::f64_suffixed(n), span);
                quote_spanned!(span=> .with_jitter(#n))
            });
            quote_spanned! {span=>
                #krate::Backoff::DEFAULT #initial #factor #max #jitter
            }
        }
    }
}
