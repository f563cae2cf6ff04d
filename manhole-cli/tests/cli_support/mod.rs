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
