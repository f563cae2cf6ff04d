//! Notices when the socket file is deleted or moved away (tmp cleaners do
//! this), so the listener can put it back. The listener polls the watch
//! alongside its socket: there are no periodic wake-ups while idle.

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

pub(crate) struct SocketWatch {
    inotify: Inotify,
    name: OsString,
}

impl SocketWatch {
    /// Watches the directory that holds `path` for its removal.
    pub(crate) fn new(path: &Path) -> nix::Result<SocketWatch> {
        let name = path
            .file_name()
            .ok_or(nix::errno::Errno::EINVAL)?
            .to_owned();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(dir, AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)?;
        Ok(SocketWatch { inotify, name })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads the pending events: `true` when one of them removed the socket.
    pub(crate) fn socket_removed(&self) -> bool {
        let mut removed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            removed |= events
                .iter()
                .any(|event| event.name.as_ref() == Some(&self.name));
        }
        removed
    }
}
