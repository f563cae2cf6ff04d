//! What `/proc` says about a process: who it runs as, its threads, the
//! sockets it holds, and which of them listen.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A process as `/proc/PID/status` describes it.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its id.
    pub pid: i32,
    /// `Name:`, the command name (at most 15 bytes).
    pub name: String,
    /// The effective uid, the second field of `Uid:`; a manhole serves
    /// this user (and root).
    pub euid: u32,
    /// `SigCgt:`, the signals it has a handler for, bit N-1 for signal N.
    pub caught_signals: u64,
    /// `SigIgn:`, the signals it ignores.
    pub ignored_signals: u64,
    /// Its pid in its own PID namespace (the last field of `NSpid:`), which
    /// names its default socket; `pid` itself outside a container.
    pub own_pid: i32,
    /// `/proc/PID/root` when it runs in another mount namespace than this
    /// CLI (a container, or a debug sidecar's view of one): its paths are
    /// reached through it.
    pub root: Option<PathBuf>,
}

impl Process {
    /// Reads `/proc/PID/status`; `None` when there is no such process.
    pub fn read(pid: i32) -> Option<Process> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |key: &str| {
            status.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .strip_prefix(':')
                    .map(|value| value.trim().to_owned())
            })
        };
        let mask = |key: &str| {
            field(key)
                .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
                .unwrap_or(0)
        };
        let own_pid = field("NSpid")
            .and_then(|pids| pids.split_whitespace().last()?.parse().ok())
            .unwrap_or(pid);
        Some(Process {
            pid,
            name: field("Name").unwrap_or_default(),
            euid: field("Uid")?.split_whitespace().nth(1)?.parse().ok()?,
            caught_signals: mask("SigCgt"),
            ignored_signals: mask("SigIgn"),
            own_pid,
            root: other_mount_namespace(pid).then(|| PathBuf::from(format!("/proc/{pid}/root"))),
        })
    }

    /// Whether it runs in another PID or mount namespace than this CLI.
    pub fn in_a_container(&self) -> bool {
        self.own_pid != self.pid || self.root.is_some()
    }

    /// A short name for its container, when it is in one: the last element
    /// of its cgroup path when that differs from ours (`docker-ID.scope`,
    /// a pod's container id), else its mount namespace (`mnt:[INODE]`).
    pub fn container_hint(&self) -> Option<String> {
        if !self.in_a_container() {
            return None;
        }
        let cgroup = |pid: &str| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            // cgroup v2's one line, `0::/PATH`, or v1's lines.
            let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
            Some(path.trim().to_owned())
        };
        let theirs = cgroup(&self.pid.to_string());
        if let Some(theirs) = theirs.filter(|theirs| Some(theirs) != cgroup("self").as_ref()) {
            if let Some(last) = theirs.rsplit('/').find(|part| !part.is_empty()) {
                return Some(last.to_owned());
            }
        }
        std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid))
            .ok()
            .map(|link| link.display().to_string())
    }

    /// Where a path of the process's own (`/tmp/manhole-1` in a container)
    /// is seen from here.
    pub fn path_of(&self, own: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(own.strip_prefix("/").unwrap_or(own)),
            None => own.to_owned(),
        }
    }

    /// Whether the process has a handler for `signal`, or ignores it.
    pub fn handles(&self, signal: i32) -> bool {
        let bit = u32::try_from(signal - 1)
            .ok()
            .and_then(|shift| 1u64.checked_shl(shift))
            .unwrap_or(0);
        (self.caught_signals | self.ignored_signals) & bit != 0
    }

    /// The names of its threads, from `/proc/PID/task/*/comm`.
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let comm = std::fs::read_to_string(task.ok()?.path().join("comm")).ok()?;
                Some(comm.trim_end_matches('\n').to_owned())
            })
            .collect()
    }

    /// Whether one of its threads is named `manhole`: the listener thread,
    /// which is all there is of an `activate_on`/`oneshot_on` manhole until
    /// its signal arrives.
    pub fn has_manhole_thread(&self) -> bool {
        self.thread_names().iter().any(|name| name == "manhole")
    }

    /// The executable's path, or the command name when it cannot be read
    /// (another user's process, a kernel thread).
    pub fn executable(&self) -> String {
        std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .map_or_else(|_| self.name.clone(), |path| path.display().to_string())
    }

    /// The inodes of the sockets it holds open (`socket:[INODE]` links in
    /// `/proc/PID/fd`); empty when they cannot be read.
    pub fn socket_inodes(&self) -> HashSet<u64> {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return HashSet::new();
        };
        fds.filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
    }

    /// The Unix sockets it listens on that are bound to a path: the
    /// address each was bound to, with its socket inode.
    pub fn listening_unix_sockets(&self) -> Vec<UnixSocket> {
        let held = self.socket_inodes();
        if held.is_empty() {
            return Vec::new();
        }
        // The process's own view, which is its network namespace's.
        let table = std::fs::read_to_string(format!("/proc/{}/net/unix", self.pid))
            .or_else(|_| std::fs::read_to_string("/proc/net/unix"))
            .unwrap_or_default();
        parse_net_unix(&table)
            .into_iter()
            .filter(|socket| socket.listening && held.contains(&socket.inode))
            .collect()
    }
}

/// Whether `pid` runs in another mount namespace than this process (the
/// inodes of the two `ns/mnt` links differ); `false` when that cannot be
/// read.
fn other_mount_namespace(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let inode = |path: String| std::fs::metadata(path).map(|meta| (meta.dev(), meta.ino()));
    match (
        inode("/proc/self/ns/mnt".to_owned()),
        inode(format!("/proc/{pid}/ns/mnt")),
    ) {
        (Ok(ours), Ok(theirs)) => ours != theirs,
        _ => false,
    }
}

/// Opens `path` with `flags` (`O_NOFOLLOW` among them, for the link
/// itself rather than its target). A path under a process's root, as
/// [`Process::path_of`] makes them (`/proc/PID/root/...`), is resolved
/// inside that root (`openat2` with `RESOLVE_IN_ROOT`): an absolute
/// symbolic link in a container (`/var/run -> /run`) names the
/// container's file, never one of the host.
///
/// # Errors
///
/// The `open` or `openat2` error, `NotFound` among them.
pub fn open_seen(path: &Path, flags: nix::fcntl::OFlag) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let flags = flags | OFlag::O_CLOEXEC;
    let Some((root, inside)) = split_root(path) else {
        return Ok(nix::fcntl::open(path, flags, Mode::empty())?);
    };
    let root = nix::fcntl::open(
        &root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match nix::fcntl::openat2(&root, inside, how) {
        // A kernel before 5.6: the path as it is.
        Err(nix::errno::Errno::ENOSYS) => Ok(nix::fcntl::open(path, flags, Mode::empty())?),
        opened => Ok(opened?),
    }
}

/// [`std::fs::symlink_metadata`], with the path resolved as [`open_seen`]
/// resolves it.
///
/// # Errors
///
/// As [`open_seen`], or `fstat`'s.
pub fn lstat_seen(path: &Path) -> std::io::Result<std::fs::Metadata> {
    use nix::fcntl::OFlag;
    std::fs::File::from(open_seen(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?).metadata()
}

/// `/proc/PID/root/REST` as (`/proc/PID/root`, `REST`), or `None`.
fn split_root(path: &Path) -> Option<(PathBuf, &Path)> {
    let mut components = path.components();
    let prefix = ["/", "proc"];
    for expected in prefix {
        if components.next()?.as_os_str() != expected {
            return None;
        }
    }
    let pid = components.next()?.as_os_str().to_str()?;
    if pid.is_empty() || !pid.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if components.next()?.as_os_str() != "root" {
        return None;
    }
    let inside = components.as_path();
    Some((PathBuf::from(format!("/proc/{pid}/root")), inside))
}

/// Whether a process with this pid exists.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` is a process that runs: not gone, not a zombie.
pub fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (name) S ...`: the state follows the name's last `)`.
        stat.rfind(')')
            .and_then(|close| stat[close + 1..].trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
    })
}

/// Every pid in `/proc`.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// One row of `/proc/net/unix` that has a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// The socket's inode (in sockfs, not the inode of the file).
    pub inode: u64,
    /// Whether it listens (`__SO_ACCEPTCON`, flag `00010000`).
    pub listening: bool,
    /// The path it was bound to. A later rename of the file is not seen
    /// here: the manhole binds in a staging directory and renames.
    pub bound: PathBuf,
}

const SO_ACCEPTCON: u32 = 1 << 16;

/// Parses `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode
/// Path`. Rows without a path, and abstract addresses (`@...`), are left
/// out.
pub fn parse_net_unix(table: &str) -> Vec<UnixSocket> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut rest = line;
            let mut fields = Vec::with_capacity(7);
            for _ in 0..7 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            // The path follows one space, and may itself contain spaces.
            let path = rest.strip_prefix(' ')?;
            if path.is_empty() || path.starts_with('@') {
                return None;
            }
            let flags = u32::from_str_radix(fields[3], 16).ok()?;
            Some(UnixSocket {
                inode: fields[6].parse().ok()?,
                listening: flags & SO_ACCEPTCON != 0,
                bound: PathBuf::from(path),
            })
        })
        .collect()
}

/// A uid as `name (uid N)`, or `uid N` when it has no name.
pub fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The user name of a uid, from the password database.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// The directory the manhole binds in before it renames the socket into
/// place: `DIR/.manhole-PID-NANOS-ATTEMPT/s`. Returns `DIR`.
pub fn staging_parent(bound: &Path) -> Option<PathBuf> {
    let staging = bound.parent()?;
    let name = staging.file_name()?.to_str()?;
    (name.starts_with(".manhole-") && bound.file_name()? == "s")
        .then(|| staging.parent().map(Path::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_process_root_is_split_off() {
        let split = |path: &str| {
            split_root(Path::new(path))
                .map(|(root, inside)| (root.display().to_string(), inside.display().to_string()))
        };
        assert_eq!(
            split("/proc/42/root/tmp/manhole-1"),
            Some(("/proc/42/root".to_owned(), "tmp/manhole-1".to_owned()))
        );
        assert_eq!(split("/proc/self/root/tmp/x"), None);
        assert_eq!(split("/proc/42/cwd/tmp/x"), None);
        assert_eq!(split("/tmp/manhole-42"), None);
    }

    #[test]
    fn net_unix_rows_are_parsed_with_their_paths() {
        let table = "\
Num       RefCount Protocol Flags    Type St Inode Path
000000008c3b811f: 00000003 00000000 00000000 0001 03 211126
00000000d178da32: 00000002 00000000 00010000 0001 01   633 /tmp/.manhole-9796-b94c828-0/s
00000000dfca949c: 00000002 00000000 00010000 0001 01 210947 @abstract
00000000f7eb2918: 00000003 00000000 00000000 0001 03 210049 /run/a path with spaces
";
        assert_eq!(
            parse_net_unix(table),
            [
                UnixSocket {
                    inode: 633,
                    listening: true,
                    bound: "/tmp/.manhole-9796-b94c828-0/s".into()
                },
                UnixSocket {
                    inode: 210049,
                    listening: false,
                    bound: "/run/a path with spaces".into()
                },
            ]
        );
    }

    #[test]
    fn the_staging_directory_names_the_final_directory() {
        assert_eq!(
            staging_parent(Path::new("/run/app/.manhole-12-ab-0/s")),
            Some(PathBuf::from("/run/app"))
        );
        assert_eq!(staging_parent(Path::new("/run/app/manhole.sock")), None);
        assert_eq!(staging_parent(Path::new("/run/.other-12/s")), None);
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let me = Process::read(std::process::id() as i32).unwrap();
        assert_eq!(me.euid, nix::unistd::geteuid().as_raw());
        assert!(!me.thread_names().is_empty());
        assert!(!me.has_manhole_thread());
        assert!(Process::read(i32::MAX).is_none());
    }
}
