//! `profile` against a real process (`examples/profiled`): a known 70/30
//! CPU split, each format, one profile at a time, clients that leave,
//! threads that come and go or block the signal, `fork` and `uninstall`
//! mid-profile, and every bad param.

mod support;

use serde_json::json;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{wait_until, Json, Service};

fn profiled(args: &[&str]) -> Service {
    let service = Service::spawn("profiled", args, None);
    service.wait_for_socket();
    service
}

/// Ticks per root frame (the thread's name, with `per_thread`) of folded
/// stacks.
fn by_root(folded: &str) -> std::collections::BTreeMap<String, u64> {
    let mut roots = std::collections::BTreeMap::new();
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').expect("`stack COUNT`");
        let root = stack.split(';').next().unwrap().to_owned();
        *roots.entry(root).or_default() += count.parse::<u64>().expect("a count");
    }
    roots
}

/// Ticks of the folded stacks that pass through `function`.
fn through(folded: &str, function: &str) -> u64 {
    folded
        .lines()
        .filter(|line| line.split(';').any(|frame| frame.starts_with(function)))
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

/// Whether the process says a profile is running.
fn profiling(session: &mut Json) -> bool {
    session.result("info", json!({}))["profiling"] == true
}

/// One test at a time: each keeps CPUs busy, and measures their use.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// POSIX timers the process holds, where the kernel lists them.
fn timers(pid: u32) -> Option<usize> {
    let listed = std::fs::read_to_string(format!("/proc/{pid}/timers")).ok()?;
    Some(
        listed
            .lines()
            .filter(|line| line.starts_with("ID:"))
            .count(),
    )
}

#[test]
fn the_known_split_is_attributed_within_four_points() {
    let _serial = serial();
    let service = profiled(&["--busy", "2"]);
    let mut session = service.json();
    let profile = session.result("profile", json!({"seconds": 4, "hz": 250}));
    assert_eq!(profile["mode"], "cpu");
    assert_eq!(profile["format"], "folded", "folded is JSON's default");
    assert_eq!(profile["seconds"], 4.0);
    assert_eq!(profile["hz"], 250);
    let folded = profile["data"].as_str().unwrap();
    let samples = profile["samples"].as_u64().unwrap();
    let counted: u64 = by_root(folded).values().sum();
    assert_eq!(counted, samples, "{profile}");
    let seventy = through(folded, "profiled::split::seventy");
    let thirty = through(folded, "profiled::split::thirty");
    assert!(
        seventy + thirty > 800,
        "too few samples to judge: {profile}"
    );
    // The bench holds it to ±3 points in an optimised build, on a quiet
    // machine; a test leaves room for a loaded one (±4 is four standard
    // deviations of 800 samples).
    let share = seventy as f64 * 100.0 / (seventy + thirty) as f64;
    assert!(
        (66.0..=74.0).contains(&share),
        "seventy has {share:.1}% of the busy samples, not 70 ± 4"
    );
    // Root first: the thread's entry, then `busy`, then the two halves.
    assert!(
        folded
            .lines()
            .any(|line| line.contains("profiled::busy;profiled::split::seventy")),
        "{folded}"
    );
    assert_eq!(timers(service.pid).unwrap_or(0), 0, "timers left behind");
}

#[test]
fn each_format_is_what_its_readers_expect() {
    let _serial = serial();
    let service = profiled(&["--busy", "1"]);
    let mut session = service.json();

    let top = session.result("profile", json!({"seconds": 1, "format": "top"}));
    let table = top["data"].as_str().unwrap();
    assert!(table.starts_with("cpu profile of pid"), "{table}");
    assert!(table.contains("SELF%  TOTAL%"), "{table}");
    assert!(table.contains("profiled::split::crunch"), "{table}");

    let svg = session.result("profile", json!({"seconds": 1, "format": "svg"}));
    let svg = svg["data"].as_str().unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<title>profiled::split::seventy"), "{svg}");

    let pprof = session.result(
        "profile",
        json!({"seconds": 1, "format": "pprof", "mode": "wall"}),
    );
    assert_eq!(pprof["encoding"], "base64");
    use base64::Engine as _;
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(pprof["data"].as_str().unwrap())
        .expect("base64");
    let mut proto = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut proto)
        .expect("gzip");
    let has = |text: &str| {
        proto
            .windows(text.len())
            .any(|window| window == text.as_bytes())
    };
    for text in [
        "samples",
        "count",
        "wall",
        "nanoseconds",
        "thread",
        "tid",
        "busy-0",
        "profiled::split::crunch",
    ] {
        assert!(has(text), "no {text:?} in the profile's strings");
    }

    // The text protocol's default is the table.
    let mut text = service.text();
    let answer = text.ask("profile 1 --hz 200");
    assert!(
        answer.contains("cpu profile of pid") && answer.contains("at 200 Hz"),
        "{answer}"
    );
    let folded = text.ask("profile 1 --format folded --per-thread");
    assert!(
        folded.lines().any(|line| line.starts_with("busy-0;")),
        "{folded}"
    );
}

#[test]
fn a_profile_limited_to_some_threads_samples_only_them() {
    let _serial = serial();
    let service = profiled(&["--busy", "2"]);
    let mut session = service.json();
    let profile = session.result(
        "profile",
        json!({"seconds": 1, "thread": "busy-1", "per_thread": true}),
    );
    let roots = by_root(profile["data"].as_str().unwrap());
    assert_eq!(roots.keys().collect::<Vec<_>>(), ["busy-1"], "{profile}");

    let tid = support::threads_named(service.pid, "busy-0")[0];
    let profile = session.result(
        "profile",
        json!({"seconds": 1, "thread": tid, "per_thread": true, "mode": "wall"}),
    );
    let roots = by_root(profile["data"].as_str().unwrap());
    assert_eq!(roots.keys().collect::<Vec<_>>(), ["busy-0"], "{profile}");
}

#[test]
fn one_profile_at_a_time_while_other_sessions_are_served() {
    let _serial = serial();
    let service = profiled(&["--busy", "1"]);
    let finished = Arc::new(AtomicBool::new(false));
    let first = {
        let socket = service.socket.clone();
        let finished = finished.clone();
        std::thread::spawn(move || {
            let mut session = Json::connect(&socket);
            let profile = session.result("profile", json!({"seconds": 3}));
            finished.store(true, Ordering::SeqCst);
            profile
        })
    };
    let mut other = service.json();
    wait_until("the profile to start", || profiling(&mut other));
    let error = other.error("profile", json!({"seconds": 1}));
    assert_eq!(error["code"], -32002, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("one runs at a time"),
        "{error}"
    );
    let stacks = other.result("stacks", json!({}));
    assert!(!stacks["threads"].as_array().unwrap().is_empty());
    assert!(
        !finished.load(Ordering::SeqCst),
        "`stacks` waited for the profile to end"
    );
    let profile = first.join().unwrap();
    assert!(profile["samples"].as_u64().unwrap() > 0, "{profile}");
    other.result("profile", json!({"seconds": 1}));
}

#[test]
fn a_client_that_leaves_frees_the_profiler() {
    let _serial = serial();
    let service = profiled(&["--busy", "1"]);
    {
        let mut leaving = service.json();
        leaving.send_raw(br#"{"jsonrpc":"2.0","id":1,"method":"profile","params":{"seconds":60}}"#);
        let mut other = service.json();
        wait_until("the profile to start", || profiling(&mut other));
    }
    // Well before the 60 s are up, the profiler is free again.
    let mut session = service.json();
    wait_until("the profiler to be free", || {
        session
            .request("profile", json!({"seconds": 1}))
            .get("result")
            .is_some()
    });
    assert_eq!(timers(service.pid).unwrap_or(0), 0, "timers left behind");
}

#[test]
fn every_bad_param_is_refused_and_nothing_is_left_running() {
    let _serial = serial();
    let service = profiled(&["--busy", "1"]);
    let mut session = service.json();
    for (params, says) in [
        (json!({"seconds": 0}), "1 to 300 seconds"),
        (json!({"seconds": 301}), "1 to 300 seconds"),
        (json!({"seconds": "ten"}), "1 to 300 seconds"),
        (json!({"hz": 0}), "from 1 to 1000"),
        (json!({"hz": 1001}), "from 1 to 1000"),
        (json!({"hz": 99.5}), "whole number"),
        (json!({"mode": "gpu"}), "\"cpu\" or \"wall\""),
        (json!({"format": "png"}), "top, folded, pprof, svg"),
        (json!({"thread": ""}), "thread's name"),
        (json!({"thread": [1]}), "thread's name"),
        (json!({"per_thread": 1}), "true or false"),
        (json!({"rate": 10}), "unknown param `rate`"),
    ] {
        let error = session.error("profile", params.clone());
        assert_eq!(error["code"], -32602, "{params}: {error}");
        assert_eq!(error["data"]["reason"], "bad_params", "{params}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{params}: {error}"
        );
    }
    let mut text = service.text();
    for (line, says) in [
        ("profile 0", "1 to 300 seconds"),
        ("profile --hz 5000", "from 1 to 1000"),
        ("profile --format png", "top, folded, pprof, svg"),
        ("profile --fast", "unknown flag `--fast`"),
        ("profile 1 2", "one SECONDS"),
    ] {
        let answer = text.ask(line);
        assert!(
            answer.starts_with("error: ") && answer.contains(says),
            "{line}: {answer}"
        );
    }
    assert_eq!(timers(service.pid).unwrap_or(0), 0, "timers left behind");
    // The edges of the ranges are taken: 1 Hz is a period of a whole second.
    session.result("profile", json!({"seconds": 1, "hz": 1}));
    let profile = session.result("profile", json!({"seconds": 1, "hz": 1000}));
    assert!(profile["samples"].as_u64().unwrap() > 0, "{profile}");
}

#[test]
fn threads_that_start_and_exit_during_a_profile_are_sampled() {
    let _serial = serial();
    let service = profiled(&["--busy", "0", "--churn"]);
    let mut session = service.json();
    let profile = session.result("profile", json!({"seconds": 2, "per_thread": true}));
    let roots = by_root(profile["data"].as_str().unwrap());
    let churned = roots
        .keys()
        .filter(|root| root.starts_with("churn-"))
        .count();
    assert!(
        churned >= 5,
        "only {churned} short-lived threads sampled: {roots:?}"
    );
    assert_eq!(timers(service.pid).unwrap_or(0), 0, "timers left behind");
}

#[test]
fn a_thread_that_blocks_the_signal_is_reported_not_waited_for() {
    let _serial = serial();
    let service = profiled(&["--busy", "1", "--blocks-signal"]);
    let mut session = service.json();
    let profile = session.result("profile", json!({"seconds": 1, "per_thread": true}));
    let unsampled = profile["unsampled"].as_array().unwrap();
    let blocking = unsampled
        .iter()
        .find(|thread| thread["name"] == "blocks-signal")
        .unwrap_or_else(|| panic!("not reported: {profile}"));
    assert!(
        blocking["reason"].as_str().unwrap().contains("SigBlk"),
        "{blocking}"
    );
    assert!(by_root(profile["data"].as_str().unwrap()).contains_key("busy-0"));
    let mut text = service.text();
    let table = text.ask("profile 1");
    assert!(
        table.contains("not sampled: thread") && table.contains("\"blocks-signal\""),
        "{table}"
    );
}

#[test]
fn a_profile_runs_across_a_fork() {
    let _serial = serial();
    let mut service = profiled(&["--busy", "1"]);
    let running = {
        let socket = service.socket.clone();
        std::thread::spawn(move || Json::connect(&socket).result("profile", json!({"seconds": 2})))
    };
    let mut other = service.json();
    wait_until("the profile to start", || profiling(&mut other));
    for _ in 0..5 {
        service.send_stdin("fork");
    }
    wait_until("five forks", || {
        service.stdout().matches(", exit 7").count() == 5
    });
    let profile = running.join().unwrap();
    assert!(profile["samples"].as_u64().unwrap() > 0, "{profile}");
    assert!(service.is_alive());
    other.result("profile", json!({"seconds": 1}));
}

#[test]
fn uninstall_while_profiling_ends_the_profile() {
    let _serial = serial();
    let mut service = profiled(&["--busy", "1"]);
    let mut session = service.json();
    session.send_raw(br#"{"jsonrpc":"2.0","id":1,"method":"profile","params":{"seconds":60}}"#);
    let mut other = service.json();
    wait_until("the profile to start", || profiling(&mut other));
    service.send_stdin("uninstall");
    service.wait_for_stdout("uninstalled: true");
    // The session is closed without an answer, well before the 60 s.
    assert!(session.closed_without_answer());
    wait_until("the profile's timers to go", || {
        timers(service.pid).unwrap_or(0) == 0
    });
    service.send_stdin("install");
    wait_until("the second install", || {
        service.stdout().matches("listening on").count() == 2
    });
    service.wait_for_socket();
    let mut again = service.json();
    wait_until("the profiler to be free", || {
        again
            .request("profile", json!({"seconds": 1}))
            .get("result")
            .is_some()
    });
}

#[test]
fn manhole_cli_prints_the_table_and_writes_each_file() {
    let _serial = serial();
    let service = profiled(&["--busy", "1"]);
    let pid = service.pid.to_string();
    let cli = |args: &[&str]| {
        support::run_with_timeout(
            std::process::Command::new(support::cli())
                .arg("--timeout")
                .arg("2s")
                .arg(&pid)
                .args(args),
            std::time::Duration::from_secs(30),
        )
    };
    // Longer than --timeout: the client waits out the profile first.
    let done = cli(&["profile", "3"]);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stdout.starts_with("cpu profile of pid"), "{done:?}");
    assert!(done.stdout.contains("profiled::split::crunch"), "{done:?}");

    for (name, starts) in [
        ("cpu.svg", &b"<?xml"[..]),
        ("cpu.folded", &b"busy-0;"[..]),
        ("cpu.pb.gz", &[0x1f, 0x8b][..]),
    ] {
        let path = support::scratch(name);
        let mut args = vec!["profile", "1", "-o", path.to_str().unwrap()];
        if name.ends_with(".folded") {
            args.push("--per-thread");
        }
        let done = cli(&args);
        assert_eq!(done.code, Some(0), "{name}: {done:?}");
        assert!(done.stderr.contains("wrote "), "{done:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(starts),
            "{name}: {:?}",
            &bytes[..bytes.len().min(40)]
        );
        let _ = std::fs::remove_file(&path);
    }

    let done = cli(&["profile", "1", "--hz", "0"]);
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(done.stderr.contains("from 1 to 1000"), "{done:?}");

    // Checked before sampling: a name whose format is unknown, unless
    // `--format` says; a file that cannot be made.
    let png = support::scratch("x.png");
    let started = std::time::Instant::now();
    let done = cli(&["profile", "5", "-o", png.to_str().unwrap()]);
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(
        done.stderr
            .contains(".svg (an icicle or flame graph), .folded or .txt"),
        "{done:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "it sampled first"
    );
    assert!(!png.exists());
    let done = cli(&[
        "profile",
        "1",
        "--format",
        "svg",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"<?xml"));
    let _ = std::fs::remove_file(&png);
    let started = std::time::Instant::now();
    let done = cli(&["profile", "5", "-o", "/no-such-directory/cpu.svg"]);
    assert_eq!(done.code, Some(2), "{done:?}");
    assert!(
        done.stderr.contains("/no-such-directory/cpu.svg"),
        "{done:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "it sampled first"
    );

    // A profile with no samples (only a thread that sleeps, in CPU mode)
    // writes nothing and says why.
    let empty = support::scratch("empty.svg");
    let done = cli(&[
        "profile",
        "1",
        "--thread",
        "profiled",
        "-o",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(
        done.stderr.contains("the profile has no samples"),
        "{done:?}"
    );
    assert!(!empty.exists());
}

/// The signals queued on a process's user (`SigQ` in `/proc/PID/status`),
/// which every process of that user shares under `RLIMIT_SIGPENDING`.
fn queued_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = status
        .lines()
        .find_map(|line| line.strip_prefix("SigQ:"))
        .expect("SigQ in status");
    field.trim().split('/').next().unwrap().parse().unwrap()
}

/// A thread that blocks the stack signal is never sent another one while
/// it does: 40 dumps and a 5-second wall profile at 1000 Hz queue at most
/// two. The program runs as a user of its own (nobody), so that the count,
/// which is per user, is not moved by the other tests' processes.
#[test]
fn signals_do_not_pile_up_on_a_thread_that_blocks_them() {
    use std::os::unix::process::CommandExt;
    if !support::running_as_root("running the program as another user") {
        return;
    }
    let _serial = serial();
    let mut command = std::process::Command::new(support::example("profiled"));
    command
        .args(["--busy", "1", "--blocks-signal"])
        .env_remove("MANHOLE")
        .uid(65534)
        .gid(65534);
    let service = Service::spawn_command(command, None);
    service.wait_for_socket();
    let before = queued_signals(service.pid);
    let mut session = service.json();
    for _ in 0..40 {
        let stacks = session.result("stacks", json!({}));
        assert!(stacks["threads"].is_array(), "{stacks}");
    }
    let profile = session.result(
        "profile",
        json!({"seconds": 5, "hz": 1000, "mode": "wall", "per_thread": true}),
    );
    assert!(profile["samples"].as_u64().unwrap() > 0, "{profile}");
    let after = queued_signals(service.pid);
    assert!(
        after <= before + 2,
        "SigQ went from {before} to {after}: signals pile up on the blocking thread"
    );
}
