//! Whether something listens on a socket path.

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Connects to `path` without blocking and without sending a byte, and
/// hangs up at once. `Ok` when something accepts there (a full backlog
/// counts: the listener is alive, only busy).
///
/// Connecting costs a `oneshot_on` manhole its one session, so prefer the
/// kernel's sock_diag where it can answer.
///
/// # Errors
///
/// The `connect` error: `ECONNREFUSED` for a socket file nobody listens
/// on, `ENOENT` for no file, `EINPROGRESS` for a connection still pending.
pub fn probe(path: &Path) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match connect(fd.as_raw_fd(), &UnixAddr::new(path)?) {
        Ok(()) | Err(Errno::EAGAIN) => Ok(()),
        Err(err) => Err(err),
    }
}
