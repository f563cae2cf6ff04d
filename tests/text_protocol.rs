//! The text protocol, end to end against `examples/service`.

mod support;

use serde_json::{json, Value};
use support::{Service, Text};

#[test]
fn greeting_shows_banner_every_thread_and_a_prompt() {
    let service = Service::start();
    let mut session = Text::connect_silent(&service.socket);
    let greeting = session.greeting();
    assert!(
        greeting.starts_with(&format!(
            "manhole {}, pid {}, ",
            env!("CARGO_PKG_VERSION"),
            service.pid
        )),
        "{greeting}"
    );
    assert!(
        greeting
            .lines()
            .next()
            .unwrap()
            .ends_with("examples/service"),
        "{greeting}"
    );
    // Alike threads are collapsed into one entry, which names each of
    // them: the two workers, when both sleep at the same spot.
    for name in [
        "service",
        "manhole",
        "worker-0",
        "worker-1",
        "manhole-session",
    ] {
        assert!(
            greeting.contains(&format!("\"{name}\"")),
            "{name} missing from\n{greeting}"
        );
    }
    assert!(
        greeting.contains(&format!("thread {} \"service\"", service.pid)),
        "{greeting}"
    );
    // The greeting folds the runtime's frames (`stacks --short`): the
    // program's own stay, each run of std's and the manhole's is one line.
    assert!(greeting.contains(" runtime frames\n"), "{greeting}");
    assert!(
        !greeting.contains("manhole::serve::listener::serve\n"),
        "{greeting}"
    );
    // Every thread has real frames in a full dump: the serving session its
    // own, the others captured by the stack signal, each where it really
    // waits.
    let full = session.ask("stacks");
    assert!(full.contains("manhole::serve::session::serve"), "{full}");
    assert!(full.contains("manhole::serve::listener::serve\n"), "{full}");
    let workers = greeting.matches("service::worker\n").count();
    let collapsed = greeting.contains("2 threads (sleeping): ");
    assert!(
        (collapsed && workers == 1) || (!collapsed && workers == 2),
        "{greeting}"
    );
    assert!(
        greeting.contains("service::main\n           at "),
        "{greeting}"
    );
    assert!(!greeting.contains("no response"), "{greeting}");
    assert!(
        greeting.ends_with("type `help` for commands, `quit` to leave\n"),
        "{greeting}"
    );
}

#[test]
fn help_shows_builtins_signatures_and_docs() {
    let service = Service::start();
    let mut session = service.text();
    let help = session.ask("help");
    for expected in [
        "help [NAME]",
        "call NAME [ARG...]",
        "quit, exit",
        "add(a: i64, b: i64) -> i64",
        "Add two numbers.",
        "reload_config(hold_ms: Option<u64>) -> Result<String, std::io::Error>",
        "REQUESTS: AtomicU64",
        "queue_depth() -> usize",
        "plugin_status() -> String",
    ] {
        assert!(help.contains(expected), "{expected:?} missing from\n{help}");
    }

    let one = session.ask("help reload_config");
    assert!(
        one.starts_with("reload_config(hold_ms: Option<u64>) -> Result<String, std::io::Error>\n"),
        "{one}"
    );
    assert!(one.contains("usage: call reload_config [HOLD_MS]"), "{one}");
    assert!(
        one.contains("defined in service (examples/service.rs:"),
        "{one}"
    );
    assert!(
        one.contains("meanwhile `get CONFIG` reports the lock as held"),
        "whole doc expected:\n{one}"
    );

    assert!(session
        .ask("help CONFIG")
        .starts_with("CONFIG: Mutex<Config>\nusage: get CONFIG, set CONFIG VALUE\n"));
    assert!(session
        .ask("help REQUESTS")
        .starts_with("REQUESTS: AtomicU64\nusage: get REQUESTS\n"));
    assert!(session.ask("help handle_request").starts_with(
        "handle_request(id: u64) -> Result<u64, String>\nusage: get handle_request (its calls), stats\n"
    ));
    assert!(session
        .ask("help stacks")
        .starts_with("stacks [--collapse] [--short] [TID|NAME] (built-in)\n"));
    assert_eq!(
        session.ask("help nothing_here"),
        "error: unknown name `nothing_here`; `list` shows what is registered\n"
    );
}

#[test]
fn list_names_every_command_and_item_with_its_first_doc_line() {
    let service = Service::start();
    let list = service.text().ask("list");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "commands (call NAME [ARG...]):");
    for (signature, summary) in [
        ("add(a: i64, b: i64) -> i64", "Add two numbers."),
        ("panic(message: Option<String>)", "Panic on purpose"),
        (
            "set_log_level(level: LogLevel) -> String",
            "Change the log level",
        ),
        (
            "CONFIG: Mutex<Config>",
            "(writable) The configuration in force;",
        ),
        (
            "handle_request(id: u64) -> Result<u64, String>",
            "(calls) Handles one request",
        ),
        ("PLUGIN_EVENTS: AtomicU64", "Events the plugin has seen"),
        ("queue_depth() -> usize", "Requests waiting for a worker"),
    ] {
        let line = lines
            .iter()
            .position(|line| line.trim_start().starts_with(signature))
            .unwrap_or_else(|| panic!("{signature} missing from\n{list}"));
        let row = format!("{}{}", lines[line], lines.get(line + 1).unwrap_or(&""));
        assert!(
            row.contains(summary),
            "{summary:?} not beside {signature}:\n{list}"
        );
    }
    assert!(lines.contains(&"inspected (get NAME):"), "{list}");
}

#[test]
fn threads_and_stacks_cover_every_thread() {
    let service = Service::start();
    let mut session = service.text();
    let threads = session.ask("threads");
    assert!(threads.starts_with("    TID  NAME"), "{threads}");
    for name in [
        "service",
        "manhole",
        "worker-0",
        "worker-1",
        "manhole-session",
    ] {
        assert!(
            threads
                .lines()
                .any(|line| line.split_whitespace().nth(1) == Some(name)),
            "{name} missing from\n{threads}"
        );
    }
    assert!(
        threads.contains(&format!("{}  service", service.pid)),
        "{threads}"
    );

    let stacks = session.ask("stacks");
    assert_eq!(
        stacks.matches("\nthread ").count() + 1,
        threads.lines().count() - 1,
        "{stacks}"
    );
    assert!(stacks.contains("manhole::builtins::run"), "{stacks}");
    assert!(
        stacks.contains("manhole/src/serve/session.rs:"),
        "file:line expected:\n{stacks}"
    );
}

#[test]
fn get_reads_atomics_locks_computed_values_and_other_crates() {
    let service = Service::start();
    let mut session = service.text();
    let requests: u64 = session
        .ask("get REQUESTS")
        .trim()
        .parse()
        .expect("a number");
    support::wait_until("requests to grow", || {
        session.ask("get REQUESTS").trim().parse::<u64>().unwrap() > requests
    });
    assert_eq!(
        session.ask("get CONFIG"),
        "{\"log_level\":\"info\",\"version\":1,\"workers\":2}\n"
    );
    assert!(session
        .ask("get queue_depth")
        .trim()
        .parse::<usize>()
        .is_ok());
    assert!(session
        .ask("get PLUGIN_EVENTS")
        .trim()
        .parse::<u64>()
        .is_ok());
    // A bare name reads an item too.
    assert!(session.ask("REQUESTS").trim().parse::<u64>().is_ok());
}

#[test]
fn call_parses_arguments_and_shows_the_value() {
    let service = Service::start();
    let mut session = service.text();
    assert_eq!(session.ask("call add 40 2"), "42\n");
    assert_eq!(session.ask("add -1 1"), "0\n");
    assert_eq!(session.ask("divide 1 4"), "0.25\n");
    assert_eq!(
        session.ask("call echo 'two words' \"and \\\"three\\\"\""),
        "[\"two words\",\"and \\\"three\\\"\"]\n"
    );
    assert_eq!(session.ask("echo one"), "[\"one\"]\n");
    assert_eq!(
        session.ask("call set_log_level debug"),
        "log level is now Debug\n"
    );
    assert!(session
        .ask("get CONFIG")
        .contains("\"log_level\":\"debug\""));
    assert_eq!(
        session.ask("reload_config"),
        "reloaded configuration, now version 2\n"
    );
    assert_eq!(
        session.ask("plugin_status").split(':').next(),
        Some("manhole-example-plugin 0.1.0")
    );
    // Empty lines just prompt again; `\r\n` endings work.
    assert_eq!(session.ask(""), "");
    assert_eq!(session.ask("add 1 1\r"), "2\n");
}

#[test]
fn errors_are_one_line_and_the_session_goes_on() {
    let service = Service::start();
    let mut session = service.text();
    for (line, expected) in [
        ("call nosuch", "error: unknown command `nosuch`; `list` shows what is registered"),
        (
            "reload_cofig",
            "error: unknown command `reload_cofig`; did you mean `reload_config`? `list` shows what is registered",
        ),
        ("add 1", "error: `add` takes 2 arguments, got 1; usage: call add A B"),
        ("add 1 2 3", "error: `add` takes 2 arguments, got 3; usage: call add A B"),
        ("echo", "error: `echo` takes 1 to 2 arguments, got 0; usage: call echo FIRST [SECOND]"),
        ("add 1 x", "error: argument `b` of `add` expects i64; got \"x\": invalid digit found in string"),
        (
            "set_log_level loud",
            "error: argument `level` of `set_log_level` expects LogLevel; got \"loud\": unknown level \"loud\"; expected error, warn, info or debug",
        ),
        ("divide 1 0", "error: `divide` returned an error: cannot divide 1 by zero"),
        ("panic", "error: `panic` panicked: panicked on purpose"),
        ("panic 'at the disco'", "error: `panic` panicked: at the disco"),
        ("get add", "error: `add` is a command, not an inspected item; use `call add`"),
        ("call REQUESTS", "error: `REQUESTS` is an inspected item, not a command; use `get REQUESTS`"),
        ("get nope", "error: unknown inspected item `nope`; `list` shows what is registered"),
        ("get A B", "error: usage: get [NAME]"),
        ("stak", "error: unknown command `stak`; did you mean `stacks`? `list` shows what is registered"),
        ("get requests", "error: unknown inspected item `requests`; did you mean `REQUESTS`? `list` shows what is registered"),
        ("call", "error: usage: call NAME [ARG...]"),
        ("list everything", "error: `list` takes no arguments"),
        ("echo 'open", "error: unbalanced ' quote; close it, or escape it with a backslash"),
    ] {
        assert_eq!(session.ask(line), format!("{expected}\n"), "for {line:?}");
    }
    assert!(session.ask("get").starts_with("inspected (get NAME):\n"));
    assert_eq!(session.ask("add 2 2"), "4\n", "the session goes on");
    let stderr = service.wait_for_stderr("panicked on purpose");
    assert!(
        stderr.contains("at the disco"),
        "the panic hook still reports:\n{stderr}"
    );
}

#[test]
fn a_held_lock_is_reported_and_a_stuck_command_blocks_only_its_session() {
    let service = Service::start();
    let mut slow = service.text();
    slow.send("reload_config 3000");
    let mut other = service.text();
    support::wait_until("the slow reload to take the lock", || {
        let reply = other.ask("get CONFIG");
        if reply.starts_with('{') {
            return false;
        }
        assert_eq!(
            reply,
            "error: reading `CONFIG`: the lock is held by another thread; gave up after 100 ms\n"
        );
        true
    });
    assert_eq!(other.ask("add 1 2"), "3\n");
    let mut third = service.text();
    assert_eq!(third.ask("add 2 3"), "5\n");
    assert_eq!(
        slow.until_prompt(),
        "reloaded configuration, now version 2\n"
    );
}

#[test]
fn quit_and_end_of_input_close_the_session() {
    let service = Service::start();
    for farewell in ["quit", "exit"] {
        let mut session = service.text();
        session.send(farewell);
        assert!(support::read_to_end(&mut session.stream).is_empty());
    }
    let mut session = service.text();
    session.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(support::read_to_end(&mut session.stream), b"");
}

#[test]
fn a_piped_client_gets_the_answer() {
    use std::io::Write;
    let service = Service::start();
    let mut session = support::connect(&service.socket);
    session.write_all(b"call add 40 2\nget CONFIG\n").unwrap();
    session.shutdown(std::net::Shutdown::Write).unwrap();
    let output = String::from_utf8(support::read_to_end(&mut session)).unwrap();
    assert!(
        output.ends_with(
            "manhole> 42\nmanhole> {\"log_level\":\"info\",\"version\":1,\"workers\":2}\nmanhole> "
        ),
        "{output}"
    );
}

/// The README's own example: `echo 'call add 40 2' | socat - UNIX-CONNECT:...`.
/// `scripts/test` installs socat.
#[test]
fn socat_works_as_documented() {
    use std::process::{Command, Stdio};
    let service = Service::start();
    // socat gives the server 0.5 s after its input ends. Wait until the
    // listener has loaded its symbol tables (which a debug build takes about
    // that long to do, and which a person typing never notices), as the
    // first session's greeting shows.
    drop(service.text());
    let socat = Command::new("socat")
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", service.socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut socat = socat.expect("socat is needed for this test; `scripts/test` installs it");
    {
        use std::io::Write;
        let mut stdin = socat.stdin.take().unwrap();
        stdin.write_all(b"call add 40 2\n").unwrap();
    }
    let deadline = std::time::Instant::now() + support::TIMEOUT;
    while socat.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = socat.kill();
            panic!("socat did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = socat.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("manhole 0.1.0"), "{text}");
    assert!(text.ends_with("manhole> 42\nmanhole> "), "{text}");
}

#[test]
fn collapse_shows_a_pool_of_alike_threads_once() {
    let service = Service::spawn_with_env("service", &[], &[("SERVICE_IDLE_THREADS", "20")], None);
    service.wait_for_socket();
    let mut json = service.json();
    let mut pool = Value::Null;
    support::wait_until("the 20 idle threads to park alike", || {
        let collapsed = json.result("stacks", json!({"collapse": true}));
        let groups = collapsed["threads"].as_array().unwrap();
        match groups.iter().find(|group| group["count"] == 20) {
            Some(group) => {
                pool = group.clone();
                true
            }
            None => false,
        }
    });
    let names = pool["names"].as_array().unwrap();
    assert_eq!(names.len(), 20, "{pool}");
    assert!(
        names
            .iter()
            .all(|name| name.as_str().unwrap().starts_with("idle-")),
        "{pool}"
    );
    assert_eq!(pool["tids"].as_array().unwrap().len(), 20);
    assert_eq!(pool["tid"], pool["tids"][0]);
    assert!(pool["frames"].to_string().contains("park"), "{pool}");

    // Without `collapse`, every thread is there, each on its own.
    let full = json.result("stacks", json!({}));
    let threads = full["threads"].as_array().unwrap();
    assert!(threads.len() >= 20 + 4, "{full}");
    assert!(threads.iter().all(|thread| thread.get("count").is_none()));

    // Each dump is taken anew: an idle thread caught another way (by the
    // signal rather than from /proc) may have other frames in one of them.
    let mut text = Text::connect(&service.socket);
    let mut shown = String::new();
    support::wait_until("the pool collapsed in text", || {
        shown = text.ask("stacks --collapse");
        shown.contains("20 threads (sleeping): ")
    });
    assert!(shown.contains(" \"idle-19\""), "{shown}");
    let every = text.ask("stacks");
    assert!(every.contains("\"idle-19\" (sleeping)"), "{every}");
    // The pool's frames are printed once instead of twenty times.
    let idle_frames = pool["frames"].as_array().unwrap().len();
    assert!(
        shown.lines().count() + 19 * idle_frames <= every.lines().count(),
        "{shown}\n----\n{every}"
    );
    assert!(text
        .ask("stacks --all")
        .starts_with("error: usage: stacks [--collapse]"),);

    // The text greeting collapses too; JSON's is complete unless asked.
    support::wait_until("the pool collapsed in the greeting", || {
        Text::connect_silent(&service.socket)
            .greeting()
            .contains("20 threads (sleeping): ")
    });
    let complete = json.result("greeting", json!({}));
    assert!(
        complete["text"]
            .as_str()
            .unwrap()
            .contains("\"idle-19\" (sleeping)"),
        "{complete}"
    );
    support::wait_until("the pool collapsed in the JSON greeting", || {
        let collapsed = json.result("greeting", json!({"collapse": true}));
        collapsed["text"]
            .as_str()
            .unwrap()
            .contains("20 threads (sleeping): ")
    });
}

#[test]
fn stacks_of_one_thread_or_a_name_and_shortened() {
    let service = Service::start();
    let mut session = Text::connect_silent(&service.socket);
    session.greeting();
    let headers = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with("thread "))
            .map(str::to_owned)
            .collect()
    };

    let workers = session.ask("stacks worker-");
    let names = headers(&workers);
    assert_eq!(names.len(), 2, "{workers}");
    assert!(
        names.iter().all(|line| line.contains("\"worker-")),
        "{workers}"
    );
    assert!(workers.contains("service::worker\n"), "{workers}");

    let main = session.ask(&format!("stacks {}", service.pid));
    let names = headers(&main);
    assert_eq!(names.len(), 1, "{main}");
    assert!(
        names[0].starts_with(&format!("thread {} \"service\"", service.pid)),
        "{main}"
    );

    let none = session.ask("stacks no-such-thread");
    assert!(
        none.starts_with("error: no thread's name starts with `no-such-thread`"),
        "{none}"
    );
    let none = session.ask("stacks 1");
    assert!(none.starts_with("error: no thread has tid 1;"), "{none}");

    // Shortened: the program's frames and the innermost stay; the runs of
    // std's frames go.
    let short = session.ask("stacks --short worker-0");
    assert!(short.contains("service::worker\n"), "{short}");
    assert!(short.contains(" runtime frames\n"), "{short}");
    assert!(!short.contains("std::thread::"), "{short}");
    let innermost = short
        .lines()
        .find(|line| line.trim_start().starts_with("0: "))
        .unwrap_or_default();
    assert!(innermost.contains("sleep"), "{short}");

    // The same over JSON, with each fold as {"folded": N}.
    let mut json = support::Json::connect(&service.socket);
    let dump = json.result("stacks", json!({"thread": "worker-", "short": true}));
    let threads = dump["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "{dump}");
    let frames = threads[0]["frames"].as_array().unwrap();
    assert!(
        frames
            .iter()
            .any(|frame| frame["folded"].as_u64() >= Some(2)),
        "{dump}"
    );
    assert!(
        frames
            .iter()
            .any(|frame| frame["function"] == "service::worker"),
        "{dump}"
    );
    let one = json.result("stacks", json!({"thread": service.pid}));
    assert_eq!(one["threads"].as_array().unwrap().len(), 1, "{one}");
}
