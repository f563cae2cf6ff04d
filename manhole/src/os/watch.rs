//! Notices when the socket file is deleted or moved away (tmp cleaners do
//! this), so the listener can put it back. The listener polls the watch
//! alongside its socket: there are no periodic wake-ups while idle.
//!
//! The watch is on the socket file's own inode, not on its directory, so
//! that files coming and going beside it (a busy `/tmp`) wake nothing:
//! `IN_ATTRIB` fires when its link count drops (an unlink), `IN_MOVE_SELF`
//! when it is renamed, `IN_DELETE_SELF` when it is gone. An event only says
//! "look": the listener then checks that the path still names the file it
//! bound, since a `chmod` raises `IN_ATTRIB` too.

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

pub(crate) struct SocketWatch {
    inotify: Inotify,
}

impl SocketWatch {
    /// Watches the file at `path` itself (not a link to it).
    pub(crate) fn new(path: &Path) -> nix::Result<SocketWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            path,
            AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_DONT_FOLLOW,
        )?;
        Ok(SocketWatch { inotify })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads the pending events: `true` when there were any, and the
    /// file may have gone.
    pub(crate) fn drain(&self) -> bool {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
        }
        any
    }
}
