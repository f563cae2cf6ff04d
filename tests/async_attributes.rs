//! `#[manhole::main]` stacked with `#[tokio::main]`: above it, the manhole
//! is installed inside the runtime; below it, a compile error says to swap
//! them. Needs the `tokio` feature; refresh the expected output with
//! `TRYBUILD=overwrite cargo test --features tokio --test async_attributes`.

#[test]
fn attribute_orders() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/async-ui/pass/*.rs");
    cases.compile_fail("tests/async-ui/fail/*.rs");
}
