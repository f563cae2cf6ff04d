//! The JSON-RPC protocol, end to end against `examples/service`.

mod support;

use serde_json::{json, Value};
use support::Service;

#[test]
fn a_json_session_has_no_greeting_and_echoes_ids() {
    let service = Service::start();
    let mut session = service.json();
    let response = session.raw(
        br#"{"jsonrpc":"2.0","id":"abc","method":"call","params":{"name":"add","args":[40,2]}}"#,
    );
    assert_eq!(
        response,
        json!({"jsonrpc": "2.0", "id": "abc", "result": 42})
    );
    let response = session.raw(
        br#"{"jsonrpc":"2.0","id":null,"method":"call","params":{"name":"add","args":["1","2"]}}"#,
    );
    assert_eq!(response, json!({"jsonrpc": "2.0", "id": null, "result": 3}));
    // A notification (no id) is run but not answered: the next response
    // belongs to the next request.
    session.send_raw(
        br#"{"jsonrpc":"2.0","method":"call","params":{"name":"set_log_level","args":["warn"]}}"#,
    );
    assert_eq!(
        session.result("get", json!({"name": "CONFIG"}))["log_level"],
        "warn"
    );
}

#[test]
fn help_and_list_describe_everything() {
    let service = Service::start();
    let mut session = service.json();
    let list = session.result("list", json!({}));
    let add = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "add")
        .expect("add listed");
    assert_eq!(add["signature"], "add(a: i64, b: i64) -> i64");
    assert_eq!(add["usage"], "call add A B");
    assert_eq!(add["doc"], "Add two numbers.");
    assert_eq!(add["returns"], "i64");
    assert_eq!(
        add["params"],
        json!([
            {"name": "a", "type": "i64", "optional": false},
            {"name": "b", "type": "i64", "optional": false},
        ])
    );
    assert_eq!(add["module"], "service");
    assert_eq!(add["file"], "examples/service.rs");
    let inspected = list["inspected"].as_array().unwrap();
    let config = inspected.iter().find(|i| i["name"] == "CONFIG").unwrap();
    assert_eq!(
        (config["kind"].as_str(), config["type"].as_str()),
        (Some("static"), Some("Mutex<Config>"))
    );
    assert_eq!(config["writable"], true);
    let handler = inspected
        .iter()
        .find(|i| i["name"] == "handle_request")
        .unwrap();
    assert_eq!(
        (handler["kind"].as_str(), handler["signature"].as_str()),
        (
            Some("calls"),
            Some("handle_request(id: u64) -> Result<u64, String>")
        )
    );
    let depth = inspected
        .iter()
        .find(|i| i["name"] == "queue_depth")
        .unwrap();
    assert_eq!(
        (depth["kind"].as_str(), depth["type"].as_str()),
        (Some("computed"), Some("usize"))
    );
    assert!(inspected
        .iter()
        .any(|i| i["name"] == "PLUGIN_EVENTS" && i["module"] == "manhole_example_plugin"));

    let help = session.result("help", Value::Null);
    assert_eq!(help["commands"], list["commands"]);
    assert_eq!(help["inspected"], list["inspected"]);
    let builtins: Vec<&str> = help["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        builtins,
        [
            "help", "list", "stacks", "threads", "panics", "watchdog", "stalls", "history", "info",
            "top", "mem", "runtime", "tasks", "profile", "get", "set", "stats", "log", "watch",
            "call", "quit"
        ]
    );
    assert_eq!(session.result("help", json!({"name": "add"})), *add);
}

#[test]
fn threads_and_stacks_are_structured() {
    let service = Service::start();
    let mut session = service.json();
    let threads = session.result("threads", json!({}));
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads[0]["tid"], service.pid);
    assert_eq!(threads[0]["name"], "service");
    assert!(threads
        .iter()
        .any(|t| t["name"] == "worker-1" && t["state"].is_string()));

    let stacks = session.result("stacks", json!({}));
    let stacks = stacks["threads"].as_array().unwrap();
    let session_thread = stacks
        .iter()
        .find(|t| {
            t["name"] == "manhole-session" && t["frames"].as_array().is_some_and(|f| !f.is_empty())
        })
        .expect("the serving thread has frames");
    let frame = &session_thread["frames"][0];
    assert!(
        frame["function"].as_str().unwrap().starts_with("manhole::"),
        "{frame}"
    );
    assert!(
        frame["address"].as_str().unwrap().starts_with("0x"),
        "{frame}"
    );
    assert!(
        frame["line"].is_u64() && frame["file"].is_string(),
        "{frame}"
    );
    let worker = stacks.iter().find(|t| t["name"] == "worker-0").unwrap();
    assert!(worker.get("frames_missing").is_none(), "{worker}");
    let functions: Vec<&str> = worker["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|frame| frame["function"].as_str())
        .collect();
    assert!(functions.contains(&"service::worker"), "{functions:?}");
    assert!(
        functions
            .iter()
            .any(|f| f.starts_with("std::") && f.ends_with("::sleep")),
        "{functions:?}"
    );
}

#[test]
fn get_and_call_return_serde_values() {
    let service = Service::start();
    let mut session = service.json();
    assert!(session.result("get", json!({"name": "REQUESTS"})).is_u64());
    assert_eq!(
        session.result("get", json!({"name": "CONFIG"})),
        json!({"version": 1, "log_level": "info", "workers": 2})
    );
    assert!(session
        .result("get", json!({"name": "queue_depth"}))
        .is_u64());
    assert_eq!(
        session.result("call", json!({"name": "echo", "args": ["a b", null]})),
        json!(["a b"])
    );
    assert_eq!(
        session.result("call", json!({"name": "echo", "args": [true, 3.5]})),
        json!(["true", "3.5"])
    );
    assert_eq!(
        session.result("call", json!({"name": "shutdown"})),
        "stopping"
    );
}

/// Checks the code and message, and that `data.reason` is one the wire
/// contract knows and belongs to that code.
fn assert_error(error: &Value, code: i64, message: &str) {
    assert_eq!(error["code"], code, "{error}");
    assert_eq!(error["message"], message, "{error}");
    let reason = error["data"]["reason"]
        .as_str()
        .and_then(manhole_wire::Reason::from_name)
        .unwrap_or_else(|| panic!("no known data.reason in {error}"));
    assert_eq!(i64::from(reason.code()), code, "{error}");
}

#[test]
fn errors_use_json_rpc_codes() {
    let service = Service::start();
    let mut session = service.json();
    let error = session.error("call", json!({"name": "add", "args": [1, "x"]}));
    assert_error(
        &error,
        -32602,
        "argument `b` of `add` expects i64; got \"x\": invalid digit found in string",
    );
    assert_eq!(
        error["data"],
        json!({"reason": "bad_argument", "argument": "b", "index": 1, "expected": "i64", "got": "x"})
    );
    let error = session.error("call", json!({"name": "add", "args": [1]}));
    assert_error(
        &error,
        -32602,
        "`add` takes 2 arguments, got 1; usage: call add A B",
    );
    assert_error(
        &session.error("call", json!({"name": "add", "args": [1, null]})),
        -32602,
        "argument `b` of `add` expects i64; it is required (`null` only leaves out an `Option` parameter)",
    );
    assert_error(
        &session.error("call", json!({"name": "nosuch"})),
        -32601,
        "unknown command `nosuch`; `list` shows what is registered",
    );
    assert_error(
        &session.error("get", json!({"name": "add"})),
        -32601,
        "`add` is a command, not an inspected item; use `call add`",
    );
    let methods: Vec<String> = manhole_wire::Builtin::json_methods()
        .map(|method| format!("`{}`", method.name()))
        .collect();
    assert!(methods.starts_with(&[
        "`help`".to_owned(),
        "`list`".to_owned(),
        "`stacks`".to_owned(),
        "`threads`".to_owned()
    ]));
    assert_error(
        &session.error("frobnicate", json!({})),
        -32601,
        &format!(
            "unknown method `frobnicate`; expected one of: {}",
            methods.join(", ")
        ),
    );
    // `get` with no name lists what there is to get, as `list` does.
    let inspectable = session.result("get", json!({}));
    assert_eq!(
        inspectable["inspected"],
        session.result("list", json!({}))["inspected"]
    );
    assert_error(
        &session.error("get", json!({"name": 5})),
        -32602,
        "`name` must be a string",
    );
    assert_error(
        &session.error("list", json!({"name": "x"})),
        -32602,
        "unknown param `name`; `list` takes no params",
    );
    assert_error(
        &session.error("call", json!({"name": "add", "args": {"a": 1}})),
        -32602,
        "`args` must be an array, such as [40, 2]",
    );
    assert_error(
        &session.error("call", json!({"name": "divide", "args": [1, 0]})),
        -32000,
        "`divide` returned an error: cannot divide 1 by zero",
    );
    assert_error(
        &session.error("call", json!({"name": "panic", "args": ["kaboom"]})),
        -32001,
        "`panic` panicked: kaboom",
    );

    let response = session.raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,");
    assert_eq!(
        (response["id"].clone(), response["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    let response = session.raw(br#"[{"jsonrpc":"2.0","id":1,"method":"list"}]"#);
    assert_eq!(
        response["error"]["message"],
        "a request is one JSON object per line; batches are not supported"
    );
    let response = session.raw(br#"{"jsonrpc":"2.0","id":9,"method":"list","params":[1]}"#);
    assert_eq!(
        (response["id"].clone(), response["error"]["code"].clone()),
        (json!(9), json!(-32602))
    );
    let response = session.raw(br#"{"id":4,"method":"list"}"#);
    assert_eq!(
        (response["id"].clone(), response["error"]["code"].clone()),
        (json!(4), json!(-32600))
    );
    let response = session.raw(br#"{"jsonrpc":"2.0","id":[1],"method":"list"}"#);
    assert_eq!(
        response["error"]["message"],
        "`id` must be a string, a number or null"
    );
    assert_eq!(
        session.result("call", json!({"name": "add", "args": [2, 2]})),
        4,
        "the session goes on"
    );
}

#[test]
fn a_held_lock_is_error_32002() {
    let service = Service::start();
    let mut slow = service.json();
    slow.send_raw(br#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"reload_config","args":[3000]}}"#);
    let mut session = service.json();
    support::wait_until("the slow reload to take the lock", || {
        let response = session.request("get", json!({"name": "CONFIG"}));
        response.get("error").is_some_and(|error| {
            assert_error(
                error,
                -32002,
                "reading `CONFIG`: the lock is held by another thread; gave up after 100 ms",
            );
            true
        })
    });
    assert_eq!(
        slow.read_response()["result"],
        "reloaded configuration, now version 2"
    );
}

#[test]
fn text_lines_over_json_answer_as_a_text_session_does() {
    let service = Service::start();
    let mut text = service.text();
    let mut session = service.json();
    for line in ["list", "help add", "call add 40 2", "get CONFIG", ""] {
        let over_json = session.result("text", json!({"line": line}));
        assert_eq!(over_json["text"], text.ask(line), "{line:?}");
    }
    let error = session.error("text", json!({"line": "add 1 x"}));
    assert_eq!(error["code"], -32602);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("argument `b` of `add` expects i64"));
    let error = session.error("text", json!({"line": "call 'unbalanced"}));
    assert_eq!(error["code"], -32700, "{error}");
    let error = session.error("text", json!({}));
    assert_eq!(error["message"], "`text` needs the param `line`");

    let greeting = session.result("greeting", json!({}));
    assert_eq!(greeting["pid"], service.pid);
    let banner = format!(
        "manhole {}, pid {}, ",
        greeting["version"].as_str().unwrap(),
        service.pid
    );
    assert!(greeting["text"].as_str().unwrap().starts_with(&banner));
    assert!(greeting["text"]
        .as_str()
        .unwrap()
        .ends_with("type `help` for commands, `quit` to leave\n"));
}

#[test]
fn runtime_in_a_service_without_tokio_says_what_is_missing() {
    let service = Service::start();
    let mut session = service.json();
    let error = session.error("runtime", json!({}));
    // The plain service runs no tokio runtime: without manhole's `tokio`
    // feature that is the missing feature; with it, the missing runtime.
    if cfg!(feature = "tokio") {
        assert_eq!(error["data"]["reason"], "no_runtime", "{error}");
    } else {
        assert_eq!(error["data"]["reason"], "not_enabled", "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("`tokio` feature"),
            "{error}"
        );
    }
    let mut text = service.text();
    assert!(text.ask("runtime").starts_with("error: "));
}
