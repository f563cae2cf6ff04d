//! Compile tests with manhole's `tokio` feature: async commands, and
//! `#[manhole::main]` stacked with `#[tokio::main]` (above it, the manhole
//! is installed inside the runtime; below it, an error says to swap them).
//! Refresh the expected output with
//! `TRYBUILD=overwrite cargo test -p manhole-ui-tests --features tokio --test ui_tokio`.

#[test]
fn ui_tokio() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/tokio/pass/*.rs");
    cases.compile_fail("tests/tokio/fail/*.rs");
}
