//! `manhole-cli --stdio PID`: stdin and stdout joined to the process's
//! manhole socket, byte for byte, after the usual discovery and ownership
//! checks. It is what `--ssh` runs on the remote host, and it makes any
//! byte pipe a transport (`kubectl exec -i POD -- manhole-cli --stdio 1`).
//!
//! The server decides the protocol by the first byte it reads within
//! 50 ms of the connection. A client at the far end of ssh has written its
//! first request before this process even started, but it may still be on
//! the way; so the socket is connected only once stdin has something to
//! say, or after [`FIRST_BYTE_GRACE`] (a person typing at a text session,
//! who waits for its greeting).
//!
//! One thread polls both sides. It ends as soon as the server closes; when
//! stdin ends first, the socket's writing half is shut, as a pipe's end
//! is passed on, and the server's last words are relayed until it closes
//! too, or until it has been silent for `--timeout`.

use crate::connect::Connection;
use crate::error::Error;
use crate::pipe;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long stdin may stay silent before the socket is connected anyway.
pub const FIRST_BYTE_GRACE: Duration = Duration::from_secs(1);

/// Relays until either side closes. `open` finds, checks and connects the
/// socket; it runs once stdin has spoken, or after the grace.
pub fn run(
    open: impl FnOnce() -> Result<Connection, Error>,
    timeout: Duration,
) -> Result<(), Error> {
    let stdin = std::io::stdin();
    pipe::wait_ready(
        stdin.as_fd(),
        PollFlags::POLLIN,
        Instant::now() + FIRST_BYTE_GRACE,
    )
    .map_err(|err| Error::io("wait for input on stdin", err))?;
    let connection = open()?;
    relay(&connection, timeout)
}

fn relay(connection: &Connection, timeout: Duration) -> Result<(), Error> {
    let socket = &connection.stream;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stdin_open = true;
    // Reads from the socket are made only when poll says so; its read
    // timeout is for the writes' sake, and a read never waits on it.
    loop {
        let mut fds = Vec::with_capacity(2);
        fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let wait = if stdin_open {
            PollTimeout::NONE
        } else {
            // With no input left, only the server's answer is waited for.
            PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX)
        };
        let ready = match poll(&mut fds, wait) {
            Ok(0) => return Ok(()),
            Ok(_) => fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
                .collect::<Vec<bool>>(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(Error::io("wait for the socket or stdin", err.into())),
        };
        if ready[0] {
            let n = match (&*socket).read(&mut buffer) {
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == ErrorKind::WouldBlock => continue,
                // Reset by the server: it has ended the session.
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(());
            }
            if stdout
                .write_all(&buffer[..n])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // Whoever read stdout has gone: the session is over.
                return Ok(());
            }
        }
        if stdin_open && ready.get(1) == Some(&true) {
            let n = match nix::unistd::read(stdin.as_fd(), &mut buffer) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                // The server's end of input, as `socat` passes it on.
                let _ = socket.shutdown(Shutdown::Write);
                continue;
            }
            if let Err(err) = (&*socket).write_all(&buffer[..n]) {
                return match err.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(Error::Timeout {
                        doing: format!("writing to {}", connection.path.display()),
                        timeout,
                    }),
                    // The server has closed: so has the session.
                    _ => Ok(()),
                };
            }
        }
    }
}
