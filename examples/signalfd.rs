//! A service that takes SIGTERM through a `signalfd`, as many daemons do,
//! with a manhole beside it. The manhole's threads block every asynchronous
//! signal (the `sigmask` option, on by default), so SIGTERM always waits for
//! the signalfd instead of killing the process from a manhole thread.
//!
//! ```text
//! cargo run --example signalfd &
//! kill -TERM $!                     # prints "got SIGTERM through signalfd"
//! ```

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[manhole::main]
fn main() {
    // After the manhole is installed, as `#[manhole::main]` does it: the
    // manhole's thread did not inherit this mask, and blocks signals itself.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.thread_block().expect("block SIGTERM");
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).expect("create a signalfd");
    println!("pid {} waiting for SIGTERM", std::process::id());
    match signals.read_signal() {
        Ok(Some(info)) if info.ssi_signo == Signal::SIGTERM as u32 => {
            println!("got SIGTERM through signalfd")
        }
        other => println!("unexpected: {other:?}"),
    }
}
