//! Connecting to a process in another user namespace as its own user.
//!
//! A manhole serves its own user and root, as it sees them: a client's uid
//! is translated into the server's user namespace, and one that namespace
//! does not map (root on the host, seen from a rootless container) arrives
//! as the overflow uid and is refused. So, as jattach does for the JVM, the
//! CLI connects from a child process that has joined the target's user
//! namespace and taken its uid and gid there. Only `connect` runs in the
//! child: the kernel records the peer's credentials at that moment, and the
//! socket itself is the parent's, shared across `fork`.
//!
//! Joining takes what the kernel asks for `setns`: root on the host, or
//! being the user that made the namespace (its owner). Anyone else gets an
//! error that says so; the server is never asked to loosen anything.

use crate::error::Error;
use crate::procfs::{self, Process};
use nix::errno::Errno;
use nix::sys::socket::UnixAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// `ioctl(NS_GET_OWNER_UID)`: the uid that made a user namespace.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The target's user namespace, and its user and group there: what the
/// connecting child becomes.
#[derive(Debug)]
pub struct Identity {
    namespace: OwnedFd,
    uid: u32,
    gid: u32,
}

/// Whether `process` runs in another user namespace than this CLI: its
/// namespace's inode when we may look (root, its own user), else its
/// `uid_map`, which anyone may read.
fn other_user_namespace(pid: i32) -> bool {
    let inode = |path: &str| std::fs::metadata(path).map(|meta| (meta.dev(), meta.ino()));
    match (
        inode("/proc/self/ns/user"),
        inode(&format!("/proc/{pid}/ns/user")),
    ) {
        (Ok(ours), Ok(theirs)) => ours != theirs,
        _ => id_map(pid, "uid_map") != id_map(std::process::id() as i32, "uid_map"),
    }
}

/// A `uid_map` or `gid_map` as read from here: `(inside, outside, count)`.
fn id_map(pid: i32, which: &str) -> Vec<(u32, u32, u32)> {
    std::fs::read_to_string(format!("/proc/{pid}/{which}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(|field| field.parse().ok());
            Some((fields.next()??, fields.next()??, fields.next()??))
        })
        .collect()
}

/// What `outside` (an id as seen here) is inside the namespace.
fn inside(map: &[(u32, u32, u32)], outside: u32) -> Option<u32> {
    map.iter()
        .find_map(|&(first_inside, first_outside, count)| {
            let offset = outside.checked_sub(first_outside)?;
            (offset < count).then(|| first_inside + offset)
        })
}

/// The uid that made the user namespace `namespace` is.
fn owner_of(namespace: &OwnedFd) -> Option<u32> {
    let mut owner: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t into `owner`.
    let done = unsafe { libc::ioctl(namespace.as_raw_fd(), NS_GET_OWNER_UID as _, &mut owner) };
    (done == 0).then_some(owner)
}

/// The process's effective gid, as seen here (`Gid:`'s second field).
fn effective_gid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Gid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// For a process of another user: `Ok` when it runs in another user
/// namespace that this user made (whose owner acts as its users), else the
/// error to give, which explains the namespace when there is one.
///
/// # Errors
///
/// [`Error::UserNamespace`] for a process in a namespace this user did not
/// make; `not_yours` otherwise.
pub fn owner_may_act(process: &Process, me: u32, not_yours: Error) -> Result<(), Error> {
    if !other_user_namespace(process.pid) {
        return Err(not_yours);
    }
    let owner = std::fs::File::open(format!("/proc/{}/ns/user", process.pid))
        .ok()
        .map(OwnedFd::from)
        .and_then(|namespace| owner_of(&namespace));
    if owner == Some(me) {
        return Ok(());
    }
    Err(Error::UserNamespace {
        pid: process.pid,
        name: process.name.clone(),
        reason: cannot_join(process.pid, owner, me),
    })
}

fn cannot_join(pid: i32, owner: Option<u32>, me: u32) -> String {
    format!(
        "the namespace was made by {}, and you are {}: only root on the host or that user may join it (CAP_SYS_ADMIN over it) and act as pid {pid}'s user there; or run manhole-cli inside the container",
        owner.map_or_else(|| "another user".to_owned(), procfs::describe_uid),
        procfs::describe_uid(me),
    )
}

/// The identity to connect as, when `process` runs in another user
/// namespace that does not see this user as one its manhole serves (its
/// own user, or root); `None` when a plain connection will do.
///
/// # Errors
///
/// [`Error::UserNamespace`] when the namespace must be joined and this user
/// may not: not root, nor the user that made it.
pub fn needed(process: &Process, me: u32) -> Result<Option<Identity>, Error> {
    let pid = process.pid;
    if !other_user_namespace(pid) {
        return Ok(None);
    }
    let uid_map = id_map(pid, "uid_map");
    let their_uid = inside(&uid_map, process.euid);
    let seen_as = inside(&uid_map, me);
    if seen_as.is_some_and(|seen| seen == 0 || Some(seen) == their_uid) {
        return Ok(None);
    }
    let refused = |reason: String| Error::UserNamespace {
        pid,
        name: process.name.clone(),
        reason,
    };
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map(OwnedFd::from)
        .map_err(|err| refused(format!("its namespace cannot be opened ({err})")))?;
    let owner = owner_of(&namespace);
    if me != 0 && owner != Some(me) {
        return Err(refused(cannot_join(pid, owner, me)));
    }
    let (Some(uid), Some(gid)) = (
        their_uid,
        effective_gid(pid).and_then(|gid| inside(&id_map(pid, "gid_map"), gid)),
    ) else {
        return Err(refused(
            "its user or group is not in the namespace's maps".to_owned(),
        ));
    };
    Ok(Some(Identity {
        namespace,
        uid,
        gid,
    }))
}

/// How the joining child ended.
const JOIN_REFUSED: i32 = 200;
const GROUP_REFUSED: i32 = 201;
const USER_REFUSED: i32 = 202;

/// Connects `socket` to `address` from a child that has joined the
/// identity's user namespace as its user. The child calls only
/// async-signal-safe functions, since this process may have threads.
///
/// # Errors
///
/// The `connect` error as the child got it, or [`Error::UserNamespace`]
/// when the child could not become the target's user.
pub fn connect_as(
    identity: &Identity,
    socket: RawFd,
    address: &UnixAddr,
    process: &Process,
) -> Result<Result<(), Errno>, Error> {
    use nix::sys::socket::SockaddrLike as _;
    let (namespace, uid, gid) = (identity.namespace.as_raw_fd(), identity.uid, identity.gid);
    // SAFETY: the child only makes system calls and exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(Error::io("fork", std::io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: plain system calls on descriptors and ids of ours; the
        // address outlives them; `_exit` ends the child at once.
        unsafe {
            let code = if libc::setns(namespace, libc::CLONE_NEWUSER) != 0 {
                JOIN_REFUSED
            } else {
                // Supplementary groups are cleared where the namespace
                // allows it; they play no part in the peer check.
                libc::setgroups(0, std::ptr::null());
                if libc::setresgid(gid, gid, gid) != 0 {
                    GROUP_REFUSED
                } else if libc::setresuid(uid, uid, uid) != 0 {
                    USER_REFUSED
                } else if libc::connect(socket, address.as_ptr().cast(), address.len()) != 0 {
                    *libc::__errno_location()
                } else {
                    0
                }
            };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child just made.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0 {
        if Errno::last() != Errno::EINTR {
            return Err(Error::io(
                "wait for the connecting child",
                std::io::Error::last_os_error(),
            ));
        }
    }
    let failed = |what: &str| Error::UserNamespace {
        pid: process.pid,
        name: process.name.clone(),
        reason: format!("{what} (uid {uid}, gid {gid} there) was refused"),
    };
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(Ok(())),
        Some(JOIN_REFUSED) => Err(failed("joining it")),
        Some(GROUP_REFUSED) => Err(failed("taking its group")),
        Some(USER_REFUSED) => Err(failed("taking its user")),
        Some(errno) => Ok(Err(Errno::from_raw(errno))),
        None => Err(failed("the connecting child died")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_their_range_only() {
        let map = [(0, 100_000, 65_536), (70_000, 1000, 1)];
        assert_eq!(inside(&map, 100_000), Some(0));
        assert_eq!(inside(&map, 165_535), Some(65_535));
        assert_eq!(inside(&map, 165_536), None);
        assert_eq!(inside(&map, 1000), Some(70_000));
        assert_eq!(inside(&map, 0), None);
    }
}
