//! The error sink every stage of the pipeline writes to.
//!
//! A macro that stops at its first error makes the user fix mistakes one compile at a time. Each
//! stage therefore records what it finds here and carries on with a best guess; the entry point
//! turns everything recorded into `compile_error!`s placed after the (still emitted) user item.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Accumulates the errors of one macro invocation.
///
/// Dropping a `Ctxt` that still holds unreported errors is a bug in this crate (the user would
/// see a successful expansion that silently ignored a mistake), so it panics unless
/// [`Ctxt::into_compile_errors`] was called.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanned on `tokens` (its first and last token, where rustc allows).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.syn_error(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error spanned on one span.
    pub(crate) fn error_at<M: Display>(&self, span: proc_macro2::Span, message: M) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// Records an error built elsewhere (for example, by syn while parsing).
    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after into_compile_errors")
            .push(error);
    }

    /// How many errors were recorded so far; stages compare counts to learn whether they failed.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.borrow().as_ref().map_or(0, Vec::len)
    }

    /// Takes the recorded errors, in the order they were found.
    pub(crate) fn into_errors(self) -> Vec<syn::Error> {
        self.errors.borrow_mut().take().unwrap_or_default()
    }

    /// Renders every recorded error as a `compile_error!` at its own span.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.into_errors()
            .iter()
            .map(syn::Error::to_compile_error)
            .collect()
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        let unreported = self
            .errors
            .get_mut()
            .as_ref()
            .is_some_and(|e| !e.is_empty());
        if unreported && !std::thread::panicking() {
            panic!("workflow-macros: Ctxt dropped with unreported errors");
        }
    }
}
