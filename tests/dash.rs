//! `manhole-cli PID dash` in a real pseudo-terminal against
//! `examples/tokio_service` (feature `tokio`): what it shows within 3 s,
//! `q`, the terminal given back, and a process that exits under it.

mod support;

use expectrl::{Eof, Session};
use std::process::Command;
use std::time::{Duration, Instant};
use support::Service;

fn dash(service: &Service) -> Session {
    let mut command = Command::new(support::cli());
    command
        .arg(service.pid.to_string())
        .arg("dash")
        .arg("--interval")
        .arg("500ms")
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let mut session = Session::spawn(command).expect("start manhole-cli dash on a terminal");
    session.set_expect_timeout(Some(Duration::from_secs(3)));
    session
}

/// Waits for the CLI to exit; its status.
fn exit_status(session: &mut Session) -> expectrl::WaitStatus {
    let deadline = Instant::now() + support::TIMEOUT;
    loop {
        let status = session.get_process().status().unwrap();
        if status != expectrl::WaitStatus::StillAlive {
            return status;
        }
        assert!(Instant::now() < deadline, "manhole-cli dash did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_dashboard_shows_threads_the_stuck_request_and_calls_and_q_restores_the_terminal() {
    let service = Service::spawn("tokio_service", &[], None);
    service.wait_for_socket();
    let mut session = dash(&service);
    // The alternate screen, then within 3 s: a worker thread, the stuck
    // request in the tasks pane, and a row of counted calls.
    session.expect("\x1b[?1049h").unwrap();
    // The first frame with answers draws the panes top to bottom: the
    // threads and tasks rows come before the calls pane's header.
    let first = session.expect("CALLS/S").unwrap();
    let drawn = String::from_utf8_lossy(first.before()).into_owned();
    // (An 80x24 terminal: a task's arguments are cut with `…` so that its
    // age and state keep their place.)
    for shown in [
        "tokio-rt-worker",
        "handle_request(",
        "fetch_backend(",
        "waiting",
    ] {
        assert!(drawn.contains(shown), "{shown} not in {drawn:?}");
    }
    session.expect("fetch_backend").unwrap();
    session.send("q").unwrap();
    // The terminal is given back: the alternate screen left.
    session.expect("\x1b[?1049l").unwrap();
    session.expect(Eof).unwrap();
    assert!(matches!(
        exit_status(&mut session),
        expectrl::WaitStatus::Exited(_, 0)
    ));
}

#[test]
fn the_dashboard_says_when_its_process_has_exited() {
    let service = Service::spawn("tokio_service", &[], None);
    service.wait_for_socket();
    let pid = service.pid;
    let mut session = dash(&service);
    session.expect("tokio-rt-worker").unwrap();
    // Killed and reaped.
    drop(service);
    session.set_expect_timeout(Some(support::TIMEOUT));
    session
        .expect(format!("process {pid} has exited").as_str())
        .unwrap();
    // It stays up to be read, and leaves on Ctrl-C.
    session.send(expectrl::ControlCode::EndOfText).unwrap();
    session.expect("\x1b[?1049l").unwrap();
    assert!(matches!(
        exit_status(&mut session),
        expectrl::WaitStatus::Exited(_, 0)
    ));
}

/// On an 80×24 terminal every pane keeps its names: the calls pane its
/// counted functions, the threads pane the workers.
#[test]
fn at_80_by_24_the_panes_keep_their_names() {
    let service = Service::spawn("tokio_service", &[], None);
    service.wait_for_socket();
    let mut session = dash(&service);
    session
        .get_process_mut()
        .set_window_size(80, 24)
        .expect("an 80x24 terminal");
    session.expect("\x1b[?1049h").unwrap();
    // Redrawn at the interval; within 3 s, a frame with both.
    session.expect("tokio-rt-worker").unwrap();
    session.expect("handle_request").unwrap();
    session.send("q").unwrap();
    session.expect("\x1b[?1049l").unwrap();
    assert!(matches!(
        exit_status(&mut session),
        expectrl::WaitStatus::Exited(_, 0)
    ));
}
