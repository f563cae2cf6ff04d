//! Running the built `manhole-cli` from a test: its command with a clean
//! environment, a bounded run, and the scratch directories the tests hand
//! it. Shared by `cli.rs` and `fleet.rs`.

#![allow(dead_code)]

use crate::support::{run_with_timeout, Finished};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long one run of the CLI may take before the test fails.
pub const CLI_LIMIT: Duration = Duration::from_secs(30);

/// The built CLI, which the ssh tests also run as the remote one.
pub const CLI: &str = env!("CARGO_BIN_EXE_manhole-cli");

/// The CLI with `args`, without the caller's settings that change its
/// output (`NO_COLOR`, history, an ssh command).
pub fn cli_command(args: &[&str]) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("XDG_STATE_HOME")
        .env_remove("MANHOLE_SSH_COMMAND");
    command
}

/// Runs the CLI with `args` to its end, within [`CLI_LIMIT`].
pub fn cli(args: &[&str]) -> Finished {
    run_with_timeout(&mut cli_command(args), CLI_LIMIT)
}

#[track_caller]
pub fn assert_exit(run: &Finished, code: i32) {
    assert_eq!(run.code, Some(code), "{run:#?}");
}

/// The run's stdout, which must be JSON.
pub fn stdout_json(run: &Finished) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {run:#?}"))
}

/// A directory that is removed with its contents when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "{}-t{}-{n}-{name}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        ScratchDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a fake manhole answers each request line with.
#[derive(Clone, Copy)]
pub enum Hostile {
    /// A `text` result (and an error message) full of terminal escapes:
    /// OSC 52 (the clipboard), a title, erase-line, a C1 CSI.
    Escapes,
    /// One reply line that never ends.
    EndlessLine,
    /// `{"id":0}` lines, for ever.
    StaleIds,
}

/// The escapes [`Hostile::Escapes`] sends.
pub const HOSTILE_TEXT: &str =
    "name\u{1b}]52;c;SGVsbG8=\u{7}\u{1b}]0;TITLE\u{7}\u{1b}[2K\r\u{9b}31m end\n";

/// A fake manhole at `path`, on a thread of its own, serving each
/// connection as `hostile` says until the client leaves.
pub fn fake_server(path: &std::path::Path, hostile: Hostile) -> std::os::unix::net::UnixListener {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let serving = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in serving.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_hostile(stream, hostile));
        }
    });
    listener
}

fn serve_hostile(stream: std::os::unix::net::UnixStream, hostile: Hostile) {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
        let id = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|request| request.get("id").cloned())
            .unwrap_or(Value::Null);
        line.clear();
        let written = match hostile {
            Hostile::Escapes => {
                let response = serde_json::json!({
                    "jsonrpc": "2.0", "id": id,
                    "result": {"text": HOSTILE_TEXT, "threads": [{"name": HOSTILE_TEXT}]},
                });
                writeln!(out, "{response}")
            }
            Hostile::EndlessLine => {
                let chunk = [b'a'; 65536];
                let _ = write!(out, "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":\"");
                loop {
                    if out.write_all(&chunk).is_err() {
                        return;
                    }
                }
            }
            Hostile::StaleIds => loop {
                if out.write_all(b"{\"id\":0}\n").is_err() {
                    return;
                }
            },
        };
        if written.is_err() {
            return;
        }
    }
}
