//! `top` over a real socket: a spinning thread is hot, a sleeping one
//! cold, and other sessions are served while one waits.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::Service;

fn thread<'a>(top: &'a Value, name: &str) -> &'a Value {
    top["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|thread| thread["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name} in {top}"))
}

#[test]
fn top_finds_the_burning_thread_hot_and_the_sleeping_one_cold() {
    let service = Service::start();
    let mut session = service.json();
    session.result("set", json!({"name": "BURN", "value": true}));

    // Another session runs meanwhile: `top` holds only its own.
    let socket = service.socket.clone();
    let other = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let mut other = support::Json::connect(&socket);
        other.result("get", json!({"name": "REQUESTS"}));
        started.elapsed()
    });

    let started = Instant::now();
    let top = session.result("top", json!({"seconds": 1.5}));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(
        other.join().unwrap() < Duration::from_millis(1000),
        "a second session waited for `top`"
    );
    assert_eq!(top["seconds"], 1.5);
    let burner = thread(&top, "burner");
    assert!(burner["cpu_percent"].as_f64().unwrap() > 25.0, "{top}");
    assert_eq!(top["threads"][0]["name"], "burner", "hottest first: {top}");
    let listener = thread(&top, "manhole");
    assert!(listener["cpu_percent"].as_f64().unwrap() < 5.0, "{top}");
    assert_eq!(listener["state"], "sleeping");
    assert!(thread(&top, "worker-0")["cpu_percent"].as_f64().unwrap() < 10.0);
    let percents: Vec<f64> = top["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|thread| thread["cpu_percent"].as_f64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|pair| pair[0] >= pair[1]), "{top}");
    assert!(thread(&top, "burner")["tid"].as_u64().is_some());

    // Once it stops, it cools down. The burner spins in 50 ms turns and
    // the kernel counts CPU time in 10 ms ticks, so the turn under way when
    // BURN went false is let finish before measuring; a thread that naps
    // 20 ms at a time then shows a few percent at most, against the
    // spinning thread's 100.
    session.result("set", json!({"name": "BURN", "value": false}));
    std::thread::sleep(Duration::from_millis(200));
    let top = session.result("top", json!({"seconds": 1.0}));
    assert!(
        thread(&top, "burner")["cpu_percent"].as_f64().unwrap() < 10.0,
        "{top}"
    );

    let error = session.error("top", json!({"seconds": 120}));
    assert_eq!(error["data"]["reason"], "bad_params");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("from 0.1 to 60"),
        "{error}"
    );
}

#[test]
fn top_in_text_reads_like_top_h() {
    let service = Service::start();
    let mut session = service.text();
    let shown = session.ask("top 0.2");
    let mut lines = shown.lines();
    assert!(lines.next().unwrap().starts_with("Threads: "), "{shown}");
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TID", "S", "%CPU", "COMMAND"], "{shown}");
    assert!(shown.contains(" worker-0\n"), "{shown}");
    assert!(shown.contains(&format!("{}  ", service.pid)), "{shown}");
    assert_eq!(
        session.ask("top 0"),
        "error: `top` measures over a number of seconds from 0.1 to 60; got \"0\"\n"
    );
}
