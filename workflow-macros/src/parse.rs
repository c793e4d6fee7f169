//! Attribute options: `#[workflow(name = "...", max_steps = 50)]`, `#[step(retries = 3)]`.
//!
//! Every option a macro accepts is one row of a table below ([`WORKFLOW_OPTIONS`],
//! [`STEP_OPTIONS`], [`CRATE_OPTION`]): its key, how its literal is validated, and the builder
//! method its value is passed to. Adding an option (`backoff`, `circuit`, `at_most_once`) means
//! adding a row, plus a [`ValueKind`] if its literal has a new shape; unknown-option suggestions,
//! duplicate detection and the generated builder call follow from the row.
//!
//! Literals are validated here, at expansion time, so `timeout = "6o s"` is a compile error on
//! the string rather than a panic in production.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Meta, Token, UnOp};

use crate::ctxt::Ctxt;

/// One option a macro accepts.
pub(crate) struct OptionDef {
    /// The key the user writes: `retries`.
    pub(crate) key: &'static str,
    /// How the value literal is checked, and what it becomes.
    pub(crate) kind: ValueKind,
    /// What the macro does with the value.
    pub(crate) target: Target,
    /// A valid value, for messages: `3`, `"60s"`.
    pub(crate) example: &'static str,
}

/// What an option's value is for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    /// `name`: the journaled name, which the macro uses itself.
    Name,
    /// `crate`: the path generated code reaches the runtime through.
    Crate,
    /// An argument of this builder method (`Step::retries`, `Budget::with_max_steps`).
    Builder(&'static str),
    /// `concurrency`: the value `Workflow::concurrency()` returns.
    Concurrency,
    /// `version`: the value of `Workflow::VERSION`.
    Version,
    /// A field of a nested option, such as `initial` of `backoff(initial = "1s")`.
    Field,
}

/// The shape of an option's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ValueKind {
    /// A non-empty string literal: `name = "fetch"`.
    Name,
    /// A string literal holding a path: `crate = "my_runtime"`.
    Path,
    /// An integer literal in `min..=max`.
    Int { min: u64, max: u64, ty: IntType },
    /// A float or integer literal in `min..=max`: `max_cost_usd = 2.5`.
    Float { min: f64, max: f64 },
    /// A non-zero humantime duration string: `timeout = "1m 30s"`.
    Duration,
    /// A switch: `at_most_once`, or `at_most_once = true` / `false`. The builder method takes
    /// no argument and is called when the switch is on.
    Flag,
    /// `backoff(initial = "1s", factor = 2.0, max = "30s", jitter = 0.1)`: the fields of
    /// [`BACKOFF_FIELDS`], each optional.
    Backoff,
}

/// The integer type a validated integer is emitted as, matching the builder method's parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum IntType {
    U32,
    U64,
}

/// Options of `#[workflow(...)]`, besides [`CRATE_OPTION`].
pub(crate) const WORKFLOW_OPTIONS: &[OptionDef] = &[
    OptionDef {
        key: "name",
        kind: ValueKind::Name,
        target: Target::Name,
        example: "\"research-agent\"",
    },
    // Beside `name`: the two together say which code a run is pinned to.
    OptionDef {
        key: "version",
        kind: ValueKind::Int {
            min: 1,
            max: u32::MAX as u64,
            ty: IntType::U32,
        },
        target: Target::Version,
        example: "2",
    },
    OptionDef {
        key: "max_steps",
        kind: ValueKind::Int {
            min: 1,
            max: u64::MAX,
            ty: IntType::U64,
        },
        target: Target::Builder("with_max_steps"),
        example: "50",
    },
    OptionDef {
        key: "max_cost_usd",
        kind: ValueKind::Float {
            min: 0.0,
            max: f64::INFINITY,
        },
        target: Target::Builder("with_max_cost_usd"),
        example: "2.50",
    },
    OptionDef {
        key: "max_tokens",
        kind: ValueKind::Int {
            min: 1,
            max: u64::MAX,
            ty: IntType::U64,
        },
        target: Target::Builder("with_max_tokens"),
        example: "200_000",
    },
    OptionDef {
        key: "max_duration",
        kind: ValueKind::Duration,
        target: Target::Builder("with_max_duration"),
        example: "\"10m\"",
    },
    OptionDef {
        key: "max_in_flight_steps",
        kind: ValueKind::Int {
            min: 1,
            max: u32::MAX as u64,
            ty: IntType::U32,
        },
        target: Target::Builder("with_max_in_flight_steps"),
        example: "8",
    },
    OptionDef {
        key: "concurrency",
        kind: ValueKind::Int {
            min: 1,
            max: u32::MAX as u64,
            ty: IntType::U32,
        },
        target: Target::Concurrency,
        example: "4",
    },
];

/// Options of `#[step(...)]`, at a call site and on an `async fn`.
pub(crate) const STEP_OPTIONS: &[OptionDef] = &[
    OptionDef {
        key: "name",
        kind: ValueKind::Name,
        target: Target::Name,
        example: "\"fetch\"",
    },
    OptionDef {
        key: "retries",
        kind: ValueKind::Int {
            min: 0,
            max: MAX_RETRIES,
            ty: IntType::U32,
        },
        target: Target::Builder("retries"),
        example: "3",
    },
    OptionDef {
        key: "timeout",
        kind: ValueKind::Duration,
        target: Target::Builder("timeout"),
        example: "\"60s\"",
    },
    OptionDef {
        key: "backoff",
        kind: ValueKind::Backoff,
        target: Target::Builder("backoff"),
        example: "(initial = \"1s\", factor = 2.0, max = \"30s\", jitter = 0.1)",
    },
    OptionDef {
        key: "circuit",
        kind: ValueKind::Name,
        target: Target::Builder("circuit"),
        example: "\"payments\"",
    },
    OptionDef {
        key: "rate",
        kind: ValueKind::Name,
        target: Target::Builder("rate"),
        example: "\"llm\"",
    },
    OptionDef {
        key: "at_most_once",
        kind: ValueKind::Flag,
        target: Target::Builder("at_most_once"),
        example: "true",
    },
    OptionDef {
        key: "non_retryable",
        kind: ValueKind::Flag,
        target: Target::Builder("non_retryable"),
        example: "true",
    },
];

/// `crate = "path"`, accepted by `#[workflow]` and by `#[step]` on an `async fn`. A `#[step]`
/// inside a workflow body takes the workflow's.
pub(crate) const CRATE_OPTION: &[OptionDef] = &[OptionDef {
    key: "crate",
    kind: ValueKind::Path,
    target: Target::Crate,
    example: "\"::workflow_runtime\"",
}];

/// The fields of `backoff(...)`, the public fields of the runtime's `Backoff`. A field left out
/// keeps the value of `Backoff::DEFAULT`.
pub(crate) const BACKOFF_FIELDS: &[OptionDef] = &[
    OptionDef {
        key: "initial",
        kind: ValueKind::Duration,
        target: Target::Field,
        example: "\"1s\"",
    },
    OptionDef {
        key: "factor",
        kind: ValueKind::Float {
            min: 1.0,
            max: MAX_BACKOFF_FACTOR,
        },
        target: Target::Field,
        example: "2.0",
    },
    OptionDef {
        key: "max",
        kind: ValueKind::Duration,
        target: Target::Field,
        example: "\"30s\"",
    },
    OptionDef {
        key: "jitter",
        kind: ValueKind::Float { min: 0.0, max: 1.0 },
        target: Target::Field,
        example: "0.1",
    },
];

/// More retries than this is almost always a unit mistake (`retries = 3000` meant as
/// milliseconds), and each retry of an LLM call costs money.
pub(crate) const MAX_RETRIES: u64 = 100;

/// A backoff that multiplies each wait by more than this reaches its `max` after one retry:
/// almost certainly a typo (`factor = 20` for `2.0`).
pub(crate) const MAX_BACKOFF_FACTOR: f64 = 10.0;

/// A validated option value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(LitStr),
    Path(syn::Path),
    U32(u32),
    U64(u64),
    F64(f64),
    Duration(Duration),
    Flag(bool),
    Backoff(BackoffValue),
}

/// The fields given in `backoff(...)`; `None` keeps `Backoff::DEFAULT`'s.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BackoffValue {
    pub(crate) initial: Option<Duration>,
    pub(crate) factor: Option<f64>,
    pub(crate) max: Option<Duration>,
    pub(crate) jitter: Option<f64>,
}

/// An option that passed every check, with the key as the user wrote it (for spans).
pub(crate) struct ParsedOption {
    pub(crate) def: &'static OptionDef,
    pub(crate) key: Ident,
    pub(crate) value: Value,
    /// The span of the value expression, where type errors about it belong.
    pub(crate) value_span: Span,
}

/// What the entries of a list are called in messages.
#[derive(Clone, Copy)]
struct Noun {
    /// `option`, `` `backoff` field ``.
    one: &'static str,
    /// `options`, `fields`.
    many: &'static str,
}

const OPTION: Noun = Noun {
    one: "option",
    many: "options",
};

const BACKOFF_FIELD: Noun = Noun {
    one: "`backoff` field",
    many: "fields",
};

/// Parses the arguments of an attribute (the tokens inside its parentheses) against the option
/// tables, recording every problem in `ctxt` and returning the options that are valid.
///
/// An invalid option is dropped rather than replaced by a guess, so a typo never changes
/// behaviour silently: the error is reported and the default applies.
pub(crate) fn parse_options(
    args: TokenStream,
    tables: &[&'static [OptionDef]],
    ctxt: &Ctxt,
) -> Vec<ParsedOption> {
    parse_list(args, tables, OPTION, ctxt)
}

fn parse_list(
    args: TokenStream,
    tables: &[&'static [OptionDef]],
    noun: Noun,
    ctxt: &Ctxt,
) -> Vec<ParsedOption> {
    let raw = match parse_raw_options.parse2(args) {
        Ok(raw) => raw,
        Err(error) => {
            ctxt.syn_error(error);
            return Vec::new();
        }
    };
    let defs = || tables.iter().flat_map(|table| table.iter());
    let mut seen: Vec<String> = Vec::new();
    let mut parsed = Vec::new();
    for RawOption { key, value } in raw {
        let key_text = key.unraw().to_string();
        let Some(def) = defs().find(|def| def.key == key_text) else {
            ctxt.error_at(key.span(), unknown_option(&key_text, noun, defs()));
            continue;
        };
        // Reported at the second occurrence: that is the one to delete.
        if seen.contains(&key_text) {
            ctxt.error_at(key.span(), format!("duplicate {} `{key_text}`", noun.one));
            continue;
        }
        seen.push(key_text);
        let tokens = match (value, def.kind) {
            (RawValue::List { fields, .. }, ValueKind::Backoff) => {
                if let Some(value) = parse_backoff(&key, fields, ctxt) {
                    parsed.push(ParsedOption {
                        def,
                        value: Value::Backoff(value),
                        value_span: key.span(),
                        key,
                    });
                }
                continue;
            }
            (RawValue::Bare(tokens) | RawValue::Assigned(tokens), ValueKind::Backoff) => {
                ctxt.error_spanned_by(
                    tokens,
                    format!(
                        "`{key}` takes its fields in parentheses: `{key}{}`",
                        def.example
                    ),
                );
                continue;
            }
            (RawValue::Assigned(tokens), _) => tokens,
            (RawValue::Bare(_), ValueKind::Flag) => {
                parsed.push(ParsedOption {
                    def,
                    value: Value::Flag(true),
                    value_span: key.span(),
                    key,
                });
                continue;
            }
            (RawValue::Bare(tokens) | RawValue::List { tokens, .. }, _) => {
                ctxt.error_spanned_by(
                    tokens,
                    format!("`{key}` takes a value: `{key} = {}`", def.example),
                );
                continue;
            }
        };
        let validated = syn::parse2::<Expr>(tokens.clone())
            .map_err(|_| {
                syn::Error::new_spanned(
                    &tokens,
                    format!(
                        "`{}` takes one value, like `{} = {}`",
                        def.key, def.key, def.example
                    ),
                )
            })
            .and_then(|value| validate(def, &value, &tokens).map(|v| (v, value.span())));
        match validated {
            Ok((value, value_span)) => parsed.push(ParsedOption {
                def,
                key,
                value,
                value_span,
            }),
            Err(error) => ctxt.syn_error(error),
        }
    }
    parsed
}

/// The fields of `backoff(...)`, or `None` when one of them is invalid (reported in `ctxt`).
fn parse_backoff(key: &Ident, fields: TokenStream, ctxt: &Ctxt) -> Option<BackoffValue> {
    let before = ctxt.error_count();
    let parsed = parse_list(fields, &[BACKOFF_FIELDS], BACKOFF_FIELD, ctxt);
    if ctxt.error_count() > before {
        return None;
    }
    let mut backoff = BackoffValue::default();
    let mut max_span = None;
    for field in parsed {
        match (field.def.key, field.value) {
            ("initial", Value::Duration(d)) => backoff.initial = Some(d),
            ("max", Value::Duration(d)) => {
                backoff.max = Some(d);
                max_span = Some(field.value_span);
            }
            ("factor", Value::F64(n)) => backoff.factor = Some(n),
            ("jitter", Value::F64(n)) => backoff.jitter = Some(n),
            (field, value) => unreachable!("backoff field `{field}` holds {value:?}"),
        }
    }
    if backoff == BackoffValue::default() {
        ctxt.error_at(
            key.span(),
            "`backoff()` sets nothing; give the fields that differ from the default, like `backoff(initial = \"1s\", factor = 2.0)`",
        );
        return None;
    }
    if let (Some(initial), Some(max), Some(span)) = (backoff.initial, backoff.max, max_span)
        && max < initial
    {
        ctxt.error_at(
            span,
            format!(
                "the longest wait, `max` ({}), is shorter than the first, `initial` ({})",
                humantime::format_duration(max),
                humantime::format_duration(initial)
            ),
        );
        return None;
    }
    Some(backoff)
}

/// `key = value`, before the key is looked up. The value is kept as tokens: syn folds `-1` into
/// one literal whose span, on stable, covers only the `-`, and errors should underline all of
/// what the user wrote.
struct RawOption {
    key: Ident,
    value: RawValue,
}

enum RawValue {
    /// The tokens after `=`, up to the next top-level comma.
    Assigned(TokenStream),
    /// The key alone (a switch turned on, or a missing value).
    Bare(TokenStream),
    /// `key(...)`: `tokens` is all of it, `fields` what is inside the parentheses.
    List {
        tokens: TokenStream,
        fields: TokenStream,
    },
}

fn parse_raw_options(input: ParseStream) -> syn::Result<Vec<RawOption>> {
    let mut options = Vec::new();
    while !input.is_empty() {
        // `crate` is a keyword but a valid key.
        if !input.peek(Ident::peek_any) {
            return Err(input.error("expected `option = value`"));
        }
        let key = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            let eq: Token![=] = input.parse()?;
            let mut tokens = TokenStream::new();
            while !input.is_empty() && !input.peek(Token![,]) {
                tokens.extend([input.parse::<TokenTree>()?]);
            }
            if tokens.is_empty() {
                return Err(syn::Error::new(
                    eq.span,
                    format!("expected a value after `{key} =`"),
                ));
            }
            RawValue::Assigned(tokens)
        } else if input.peek(syn::token::Paren) {
            let group: proc_macro2::Group = input.parse()?;
            let mut tokens = key.to_token_stream();
            let fields = group.stream();
            tokens.extend([TokenTree::Group(group)]);
            RawValue::List { tokens, fields }
        } else if input.is_empty() || input.peek(Token![,]) {
            RawValue::Bare(key.to_token_stream())
        } else {
            return Err(input.error(format!(
                "expected `=` after `{key}`: options are written `{key} = value`"
            )));
        };
        options.push(RawOption { key, value });
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(options)
}

/// Parses a `#[step]`/`#[step(...)]` attribute found in a workflow body. `#[step = ...]` is an
/// error; the other two forms share [`parse_options`].
pub(crate) fn parse_attribute_options(
    attr: &syn::Attribute,
    tables: &[&'static [OptionDef]],
    ctxt: &Ctxt,
) -> Vec<ParsedOption> {
    match &attr.meta {
        Meta::Path(_) => Vec::new(),
        Meta::List(list) => parse_options(list.tokens.clone(), tables, ctxt),
        Meta::NameValue(name_value) => {
            ctxt.error_spanned_by(
                name_value,
                "expected `#[step]` or `#[step(option = value, ...)]`",
            );
            Vec::new()
        }
    }
}

fn valid_options<'a>(noun: Noun, defs: impl Iterator<Item = &'a OptionDef>) -> String {
    let keys: Vec<String> = defs.map(|def| format!("`{}`", def.key)).collect();
    format!("valid {}: {}", noun.many, keys.join(", "))
}

fn unknown_option<'a>(
    key: &str,
    noun: Noun,
    defs: impl Iterator<Item = &'a OptionDef> + Clone,
) -> String {
    let valid = valid_options(noun, defs.clone());
    match nearest(key, defs.map(|def| def.key)) {
        Some(near) => format!(
            "unknown {} `{key}`; did you mean `{near}`? {valid}",
            noun.one
        ),
        None => format!("unknown {} `{key}`; {valid}", noun.one),
    }
}

/// The candidate closest to `typo`, if any is close enough to be what the user meant.
///
/// Edit distance alone misses `retry` for `retries` (distance 3), so a shared prefix of four
/// characters or more also counts: option names are distinctive enough that it rarely misleads.
pub(crate) fn nearest<'a>(
    typo: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let typo = typo.to_ascii_lowercase();
    candidates
        .filter_map(|candidate| {
            let distance = levenshtein(&typo, candidate);
            let common_prefix = typo
                .chars()
                .zip(candidate.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let close = distance <= 2.max(candidate.len() / 3)
                || common_prefix >= 4.min(candidate.len())
                || (candidate.contains(typo.as_str()) && typo.len() >= 3);
            close.then_some((distance, candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn validate(def: &OptionDef, value: &Expr, tokens: &TokenStream) -> syn::Result<Value> {
    let key = def.key;
    let lit = match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        _ => None,
    };
    match def.kind {
        ValueKind::Name => match lit {
            Some(Lit::Str(s)) if s.value().trim().is_empty() => {
                Err(syn::Error::new(s.span(), format!("`{key}` cannot be empty")))
            }
            Some(Lit::Str(s)) => Ok(Value::Str(s.clone())),
            _ => Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` takes a string literal: `{key} = {}`", def.example),
            )),
        },
        ValueKind::Path => match lit {
            Some(Lit::Str(s)) => s.parse::<syn::Path>().map(Value::Path).map_err(|_| {
                syn::Error::new(
                    s.span(),
                    format!(
                        "{:?} is not a path; `{key}` takes the path of the runtime crate as this crate names it, like `{key} = \"::workflow_runtime\"` or `{key} = \"my_runtime\"`",
                        s.value()
                    ),
                )
            }),
            _ => Err(syn::Error::new_spanned(
                tokens,
                format!(
                    "`{key}` takes the path as a string: `{key} = \"{}\"`",
                    tokens.to_string().replace(' ', "")
                ),
            )),
        },
        ValueKind::Int { min, max, ty } => validate_int(def, value, tokens, lit, min, max, ty),
        ValueKind::Float { min, max } => validate_float(def, value, tokens, lit, min, max),
        ValueKind::Duration => validate_duration(key, tokens, lit),
        ValueKind::Flag => match lit {
            Some(Lit::Bool(flag)) => Ok(Value::Flag(flag.value)),
            _ => Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` is a switch: write `{key}` or `{key} = true`"),
            )),
        },
        ValueKind::Backoff => unreachable!("`backoff(...)` is parsed by parse_backoff"),
    }
}

/// Whether the value is written with a leading `-`, which syn may fold into the literal.
fn is_negative(value: &Expr, lit: Option<&Lit>) -> bool {
    match (value, lit) {
        (
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }),
            _,
        ) => true,
        (_, Some(Lit::Int(int))) => int.base10_digits().starts_with('-'),
        (_, Some(Lit::Float(float))) => float.base10_digits().starts_with('-'),
        _ => false,
    }
}

fn validate_int(
    def: &OptionDef,
    value: &Expr,
    tokens: &TokenStream,
    lit: Option<&Lit>,
    min: u64,
    max: u64,
    ty: IntType,
) -> syn::Result<Value> {
    let (key, example) = (def.key, def.example);
    let range = if max == u64::MAX || max == u64::from(u32::MAX) {
        format!("an integer of at least {min}")
    } else {
        format!("an integer from {min} to {max}")
    };
    if is_negative(value, lit) {
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` cannot be negative; it takes {range}, like `{key} = {example}`"),
        ));
    }
    let n = match lit {
        Some(Lit::Int(int)) => int.base10_parse::<u64>().map_err(|_| {
            syn::Error::new(
                int.span(),
                format!("`{key}` takes {range}, like `{key} = {example}`"),
            )
        })?,
        Some(Lit::Str(s)) if s.value().trim().parse::<u64>().is_ok() => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "`{key}` takes an integer, not a string: `{key} = {}`",
                    s.value().trim()
                ),
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` takes {range}, like `{key} = {example}`"),
            ));
        }
    };
    if n < min {
        let why = match (key, min) {
            ("max_steps", 1) => ": a run with no steps allowed would fail at its first step",
            ("version", 1) => {
                ": versions count from 1, the version of a workflow written without `version`"
            }
            (_, 1) => ": zero would stop every run before it starts",
            _ => "",
        };
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` must be at least {min}{why}"),
        ));
    }
    let max = match ty {
        IntType::U32 => max.min(u64::from(u32::MAX)),
        IntType::U64 => max,
    };
    if n > max {
        let why = if key == "retries" {
            "; more is almost always a mistake, and each retry of a paid call costs money"
        } else {
            ""
        };
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` must be at most {max}{why}"),
        ));
    }
    Ok(match ty {
        IntType::U32 => Value::U32(u32::try_from(n).expect("checked against u32::MAX")),
        IntType::U64 => Value::U64(n),
    })
}

fn validate_float(
    def: &OptionDef,
    value: &Expr,
    tokens: &TokenStream,
    lit: Option<&Lit>,
    min: f64,
    max: f64,
) -> syn::Result<Value> {
    let (key, example) = (def.key, def.example);
    if is_negative(value, lit) && min >= 0.0 {
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` cannot be negative; it takes a number like `{key} = {example}`"),
        ));
    }
    let parsed = match lit {
        Some(Lit::Float(float)) => float.base10_parse::<f64>(),
        Some(Lit::Int(int)) => int.base10_parse::<f64>(),
        Some(Lit::Str(s)) if s.value().trim().parse::<f64>().is_ok() => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "`{key}` takes a number, not a string: `{key} = {}`",
                    s.value().trim()
                ),
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` takes a number, like `{key} = {example}`"),
            ));
        }
    };
    match parsed {
        Ok(n) if !n.is_finite() => Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` takes a finite number, like `{key} = {example}`"),
        )),
        Ok(n) if n < min || n > max => {
            let range = if max.is_infinite() {
                format!("at least {min}")
            } else {
                format!("from {min} to {max}")
            };
            Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` must be {range}, like `{key} = {example}`"),
            ))
        }
        Ok(n) => Ok(Value::F64(n)),
        Err(_) => Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` takes a number, like `{key} = {example}`"),
        )),
    }
}

fn validate_duration(key: &str, tokens: &TokenStream, lit: Option<&Lit>) -> syn::Result<Value> {
    let text = match lit {
        Some(Lit::Str(s)) => s,
        Some(Lit::Int(int)) => {
            return Err(syn::Error::new(
                int.span(),
                format!(
                    "`{key}` takes a duration string with a unit: `{key} = \"{}s\"`",
                    int.base10_digits()
                ),
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                tokens,
                format!(
                    "`{key}` takes a duration string, like `{key} = \"60s\"` or `{key} = \"1m 30s\"`"
                ),
            ));
        }
    };
    match humantime::parse_duration(&text.value()) {
        Ok(duration) if duration.is_zero() => {
            let why = match key {
                "timeout" => {
                    "; a zero timeout fails every attempt at once (leave `timeout` out for no limit)"
                }
                "max_duration" => {
                    "; a zero budget stops every run at once (leave `max_duration` out for no limit)"
                }
                _ => "",
            };
            Err(syn::Error::new(
                text.span(),
                format!("`{key}` must be greater than zero{why}"),
            ))
        }
        Ok(duration) => Ok(Value::Duration(duration)),
        Err(error) => Err(syn::Error::new(
            text.span(),
            format!(
                "invalid duration {:?} for `{key}`: {error}; write it like \"60s\", \"1m 30s\" or \"500ms\"",
                text.value()
            ),
        )),
    }
}
