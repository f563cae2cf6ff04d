//! Broken and hostile clients against a real process with small limits:
//! after each, the process is alive, a new client gets a correct answer,
//! the session threads are back to their baseline, and the process's memory
//! has not grown by more than [`MEMORY_BOUND_KIB`].

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::{connect, threads_named, wait_until, Service, Text, PROMPT, TIMEOUT};

/// How much the host's resident memory may grow across a test.
const MEMORY_BOUND_KIB: u64 = 16 * 1024;

const LIMITS: &str = "max_sessions=4,idle_timeout=2s,write_timeout=1s,verbose=false";

fn start() -> Service {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", LIMITS)], None);
    service.wait_for_socket();
    // One full session first, so that one-time costs (symbolisation caches,
    // thread stacks) are in the baseline.
    assert_eq!(Text::connect(&service.socket).ask("add 1 1"), "2\n");
    wait_until("the warm-up session to end", || sessions(&service) == 0);
    service
}

fn sessions(service: &Service) -> usize {
    threads_named(service.pid, "manhole-session").len()
}

fn resident_kib(service: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.pid)).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in status")
}

/// The checks every test ends with.
fn assert_unharmed(service: &mut Service, memory_before: u64) {
    assert!(service.is_alive(), "the host died");
    wait_until("every session thread to end", || sessions(service) == 0);
    assert_eq!(Text::connect(&service.socket).ask("call add 40 2"), "42\n");
    let mut json = service.json();
    assert_eq!(
        json.result("call", serde_json::json!({"name": "add", "args": [40, 2]})),
        42
    );
    drop(json);
    wait_until("the checking sessions to end", || sessions(service) == 0);
    let grown = resident_kib(service).saturating_sub(memory_before);
    assert!(
        grown <= MEMORY_BOUND_KIB,
        "resident memory grew by {grown} KiB"
    );
}

/// Reads until end of input or `deadline`, returning what arrived.
fn read_until_closed(stream: &mut UnixStream, deadline: Duration) -> Vec<u8> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    while started.elapsed() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(err) => panic!("read failed: {err}"),
        }
    }
    panic!(
        "still open after {deadline:?}; got {:?}",
        String::from_utf8_lossy(&received)
    );
}

#[test]
fn five_hundred_clients_at_once_are_served_or_told_busy() {
    let mut service = start();
    let memory = resident_kib(&service);
    let clients: Vec<UnixStream> = (0..500).map(|_| connect(&service.socket)).collect();
    let (mut served, mut busy) = (Vec::new(), 0);
    for mut client in clients {
        let mut first = Vec::new();
        let mut buf = [0u8; 4096];
        // A served client gets the greeting, ending with the prompt; a busy
        // one gets one line and end of input.
        loop {
            let n = client.read(&mut buf).expect("an answer before the timeout");
            first.extend_from_slice(&buf[..n]);
            if n == 0 || first.ends_with(PROMPT.as_bytes()) {
                break;
            }
        }
        let text = String::from_utf8_lossy(&first).into_owned();
        if text.ends_with(PROMPT) {
            served.push(client);
        } else {
            assert_eq!(
                text,
                "error: busy: 4 sessions are open, the most this manhole allows (max_sessions); try again when one ends (reason: busy)\n"
            );
            busy += 1;
        }
    }
    assert_eq!((served.len(), busy), (4, 496));
    // The served sessions still work, and a place frees when one ends.
    for client in &mut served {
        client.write_all(b"add 2 2\n").unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 64];
        while !answer.ends_with(PROMPT.as_bytes()) {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        assert_eq!(answer, b"4\nmanhole> ");
    }
    drop(served);
    assert_unharmed(&mut service, memory);
}

#[test]
fn a_client_that_dribbles_is_closed_at_the_idle_timeout() {
    let mut service = start();
    let memory = resident_kib(&service);
    let mut dribbler = connect(&service.socket);
    let started = Instant::now();
    for byte in b"call add 1 1 and more bytes than the idle timeout allows".iter() {
        if dribbler.write_all(&[*byte]).is_err() {
            break;
        }
        // Others are served meanwhile.
        if *byte == b' ' {
            assert_eq!(Text::connect(&service.socket).ask("add 3 4"), "7\n");
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let received = read_until_closed(&mut dribbler, TIMEOUT);
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.ends_with("error: no complete line within 2 s (idle_timeout); closing the session\n"),
        "{text}"
    );
    assert_unharmed(&mut service, memory);
}

#[test]
fn a_silent_json_client_is_told_why_it_is_closed() {
    let mut service = start();
    let memory = resident_kib(&service);
    let mut client = connect(&service.socket);
    client.write_all(b"{\"jsonrpc\":\"2.0\"").unwrap();
    let received = read_until_closed(&mut client, TIMEOUT);
    let response: serde_json::Value = serde_json::from_slice(&received).unwrap();
    assert_eq!(response["error"]["code"], -32600);
    assert_eq!(response["id"], serde_json::Value::Null);
    assert_unharmed(&mut service, memory);
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_write_timeout() {
    let mut service = start();
    let memory = resident_kib(&service);
    let mut hog = connect(&service.socket);
    // Megabytes of answer that nobody reads.
    hog.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":{\"name\":\"load_report\",\"args\":[200000]}}\n")
        .unwrap();
    wait_until("the session to start", || sessions(&service) == 1);
    assert_eq!(Text::connect(&service.socket).ask("add 5 5"), "10\n");
    // The session gives up on the stuck write and ends, while the client
    // is still connected and still not reading.
    wait_until("the stuck session to end", || sessions(&service) == 0);
    // It ended on the stuck write, not at the end of a whole answer.
    let received = read_until_closed(&mut hog, TIMEOUT);
    assert!(received.len() > 64 * 1024, "{} bytes", received.len());
    assert!(
        !received.ends_with(b"}\n"),
        "the whole answer arrived, so no write was stuck"
    );
    assert_unharmed(&mut service, memory);
}

#[test]
fn clients_that_close_halfway_through_stacks_cost_nothing() {
    let mut service = start();
    let memory = resident_kib(&service);
    for round in 0..30 {
        let mut client = connect(&service.socket);
        client.write_all(b"stacks\nstacks\n").unwrap();
        let mut buf = vec![0u8; 100 + round * 50];
        let _ = client.read(&mut buf).unwrap();
        drop(client);
    }
    for _ in 0..10 {
        let mut client = connect(&service.socket);
        client
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stacks\"}\n")
            .unwrap();
        let mut buf = [0u8; 10];
        let _ = client.read(&mut buf).unwrap();
    }
    assert_unharmed(&mut service, memory);
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_in_either_protocol_gets_errors_and_nothing_else() {
    let mut service = start();
    let memory = resident_kib(&service);
    let mut random = XorShift(0x5eed_1234_abcd_0001);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for length in [1, 10, 100, 1000, 70_000] {
        inputs.push((0..length).map(|_| random.next() as u8).collect());
    }
    inputs.push(b"\0\0\0help\0\n\0\n".to_vec());
    inputs.push(b"get \xff\xfe\xfd\ncall add \xc3\x28 1\n".to_vec());
    inputs.push(b"{\0}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}\n".to_vec());
    let deep = |open: &str, close: &str, depth: usize| -> Vec<u8> {
        let mut line = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":{{\"name\":\"add\",\"args\":[{}{}]}}}}\n",
            open.repeat(depth),
            close.repeat(depth)
        );
        line.truncate(line.len().min(60_000));
        line.into_bytes()
    };
    inputs.push(deep("[", "]", 20_000));
    inputs.push(deep("{\"a\":", "}", 5_000));
    inputs.push(format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":{{\"name\":\"add\",\"args\":[\"{}\",1]}}}}\n", "9".repeat(60_000)).into_bytes());
    inputs.push(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"{}\",\"method\":\"list\"}}\n",
            "x".repeat(200_000)
        )
        .into_bytes(),
    );
    inputs.push(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\"}]\n".to_vec());
    inputs.push(
        "'unbalanced\n\"also\nset\nstats --sort\nwatch\n"
            .as_bytes()
            .to_vec(),
    );

    for input in &inputs {
        let mut client = connect(&service.socket);
        // Past the first byte, a session may close on the client (a line
        // over the limit is read to its end); a failed write is fine.
        let _ = client.write_all(input);
        let _ = client.write_all(b"\n");
        let _ = client.shutdown(std::net::Shutdown::Write);
        let received = read_until_closed(&mut client, TIMEOUT);
        let text = String::from_utf8_lossy(&received);
        if input.first() == Some(&b'{') {
            for line in text.lines() {
                let response: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("{line:?} is not JSON: {err}"));
                assert!(response.get("error").is_some(), "{line}");
            }
        } else {
            assert!(text.starts_with("manhole "), "{text}");
            assert!(!text.contains("panicked"), "{text}");
        }
    }
    assert_unharmed(&mut service, memory);
}

#[test]
fn a_json_client_past_the_limit_is_refused_in_json() {
    let mut service = start();
    let memory = resident_kib(&service);
    let served: Vec<Text> = (0..4).map(|_| Text::connect(&service.socket)).collect();
    let mut client = connect(&service.socket);
    client
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\"}\n")
        .unwrap();
    let answer = read_until_closed(&mut client, TIMEOUT);
    let response: serde_json::Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|err| panic!("{:?} is not JSON: {err}", String::from_utf8_lossy(&answer)));
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["id"], serde_json::Value::Null, "{response}");
    assert_eq!(response["error"]["code"], -32002, "{response}");
    assert_eq!(response["error"]["data"]["reason"], "busy", "{response}");
    drop(served);
    assert_unharmed(&mut service, memory);
}

/// How long one `stacks` takes on `service`, the quickest of three.
fn one_dump(service: &Service) -> Duration {
    let mut session = service.json();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            session.result("stacks", serde_json::json!({}));
            started.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn clients_that_leave_free_their_sessions_with_their_requests_unrun() {
    // Dumps of 300 threads, so that sixteen of them in a row take long.
    let limits = "max_sessions=16,idle_timeout=10s,verbose=false";
    let service = Service::spawn_with_env(
        "service",
        &[],
        &[("MANHOLE", limits), ("SERVICE_IDLE_THREADS", "300")],
        None,
    );
    service.wait_for_socket();
    let dump = one_dump(&service);
    wait_until("the timing session to end", || sessions(&service) == 0);
    // Each asks for three dumps and leaves. Served in turn, the dumps would
    // hold the last session for sixteen dumps; the sessions of clients
    // that left must end instead, whatever they had queued.
    let request = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stacks\"}\n".repeat(3);
    let clients: Vec<UnixStream> = (0..16)
        .map(|_| {
            let mut client = connect(&service.socket);
            client.write_all(request.as_bytes()).unwrap();
            client
        })
        .collect();
    wait_until("every session to start", || sessions(&service) == 16);
    drop(clients);
    let left = Instant::now();
    wait_until("the sessions of the departed clients to end", || {
        sessions(&service) == 0
    });
    let freed_after = left.elapsed();
    assert!(
        freed_after < dump * 4,
        "the sessions outlived their clients by {freed_after:?}; one dump takes {dump:?}"
    );
    let mut json = service.json();
    assert_eq!(
        json.result("call", serde_json::json!({"name": "add", "args": [40, 2]})),
        42
    );
}

/// The highest `VmRSS` of the service while `during` runs, read every 10 ms.
fn peak_kib_during<R>(service: &Service, during: impl FnOnce() -> R) -> (R, u64) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(resident_kib(service));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(resident_kib(service))
        });
        let returned = during();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (returned, reader.join().unwrap())
    })
}

#[test]
fn a_huge_reply_is_refused_whole_and_a_large_one_streams_without_being_held() {
    const MAX_REPLY: u64 = 8 * 1024 * 1024;
    let mut service = Service::spawn_with_env(
        "service",
        &[],
        &[("MANHOLE", &format!("max_reply_bytes={MAX_REPLY}"))],
        None,
    );
    service.wait_for_socket();
    // Over text, the refusal on a line of its own. (The text session's
    // greeting reads the symbol tables, which are then in the baseline.)
    let text = Text::connect(&service.socket).ask("lazy_report 2000000");
    assert!(
        text.starts_with("error: the reply is larger than max_reply_bytes (8388608 bytes"),
        "{text}"
    );
    wait_until("the text session to end", || sessions(&service) == 0);
    let baseline = resident_kib(&service);
    let call = |rows: u64| {
        let mut client = connect(&service.socket);
        client
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let request = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"call\",\"params\":{{\"name\":\"lazy_report\",\"args\":[{rows}]}}}}\n"
        );
        client.write_all(request.as_bytes()).unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 64 * 1024];
        while !line.ends_with(b"\n") {
            match client.read(&mut byte) {
                Ok(0) => break,
                Ok(read) => line.extend_from_slice(&byte[..read]),
                Err(err) => panic!("reading the reply: {err}"),
            }
        }
        line
    };
    // Two million rows, some 80 MB of JSON: measured, refused, not sent.
    let (refused, peak) = peak_kib_during(&service, || call(2_000_000));
    let refused: serde_json::Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(refused["id"], 7, "{refused}");
    assert_eq!(
        refused["error"]["data"]["reason"], "reply_too_large",
        "{refused}"
    );
    let limit_kib = MAX_REPLY / 1024;
    assert!(
        peak < baseline + limit_kib + 20 * 1024,
        "peak {peak} KiB against a baseline of {baseline} KiB"
    );
    // 150,000 rows, about 6 MB: sent whole, serialised as it goes out.
    let (sent, peak) = peak_kib_during(&service, || call(150_000));
    let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    let rows = sent["result"].as_array().expect("the rows");
    assert_eq!(rows.len(), 150_000);
    assert_eq!(rows[149_999]["name"], "row 149999");
    assert!(
        peak < baseline + limit_kib + 20 * 1024,
        "peak {peak} KiB against a baseline of {baseline} KiB"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = resident_kib(&service);
    assert!(
        after < baseline + 20 * 1024,
        "{after} KiB 2 s after, against a baseline of {baseline} KiB"
    );
    assert_unharmed(&mut service, baseline);
}

/// A client that reads a locked item's reply a little at a time, as the
/// review's attacker did (64 KiB every so often): the program's own code
/// still takes that lock at once, since the reply is copied and the guard
/// dropped before the first byte goes out; and the whole reply must be
/// taken within `write_timeout`, not each `send`, so the dribbling client
/// is cut off.
#[test]
fn a_slow_reader_of_a_locked_item_never_holds_the_programs_lock() {
    let service = Service::spawn_with_env(
        "crashy",
        &["big-lock"],
        &[("MANHOLE", "write_timeout=2s")],
        None,
    );
    service.wait_for_socket();
    service.wait_for_stdout("ready");
    let mut slow = connect(&service.socket);
    slow.write_all(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":{\"name\":\"BIG\",\"bare\":true}}\n",
    )
    .unwrap();
    let began = Instant::now();
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut closed = false;
    let mut reading = false;
    let longest_wait = || -> u64 {
        support::Json::connect(&service.socket)
            .result(
                "call",
                serde_json::json!({"name": "longest_wait_us", "args": []}),
            )
            .as_u64()
            .unwrap()
    };
    while began.elapsed() < Duration::from_secs(6) {
        match slow.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(read) => received += read,
            Err(err) => panic!("reading the reply: {err}"),
        }
        if !reading {
            reading = true;
            // The reply is on its way: from here on the lock must be free
            // (copying it under the lock, before, took what it took).
            longest_wait();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(received > 0, "no reply at all");
    assert!(
        closed,
        "a client that took {received} bytes in 6 s was not cut off at write_timeout=2s"
    );
    assert!(
        received < 4_000_000,
        "the whole reply arrived: {received} bytes"
    );
    let waited: u64 = support::Json::connect(&service.socket)
        .result(
            "call",
            serde_json::json!({"name": "longest_wait_us", "args": []}),
        )
        .as_u64()
        .unwrap();
    assert!(
        waited < 100_000,
        "the program waited {waited} µs for its own lock"
    );
}
