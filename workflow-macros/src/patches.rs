//! Patch checks on a workflow body: `durable::patched("id")` and
//! `durable::deprecated_patch("id")`.
//!
//! A patch call journals its marker (or, deprecated, consumes it) at the run's next sequence
//! number, so its id names one point of the body's path, and replay finds the marker only if
//! the same call comes at the same point. Hence three rules, each reported at the offending
//! tokens:
//!
//! - the id is a string literal, so that it is the same in every build and the macro can read it;
//! - an id is used once per body, counting `patched` and `deprecated_patch` alike: a second call
//!   would look for a second marker, which runs from before it do not have;
//! - a patch is not called inside a step (a `#[step]` expression, the closure of a runtime
//!   `step("..").run(..)`, or the body of a `#[step] async fn`): a step's attempt is not the
//!   workflow's path, nothing it reads is journaled, and `patched` answers `true` there.
//!
//! Recognition is by name, as in [`crate::determinism`]: a call whose path ends in
//! `durable::patched` or `durable::deprecated_patch` (`durable::patched`,
//! `workflow_runtime::durable::patched`, `my_runtime::durable::patched`) is always a patch. A
//! bare `patched(..)` or `deprecated_patch(..)` (after a `use`, which the macro cannot see) is
//! one only in the shape of a patch, with a string literal as its one argument: `patched` is a
//! common word, and a helper of the user's own called `patched(&order)` must not be reported.
//! So a bare call with a computed id is not checked; neither is a call inside a nested item, a
//! helper fn, or a macro whose arguments are not expressions, nor a `step(..)` builder bound to
//! a local before its `.run(..)`.

use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Block, Expr, ExprCall, ExprMethodCall, Item, Lit, LitStr, Local, Macro, StmtMacro, Token,
};

use crate::ctxt::Ctxt;
use crate::rewrite::{expr_attrs_mut, is_step_attr};

/// Checks every patch call in the body of a `#[workflow]` fn. Changes nothing: `VisitMut` only
/// because the attribute accessor the other passes share takes `&mut`.
pub(crate) fn workflow_body(body: &mut Block, ctxt: &Ctxt) {
    Checker {
        ctxt,
        seen: Vec::new(),
        in_step: 0,
    }
    .visit_block_mut(body);
}

/// Reports every patch call in the body of a `#[step] async fn`, all of which is one step.
pub(crate) fn step_fn_body(body: &mut Block, ctxt: &Ctxt) {
    Checker {
        ctxt,
        seen: Vec::new(),
        in_step: 1,
    }
    .visit_block_mut(body);
}

pub(crate) const PATCH_IN_STEP: &str = "a patch marks the workflow's path; inside a step it would not be journaled: call it in the workflow body before the step, and pass its answer to the step or choose the step by it";

/// Which of the two patch functions a call is.
#[derive(Clone, Copy, PartialEq)]
enum Patch {
    Patched,
    Deprecated,
}

impl Patch {
    fn name(self) -> &'static str {
        match self {
            Patch::Patched => "patched",
            Patch::Deprecated => "deprecated_patch",
        }
    }
}

struct Checker<'a> {
    ctxt: &'a Ctxt,
    /// The ids used so far in the body, with the function that used each first.
    seen: Vec<(String, Patch)>,
    /// Above zero inside a step, where every patch call is an error.
    in_step: usize,
}

impl Checker<'_> {
    fn check_call(&mut self, call: &ExprCall, patch: Patch) {
        if self.in_step > 0 {
            self.ctxt.error_spanned_by(call, PATCH_IN_STEP);
            return;
        }
        // Another number of arguments is rustc's to report.
        let [id] = call.args.iter().collect::<Vec<_>>()[..] else {
            return;
        };
        let Some(id) = string_literal(id) else {
            self.ctxt.error_spanned_by(
                id,
                format!(
                    "a patch id is a string literal, like `durable::{}(\"send-receipt\")`: the journal records it, so it must be the same in every build, and the macro checks that each id marks one point of the body",
                    patch.name()
                ),
            );
            return;
        };
        let value = id.value();
        if value.trim().is_empty() {
            self.ctxt.error_at(id.span(), "a patch id cannot be empty");
            return;
        }
        // Reported at the second use: that is the one to rename or delete.
        match self.seen.iter().find(|(seen, _)| *seen == value) {
            Some((_, first)) if *first == patch => self.ctxt.error_at(
                id.span(),
                format!(
                    "patch id {value:?} is already used in this workflow body; each patch marks one point of the path, where its marker is journaled, so give this one an id of its own"
                ),
            ),
            Some(_) => self.ctxt.error_at(
                id.span(),
                format!(
                    "patch id {value:?} is both `patched` and `deprecated_patch` in this body; `deprecated_patch({value:?})` replaces the `patched({value:?})` call once no run from before the patch remains, so keep one of them"
                ),
            ),
            None => self.seen.push((value, patch)),
        }
    }

    /// Visits `visit` as the inside of a step when `step`.
    fn in_step_if(&mut self, step: bool, visit: impl FnOnce(&mut Self)) {
        self.in_step += usize::from(step);
        visit(self);
        self.in_step -= usize::from(step);
    }

    /// The arguments of a macro, when they parse as expressions (`assert!`, `format!`).
    fn visit_macro_args(&mut self, mac: &Macro) {
        let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) else {
            return;
        };
        for mut arg in args {
            self.visit_expr_mut(&mut arg);
        }
    }
}

/// The id of a call, through the parentheses or invisible groups around it (a `macro_rules!`
/// fragment is passed in one).
fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Some(s),
            _ => None,
        },
        Expr::Paren(paren) => string_literal(&paren.expr),
        Expr::Group(group) => string_literal(&group.expr),
        _ => None,
    }
}

/// Which patch function `call` calls, if any (see the module's documentation).
fn patch_call(call: &ExprCall) -> Option<Patch> {
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    if func.qself.is_some() {
        return None;
    }
    let segments: Vec<&syn::PathSegment> = func.path.segments.iter().collect();
    let patch = match segments.last()?.ident.to_string().as_str() {
        "patched" => Patch::Patched,
        "deprecated_patch" => Patch::Deprecated,
        _ => return None,
    };
    let known = match segments[..] {
        [.., module, _] => module.ident == "durable",
        _ => {
            func.path.leading_colon.is_none()
                && call.args.len() == 1
                && string_literal(&call.args[0]).is_some()
        }
    };
    known.then_some(patch)
}

/// Whether `call` is `.run(..)` on a runtime step builder, `step("charge").retries(3).run(..)`,
/// whose closure is the step's attempt.
fn is_step_run(call: &ExprMethodCall) -> bool {
    fn builder_of_step(expr: &Expr) -> bool {
        match expr {
            Expr::MethodCall(call) => builder_of_step(&call.receiver),
            Expr::Paren(paren) => builder_of_step(&paren.expr),
            Expr::Group(group) => builder_of_step(&group.expr),
            Expr::Call(call) => matches!(
                &*call.func,
                Expr::Path(func) if func.path.segments.last().is_some_and(|s| s.ident == "step")
            ),
            _ => false,
        }
    }
    call.method == "run" && builder_of_step(&call.receiver)
}

impl VisitMut for Checker<'_> {
    // #[step] let PAT = EXPR else { DIVERGE };
    // EXPR is the step; DIVERGE runs after it, on the workflow's path, as the rewrite leaves it.
    fn visit_local_mut(&mut self, local: &mut Local) {
        if !local.attrs.iter().any(is_step_attr) {
            return visit_mut::visit_local_mut(self, local);
        }
        let Some(init) = &mut local.init else { return };
        self.in_step_if(true, |this| this.visit_expr_mut(&mut init.expr));
        if let Some((_, diverge)) = &mut init.diverge {
            self.visit_expr_mut(diverge);
        }
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        let step = expr_attrs_mut(expr).is_some_and(|attrs| attrs.iter().any(is_step_attr));
        self.in_step_if(step, |this| match expr {
            Expr::Call(call) => {
                if let Some(patch) = patch_call(call) {
                    this.check_call(call, patch);
                }
                visit_mut::visit_expr_call_mut(this, call);
            }
            Expr::MethodCall(call) if is_step_run(call) => {
                this.visit_expr_mut(&mut call.receiver);
                this.in_step_if(true, |this| {
                    for arg in &mut call.args {
                        this.visit_expr_mut(arg);
                    }
                });
            }
            Expr::Macro(mac) => this.visit_macro_args(&mac.mac),
            _ => visit_mut::visit_expr_mut(this, expr),
        });
    }

    fn visit_stmt_macro_mut(&mut self, stmt: &mut StmtMacro) {
        let step = stmt.attrs.iter().any(is_step_attr);
        self.in_step_if(step, |this| this.visit_macro_args(&stmt.mac));
    }

    // A nested fn is not the workflow body (it may be called from anywhere), and a nested
    // `#[workflow]` checks its own.
    fn visit_item_mut(&mut self, _: &mut Item) {}
}
