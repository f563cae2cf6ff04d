//! The watchdog, against `examples/stalls` on a real tokio runtime: a slow
//! poll reported while it runs, a stuck request, a heartbeat that stops, a
//! deadlock on two inspected locks, the rate limit, the threshold changed
//! live, `stalls` over JSON and text, and no thread when it is off. Needs
//! the `tokio` feature (`scripts/test` runs it).

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::Service;

fn stalls_service(manhole: &str) -> Service {
    let service = Service::spawn_with_env("stalls", &[], &[("MANHOLE", manhole)], None);
    service.wait_for_socket();
    // The watchdog reads the symbol tables before its first look, under
    // the dump's turn; a dump returns once they are read (by either), so
    // that the stalls a test starts next are all looked at. (A debug build
    // takes a few hundred milliseconds.)
    support::Json::connect(&service.socket).result("stacks", json!({}));
    service
}

fn call(service: &Service, name: &str, args: Value) -> Value {
    support::Json::connect(&service.socket).result("call", json!({"name": name, "args": args}))
}

fn stalls(service: &Service) -> Value {
    support::Json::connect(&service.socket).result("stalls", json!({}))
}

/// The reports of `kind`, waiting up to `within` for at least one.
fn reports_of(service: &Service, kind: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let reports: Vec<Value> = stalls(service)["reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|report| report["kind"] == kind)
            .cloned()
            .collect();
        if !reports.is_empty() || Instant::now() > deadline {
            return reports;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn functions(stack: &Value) -> Vec<String> {
    stack
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|frame| frame["function"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_blocking_poll_is_reported_with_its_stack_while_it_runs() {
    let service = stalls_service("watchdog=300ms");
    let began = Instant::now();
    call(&service, "block_worker", json!([1500]));
    let line = service.wait_for_stderr("manhole watchdog: slow_poll");
    let reported_after = began.elapsed();
    // Reported while the poll still runs, within threshold + threshold/4
    // + 20 ms of its start, give or take this machine's scheduling.
    assert!(
        reported_after < Duration::from_millis(1400),
        "{reported_after:?}"
    );
    // The first line says everything once: the call, how long, the
    // thread by id and name, and what it blocks.
    assert!(
        line.contains("slow_poll blocking_poll in one poll for "),
        "{line}"
    );
    assert!(line.contains(" on thread "), "{line}");
    assert!(line.contains(", blocking its worker"), "{line}");
    assert!(!line.contains("`blocking_poll` (blocking_poll)"), "{line}");
    let reports = reports_of(&service, "slow_poll", Duration::from_secs(5));
    let report = &reports[0];
    assert_eq!(report["name"], "blocking_poll");
    assert!(report["for_ms"].as_u64().unwrap() >= 300, "{report}");
    assert!(report["thread"].as_i64().unwrap() > 0);
    let stack = functions(&report["stack"]);
    assert!(
        stack
            .iter()
            .any(|f| f.starts_with("std::thread::") && f.ends_with("sleep")),
        "{stack:?}"
    );
    assert!(
        stack.iter().any(|f| f.contains("stalls::blocking_poll")),
        "{stack:?}"
    );
    assert!(report.get("ended_after_ms").is_none(), "{report}");
    assert_eq!(report["tree"]["name"], "blocking_poll", "{report}");
    // Once the poll is over, its record says how long it lasted.
    support::wait_until("the slow poll to end", || {
        stalls(&service)["reports"][0]
            .get("ended_after_ms")
            .is_some_and(|ended| ended.as_u64().unwrap() >= 1000)
    });
    // Reported again at twice and four times the threshold, a line each:
    // one record, and one stack, for the one stall.
    let slow: Vec<Value> = stalls(&service)["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|report| report["kind"] == "slow_poll")
        .cloned()
        .collect();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["reported_again"], 2, "{slow:?}");
    let stderr = service.stderr();
    let watchdog_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("manhole watchdog: slow_poll"))
        .collect();
    assert_eq!(
        watchdog_lines
            .iter()
            .filter(|line| line.contains("blocking_poll still in one poll after"))
            .count(),
        2,
        "{stderr}"
    );
    // The short stack: at most 20 lines, and 25 for the whole stall.
    assert!(watchdog_lines.len() <= 25, "{stderr}");
    assert!(
        !watchdog_lines
            .iter()
            .any(|line| line.contains("tokio::runtime")),
        "runtime frames are folded: {stderr}"
    );
    let text = support::Text::connect(&service.socket).ask("stalls");
    assert!(text.contains("slow_poll blocking_poll for"), "{text}");
    assert!(text.contains("ended after"), "{text}");
    // `stalls` keeps the whole stack; `--short` folds it as the report did.
    let short = support::Text::connect(&service.socket).ask("stalls --short");
    assert!(short.contains(" runtime frames"), "{short}");
    assert!(short.lines().count() < text.lines().count(), "{short}");
    let short = support::Json::connect(&service.socket).result("stalls", json!({"short": true}));
    assert_eq!(
        short["reports"][0]["stack"], slow[0]["stack"],
        "JSON keeps every frame"
    );
}

#[test]
fn a_stuck_request_is_reported_with_its_subtree() {
    let service = stalls_service("watchdog=300ms,stuck_call=1s");
    call(&service, "stuck_request", json!([7]));
    // One report for the stuck request and the stuck call inside it,
    // naming the outer one with its arguments (`inspect(calls, args)`) and
    // the chain down to the inner one.
    let line = service.wait_for_stderr("manhole watchdog: stuck_call");
    assert!(
        line.contains("stuck_call handle(id=7) → fetch_backend in flight for "),
        "{line}"
    );
    let reports = reports_of(&service, "stuck_call", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let reports_now = reports_of(&service, "stuck_call", Duration::ZERO);
    assert_eq!(reports_now.len(), 1, "{reports_now:?}");
    let handle = reports
        .iter()
        .find(|report| report["name"] == "handle")
        .unwrap_or_else(|| panic!("{reports:?}"));
    assert_eq!(handle["chain"], json!(["handle(id=7)", "fetch_backend"]));
    assert_eq!(handle["tree"]["name"], "handle");
    assert_eq!(handle["tree"]["args"], "id=7", "{handle}");
    assert_eq!(
        handle["tree"]["children"][0]["name"], "fetch_backend",
        "{handle}"
    );
    assert!(handle["for_ms"].as_u64().unwrap() >= 1000);
}

#[test]
fn a_sync_call_stuck_past_stuck_call_is_reported_with_its_thread() {
    let service = stalls_service("watchdog=300ms,stuck_call=1s");
    call(&service, "start_sync_job", json!([3000]));
    // The outer call is reported, with the inner one at the end of its
    // chain: one report for the two.
    let line = service.wait_for_stderr("(a sync call)");
    assert!(
        line.contains("stuck_call sync_step → sync_inner running for "),
        "{line}"
    );
    assert!(
        line.contains(" on thread ") && line.contains("\"sync-worker\""),
        "{line}"
    );
    let reports = reports_of(&service, "stuck_call", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let reports_now = reports_of(&service, "stuck_call", Duration::ZERO);
    assert_eq!(reports_now.len(), 1, "{reports_now:?}");
    let outer = &reports[0];
    assert_eq!(outer["name"], "sync_step", "{outer}");
    assert_eq!(
        outer["chain"],
        json!(["sync_step", "sync_inner"]),
        "{outer}"
    );
    let worker = support::threads_named(service.pid, "sync-worker");
    assert_eq!(
        outer["thread"].as_u64(),
        worker.first().map(|tid| u64::from(*tid))
    );
    assert_eq!(outer["thread_name"], "sync-worker", "{outer}");
    assert!(
        functions(&outer["stack"])
            .iter()
            .any(|f| f.contains("stalls::sync_inner")),
        "{outer}"
    );
    assert_eq!(
        outer["tree"]["children"][0]["name"], "sync_inner",
        "{outer}"
    );
}

#[test]
fn a_heartbeat_that_stops_is_reported_with_the_stack_of_its_thread_even_with_the_watchdog_off() {
    let service = stalls_service("");
    call(&service, "start_heartbeat", json!([]));
    // Its thread is known from its first beat on.
    let mut beat = Value::Null;
    support::wait_until("the first beat", || {
        beat = support::Json::connect(&service.socket).result("get", json!({"name": "MAIN_LOOP"}));
        beat["thread"].as_i64().is_some()
    });
    assert_eq!(beat["period_ms"], 300, "{beat}");
    assert!(beat["thread"].as_i64().unwrap() > 0, "{beat}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(reports_of(&service, "missed_heartbeat", Duration::ZERO).is_empty());
    call(&service, "stop_heartbeat", json!([]));
    let line = service.wait_for_stderr("manhole watchdog: missed_heartbeat");
    assert!(
        line.contains("missed_heartbeat MAIN_LOOP last beat "),
        "{line}"
    );
    assert!(line.contains("\"main-loop\""), "{line}");
    let reports = reports_of(&service, "missed_heartbeat", Duration::from_secs(5));
    let report = &reports[0];
    assert_eq!(report["name"], "MAIN_LOOP");
    let stack = functions(&report["stack"]);
    assert!(
        stack.iter().any(|f| f.contains("stalls::stopped_beating")),
        "{stack:?}"
    );
    let beater = support::threads_named(service.pid, "main-loop");
    assert_eq!(
        report["thread"].as_u64(),
        beater.first().map(|tid| u64::from(*tid))
    );
}

#[test]
fn a_deadlock_on_two_inspected_locks_is_reported_on_both_and_named() {
    let service = stalls_service("watchdog=200ms,stuck_call=1s");
    call(&service, "deadlock", json!([]));
    service.wait_for_stderr("possible deadlock");
    let reports = reports_of(&service, "lock_wait", Duration::from_secs(5));
    let names: Vec<&str> = reports.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(
        names.contains(&"LOCK_A") && names.contains(&"LOCK_B"),
        "{reports:?}"
    );
    // One report names the whole cycle: both threads, the lock each waits
    // on and the lock each holds.
    let mut deadlocks = Vec::new();
    support::wait_until("the deadlock report", || {
        deadlocks = reports_of(&service, "lock_wait", Duration::ZERO)
            .into_iter()
            .filter(|report| report["deadlock"] == true)
            .collect();
        !deadlocks.is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let deadlocks: Vec<Value> = reports_of(&service, "lock_wait", Duration::ZERO)
        .into_iter()
        .filter(|report| report["deadlock"] == true)
        .collect();
    assert_eq!(deadlocks.len(), 1, "{deadlocks:?}");
    let cycle = &deadlocks[0];
    assert_eq!(cycle["name"], "LOCK_A, LOCK_B", "{cycle}");
    let chain: Vec<&str> = cycle["chain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(chain.len(), 2, "{cycle}");
    assert!(
        chain
            .iter()
            .any(|line| line.contains("\"locker-ab\" waits on `LOCK_B` and holds `LOCK_A`")),
        "{chain:?}"
    );
    assert!(
        chain
            .iter()
            .any(|line| line.contains("\"locker-ba\" waits on `LOCK_A` and holds `LOCK_B`")),
        "{chain:?}"
    );
    let line = service.wait_for_stderr("possible deadlock: thread");
    assert!(
        line.contains("holds `LOCK_A`") && line.contains("holds `LOCK_B`"),
        "{line}"
    );
    // `get` says who holds the lock.
    let error = support::Json::connect(&service.socket).error("get", json!({"name": "LOCK_A"}));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("held by thread ")
            && error["message"].as_str().unwrap().contains("\"locker-ab\""),
        "{error}"
    );
    let waiter = &cycle["waiters"][0];
    assert!(
        waiter["name"].as_str().unwrap().starts_with("locker-"),
        "{waiter}"
    );
    assert!(
        functions(&waiter["stack"])
            .iter()
            .any(|f| f.contains("take_in_order")),
        "{waiter}"
    );
    // `stacks` names the lock each of them waits on, watchdog or not.
    let dump = support::Json::connect(&service.socket).result("stacks", json!({}));
    let waiting: Vec<(&str, &str)> = dump["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|thread| Some((thread["name"].as_str()?, thread["waiting_on"].as_str()?)))
        .collect();
    assert!(waiting.contains(&("locker-ab", "LOCK_B")), "{waiting:?}");
    assert!(waiting.contains(&("locker-ba", "LOCK_A")), "{waiting:?}");
}

/// With many threads, every thread's `syscall` file is read only now and
/// then (a scan of 600 costs milliseconds); a lock's own state word says
/// when a scan is due, so a wait is still seen within a second or so.
#[test]
fn a_lock_wait_among_many_threads_is_still_seen_soon() {
    let service = Service::spawn_with_env(
        "stalls",
        &[],
        &[
            ("MANHOLE", "watchdog=200ms,stuck_call=1s"),
            ("STALLS_IDLE_THREADS", "600"),
        ],
        None,
    );
    service.wait_for_socket();
    support::Json::connect(&service.socket).result("stacks", json!({}));
    // Past the scan the watchdog makes on its start, so that the next
    // one is due only when a lock's word calls for it.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    call(&service, "deadlock", json!([]));
    let reports = reports_of(&service, "lock_wait", Duration::from_secs(6));
    assert!(!reports.is_empty(), "no lock_wait report within 6 s");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the first lock_wait report came {:?} after the wait began",
        started.elapsed()
    );
}

/// The flight recorder's events hold the stalls, so that `history` shows
/// them beside the figures of the same minutes.
#[test]
fn history_shows_a_stall_among_its_events() {
    let service = stalls_service("watchdog=200ms");
    call(&service, "block_worker", json!([600]));
    service.wait_for_stderr("manhole watchdog: slow_poll");
    let reading = support::Json::connect(&service.socket)
        .result("history", json!({"since": "1m", "every": "10s"}));
    let stall = reading["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["kind"] == "stall")
        .unwrap_or_else(|| panic!("no stall: {reading}"));
    assert!(
        stall["what"]
            .as_str()
            .unwrap()
            .starts_with("slow_poll blocking_poll for "),
        "{stall}"
    );
}

#[test]
fn twenty_slow_polls_make_five_reports_and_the_rest_are_counted() {
    let service = stalls_service("watchdog=50ms");
    call(&service, "many_slow_polls", json!([20, 80]));
    support::wait_until("twenty slow polls", || {
        let all = stalls(&service);
        all["suppressed"].as_u64().unwrap() >= 15
    });
    std::thread::sleep(Duration::from_millis(500));
    let all = stalls(&service);
    let slow = all["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|report| report["kind"] == "slow_poll")
        .count();
    assert_eq!(slow, 5, "{all}");
    assert_eq!(all["suppressed"], 15, "{all}");
    let text = support::Text::connect(&service.socket).ask("stalls");
    assert!(text.contains("15 more report(s) suppressed"), "{text}");
}

#[test]
fn the_watchdog_is_turned_off_and_on_live() {
    let service = stalls_service("watchdog=200ms");
    let mut session = support::Json::connect(&service.socket);
    let off = session.result("watchdog", json!({"threshold": "off"}));
    assert_eq!(off["threshold"], "off", "{off}");
    assert!(off["threshold_ms"].is_null());
    call(&service, "block_worker", json!([600]));
    std::thread::sleep(Duration::from_millis(900));
    assert!(reports_of(&service, "slow_poll", Duration::ZERO).is_empty());
    let on = support::Text::connect(&service.socket).ask("watchdog 150ms");
    assert!(on.contains("watchdog 150ms"), "{on}");
    call(&service, "block_worker", json!([600]));
    assert_eq!(
        reports_of(&service, "slow_poll", Duration::from_secs(5)).len(),
        1
    );
    let bad = session.error("watchdog", json!({"threshold": "soon"}));
    assert_eq!(bad["data"]["reason"], "bad_params", "{bad}");
    let shown = session.result("watchdog", json!({}));
    assert_eq!(shown["threshold"], "150ms");
    assert_eq!(shown["stuck_call_ms"], 60_000);
}

#[test]
fn with_the_watchdog_off_and_no_heartbeat_there_is_no_watchdog_thread() {
    let service = stalls_service("");
    std::thread::sleep(Duration::from_millis(300));
    assert!(support::threads_named(service.pid, "manhole-watch").is_empty());
    let shown = support::Json::connect(&service.socket).result("watchdog", json!({}));
    assert_eq!(shown["threshold"], "off");
    support::Text::connect(&service.socket).ask("watchdog 500ms");
    support::wait_until("the watchdog thread", || {
        !support::threads_named(service.pid, "manhole-watch").is_empty()
    });
    support::Text::connect(&service.socket).ask("watchdog off");
    support::wait_until("the watchdog thread to end", || {
        support::threads_named(service.pid, "manhole-watch").is_empty()
    });
}

/// `ended_after_ms` is a stall's true length, from its start to its end:
/// within threshold/4 + 50 ms for a slow poll, and within 100 ms for a
/// stuck call whatever `stuck_call` is (the bounds; 100 ms more are
/// allowed for this machine's scheduling, which can delay a look).
#[test]
fn ended_after_is_the_stalls_true_length() {
    let service = stalls_service("watchdog=400ms,stuck_call=2s");
    // The newest report of `kind` once there are `count` of them and it is
    // over: how long it lasted.
    let ended = |kind: &str, count: usize| -> u64 {
        let mut ended = 0;
        support::wait_until(&format!("{kind} number {count} to end"), || {
            let reports = reports_of(&service, kind, Duration::ZERO);
            if reports.len() < count {
                return false;
            }
            match reports[0].get("ended_after_ms").and_then(Value::as_u64) {
                Some(measured) => {
                    ended = measured;
                    true
                }
                None => false,
            }
        });
        ended
    };
    let scheduling = 100;
    for (count, ms) in [(1, 1000), (2, 3000)] {
        call(&service, "block_worker", json!([ms]));
        let measured = ended("slow_poll", count);
        assert!(
            measured.abs_diff(ms) <= 400 / 4 + 50 + scheduling,
            "a {ms} ms poll ended after {measured} ms"
        );
    }
    call(&service, "start_slow_request", json!([4000]));
    let measured = ended("stuck_call", 1);
    assert!(
        measured.abs_diff(4000) <= 100 + scheduling,
        "a 4000 ms call ended after {measured} ms"
    );
}
