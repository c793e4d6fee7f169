//! Unit tests of the proc_macro2 core, run without rustc's macro machinery. Errors are checked
//! with the source text they point at (proc-macro2's `span-locations`, a dev-only feature).

mod determinism;
mod options;
mod patches;
mod rewrite;
mod signature;
mod snapshot;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

/// The output of one macro invocation: its tokens (without the `compile_error!`s) and its errors
/// as `(message, source text the error points at)`.
pub(super) struct Expansion {
    pub(super) tokens: TokenStream,
    pub(super) errors: Vec<(String, String)>,
}

impl Expansion {
    /// Asserts that the output contains `expected` (Rust tokens, compared after tokenizing),
    /// where each `.run(|| CALL)` stands for the full attempt closure (see [`with_classify`]).
    #[track_caller]
    pub(super) fn assert_contains(&self, expected: &str) {
        self.assert_contains_with(expected, "::workflow_runtime");
    }

    /// [`Expansion::assert_contains`] for a runtime reached through `krate`.
    #[track_caller]
    pub(super) fn assert_contains_with(&self, expected: &str, krate: &str) {
        let output = canonical(self.tokens.clone());
        let expected = canonical(tokens(&with_classify(expected, krate)));
        assert!(
            output.contains(&expected),
            "expected to find\n  {expected}\nin\n  {output}"
        );
    }

    #[track_caller]
    pub(super) fn assert_lacks(&self, unexpected: &str) {
        let output = canonical(self.tokens.clone());
        let unexpected = canonical(tokens(unexpected));
        assert!(
            !output.contains(&unexpected),
            "did not expect\n  {unexpected}\nin\n  {output}"
        );
    }

    #[track_caller]
    pub(super) fn assert_no_errors(&self) {
        assert!(
            self.errors.is_empty(),
            "unexpected errors: {:#?}",
            self.errors
        );
    }

    /// Asserts exactly these errors, as `(message, text the error points at)`, in order.
    #[track_caller]
    pub(super) fn assert_errors(&self, expected: &[(&str, &str)]) {
        let actual: Vec<(&str, &str)> = self
            .errors
            .iter()
            .map(|(message, at)| (message.as_str(), at.as_str()))
            .collect();
        assert_eq!(actual, expected);
    }
}

/// Tokens separated by single spaces, whatever their `Spacing`: `?;` parsed from a string is a
/// joint `?`, while `quote!` emits an alone one, and the difference is not the test's concern.
/// The fingerprint's rendering is exactly that.
pub(super) fn canonical(tokens: TokenStream) -> String {
    let mut out = String::new();
    crate::fingerprint::render(tokens, &mut out);
    out
}

/// Expands the shorthand `KRATE::__private::step(NAME).OPTIONS.run(|| CALL)` of expected output
/// (the call of `Step::run` it reads as) into what the macros generate:
/// `KRATE::__private::StepValue::run(KRATE::__private::step(NAME).OPTIONS, || KRATE::__private::classified(CALL, |__error| { ... }),)`,
/// the classification of the attempt's error and the check that the step's value is owned
/// being the same for every step (and shown in full in the snapshot). `.run(|| [a, b] CALL)` also has the checks that the locals `a` and `b`,
/// which `CALL` moves, are `Copy` (see [`moved_check`]).
pub(super) fn with_classify(expected: &str, krate: &str) -> String {
    const MARKER: &str = ".run(|| ";
    let private = format!("{krate}::__private::");
    let mut out = String::new();
    let mut rest = expected;
    while let Some(start) = rest.find(MARKER) {
        // `KRATE::__private::step(NAME).OPTIONS`, the builder `StepValue::run` takes first.
        let before = &rest[..start];
        let step_at = before
            .rfind("step(")
            .expect("`step(NAME)` before `.run(|| ...)` in the expected output");
        let step_at = before[..step_at]
            .strip_suffix(&private)
            .map_or(step_at, str::len);
        let builder = before[step_at..].trim_start_matches(&private);
        out.push_str(&before[..step_at]);
        out.push_str(&format!("{private}StepValue::run({private}{builder}, "));
        let after = &rest[start + MARKER.len()..];
        // The call ends at the `)` that closes `.run(`.
        let mut depth = 1;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("balanced `.run(|| ...)` in the expected output");
        let (moved, call) = match after[..end].strip_prefix('[') {
            Some(list) => {
                let (locals, call) = list.split_once(']').expect("`[locals]` before the call");
                let checks: String = locals.split(',').map(|l| moved_check(l.trim())).collect();
                (Some(checks), call)
            }
            None => (None, &after[..end]),
        };
        let attempt = format!(
            "{krate}::__private::classified({call}, |__error| {{ \
             #[allow(unused_imports)] \
             use {krate}::__private::{{ChainKind as _, ClassifyKind as _}}; \
             {krate}::__private::StepErrorValue::into_failure((&__error).__workflow_error_kind(), __error) }})"
        );
        // The check that the step's value is owned, as `expand` writes it at a step's call
        // (the snapshot shows it in full). A `#[step]` fn has none: its signature is checked.
        let attempt = if call.trim_start().starts_with("__workflow_step_body") {
            attempt
        } else {
            crate::expand::owned_value_check(
                tokens(&attempt),
                &tokens(krate),
                proc_macro2::Span::call_site(),
            )
            .to_string()
        };
        match moved {
            // The `)` closing `.run(` is the first character of `rest`.
            Some(checks) => out.push_str(&format!("|| {{ {checks} {attempt} }},")),
            None => out.push_str(&format!("|| {attempt},")),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What a step's attempt closure checks, first, of a local `name` that its call moves.
pub(super) fn moved_check(name: &str) -> String {
    format!(
        "{{ #[diagnostic::on_unimplemented(\
             message = \"`{name}` is moved into the step's call, which is made again for each attempt\", \
             label = \"moved here by every attempt\", \
             note = \"each attempt of a step builds a fresh future from its call, so the call can only borrow what it captures: pass a reference (`&{name}`) or a clone (`{name}.clone()`)\", \
           )] \
           trait Copy {{ fn moved_into_step(&self) {{}} }} \
           #[diagnostic::do_not_recommend] \
           impl<T: ::core::marker::Copy> Copy for T {{}} \
           Copy::moved_into_step(&{name}); }}"
    )
}

pub(super) fn tokens(source: &str) -> TokenStream {
    source.parse().expect("test source tokenizes")
}

pub(super) fn workflow(args: &str, item: &str) -> Expansion {
    let ctxt = Ctxt::new();
    let tokens = crate::entry::workflow_with(self::tokens(args), self::tokens(item), &ctxt);
    Expansion {
        tokens,
        errors: errors(ctxt),
    }
}

pub(super) fn step(args: &str, item: &str) -> Expansion {
    let ctxt = Ctxt::new();
    let tokens = crate::entry::step_with(self::tokens(args), self::tokens(item), &ctxt);
    Expansion {
        tokens,
        errors: errors(ctxt),
    }
}

/// A workflow whose body is `body`, for the tests of step rewriting.
pub(super) fn workflow_body(body: &str) -> Expansion {
    workflow(
        "",
        &format!("async fn w(url: String) -> anyhow::Result<u32> {{ {body} }}"),
    )
}

fn errors(ctxt: Ctxt) -> Vec<(String, String)> {
    ctxt.into_errors()
        .into_iter()
        .map(|error| {
            let at = error.span().source_text().unwrap_or_default();
            (error.to_string(), at)
        })
        .collect()
}
