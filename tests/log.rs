//! `log`: the tracing filter changed live and the recent events, end to
//! end against `examples/traced` (feature `tracing`); without the layer,
//! a clear error.

mod support;

use serde_json::Value;
use support::Service;

#[test]
fn without_the_layer_log_says_what_to_enable() {
    let service = Service::start();
    let mut session = service.json();
    let error = session.error("log", Value::Null);
    assert_eq!(error["code"], -32601, "{error}");
    assert_eq!(error["data"]["reason"], "not_enabled", "{error}");
    let message = error["message"].as_str().unwrap();
    if cfg!(feature = "tracing") {
        assert!(
            message.starts_with("no `manhole::tracing::layer()`"),
            "{message}"
        );
    } else {
        assert!(
            message.starts_with("`log` needs manhole's `tracing` feature"),
            "{message}"
        );
    }
    let text = service.text().ask("log follow");
    assert!(text.starts_with("error: "), "{text}");
}

#[cfg(feature = "tracing")]
mod traced {
    use super::*;
    use serde_json::json;
    use std::process::Command;
    use std::time::{Duration, Instant};
    use support::{example, wait_until, Json, TIMEOUT};

    fn start(rust_log: Option<&str>) -> Service {
        let mut command = Command::new(example("traced"));
        command.env_remove("MANHOLE").env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let service = Service::spawn_command(command, None);
        service.wait_for_socket();
        service
    }

    fn emit(session: &mut Json, level: &str, message: &str, n: u64) {
        session.result("call", json!({"name": "emit", "args": [level, message, n]}));
    }

    /// A `log` status without `newest`, the number of the newest event,
    /// which the manhole's own messages move.
    fn without_newest(mut status: Value) -> Value {
        let newest = status.as_object_mut().unwrap().remove("newest");
        assert!(newest.is_some_and(|newest| newest.is_u64()));
        status
    }

    fn messages(session: &mut Json) -> Vec<String> {
        let tail = session.result("log", json!({"tail": 1000}));
        tail["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["message"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The flight recorder keeps the log's warnings and errors among its
    /// events, within a second of their coming; the rest it leaves out.
    #[test]
    fn history_keeps_warnings_and_errors() {
        let service = start(None);
        let mut session = Json::connect(&service.socket);
        emit(&mut session, "warn", "disk nearly full", 1);
        emit(&mut session, "info", "all is well", 2);
        emit(&mut session, "error", "disk full", 3);
        let mut logged: Vec<String> = Vec::new();
        wait_until("the recorder's next point", || {
            let reading = session.result("history", json!({"since": "1m"}));
            logged = reading["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|event| event["kind"] == "log")
                .map(|event| event["what"].as_str().unwrap().to_owned())
                .filter(|what| what.contains(" traced::command: "))
                .collect();
            logged.len() >= 2
        });
        assert_eq!(
            logged,
            [
                "WARN traced::command: disk nearly full",
                "ERROR traced::command: disk full"
            ]
        );
    }

    #[test]
    fn the_filter_starts_from_rust_log_and_events_are_kept() {
        let service = start(Some("warn,traced::command=debug,manhole=info"));
        let mut session = service.json();
        let status = without_newest(session.result("log", Value::Null));
        let filter = "warn,traced::command=debug,manhole=info";
        assert_eq!(
            status,
            json!({"filter": filter, "default": filter, "reverts_in_s": null})
        );
        emit(&mut session, "debug", "seen at debug", 7);
        emit(&mut session, "trace", "not seen at trace", 8);
        let tail = session.result("log", json!({"tail": 1000}));
        let events = tail["events"].as_array().unwrap();
        let event = events
            .iter()
            .find(|event| event["message"] == "seen at debug")
            .unwrap_or_else(|| panic!("{tail}"));
        assert_eq!(event["level"], "DEBUG");
        assert_eq!(event["target"], "traced::command");
        assert_eq!(event["fields"], json!({"n": 7}));
        let time = event["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && time.contains('T') && time.len() == 27,
            "{time}"
        );
        assert!(!events
            .iter()
            .any(|event| event["message"] == "not seen at trace"));
        // The worker logs at debug and info, which `warn` turns away.
        assert!(!events
            .iter()
            .any(|event| event["target"] == "traced::worker"));
        // The manhole's own messages are tracing events under `manhole`.
        assert!(
            events.iter().any(|event| event["target"] == "manhole"
                && event["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("listening on ")),
            "{tail}"
        );
        // Oldest first, and `tail N` is the last N.
        let last_two = session.result("log", json!({"tail": 2}));
        assert_eq!(last_two["events"].as_array().unwrap().len(), 2);
        assert_eq!(last_two["events"][1], *events.last().unwrap());
    }

    #[test]
    fn set_reverts_by_itself_resets_and_refuses_a_bad_filter() {
        let service = start(None);
        let mut session = service.json();
        assert_eq!(
            without_newest(session.result("log", Value::Null)),
            json!({"filter": "info", "default": "info", "reverts_in_s": null})
        );
        emit(&mut session, "debug", "hidden at info", 1);
        assert!(!messages(&mut session).contains(&"hidden at info".to_owned()));

        let set = session.result("log", json!({"set": "debug"}));
        assert_eq!(set["filter"], "debug");
        assert_eq!(set["previous"], "info");
        assert_eq!(set["reverts_in_s"], Value::Null);
        emit(&mut session, "debug", "shown at debug", 2);
        assert!(messages(&mut session).contains(&"shown at debug".to_owned()));
        // The worker's debug events now pass too: the callsites were asked
        // again.
        wait_until("a worker event at debug", || {
            let tail = session.result("log", json!({"tail": 1000}));
            tail["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|event| event["target"] == "traced::worker" && event["level"] == "DEBUG")
        });

        let error = session.error("log", json!({"set": "info,traced=loud"}));
        assert_eq!(error["code"], -32602, "{error}");
        assert_eq!(error["data"]["reason"], "bad_argument", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid filter `info,traced=loud`: ")
                && message.ends_with("; the filter in force stays"),
            "{message}"
        );
        assert_eq!(session.result("log", Value::Null)["filter"], "debug");

        let timed = session.result("log", json!({"set": "error", "for_s": 1.5}));
        let reverts = timed["reverts_in_s"].as_f64().unwrap();
        assert!((1.0..=1.5).contains(&reverts), "{timed}");
        assert_eq!(timed["reverts_to"], "debug");
        assert!(timed["reverts_at"].as_str().unwrap().ends_with('Z'));
        emit(&mut session, "warn", "hidden at error", 3);
        assert!(!messages(&mut session).contains(&"hidden at error".to_owned()));
        let started = Instant::now();
        wait_until("the timed filter to revert", || {
            session.result("log", Value::Null)["filter"] == "debug"
        });
        assert!(started.elapsed() < TIMEOUT);
        assert_eq!(
            session.result("log", Value::Null)["reverts_in_s"],
            Value::Null
        );
        emit(&mut session, "debug", "shown again", 4);
        assert!(messages(&mut session).contains(&"shown again".to_owned()));

        // A newer change supersedes a pending revert.
        session.result("log", json!({"set": "warn", "for_s": 1}));
        session.result("log", json!({"set": "trace"}));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(session.result("log", Value::Null)["filter"], "trace");

        let reset = session.result("log", json!({"reset": true}));
        assert_eq!(reset["filter"], "info");
        assert_eq!(reset["previous"], "trace");
        emit(&mut session, "debug", "hidden after reset", 5);
        assert!(!messages(&mut session).contains(&"hidden after reset".to_owned()));
    }

    #[test]
    fn text_shows_sets_tails_and_follows() {
        let service = start(None);
        let mut text = service.text();
        assert_eq!(text.ask("log"), "filter `info`, the default\n");
        let set = text.ask("log set 'info,traced::command=trace' --for 10m");
        assert!(
            set.starts_with(
                "filter `info,traced::command=trace` (was `info`); reverts to `info` in 9m59s (at "
            ) || set.starts_with(
                "filter `info,traced::command=trace` (was `info`); reverts to `info` in 10m00s (at "
            ),
            "{set}"
        );
        assert!(set.ends_with("Z); the default is `info`\n"), "{set}");

        let mut session = service.json();
        emit(&mut session, "trace", "one line", 1);
        let tail = text.ask("log tail 1");
        assert!(
            tail.ends_with(" TRACE traced::command: one line n=1\n"),
            "{tail}"
        );
        assert_eq!(tail.lines().count(), 1);

        text.send("log follow");
        let deadline = Instant::now() + TIMEOUT;
        while !text.peek_pending().contains("send a line to stop\n") {
            assert!(Instant::now() < deadline, "no heading");
        }
        emit(&mut session, "info", "followed", 2);
        while !text
            .peek_pending()
            .contains("traced::command: followed n=2\n")
        {
            assert!(
                Instant::now() < deadline,
                "not followed: {}",
                text.peek_pending()
            );
        }
        text.send("");
        // The line stops it and the prompt comes back.
        let rest = text.until_prompt();
        assert!(
            rest.starts_with("following events that pass the filter `info,traced::command=trace`"),
            "{rest}"
        );
        assert_eq!(
            text.ask("log reset"),
            "filter `info` (was `info,traced::command=trace`), the default\n"
        );

        assert_eq!(
            session.error("text", json!({"line": "log follow"}))["data"]["reason"],
            "text_only"
        );
        assert!(text
            .ask("log set 'info,x=loud'")
            .starts_with("error: invalid filter `info,x=loud`: "));
    }

    #[test]
    fn manhole_cli_follows_the_log_until_a_line() {
        let cli = example("traced")
            .parent()
            .and_then(|examples| examples.parent())
            .map(|debug| debug.join("manhole-cli"))
            .unwrap();
        assert!(cli.exists(), "{} is missing", cli.display());
        let service = start(Some("info"));
        let mut session = service.json();
        emit(&mut session, "info", "before", 1);
        let mut follower = support::ChildGuard(
            Command::new(&cli)
                .args([service.pid.to_string().as_str(), "log", "follow"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = support::collect(follower.0.stdout.take().unwrap());
        let shown = || stdout.lock().unwrap().clone();
        wait_until("the heading", || {
            shown()
                .starts_with("following events that pass the filter `info`; send a line to stop\n")
        });
        emit(&mut session, "info", "followed", 2);
        emit(&mut session, "debug", "filtered out", 3);
        emit(&mut session, "warn", "then this", 4);
        wait_until("the events", || {
            shown().contains("traced::command: then this n=4\n")
        });
        let lines = shown();
        assert!(
            lines.contains("  INFO traced::command: followed n=2\n"),
            "{lines}"
        );
        assert!(!lines.contains("filtered out"), "{lines}");
        // Only events after the start are followed, each once, in order.
        assert!(!lines.contains("before"), "{lines}");
        assert_eq!(lines.matches("followed n=2").count(), 1, "{lines}");
        assert!(
            lines.find("followed n=2") < lines.find("then this n=4"),
            "{lines}"
        );

        // A line on stdin stops it.
        use std::io::Write as _;
        follower.0.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = follower.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still following: {}", shown());
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{status:?}");

        // JSON clients follow from `newest` with `after`.
        let newest = session.result("log", json!({}))["newest"].as_u64().unwrap();
        emit(&mut session, "info", "after newest", 5);
        let after = session.result("log", json!({"after": newest}));
        let events = after["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{after}");
        assert_eq!(events[0]["message"], "after newest");
        assert_eq!(events[0]["seq"].as_u64(), Some(newest + 1));
        assert_eq!(after["newest"].as_u64(), Some(newest + 1));
        let error = session.error("log", json!({"after": "soon"}));
        assert_eq!(error["data"]["reason"], "bad_params", "{error}");
        let error = session.error("log", json!({"after": 1, "tail": 2}));
        assert_eq!(error["data"]["reason"], "bad_params", "{error}");
    }
}
