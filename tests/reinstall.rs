//! An uninstall followed by an install with other options takes all of
//! them: the settings live in the installed manhole, not in globals.
//!
//! This binary holds one test, so the process-wide manhole is its own.

mod support;

use serde_json::json;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;
use support::Json;

/// Held by a thread of the test while the manhole reads it.
#[manhole::inspect]
static HELD: Mutex<u32> = Mutex::new(7);

fn lock_error_after(path: &std::path::Path) -> String {
    let mut session = Json::connect(path);
    let error = session.error("get", json!({"name": "HELD"}));
    assert_eq!(error["data"]["reason"], "lock_timeout", "{error}");
    error["message"].as_str().unwrap().to_owned()
}

#[test]
fn a_reinstall_with_other_options_takes_them_all() {
    let held = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let holder = {
        let (held, release) = (Arc::clone(&held), Arc::clone(&release));
        std::thread::spawn(move || {
            let _guard = HELD.lock().unwrap();
            held.wait();
            release.wait();
        })
    };
    held.wait();

    let first_path = support::scratch("first");
    let first = manhole::Options::new()
        .socket_path(&first_path)
        .verbose(false)
        .lock_timeout(Duration::from_millis(30))
        .install()
        .expect("the first install");
    assert!(lock_error_after(&first_path).ends_with("gave up after 30 ms"));
    assert!(first.uninstall());
    assert!(!first_path.exists(), "uninstall removes the first socket");

    let second_path = support::scratch("second");
    let second = manhole::Options::new()
        .socket_path(&second_path)
        .verbose(false)
        .lock_timeout(Duration::from_millis(120))
        .max_line_length(100)
        .install()
        .expect("the second install");
    let message = lock_error_after(&second_path);
    assert!(message.ends_with("gave up after 120 ms"), "{message}");
    let mut session = Json::connect(&second_path);
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"get","params":{{"name":"{}"}}}}"#,
        "x".repeat(100)
    );
    let error = session.raw(long.as_bytes());
    assert_eq!(error["error"]["data"]["reason"], "too_long", "{error}");

    release.wait();
    holder.join().unwrap();
    assert_eq!(lock_error_after_release(&second_path), json!(7));
    assert!(second.uninstall());
    assert!(!second_path.exists());
}

fn lock_error_after_release(path: &std::path::Path) -> serde_json::Value {
    Json::connect(path).result("get", json!({"name": "HELD"}))
}
