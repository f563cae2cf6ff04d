//! Reads and writes that give up after a timeout, on descriptors that have
//! no timeout of their own: the pipes to a child such as ssh. (A socket
//! has `SO_RCVTIMEO` and `SO_SNDTIMEO`; a pipe has neither.)

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// One end of a pipe, switched to non-blocking, whose every read and write
/// waits at most `timeout` for the other end (`ErrorKind::TimedOut`).
#[derive(Debug)]
pub struct TimedPipe<T> {
    inner: T,
    timeout: Duration,
}

impl<T: AsFd> TimedPipe<T> {
    /// Takes `inner` over. Its descriptor must be its own open file (as a
    /// child's stdin or stdout pipe is): non-blocking mode is a property of
    /// the file, shared with every descriptor duplicated from it.
    pub fn new(inner: T, timeout: Duration) -> io::Result<TimedPipe<T>> {
        let flags = OFlag::from_bits_retain(fcntl(inner.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(inner.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(TimedPipe { inner, timeout })
    }
}

impl<T: AsFd> AsFd for TimedPipe<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: Read + AsFd> Read for TimedPipe<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.inner.read(buf) {
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if !wait_ready(self.inner.as_fd(), PollFlags::POLLIN, deadline)? {
                        return Err(ErrorKind::TimedOut.into());
                    }
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }
}

impl<T: Write + AsFd> Write for TimedPipe<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.inner.write(buf) {
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if !wait_ready(self.inner.as_fd(), PollFlags::POLLOUT, deadline)? {
                        return Err(ErrorKind::TimedOut.into());
                    }
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Waits until `fd` is ready for `events` (or has hung up, or failed: the
/// next read or write then says which), until `deadline`. `Ok(false)` when
/// the deadline passed first.
pub fn wait_ready(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) if left.is_zero() => return Ok(false),
            // A wait longer than one poll can express goes round again.
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Whether `fd` has something to read right now (data, or the end of the
/// stream), without waiting.
pub fn readable_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
    wait_ready(fd, PollFlags::POLLIN, Instant::now())
}

/// `left` as poll(2) takes it: whole milliseconds, rounded up so that a
/// wait never ends early, and at most `u16::MAX` of them per call.
fn poll_timeout(left: Duration) -> PollTimeout {
    let millis = left.as_nanos().div_ceil(1_000_000);
    PollTimeout::from(u16::try_from(millis).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_read_with_nothing_to_read_times_out() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut pipe = TimedPipe::new(ours, Duration::from_millis(50)).unwrap();
        let started = Instant::now();
        let err = pipe.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_read_returns_what_arrives_and_the_end() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut pipe = TimedPipe::new(ours, Duration::from_secs(5)).unwrap();
        assert!(!readable_now(pipe.as_fd()).unwrap());
        theirs.write_all(b"hi").unwrap();
        assert!(readable_now(pipe.as_fd()).unwrap());
        let mut buf = [0u8; 8];
        assert_eq!(pipe.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        drop(theirs);
        assert!(readable_now(pipe.as_fd()).unwrap(), "the end is readable");
        assert_eq!(pipe.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_write_that_cannot_proceed_times_out() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut pipe = TimedPipe::new(ours, Duration::from_millis(50)).unwrap();
        // Nobody reads: the buffer fills, then the write waits and gives up.
        let chunk = [0u8; 65536];
        let err = loop {
            if let Err(err) = pipe.write(&chunk) {
                break err;
            }
        };
        assert_eq!(err.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn a_poll_timeout_never_ends_a_wait_early() {
        assert_eq!(
            poll_timeout(Duration::from_micros(1)),
            PollTimeout::from(1u16)
        );
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::from(0u16));
        assert_eq!(
            poll_timeout(Duration::from_secs(100_000)),
            PollTimeout::from(u16::MAX)
        );
    }
}
