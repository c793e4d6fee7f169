//! Signature checks: each misuse of `#[workflow]` or `#[step]` on a fn becomes one error, spanned
//! on the offending tokens, and all of them are reported together.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit_mut::VisitMut;
use syn::{
    FnArg, GenericArgument, GenericParam, PathArguments, ReturnType, Safety, Signature, Type,
    TypeReference,
};

use crate::ctxt::Ctxt;

/// Checks the signature of a `#[workflow]` fn; returns whether it passed.
pub(crate) fn workflow_signature(sig: &Signature, ctxt: &Ctxt) -> bool {
    let before = ctxt.error_count();
    common(sig, "a workflow", ctxt);
    if let Some(receiver) = sig.receiver() {
        ctxt.error_spanned_by(
            receiver,
            "a workflow cannot take `self`: the engine starts it from its arguments alone; make it a free function",
        );
    }
    if !sig.generics.params.is_empty() {
        ctxt.error_spanned_by(
            &sig.generics,
            "a workflow cannot be generic: the journal records one name, input type and output type for it",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        ctxt.error_spanned_by(
            where_clause,
            "a workflow cannot have a `where` clause: it cannot be generic",
        );
    }
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input {
            workflow_argument(&typed.ty, ctxt);
        }
    }
    ctxt.error_count() == before
}

/// Checks the signature of a `#[step] async fn`; returns whether it passed.
pub(crate) fn step_signature(sig: &Signature, ctxt: &Ctxt) -> bool {
    let before = ctxt.error_count();
    common(sig, "a #[step] fn", ctxt);
    if let Some(receiver) = sig.receiver() {
        ctxt.error_spanned_by(
            receiver,
            "#[step] cannot go on a method: a retry re-runs the body, which cannot hold on to `self`; make it a free function taking what it needs",
        );
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            ctxt.error_spanned_by(
                param,
                "a #[step] fn cannot have type or const parameters: its value is journaled as one concrete type",
            );
        }
    }
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Type::Reference(TypeReference {
                mutability: Some(_),
                ..
            }) = &*typed.ty
        {
            ctxt.error_spanned_by(
                &typed.ty,
                "a #[step] fn cannot take `&mut`: a retry runs its body again, so it takes shared references or owned (`Clone`) values",
            );
        }
    }
    ctxt.error_count() == before
}

/// The checks `#[workflow]` and `#[step]` share; `what` names the fn in messages.
fn common(sig: &Signature, what: &str, ctxt: &Ctxt) {
    if sig.asyncness.is_none() {
        ctxt.error_spanned_by(
            sig.fn_token,
            format!("{what} must be an `async fn`; add `async` before `fn`"),
        );
    }
    if let Some(constness) = sig.constness {
        ctxt.error_spanned_by(
            constness,
            format!("{what} cannot be `const`: it runs at run time, driven by the engine; remove `const`"),
        );
    }
    if let Safety::Unsafe(unsafety) = sig.safety {
        ctxt.error_spanned_by(
            unsafety,
            format!("{what} cannot be `unsafe`: the engine calls it with no way to uphold a safety contract; remove `unsafe` and keep `unsafe` blocks inside the body"),
        );
    }
    if let Some(abi) = &sig.abi {
        ctxt.error_spanned_by(
            abi,
            format!(
                "{what} cannot be `extern`: the engine calls it as a Rust `async fn`; remove `{}`",
                render(abi)
            ),
        );
    }
    if let Some(variadic) = &sig.variadic {
        ctxt.error_spanned_by(variadic, format!("{what} cannot be variadic"));
    }
    match &sig.output {
        ReturnType::Default => ctxt.error_spanned_by(
            sig,
            format!("{what} returns a `Result`, whose `Ok` value is journaled; add a return type like `-> anyhow::Result<String>`"),
        ),
        ReturnType::Type(_, ty) => {
            if let Type::ImplTrait(_) = &**ty {
                ctxt.error_spanned_by(
                    ty,
                    format!("{what} needs a concrete return type, not `impl Trait`: its output is journaled"),
                );
            } else if let Some(ok) = ok_type(ty) {
                journaled_ok_type(ok, what, ctxt);
            } else if certainly_not_a_result(ty) {
                ctxt.error_spanned_by(
                    ty,
                    format!(
                        "{what} must return a `Result`: its `Ok` value is journaled, its `Err` value is a failure; write `-> anyhow::Result<{0}>` or `-> Result<{0}, YourError>`",
                        render(ty)
                    ),
                );
            }
        }
    }
}

/// Types that cannot be a `Result`, even through an alias: tuples (`()`), arrays, references and
/// the common std types. Anything else (`Outcome`, an alias) is left to the compiler, whose
/// error names the runtime's trait for return types.
fn certainly_not_a_result(ty: &Type) -> bool {
    const NOT_RESULTS: &[&str] = &[
        "String", "str", "Vec", "VecDeque", "Option", "Box", "Rc", "Arc", "HashMap", "BTreeMap",
        "HashSet", "BTreeSet", "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8",
        "i16", "i32", "i64", "i128", "isize", "f32", "f64",
    ];
    match ty {
        Type::Tuple(_)
        | Type::Array(_)
        | Type::Slice(_)
        | Type::Reference(_)
        | Type::Never(_)
        | Type::Ptr(_)
        | Type::FnPtr(_)
        | Type::TraitObject(_) => true,
        Type::Paren(paren) => certainly_not_a_result(&paren.elem),
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| NOT_RESULTS.contains(&last.ident.to_string().as_str())),
        _ => false,
    }
}

/// `T` of `Result<T, E>`, `anyhow::Result<T>`, `io::Result<T>`: the value that is journaled.
/// The error type is not journaled as such (only its message), so it may borrow.
pub(crate) fn ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if !last.ident.to_string().ends_with("Result") {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// A journaled value is decoded into an owned value of a concrete type: no reference, no
/// borrowed lifetime, no `impl Trait`, anywhere inside it.
fn journaled_ok_type(ok: &Type, what: &str, ctxt: &Ctxt) {
    #[derive(Default)]
    struct Find {
        reference: Option<TypeReference>,
        impl_trait: Option<syn::TypeImplTrait>,
    }
    impl VisitMut for Find {
        fn visit_type_reference_mut(&mut self, reference: &mut TypeReference) {
            self.reference.get_or_insert_with(|| reference.clone());
        }
        fn visit_type_impl_trait_mut(&mut self, impl_trait: &mut syn::TypeImplTrait) {
            self.impl_trait.get_or_insert_with(|| impl_trait.clone());
        }
    }
    let mut find = Find::default();
    find.visit_type_mut(&mut ok.clone());
    if let Some(reference) = find.reference {
        ctxt.error_spanned_by(
            &reference,
            format!(
                "the `Ok` value of {what} is persisted to the journal, so it must be owned; use `{}` instead of `{}`",
                owned_alternative(&reference),
                render(&reference),
            ),
        );
    } else if let Some(impl_trait) = find.impl_trait {
        ctxt.error_spanned_by(
            &impl_trait,
            format!("the `Ok` value of {what} is decoded from the journal, so it needs a concrete type, not `impl Trait`"),
        );
    } else if let Some(lifetime) = borrowed_lifetime(ok.to_token_stream()) {
        ctxt.error_spanned_by(
            ok,
            format!(
                "the `Ok` value of {what} is persisted to the journal, so it must be owned; `{}` borrows for `{lifetime}`",
                render(ok)
            ),
        );
    }
}

fn workflow_argument(ty: &Type, ctxt: &Ctxt) {
    match ty {
        Type::Reference(reference) => ctxt.error_spanned_by(
            ty,
            format!(
                "workflow arguments are persisted to the journal, so they must be owned; use `{}` instead of `{}`",
                owned_alternative(reference),
                render(ty),
            ),
        ),
        Type::ImplTrait(_) => ctxt.error_spanned_by(
            ty,
            "workflow arguments are decoded from the journal, so they need a concrete type, not `impl Trait`",
        ),
        _ => {
            if let Some(lifetime) = borrowed_lifetime(ty.to_token_stream()) {
                ctxt.error_spanned_by(
                    ty,
                    format!(
                        "workflow arguments are persisted to the journal, so they must be owned; `{}` borrows for `{lifetime}`",
                        render(ty)
                    ),
                );
            }
        }
    }
}

/// The owned type to suggest for a borrowed one: `&str` -> `String`, `&[T]` -> `Vec<T>`,
/// `&Path` -> `PathBuf`, `&T` -> `T`.
fn owned_alternative(reference: &TypeReference) -> String {
    match &*reference.elem {
        Type::Slice(slice) => format!("Vec<{}>", render(&slice.elem)),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last().map(|s| s.ident.to_string());
            match last.as_deref() {
                Some("str") => "String".to_owned(),
                Some("Path") => "PathBuf".to_owned(),
                Some("OsStr") => "OsString".to_owned(),
                Some("CStr") => "CString".to_owned(),
                _ => render(&reference.elem),
            }
        }
        elem => render(elem),
    }
}

/// A lifetime other than `'static` anywhere in the tokens, such as `'a` of `Cow<'a, str>`.
fn borrowed_lifetime(tokens: TokenStream) -> Option<String> {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                if let Some(TokenTree::Ident(ident)) = tokens.peek()
                    && ident != "static"
                {
                    return Some(format!("'{ident}"));
                }
            }
            TokenTree::Group(group) => {
                if let Some(found) = borrowed_lifetime(group.stream()) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// Tokens as a user would write them (`&[u8]`, not `& [u8]`), for messages.
pub(crate) fn render<T: ToTokens>(tokens: &T) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        ("& ", "&"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ::", "::"),
        (":: ", "::"),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
        (" ,", ","),
    ] {
        text = text.replace(from, to);
    }
    text
}
