//! The socket file: created safely, replaced only when stale, removed only
//! when it is still ours, and guarded by the peer's credentials.
//!
//! Creation never exposes the socket with loose permissions. It is bound in
//! a fresh private directory (mode 0700) next to the final path, set to 0600
//! there, and then moved into place with `renameat2(RENAME_NOREPLACE)` (or
//! `linkat`, which also never replaces), so that nothing that appears at the
//! path in the meantime is overwritten. Every step works relative to a
//! directory descriptor, so a symlink planted at the path is never followed.

use crate::error::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials, UnixCredentials};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The longest path a `sockaddr_un` holds, without its terminating NUL.
pub(crate) const MAX_PATH_LEN: usize = 107;

/// Which file the manhole created, so that it removes that file and never
/// one that replaced it.
#[derive(Debug)]
pub(crate) struct SocketFile {
    dir: OwnedFd,
    name: OsString,
    identity: (u64, u64),
}

impl SocketFile {
    /// Whether the path still names the file this manhole bound.
    pub(crate) fn in_place(&self) -> bool {
        fstatat(
            &self.dir,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|stat| identity(&stat) == self.identity)
    }

    /// The device and inode of the socket file bound.
    pub(crate) fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Removes the socket if the path still holds the file this manhole
    /// bound. Safe to call from `atexit`: no allocation, no panic.
    pub(crate) fn remove(&self) {
        if let Ok(stat) = fstatat(
            &self.dir,
            self.name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            if identity(&stat) == self.identity {
                let _ = unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

fn identity(stat: &nix::sys::stat::FileStat) -> (u64, u64) {
    #[allow(clippy::useless_conversion)]
    (u64::from(stat.st_dev), u64::from(stat.st_ino))
}

fn open_dir<Fd: AsFd>(at: Fd, path: &Path) -> nix::Result<OwnedFd> {
    openat(
        at,
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Creates the listening socket at `path`, replacing a stale socket of this
/// user and nothing else. The listener is non-blocking and close-on-exec.
pub(crate) fn bind(path: &Path) -> Result<(UnixListener, SocketFile), Error> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(Error::PathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    let Some(name) = path.file_name() else {
        return Err(Error::InvalidOption {
            option: "socket_path",
            reason: format!("{} does not name a file", path.display()),
        });
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = open_dir(nix::fcntl::AT_FDCWD, parent)
        .map_err(|err| Error::io("open the socket's directory", parent, err))?;
    clear_stale(&dir, name.as_ref(), path)?;

    let staging = Staging::create(&dir, parent)?;
    let listener = staging.bind(parent)?;
    fchmodat(
        &staging.fd,
        Staging::SOCKET,
        Mode::from_bits_truncate(0o600),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(|err| Error::io("set the permissions of", path, err))?;
    // Its identity is taken while only we can reach it; a rename keeps it.
    let stat = fstatat(
        &staging.fd,
        Staging::SOCKET,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|err| Error::io("inspect the new socket", path, err))?;
    staging.publish(&dir, name.as_ref(), path)?;
    drop(staging);
    listener
        .set_nonblocking(true)
        .map_err(|err| Error::io("configure the socket", path, err))?;
    Ok((
        listener,
        SocketFile {
            dir,
            name: name.to_owned(),
            identity: identity(&stat),
        },
    ))
}

/// Leaves the path free: absent, or a stale socket of ours now removed.
fn clear_stale(dir: &OwnedFd, name: &Path, path: &Path) -> Result<(), Error> {
    let stat = match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(err) => return Err(Error::io("inspect", path, err)),
    };
    let occupied = |found: String| Error::PathOccupied {
        path: path.to_owned(),
        found,
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    match kind {
        SFlag::S_IFSOCK => {}
        SFlag::S_IFLNK => return Err(occupied("a symbolic link".to_owned())),
        SFlag::S_IFDIR => return Err(occupied("a directory".to_owned())),
        SFlag::S_IFREG => return Err(occupied("a regular file".to_owned())),
        _ => return Err(occupied("a special file".to_owned())),
    }
    let me = nix::unistd::geteuid().as_raw();
    if stat.st_uid != me {
        return Err(occupied(format!(
            "a socket owned by another user (uid {})",
            stat.st_uid
        )));
    }
    // A non-blocking probe: a live server whose backlog is full, or that
    // never accepts, must not hang the install.
    match manhole_wire::probe(path) {
        Ok(()) | Err(Errno::EINPROGRESS) => Err(Error::InUse {
            path: path.to_owned(),
        }),
        Err(Errno::ECONNREFUSED) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(err) => Err(Error::io("remove the stale socket", path, err)),
        },
        Err(err) => Err(Error::io("probe the existing socket", path, err)),
    }
}

/// A private directory beside the final path, where the socket is bound
/// before anyone else can reach it. Removed, with anything left in it, on
/// drop.
struct Staging<'a> {
    parent: &'a OwnedFd,
    name: String,
    fd: OwnedFd,
}

impl<'a> Staging<'a> {
    const SOCKET: &'static str = "s";

    fn create(parent: &'a OwnedFd, parent_path: &Path) -> Result<Self, Error> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        for attempt in 0..64u32 {
            let name = format!(".manhole-{pid}-{nanos:x}-{attempt}");
            match mkdirat(parent, name.as_str(), Mode::S_IRWXU) {
                Ok(()) => {
                    let fd = open_dir(parent, Path::new(&name));
                    let staging = match fd {
                        Ok(fd) => Staging { parent, name, fd },
                        Err(err) => {
                            let _ = unlinkat(parent, name.as_str(), UnlinkatFlags::RemoveDir);
                            return Err(Error::io("open a staging directory in", parent_path, err));
                        }
                    };
                    return Ok(staging);
                }
                Err(Errno::EEXIST) => {}
                Err(err) => {
                    return Err(Error::io("create a staging directory in", parent_path, err))
                }
            }
        }
        Err(Error::io(
            "create a staging directory in",
            parent_path,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ))
    }

    /// Binds through the directory's own path when it fits in a socket
    /// address, and through `/proc/self/fd` when it does not.
    fn bind(&self, parent_path: &Path) -> Result<UnixListener, Error> {
        let direct = parent_path.join(&self.name).join(Self::SOCKET);
        let bind_path = if direct.as_os_str().as_bytes().len() <= MAX_PATH_LEN {
            direct
        } else {
            PathBuf::from(format!(
                "/proc/self/fd/{}/{}",
                self.fd.as_raw_fd(),
                Self::SOCKET
            ))
        };
        UnixListener::bind(&bind_path)
            .map_err(|err| Error::io("bind a socket in", parent_path, err))
    }

    /// Moves the socket to its final name, failing rather than replacing
    /// anything that appeared there since the stale check.
    fn publish(&self, dir: &OwnedFd, name: &Path, path: &Path) -> Result<(), Error> {
        let appeared = || Error::PathOccupied {
            path: path.to_owned(),
            found: "a file that appeared while the manhole was being installed".to_owned(),
        };
        match rename_noreplace(&self.fd, Self::SOCKET, dir, name) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => Err(appeared()),
            // Some filesystems cannot rename without replacing; a hard link
            // never replaces either.
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                match linkat(
                    &self.fd,
                    Self::SOCKET,
                    dir,
                    name,
                    nix::fcntl::AtFlags::empty(),
                ) {
                    Ok(()) => Ok(()),
                    Err(Errno::EEXIST) => Err(appeared()),
                    Err(err) => Err(Error::io("move the socket to", path, err)),
                }
            }
            Err(err) => Err(Error::io("move the socket to", path, err)),
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)` by its system call: nix offers it only on
/// glibc, and musl has no wrapper, but the kernel call is the same on both.
fn rename_noreplace(
    from_dir: &OwnedFd,
    from: &str,
    to_dir: &OwnedFd,
    to: &Path,
) -> nix::Result<()> {
    const RENAME_NOREPLACE: libc::c_uint = 1;
    let from = std::ffi::CString::new(from).map_err(|_| Errno::EINVAL)?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: two open directory descriptors and two NUL-terminated paths
    // that outlive the call; the kernel reads nothing else.
    let result = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            RENAME_NOREPLACE,
        )
    };
    Errno::result(result).map(drop)
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let _ = unlinkat(&self.fd, Self::SOCKET, UnlinkatFlags::NoRemoveDir);
        let _ = unlinkat(self.parent, self.name.as_str(), UnlinkatFlags::RemoveDir);
    }
}

/// The connecting process's credentials, from `SO_PEERCRED`.
pub(crate) fn peer_credentials(stream: &UnixStream) -> nix::Result<UnixCredentials> {
    getsockopt(stream, PeerCredentials)
}

/// Who may open a session: the process's own effective user, or root; and
/// while the process is not dumpable (a set-user-ID program, an
/// execute-only binary, `prctl(PR_SET_DUMPABLE, 0)`), only a peer with
/// `CAP_SYS_PTRACE`, as the kernel allows `ptrace` then. Read on every
/// accept, since a program may change it.
pub(crate) fn peer_allowed(credentials: &UnixCredentials) -> bool {
    let uid = credentials.uid();
    if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
        return false;
    }
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointer.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    dumpable == 1 || may_trace_anything(credentials)
}

/// Whether the peer holds `CAP_SYS_PTRACE` in its effective set
/// (`/proc/PID/status`) in this process's own user namespace: a
/// capability held in a user namespace of the peer's own (`unshare -Ur`)
/// counts for nothing here. A peer whose status cannot be read is judged
/// by its uid alone (root).
fn may_trace_anything(credentials: &UnixCredentials) -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    use std::os::unix::fs::MetadataExt as _;
    let user_namespace = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/user")).map(|meta| (meta.dev(), meta.ino()))
    };
    match (
        user_namespace("self"),
        user_namespace(&credentials.pid().to_string()),
    ) {
        (Ok(ours), Ok(theirs)) if ours == theirs => {}
        (Ok(_), Ok(_)) => return false,
        _ => return credentials.uid() == 0,
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", credentials.pid()));
    let effective = status.ok().and_then(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|bits| u64::from_str_radix(bits.trim(), 16).ok())
    });
    match effective {
        Some(bits) => bits & (1 << CAP_SYS_PTRACE) != 0,
        None => credentials.uid() == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("manhole-socket-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn socket_is_created_0600_and_staging_is_cleaned() {
        let dir = scratch("mode");
        let path = dir.join("m");
        let (_listener, file) = bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [OsString::from("m")]);
        file.remove();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let dir = scratch("stale");
        let path = dir.join("m");
        drop(UnixListener::bind(&path).unwrap());
        let (listener, file) = bind(&path).expect("stale socket replaced");
        assert!(matches!(bind(&path), Err(Error::InUse { .. })));
        drop(listener);
        file.remove();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn anything_else_is_left_alone() {
        let dir = scratch("occupied");
        let file = dir.join("file");
        std::fs::write(&file, "keep me").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        let subdir = dir.join("subdir");
        std::fs::create_dir(&subdir).unwrap();
        for (path, found) in [
            (&file, "a regular file"),
            (&link, "a symbolic link"),
            (&dangling, "a symbolic link"),
            (&subdir, "a directory"),
        ] {
            match bind(path) {
                Err(Error::PathOccupied { found: f, .. }) => {
                    assert_eq!(f, found, "{}", path.display())
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(!dir.join("nowhere").exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            4,
            "no staging left behind"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn long_paths_are_refused_and_long_directories_still_work() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert!(matches!(
            bind(&long),
            Err(Error::PathTooLong {
                len: 125,
                max: 107,
                ..
            })
        ));
        // The final path fits, but the staging path beside it would not:
        // binding goes through /proc/self/fd.
        let base = scratch("deep");
        let room = MAX_PATH_LEN - base.as_os_str().len() - 3;
        let deep = base.join("d".repeat(room));
        std::fs::create_dir(&deep).unwrap();
        let path = deep.join("m");
        assert_eq!(path.as_os_str().len(), MAX_PATH_LEN);
        let (_listener, file) = bind(&path).unwrap();
        UnixStream::connect(&path).unwrap();
        file.remove();
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn remove_spares_a_file_that_replaced_ours() {
        let dir = scratch("replaced");
        let path = dir.join("m");
        let (_listener, file) = bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        file.remove();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
