//! Compile tests for the attributes: every misuse is an error at the
//! offending token, and every supported form compiles. Refresh the expected
//! output with `TRYBUILD=overwrite cargo test -p manhole-ui-tests`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/pass/*.rs");
    cases.compile_fail("tests/fail/*.rs");
}
