//! Compile tests of `#[workflow]` and `#[step]`: `ui-tests/pass` must build and run,
//! `ui-tests/fail` must fail with exactly the reviewed `.stderr` beside each file (one misuse
//! per file). After an intended change, or a compiler upgrade that rewords a diagnostic,
//! regenerate with `TRYBUILD=overwrite cargo test --test ui` and read the diff.
//!
//! Every fail case is also listed, with the first line of its `.stderr`, in
//! `workflow-runtime/src/misuse.md`; `tests/misuse_doc.rs` fails until a new or changed case is
//! listed there. Run a subset with `cargo test --test ui -- ui trybuild=determinism-`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui-tests/pass/*.rs");
    cases.compile_fail("ui-tests/fail/*.rs");
}
