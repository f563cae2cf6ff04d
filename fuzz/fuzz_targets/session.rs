//! Feeds arbitrary bytes to a session, as one client's whole input, through
//! the same line reader, parsers and built-ins as a socket session.
//!
//! ```text
//! cargo fuzz run session -- -max_total_time=600
//! ```

#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let output = manhole::__private::serve_bytes(input);
    common::check(input, &output);
});
