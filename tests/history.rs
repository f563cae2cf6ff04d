//! The flight recorder, on a real process: `history` shows what happened
//! before the client connected, and who set and called what.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::Service;

fn series(reading: &Value, name: &str) -> Vec<Option<f64>> {
    reading["series"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no series {name}: {reading}"))
        .iter()
        .map(Value::as_f64)
        .collect()
}

#[test]
fn history_shows_the_seconds_before_the_client_came() {
    let service = Service::start();
    // The recorder takes a point a second; give it a few.
    std::thread::sleep(Duration::from_secs(5));
    let reading = service
        .json()
        .result("history", json!({"since": "4s", "every": "1s"}));
    assert_eq!(reading["step_ms"], 1000, "{reading}");
    assert!(
        reading["from"].as_str().unwrap().ends_with('Z'),
        "{reading}"
    );
    for name in ["cpu", "rss_mib", "threads", "fds", "REQUESTS"] {
        let values = series(&reading, name);
        assert_eq!(values.len(), 4, "{name}: {reading}");
        assert!(values.iter().flatten().count() >= 3, "{name}: {reading}");
    }
    // The service's workers count requests all along: the counter's
    // history climbs, and so do the calls of the function behind it.
    let requests: Vec<f64> = series(&reading, "REQUESTS").into_iter().flatten().collect();
    assert!(
        requests.windows(2).all(|pair| pair[0] <= pair[1]),
        "{requests:?}"
    );
    assert!(requests.last() > requests.first(), "{requests:?}");
    let threads: Vec<f64> = series(&reading, "threads").into_iter().flatten().collect();
    assert!(threads.iter().all(|count| *count >= 4.0), "{threads:?}");
    let calls: Vec<f64> = series(&reading, "handle_request.calls_per_s")
        .into_iter()
        .flatten()
        .collect();
    assert!(calls.iter().any(|rate| *rate > 0.0), "{reading}");

    // Names keep the series that start with them.
    let chosen = service.json().result(
        "history",
        json!({"since": "4s", "every": "2s", "names": ["cpu", "handle_request.p99"]}),
    );
    let names: Vec<&String> = chosen["series"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["cpu", "handle_request.p99_ms"], "{chosen}");
    assert_eq!(series(&chosen, "cpu").len(), 2, "{chosen}");

    // The text form: a row per series with its sparkline.
    let text = service.text().ask("history --since 4s --every 1s REQUESTS");
    let row = text
        .lines()
        .find(|line| line.starts_with("REQUESTS"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.chars().any(|c| ('▁'..='█').contains(&c)), "{text}");
}

#[test]
fn set_and_call_are_kept_with_who_sent_them() {
    let service = Service::start();
    let mut session = service.json();
    session.result("set", json!({"name": "PAUSED", "value": "true"}));
    session.result("call", json!({"name": "add", "args": [40, 2]}));
    let error = session.error("call", json!({"name": "divide", "args": [1, 0]}));
    assert!(
        error["message"].as_str().unwrap().contains("zero"),
        "{error}"
    );
    let reading = session.result("history", json!({"since": "1m"}));
    let events = reading["events"].as_array().unwrap();
    let me = i64::from(std::process::id());
    let find = |kind: &str, what: &str| {
        events
            .iter()
            .find(|event| {
                event["kind"] == kind && event["what"].as_str().unwrap().starts_with(what)
            })
            .unwrap_or_else(|| panic!("no {kind} {what}: {reading}"))
    };
    let set = find("set", "PAUSED = true");
    assert_eq!(set["outcome"], "ok", "{set}");
    assert_eq!(set["peer_pid"], me, "{set}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(set["peer_uid"], unsafe { libc::getuid() }, "{set}");
    assert_eq!(find("call", "add(40, 2)")["outcome"], "ok");
    let divide = find("call", "divide(");
    assert!(
        divide["outcome"].as_str().unwrap().contains("zero"),
        "{divide}"
    );
    assert!(
        events
            .iter()
            .any(|event| event["kind"] == "connect" && event["peer_pid"] == me),
        "{reading}"
    );
}

/// A hostile client's text is kept escaped and cut: `history` never hands
/// another operator's terminal an escape sequence, and a huge argument
/// costs the recorder 256 bytes.
#[test]
fn a_hostile_clients_text_is_kept_escaped_and_cut() {
    let service = Service::start();
    let mut session = service.json();
    let clear_screen = "\u{1b}[2J\u{1b}]0;owned\u{7}";
    session.error("call", json!({"name": "add", "args": [clear_screen, "1"]}));
    let huge = "x".repeat(60_000);
    session.error("call", json!({"name": "add", "args": [huge, "1"]}));
    let reading = session.result("history", json!({"since": "1m"}));
    let calls: Vec<&Value> = reading["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "call")
        .collect();
    assert_eq!(calls.len(), 2, "{reading}");
    for event in &calls {
        for field in ["what", "outcome"] {
            let text = event[field].as_str().unwrap();
            assert!(!text.chars().any(char::is_control), "{field}: {text:?}");
            assert!(
                text.len() <= 256 + '…'.len_utf8(),
                "{field}: {} bytes",
                text.len()
            );
        }
    }
    assert!(
        calls[0]["what"].as_str().unwrap().contains("\\u{1b}[2J"),
        "{}",
        calls[0]
    );
    let text = service.text().ask("history --since 1m");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
}

#[test]
fn with_history_off_it_says_so_and_bad_settings_are_refused() {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "history=off")], None);
    service.wait_for_socket();
    let error = service.json().error("history", json!({}));
    assert_eq!(error["data"]["reason"], "not_enabled", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("history=off"),
        "{error}"
    );

    let service = Service::start();
    let mut session = service.json();
    for params in [
        json!({"since": "soon"}),
        json!({"every": "0s"}),
        json!({"names": "cpu"}),
    ] {
        let error = session.error("history", params.clone());
        assert_eq!(error["data"]["reason"], "bad_params", "{params}: {error}");
    }
    let text = service.text().ask("history --since");
    assert!(text.starts_with("error: "), "{text}");
}

#[test]
fn a_history_setting_that_makes_no_sense_stops_the_install() {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "history=1s")], None);
    let said = service.wait_for_stderr("invalid option `history`");
    assert!(said.contains("at least 10s, or off"), "{said}");
    assert!(!support::is_socket(&service.socket));
}
