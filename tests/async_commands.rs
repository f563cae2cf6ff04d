//! `async fn` commands over real sockets, on the example's own tokio
//! runtime: values, `Err`, panics, `command_timeout`, a client that hangs
//! up mid-call, a program with no runtime, and sessions served while a
//! call awaits. Needs the `tokio` feature (`scripts/test` runs it).

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{run_with_timeout, Service};

fn tokio_service(env: &[(&str, &str)]) -> Service {
    let service = Service::spawn_with_env("tokio_service", &[], env, None);
    service.wait_for_socket();
    service
}

fn call(name: &str, args: Value) -> Value {
    json!({"name": name, "args": args})
}

fn get(session: &mut support::Json, name: &str) -> u64 {
    session
        .result("get", json!({"name": name}))
        .as_u64()
        .unwrap()
}

#[test]
fn async_commands_answer_from_the_runtime_with_values_errors_and_panics() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    assert_eq!(
        session.result("call", call("add_later", json!([40, 2]))),
        42
    );
    assert_eq!(session.result("call", call("add_later", json!([40]))), 40);
    // The future ran on a runtime worker, not on the session's thread.
    assert_eq!(
        session.result("call", call("ran_on", json!([]))),
        "tokio-rt-worker"
    );

    let error = session.error("call", call("fail_later", json!(["no disk"])));
    assert_eq!(error["code"], -32000, "{error}");
    assert_eq!(error["data"]["reason"], "returned_err", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("no disk"),
        "{error}"
    );

    let error = session.error("call", call("panic_later", json!([])));
    assert_eq!(error["code"], -32001, "{error}");
    assert_eq!(error["data"]["reason"], "panicked", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("deliberate panic after an await"),
        "{error}"
    );

    // Arguments are checked before anything is spawned.
    let error = session.error("call", call("nap", json!(["long"])));
    assert_eq!(error["data"]["reason"], "bad_argument", "{error}");
    assert_eq!(get(&mut session, "NAPS_STARTED"), 0);

    // Help and signatures as for a sync command.
    let help = session.result("help", json!({"name": "nap"}));
    assert!(help.to_string().contains("Sleeps SECONDS"), "{help}");

    // The process lives on after the panic.
    assert_eq!(session.result("call", call("add_later", json!([1, 1]))), 2);
}

#[test]
fn a_text_session_calls_an_async_command() {
    let service = tokio_service(&[]);
    let mut text = service.text();
    assert_eq!(text.ask("nap 0.05"), "slept 0.05 s\n");
    assert_eq!(text.ask("call add_later 2 3"), "5\n");
    let reply = text.ask("fail_later oops");
    assert!(reply.starts_with("error: "), "{reply}");
    assert!(reply.contains("oops"), "{reply}");
}

#[test]
fn past_command_timeout_the_call_is_timed_out_and_the_future_dropped() {
    let service = tokio_service(&[("MANHOLE", "command_timeout=300ms")]);
    let mut session = service.json();
    let started = Instant::now();
    let error = session.error("call", call("nap", json!([30])));
    let took = started.elapsed();
    assert_eq!(error["code"], -32003, "{error}");
    assert_eq!(error["data"]["reason"], "timed_out", "{error}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    support::wait_until("the timed-out nap to be dropped", || {
        get(&mut session, "NAPS_DROPPED") == 1
    });
    // A call that fits in the timeout still answers.
    assert_eq!(
        session.result("call", call("nap", json!([0.01]))),
        "slept 0.01 s"
    );
    assert_eq!(get(&mut session, "NAPS_DROPPED"), 1);
}

#[test]
fn a_client_that_hangs_up_mid_call_has_its_future_dropped() {
    let service = tokio_service(&[]);
    let mut watcher = service.json();
    let mut caller = support::connect(&service.socket);
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "call", "params": call("nap", json!([30]))});
    writeln!(caller, "{request}").unwrap();
    support::wait_until("the nap to start", || {
        get(&mut watcher, "NAPS_STARTED") == 1
    });
    assert_eq!(get(&mut watcher, "NAPS_DROPPED"), 0);
    drop(caller);
    let hung_up = Instant::now();
    while get(&mut watcher, "NAPS_DROPPED") == 0 {
        assert!(
            hung_up.elapsed() < Duration::from_secs(2),
            "the future was not dropped"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = hung_up.elapsed();
    // The session looks at its client every 20 ms, so the drop comes well
    // inside the 100 ms target on a quiet machine; the bound here is loose
    // because a loaded CI machine delays this test's own round trips, and a
    // 30 s nap that was not cancelled would fail it by far.
    assert!(took < Duration::from_millis(500), "dropped after {took:?}");
}

#[test]
fn other_sessions_are_served_while_an_async_command_waits() {
    let service = tokio_service(&[]);
    let mut napper = service.json();
    let request =
        json!({"jsonrpc": "2.0", "id": 7, "method": "call", "params": call("nap", json!([1.5]))});
    napper.send_raw(request.to_string().as_bytes());
    let mut other = service.json();
    support::wait_until("the nap to start", || get(&mut other, "NAPS_STARTED") == 1);
    let started = Instant::now();
    assert_eq!(other.result("call", call("add_later", json!([20, 22]))), 42);
    let mut text = service.text();
    assert_eq!(text.ask("ran_on"), "tokio-rt-worker\n");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let reply = napper.read_response();
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["result"], "slept 1.5 s", "{reply}");
}

#[test]
fn without_a_runtime_an_async_command_says_how_to_give_one() {
    let service = Service::spawn("tokio_plain", &[], None);
    service.wait_for_socket();
    let mut session = service.json();
    let error = session.error("call", call("ping", json!([])));
    assert_eq!(error["code"], -32002, "{error}");
    assert_eq!(error["data"]["reason"], "no_runtime", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("tokio_handle"), "{message}");
    assert!(
        message.contains("#[manhole::main] above #[tokio::main]"),
        "{message}"
    );
    // The session goes on.
    assert!(session.result("list", Value::Null).is_object());
}

#[test]
fn options_tokio_handle_gives_the_runtime_to_a_plain_install() {
    let service = Service::spawn("tokio_plain", &["--handle"], None);
    service.wait_for_socket();
    let mut session = service.json();
    assert_eq!(session.result("call", call("ping", json!([]))), "pong");
}

#[test]
fn manhole_cli_calls_an_async_command() {
    let cli = support::example("tokio_service")
        .parent()
        .and_then(|examples| examples.parent())
        .map(|debug| debug.join("manhole-cli"))
        .unwrap();
    assert!(
        cli.exists(),
        "{} is missing; build it with `cargo build -p manhole-cli` (scripts/test runs the workspace's tests first, which do)",
        cli.display()
    );
    let service = tokio_service(&[]);
    let pid = service.pid.to_string();
    let done = run_with_timeout(
        Command::new(&cli).args([pid.as_str(), "call", "add_later", "40", "2"]),
        Duration::from_secs(10),
    );
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout.trim(), "42", "{done:?}");
    let done = run_with_timeout(
        Command::new(&cli).args([pid.as_str(), "fail_later", "broken"]),
        Duration::from_secs(10),
    );
    assert_ne!(done.code, Some(0), "{done:?}");
    assert!(done.stderr.contains("broken"), "{done:?}");
}

#[test]
fn runtime_shows_the_workers_and_how_busy_each_was() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    let first = session.result("runtime", json!({}));
    assert_eq!(first["flavor"], "multi_thread", "{first}");
    assert_eq!(first["workers"], 2, "{first}");
    assert!(first["alive_tasks"].is_u64(), "{first}");
    assert!(first["global_queue_depth"].is_u64(), "{first}");
    assert_eq!(first["since_previous_s"], Value::Null, "{first}");
    let workers = first["per_worker"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{first}");
    assert!(workers.iter().all(|worker| worker["busy_ratio"].is_null()));
    assert!(workers.iter().all(|worker| worker["park_count"].is_u64()));

    let busy_ms = |reading: &Value| -> f64 {
        reading["per_worker"]
            .as_array()
            .unwrap()
            .iter()
            .map(|worker| worker["busy_ms"].as_f64().unwrap())
            .sum()
    };
    assert_eq!(
        session.result("call", call("spin", json!([300]))),
        "spun 300 ms"
    );
    // Busy time is wall time between unpark and park, so the 300 ms spin
    // is all there however loaded the machine is; tokio publishes it when
    // the worker parks, a moment after the reply.
    let mut second = Value::Null;
    support::wait_until("the spin's busy time", || {
        second = session.result("runtime", json!({}));
        busy_ms(&second) - busy_ms(&first) >= 290.0
    });
    assert!(
        second["since_previous_s"].as_f64().unwrap() > 0.0,
        "{second}"
    );
    let ratios: Vec<f64> = second["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|worker| worker["busy_ratio"].as_f64().unwrap())
        .collect();
    assert!(
        ratios.iter().all(|ratio| (0.0..=1.0).contains(ratio)),
        "{second}"
    );
    assert!(ratios.iter().any(|ratio| *ratio > 0.0), "{second}");

    let mut text = service.text();
    let shown = text.ask("runtime");
    assert!(
        shown.starts_with("tokio runtime: multi_thread, 2 workers, "),
        "{shown}"
    );
    assert!(shown.contains("WORKER"), "{shown}");
    assert!(shown.contains("BUSY%"), "{shown}");
}

#[test]
fn runtime_shows_a_worker_blocked_in_one_poll_as_busy_throughout() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    let throughout = |reading: &Value| -> Vec<bool> {
        reading["per_worker"]
            .as_array()
            .unwrap()
            .iter()
            .map(|worker| worker["busy_throughout"].as_bool().unwrap())
            .collect()
    };
    session.result("runtime", json!({}));
    std::thread::sleep(Duration::from_millis(100));
    let idle = session.result("runtime", json!({}));
    assert_eq!(throughout(&idle), [false, false], "{idle}");

    assert_eq!(
        session.result("call", call("start_compact", json!([3000]))),
        "started"
    );
    let mut blocked = Value::Null;
    support::wait_until("a worker that has not parked between two reads", || {
        std::thread::sleep(Duration::from_millis(200));
        blocked = session.result("runtime", json!({}));
        throughout(&blocked).contains(&true)
    });
    let worker = blocked["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["busy_throughout"] == true)
        .unwrap();
    assert_eq!(worker["busy_ratio"], 1.0, "{blocked}");
    assert_eq!(
        worker["park_unpark_count"].as_u64().unwrap() % 2,
        0,
        "{blocked}"
    );
    let shown = service.text().ask("runtime");
    assert!(shown.contains("100.0!"), "{shown}");
    assert!(
        shown.contains("has not parked since the previous read"),
        "{shown}"
    );
}

/// The flight recorder keeps the runtime's figures every second.
#[test]
fn history_has_the_runtime_busy_share() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    assert_eq!(
        session.result("call", call("spin", json!([1500]))),
        "spun 1500 ms"
    );
    let mut busy: Vec<f64> = Vec::new();
    support::wait_until("a step with the spin's busy time", || {
        let reading = session.result("history", json!({"since": "6s", "every": "1s"}));
        busy = reading["series"]["tokio.busy_pct"]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        assert!(
            reading["series"]["tokio.alive_tasks"].is_array(),
            "{reading}"
        );
        busy.iter().any(|share| *share >= 20.0)
    });
    assert!(
        busy.iter().all(|share| (0.0..=100.5).contains(share)),
        "{busy:?}"
    );
}

#[test]
fn runtime_without_a_runtime_says_how_to_give_one() {
    let service = Service::spawn("tokio_plain", &[], None);
    service.wait_for_socket();
    let error = service.json().error("runtime", json!({}));
    assert_eq!(error["data"]["reason"], "no_runtime", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("tokio_handle"),
        "{error}"
    );

    let service = Service::spawn("tokio_plain", &["--handle"], None);
    service.wait_for_socket();
    let reading = service.json().result("runtime", json!({}));
    assert_eq!(reading["workers"], 1, "{reading}");
}

#[test]
fn tokio_locks_are_read_and_written_with_the_lock_timeout() {
    let service = tokio_service(&[("MANHOLE", "lock_timeout=300ms")]);
    let mut session = service.json();
    assert_eq!(session.result("get", json!({"name": "SESSIONS"})), 0);
    assert_eq!(
        session.result("set", json!({"name": "SESSIONS", "value": 7})),
        json!({"previous": 0, "value": 7})
    );
    assert_eq!(
        session.result("set", json!({"name": "LIMITS", "value": [10, 20]})),
        json!({"previous": [], "value": [10, 20]})
    );
    assert_eq!(
        session.result("get", json!({"name": "LIMITS"})),
        json!([10, 20])
    );
    let error = session.error("set", json!({"name": "LIMITS", "value": "many"}));
    assert_eq!(error["data"]["reason"], "bad_value", "{error}");

    // Held across an await by the program: the read gives up after
    // lock_timeout, and answers again once the lock is free.
    let mut holder = service.json();
    let request = json!({"jsonrpc": "2.0", "id": 9, "method": "call",
        "params": call("hold_sessions", json!([3]))});
    holder.send_raw(request.to_string().as_bytes());
    support::wait_until("SESSIONS to be held", || {
        let response = session.request("get", json!({"name": "SESSIONS"}));
        response["error"]["data"]["reason"] == "lock_timeout"
    });
    let error = session.error("set", json!({"name": "SESSIONS", "value": 1}));
    assert_eq!(error["data"]["reason"], "lock_timeout", "{error}");
    assert_eq!(holder.read_response()["result"], "held SESSIONS for 3 s");
    assert_eq!(session.result("get", json!({"name": "SESSIONS"})), 7);
    let mut text = service.text();
    assert_eq!(text.ask("get LIMITS"), "[10,20]\n");
}

/// The oldest root named `name` in a `tasks` result.
fn oldest_root<'a>(tasks: &'a Value, name: &str) -> Option<&'a Value> {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["name"] == name)
}

#[test]
fn tasks_shows_the_in_flight_tree_and_the_poll_that_blocks_a_worker() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    let mut stuck = Value::Null;
    support::wait_until("the stuck request in tasks", || {
        let tasks = session.result("tasks", json!({}));
        match oldest_root(&tasks, "handle_request") {
            // Request 0 is the one stuck on its backend; others pass by.
            Some(root)
                if root["children"][0]["name"] == "fetch_backend" && root["args"] == "id=0" =>
            {
                stuck = root.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(stuck["state"], "waiting", "{stuck}");
    // `inspect(calls, args)`: which request it is.
    assert_eq!(stuck["args"], "id=0", "{stuck}");
    assert_eq!(stuck["children"][0]["args"], "id=0", "{stuck}");
    assert_eq!(stuck["thread"], Value::Null, "{stuck}");
    assert_eq!(stuck["poll_ms"], Value::Null, "{stuck}");
    assert_eq!(stuck["blocking"], false, "{stuck}");
    let backend = &stuck["children"][0];
    assert_eq!(backend["state"], "waiting", "{stuck}");
    assert!(backend["age_ms"].as_f64().unwrap() <= stuck["age_ms"].as_f64().unwrap());
    assert_eq!(backend["children"], json!([]), "{stuck}");
    // Ages grow.
    std::thread::sleep(Duration::from_millis(300));
    let later = session.result("tasks", json!({}));
    let again = oldest_root(&later, "handle_request").unwrap();
    assert!(
        again["age_ms"].as_f64().unwrap() >= stuck["age_ms"].as_f64().unwrap() + 250.0,
        "{stuck}\n{again}"
    );
    // Only trees at least this old.
    let none = session.result("tasks", json!({"older_than_s": 3600}));
    assert_eq!(none["tasks"], json!([]), "{none}");

    // A future that holds its worker in one poll.
    assert_eq!(
        session.result("call", call("start_compact", json!([5000]))),
        "started"
    );
    let mut compact = Value::Null;
    support::wait_until("compact to block its worker", || {
        let tasks = session.result("tasks", json!({}));
        match oldest_root(&tasks, "compact") {
            Some(node) if node["blocking"] == true => {
                compact = node.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(compact["state"], "polling", "{compact}");
    assert!(compact["thread"].as_i64().unwrap() > 0, "{compact}");
    // Blocking from `slow_poll` (100 ms) on, as read by a coarse clock:
    // it may say exactly 100.
    assert!(compact["poll_ms"].as_f64().unwrap() >= 100.0, "{compact}");
    // The dump says which call the blocked worker is inside.
    let stacks = session.result("stacks", json!({}));
    let worker = stacks["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|thread| thread["tid"] == compact["thread"])
        .unwrap_or_else(|| panic!("no thread {} in {stacks}", compact["thread"]));
    assert_eq!(worker["polling"]["name"], "compact", "{worker}");
    assert_eq!(worker["polling"]["blocking"], true, "{worker}");
    assert!(
        worker["polling"]["for_ms"].as_f64().unwrap() > 100.0,
        "{worker}"
    );
    let mut text = service.text();
    let dump = text.ask("stacks");
    assert!(dump.contains(", polling compact for "), "{dump}");
    assert!(dump.contains(": blocking its worker\n"), "{dump}");
    let shown = text.ask("tasks");
    assert!(shown.contains("\nhandle_request(id=0)  "), "{shown}");
    assert!(shown.contains("\n  fetch_backend(id=0)  "), "{shown}");
    assert!(shown.contains("waiting\n"), "{shown}");
    assert!(
        shown.contains(": blocking its worker\n") || !shown.contains("\ncompact "),
        "{shown}"
    );
    // A call that ends leaves the tree, and its slow poll is counted.
    support::wait_until("compact to end", || {
        oldest_root(&session.result("tasks", json!({})), "compact").is_none()
    });
    let row = session.result("get", json!({"name": "compact"}));
    assert_eq!(row["slow_polls"], 1, "{row}");
    let row = session.result("get", json!({"name": "handle_request"}));
    assert_eq!(row["slow_polls"], 0, "{row}");
    let table = text.ask("stats");
    assert!(
        table.lines().next().unwrap().ends_with("  SLOW-POLLS"),
        "{table}"
    );
    let compact_row = table
        .lines()
        .find(|line| line.starts_with("compact "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(compact_row.ends_with("  1"), "{table}");

    assert!(text
        .ask("tasks --older-than soon")
        .starts_with("error: `--older-than` takes a duration"));
    let error = session.error("tasks", json!({"older_than_s": -1}));
    assert_eq!(error["data"]["reason"], "bad_params", "{error}");
}

#[test]
fn slow_poll_sets_when_a_poll_blocks_its_worker() {
    let service = tokio_service(&[("MANHOLE", "slow_poll=10m")]);
    let mut session = service.json();
    assert_eq!(
        session.result("call", call("start_compact", json!([1500]))),
        "started"
    );
    let mut compact = Value::Null;
    support::wait_until("compact to be polled", || {
        let tasks = session.result("tasks", json!({}));
        match oldest_root(&tasks, "compact") {
            Some(node) if node["state"] == "polling" && node["poll_ms"].as_f64() > Some(200.0) => {
                compact = node.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(compact["blocking"], false, "{compact}");
    support::wait_until("compact to end", || {
        oldest_root(&session.result("tasks", json!({})), "compact").is_none()
    });
    let row = session.result("get", json!({"name": "compact"}));
    assert_eq!(row["slow_polls"], 0, "{row}");
}

/// `inspect(calls, args)` on a method shows `self` first; `args(skip(...))`
/// leaves a parameter out, and never formats it; `fields(...)` shows
/// values computed from the arguments.
#[test]
fn a_method_shows_self_and_a_skipped_argument_is_never_formatted() {
    let service = tokio_service(&[]);
    let mut session = service.json();
    session.result("call", call("start_lookup", json!(["slow"])));
    let mut found = (Value::Null, Value::Null, Value::Null);
    support::wait_until("the three lookups in tasks", || {
        let tasks = session.result("tasks", json!({}));
        let root = |name| oldest_root(&tasks, name).cloned().unwrap_or(Value::Null);
        found = (root("find"), root("find_all_shown"), root("find_by_key"));
        !found.0.is_null() && !found.1.is_null() && !found.2.is_null()
    });
    let (skipped, all, by_key) = found;
    assert_eq!(by_key["args"], "key=\"slow\", limit=6", "{by_key}");
    assert_eq!(
        skipped["args"], "self=Lookup { key: \"slow\" }, limit=3",
        "{skipped}"
    );
    assert_eq!(
        all["args"], "self=Lookup { key: \"slow\" }, store=Store, limit=4",
        "{all}"
    );
    // Formatted once, for the call that shows it; never for the other.
    assert_eq!(get(&mut session, "STORE_FORMATTED"), 1);
}
