//! Choosing the stack signal: a taken or non-realtime signal is refused at
//! install, the default takes the highest free one, and a stray signal from
//! outside is harmless. One test, since the signal is process-wide state.

use std::time::Duration;

extern "C" fn someone_elses_handler(_: libc::c_int) {}

fn install_foreign_handler(signal: libc::c_int) {
    // SAFETY: a valid, empty action with a handler that does nothing.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = someone_elses_handler as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

fn socket_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("manhole-signal-{}-{name}", std::process::id()))
}

#[test]
fn the_stack_signal_is_chosen_safely() {
    let taken = libc::SIGRTMIN() + 2;
    install_foreign_handler(taken);
    let err = manhole::Options::new()
        .socket_path(socket_path("taken"))
        .stack_signal(taken)
        .install()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot capture stacks with SIGRTMIN+2 ({taken}): already has a handler that is not the manhole's; choose another signal, or leave it unset to take the highest free one"
        )
    );
    assert!(
        !socket_path("taken").exists(),
        "nothing is created when the signal is refused"
    );

    let err = manhole::Options::new()
        .socket_path(socket_path("usr1"))
        .stack_signal(libc::SIGUSR1)
        .install()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("SIGUSR1: is not a realtime signal; choose one from SIGRTMIN"),
        "{err}"
    );

    // The highest realtime signal is taken by someone else too, so the
    // default takes the next one down.
    install_foreign_handler(libc::SIGRTMAX());
    let snapshot = manhole::stacks();
    let me = snapshot
        .threads
        .iter()
        .find(|t| t.tid == nix::unistd::gettid().as_raw());
    assert!(me.is_some_and(|t| !t.frames.is_empty()));

    let handle = manhole::Options::new()
        .socket_path(socket_path("ok"))
        .verbose(false)
        .install()
        .expect("the installed signal is reused");
    let err = manhole::Options::new()
        .socket_path(socket_path("other"))
        .stack_signal(libc::SIGRTMIN() + 5)
        .install()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("a manhole is already installed"),
        "{err}"
    );
    assert!(handle.uninstall());
    let err = manhole::Options::new()
        .socket_path(socket_path("other"))
        .stack_signal(libc::SIGRTMIN() + 5)
        .install()
        .unwrap_err();
    let chosen = libc::SIGRTMAX() - 1;
    assert_eq!(
        err.to_string(),
        format!(
            "cannot capture stacks with SIGRTMIN+5 ({}): stacks are already captured with SIGRTMIN+{} ({chosen}) in this process",
            libc::SIGRTMIN() + 5,
            chosen - libc::SIGRTMIN()
        )
    );

    // A stray signal from outside (SI_USER, not queued by the manhole) is
    // ignored rather than killing the process, as a realtime signal's
    // default action would.
    // SAFETY: sending a signal to this process, whose handler is installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), chosen) }, 0);
    std::thread::sleep(Duration::from_millis(50));
    let again = manhole::stacks();
    assert!(
        again
            .threads
            .iter()
            .all(|thread| thread.frames_missing.is_none()),
        "{again}"
    );
}
