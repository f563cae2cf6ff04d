//! Async commands: the program's tokio runtime, and one call's wait.
//!
//! An `async fn` command's future never runs on a manhole thread and never
//! blocks a runtime worker: it is spawned on the runtime the manhole was
//! given (the one `install` ran inside, or `Options::tokio_handle`), and the
//! asking session thread waits for its result on a channel, polling its
//! client every few milliseconds. A client that hangs up, or a call that
//! runs past `command_timeout`, aborts the task, which drops the future at
//! its next await. Without the `tokio` feature this module holds only the
//! empty [`Runtime`](crate::options::Runtime), so a program without async commands pays nothing.

use crate::options::Runtime;
use std::time::Duration;

/// What to do when the manhole knows no runtime, for the errors that need
/// one.
#[cfg(feature = "tokio")]
pub(crate) const HOW_TO_GIVE_A_RUNTIME: &str = "install it inside the runtime (put #[manhole::main] above #[tokio::main], or call install() from async code) or give one with Options::tokio_handle(Handle::current())";

/// What one async call runs under: the runtime, how long it may take, and
/// how to tell that its client has gone.
/// Without the `tokio` feature nothing reads it.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) struct Waiting<'a> {
    pub(crate) runtime: &'a Runtime,
    pub(crate) timeout: Duration,
    pub(crate) client_gone: &'a dyn Fn() -> bool,
}

#[cfg(feature = "tokio")]
pub(crate) use with_tokio::run;

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::Waiting;
    use manhole_wire::{Failure, Reason};
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::sync::mpsc;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    /// How often a waiting session looks at its client.
    const POLL_CLIENT: Duration = Duration::from_millis(20);

    /// A future whose panics become an `Err` with the panic's message, so
    /// that the session hears of a panic as of any other outcome.
    struct CatchPanic<F>(Pin<Box<F>>);

    impl<F: Future> Future for CatchPanic<F> {
        type Output = Result<F::Output, String>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let inner = self.0.as_mut();
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(payload) => Poll::Ready(Err(crate::error::panic_message(&*payload))),
            }
        }
    }

    /// Spawns `future` on the runtime and waits for its value on this
    /// thread, at most `waiting.timeout`, and only while the client is
    /// there.
    pub(crate) fn run<T, F>(waiting: Waiting<'_>, future: F) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, Failure>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(handle) = &waiting.runtime.handle else {
            return Err(Failure::new(
                Reason::NoRuntime,
                format!(
                    "this command is async, and the manhole knows no tokio runtime to run it on; {}",
                    super::HOW_TO_GIVE_A_RUNTIME
                ),
            ));
        };
        let (done, outcome) = mpsc::sync_channel(1);
        let task = handle.spawn(async move {
            // The receiver is gone only when the session gave up first.
            let _ = done.send(CatchPanic(Box::pin(future)).await);
        });
        let started = Instant::now();
        let deadline = started.checked_add(waiting.timeout);
        loop {
            let left = deadline.map_or(POLL_CLIENT, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                task.abort();
                return Err(Failure::new(
                    Reason::TimedOut,
                    format!(
                        "gave up after {} ms (command_timeout); the future was dropped",
                        started.elapsed().as_millis()
                    ),
                ));
            }
            match outcome.recv_timeout(left.min(POLL_CLIENT)) {
                Ok(Ok(value)) => return value,
                Ok(Err(message)) => return Err(Failure::new(Reason::Panicked, message)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if (waiting.client_gone)() {
                        task.abort();
                        return Err(Failure::new(
                            Reason::TimedOut,
                            "the client hung up; the future was dropped",
                        ));
                    }
                }
                // The task was dropped without finishing: its runtime shut
                // down.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Failure::new(
                        Reason::NoRuntime,
                        "the tokio runtime shut down before the command finished",
                    ))
                }
            }
        }
    }
}
