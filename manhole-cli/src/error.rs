//! Why no answer could be had: every failure before or outside a reply.
//!
//! These all end the program with exit status 2, the reason on stderr. An
//! error *reply* from the server (a command that failed) is not one of
//! these: it is the server's answer, shown as `error: MESSAGE`, with exit
//! status 1.
//!
//! A failure on another host is wrapped in [`Error::OnHost`], so that its
//! one line starts with the host's name whatever went wrong there.

use crate::peer::Peer;
use std::path::PathBuf;
use std::time::Duration;

/// How manhole-cli starts the line that says why it got no answer:
/// `manhole-cli: REASON` on stderr. A remote manhole-cli's line is
/// recognised by it too.
pub const FAILURE_PREFIX: &str = "manhole-cli: ";

/// A failure to find, check, reach or talk to a manhole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc/PID` does not exist.
    #[error(
        "no process with pid {pid}; `manhole-cli list` shows the processes that have a manhole"
    )]
    NoSuchProcess {
        /// The pid that was asked for.
        pid: i32,
    },

    /// The process runs as another user, and we are not root.
    #[error("pid {pid} ({name}) belongs to {owner}, and you are {me}; a manhole serves only its own user and root, so run manhole-cli as that user (or as root)")]
    NotYours {
        /// The target process.
        pid: i32,
        /// Its name, from `/proc/PID/status`.
        name: String,
        /// Its effective user, as `name (uid N)`.
        owner: String,
        /// Our effective user, as `name (uid N)`.
        me: String,
    },

    /// The process runs in another user namespace, which must be joined to
    /// connect as its user, and that could not be done.
    #[error("pid {pid} ({name}) runs in a user namespace of its own, where its manhole would not see you as its user or root; {reason}")]
    UserNamespace {
        /// The target process.
        pid: i32,
        /// Its name.
        name: String,
        /// Why it could not be joined, and what would do.
        reason: String,
    },

    /// The process exists and is ours, but no manhole socket was found.
    #[error("pid {pid} ({name}) has no manhole socket: neither {default} nor a listening socket of its own named like a manhole; {hint}")]
    NoSocket {
        /// The target process.
        pid: i32,
        /// Its default socket path, as seen from here (through its root in
        /// a container).
        default: String,
        /// Its name.
        name: String,
        /// What to try next, depending on whether a dormant listener thread
        /// was seen.
        hint: String,
    },

    /// The socket file exists but nothing accepts on it.
    #[error("{path} is a stale socket: the file is there but nothing accepts connections on it (its process has probably exited); `manhole-cli list --clean` removes stale sockets")]
    Stale {
        /// The socket file.
        path: PathBuf,
    },

    /// The server accepted, then closed without a byte: what a manhole does
    /// to a user other than its own.
    #[error("the server at {peer} refused us: it closed the connection without sending a byte, which a manhole does to any user but its own; this is probably another user's manhole, so connect as that user (or as root)")]
    Refused {
        /// The socket file, or the remote process.
        peer: Peer,
    },

    /// The connection closed without a byte because the process it leads
    /// to is gone: it died (or exited) while it had our request.
    #[error("pid {pid} exited while answering")]
    Exited {
        /// The process that served the socket.
        pid: i32,
    },

    /// Connecting, reading or writing took longer than `--timeout`.
    #[error("timed out after {} {doing}; raise --timeout if the process is just slow", humanize(*timeout))]
    Timeout {
        /// What was being waited for, such as `waiting for a reply from /tmp/manhole-1`.
        doing: String,
        /// The limit that was reached.
        timeout: Duration,
    },

    /// The socket file is owned by someone other than the process's user.
    #[error("{path} is owned by uid {file_uid}, but pid {pid} runs as uid {process_uid}; refusing to connect to a socket that another user may have planted")]
    PlantedSocket {
        /// The socket file.
        path: PathBuf,
        /// Its owner.
        file_uid: u32,
        /// The target process.
        pid: i32,
        /// The process's effective uid.
        process_uid: u32,
    },

    /// A socket path given on the command line belongs to another user.
    #[error("{path} is owned by uid {file_uid}, not by you (uid {me}); refusing to connect to another user's socket (run manhole-cli as its owner, or as root)")]
    NotYourSocket {
        /// The socket file.
        path: PathBuf,
        /// Its owner.
        file_uid: u32,
        /// Our effective uid.
        me: u32,
    },

    /// The server that answered runs as an unexpected user (the file was
    /// swapped between the check and the connect, or chowned).
    #[error("the server behind {path} runs as uid {peer_uid}, not uid {expected_uid} as its socket file says; refusing to talk to it")]
    UnexpectedPeer {
        /// The socket file.
        path: PathBuf,
        /// The listening process's uid, from `SO_PEERCRED`.
        peer_uid: u32,
        /// The uid that was expected.
        expected_uid: u32,
    },

    /// The path given exists but is not a socket.
    #[error("{path} is {kind}, not a socket; give a manhole's socket path, or a pid")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is instead, such as `a regular file`.
        kind: &'static str,
    },

    /// The path given does not exist.
    #[error("{path} does not exist; give a pid, `list`, or the path of a manhole's socket")]
    NoSuchPath {
        /// The path.
        path: PathBuf,
    },

    /// Sending the wake-up signal would have used its default action.
    #[error("pid {pid} ({name}) does not handle {signal}, so sending it would {action} the process instead of waking a manhole; use the signal it was started with (MANHOLE=activate_on=... or oneshot_on=...)")]
    SignalNotHandled {
        /// The target process.
        pid: i32,
        /// Its name.
        name: String,
        /// The signal, such as `SIGUSR1`.
        signal: String,
        /// What the default action would do: `kill` or `stop`.
        action: &'static str,
    },

    /// `kill(2)` failed.
    #[error("could not send {signal} to pid {pid}: {source}")]
    Signal {
        /// The target process.
        pid: i32,
        /// The signal.
        signal: String,
        /// Why.
        source: nix::Error,
    },

    /// The system refused something else.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done, such as `connect to /tmp/manhole-1`.
        doing: String,
        /// Why it failed.
        source: std::io::Error,
    },

    /// The server's reply was not JSON-RPC as PROTOCOL.md describes it.
    #[error(
        "the reply from {peer} is not a JSON-RPC response ({reason}); is this a manhole socket?"
    )]
    BadReply {
        /// The socket file, or the remote process.
        peer: Peer,
        /// What was wrong.
        reason: String,
    },

    /// The server said why it would not serve us, then hung up (`busy`,
    /// past its `max_sessions`).
    #[error("the server at {peer} ended the session: {message}")]
    Ended {
        /// The socket file, or the remote process.
        peer: Peer,
        /// What it said: the refusal's message, without `error: ` and
        /// without its reason.
        message: String,
    },

    /// The server closed the connection after it had answered before.
    #[error(
        "the connection to {peer} closed; the process may have exited or uninstalled its manhole"
    )]
    Closed {
        /// The socket file, or the remote process.
        peer: Peer,
    },

    /// Something went wrong on, or on the way to, another host.
    #[error("{host}: {source}")]
    OnHost {
        /// The destination as given to `--ssh`.
        host: String,
        /// What went wrong there.
        source: Box<Error>,
    },

    /// ssh could not open a connection to the host: its name did not
    /// resolve, or nothing answered on its port.
    #[error("cannot reach the host through ssh: {said}")]
    Unreachable {
        /// ssh's own last line.
        said: String,
    },

    /// ssh reached the host but could not log in.
    #[error("ssh could not log in (authentication failed; check the key, the agent, or ~/.ssh/config): {said}")]
    AuthenticationFailed {
        /// ssh's own last line.
        said: String,
    },

    /// ssh failed for another reason of its own (exit status 255).
    #[error("ssh failed: {said}")]
    Ssh {
        /// ssh's own last line.
        said: String,
    },

    /// The remote shell found no such program (exit status 127).
    #[error("there is no `{cli}` on the remote host ({said}); install manhole-cli there, or give its path with --remote-cli")]
    NoRemoteCli {
        /// The program that was run there.
        cli: String,
        /// The remote shell's last line.
        said: String,
    },

    /// The remote shell found the program but could not run it (exit
    /// status 126).
    #[error("cannot run `{cli}` on the remote host ({said}); check that it is an executable manhole-cli, or give another with --remote-cli")]
    RemoteCliNotExecutable {
        /// The program that was run there.
        cli: String,
        /// The remote shell's last line.
        said: String,
    },

    /// The remote manhole-cli could not do what it was asked: its own
    /// reason, such as no process with that pid.
    /// `symbolize` could not read or use the report.
    #[error("{0}")]
    Symbolize(String),
    #[error("{said}")]
    Remote {
        /// The remote manhole-cli's message, without its `manhole-cli: `.
        said: String,
    },

    /// The remote command ended in a way none of the above explains.
    #[error(
        "`{command}` exited with status {status} on the remote host{}",
        detail(said)
    )]
    RemoteExit {
        /// What was run there.
        command: String,
        /// Its exit status, as ssh passed it on.
        status: i32,
        /// Its last line on stderr, if any.
        said: String,
    },

    /// The ssh command could not be started at all.
    #[error("cannot run `{program}`: {source}; install OpenSSH's client (`ssh`), or set MANHOLE_SSH_COMMAND")]
    SshCommand {
        /// The program, `ssh` or the first word of `MANHOLE_SSH_COMMAND`.
        program: String,
        /// Why.
        source: std::io::Error,
    },

    /// `MANHOLE_SSH_COMMAND` is set but is not a command line.
    #[error("MANHOLE_SSH_COMMAND {reason}; write it as a shell command line, such as `ssh -p 2222 -i ~/.ssh/key`")]
    BadSshCommand {
        /// What is wrong with it.
        reason: String,
    },

    /// The remote `list --json` did not print what this client prints.
    #[error("the remote `{command}` did not print a list of manholes ({reason}); is the remote manhole-cli as new as this one?")]
    BadRemoteList {
        /// What was run there.
        command: String,
        /// What was wrong.
        reason: String,
    },
}

/// `: WHAT` when there is something to say.
fn detail(said: &str) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    }
}

impl Error {
    /// An I/O failure while doing something described in words.
    pub fn io(doing: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            doing: doing.into(),
            source,
        }
    }

    /// This failure, on `host`; one already named with a host is kept.
    pub fn on_host(self, host: &str) -> Self {
        match self {
            Error::OnHost { .. } => self,
            other => Error::OnHost {
                host: host.to_owned(),
                source: Box::new(other),
            },
        }
    }
}

/// `5s`, `500ms`, `1.5s`: the form `--timeout` takes.
pub fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_they_are_written() {
        assert_eq!(humanize(Duration::from_secs(5)), "5s");
        assert_eq!(humanize(Duration::from_millis(300)), "300ms");
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
    }
}
