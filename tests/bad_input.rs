//! Bad input never kills the process nor leaves the listener unable to
//! serve the next client.

mod support;

use serde_json::json;
use std::io::{Read, Write};
use support::{Service, Text};

/// The process is alive and a fresh client gets a correct answer.
fn still_serving(service: &mut Service) {
    assert!(service.is_alive(), "the service died");
    assert_eq!(service.text().ask("add 20 22"), "42\n");
}

#[test]
fn invalid_utf8_is_an_error_line() {
    let mut service = Service::start();
    let mut session = service.text();
    session.stream.write_all(b"call echo \xff\xfe\n").unwrap();
    assert_eq!(
        session.until_prompt(),
        "error: the line is not valid UTF-8\n"
    );
    assert_eq!(session.ask("echo ok"), "[\"ok\"]\n");
    let mut json = service.json();
    let response = json.raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}");
    assert_eq!(response["error"]["code"], -32700, "{response}");
    still_serving(&mut service);
}

#[test]
fn a_line_over_the_limit_is_refused_and_the_session_goes_on() {
    let mut service = Service::start();
    let huge = vec![b'a'; 1024 * 1024];
    let mut session = service.text();
    session.stream.write_all(&huge).unwrap();
    session.stream.write_all(b"\n").unwrap();
    assert_eq!(
        session.until_prompt(),
        "error: the line is longer than 65536 bytes and was ignored\n"
    );
    assert_eq!(session.ask("add 1 2"), "3\n");

    let mut json = service.json();
    let mut line =
        br#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"echo","args":[""#.to_vec();
    line.extend_from_slice(&huge);
    line.extend_from_slice(br#""]}}"#);
    let response = json.raw(&line);
    assert_eq!(response["error"]["code"], -32600, "{response}");
    assert_eq!(
        response["error"]["message"],
        "the request line is longer than 65536 bytes and was ignored"
    );
    assert_eq!(
        json.result("call", json!({"name": "add", "args": [1, 2]})),
        3
    );
    still_serving(&mut service);
}

#[test]
fn binary_garbage_and_nul_bytes_get_errors() {
    let mut service = Service::start();
    let mut session = service.text();
    session.stream.write_all(b"\0\0\0 add\0 1\n").unwrap();
    assert!(session.until_prompt().starts_with("error: unknown command"));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    session.stream.write_all(&garbage).unwrap();
    session.stream.write_all(b"\nadd 1 1\n").unwrap();
    // Whatever the garbage lines said, the last reply answers `add 1 1`.
    session.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let rest = String::from_utf8(support::read_to_end(&mut session.stream)).unwrap();
    assert!(rest.ends_with("manhole> 2\nmanhole> "), "{rest}");

    let mut json = service.json();
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"call","params":{{"name":"echo","args":{}{}}}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let response = json.raw(nested.as_bytes());
    assert_eq!(
        response["error"]["code"], -32700,
        "deep nesting is a parse error, not a stack overflow"
    );
    still_serving(&mut service);
}

#[test]
fn a_client_that_leaves_mid_answer_harms_nothing() {
    let mut service = Service::start();
    for _ in 0..3 {
        let mut session = service.text();
        session.send("load_report 200000");
        let mut some = [0u8; 1024];
        let n = session.stream.read(&mut some).unwrap();
        assert!(n > 0);
        drop(session);
    }
    let mut json = service.json();
    json.send_raw(br#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"load_report","args":[200000]}}"#);
    drop(json);
    // A client that connects and leaves before the greeting.
    drop(support::connect(&service.socket));
    still_serving(&mut service);
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", service.pid))
            .unwrap()
            .filter(|task| {
                let comm = task.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "manhole-session")
            })
            .count()
    };
    support::wait_until("the abandoned sessions to end", || threads() == 0);
}

#[test]
fn as_many_sessions_as_the_limit_are_all_served_at_once() {
    let mut service = Service::start();
    let mut sessions: Vec<Text> = (0..manhole::DEFAULT_MAX_SESSIONS)
        .map(|_| service.text())
        .collect();
    for (i, session) in sessions.iter_mut().enumerate() {
        assert_eq!(session.ask(&format!("add {i} 1")), format!("{}\n", i + 1));
    }
    drop(sessions);
    // Each session ends when its thread sees its client gone, a moment
    // after: until then a 17th client would be one too many.
    support::wait_until("the sessions to end", || {
        support::threads_named(service.pid, "manhole-session").is_empty()
    });
    still_serving(&mut service);
}
