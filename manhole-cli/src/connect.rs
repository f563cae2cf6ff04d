//! From a pid or a path to a checked, connected stream.
//!
//! Nothing is connected to before its owner is checked: the socket file must
//! belong to the process's effective user, and that must be us unless we
//! are root. A socket another user may have planted is never trusted. After
//! connecting, the listening process's credentials (`SO_PEERCRED`) must
//! agree with the file's owner, in case the file changed in between.

use crate::args::SignalSpec;
use crate::discover::{self, Listening};
use crate::error::Error;
use crate::procfs::{self, Process};
use crate::userns::{self, Identity};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A connected socket, and what it was reached as.
#[derive(Debug)]
pub struct Connection {
    /// The stream, blocking, with `--timeout` on every read and write.
    pub stream: UnixStream,
    /// The socket file.
    pub path: PathBuf,
}

/// How often a socket that is not there yet is looked for again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn root() -> bool {
    me() == 0
}

/// The process `pid`, if it exists and is ours (or we are root).
pub fn owned_process(pid: i32) -> Result<Process, Error> {
    let process = Process::read(pid).ok_or(Error::NoSuchProcess { pid })?;
    if !root() && process.euid != me() {
        // The user that made a container's user namespace acts as its
        // users.
        let not_yours = Error::NotYours {
            pid,
            name: process.name.clone(),
            owner: procfs::describe_uid(process.euid),
            me: procfs::describe_uid(me()),
        };
        userns::owner_may_act(&process, me(), not_yours)?;
    }
    Ok(process)
}

/// Connects to the manhole of `pid`.
pub fn to_pid(pid: i32, timeout: Duration) -> Result<Connection, Error> {
    let process = owned_process(pid)?;
    let Some(path) = discover::socket_of(&process, &Listening::fetch()) else {
        return Err(no_socket(&process));
    };
    to_socket_of(&process, path, timeout)
}

/// Connects to the socket that `list` found for `pid`, with the checks
/// that [`to_pid`] makes.
pub fn to_listed(pid: i32, path: &Path, timeout: Duration) -> Result<Connection, Error> {
    to_socket_of(&owned_process(pid)?, path.to_owned(), timeout)
}

fn to_socket_of(process: &Process, path: PathBuf, timeout: Duration) -> Result<Connection, Error> {
    let (_, file) = check_file(&path, Some(process))?;
    let identity = userns::needed(process, me())?;
    let joining = identity.as_ref().map(|identity| (identity, process));
    let stream = dial(&path, &file, Instant::now() + timeout, timeout, joining)?;
    check_peer(&stream, &path, process.euid)?;
    Ok(Connection { stream, path })
}

/// Sends `signal` to `pid`, then waits for its manhole to accept.
pub fn to_pid_after_signal(
    pid: i32,
    signal: SignalSpec,
    timeout: Duration,
) -> Result<Connection, Error> {
    let process = owned_process(pid)?;
    if !process.handles(signal.0) {
        return Err(Error::SignalNotHandled {
            pid,
            name: process.name.clone(),
            signal: signal.name(),
            action: default_action(signal.0),
        });
    }
    let identity = userns::needed(&process, me())?;
    let joining = identity.as_ref().map(|identity| (identity, &process));
    send_signal(pid, signal)?;
    let deadline = Instant::now() + timeout;
    loop {
        if !procfs::exists(pid) {
            return Err(Error::NoSuchProcess { pid });
        }
        if let Some(path) = discover::socket_of(&process, &Listening::fetch()) {
            let (_, file) = check_file(&path, Some(&process))?;
            match dial(&path, &file, deadline, timeout, joining) {
                Ok(stream) => {
                    check_peer(&stream, &path, process.euid)?;
                    return Ok(Connection { stream, path });
                }
                // Not there yet, or an old socket the manhole is about to
                // replace.
                Err(Error::Stale { .. } | Error::NoSuchPath { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                doing: format!(
                    "waiting for pid {pid} ({}) to open its manhole after {signal} (is {signal} its activate_on or oneshot_on signal?)",
                    process.name,
                    signal = signal.name(),
                ),
                timeout,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Connects to a socket path given on the command line: it must be a
/// socket that we own (or we are root).
pub fn to_path(path: &Path, timeout: Duration) -> Result<Connection, Error> {
    let (owner, file) = check_file(path, None)?;
    let stream = dial(path, &file, Instant::now() + timeout, timeout, None)?;
    check_peer(&stream, path, owner)?;
    Ok(Connection {
        stream,
        path: path.to_owned(),
    })
}

fn no_socket(process: &Process) -> Error {
    Error::NoSocket {
        pid: process.pid,
        default: process
            .path_of(&discover::default_path(process.own_pid))
            .display()
            .to_string(),
        name: process.name.clone(),
        hint: if let Some(unreachable) = listening_out_of_reach(process) {
            unreachable
        } else if process.has_manhole_thread() {
            format!("it has a dormant `manhole` thread, so its manhole waits for a signal: try `manhole-cli -s USR1 {}` with the signal it was given (MANHOLE=activate_on=... or oneshot_on=...)", process.pid)
        } else {
            "it may wait for a signal (try `-s USR1`), or have no manhole at all (MANHOLE=off, or not built with one)".to_owned()
        },
    }
}

/// Why a manhole socket the process does listen on (as its own mount
/// namespace names it) could not be reached from here, when it does:
/// then the advice is not to wake a manhole that is already open.
fn listening_out_of_reach(process: &Process) -> Option<String> {
    let socket = process
        .listening_unix_sockets()
        .into_iter()
        .find(|socket| socket.listening && socket.bound.to_string_lossy().contains("manhole"))?;
    // The manhole binds in a staging directory and renames the socket
    // into place: the default name, when it was staged beside it.
    let own = match procfs::staging_parent(&socket.bound) {
        Some(dir) => {
            let default = discover::default_path(process.own_pid);
            if default.parent() == Some(dir.as_path()) {
                default
            } else {
                dir
            }
        }
        None => socket.bound,
    };
    let seen = process.path_of(&own);
    let why = match procfs::lstat_seen(&seen) {
        Err(err) => err.to_string(),
        Ok(_) => "it was renamed or replaced since it was bound".to_owned(),
    };
    Some(format!(
        "it listens on {} in its own mount namespace, but {} cannot be reached from here ({why}); a container's files are reached through /proc/{}/root, which takes the process's own user or root (CAP_SYS_PTRACE); or run manhole-cli inside the container",
        own.display(),
        seen.display(),
        process.pid,
    ))
}

/// What a signal's default action does to a process that has no handler.
fn default_action(signal: i32) -> &'static str {
    match signal {
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => "stop",
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => "do nothing to",
        _ => "kill",
    }
}

fn send_signal(pid: i32, signal: SignalSpec) -> Result<(), Error> {
    let failed = |source| Error::Signal {
        pid,
        signal: signal.name(),
        source,
    };
    match nix::sys::signal::Signal::try_from(signal.0) {
        Ok(known) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), known).map_err(failed),
        // Realtime signals have no `Signal` variant.
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        Err(_) => match unsafe { libc::kill(pid, signal.0) } {
            0 => Ok(()),
            _ => Err(failed(Errno::last())),
        },
    }
}

/// Checks the socket file before anything connects to it, and returns its
/// owner. With a process, the owner must be the process's effective user;
/// without, it must be us. Either way, unless we are root, it must be us.
fn check_file(path: &Path, process: Option<&Process>) -> Result<(u32, OwnedFd), Error> {
    let not_found = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchPath {
            path: path.to_owned(),
        },
        _ => Error::io(format!("inspect {}", path.display()), err),
    };
    // The file checked is the file connected to: opened once, in its
    // process's root when it is seen through one.
    let file = procfs::open_seen(path, OFlag::O_PATH | OFlag::O_NOFOLLOW).map_err(not_found)?;
    let file = std::fs::File::from(file);
    let meta = file.metadata().map_err(not_found)?;
    let file = OwnedFd::from(file);
    let kind = meta.file_type();
    if !kind.is_socket() {
        return Err(Error::NotASocket {
            path: path.to_owned(),
            kind: if kind.is_symlink() {
                "a symbolic link (give the socket's own path)"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_file() {
                "a regular file"
            } else {
                "a special file"
            },
        });
    }
    let file_uid = meta.uid();
    if let Some(process) = process {
        if file_uid != process.euid {
            return Err(Error::PlantedSocket {
                path: path.to_owned(),
                file_uid,
                pid: process.pid,
                process_uid: process.euid,
            });
        }
    }
    if !root() && file_uid != me() {
        return Err(Error::NotYourSocket {
            path: path.to_owned(),
            file_uid,
            me: me(),
        });
    }
    Ok((file_uid, file))
}

/// The listening process must run as the file's owner (or be root).
fn check_peer(stream: &UnixStream, path: &Path, expected_uid: u32) -> Result<(), Error> {
    let peer = getsockopt(stream, sockopt::PeerCredentials).map_err(|err| {
        Error::io(
            format!("read the credentials of {}", path.display()),
            err.into(),
        )
    })?;
    if peer.uid() == expected_uid || peer.uid() == 0 {
        Ok(())
    } else {
        Err(Error::UnexpectedPeer {
            path: path.to_owned(),
            peer_uid: peer.uid(),
            expected_uid,
        })
    }
}

/// Connects to the socket `file` (opened and checked as `path`) without
/// blocking, retrying while the listener's backlog is full (a Unix socket
/// says `EAGAIN` then, and cannot be polled for it), until `deadline`;
/// from inside the target's user namespace, as its user, when `joining`
/// says so. The stream it returns blocks, with `timeout` on every read and
/// write.
fn dial(
    path: &Path,
    file: &OwnedFd,
    deadline: Instant,
    timeout: Duration,
    joining: Option<(&Identity, &Process)>,
) -> Result<UnixStream, Error> {
    // Through the descriptor of the file checked, named `/proc/self/fd/N`:
    // no other file can take its place, and a path too long for
    // `sun_path` (a container's socket seen through `/proc/PID/root/...`)
    // is reached as well.
    let path_for_address = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let address = UnixAddr::new(&path_for_address).map_err(|err| {
        Error::io(
            format!("use {} as a socket address", path.display()),
            err.into(),
        )
    })?;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|err| Error::io("create a socket", err.into()))?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let connected = match joining {
            Some((identity, process)) => userns::connect_as(identity, raw, &address, process)?,
            None => connect(raw, &address),
        };
        match connected {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                let configure = |result: std::io::Result<()>| {
                    result.map_err(|err| {
                        Error::io(
                            format!("configure the connection to {}", path.display()),
                            err,
                        )
                    })
                };
                configure(stream.set_nonblocking(false))?;
                configure(stream.set_read_timeout(Some(timeout)))?;
                configure(stream.set_write_timeout(Some(timeout)))?;
                return Ok(stream);
            }
            Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Err(Errno::EAGAIN) => {
                return Err(Error::Timeout {
                    doing: format!("connecting to {} (its backlog stayed full)", path.display()),
                    timeout,
                })
            }
            Err(Errno::ECONNREFUSED) => {
                return Err(Error::Stale {
                    path: path.to_owned(),
                })
            }
            Err(Errno::ENOENT) => {
                return Err(Error::NoSuchPath {
                    path: path.to_owned(),
                })
            }
            Err(Errno::EINTR) => {}
            Err(err) => {
                return Err(Error::io(
                    format!("connect to {}", path.display()),
                    err.into(),
                ))
            }
        }
    }
}
