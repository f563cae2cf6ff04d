//! Finding a process's manhole socket.
//!
//! `/tmp/manhole-PID` comes first: it is the default path. Otherwise the
//! process's own listening Unix sockets are looked at: the inodes of the
//! `socket:[INODE]` links in `/proc/PID/fd`, matched with the listening rows
//! of `/proc/PID/net/unix`. A row shows the path the socket was bound to,
//! and the manhole binds in a staging directory `DIR/.manhole-*/s` before
//! it renames the file into `DIR`; sock_diag's inode of the bound file then
//! finds the file's present name in `DIR`. A socket counts as a manhole's
//! when its file name contains `manhole`, or when it was bound in a
//! manhole staging directory, so a custom `socket_path` is found too.

use crate::procfs::{self, Process};
use crate::sockdiag::{self, FileId};
use nix::fcntl::OFlag;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The identities of the files of every listening Unix socket, fetched once
/// per run; `None` when sock_diag is unavailable.
pub struct Listening(Option<HashMap<u64, FileId>>);

impl Listening {
    /// Asks the kernel.
    pub fn fetch() -> Listening {
        Listening(sockdiag::listening_files())
    }

    /// Whether some process listens on this socket file: `None` when the
    /// kernel could not say.
    pub fn is_listening(&self, file: FileId) -> Option<bool> {
        self.0
            .as_ref()
            .map(|files| files.values().any(|listening| *listening == file))
    }

    fn file_of(&self, inode: u64) -> Option<FileId> {
        self.0.as_ref()?.get(&inode).copied()
    }
}

/// The default socket path of a pid.
pub fn default_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/tmp/manhole-{pid}"))
}

/// The manhole socket of `process`: `/tmp/manhole-PID` when there is a
/// file there (its checks come later), else a listening socket of its own
/// that looks like a manhole's. A socket known to be listening is
/// preferred, so that a stale `/tmp/manhole-PID` left by an earlier process
/// with the same pid does not hide a live socket elsewhere.
pub fn socket_of(process: &Process, listening: &Listening) -> Option<PathBuf> {
    // In a container, the default is the process's own `/tmp/manhole-PID`,
    // under its own pid, in its own `/tmp`.
    let default = process.path_of(&default_path(process.own_pid));
    let default_meta = procfs::lstat_seen(&default).ok();
    if let Some(meta) = &default_meta {
        if listening.is_listening(FileId::of(meta)) != Some(false) {
            return Some(default);
        }
    }
    held_manhole_sockets(process, listening)
        .into_iter()
        .next()
        .or(default_meta.map(|_| default))
}

/// The manhole sockets `process` listens on, where their files are now.
pub fn held_manhole_sockets(process: &Process, listening: &Listening) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for socket in process.listening_unix_sockets() {
        // Bound in the process's own mount namespace: seen from here
        // through its root when that is another one.
        let staged_in = procfs::staging_parent(&socket.bound).map(|dir| process.path_of(&dir));
        let file = listening.file_of(socket.inode);
        let bound = process.path_of(&socket.bound);
        let Some(path) = present_path(&bound, staged_in.as_deref(), file) else {
            continue;
        };
        let named_like_a_manhole = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.contains("manhole"));
        if (named_like_a_manhole || staged_in.is_some()) && !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

/// Where the socket bound at `bound` is now: still there, or renamed into
/// the directory it was staged for.
fn present_path(bound: &Path, staged_in: Option<&Path>, file: Option<FileId>) -> Option<PathBuf> {
    if let Ok(meta) = procfs::lstat_seen(bound) {
        if meta.file_type().is_socket() && file.is_none_or(|file| FileId::of(&meta) == file) {
            return Some(bound.to_owned());
        }
    }
    let (dir, file) = (staged_in?, file?);
    let listing = procfs::open_seen(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY).ok()?;
    let mut listing = nix::dir::Dir::from_fd(listing).ok()?;
    let found = listing.iter().filter_map(Result::ok).find_map(|entry| {
        let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            return None;
        }
        let path = dir.join(name);
        let meta = procfs::lstat_seen(&path).ok()?;
        (meta.file_type().is_socket() && FileId::of(&meta) == file).then_some(path)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_renamed_out_of_a_staging_directory_is_found_where_it_is() {
        let dir = std::env::temp_dir().join(format!("manhole-cli-find-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let staging = dir.join(".manhole-1-ab-0");
        std::fs::create_dir_all(&staging).unwrap();
        let listener = UnixListener::bind(staging.join("s")).unwrap();
        std::fs::rename(staging.join("s"), dir.join("app.sock")).unwrap();
        std::fs::remove_dir(&staging).unwrap();
        let me = Process::read(std::process::id() as i32).unwrap();
        let listening = Listening::fetch();
        if listening.0.is_none() {
            eprintln!("skipped: the kernel has no sock_diag for Unix sockets here");
            return;
        }
        assert_eq!(
            held_manhole_sockets(&me, &listening),
            [dir.join("app.sock")]
        );
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
