//! The two macros end to end: parse -> check (signature, patches, determinism) -> model ->
//! rewrite -> expand, with one [`Ctxt`] collecting the errors of every stage.
//!
//! Whatever goes wrong, the output contains the user's item (so its callers, and IDEs, keep
//! working) followed by every error as a `compile_error!` at its own span.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Item, ItemFn};

use crate::ctxt::Ctxt;
use crate::model::{Options, StepFn, Workflow};
use crate::parse::{CRATE_OPTION, STEP_OPTIONS, WORKFLOW_OPTIONS, parse_options};
use crate::{check, determinism, expand, fingerprint, patches, rewrite};

/// `#[workflow(args)] item`.
pub(crate) fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    let ctxt = Ctxt::new();
    let expanded = workflow_with(args, item, &ctxt);
    let errors = ctxt.into_compile_errors();
    quote!(#expanded #errors)
}

/// The expansion of `#[workflow(args)] item`, its errors recorded in `ctxt`.
pub(crate) fn workflow_with(args: TokenStream, item: TokenStream, ctxt: &Ctxt) -> TokenStream {
    let options = Options::new(parse_options(args, &[WORKFLOW_OPTIONS, CRATE_OPTION], ctxt));
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => workflow_fn(func, options, ctxt),
        Ok(other) => {
            ctxt.error_spanned_by(
                item_head(&other),
                "#[workflow] goes on an `async fn`, like `#[workflow] async fn agent(goal: String) -> anyhow::Result<String>`",
            );
            other.into_token_stream()
        }
        Err(error) => {
            ctxt.syn_error(error);
            item
        }
    }
}

fn workflow_fn(mut func: ItemFn, options: Options, ctxt: &Ctxt) -> TokenStream {
    let signature_ok = check::workflow_signature(&func.sig, ctxt);
    let fingerprint = fingerprint::fingerprint(&func.block);
    // Before the rewrite, which removes the `#[step]`s that say where a patch must not be.
    patches::workflow_body(&mut func.block, ctxt);
    determinism::workflow_body(&func.sig, &mut func.block, &options.krate(), ctxt);
    rewrite::workflow_body(&mut func.block, &options.krate(), ctxt);
    if signature_ok {
        expand::workflow(&Workflow::new(func, options, fingerprint))
    } else {
        // Without a valid signature there is no sound `Workflow` impl to generate; the fn alone
        // (its steps rewritten) keeps the body's own errors meaningful. Without its `const`,
        // already reported: rustc would add "functions cannot be both `const` and `async`".
        func.sig.constness = None;
        func.into_token_stream()
    }
}

/// `#[step(args)] item`, on an `async fn` (a `#[step]` inside a workflow body never gets here:
/// `#[workflow]` removes it first).
pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let ctxt = Ctxt::new();
    let expanded = step_with(args, item, &ctxt);
    let errors = ctxt.into_compile_errors();
    quote!(#expanded #errors)
}

/// The expansion of `#[step(args)] item`, its errors recorded in `ctxt`.
pub(crate) fn step_with(args: TokenStream, item: TokenStream, ctxt: &Ctxt) -> TokenStream {
    let options = Options::new(parse_options(args, &[STEP_OPTIONS, CRATE_OPTION], ctxt));
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(mut func)) => {
            let signature_ok = check::step_signature(&func.sig, ctxt);
            patches::step_fn_body(&mut func.block, ctxt);
            rewrite::step_fn_body(&mut func.block, ctxt);
            if signature_ok {
                expand::step_fn(&StepFn::new(func, options))
            } else {
                func.sig.constness = None;
                func.into_token_stream()
            }
        }
        Ok(other) => {
            ctxt.error_spanned_by(
                item_head(&other),
                "#[step] goes on an `async fn`, or on an awaited call inside a #[workflow] fn, like `#[step] let x = fetch(url).await?;`",
            );
            other.into_token_stream()
        }
        // rustc reports "custom attributes cannot be applied to statements" and, on stable,
        // still expands the attribute, handing this macro the statement.
        Err(_) if syn::parse2::<syn::Stmt>(item.clone()).is_ok() => {
            ctxt.error_spanned_by(
                &item,
                "#[step] marks a call inside a #[workflow] fn, which removes it before the compiler sees it; add #[workflow] to the enclosing `async fn`, or put #[step] on the called `async fn` itself",
            );
            item
        }
        Err(error) => {
            ctxt.syn_error(error);
            item
        }
    }
}

/// The keyword and name of an item (`struct Foo`), where "this is not a fn" belongs; the whole
/// item would underline its entire body.
fn item_head(item: &Item) -> TokenStream {
    macro_rules! head {
        ($item:ident . $keyword:ident) => {{
            let (keyword, ident) = (&$item.$keyword, &$item.ident);
            quote!(#keyword #ident)
        }};
    }
    match item {
        Item::Struct(item) => head!(item.struct_token),
        Item::Enum(item) => head!(item.enum_token),
        Item::Union(item) => head!(item.union_token),
        Item::Trait(item) => head!(item.trait_token),
        Item::Mod(item) => head!(item.mod_token),
        Item::Const(item) => head!(item.const_token),
        Item::Static(item) => head!(item.static_token),
        Item::Type(item) => head!(item.type_token),
        Item::Impl(item) => {
            let (keyword, ty) = (&item.impl_token, &item.self_ty);
            quote!(#keyword #ty)
        }
        _ => item.to_token_stream(),
    }
}
