//! `info` against what `/proc` says about the same process, read from
//! outside it.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use support::{example, Service};

/// `/proc/<pid>/stat`'s fields after the name, numbered as `proc(5)` does.
fn stat_field(pid: u32, number: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name
        .split_whitespace()
        .nth(number - 3)
        .unwrap()
        .parse()
        .unwrap()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn boot_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// An RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SS.ffZ`) as seconds since the
/// epoch.
fn parse_rfc3339(text: &str) -> f64 {
    let (date, time) = text.strip_suffix('Z').unwrap().split_once('T').unwrap();
    let date: Vec<i64> = date.split('-').map(|n| n.parse().unwrap()).collect();
    let time: Vec<f64> = time.split(':').map(|n| n.parse().unwrap()).collect();
    // Howard Hinnant's days_from_civil.
    let (y, m, d) = (date[0] - i64::from(date[1] <= 2), date[1], date[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days as f64 * 86_400.0 + time[0] * 3600.0 + time[1] * 60.0 + time[2]
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn info_agrees_with_proc() {
    // The shell sets the open-files limit, then becomes the service.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 1000 && exec \"$0\" extra-arg"])
        .arg(example("service"))
        .env_remove("MANHOLE");
    let service = Service::spawn_command(command, None);
    service.wait_for_socket();
    let pid = service.pid;
    let mut session = service.json();

    let cpu_before = (stat_field(pid, 14) + stat_field(pid, 15)) as f64 / clock_ticks();
    let info = session.result("info", Value::Null);
    let cpu_after = (stat_field(pid, 14) + stat_field(pid, 15)) as f64 / clock_ticks();

    assert_eq!(info["pid"], pid);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(info["exe"], exe.display().to_string());
    assert_eq!(info["args"][1], "extra-arg", "{info}");
    assert!(info["args"][0].as_str().unwrap().ends_with("service"));
    assert_eq!(info["manhole_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info["program"],
        json!({"name": "manhole-examples", "version": env!("CARGO_PKG_VERSION")}),
        "#[manhole::main] names the binary's crate"
    );

    let started = boot_time() + stat_field(pid, 22) as f64 / clock_ticks();
    let started_at = parse_rfc3339(info["started_at"].as_str().unwrap());
    assert!(
        (started_at - started).abs() < 0.02,
        "{} is not {started}",
        info["started_at"]
    );
    let uptime = info["uptime_s"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&uptime), "{uptime}");

    // The session's own thread and socket are there for both readings.
    let threads = count_entries(&format!("/proc/{pid}/task"));
    assert_eq!(info["threads"], threads, "{info}");
    let fds = count_entries(&format!("/proc/{pid}/fd"));
    assert_eq!(info["fds"], fds, "{info}");

    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let resident: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let rss = info["rss_bytes"].as_u64().unwrap();
    assert!(
        rss.abs_diff(resident * page) < resident * page / 2,
        "{rss} is far from {}",
        resident * page
    );

    let cpu = info["cpu_s"].as_f64().unwrap();
    assert!(
        cpu >= cpu_before - 0.01 && cpu <= cpu_after + 0.01,
        "{cpu} not within [{cpu_before}, {cpu_after}]"
    );

    assert_eq!(info["limits"]["open_files"]["soft"], 1000, "{info}");
    let hard = info["limits"]["open_files"]["hard"].as_u64();
    assert!(hard.is_none_or(|hard| hard >= 1000));

    let mut text = service.text();
    let shown = text.ask("info");
    assert!(shown.starts_with(&format!("pid       {pid}\n")), "{shown}");
    for expected in [
        "program   manhole-examples ",
        "threads   ",
        "open files 1000 soft",
        "extra-arg",
    ] {
        assert!(shown.contains(expected), "{expected:?} in {shown}");
    }
    assert!(text
        .ask("info now")
        .starts_with("error: `info` takes no arguments"));
}
