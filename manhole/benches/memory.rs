//! What an installed manhole holds in memory: the resident size of a
//! process at rest with the manhole off (`MANHOLE=off`) and on, after a
//! full `stacks` dump (the symbol tables it needed, loaded), and once the
//! tables have been let go after `symbol_cache_idle` (set to 3 s here; a
//! minute by default).
//!
//! ```text
//! cargo bench -p manhole --bench memory
//! cargo build --example service     # a larger binary, with full debug info
//! cargo bench -p manhole --bench memory -- target/debug/examples/service
//! ```
//!
//! Without arguments the process is this binary, run again as a child with
//! 1000 idle threads. Each path given is another program that installs a
//! manhole at the default socket path (`/tmp/manhole-PID`), measured the
//! same way. Readings are `VmRSS` from `/proc/PID/status`, medians of three
//! fresh processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "MANHOLE_MEMORY_BENCH_CHILD";
const IDLE: Duration = Duration::from_secs(3);

fn resident_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The child: 1000 idle threads and the manhole, then waits.
fn child() {
    for _ in 0..1000 {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::sleep(Duration::from_secs(600));
            })
            .unwrap();
    }
    let _manhole = manhole::Options::new().verbose(false).install();
    std::thread::sleep(Duration::from_secs(600));
}

/// Kills the child when dropped, so that a failed reading leaves nothing.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: Option<&str>, on: bool) -> Running {
    start_with(program, on, "")
}

/// [`start`], with more `MANHOLE` settings after the bench's own.
fn start_with(program: Option<&str>, on: bool, more: &str) -> Running {
    let mut command = match program {
        Some(path) => Command::new(path),
        None => {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.env(CHILD, "1");
            command
        }
    };
    let setting = if on {
        format!("symbol_cache_idle={}s{more}", IDLE.as_secs())
    } else {
        "off".to_owned()
    };
    command
        .env("MANHOLE", setting)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Running(command.spawn().expect("start the measured program"))
}

/// Waits for the process's socket, then a little for it to settle.
fn settle(pid: u32, on: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let socket = format!("/tmp/manhole-{pid}");
    while on && !std::path::Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "{socket} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
}

/// A JSON `stacks`, read to its end.
fn dump(pid: u32) -> usize {
    let mut stream = UnixStream::connect(format!("/tmp/manhole-{pid}")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stacks\"}\n")
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("the dump");
    assert!(
        line.contains("\"result\""),
        "{}",
        &line[..line.len().min(200)]
    );
    drop(reader);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = (&stream).read_to_end(&mut rest);
    line.len()
}

struct Readings {
    off: u64,
    rest: u64,
    dumped: u64,
    /// Of what the dump added, pages of mapped files (the binary's debug
    /// info, read in place), which the kernel can drop under pressure.
    dumped_file: u64,
    /// At rest with the watchdog on, which keeps the tables it read.
    watchdog: u64,
    released: u64,
    /// Of what stays after the tables went, pages of mapped files: the
    /// code that ran for the dump, in the binary's text.
    released_file: u64,
}

fn measure(program: Option<&str>) -> Readings {
    let off = {
        let running = start(program, false);
        settle(running.0.id(), false);
        resident_kib(running.0.id())
    };
    let running = start(program, true);
    let pid = running.0.id();
    settle(pid, true);
    let rest = resident_kib(pid);
    let rest_file = status_kib(pid, "RssFile:");
    dump(pid);
    let dumped = resident_kib(pid);
    let dumped_file = status_kib(pid, "RssFile:").saturating_sub(rest_file);
    std::thread::sleep(IDLE + Duration::from_secs(2));
    let released = resident_kib(pid);
    let released_file = status_kib(pid, "RssFile:").saturating_sub(rest_file);
    drop(running);
    let watchdog = {
        let running = start_with(program, true, ",watchdog=500ms");
        settle(running.0.id(), true);
        // It reads the tables before its first look, in its own time.
        std::thread::sleep(Duration::from_secs(2));
        resident_kib(running.0.id())
    };
    Readings {
        watchdog,
        off,
        rest,
        dumped,
        dumped_file,
        released,
        released_file,
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn signed_mib(kib: i64) -> String {
    format!("{:+.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    // `cargo bench` runs this from the package's directory; a relative
    // path is taken from the workspace's, where the command was typed.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let programs: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .map(|arg| {
            let path = std::path::Path::new(&arg);
            if path.is_relative() && !path.exists() {
                workspace.join(path).display().to_string()
            } else {
                arg
            }
        })
        .collect();
    let mut cases: Vec<(String, Option<&str>)> =
        vec![("this bench, 1000 idle threads".to_owned(), None)];
    for program in &programs {
        cases.push((program.clone(), Some(program.as_str())));
    }
    println!(
        "resident memory (VmRSS), medians of 3 fresh processes; tables let go after {} s idle",
        IDLE.as_secs()
    );
    for (name, program) in cases {
        let size = std::fs::metadata(program.map_or_else(
            || std::env::current_exe().unwrap(),
            std::path::PathBuf::from,
        ))
        .map(|meta| meta.len())
        .unwrap_or(0);
        let readings: Vec<Readings> = (0..3).map(|_| measure(program)).collect();
        let pick = |field: fn(&Readings) -> u64| median(readings.iter().map(field).collect());
        let watchdog = pick(|r| r.watchdog);
        let (off, rest, dumped, dumped_file, released, released_file) = (
            pick(|r| r.off),
            pick(|r| r.rest),
            pick(|r| r.dumped),
            pick(|r| r.dumped_file),
            pick(|r| r.released),
            pick(|r| r.released_file),
        );
        println!("{name} ({:.1} MB binary):", size as f64 / 1e6);
        println!("  MANHOLE=off                 {}", mib(off));
        println!(
            "  on, at rest                 {}  ({} against off)",
            mib(rest),
            signed_mib(rest as i64 - off as i64)
        );
        println!(
            "  after a full stacks dump    {}  ({} of symbol tables and dump; {} of it pages of the mapped files)",
            mib(dumped),
            signed_mib(dumped as i64 - rest as i64),
            mib(dumped_file),
        );
        println!(
            "  watchdog=500ms, at rest     {}  ({} against off; it keeps the tables it read)",
            mib(watchdog),
            signed_mib(watchdog as i64 - off as i64)
        );
        println!(
            "  {} s after, tables let go    {}  ({} against at rest; {} of it pages of the mapped files)",
            IDLE.as_secs() + 2,
            mib(released),
            signed_mib(released as i64 - rest as i64),
            mib(released_file),
        );
    }
}
