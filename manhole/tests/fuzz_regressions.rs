//! Replays the fuzz corpus (`fuzz/corpus/session`) and every input the
//! fuzzer once failed on (`fuzz/regressions`) through the fuzz target's own
//! code path and checks, so a normal `cargo test` covers them without
//! nightly.

#[path = "../../fuzz/fuzz_targets/common.rs"]
mod common;

use std::path::Path;

fn inputs(directory: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(directory);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(&path).ok()?))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let corpus = inputs("corpus/session");
    assert!(corpus.len() >= 4, "the seed corpus is missing");
    for (name, input) in corpus.iter().chain(&inputs("regressions")) {
        let output = manhole::__private::serve_bytes(input);
        common::check(input, &output);
        assert!(
            !String::from_utf8_lossy(&output).contains("panicked"),
            "{name}"
        );
    }
}
