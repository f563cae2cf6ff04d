//! Who may connect, and what happens to the socket file: permissions, stale
//! sockets, things in the way, exit, uninstall and reinstall.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use support::{is_socket, scratch, Service};

#[test]
fn the_socket_is_private_to_its_user() {
    let service = Service::start();
    let meta = std::fs::symlink_metadata(&service.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    // The staging directory goes just after the socket is renamed into
    // place: it must not stay behind.
    let staging = || -> Vec<String> {
        std::fs::read_dir("/tmp")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(&format!(".manhole-{}-", service.pid)))
            .collect()
    };
    support::wait_until("the staging directory to be removed", || {
        staging().is_empty()
    });
}

#[test]
fn the_pid_is_filled_into_a_socket_path_pattern() {
    let pattern = std::env::temp_dir().join("manhole-pattern-{pid}.sock");
    let mut service = Service::spawn("embedded", &[pattern.to_str().unwrap()], None);
    let expected = std::env::temp_dir().join(format!("manhole-pattern-{}.sock", service.pid));
    service.socket = expected.clone();
    service.wait_for_stdout(&format!("listening on {}", expected.display()));
    assert!(is_socket(&expected));
}

#[test]
fn a_stale_socket_is_replaced() {
    let path = scratch("stale");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path));
    let service = Service::spawn("embedded", &[path.to_str().unwrap()], Some(&path));
    service.wait_for_stdout("listening on");
    assert_eq!(service.text().ask("get LINES_READ"), "0\n");
}

fn refused(path: &Path, expected: &str) {
    let mut service = Service::spawn("embedded", &[path.to_str().unwrap()], None);
    let status = service.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", service.stdout());
    service.wait_for_stdout(expected);
}

#[test]
fn a_regular_file_is_refused_and_kept() {
    let path = scratch("regular");
    std::fs::write(&path, "precious").unwrap();
    refused(
        &path,
        "is a regular file; the manhole replaces only a stale socket of its own user",
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_symlink_is_never_followed() {
    let target = scratch("symlink-target");
    let link = scratch("symlink");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    refused(&link, "is a symbolic link");
    assert!(!target.exists(), "nothing was created through the link");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_file(link).unwrap();
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let first = Service::start();
    refused(&first.socket, "another process is already listening on");
    assert_eq!(
        first.text().ask("add 1 1"),
        "2\n",
        "the first keeps serving"
    );
}

#[test]
fn a_path_too_long_for_a_socket_is_refused() {
    let long = format!("/tmp/{}", "x".repeat(110));
    refused(
        Path::new(&long),
        "is 115 bytes, longer than the 107 bytes a Unix socket address holds",
    );
}

#[test]
fn the_socket_is_removed_when_main_returns() {
    let mut service = Service::start();
    assert_eq!(service.text().ask("shutdown"), "stopping\n");
    assert!(service.wait_exit().success());
    assert!(!service.socket.exists(), "socket left behind");
    assert!(service.stdout().contains("service stopped"));
}

#[test]
fn the_socket_is_removed_on_process_exit() {
    let path = scratch("exit");
    let mut service = Service::spawn("embedded", &[path.to_str().unwrap()], Some(&path));
    service.wait_for_stdout("listening on");
    service.send_stdin("exit");
    assert!(service.wait_exit().success());
    assert!(
        !path.exists(),
        "socket left behind after std::process::exit"
    );
}

#[test]
fn uninstall_stops_everything_and_install_works_again() {
    let path = scratch("reinstall");
    let mut service = Service::spawn("embedded", &[path.to_str().unwrap()], Some(&path));
    let stdout = service.wait_for_stdout("second install refused");
    assert!(
        stdout.contains(&format!(
            "a manhole is already installed at {}; uninstall it before installing another",
            path.display()
        )),
        "{stdout}"
    );
    let mut open = service.text();
    assert_eq!(
        open.ask("get LINES_READ"),
        "0\n",
        "the first install keeps serving"
    );

    service.send_stdin("uninstall");
    service.wait_for_stdout("uninstalled: true");
    assert!(!path.exists(), "socket removed by uninstall");
    assert!(
        support::read_to_end(&mut open.stream).is_empty(),
        "open sessions are closed"
    );
    // The session thread may still be on its way out.
    support::wait_until("only the main thread to remain", || {
        std::fs::read_dir(format!("/proc/{}/task", service.pid))
            .unwrap()
            .count()
            == 1
    });

    service.send_stdin("install");
    support::wait_until("the second install", || {
        service.stdout().matches("listening on").count() == 2
    });
    assert_eq!(service.text().ask("get LINES_READ"), "2\n");
    service.close_stdin();
    assert!(service.wait_exit().success());
    assert!(!path.exists());
}

/// Forks a client that becomes `uid` and connects, sends `request` and
/// reports what it got as its exit code: 0 closed with zero bytes, 1 got
/// bytes, 2 read failed or timed out, 3 connect refused for permission, 4
/// other connect failure, 5 could not change uid, 6 reset with zero bytes
/// (Linux resets a Unix socket closed with unread data in it). Only async-signal-safe calls run in the
/// child, since the test process has other threads.
fn connect_as(uid: u32, path: &Path, request: &[u8]) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in addr.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the child only makes raw system calls on memory prepared
    // before the fork, then leaves with _exit.
    match unsafe { libc::fork() } {
        0 => unsafe {
            if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                libc::_exit(5);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                let code = if *libc::__errno_location() == libc::EACCES {
                    3
                } else {
                    4
                };
                libc::_exit(code);
            }
            libc::send(
                fd,
                request.as_ptr().cast(),
                request.len(),
                libc::MSG_NOSIGNAL,
            );
            let timeout = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let mut buf = [0u8; 64];
            match libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) {
                0 => libc::_exit(0),
                n if n > 0 => libc::_exit(1),
                _ if *libc::__errno_location() == libc::ECONNRESET => libc::_exit(6),
                _ => libc::_exit(2),
            }
        },
        -1 => panic!("fork failed"),
        child => {
            let deadline = std::time::Instant::now() + support::TIMEOUT;
            let mut status = 0;
            loop {
                // SAFETY: waiting for our own child with a valid status pointer.
                let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
                if done == child {
                    return libc::WEXITSTATUS(status);
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: killing and reaping our own child.
                    unsafe {
                        libc::kill(child, libc::SIGKILL);
                        libc::waitpid(child, &mut status, 0);
                    }
                    panic!("the client child did not finish");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn another_user_is_refused_with_zero_bytes() {
    if !support::running_as_root("changing to another uid") {
        return;
    }
    let service = Service::start();
    let nobody = 65534;
    // The 0600 file keeps another user out before the manhole sees it...
    assert_eq!(connect_as(nobody, &service.socket, b"help\n"), 3);
    // ...and when the file is opened up, SO_PEERCRED still refuses, in
    // either protocol, before a single byte is written.
    std::fs::set_permissions(&service.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let closed_without_a_byte = [0, 6];
    for request in [
        &b"help\n"[..],
        br#"{"jsonrpc":"2.0","id":1,"method":"list"}"#,
    ] {
        let outcome = connect_as(nobody, &service.socket, request);
        assert!(
            closed_without_a_byte.contains(&outcome),
            "outcome {outcome} for {request:?}"
        );
    }
    assert_eq!(connect_as(nobody, &service.socket, b""), 0);
    let stderr = service.wait_for_stderr("refused a connection");
    assert!(
        stderr.contains("(uid 65534): only the owner (uid 0) or root may connect"),
        "{stderr}"
    );
    assert_eq!(service.text().ask("add 1 1"), "2\n", "root is still served");
}

#[test]
fn a_socket_in_a_sticky_world_writable_directory_is_created_safely() {
    let directory = scratch("sticky");
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = directory.join("app.manhole");
    let service = Service::spawn("embedded", &[path.to_str().unwrap()], Some(&path));
    service.wait_for_stdout("listening on");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(is_socket(&path));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(service.text().ask("get LINES_READ"), "0\n");
    // The private staging directory is gone; only the socket is left.
    let entries: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(entries, ["app.manhole"]);
    drop(service);
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn a_socket_planted_by_another_user_is_never_removed() {
    if !support::running_as_root("giving a socket to another uid") {
        return;
    }
    let nobody = 65534;
    for live in [false, true] {
        let path = scratch(if live {
            "planted-live"
        } else {
            "planted-stale"
        });
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).unwrap();
        if !live {
            drop(listener);
        }
        refused(&path, "a socket owned by another user (uid 65534)");
        let meta = std::fs::symlink_metadata(&path).expect("the planted socket is kept");
        assert_eq!(meta.uid(), nobody);
        std::fs::remove_file(&path).unwrap();
    }
}

/// A process that is not dumpable serves only a peer with CAP_SYS_PTRACE,
/// as the kernel lets only such a peer trace it: its own user is refused
/// with zero bytes, and root is served.
#[test]
fn a_process_that_is_not_dumpable_serves_only_a_peer_that_may_trace_it() {
    if !support::running_as_root("running the service as another uid") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let nobody = 65534;
    let mut command = std::process::Command::new(support::example("crashy"));
    command
        .arg("panic-thread")
        .env_remove("MANHOLE")
        .uid(nobody)
        .gid(nobody);
    let service = Service::spawn_command(command, None);
    service.wait_for_socket();
    service.wait_for_stdout("ready");
    assert_eq!(
        connect_as(nobody, &service.socket, b"help\n"),
        1,
        "served while dumpable"
    );
    assert_eq!(service.text().ask("become_undumpable"), "0\n");
    for request in [
        &b"help\n"[..],
        br#"{"jsonrpc":"2.0","id":1,"method":"list"}"#,
    ] {
        let outcome = connect_as(nobody, &service.socket, request);
        assert!(
            [0, 6].contains(&outcome),
            "outcome {outcome} for {request:?}"
        );
    }
    assert_eq!(
        service.text().ask("become_undumpable"),
        "0\n",
        "root is still served"
    );
}
