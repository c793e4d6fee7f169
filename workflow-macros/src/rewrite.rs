//! Finds the `#[step]`s in a workflow body and rewrites each into a call of the runtime's step
//! builder.
//!
//! rustc accepts `#[step]` on a `let`, on an expression statement and on an expression inside
//! the input of an attribute macro, on stable, as long as the macro removes it: the
//! `stmt_expr_attributes` gate and attribute resolution run on the expanded code. This is why
//! every `#[step]` the visitor meets is removed, including the ones it reports as errors.

use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, Item, Local, Path, StmtMacro};

use crate::ctxt::Ctxt;
use crate::expand;
use crate::model::{NOT_AN_AWAITED_CALL, Options, StepSite};
use crate::parse::{self, CRATE_OPTION, STEP_OPTIONS};

/// Rewrites every `#[step]` in `body`, at any depth (blocks, loops, `if`/`match` arms, closures,
/// async blocks), except inside nested items, which the workflow does not run.
pub(crate) fn workflow_body(body: &mut Block, krate: &Path, ctxt: &Ctxt) {
    StepRewriter { krate, ctxt }.visit_block_mut(body);
}

/// Reports (and removes) every `#[step]` in the body of a `#[step] async fn`: the whole body is
/// already one step.
pub(crate) fn step_fn_body(body: &mut Block, ctxt: &Ctxt) {
    StepRejecter {
        ctxt,
        message: "a #[step] fn runs as one step, so its body cannot contain steps; mark the calls in the calling #[workflow] instead",
    }
    .visit_block_mut(body);
}

struct StepRewriter<'a> {
    krate: &'a Path,
    ctxt: &'a Ctxt,
}

impl StepRewriter<'_> {
    // #[step(retries = 3)] <fetch(url).await?>
    // becomes
    // ::workflow_runtime::__private::step("fetch").retries(3u32).run(|| <fetch(url), classified>).await?
    fn rewrite(&self, attr: &Attribute, mut expr: Expr) -> Expr {
        let options = Options::new(parse::parse_attribute_options(
            attr,
            &[STEP_OPTIONS, CRATE_OPTION],
            self.ctxt,
        ));
        let before = self.ctxt.error_count();
        StepRejecter {
            ctxt: self.ctxt,
            message: "a step cannot contain another step: the inner call would run inside each attempt of the outer one; bind it with its own `#[step] let` first",
        }
        .visit_expr_mut(&mut expr);
        if self.ctxt.error_count() > before {
            // Left as plain awaited calls: wrapped in the closure, the inner `.await` would add
            // "`await` is only allowed inside `async` functions" to the error above.
            return expr;
        }
        match StepSite::new(attr_span(attr), options, self.krate, expr, self.ctxt) {
            Ok(site) => Expr::Verbatim(expand::step_site(&site)),
            Err(expr) => *expr,
        }
    }
}

impl VisitMut for StepRewriter<'_> {
    // #[step(opts)] let PAT = EXPR.await?;
    // becomes
    // let PAT = <step(opts) of EXPR.await?>;
    fn visit_local_mut(&mut self, local: &mut Local) {
        let Some(attr) = take_step_attr(&mut local.attrs, self.ctxt) else {
            return visit_mut::visit_local_mut(self, local);
        };
        let Some(init) = &mut local.init else {
            self.ctxt.error_spanned_by(&attr, NOT_AN_AWAITED_CALL);
            return;
        };
        // `#[step] let x = #[step] f().await;` names one step twice.
        if let Some(attrs) = expr_attrs_mut(&mut init.expr)
            && let Some(second) = take_step_attr(attrs, self.ctxt)
        {
            self.ctxt
                .error_spanned_by(&second, "duplicate #[step] on the same call");
        }
        let expr = std::mem::replace(&mut *init.expr, Expr::Verbatim(Default::default()));
        *init.expr = self.rewrite(&attr, expr);
        if let Some((_, diverge)) = &mut init.diverge {
            self.visit_expr_mut(diverge);
        }
    }

    // let PAT = #[step(opts)] EXPR.await;   and   #[step(opts)] EXPR.await?;
    // become
    // let PAT = <step(opts) of EXPR.await>; and   <step(opts) of EXPR.await?>;
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        let attr = expr_attrs_mut(expr).and_then(|attrs| take_step_attr(attrs, self.ctxt));
        match attr {
            Some(attr) => {
                let taken = std::mem::replace(expr, Expr::Verbatim(Default::default()));
                *expr = self.rewrite(&attr, taken);
            }
            None => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_stmt_macro_mut(&mut self, stmt: &mut StmtMacro) {
        if let Some(attr) = take_step_attr(&mut stmt.attrs, self.ctxt) {
            self.ctxt.error_spanned_by(&attr, NOT_AN_AWAITED_CALL);
        }
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        reject_in_nested_item(item, self.ctxt);
    }
}

/// A nested fn is not part of the workflow's execution (it may be called from anywhere), so its
/// `#[step]`s are errors.
fn reject_in_nested_item(item: &mut Item, ctxt: &Ctxt) {
    StepRejecter {
        ctxt,
        message: "#[step] only marks calls in the body of the #[workflow] fn itself; this one is inside a nested item",
    }
    .visit_item_mut(item);
}

/// An item carrying its own `#[workflow]` or `#[step]`, which expands on its own.
fn expands_on_its_own(item: &Item) -> bool {
    let Item::Fn(func) = item else { return false };
    func.attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "step" || s.ident == "workflow")
    })
}

/// Removes every `#[step]` it finds, reporting each with `message`.
struct StepRejecter<'a> {
    ctxt: &'a Ctxt,
    message: &'static str,
}

impl VisitMut for StepRejecter<'_> {
    fn visit_local_mut(&mut self, local: &mut Local) {
        if let Some(attr) = take_step_attr(&mut local.attrs, self.ctxt) {
            self.ctxt.error_spanned_by(&attr, self.message);
        }
        visit_mut::visit_local_mut(self, local);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Some(attr) = expr_attrs_mut(expr).and_then(|attrs| take_step_attr(attrs, self.ctxt))
        {
            self.ctxt.error_spanned_by(&attr, self.message);
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_stmt_macro_mut(&mut self, stmt: &mut StmtMacro) {
        if let Some(attr) = take_step_attr(&mut stmt.attrs, self.ctxt) {
            self.ctxt.error_spanned_by(&attr, self.message);
        }
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        if !expands_on_its_own(item) {
            visit_mut::visit_item_mut(self, item);
        }
    }
}

pub(crate) fn is_step_attr(attr: &Attribute) -> bool {
    matches!(attr.style, syn::AttrStyle::Outer)
        && attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "step")
}

/// Removes the `#[step]`s from `attrs`, returning the first; a second one is a duplicate.
fn take_step_attr(attrs: &mut Vec<Attribute>, ctxt: &Ctxt) -> Option<Attribute> {
    let mut steps = Vec::new();
    attrs.retain(|attr| {
        let step = is_step_attr(attr);
        if step {
            steps.push(attr.clone());
        }
        !step
    });
    let mut steps = steps.into_iter();
    let first = steps.next();
    for duplicate in steps {
        ctxt.error_spanned_by(&duplicate, "duplicate #[step] on the same call");
    }
    first
}

/// The span errors about a whole attribute land on: its `step` path.
fn attr_span(attr: &Attribute) -> proc_macro2::Span {
    syn::spanned::Spanned::span(attr.path())
}

/// The outer attributes of any expression (syn has no accessor for them).
pub(crate) fn expr_attrs_mut(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match expr {
        Expr::Array(e) => &mut e.attrs,
        Expr::Assign(e) => &mut e.attrs,
        Expr::Async(e) => &mut e.attrs,
        Expr::Await(e) => &mut e.attrs,
        Expr::Binary(e) => &mut e.attrs,
        Expr::Block(e) => &mut e.attrs,
        Expr::Break(e) => &mut e.attrs,
        Expr::Call(e) => &mut e.attrs,
        Expr::Cast(e) => &mut e.attrs,
        Expr::Closure(e) => &mut e.attrs,
        Expr::Const(e) => &mut e.attrs,
        Expr::Continue(e) => &mut e.attrs,
        Expr::Field(e) => &mut e.attrs,
        Expr::ForLoop(e) => &mut e.attrs,
        Expr::Group(e) => &mut e.attrs,
        Expr::If(e) => &mut e.attrs,
        Expr::Index(e) => &mut e.attrs,
        Expr::Infer(e) => &mut e.attrs,
        Expr::Let(e) => &mut e.attrs,
        Expr::Lit(e) => &mut e.attrs,
        Expr::Loop(e) => &mut e.attrs,
        Expr::Macro(e) => &mut e.attrs,
        Expr::Match(e) => &mut e.attrs,
        Expr::MethodCall(e) => &mut e.attrs,
        Expr::Paren(e) => &mut e.attrs,
        Expr::Path(e) => &mut e.attrs,
        Expr::Range(e) => &mut e.attrs,
        Expr::RawAddr(e) => &mut e.attrs,
        Expr::Reference(e) => &mut e.attrs,
        Expr::Repeat(e) => &mut e.attrs,
        Expr::Return(e) => &mut e.attrs,
        Expr::Struct(e) => &mut e.attrs,
        Expr::Try(e) => &mut e.attrs,
        Expr::TryBlock(e) => &mut e.attrs,
        Expr::Tuple(e) => &mut e.attrs,
        Expr::Unary(e) => &mut e.attrs,
        Expr::Unsafe(e) => &mut e.attrs,
        Expr::While(e) => &mut e.attrs,
        Expr::Yield(e) => &mut e.attrs,
        _ => return None,
    })
}
