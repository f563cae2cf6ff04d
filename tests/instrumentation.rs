//! `#[manhole::inspect(calls)]`, `inspect(writable)`, `stats` and `watch`,
//! end to end against `examples/instrumented`.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use support::{threads_named, wait_until, Json, Service, Text};

fn start() -> Service {
    let service = Service::spawn("instrumented", &[], None);
    service.wait_for_socket();
    service
}

fn drive(session: &mut Json, function: &str, calls: u64, threads: u64, arg: &str) -> u64 {
    session
        .result(
            "call",
            json!({"name": "drive", "args": [function, calls, threads, arg]}),
        )
        .as_u64()
        .unwrap()
}

fn calls_of(session: &mut Json, function: &str) -> Value {
    session.result("get", json!({"name": function}))
}

/// The text session's row for `function`: name, calls, in-flight, errors,
/// panics, mean, p50, p99, max.
fn text_row(service: &Service, function: &str) -> Vec<String> {
    let answer = service.text().ask(&format!("get {function}"));
    let mut lines = answer.lines();
    assert!(lines.next().unwrap().starts_with("NAME "), "{answer}");
    lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn millis(summary: &Value, key: &str) -> f64 {
    summary[key].as_f64().unwrap() / 1e6
}

#[test]
fn calls_from_many_threads_are_counted_exactly() {
    let service = start();
    let mut session = service.json();
    assert_eq!(drive(&mut session, "lookup", 2500, 4, "3"), 10_000);
    assert_eq!(drive(&mut session, "cache_slot", 300, 3, "7"), 900);
    let lookup = calls_of(&mut session, "lookup");
    assert_eq!(lookup["calls"], 10_000, "{lookup}");
    assert_eq!(lookup["in_flight"], 0);
    assert_eq!(lookup["errors"], 0);
    assert_eq!(lookup["panics"], 0);
    let nanos = |key: &str| {
        lookup[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {lookup}"))
    };
    assert!(nanos("p50_ns") <= nanos("p99_ns") && nanos("p99_ns") <= nanos("max_ns"));
    // The instrumented function still did its work, once per call.
    assert_eq!(session.result("get", json!({"name": "SEEN"})), 10_000);
    // A method inside an `impl` block, renamed.
    assert_eq!(calls_of(&mut session, "cache_slot")["calls"], 900);
    assert_eq!(
        text_row(&service, "lookup")[..5],
        ["lookup", "10000", "0", "0", "0"]
    );
    assert_eq!(text_row(&service, "cache_slot")[1], "900");

    let list = session.result("list", json!({}));
    let slot = list["inspected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == "cache_slot")
        .unwrap()
        .clone();
    assert_eq!(slot["kind"], "calls");
    assert_eq!(
        slot["signature"],
        "cache_slot(&mut self, key: usize) -> &mut u64"
    );
}

#[test]
fn in_flight_counts_calls_that_have_not_returned() {
    let service = start();
    let mut session = service.json();
    assert_eq!(
        session.result("call", json!({"name": "block_at_gate", "args": [3]})),
        3
    );
    wait_until("three calls in flight", || {
        calls_of(&mut session, "wait_at_gate")["in_flight"] == 3
    });
    assert_eq!(calls_of(&mut session, "wait_at_gate")["calls"], 3);
    assert_eq!(text_row(&service, "wait_at_gate")[1..3], ["3", "3"]);
    session.result("call", json!({"name": "open_gate"}));
    wait_until("the calls to return", || {
        calls_of(&mut session, "wait_at_gate")["in_flight"] == 0
    });
    assert_eq!(calls_of(&mut session, "wait_at_gate")["calls"], 3);
}

#[test]
fn panics_and_errors_are_counted_and_still_reach_the_caller() {
    let service = start();
    let mut session = service.json();
    // `drive` counts the calls that returned without a panic: none did, so
    // every panic reached it.
    assert_eq!(drive(&mut session, "may_panic", 5, 1, "true"), 0);
    assert_eq!(drive(&mut session, "may_panic", 4, 1, "false"), 4);
    let panicky = calls_of(&mut session, "may_panic");
    assert_eq!(
        (&panicky["calls"], &panicky["panics"], &panicky["errors"]),
        (&json!(9), &json!(5), &json!(0))
    );
    assert!(service.stderr().contains("boom on purpose"));

    assert_eq!(drive(&mut session, "parse_port", 10, 2, "8080"), 20);
    assert_eq!(drive(&mut session, "parse_port", 7, 1, "http"), 0);
    let ports = calls_of(&mut session, "parse_port");
    assert_eq!((&ports["calls"], &ports["errors"]), (&json!(27), &json!(7)));
    assert_eq!(ports["panics"], 0);
    assert_eq!(text_row(&service, "may_panic")[1..5], ["9", "0", "0", "5"]);
    assert_eq!(
        text_row(&service, "parse_port")[1..5],
        ["27", "0", "7", "0"]
    );
}

#[test]
fn latencies_match_known_sleeps_and_async_calls_are_timed_to_completion() {
    let service = start();
    let mut session = service.json();
    drive(&mut session, "nap", 20, 1, "10");
    let nap = calls_of(&mut session, "nap");
    for key in ["p50_ns", "mean_ns"] {
        let value = millis(&nap, key);
        assert!((9.5..20.0).contains(&value), "{key} {value} ms: {nap}");
    }
    assert!(millis(&nap, "p99_ns") <= millis(&nap, "max_ns"));
    assert!(millis(&nap, "max_ns") >= 10.0);

    // The future waits 40 ms without blocking a thread; its call lasts
    // until it completes.
    assert_eq!(drive(&mut session, "fetch", 5, 1, "40"), 5);
    let fetch = calls_of(&mut session, "fetch");
    assert_eq!(
        (&fetch["calls"], &fetch["cancelled"]),
        (&json!(5), &json!(0))
    );
    let p50 = millis(&fetch, "p50_ns");
    assert!((38.0..80.0).contains(&p50), "p50 {p50} ms: {fetch}");
    // An async function's polls are counted: none ran past slow_poll.
    assert_eq!(fetch["slow_polls"], 0, "{fetch}");
    let row = text_row(&service, "fetch");
    assert_eq!(row[1], "5");
    assert!(
        row[5..9].iter().all(|duration| duration.ends_with("ms")),
        "{row:?}"
    );
    assert_eq!(row[9], "0", "{row:?}");
}

#[test]
fn stats_shows_every_counted_function_sorted() {
    let service = start();
    let mut session = service.json();
    drive(&mut session, "nap", 3, 1, "5");
    drive(&mut session, "lookup", 50, 1, "1");
    let names = |stats: &Value| -> Vec<String> {
        stats["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_name = session.result("stats", json!({}));
    assert_eq!(
        names(&by_name),
        [
            "cache_slot",
            "fetch",
            "get::apply",
            "lookup",
            "may_panic",
            "nap",
            "parse_port",
            "set::apply",
            "set_many",
            "wait_at_gate"
        ]
    );
    let by_p99 = session.result("stats", json!({"sort": "p99"}));
    assert_eq!(names(&by_p99)[..2], ["nap", "lookup"]);
    let by_calls = session.result("stats", json!({"sort": "calls"}));
    assert_eq!(names(&by_calls)[..2], ["lookup", "nap"]);
    let error = session.error("stats", json!({"sort": "speed"}));
    assert_eq!(error["code"], -32602);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("sort by one of: name, calls"));

    let mut text = service.text();
    let table = text.ask("stats --sort p99");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CALLS",
            "IN-FLIGHT",
            "ERRORS",
            "PANICS",
            "MEAN",
            "P50",
            "P99",
            "MAX"
        ]
    );
    let nap: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(nap[..5], ["nap", "3", "0", "0", "0"]);
    assert!(nap[6].ends_with("ms"), "{table}");
    assert_eq!(
        text.ask("stats --sort=calls")
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next(),
        Some("lookup")
    );
    assert!(text
        .ask("stats --sort")
        .starts_with("error: usage: stats [--sort COLUMN]"));
    let one = text.ask("get nap");
    assert_eq!(one.lines().count(), 2, "{one}");
}

#[test]
fn set_writes_each_supported_type_and_keeps_the_old_value_on_error() {
    let service = start();
    let mut text = service.text();
    assert_eq!(text.ask("set LIMIT 250"), "LIMIT = 250 (was 100)\n");
    assert_eq!(text.ask("set OFFSET -3"), "OFFSET = -3 (was 0)\n");
    assert_eq!(text.ask("set VERBOSE true"), "VERBOSE = true (was false)\n");
    assert_eq!(
        text.ask(r#"set SETTINGS {"mode": "fast", "retries": 5}"#),
        "SETTINGS = {\"mode\":\"fast\",\"retries\":5} (was {\"mode\":\"\",\"retries\":3})\n"
    );
    assert_eq!(
        text.ask(r#"set UPSTREAMS ["a:1", "b:2"]"#),
        "UPSTREAMS = [\"a:1\",\"b:2\"] (was [])\n"
    );
    // Plain text is a string; so is one quoted word.
    assert_eq!(
        text.ask("set MOTD back at 5"),
        "MOTD = back at 5 (was welcome)\n"
    );
    assert_eq!(text.ask("set MOTD 'it''s'"), "MOTD = its (was back at 5)\n");

    for (line, expected) in [
        ("set LIMIT -1", "error: cannot set `LIMIT`: expected a u64, got \"-1\": invalid digit found in string\n"),
        ("set VERBOSE yes", "error: cannot set `VERBOSE`: expected `true` or `false`, got \"yes\": provided string was not `true` or `false`\n"),
        ("set LIMIT [1]", "error: cannot set `LIMIT`: expected a u64, got [1]\n"),
        (r#"set SETTINGS {"mode": 1, "retries": 5}"#, "error: cannot set `SETTINGS`: the value does not fit Settings: invalid type: integer `1`, expected a string\n"),
        (r#"set UPSTREAMS {"a": 1}"#, "error: cannot set `UPSTREAMS`: the value does not fit Vec<String>: invalid type: map, expected a sequence\n"),
        (r#"set SETTINGS {"mode": "x", "retries": 5, "extra": 1}"#, "error: cannot set `SETTINGS`: the value does not fit Settings: unknown field `extra`, expected `mode` or `retries`\n"),
        ("set SEEN 5", "error: `SEEN` is not writable; mark its static `#[manhole::inspect(writable)]` to allow `set`\n"),
        ("set lookup 5", "error: `lookup` is a function's call statistics, which cannot be set\n"),
        ("set drive 5", "error: `drive` is a command, not an inspected item; use `call drive`\n"),
        ("set LIMT 5", "error: unknown inspected item `LIMT`; did you mean `LIMIT`? `list` shows what is registered\n"),
        ("set LIMIT", "error: usage: set NAME VALUE\n"),
    ] {
        assert_eq!(text.ask(line), expected, "{line}");
    }
    assert_eq!(text.ask("get LIMIT"), "250\n");
    assert_eq!(
        text.ask("get SETTINGS"),
        "{\"mode\":\"fast\",\"retries\":5}\n"
    );

    let mut session = service.json();
    assert_eq!(
        session.result("set", json!({"name": "LIMIT", "value": 7})),
        json!({"previous": 250, "value": 7})
    );
    assert_eq!(
        session.result("set", json!({"name": "UPSTREAMS", "value": ["c:3"]})),
        json!({"previous": ["a:1", "b:2"], "value": ["c:3"]})
    );
    let error = session.error("set", json!({"name": "SETTINGS", "value": "fast"}));
    assert_eq!(error["code"], -32602);
    let error = session.error("set", json!({"name": "SEEN", "value": 1}));
    assert_eq!(error["code"], -32602);
    let error = session.error("set", json!({"name": "LIMIT"}));
    assert_eq!(error["message"], "`set` needs the param `value`");
    assert_eq!(session.result("get", json!({"name": "LIMIT"})), 7);
}

#[test]
fn set_waits_a_bounded_time_for_a_held_lock() {
    let service = start();
    let mut session = service.json();
    session.result("call", json!({"name": "hold_settings", "args": [3000]}));
    let error = session.error(
        "set",
        json!({"name": "SETTINGS", "value": {"mode": "slow", "retries": 1}}),
    );
    assert_eq!(error["code"], -32002, "{error}");
    assert_eq!(
        error["message"],
        "setting `SETTINGS`: the lock is held by another thread; gave up after 100 ms"
    );
    wait_until("the lock to be released", || {
        session.request("get", json!({"name": "SETTINGS"}))["result"]["retries"] == 3
    });
    assert_eq!(
        session.result(
            "set",
            json!({"name": "SETTINGS", "value": {"mode": "slow", "retries": 1}})
        )["value"],
        json!({"mode": "slow", "retries": 1})
    );
}

#[test]
fn watch_reprints_until_a_line_and_ends_with_the_client() {
    let service = start();
    let baseline = threads_named(service.pid, "manhole-session").len();
    let mut text = service.text();
    text.send("watch LIMIT 0.1");
    let mut seen = String::new();
    wait_until("three reprints", || {
        seen = text.peek_pending();
        seen.matches("] 100\n").count() >= 3
    });
    assert!(
        seen.starts_with("watching `LIMIT` every 0.1s; send a line to stop\n[0.0s] 100\n"),
        "{seen}"
    );
    text.send("");
    text.until_prompt();
    assert_eq!(text.ask("get LIMIT"), "100\n");

    // The watch follows changes made elsewhere.
    text.send("watch LIMIT 0.1");
    service
        .json()
        .result("set", json!({"name": "LIMIT", "value": 5}));
    wait_until("the new value", || text.peek_pending().contains("] 5\n"));

    drop(text);
    wait_until("the watching session to end", || {
        threads_named(service.pid, "manhole-session").len() == baseline
    });

    let mut text = service.text();
    for (line, expected) in [
        ("watch", "error: usage: watch NAME [SECONDS]\n"),
        (
            "watch LIMIT 0.01",
            "error: the interval must be a number of seconds from 0.1 to 3600; got \"0.01\"\n",
        ),
        (
            "watch LIMIT 1e20",
            "error: the interval must be a number of seconds from 0.1 to 3600; got \"1e20\"\n",
        ),
        (
            "watch LIMIT soon",
            "error: the interval must be a number of seconds from 0.1 to 3600; got \"soon\"\n",
        ),
    ] {
        assert_eq!(text.ask(line), expected, "{line}");
    }
    // Only the error: no heading that promises a watch.
    assert_eq!(
        text.ask("watch LIMT"),
        "error: unknown inspected item `LIMT`; did you mean `LIMIT`? `list` shows what is registered\n"
    );

    let mut session = service.json();
    assert_eq!(
        session.error("watch", json!({"name": "LIMIT"}))["code"],
        -32601
    );
    assert_eq!(
        session.error("text", json!({"line": "watch LIMIT"}))["code"],
        -32601
    );
}

#[test]
fn a_client_that_vanishes_mid_watch_costs_nothing() {
    let service = start();
    let baseline = threads_named(service.pid, "manhole-session").len();
    let mut stream = support::connect(&service.socket);
    stream.write_all(b"watch nap 0.1\n").unwrap();
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).unwrap();
    drop(stream);
    wait_until("the session to end", || {
        threads_named(service.pid, "manhole-session").len() == baseline
    });
    assert_eq!(Text::connect(&service.socket).ask("get LIMIT"), "100\n");
}

#[test]
fn stats_over_a_window_counts_only_recent_calls() {
    let service = start();
    let mut session = service.json();
    assert_eq!(drive(&mut session, "parse_port", 300, 1, "80"), 300);
    // The `manhole` thread samples once a second; these calls are then
    // more than two seconds in the past, with room for a late sample.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    drive(&mut session, "parse_port", 50, 1, "x");
    drive(&mut session, "nap", 5, 1, "20");

    let recent = session.result("stats", json!({"window_s": 2}));
    assert_eq!(recent["window_s"], 2.0);
    let row = |stats: &Value, name: &str| {
        stats["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
            .clone()
    };
    let port = row(&recent, "parse_port");
    assert_eq!(port["calls"], 50, "{recent}");
    assert_eq!(port["errors"], 50, "{recent}");
    let covered = port["covered_s"].as_f64().unwrap();
    assert!((2.0..4.5).contains(&covered), "{port}");
    let rate = port["calls_per_s"].as_f64().unwrap();
    assert!((rate - 50.0 / covered).abs() < 1.0, "{port}");
    let nap = row(&recent, "nap");
    assert_eq!(nap["calls"], 5);
    let p50 = millis(&nap, "p50_ns");
    assert!((18.0..40.0).contains(&p50), "{nap}");
    assert!(millis(&nap, "max_ns") >= p50);

    // Since start, the older calls are there too.
    let all = session.result("stats", Value::Null);
    assert_eq!(row(&all, "parse_port")["calls"], 350);
    assert!(all.get("window_s").is_none());
    // A window longer than the history covers it all, and says so.
    let long = session.result("stats", json!({"window_s": 600, "sort": "calls"}));
    let port = row(&long, "parse_port");
    assert_eq!(port["calls"], 350, "{long}");
    assert!(port["covered_s"].as_f64().unwrap() < 600.0);
    assert_eq!(long["functions"][0]["name"], "parse_port", "sorted: {long}");

    let text = service.text().ask("stats --window 2s --sort calls");
    // The heading names the span the counts and the rates cover: the 2 s
    // asked for, or the sampled span nearest it.
    let heading = text.lines().next().unwrap();
    assert!(
        heading == "over the last 2.0s"
            || (heading.starts_with("over the last ")
                && heading.ends_with(" (the sampled span nearest the 2.0s asked for)")),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("calls per second over that span (CALLS divided by it): "),
        "{text}"
    );
    let header = text.lines().nth(2).unwrap();
    assert!(header.starts_with("NAME "), "{text}");
    assert!(
        text.lines().nth(3).unwrap().starts_with("parse_port "),
        "{text}"
    );
    let text = service.text().ask("stats --window 10m");
    assert!(text.contains("; `parse_port` only "), "{text}");

    let error = session.error("stats", json!({"window_s": 601}));
    assert_eq!(error["data"]["reason"], "bad_params");
    assert_eq!(
        service.text().ask("stats --window 0"),
        "error: the window must be from 1s to 600s (10m), such as 10s or 5m; got \"0\"\n"
    );
}

#[test]
fn stats_reset_zeroes_the_counters_and_keeps_calls_in_flight() {
    let service = start();
    let mut session = service.json();
    drive(&mut session, "parse_port", 20, 1, "x");
    drive(&mut session, "lookup", 10, 1, "1");
    let mut text = service.text();
    assert_eq!(
        text.ask("stats reset parse_port"),
        "reset the call statistics of `parse_port` to zero\n"
    );
    let port = calls_of(&mut session, "parse_port");
    assert_eq!(
        (port["calls"].as_u64(), port["errors"].as_u64()),
        (Some(0), Some(0)),
        "{port}"
    );
    assert_eq!(port["p50_ns"], Value::Null);
    assert_eq!(
        calls_of(&mut session, "lookup")["calls"],
        10,
        "only the one named"
    );
    drive(&mut session, "parse_port", 3, 1, "80");
    assert_eq!(calls_of(&mut session, "parse_port")["calls"], 3);

    session.result("call", json!({"name": "block_at_gate", "args": [2]}));
    wait_until("two calls in flight", || {
        calls_of(&mut session, "wait_at_gate")["in_flight"] == 2
    });
    let reset = session.result("stats", json!({"reset": true}));
    assert_eq!(reset["in_flight"], 2, "{reset}");
    assert!(reset["reset"]
        .as_array()
        .unwrap()
        .iter()
        .any(|name| name == "lookup"));
    assert_eq!(calls_of(&mut session, "lookup")["calls"], 0);
    let gate = calls_of(&mut session, "wait_at_gate");
    assert_eq!(
        (gate["calls"].as_u64(), gate["in_flight"].as_u64()),
        (Some(2), Some(2))
    );
    session.result("call", json!({"name": "open_gate"}));
    wait_until("the calls to return", || {
        calls_of(&mut session, "wait_at_gate")["in_flight"] == 0
    });
    assert_eq!(calls_of(&mut session, "wait_at_gate")["calls"], 2);

    let answer = text.ask("stats reset");
    assert!(
        answer.starts_with("reset the call statistics of "),
        "{answer}"
    );
    assert!(answer.contains(" functions to zero: "), "{answer}");
    let error = session.error("stats", json!({"reset": true, "name": "VERBOSE"}));
    assert_eq!(error["data"]["reason"], "wrong_kind", "{error}");
    let error = session.error("stats", json!({"reset": true, "name": "nosuch"}));
    assert_eq!(error["data"]["reason"], "unknown", "{error}");
}

/// Two counted functions named `apply` in two modules are two rows,
/// `get::apply` and `set::apply`; `get` takes the qualified names, and the
/// short one says which to ask for.
#[test]
fn functions_of_the_same_name_are_told_apart_by_their_module() {
    let service = Service::spawn("instrumented", &[], None);
    service.wait_for_socket();
    let mut session = service.json();
    session.result("call", json!({"name": "run_applies", "args": [3]}));
    let all = session.result("stats", Value::Null);
    let rows: Vec<(&str, u64)> = all["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| Some((row["name"].as_str()?, row["calls"].as_u64()?)))
        .collect();
    assert!(rows.contains(&("get::apply", 3)), "{rows:?}");
    assert!(rows.contains(&("set::apply", 1)), "{rows:?}");
    assert!(
        rows.contains(&("set_many", 1)),
        "an explicit name as written: {rows:?}"
    );
    assert!(!rows.iter().any(|(name, _)| *name == "apply"), "{rows:?}");
    assert_eq!(
        session.result("get", json!({"name": "get::apply"}))["calls"],
        3
    );
    let error = session.error("get", json!({"name": "apply"}));
    assert_eq!(error["data"]["reason"], "ambiguous", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("`get::apply`") && message.contains("`set::apply`"),
        "{message}"
    );
    let text = service.text().ask("stats");
    assert!(text.contains("\nget::apply "), "{text}");
}
