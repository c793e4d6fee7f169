//! The fingerprint of a workflow body, journaled with each run so that resuming a run under a
//! changed body is reported instead of silently replaying steps against different code.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

/// FNV-1a over the body's tokens, before `#[step]`s are rewritten.
///
/// FNV-1a rather than `std::hash`: `DefaultHasher` may change between Rust releases, and this
/// value is compared across builds. The tokens are rendered by [`render`] rather than by
/// `TokenStream::to_string`, whose spacing is the compiler's pretty-printer and has changed
/// between releases; a compiler upgrade must not make every journaled run look edited.
/// Whitespace and comments are not tokens, so reformatting a body keeps its fingerprint; doc
/// comments inside it are attributes and count.
pub(crate) fn fingerprint(body: &syn::Block) -> u64 {
    let mut text = String::new();
    render(body.to_token_stream(), &mut text);
    fnv1a_64(text.as_bytes())
}

/// Each token followed by one space, groups inside their delimiters: `{ f ( 1 ) . await ? ; }`.
/// Spacing (joint or alone punctuation) is ignored: it depends on where tokens came from.
pub(crate) fn render(tokens: TokenStream, out: &mut String) {
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push(' ');
                render(group.stream(), out);
                out.push_str(close);
            }
            TokenTree::Ident(ident) => out.push_str(&ident.to_string()),
            TokenTree::Punct(punct) => out.push(punct.as_char()),
            TokenTree::Literal(literal) => out.push_str(&literal.to_string()),
        }
        out.push(' ');
    }
}

pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_code() {
        let a: syn::Block = syn::parse_quote!({
            let x = f(1).await?;
            Ok(x)
        });
        let b: syn::Block = syn::parse_quote!({
            let x = f(1).await?;
            Ok(x)
        });
        let c: syn::Block = syn::parse_quote!({
            let x = f(2).await?;
            Ok(x)
        });
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
