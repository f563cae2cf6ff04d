//! The system's OpenSSH client, run as a child: the command
//! (`MANHOLE_SSH_COMMAND`, else `ssh`), a tunnel to a remote
//! `manhole-cli --stdio`, a remote `manhole-cli list --json`, and what a
//! failed run means.
//!
//! Nothing here speaks JSON-RPC: a tunnel is only the stdin and stdout of
//! the remote bridge, so the session over it is the same as over a local
//! socket. ssh's own failures come with exit status 255 and a line on
//! stderr, the remote shell's with 127 (no such program) or 126 (not
//! executable), and the remote manhole-cli's with its usual
//! `manhole-cli: REASON` line; each is turned into its own [`Error`].

use crate::error::{humanize, Error, FAILURE_PREFIX};
use crate::pipe::TimedPipe;
use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable that replaces `ssh`, as `GIT_SSH_COMMAND` does
/// for git.
pub const SSH_COMMAND_VAR: &str = "MANHOLE_SSH_COMMAND";

/// ssh's exit status for a failure of its own (connection,
/// authentication, options); any other status is the remote command's.
const SSH_FAILED: i32 = 255;
/// A POSIX shell's exit status when it finds no such command.
const SHELL_NOT_FOUND: i32 = 127;
/// A POSIX shell's exit status when it finds the command but cannot run it.
const SHELL_NOT_EXECUTABLE: i32 = 126;

/// How long a tunnel whose input was closed may take to end by itself
/// before it is killed.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How long ssh's stderr is waited for once ssh has exited.
const STDERR_SETTLE: Duration = Duration::from_secs(1);
/// How much of ssh's stderr is kept: its last words are what matter.
const STDERR_KEPT: usize = 16 * 1024;

/// ssh's diagnostics for a host it could not connect to. ssh gives no
/// structured reason, only exit status 255 and these words (the C
/// library's `strerror` and resolver texts, unchanged for decades); they
/// only choose how the failure is introduced, and ssh's own line is always
/// quoted whole.
const UNREACHABLE_SIGNS: &[&str] = &[
    "Could not resolve hostname",
    "Name or service not known",
    "Connection refused",
    "Connection timed out",
    "No route to host",
    "Network is unreachable",
];
/// ssh's diagnostics for a host that would not let it log in.
const AUTHENTICATION_SIGNS: &[&str] = &[
    "Permission denied",
    "Too many authentication failures",
    "Authentication failed",
];

/// How to reach other hosts: the ssh command line, the remote
/// manhole-cli, and the limit for each read and write.
#[derive(Debug, Clone)]
pub struct Ssh {
    program: Vec<String>,
    remote_cli: String,
    timeout: Duration,
}

impl Ssh {
    /// `$MANHOLE_SSH_COMMAND`, split into words as a POSIX shell splits a
    /// command line (quotes and backslashes; no variables), else `ssh`.
    pub fn from_env(remote_cli: &str, timeout: Duration) -> Result<Ssh, Error> {
        let program = match std::env::var_os(SSH_COMMAND_VAR) {
            None => vec!["ssh".to_owned()],
            Some(line) => {
                let line = line.into_string().map_err(|_| Error::BadSshCommand {
                    reason: "is not UTF-8".to_owned(),
                })?;
                let words =
                    manhole_wire::split_words(&line).map_err(|failure| Error::BadSshCommand {
                        reason: format!("cannot be split into words: {}", failure.message),
                    })?;
                if words.is_empty() {
                    return Err(Error::BadSshCommand {
                        reason: "is set but empty".to_owned(),
                    });
                }
                words
            }
        };
        Ok(Ssh {
            program,
            remote_cli: remote_cli.to_owned(),
            timeout,
        })
    }

    /// The limit for each read and write over ssh.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The manhole-cli run on the remote hosts.
    pub fn remote_cli(&self) -> &str {
        &self.remote_cli
    }

    /// Starts `REMOTE_CLI --stdio PID` on `dest` (with `--signal SIGNAL`
    /// when given), and returns its stdin and stdout. Nothing is read: a
    /// failure to connect shows when the session's first reply does not
    /// come.
    pub fn bridge(&self, dest: &str, pid: i32, signal: Option<&str>) -> Result<Bridge, Error> {
        let mut words = vec!["--timeout".to_owned(), humanize(self.timeout)];
        if let Some(signal) = signal {
            words.extend(["--signal".to_owned(), signal.to_owned()]);
        }
        words.extend(["--stdio".to_owned(), pid.to_string()]);
        let mut tunnel = self.spawn(dest, &words, Stdio::piped())?;
        let configure = |err| Error::io("set up the pipes to ssh", err);
        let stdin = tunnel.child.stdin.take().expect("stdin was piped");
        let stdout = tunnel.child.stdout.take().expect("stdout was piped");
        Ok(Bridge {
            stdin: TimedPipe::new(stdin, self.timeout).map_err(configure)?,
            stdout: TimedPipe::new(stdout, self.timeout).map_err(configure)?,
            tunnel,
        })
    }

    /// Runs `REMOTE_CLI list --json` on `dest` with no input, and returns
    /// what it printed once it succeeded.
    pub fn list_json(&self, dest: &str) -> Result<String, Error> {
        let words = ["list".to_owned(), "--json".to_owned()];
        let mut tunnel = self.spawn(dest, &words, Stdio::null())?;
        let stdout = tunnel.child.stdout.take().expect("stdout was piped");
        let mut stdout = TimedPipe::new(stdout, self.timeout)
            .map_err(|err| Error::io("set up the pipe from ssh", err))?;
        let mut printed = Vec::new();
        if let Err(err) = stdout.read_to_end(&mut printed) {
            return Err(tunnel.failure(Duration::ZERO).unwrap_or_else(|| {
                tunnel.read_failure(err, &format!("waiting for `{}`", tunnel.remote_line))
            }));
        }
        match tunnel.failure(self.timeout) {
            Some(err) => Err(err),
            None if tunnel.exited_cleanly() => {
                String::from_utf8(printed).map_err(|_| Error::BadRemoteList {
                    command: tunnel.remote_line.clone(),
                    reason: "it is not UTF-8".to_owned(),
                })
            }
            None => Err(Error::Timeout {
                doing: format!("waiting for `{}` to exit", tunnel.remote_line),
                timeout: self.timeout,
            }),
        }
    }

    fn spawn(&self, dest: &str, words: &[String], stdin: Stdio) -> Result<Tunnel, Error> {
        let remote_line = std::iter::once(self.remote_cli.as_str())
            .chain(words.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let (program, options) = self.program.split_first().expect("never empty");
        // `-T`: the bridge's bytes pass untouched only without a terminal
        // on the remote side. `--`: a destination is never an option.
        let child = Command::new(program)
            .args(options)
            .args(["-T", "--", dest, &remote_line])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::SshCommand {
                program: program.clone(),
                source,
            })?;
        Ok(Tunnel::new(
            child,
            self.remote_cli.clone(),
            remote_line,
            self.timeout,
        ))
    }
}

/// A running `REMOTE_CLI --stdio PID`: its input, its output, and the
/// ssh child that carries them.
pub struct Bridge {
    /// What the session writes: the remote bridge's stdin.
    pub stdin: TimedPipe<ChildStdin>,
    /// What the session reads: the remote bridge's stdout.
    pub stdout: TimedPipe<ChildStdout>,
    /// The ssh child, to explain a failure and to end it.
    pub tunnel: Tunnel,
}

/// An ssh child, killed (after a grace period once its input is closed)
/// when dropped.
pub struct Tunnel {
    child: Child,
    stderr: StderrTail,
    remote_cli: String,
    remote_line: String,
    timeout: Duration,
    status: Option<ExitStatus>,
}

impl Tunnel {
    fn new(mut child: Child, remote_cli: String, remote_line: String, timeout: Duration) -> Tunnel {
        let stderr = StderrTail::collect(child.stderr.take().expect("stderr was piped"));
        Tunnel {
            child,
            stderr,
            remote_cli,
            remote_line,
            timeout,
            status: None,
        }
    }

    /// Why ssh failed, once it has exited, waiting at most `wait` for it to
    /// exit: `None` while it runs, and when it exited with status 0 (the
    /// remote side ended as it should).
    pub fn failure(&mut self, wait: Duration) -> Option<Error> {
        let status = self.exit_status(wait)?;
        let said = self.stderr.text(STDERR_SETTLE);
        failure_of(status, &said, &self.remote_cli, &self.remote_line)
    }

    /// What a failed read from the tunnel means when ssh has not (yet)
    /// said why.
    pub fn read_failure(&self, err: std::io::Error, doing: &str) -> Error {
        match err.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Timeout {
                doing: format!("{doing} through ssh"),
                timeout: self.timeout,
            },
            _ => Error::io(format!("{doing} through ssh"), err),
        }
    }

    fn exited_cleanly(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    fn exit_status(&mut self, wait: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let deadline = Instant::now() + wait;
            loop {
                match self.child.try_wait() {
                    Ok(Some(status)) => {
                        self.status = Some(status);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.status
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // The session's end of the pipes is closed by now (it is dropped
        // first), so a healthy remote bridge ends by itself, soon.
        if self.exit_status(CLOSE_GRACE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The end of ssh's stderr, read by a thread of its own so that ssh never
/// blocks on it.
struct StderrTail {
    text: Arc<Mutex<Vec<u8>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl StderrTail {
    fn collect(mut pipe: impl Read + Send + 'static) -> StderrTail {
        let text = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sink, finished) = (Arc::clone(&text), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                let mut kept = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                kept.extend_from_slice(&buffer[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
            finished.store(true, std::sync::atomic::Ordering::Release);
        });
        StderrTail { text, done }
    }

    /// What ssh wrote, waiting at most `wait` for the pipe to close.
    fn text(&self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        while !self.done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept = self
            .text
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&kept).into_owned()
    }
}

/// What an exit status of ssh and its stderr mean; `None` for success.
fn failure_of(
    status: ExitStatus,
    said: &str,
    remote_cli: &str,
    remote_line: &str,
) -> Option<Error> {
    if status.success() {
        return None;
    }
    let lines: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let last = lines.last().copied().unwrap_or_default().to_owned();
    // The remote manhole-cli's own failure, in the form it always uses.
    if let Some(reason) = lines
        .iter()
        .find_map(|line| line.strip_prefix(FAILURE_PREFIX))
    {
        return Some(Error::Remote {
            said: reason.to_owned(),
        });
    }
    match status.code() {
        Some(SSH_FAILED) => Some(ssh_failure(last)),
        Some(SHELL_NOT_FOUND) => Some(Error::NoRemoteCli {
            cli: remote_cli.to_owned(),
            said: last,
        }),
        Some(SHELL_NOT_EXECUTABLE) => Some(Error::RemoteCliNotExecutable {
            cli: remote_cli.to_owned(),
            said: last,
        }),
        code => Some(Error::RemoteExit {
            command: remote_line.to_owned(),
            status: code.unwrap_or(-1),
            // A usage error names itself on its first line.
            said: lines
                .iter()
                .find(|line| line.starts_with(manhole_wire::REFUSAL_PREFIX))
                .map_or(last, |line| (*line).to_owned()),
        }),
    }
}

/// ssh's own failure (exit status 255), introduced by what its last line
/// says happened.
fn ssh_failure(said: String) -> Error {
    let says = |signs: &[&str]| signs.iter().any(|sign| said.contains(sign));
    if says(UNREACHABLE_SIGNS) {
        Error::Unreachable { said }
    } else if says(AUTHENTICATION_SIGNS) {
        Error::AuthenticationFailed { said }
    } else if said.is_empty() {
        Error::Ssh {
            said: "it exited with status 255 and said nothing".to_owned(),
        }
    } else {
        Error::Ssh { said }
    }
}

/// `word` as one word of a POSIX shell command line: ssh hands the remote
/// command to the remote user's shell as one string.
pub fn shell_quote(word: &str) -> String {
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || b"-_./=:+@%,".contains(&byte);
    if !word.is_empty() && word.bytes().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn failure(code: i32, said: &str) -> Option<String> {
        failure_of(exit(code), said, "manhole-cli", "manhole-cli --stdio 7").map(|e| e.to_string())
    }

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("manhole-cli"), "manhole-cli");
        assert_eq!(shell_quote("/opt/bin/manhole-cli"), "/opt/bin/manhole-cli");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME;rm"), "'$HOME;rm'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn each_exit_status_says_what_failed() {
        assert_eq!(failure(0, ""), None);
        assert_eq!(
            failure(255, "ssh: connect to host 127.0.0.1 port 1: Connection refused\n").unwrap(),
            "cannot reach the host through ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused"
        );
        assert!(failure(
            255,
            "Warning: Permanently added 'x' (ED25519) to the list of known hosts.\nroot@x: Permission denied (publickey).\n"
        )
        .unwrap()
        .ends_with("authentication failed; check the key, the agent, or ~/.ssh/config): root@x: Permission denied (publickey)."));
        assert_eq!(
            failure(255, "Host key verification failed.").unwrap(),
            "ssh failed: Host key verification failed."
        );
        assert!(failure(127, "bash: line 1: manhole-cli: command not found")
            .unwrap()
            .starts_with("there is no `manhole-cli` on the remote host (bash: line 1: manhole-cli: command not found)"));
        assert!(failure(126, "sh: 1: manhole-cli: Permission denied")
            .unwrap()
            .starts_with("cannot run `manhole-cli` on the remote host"));
        assert_eq!(
            failure(2, "manhole-cli: no process with pid 7; `manhole-cli list` shows the processes that have a manhole\n").unwrap(),
            "no process with pid 7; `manhole-cli list` shows the processes that have a manhole"
        );
        assert_eq!(
            failure(2, "error: unexpected argument '--stdio' found\n\nUsage: manhole-cli\n\nFor more information, try '--help'.\n").unwrap(),
            "`manhole-cli --stdio 7` exited with status 2 on the remote host: error: unexpected argument '--stdio' found"
        );
        assert_eq!(
            failure(3, "").unwrap(),
            "`manhole-cli --stdio 7` exited with status 3 on the remote host"
        );
    }
}
