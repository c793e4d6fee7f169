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
    /// The builder method the value is passed to (`Step::retries`, `Budget::with_max_steps`), or
    /// `None` for the options the macro consumes itself (`name`, `crate`).
    pub(crate) method: Option<&'static str>,
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
    /// A non-negative float or integer literal: `max_cost_usd = 2.5`.
    NonNegativeFloat,
    /// A non-zero humantime duration string: `timeout = "1m 30s"`.
    Duration,
    /// A switch: `at_most_once`, or `at_most_once = true` / `false`. The builder method takes
    /// no argument and is called when the switch is on.
    Flag,
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
        method: None,
    },
    OptionDef {
        key: "max_steps",
        kind: ValueKind::Int {
            min: 1,
            max: u64::MAX,
            ty: IntType::U64,
        },
        method: Some("with_max_steps"),
    },
    OptionDef {
        key: "max_cost_usd",
        kind: ValueKind::NonNegativeFloat,
        method: Some("with_max_cost_usd"),
    },
    OptionDef {
        key: "max_tokens",
        kind: ValueKind::Int {
            min: 0,
            max: u64::MAX,
            ty: IntType::U64,
        },
        method: Some("with_max_tokens"),
    },
];

/// Options of `#[step(...)]`, at a call site and on an `async fn`.
pub(crate) const STEP_OPTIONS: &[OptionDef] = &[
    OptionDef {
        key: "name",
        kind: ValueKind::Name,
        method: None,
    },
    OptionDef {
        key: "retries",
        kind: ValueKind::Int {
            min: 0,
            max: MAX_RETRIES,
            ty: IntType::U32,
        },
        method: Some("retries"),
    },
    OptionDef {
        key: "timeout",
        kind: ValueKind::Duration,
        method: Some("timeout"),
    },
    OptionDef {
        key: "circuit",
        kind: ValueKind::Name,
        method: Some("circuit"),
    },
    OptionDef {
        key: "at_most_once",
        kind: ValueKind::Flag,
        method: Some("at_most_once"),
    },
    OptionDef {
        key: "non_retryable",
        kind: ValueKind::Flag,
        method: Some("non_retryable"),
    },
];

/// `crate = "path"`, accepted by `#[workflow]` and by `#[step]` on an `async fn`. A `#[step]`
/// inside a workflow body takes the workflow's.
pub(crate) const CRATE_OPTION: &[OptionDef] = &[OptionDef {
    key: "crate",
    kind: ValueKind::Path,
    method: None,
}];

/// More retries than this is almost always a unit mistake (`retries = 3000` meant as
/// milliseconds), and each retry of an LLM call costs money.
pub(crate) const MAX_RETRIES: u64 = 100;

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
}

/// An option that passed every check, with the key as the user wrote it (for spans).
pub(crate) struct ParsedOption {
    pub(crate) def: &'static OptionDef,
    pub(crate) key: Ident,
    pub(crate) value: Value,
    /// The span of the value expression, where type errors about it belong.
    pub(crate) value_span: Span,
}

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
            ctxt.error_at(key.span(), unknown_option(&key_text, defs()));
            continue;
        };
        // Reported at the second occurrence: that is the one to delete.
        if seen.contains(&key_text) {
            ctxt.error_at(key.span(), format!("duplicate option `{key_text}`"));
            continue;
        }
        seen.push(key_text);
        let tokens = match value {
            RawValue::Assigned(tokens) => tokens,
            RawValue::Bare(_) if def.kind == ValueKind::Flag => {
                parsed.push(ParsedOption {
                    def,
                    value: Value::Flag(true),
                    value_span: key.span(),
                    key,
                });
                continue;
            }
            RawValue::Bare(tokens) | RawValue::List(tokens) => {
                ctxt.error_spanned_by(
                    tokens,
                    format!(
                        "`{}` takes a value: `{} = {}`",
                        def.key,
                        def.key,
                        example(def.kind)
                    ),
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
                        def.key,
                        def.key,
                        example(def.kind)
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
    /// `key(...)`, which no option takes.
    List(TokenStream),
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
            let mut tokens = key.to_token_stream();
            tokens.extend([input.parse::<TokenTree>()?]);
            RawValue::List(tokens)
        } else {
            RawValue::Bare(key.to_token_stream())
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

fn valid_options<'a>(defs: impl Iterator<Item = &'a OptionDef>) -> String {
    let keys: Vec<String> = defs.map(|def| format!("`{}`", def.key)).collect();
    format!("valid options: {}", keys.join(", "))
}

fn unknown_option<'a>(key: &str, defs: impl Iterator<Item = &'a OptionDef> + Clone) -> String {
    let valid = valid_options(defs.clone());
    match nearest(key, defs.map(|def| def.key)) {
        Some(near) => format!("unknown option `{key}`; did you mean `{near}`? {valid}"),
        None => format!("unknown option `{key}`; {valid}"),
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

/// A value of the right shape, for error messages.
fn example(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Name => "\"...\"",
        ValueKind::Path => "\"::workflow_runtime\"",
        ValueKind::Int { min: 0, .. } => "3",
        ValueKind::Int { .. } => "50",
        ValueKind::NonNegativeFloat => "2.50",
        ValueKind::Duration => "\"60s\"",
        ValueKind::Flag => "true",
    }
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
                format!("`{key}` takes a string literal: `{key} = \"...\"`"),
            )),
        },
        ValueKind::Path => match lit {
            Some(Lit::Str(s)) => s.parse::<syn::Path>().map(Value::Path).map_err(|_| {
                syn::Error::new(
                    s.span(),
                    format!("`{key}` takes a path to the runtime crate, like `{key} = \"::workflow_runtime\"`"),
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
        ValueKind::Int { min, max, ty } => validate_int(key, value, tokens, lit, min, max, ty),
        ValueKind::NonNegativeFloat => validate_float(key, value, tokens, lit),
        ValueKind::Duration => validate_duration(key, tokens, lit),
        ValueKind::Flag => match lit {
            Some(Lit::Bool(flag)) => Ok(Value::Flag(flag.value)),
            _ => Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` is a switch: write `{key}` or `{key} = true`"),
            )),
        },
    }
}

fn validate_int(
    key: &str,
    value: &Expr,
    tokens: &TokenStream,
    lit: Option<&Lit>,
    min: u64,
    max: u64,
    ty: IntType,
) -> syn::Result<Value> {
    let range = if max == u64::MAX {
        format!("an integer of at least {min}")
    } else {
        format!("an integer from {min} to {max}")
    };
    let negative = match (value, lit) {
        (
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }),
            _,
        ) => true,
        // syn folds `-1` into one literal.
        (_, Some(Lit::Int(int))) => int.base10_digits().starts_with('-'),
        _ => false,
    };
    if negative {
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` cannot be negative; it takes {range}"),
        ));
    }
    let n = match (value, lit) {
        (_, Some(Lit::Int(int))) => int
            .base10_parse::<u64>()
            .map_err(|_| syn::Error::new(int.span(), format!("`{key}` takes {range}")))?,
        (_, Some(Lit::Str(s))) if s.value().trim().parse::<u64>().is_ok() => {
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
                format!("`{key}` takes {range}, like `{key} = {}`", min.max(3)),
            ));
        }
    };
    if n < min {
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` must be at least {min}"),
        ));
    }
    if n > max {
        return Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` must be at most {max}"),
        ));
    }
    Ok(match ty {
        IntType::U32 => match u32::try_from(n) {
            Ok(n) => Value::U32(n),
            Err(_) => {
                return Err(syn::Error::new_spanned(
                    tokens,
                    format!("`{key}` must be at most {}", u32::MAX),
                ));
            }
        },
        IntType::U64 => Value::U64(n),
    })
}

fn validate_float(
    key: &str,
    value: &Expr,
    tokens: &TokenStream,
    lit: Option<&Lit>,
) -> syn::Result<Value> {
    let parsed = match (value, lit) {
        (_, Some(Lit::Float(float))) => float.base10_parse::<f64>(),
        (_, Some(Lit::Int(int))) => int.base10_parse::<f64>(),
        (
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }),
            _,
        ) => {
            return Err(syn::Error::new_spanned(
                tokens,
                format!("`{key}` cannot be negative"),
            ));
        }
        (_, Some(Lit::Str(s))) if s.value().trim().parse::<f64>().is_ok() => {
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
                format!("`{key}` takes a number, like `{key} = 2.50`"),
            ));
        }
    };
    match parsed {
        // syn folds `-1.5` into one literal.
        Ok(n) if n < 0.0 => Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` cannot be negative"),
        )),
        Ok(n) if n.is_finite() => Ok(Value::F64(n)),
        _ => Err(syn::Error::new_spanned(
            tokens,
            format!("`{key}` takes a finite number, like `{key} = 2.50`"),
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
        Ok(duration) if duration.is_zero() => Err(syn::Error::new(
            text.span(),
            format!("`{key}` must be greater than zero"),
        )),
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
