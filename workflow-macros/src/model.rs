//! The validated model: what [`crate::expand`] quotes, with every decision already made.
//!
//! Values here are built only from input that passed [`crate::parse`] and [`crate::check`], so
//! expansion cannot fail and needs no error handling of its own.

use proc_macro2::Span;
use quote::format_ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, Generics, Ident, ItemFn, LitStr, Pat, Path, ReturnType, Token,
    Type, Visibility,
};

use crate::check;
use crate::ctxt::Ctxt;
use crate::parse::{ParsedOption, Target, Value};

/// The options of one attribute, sorted by what the macro does with them.
#[derive(Default)]
pub(crate) struct Options {
    /// `name = "..."`: the stable name journaled for the workflow or step.
    pub(crate) name: Option<LitStr>,
    /// `crate = "..."`, with its key for error spans.
    pub(crate) krate: Option<(Ident, Path)>,
    /// Options passed on to a runtime builder, in the order written.
    pub(crate) calls: Vec<BuilderCall>,
    /// `concurrency = N` of a workflow, with the span of `N`.
    pub(crate) concurrency: Option<(u32, Span)>,
    /// `version = N` of a workflow, with the span of `N`.
    pub(crate) version: Option<(u32, Span)>,
}

/// `.method(value)` on a runtime builder (`Step`, `Budget`), generated from one option.
#[derive(Clone, Debug)]
pub(crate) struct BuilderCall {
    /// The builder method, spanned at the option's key.
    pub(crate) method: Ident,
    pub(crate) value: Value,
    /// The span of the value as written, where a type error about it belongs.
    pub(crate) span: Span,
}

impl Options {
    pub(crate) fn new(parsed: Vec<ParsedOption>) -> Self {
        let mut options = Options::default();
        for option in parsed {
            match (option.def.target, option.value) {
                // A switch turned off calls nothing.
                (Target::Builder(_), Value::Flag(false)) => {}
                (Target::Builder(method), value) => options.calls.push(BuilderCall {
                    method: Ident::new(method, option.key.span()),
                    value,
                    span: option.value_span,
                }),
                (Target::Name, Value::Str(name)) => options.name = Some(name),
                (Target::Crate, Value::Path(path)) => options.krate = Some((option.key, path)),
                (Target::Concurrency, Value::U32(n)) => {
                    options.concurrency = Some((n, option.value_span));
                }
                (Target::Version, Value::U32(n)) => {
                    options.version = Some((n, option.value_span));
                }
                (target, value) => unreachable!("option for {target:?} holds {value:?}"),
            }
        }
        options
    }

    /// The path generated code reaches the runtime through: `crate = "..."` or
    /// `::workflow_runtime`.
    pub(crate) fn krate(&self) -> Path {
        match &self.krate {
            Some((_, path)) => path.clone(),
            None => default_crate(),
        }
    }
}

/// `::workflow_runtime`: with the leading `::` a module of the user's named `workflow_runtime`
/// cannot shadow it.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::workflow_runtime)
}

/// A `#[workflow]` fn whose signature passed [`crate::check::workflow_signature`].
pub(crate) struct Workflow {
    /// The user's fn, body already rewritten.
    pub(crate) func: ItemFn,
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    pub(crate) fingerprint: u64,
    /// `Budget` builder calls.
    pub(crate) budget: Vec<BuilderCall>,
    /// What `Workflow::concurrency()` returns, if not the default.
    pub(crate) concurrency: Option<(u32, Span)>,
    /// `Workflow::VERSION`, if not the default (1).
    pub(crate) version: Option<(u32, Span)>,
    pub(crate) args: Vec<Arg>,
    /// Where errors about `type Input` belong: the argument's type if there is one argument,
    /// else the whole argument list `( ... )`.
    pub(crate) input_span: Span,
    /// `R` of `-> R`.
    pub(crate) output: Type,
    /// Where errors about `type Output` belong: `T` of `Result<T, E>`, else `R`.
    pub(crate) ok_span: Span,
    /// `#[cfg]`s of the fn, repeated on every generated item so they come and go together.
    pub(crate) cfgs: Vec<Attribute>,
}

/// One argument of a workflow or step fn.
pub(crate) struct Arg {
    /// The name the generated code binds the argument to: the user's identifier, or a fresh
    /// mixed-site one for patterns like `(x, y): (u8, u8)`.
    pub(crate) binding: Ident,
    /// The pattern as the user wrote it.
    pub(crate) pat: Pat,
    pub(crate) ty: Type,
}

impl Workflow {
    /// Builds the model of a fn whose signature passed the checks.
    pub(crate) fn new(func: ItemFn, options: Options, fingerprint: u64) -> Self {
        let krate = options.krate();
        let name = options.name.unwrap_or_else(|| {
            LitStr::new(&func.sig.ident.unraw().to_string(), func.sig.ident.span())
        });
        let args = args(&func.sig.inputs);
        let output = match &func.sig.output {
            ReturnType::Type(_, ty) => (**ty).clone(),
            ReturnType::Default => unreachable!("checked: a workflow has a return type"),
        };
        let input_span = match args.as_slice() {
            [arg] => arg.ty.span(),
            _ => func.sig.paren_token.span.join(),
        };
        let ok_span = check::ok_type(&output).map_or_else(|| output.span(), Spanned::span);
        Workflow {
            input_span,
            ok_span,
            cfgs: cfg_attrs(&func.attrs),
            krate,
            name,
            fingerprint,
            budget: options.calls,
            concurrency: options.concurrency,
            version: options.version,
            args,
            output,
            func,
        }
    }
}

/// How a `#[step]` fn hands an argument to each attempt of its body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pass {
    /// A shared reference is `Copy`: every attempt gets the same one.
    AsIs,
    /// An owned value is moved by the body, so every attempt gets a clone.
    Clone,
}

/// A `#[step] async fn` whose signature passed [`crate::check::step_signature`].
pub(crate) struct StepFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) args: Vec<(Arg, Pass)>,
    /// `R` of `-> R`.
    pub(crate) output: Type,
    pub(crate) body: Block,
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    /// `Step` builder calls.
    pub(crate) calls: Vec<BuilderCall>,
}

impl StepFn {
    pub(crate) fn new(func: ItemFn, options: Options) -> Self {
        let krate = options.krate();
        // `modifiers` holds only `default`, which syn parses on associated fns, never on an
        // `Item::Fn`.
        let ItemFn {
            attrs,
            vis,
            modifiers: _,
            sig,
            block,
        } = func;
        let name = options
            .name
            .unwrap_or_else(|| LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span()));
        let args = args(&sig.inputs)
            .into_iter()
            .map(|arg| {
                let pass = match arg.ty {
                    Type::Reference(_) => Pass::AsIs,
                    _ => Pass::Clone,
                };
                (arg, pass)
            })
            .collect();
        let output = match sig.output {
            ReturnType::Type(_, ty) => *ty,
            ReturnType::Default => unreachable!("checked: a step fn has a return type"),
        };
        StepFn {
            attrs,
            vis,
            ident: sig.ident,
            generics: sig.generics,
            args,
            output,
            body: *block,
            krate,
            name,
            calls: options.calls,
        }
    }
}

/// An awaited call marked `#[step]` inside a workflow body.
pub(crate) struct StepSite {
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    /// `Step` builder calls.
    pub(crate) calls: Vec<BuilderCall>,
    /// The call whose future each attempt awaits: `fetch(url)` of `fetch(url).await?`.
    pub(crate) call: Expr,
    pub(crate) dot: Token![.],
    pub(crate) await_token: Token![await],
    /// The user's `?`, kept so the conversion error (if any) points at it.
    pub(crate) question: Option<Token![?]>,
    /// Arguments of the call that are a local variable alone, `fetch(url)`: each attempt moves
    /// it again, which compiles only for `Copy` types, so the expansion checks that with a
    /// message of its own.
    pub(crate) moved: Vec<Ident>,
}

impl StepSite {
    /// Models `expr` (the expression a `#[step]` is attached to, attribute already removed) as a
    /// step site, or reports why it cannot be one and hands the expression back unchanged.
    pub(crate) fn new(
        attr_span: Span,
        options: Options,
        krate: &Path,
        expr: Expr,
        ctxt: &Ctxt,
    ) -> Result<StepSite, Box<Expr>> {
        if let Some((key, _)) = &options.krate {
            ctxt.error_at(
                key.span(),
                "a step in a workflow body takes the workflow's `crate`; remove it here, and set it once on `#[workflow(crate = \"...\")]`",
            );
        }
        let (awaited, question) = match expr {
            Expr::Try(try_expr) if matches!(*try_expr.expr, Expr::Await(_)) => {
                let Expr::Await(awaited) = *try_expr.expr else {
                    unreachable!()
                };
                (awaited, Some(try_expr.question_token))
            }
            Expr::Await(awaited) => (awaited, None),
            other => {
                ctxt.error_spanned_by(&other, NOT_AN_AWAITED_CALL);
                return Err(Box::new(other));
            }
        };
        let default_name = match &*awaited.base {
            Expr::Call(call) => match &*call.func {
                Expr::Path(path) => path.path.segments.last().map(|s| s.ident.unraw()),
                _ => None,
            },
            Expr::MethodCall(call) => Some(call.method.unraw()),
            _ => {
                ctxt.error_spanned_by(&awaited.base, NOT_AN_AWAITED_CALL);
                return Err(Box::new(reassemble(awaited, question)));
            }
        };
        let name = match (options.name, default_name) {
            (Some(name), _) => name,
            (None, Some(ident)) => LitStr::new(&ident.to_string(), ident.span()),
            (None, None) => {
                ctxt.error_at(
                    attr_span,
                    "cannot name this step after the function it calls; add `name = \"...\"`, like `#[step(name = \"fetch\")]`",
                );
                return Err(Box::new(reassemble(awaited, question)));
            }
        };
        let moved = moved_locals(&awaited.base);
        Ok(StepSite {
            krate: krate.clone(),
            name,
            calls: options.calls,
            moved,
            call: *awaited.base,
            dot: awaited.dot_token,
            await_token: awaited.await_token,
            question,
        })
    }
}

/// The arguments of `call` that are a local variable alone (`url` of `fetch(url)`), by the
/// naming convention: consts and statics are `UPPER_CASE`, unit structs `CamelCase`, and moving
/// those is fine.
fn moved_locals(call: &Expr) -> Vec<Ident> {
    let args = match call {
        Expr::Call(call) => &call.args,
        Expr::MethodCall(call) => &call.args,
        _ => return Vec::new(),
    };
    args.iter()
        .filter_map(|arg| match arg {
            Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
                path.path.get_ident().cloned()
            }
            _ => None,
        })
        .filter(|ident| {
            let name = ident.unraw().to_string();
            name != "self" && name.starts_with(|c: char| c.is_lowercase() || c == '_')
        })
        .collect()
}

pub(crate) const NOT_AN_AWAITED_CALL: &str =
    "#[step] marks an awaited call, like `#[step] let x = fetch(url).await?;`";

fn reassemble(awaited: syn::ExprAwait, question: Option<Token![?]>) -> Expr {
    match question {
        Some(question_token) => Expr::Try(syn::ExprTry {
            attrs: Vec::new(),
            expr: Box::new(Expr::Await(awaited)),
            question_token,
        }),
        None => Expr::Await(awaited),
    }
}

/// The arguments of a fn that has no receiver (checked).
fn args(inputs: &syn::punctuated::Punctuated<FnArg, Token![,]>) -> Vec<Arg> {
    inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .enumerate()
        .map(|(index, typed)| {
            let binding = match &*typed.pat {
                Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
                    ident.ident.clone()
                }
                _ => format_ident!("__arg{}", index, span = Span::mixed_site()),
            };
            Arg {
                binding,
                pat: (*typed.pat).clone(),
                ty: (*typed.ty).clone(),
            }
        })
        .collect()
}

fn cfg_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .cloned()
        .collect()
}
