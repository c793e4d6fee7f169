//! Compile tests of `#[workflow]` and `#[step]`: `ui-tests/pass` must build and run,
//! `ui-tests/fail` must fail with exactly the reviewed `.stderr` beside each file (one misuse
//! per file). After an intended change, or a compiler upgrade that rewords a diagnostic,
//! regenerate with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui-tests/pass/*.rs");
    cases.compile_fail("ui-tests/fail/*.rs");
}
