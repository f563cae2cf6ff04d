//! Every thread of the process, with its name, state and frames.
//!
//! Threads are listed from `/proc/self/task`; each one's name and state come
//! from its `status` file. The calling thread's own frames come from
//! [`backtrace`]. Capturing *another* thread's frames needs an in-process
//! signal handshake that is not built yet, so those threads say exactly that
//! in [`ThreadStack::frames_missing`] rather than showing invented frames.

use serde::{Serialize, Serializer};
use std::fmt;

/// Why a thread other than the caller has no frames yet.
pub(crate) const NOT_CAPTURED: &str =
    "frames not captured: capturing another thread's stack in-process is not built yet";

/// A snapshot of every thread, as [`stacks()`] returns it.
///
/// Its `Display` form is what the text protocol's `stacks` command prints.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Stacks {
    /// The threads, in tid order (the main thread first).
    pub threads: Vec<ThreadStack>,
}

/// One thread of a [`Stacks`] snapshot.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ThreadStack {
    /// The kernel's thread id.
    pub tid: i32,
    /// The thread's name, as the kernel knows it (at most 15 bytes).
    pub name: String,
    /// The scheduler state from `/proc`: `running`, `sleeping`,
    /// `disk sleep`, `stopped`, `zombie`, ...
    pub state: String,
    /// The frames, innermost first. Empty when `frames_missing` says why.
    pub frames: Vec<Frame>,
    /// Why there are no frames, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_missing: Option<String>,
}

/// One stack frame. With inlining, several frames can share an address.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Frame {
    /// The demangled function name, when the symbol is known.
    pub function: Option<String>,
    /// The source file, when debug info has it.
    pub file: Option<String>,
    /// The source line, when debug info has it.
    pub line: Option<u32>,
    /// The instruction address.
    #[serde(serialize_with = "hex_address")]
    pub address: usize,
}

fn hex_address<S: Serializer>(address: &usize, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{address:#x}"))
}

/// Every thread of this process, with the calling thread's frames.
///
/// Other threads carry a [`ThreadStack::frames_missing`] reason until
/// in-process capture of their stacks lands. Threads that exit while the
/// snapshot is taken are left out.
#[must_use]
pub fn stacks() -> Stacks {
    let caller = nix::unistd::gettid().as_raw();
    // Captured here, directly under `stacks`, so that trimming the capture's
    // own frames leaves the caller as frame #0.
    let mut own_frames = Some(current_frames());
    let threads = thread_list()
        .into_iter()
        .map(|thread| {
            if thread.tid == caller {
                ThreadStack {
                    frames: own_frames.take().unwrap_or_default(),
                    ..thread
                }
            } else {
                ThreadStack {
                    frames_missing: Some(NOT_CAPTURED.to_owned()),
                    ..thread
                }
            }
        })
        .collect();
    Stacks { threads }
}

/// Every thread with its name and state, and no frames.
pub(crate) fn thread_list() -> Vec<ThreadStack> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids.into_iter()
        .filter_map(|tid| {
            // A thread that exited since the listing has no status any more.
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
            Some(ThreadStack {
                tid,
                name: status_field(&status, "Name").unwrap_or_default().to_owned(),
                state: state_word(status_field(&status, "State").unwrap_or("?")),
                frames: Vec::new(),
                frames_missing: None,
            })
        })
        .collect()
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// `S (sleeping)` → `sleeping`.
fn state_word(state: &str) -> String {
    match (state.find('('), state.rfind(')')) {
        (Some(open), Some(close)) if open < close => state[open + 1..close].to_owned(),
        _ => state.to_owned(),
    }
}

/// Loads the symbol tables once, so that the first `stacks` answer (and
/// the first greeting) does not pay for it. The listener thread calls this
/// before it starts accepting.
pub(crate) fn prime_symbols() {
    drop(current_frames());
}

fn current_frames() -> Vec<Frame> {
    let mut frames = Vec::new();
    backtrace::trace(|raw| {
        let address = raw.ip() as usize;
        let before = frames.len();
        backtrace::resolve_frame(raw, |symbol| {
            frames.push(Frame {
                function: symbol.name().map(|name| format!("{name:#}")),
                file: symbol.filename().map(|path| path.display().to_string()),
                line: symbol.lineno(),
                address,
            });
        });
        if frames.len() == before {
            frames.push(Frame {
                function: None,
                file: None,
                line: None,
                address,
            });
        }
        true
    });
    // Frame #0 should be the caller of `stacks()`, not the capture itself.
    let own = frames
        .iter()
        .take_while(|frame| {
            frame.function.as_deref().is_some_and(|name| {
                name.starts_with("backtrace::")
                    || name == "manhole::stacks::current_frames"
                    || name == "manhole::stacks::stacks"
            })
        })
        .count();
    frames.drain(..own);
    // Below the thread's entry point lie only the runtime's start-up frames,
    // which std's own short backtraces hide as well.
    if let Some(entry) = frames.iter().position(|frame| {
        frame
            .function
            .as_deref()
            .is_some_and(|name| name.ends_with("__rust_begin_short_backtrace"))
    }) {
        frames.truncate(entry);
    }
    frames.retain(|frame| frame.address != 0);
    frames
}

impl fmt::Display for Stacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for thread in &self.threads {
            write!(f, "{thread}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ThreadStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "thread {} {:?} ({})", self.tid, self.name, self.state)?;
        if let Some(reason) = &self.frames_missing {
            writeln!(f, "    {reason}")?;
        }
        for (index, frame) in self.frames.iter().enumerate() {
            match &frame.function {
                Some(function) => writeln!(f, "  {index:>3}: {function}")?,
                None => writeln!(f, "  {index:>3}: <unknown> at {:#x}", frame.address)?,
            }
            if let (Some(file), Some(line)) = (&frame.file, frame.line) {
                writeln!(f, "           at {file}:{line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marked_caller() -> Stacks {
        stacks()
    }

    #[test]
    fn the_calling_thread_has_real_frames() {
        let snapshot = marked_caller();
        let me = nix::unistd::gettid().as_raw();
        let mine = snapshot
            .threads
            .iter()
            .find(|t| t.tid == me)
            .expect("own thread listed");
        assert!(mine.frames_missing.is_none());
        let first = mine.frames[0].function.as_deref().unwrap_or_default();
        assert!(first.contains("marked_caller"), "frame #0 is {first}");
    }

    #[test]
    fn other_threads_say_why_they_have_no_frames() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name("stack-test".into())
            .spawn(move || {
                ready_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let tid = ready_rx.recv().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let snapshot = loop {
            // The thread may still be on its way into `recv`.
            let snapshot = stacks();
            let state = snapshot
                .threads
                .iter()
                .find(|t| t.tid == tid)
                .map(|t| t.state.clone());
            if state.as_deref() == Some("sleeping") || std::time::Instant::now() > deadline {
                break snapshot;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        done_tx.send(()).unwrap();
        other.join().unwrap();
        let thread = snapshot
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("listed");
        assert_eq!(thread.name, "stack-test");
        assert_eq!(thread.state, "sleeping");
        assert_eq!(thread.frames_missing.as_deref(), Some(NOT_CAPTURED));
        assert!(snapshot
            .to_string()
            .contains(&format!("thread {tid} \"stack-test\" (sleeping)")));
    }

    #[test]
    fn state_words() {
        assert_eq!(state_word("S (sleeping)"), "sleeping");
        assert_eq!(state_word("D (disk sleep)"), "disk sleep");
        assert_eq!(state_word("X"), "X");
    }
}
