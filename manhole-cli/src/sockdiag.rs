//! Which file each listening Unix socket is, from the kernel's sock_diag
//! netlink interface (`UNIX_DIAG_VFS`, what `ss -xle` shows as `ino:`).
//!
//! `/proc/net/unix` shows the address a socket was *bound* to, and the
//! manhole binds in a private staging directory and then renames the file
//! into place. The inode and device of the bound file survive the rename,
//! so they find the file where it is now.

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;
use std::collections::HashMap;
use std::os::fd::AsRawFd;

/// The file behind a bound socket: its inode and device, the device as
/// `(major, minor)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The inode of the socket file.
    pub ino: u64,
    /// The device, as `(major, minor)`.
    pub dev: (u64, u64),
}

impl FileId {
    /// The identity of a file from its metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let dev = meta.dev();
        FileId {
            ino: meta.ino(),
            dev: (nix::sys::stat::major(dev), nix::sys::stat::minor(dev)),
        }
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UNIX_DIAG_VFS: u16 = 1;
const NLMSG_HEADER: usize = 16;
const UNIX_DIAG_MSG: usize = 16;

/// Every listening Unix socket's file, by socket inode. `None` when the
/// kernel does not answer (no `unix_diag`, a seccomp filter): callers then
/// fall back to the paths in `/proc/net/unix`.
pub fn listening_files() -> Option<HashMap<u64, FileId>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    // The kernel answers at once; this only guards against a surprise.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0)).ok()?;

    let mut request = Vec::with_capacity(NLMSG_HEADER + 24);
    request.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    request.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    request.push(libc::AF_UNIX as u8); // sdiag_family
    request.push(0); // sdiag_protocol
    request.extend_from_slice(&0u16.to_ne_bytes()); // pad
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // udiag_states
    request.extend_from_slice(&0u32.to_ne_bytes()); // udiag_ino
    request.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes()); // udiag_show
    request.extend_from_slice(&[0u8; 8]); // udiag_cookie
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;

    let mut files = HashMap::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let len = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()).ok()?;
        if len == 0 {
            return None;
        }
        if parse_datagram(&buffer[..len], &mut files)? {
            return Some(files);
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Adds one datagram's sockets to `files`. `Some(true)` at the end of the
/// dump, `None` on an error or a malformed message.
fn parse_datagram(mut bytes: &[u8], files: &mut HashMap<u64, FileId>) -> Option<bool> {
    while bytes.len() >= NLMSG_HEADER {
        let len = u32_at(bytes, 0)? as usize;
        let kind = u16_at(bytes, 4)?;
        if len < NLMSG_HEADER || len > bytes.len() {
            return None;
        }
        match kind {
            NLMSG_DONE => return Some(true),
            NLMSG_ERROR => return None,
            SOCK_DIAG_BY_FAMILY => {
                let message = &bytes[NLMSG_HEADER..len];
                let inode = u64::from(u32_at(message, 4)?);
                if let Some(file) = vfs_attribute(message.get(UNIX_DIAG_MSG..)?) {
                    files.insert(inode, file);
                }
            }
            _ => {}
        }
        bytes = bytes.get(align4(len)..).unwrap_or_default();
    }
    Some(false)
}

/// The `UNIX_DIAG_VFS` attribute among a message's attributes.
fn vfs_attribute(mut attributes: &[u8]) -> Option<FileId> {
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0)?);
        let kind = u16_at(attributes, 2)?;
        if len < 4 || len > attributes.len() {
            return None;
        }
        if kind == UNIX_DIAG_VFS {
            let ino = u64::from(u32_at(attributes, 4)?);
            // The kernel's own dev_t: major in the top 12 bits.
            let dev = u32_at(attributes, 8)?;
            return Some(FileId {
                ino,
                dev: (u64::from(dev >> 20), u64::from(dev & 0xf_ffff)),
            });
        }
        attributes = attributes.get(align4(len)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_listening_socket_is_found_by_its_file_even_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("manhole-cli-diag-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let bound = dir.join("bound");
        let listener = UnixListener::bind(&bound).unwrap();
        let moved = dir.join("moved");
        std::fs::rename(&bound, &moved).unwrap();
        let identity = FileId::of(&std::fs::symlink_metadata(&moved).unwrap());
        let Some(files) = listening_files() else {
            eprintln!("skipped: the kernel has no sock_diag for Unix sockets here");
            return;
        };
        assert!(
            files.values().any(|file| *file == identity),
            "{identity:?} not among {files:?}"
        );
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
