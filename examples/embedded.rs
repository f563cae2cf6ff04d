//! The manhole without the attribute: `manhole::Options` and the `Handle`
//! it returns, for programs that cannot put `#[manhole::main]` on `main`.
//!
//! ```text
//! cargo run --example embedded -- /tmp/embedded-{pid}.manhole
//! ```
//!
//! It installs on the given path (`{pid}` is filled in), shows that a second
//! install is refused, then takes lines on stdin: `uninstall`, `install`,
//! `exit` (which calls `std::process::exit`), or end of input (which returns
//! from `main`). Either way out, the socket is removed.

use std::io::BufRead;

/// How many lines this program has read on stdin.
#[manhole::inspect]
static LINES_READ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn install(path: &str) -> Option<manhole::Handle> {
    match manhole::Options::new()
        .socket_path(path)
        .verbose(false)
        .install()
    {
        Ok(handle) => {
            println!("listening on {}", handle.socket_path().display());
            Some(handle)
        }
        Err(err) => {
            println!("error: {err}");
            None
        }
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: embedded SOCKET_PATH");
        std::process::exit(2);
    };
    let mut handle = install(&path);
    if handle.is_none() {
        std::process::exit(1);
    }
    if let Err(err) = manhole::Options::new().socket_path(&path).install() {
        println!("second install refused: {err}");
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        LINES_READ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match line.trim() {
            "uninstall" => {
                let path = handle.as_ref().map(|h| h.socket_path().to_owned());
                let stopped = handle.take().is_some_and(manhole::Handle::uninstall);
                println!("uninstalled: {stopped} ({path:?})");
            }
            "install" => handle = install(&path),
            "exit" => std::process::exit(0),
            other => println!("unknown input {other:?}; expected uninstall, install or exit"),
        }
    }
    println!("returning from main");
}
