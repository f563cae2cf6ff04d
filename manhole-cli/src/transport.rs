//! The byte stream of one session: a Unix socket on this machine, or the
//! stdin and stdout of ssh running the remote `manhole-cli --stdio`.
//!
//! Either way every read and write gives up after `--timeout`, and a
//! stream that ends early can be asked why: a socket cannot say more than
//! that it closed, while a tunnel can say that ssh could not reach or log
//! in to the host, or that the remote manhole-cli found no manhole.

use crate::connect::Connection;
use crate::error::Error;
use crate::peer::Peer;
use crate::ssh::{Bridge, Tunnel};
use nix::sys::socket::{getsockopt, sockopt};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// What a session reads from: readable, and pollable for "is anything
/// there yet".
pub trait Source: Read + AsFd + Send {}

impl<T: Read + AsFd + Send> Source for T {}

/// The two directions of a session, and what they lead to.
pub struct Transport {
    /// Replies come from here.
    pub reader: Box<dyn Source>,
    /// Requests go here.
    pub writer: Box<dyn Write + Send>,
    /// What is at the other end.
    pub link: Link,
}

/// The far end of a transport: its name for messages, and for a tunnel
/// the ssh child that can tell why it ended.
pub struct Link {
    /// The socket file, or the remote process.
    pub peer: Peer,
    tunnel: Option<Tunnel>,
    /// The local process that listens on the socket (`SO_PEERCRED`).
    pid: Option<i32>,
}

impl Transport {
    /// A connected local socket; its own timeouts are already set.
    pub fn socket(connection: Connection) -> Result<Transport, Error> {
        let pid = getsockopt(&connection.stream, sockopt::PeerCredentials)
            .ok()
            .map(|credentials| credentials.pid());
        let writer = connection.stream.try_clone().map_err(|err| {
            Error::io(
                format!("use the connection to {}", connection.path.display()),
                err,
            )
        })?;
        Ok(Transport {
            reader: Box::new(connection.stream),
            writer: Box::new(writer),
            link: Link {
                pid,
                peer: Peer::Socket(connection.path),
                tunnel: None,
            },
        })
    }

    /// A remote bridge to the manhole of `pid` there.
    pub fn bridge(bridge: Bridge, pid: i32) -> Transport {
        Transport {
            reader: Box::new(bridge.stdout),
            writer: Box::new(bridge.stdin),
            link: Link {
                peer: Peer::Remote { pid },
                tunnel: Some(bridge.tunnel),
                pid: None,
            },
        }
    }
}

impl Link {
    /// Why the server closed the connection before its first byte: the
    /// process is gone (it died while answering), or else a live manhole
    /// refused us, which it does to any user but its own.
    pub fn closed_without_a_byte(&self) -> Error {
        if let Some(pid) = self.pid {
            // Descriptors close early in a process's exit: give it a moment
            // to become a zombie, or to vanish.
            let deadline = std::time::Instant::now() + Duration::from_millis(300);
            loop {
                if !crate::procfs::runs(pid) {
                    return Error::Exited { pid };
                }
                if std::time::Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Error::Refused {
            peer: self.peer.clone(),
        }
    }

    /// Why the stream ended or failed, when the far end can say more than
    /// the stream itself: for a tunnel, ssh's failure, waiting at most
    /// `wait` for it to exit. `None` for a socket, and for a tunnel whose
    /// remote side ended normally (then the session itself ended).
    pub fn failure(&mut self, wait: Duration) -> Option<Error> {
        self.tunnel.as_mut()?.failure(wait)
    }
}
