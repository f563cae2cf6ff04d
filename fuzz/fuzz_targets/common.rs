//! What the fuzz target registers, and what every output must satisfy.
//! The regression test (`manhole/tests/fuzz_regressions.rs`) includes this
//! file too, so the corpus replays against the same table.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock};

/// Add two numbers.
#[manhole::command]
fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Echo one or two words.
#[manhole::command]
fn echo(first: String, second: Option<String>) -> Vec<String> {
    std::iter::once(first).chain(second).collect()
}

/// Fail with an error.
#[manhole::command(name = "fail")]
fn fail_on_purpose(reason: Option<String>) -> Result<(), String> {
    Err(reason.unwrap_or_else(|| "failed on purpose".to_owned()))
}

/// A counter.
#[manhole::inspect(writable)]
static HITS: AtomicU64 = AtomicU64::new(0);

/// A flag.
#[manhole::inspect(writable)]
static ENABLED: AtomicBool = AtomicBool::new(true);

#[derive(serde::Serialize, serde::Deserialize)]
struct Settings {
    mode: String,
    retries: u32,
}

/// Settings, replaced whole.
#[manhole::inspect(writable)]
static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    mode: String::new(),
    retries: 3,
});

/// Hosts.
#[manhole::inspect(writable)]
static HOSTS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Read-only.
#[manhole::inspect]
static FIXED: &str = "fixed";

/// A counted function.
#[manhole::inspect(calls)]
fn counted(x: u32) -> Result<u32, String> {
    x.checked_mul(2).ok_or_else(|| "overflow".to_owned())
}

/// A computed value.
#[manhole::inspect]
fn computed() -> usize {
    counted(3).unwrap_or(0) as usize
}

/// What every session's output must be: UTF-8; in JSON mode, one JSON-RPC
/// 2.0 response object per line, each with a `result` or an `error` whose
/// code is a documented one.
pub fn check(input: &[u8], output: &[u8]) {
    let text = std::str::from_utf8(output).expect("the session wrote UTF-8");
    if input.first() != Some(&b'{') {
        return;
    }
    const CODES: [i64; 8] = [
        -32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002,
    ];
    for line in text.lines() {
        let response: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}"));
        assert_eq!(response["jsonrpc"], "2.0", "{line}");
        assert!(response.get("id").is_some(), "{line}");
        match (response.get("result"), response.get("error")) {
            (Some(_), None) => {}
            (None, Some(error)) => {
                let code = error["code"].as_i64().expect("a numeric code");
                assert!(CODES.contains(&code), "{line}");
                assert!(error["message"].is_string(), "{line}");
            }
            _ => panic!("neither result nor error: {line}"),
        }
    }
}
