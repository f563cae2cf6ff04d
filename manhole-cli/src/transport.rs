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
}

impl Transport {
    /// A connected local socket; its own timeouts are already set.
    pub fn socket(connection: Connection) -> Result<Transport, Error> {
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
            },
        }
    }
}

impl Link {
    /// Why the stream ended or failed, when the far end can say more than
    /// the stream itself: for a tunnel, ssh's failure, waiting at most
    /// `wait` for it to exit. `None` for a socket, and for a tunnel whose
    /// remote side ended normally (then the session itself ended).
    pub fn failure(&mut self, wait: Duration) -> Option<Error> {
        self.tunnel.as_mut()?.failure(wait)
    }
}
