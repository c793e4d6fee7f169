//! Determinism checks on a workflow body.
//!
//! Outside its `#[step]`s, a workflow body runs again on every resume, and replay relies on it
//! taking the same path each time: the n-th step of the replay must be the n-th step journaled.
//! A call whose result differs from one execution to the next (the clock, randomness, files,
//! the network, the environment, a spawned task, one of tokio's timers, the iteration order of
//! a `HashMap`, the branch `select!` picks) can send the replay down another path, so
//! `#[workflow]` rejects it and names the deterministic alternative the runtime provides.
//!
//! Detection is syntactic: paths (`Instant::now`, `tokio::spawn`, `std::fs::read`), method
//! names (`.spawn(..)`), macro names (`select!`, `select_biased!`), and, for `HashMap`/`HashSet`
//! iteration, a `for` loop over (or `.iter()` and friends on) a local whose declared type or
//! initializer names `HashMap` or `HashSet`. A call whose bare name could be the runtime's or
//! tokio's (`sleep(d)` after a `use`, which the macro cannot see) is checked by its type
//! instead, by code the macro wraps around it. A call hidden in a helper function, behind a
//! `use ... as` alias or inside a macro whose arguments are not expressions is not seen.
//!
//! `#[step]` expressions are not checked: a step runs once and its outcome is journaled.
//! `#[allow_nondeterministic]` on a statement or an expression accepts what it marks; the macro
//! removes it, like `#[step]`.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ExprForLoop, ExprMethodCall, FnArg, Item, Local, Macro, Meta, Pat,
    Path, Signature, StmtMacro, Token,
};

use crate::check::render;
use crate::ctxt::Ctxt;
use crate::rewrite::{expr_attrs_mut, is_step_attr};

/// The escape hatch: `#[allow_nondeterministic] let started = Instant::now();`.
pub(crate) const ALLOW_ATTR: &str = "allow_nondeterministic";

/// Checks the body of a `#[workflow]` fn, reporting every nondeterministic call outside its
/// steps, and removes the `#[allow_nondeterministic]` attributes.
pub(crate) fn workflow_body(sig: &Signature, body: &mut Block, krate: &Path, ctxt: &Ctxt) {
    let mut checker = Checker {
        krate: render(krate).trim_start_matches("::").to_owned(),
        krate_path: krate.clone(),
        ctxt,
        hashed: Vec::new(),
        exempt: 0,
        consumed: false,
    };
    // Arguments are decoded from the journal, but a decoded `HashMap` iterates in a new order
    // in every process all the same.
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input {
            checker.bind(&typed.pat, Some(typed.ty.to_token_stream()));
        }
    }
    checker.visit_block_mut(body);
}

struct Checker<'a> {
    /// The runtime's path as the user would write it, for the suggestions.
    krate: String,
    /// The runtime's path, for the code that checks a call by its type.
    krate_path: Path,
    ctxt: &'a Ctxt,
    /// Locals known to hold a `HashMap` or `HashSet`, with which of the two.
    hashed: Vec<(String, &'static str)>,
    /// Above zero inside a `#[step]` or `#[allow_nondeterministic]`: nothing is reported.
    exempt: usize,
    /// Set for the receiver of an order-free method (`collect`, `count`): the expression
    /// visited next is consumed in a way its order does not matter to.
    consumed: bool,
}

/// What a nondeterministic call does, which decides the alternative offered.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Clock,
    Random,
    Uuid,
    Spawn,
    Sleep,
    Timeout,
    Io,
    Env,
    /// `select!`, which picks at random among the branches ready at once.
    Select,
    /// `select_biased!` or `select! { biased; .. }`: deterministic, but its branches are not
    /// expressions, so nothing in them is checked.
    BiasedSelect,
}

/// Paths recognised by their last segments. A rule of one segment matches that name alone too
/// (`thread_rng()` after `use rand::thread_rng`); longer rules need their module or type, so
/// that `durable::sleep` or a user's own `now()` are not mistaken for tokio's or chrono's.
const RULES: &[(&[&str], Kind)] = &[
    (&["SystemTime", "now"], Kind::Clock),
    (&["Instant", "now"], Kind::Clock),
    (&["Utc", "now"], Kind::Clock),
    (&["Local", "now"], Kind::Clock),
    (&["OffsetDateTime", "now_utc"], Kind::Clock),
    (&["OffsetDateTime", "now_local"], Kind::Clock),
    (&["Timestamp", "now"], Kind::Clock),
    (&["Zoned", "now"], Kind::Clock),
    (&["rand", "random"], Kind::Random),
    (&["rand", "random_range"], Kind::Random),
    (&["rand", "random_bool"], Kind::Random),
    (&["rand", "rng"], Kind::Random),
    (&["thread_rng"], Kind::Random),
    (&["OsRng"], Kind::Random),
    (&["from_entropy"], Kind::Random),
    (&["from_os_rng"], Kind::Random),
    (&["RandomState", "new"], Kind::Random),
    (&["Uuid", "new_v4"], Kind::Uuid),
    (&["Uuid", "now_v1"], Kind::Uuid),
    (&["Uuid", "now_v6"], Kind::Uuid),
    (&["Uuid", "now_v7"], Kind::Uuid),
    (&["tokio", "spawn"], Kind::Spawn),
    (&["task", "spawn"], Kind::Spawn),
    (&["thread", "spawn"], Kind::Spawn),
    (&["thread", "scope"], Kind::Spawn),
    (&["spawn_blocking"], Kind::Spawn),
    (&["spawn_local"], Kind::Spawn),
    (&["time", "sleep"], Kind::Sleep),
    (&["time", "sleep_until"], Kind::Sleep),
    (&["time", "interval"], Kind::Sleep),
    (&["time", "interval_at"], Kind::Sleep),
    (&["thread", "sleep"], Kind::Sleep),
    (&["time", "timeout"], Kind::Timeout),
    (&["time", "timeout_at"], Kind::Timeout),
    (&["TcpStream", "connect"], Kind::Io),
    (&["TcpListener", "bind"], Kind::Io),
    (&["UdpSocket", "bind"], Kind::Io),
    (&["File", "open"], Kind::Io),
    (&["File", "create"], Kind::Io),
    (&["File", "create_new"], Kind::Io),
    (&["File", "options"], Kind::Io),
    (&["OpenOptions", "new"], Kind::Io),
    (&["Command", "new"], Kind::Io),
    (&["io", "stdin"], Kind::Io),
    (&["env", "var"], Kind::Env),
    (&["env", "var_os"], Kind::Env),
    (&["env", "vars"], Kind::Env),
    (&["env", "vars_os"], Kind::Env),
    (&["env", "args"], Kind::Env),
    (&["env", "args_os"], Kind::Env),
    (&["env", "current_dir"], Kind::Env),
    (&["env", "home_dir"], Kind::Env),
    (&["env", "temp_dir"], Kind::Env),
];

/// Crates every path into which is I/O or randomness: `reqwest::get`, `fastrand::u64`.
const CRATES: &[(&str, Kind)] = &[
    ("reqwest", Kind::Io),
    ("ureq", Kind::Io),
    ("hyper", Kind::Io),
    ("fastrand", Kind::Random),
    ("getrandom", Kind::Random),
];

/// Names of calls that are nondeterministic or not depending on whose they are, which a `use`
/// decides out of the macro's sight: a bare `sleep(d)` is `durable::sleep` or, after
/// `use tokio::time::sleep`, tokio's. A call by one of these names that no rule reports is
/// checked by its type instead (see [`probe_call`]).
const NAMES_JUDGED_BY_TYPE: &[&str] = &[
    "sleep",
    "sleep_until",
    "interval",
    "interval_at",
    "timeout",
    "timeout_at",
    "spawn",
];

/// Methods that start work outside the run's task, whatever their receiver (`JoinSet`, a
/// runtime `Handle`, a `Command`).
const SPAWN_METHODS: &[&str] = &["spawn", "spawn_blocking", "spawn_local"];

/// Methods whose result does not depend on the order of the iteration they consume. With
/// `collect`, the collection built is what may be iterated later, and it may well be sorted
/// first, as the error message suggests; that later iteration is not tracked.
const ORDER_FREE_METHODS: &[&str] = &[
    "collect", "count", "sum", "product", "min", "max", "all", "any",
];

/// Methods that iterate a collection.
const ITERATING_METHODS: &[&str] = &[
    "iter",
    "iter_mut",
    "into_iter",
    "keys",
    "values",
    "values_mut",
    "into_keys",
    "into_values",
    "drain",
];

fn classify(path: &Path) -> Option<Kind> {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.unraw().to_string())
        .collect();
    let ends_with = |rule: &[&str]| {
        segments.len() >= rule.len()
            && segments[segments.len() - rule.len()..]
                .iter()
                .zip(rule)
                .all(|(a, b)| a == b)
    };
    if let Some((_, kind)) = RULES.iter().find(|(rule, _)| ends_with(rule)) {
        return Some(*kind);
    }
    if segments.len() >= 2
        && let Some((_, kind)) = CRATES.iter().find(|(name, _)| segments[0] == *name)
    {
        return Some(*kind);
    }
    // `std::fs::read`, `tokio::fs::write`, or `fs::read` after `use std::fs`.
    let in_fs = segments.iter().enumerate().any(|(i, segment)| {
        segment == "fs"
            && i + 1 < segments.len()
            && (i == 0 || matches!(segments[i - 1].as_str(), "std" | "tokio" | "async_std"))
    });
    in_fs.then_some(Kind::Io)
}

/// Macros recognised by their last segment: `tokio::select!`, `futures::select!`, and
/// `select!` after a `use`. `futures::future::select(a, b)` is not one of them: a function
/// polls its futures in order, like `durable::race`, and its arguments are checked.
fn classify_macro(mac: &Macro) -> Option<Kind> {
    let name = mac.path.segments.last()?.ident.unraw().to_string();
    let mut tokens = mac.tokens.clone().into_iter();
    let biased = matches!(
        (tokens.next(), tokens.next()),
        (Some(TokenTree::Ident(word)), Some(TokenTree::Punct(semi)))
            if word == "biased" && semi.as_char() == ';'
    );
    match name.as_str() {
        "select" if !biased => Some(Kind::Select),
        "select" | "select_biased" => Some(Kind::BiasedSelect),
        _ => None,
    }
}

impl Checker<'_> {
    fn report(&self, tokens: impl ToTokens, what: &str, kind: Kind) {
        let k = &self.krate;
        let problem = match kind {
            Kind::Clock => format!(
                "`{what}` reads the clock, which gives another time when the workflow is replayed; use `{k}::durable::now().await`, which journals the time"
            ),
            Kind::Random => format!(
                "`{what}` draws a random number, which differs when the workflow is replayed; use `{k}::durable::random().await`, which journals it"
            ),
            Kind::Uuid => format!(
                "`{what}` makes a random id, which differs when the workflow is replayed; use `{k}::durable::uuid().await`, which journals it"
            ),
            Kind::Spawn => format!(
                "`{what}` runs work outside the workflow's task, where steps are not journaled and nothing is replayed; start a child workflow with `{k}::durable::child::<W>(input).await`, or await steps together with `join_all`"
            ),
            Kind::Sleep => format!(
                "`{what}` is a timer that starts over on every replay and is lost in a crash; use `{k}::durable::sleep(duration).await`, whose wake-up time is journaled"
            ),
            Kind::Timeout => format!(
                "`{what}` races the clock, which can end another way when the workflow is replayed; give the step a timeout instead, like `#[step(timeout = \"60s\")]`"
            ),
            Kind::Io => format!(
                "`{what}` reaches outside the program (files, network, processes), which can answer differently when the workflow is replayed; do it inside a `#[step]`, whose result is journaled"
            ),
            Kind::Env => format!(
                "`{what}` reads the environment, which can differ in the process that resumes the workflow; read it inside a `#[step]`, whose result is journaled, or pass it as an argument"
            ),
            Kind::Select => format!(
                "`{what}` picks a random ready branch, so a resumed run could take another path; use `{k}::durable::race(a, b)` (or `race_all`), which is deterministic"
            ),
            Kind::BiasedSelect => format!(
                "`{what}` keeps its branches from the workflow's determinism checks, so a timer or a spawn in one goes unseen; use `{k}::durable::race(a, b)` (or `race_all`), which polls in the same order and whose futures are checked"
            ),
        };
        self.report_problem(tokens, problem);
    }

    fn report_problem(&self, tokens: impl ToTokens, problem: String) {
        self.ctxt.error_spanned_by(
            tokens,
            format!(
                "{problem} (if replaying it is harmless, mark the statement `#[{ALLOW_ATTR}]`)"
            ),
        );
    }

    /// Records whether the local bound by `pat` holds a `HashMap`/`HashSet`, judging by the
    /// tokens of its type annotation and initializer. A later binding of the same name that
    /// does not shadows it.
    fn bind(&mut self, pat: &Pat, tokens: Option<TokenStream>) {
        let (pat, ty) = match pat {
            Pat::Type(typed) => (&*typed.pat, Some(typed.ty.to_token_stream())),
            other => (other, None),
        };
        let Pat::Ident(ident) = pat else { return };
        let name = ident.ident.unraw().to_string();
        self.hashed.retain(|(bound, _)| *bound != name);
        let hashed = ty
            .into_iter()
            .chain(tokens)
            .find_map(|tokens| names_hash_collection(tokens));
        if let Some(collection) = hashed {
            self.hashed.push((name, collection));
        }
    }

    /// The collection held by `expr` if it is a known `HashMap`/`HashSet` local (or a
    /// reference to one).
    fn hashed_local(&self, expr: &Expr) -> Option<(String, &'static str)> {
        match expr {
            Expr::Reference(reference) => self.hashed_local(&reference.expr),
            Expr::Paren(paren) => self.hashed_local(&paren.expr),
            Expr::Path(path) if path.qself.is_none() => {
                let ident = path.path.get_ident()?.unraw().to_string();
                self.hashed
                    .iter()
                    .rev()
                    .find(|(name, _)| *name == ident)
                    .map(|(name, collection)| (name.clone(), *collection))
            }
            _ => None,
        }
    }

    /// `consumed`: the expression is the receiver of an order-free method.
    fn check_expr(&self, expr: &Expr, consumed: bool) {
        match expr {
            Expr::Path(path) if path.qself.is_none() => {
                if let Some(kind) = classify(&path.path) {
                    self.report(&path.path, &render(&path.path), kind);
                }
            }
            Expr::MethodCall(call) => self.check_method_call(call, consumed),
            // `for x in m.keys()` is reported at `m.keys`, as a method call.
            Expr::ForLoop(ExprForLoop { expr, .. }) => {
                if let Some((name, collection)) = self.hashed_local(expr) {
                    self.report_hash_iteration(expr, &name, collection);
                }
            }
            _ => {}
        }
    }

    fn check_method_call(&self, call: &ExprMethodCall, consumed: bool) {
        let ExprMethodCall {
            receiver,
            dot_token,
            method,
            ..
        } = call;
        let name = method.unraw().to_string();
        if SPAWN_METHODS.contains(&name.as_str()) {
            self.report(
                quote!(#receiver #dot_token #method),
                &format!(".{name}(..)"),
                Kind::Spawn,
            );
        } else if ITERATING_METHODS.contains(&name.as_str())
            && !consumed
            && let Some((local, collection)) = self.hashed_local(receiver)
        {
            self.report_hash_iteration(quote!(#receiver #dot_token #method), &local, collection);
        }
    }

    fn report_hash_iteration(&self, tokens: impl ToTokens, name: &str, collection: &str) {
        let sorted = if collection == "HashMap" {
            "a `BTreeMap`"
        } else {
            "a `BTreeSet`"
        };
        self.report_problem(
            tokens,
            format!(
                "iterating the `{collection}` `{name}` visits its entries in an order that differs between processes, so a replay can take another path; use {sorted}, or collect the entries and sort them first"
            ),
        );
    }

    /// Reports `select!` and `select_biased!`, whose branches are not looked into, and checks
    /// the arguments of other macros when they parse as expressions (`format!`, `assert!`,
    /// `join!`); the rest (`vec![x; n]`) are not looked into either.
    fn check_macro(&mut self, mac: &Macro) {
        if self.exempt == 0
            && let Some(kind) = classify_macro(mac)
        {
            self.report(&mac.path, &format!("{}!", render(&mac.path)), kind);
        }
        let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) else {
            return;
        };
        for mut arg in args {
            self.visit_expr_mut(&mut arg);
        }
    }

    /// Runs `visit` with reports suppressed when `exempt`.
    fn exempt_if(&mut self, exempt: bool, visit: impl FnOnce(&mut Self)) {
        self.exempt += usize::from(exempt);
        visit(self);
        self.exempt -= usize::from(exempt);
    }

    /// Removes the `#[allow_nondeterministic]`s from `attrs`, returning whether there was one.
    fn take_allow(&self, attrs: &mut Vec<Attribute>) -> bool {
        let before = attrs.len();
        attrs.retain(|attr| {
            let allow = is_allow_attr(attr);
            if allow && !matches!(attr.meta, Meta::Path(_)) {
                self.ctxt.error_spanned_by(
                    &attr.meta,
                    format!("`#[{ALLOW_ATTR}]` takes no arguments; say why in a comment above it"),
                );
            }
            !allow
        });
        attrs.len() < before
    }
}

impl VisitMut for Checker<'_> {
    fn visit_local_mut(&mut self, local: &mut Local) {
        let exempt = self.take_allow(&mut local.attrs) | local.attrs.iter().any(is_step_attr);
        self.exempt_if(exempt, |this| visit_mut::visit_local_mut(this, local));
        let init = local.init.as_ref().map(|init| init.expr.to_token_stream());
        self.bind(&local.pat, init);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        let consumed = std::mem::take(&mut self.consumed);
        let exempt = match expr_attrs_mut(expr) {
            Some(attrs) => self.take_allow(attrs) | attrs.iter().any(is_step_attr),
            None => false,
        };
        self.exempt_if(exempt, |this| {
            if this.exempt == 0 {
                this.check_expr(expr, consumed);
            }
            let judged_by_type = this.exempt == 0 && is_judged_by_type(expr);
            match expr {
                Expr::Macro(mac) => this.check_macro(&mac.mac),
                // `m.keys().map(f).count()`: the whole receiver chain is consumed by `count`,
                // the arguments (`f`) are not.
                Expr::MethodCall(call) => {
                    let method = call.method.unraw().to_string();
                    this.consumed = consumed || ORDER_FREE_METHODS.contains(&method.as_str());
                    this.visit_expr_mut(&mut call.receiver);
                    this.consumed = false;
                    for arg in &mut call.args {
                        this.visit_expr_mut(arg);
                    }
                }
                _ => visit_mut::visit_expr_mut(this, expr),
            }
            if judged_by_type {
                probe_call(expr, &this.krate_path);
            }
        });
    }

    fn visit_stmt_macro_mut(&mut self, stmt: &mut StmtMacro) {
        let exempt = self.take_allow(&mut stmt.attrs) | stmt.attrs.iter().any(is_step_attr);
        self.exempt_if(exempt, |this| this.check_macro(&stmt.mac));
    }

    // A nested fn is not the workflow body (it may be called from anywhere), and a nested
    // `#[workflow]` checks its own.
    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// Whether `expr` is a call named in [`NAMES_JUDGED_BY_TYPE`] that no rule reports by its path
/// (`tokio::time::sleep(d)` is reported as it is; `sleep(d)` and `durable::sleep(d)` are not).
fn is_judged_by_type(expr: &Expr) -> bool {
    let Expr::Call(call) = expr else {
        return false;
    };
    let Expr::Path(func) = &*call.func else {
        return false;
    };
    func.qself.is_none()
        && classify(&func.path).is_none()
        && func.path.segments.last().is_some_and(|segment| {
            NAMES_JUDGED_BY_TYPE.contains(&segment.ident.unraw().to_string().as_str())
        })
}

// sleep(d)
// becomes
// (match sleep(d) {
//     call => {
//         use ::workflow_runtime::__private::{AnyKind as _, SpawnKind as _, TimeoutKind as _, TimerKind as _};
//         NotATokioTimer::check((&::workflow_runtime::__private::Call(&call)).__workflow_call_kind());
//         NotATokioTimeout::check(<the same>);
//         NotASpawn::check(<the same>);
//         call
//     }
// })
// (the three traits in `::workflow_runtime::__private`). The macro sees the body, not the
// file's `use`s, so a bare name cannot tell `durable::sleep` from `tokio::time::sleep`; the
// call's type can, where rustc knows it: autoref specialization finds tokio's `Sleep`,
// `Interval`, `Timeout` or a `JoinHandle`, and the trait that kind of value fails reports it,
// at the user's call. Any other value passes unchanged. A name the rules do not list (an alias,
// `use tokio::time::sleep as wait`) is still not seen. The parentheses keep `(match ..).await`
// an expression at the start of a statement; the scrutinee's temporaries live to the end of
// the enclosing statement, as they did in `sleep(d).await`.
fn probe_call(expr: &mut Expr, krate: &Path) {
    let span = expr.span();
    let call = std::mem::replace(expr, Expr::Verbatim(TokenStream::new()));
    // Mixed-site hygiene at the user's call, where rustc then reports an unmet bound.
    let value = Ident::new("call", Span::mixed_site().located_at(span));
    let krate = respan(krate, span);
    // The kind as each check's argument, an expression of the user's span: a bare local
    // would be reported at `#[workflow]`.
    let kind = quote_spanned!(span=> (&#krate::__private::Call(&#value)).__workflow_call_kind());
    let checks = quote_spanned! {span=>
        #krate::__private::NotATokioTimer::check(#kind);
        #krate::__private::NotATokioTimeout::check(#kind);
        #krate::__private::NotASpawn::check(#kind);
    };
    let probed = quote! {
        (match #call {
            #value => {
                #[allow(unused_imports)]
                use #krate::__private::{AnyKind as _, SpawnKind as _, TimeoutKind as _, TimerKind as _};
                #checks
                #value
            }
        })
    };
    // Parsed, not verbatim: the rewriting of `#[step]`s that comes next must still find any in
    // the call's arguments.
    *expr = syn::parse2(probed.clone()).unwrap_or(Expr::Verbatim(probed));
}

/// `krate` with every token at `span`, so that errors in the code around it point there.
fn respan(krate: &Path, span: Span) -> TokenStream {
    krate
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

fn is_allow_attr(attr: &Attribute) -> bool {
    matches!(attr.style, syn::AttrStyle::Outer)
        && attr
            .path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == ALLOW_ATTR)
}

/// `HashMap` or `HashSet` if the tokens name one.
fn names_hash_collection(tokens: TokenStream) -> Option<&'static str> {
    tokens.into_iter().find_map(|token| match token {
        TokenTree::Ident(ident) if ident == "HashMap" => Some("HashMap"),
        TokenTree::Ident(ident) if ident == "HashSet" => Some("HashSet"),
        TokenTree::Group(group) => names_hash_collection(group.stream()),
        _ => None,
    })
}
