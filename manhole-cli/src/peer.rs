//! Where a session goes, as messages name it: a socket file on this
//! machine, or a process on another host reached through ssh.

use std::fmt;
use std::path::PathBuf;

/// What a session is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A manhole's socket file on this machine.
    Socket(PathBuf),
    /// A process on another host, through `REMOTE_CLI --stdio PID` run by
    /// ssh. The host is named by the error that wraps this one
    /// ([`crate::error::Error::OnHost`]), once for the whole line.
    Remote {
        /// The process id there.
        pid: i32,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Socket(path) => write!(f, "{}", path.display()),
            Peer::Remote { pid } => write!(f, "pid {pid} (through ssh)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_reads_as_a_path_or_a_remote_pid() {
        assert_eq!(
            Peer::Socket("/tmp/manhole-1".into()).to_string(),
            "/tmp/manhole-1"
        );
        assert_eq!(Peer::Remote { pid: 42 }.to_string(), "pid 42 (through ssh)");
    }
}
