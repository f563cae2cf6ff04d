//! A command's reply: measured, then written straight to its client.
//!
//! A command may return a great deal (a whole table, a value that produces
//! rows as it is serialised). Its reply is first serialised into a counter
//! that keeps nothing and stops past `max_reply_bytes`: a reply over it is
//! refused with reason `reply_too_large` before a byte is sent. One within
//! it is serialised a second time, straight into the session's socket when
//! the session that runs the command set one up (a JSON session, for
//! `call`); otherwise (text, an async command on the runtime's threads)
//! into a `serde_json::Value`, which the bound keeps small. Either way the
//! process never holds the reply as a string, and a client that has left
//! stops the writing at the next write.

use crate::options::DEFAULT_MAX_REPLY_BYTES;
use manhole_wire::{Failure, Reason};
use serde::Serialize;
use serde_json::Value;
use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static MAX_REPLY_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_REPLY_BYTES);

/// Bounds every reply at `bytes` of JSON, from now on.
pub(crate) fn limit(bytes: usize) {
    MAX_REPLY_BYTES.store(bytes, Relaxed);
}

/// Where a reply goes while a JSON session runs a command on its thread.
pub(crate) struct Sink<'a> {
    out: &'a mut dyn Write,
    id: &'a Value,
    /// Whether the response went out (whole, or cut by a write error).
    written: Option<io::Result<()>>,
}

thread_local! {
    /// The sink of the command running on this thread, if any: a pointer to
    /// [`streaming`]'s local, valid while its body runs.
    static SINK: Cell<Option<*mut Sink<'static>>> = const { Cell::new(None) };
}

/// Runs `body` (which runs a command) with its reply to request `id`
/// written straight into `out`. Returns what `body` returned, and whether
/// the response was written: `Some(Ok(()))` when it was, `Some(Err(_))`
/// when writing it failed part way (the client left), `None` when the
/// command gave no reply this way (an error, an async command), so the
/// session writes one as usual.
pub(crate) fn streaming<R>(
    out: &mut dyn Write,
    id: &Value,
    body: impl FnOnce() -> R,
) -> (R, Option<io::Result<()>>) {
    let mut sink = Sink {
        out,
        id,
        written: None,
    };
    // The lifetimes are erased for the thread-local; the pointer is taken
    // out again before `sink` goes, even if `body` unwinds.
    let pointer = std::ptr::from_mut(&mut sink).cast::<Sink<'static>>();
    struct Unset;
    impl Drop for Unset {
        fn drop(&mut self) {
            SINK.with(|sink| sink.set(None));
        }
    }
    SINK.with(|slot| slot.set(Some(pointer)));
    let unset = Unset;
    let returned = body();
    drop(unset);
    (returned, sink.written)
}

/// Counts bytes and keeps none; fails past its limit.
struct Counter {
    bytes: usize,
    limit: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.limit {
            return Err(io::Error::other("over max_reply_bytes"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A command's returned value as its reply: `Ok(None)` when it was written
/// to this thread's sink already, `Ok(Some(value))` for the session to
/// send.
///
/// # Errors
///
/// `reply_too_large` past `max_reply_bytes`; `not_serialisable` when the
/// value's `Serialize` fails.
pub(crate) fn reply<T: ?Sized + Serialize>(value: &T) -> Result<Option<Value>, Failure> {
    measure(value)?;
    let Some(sink) = SINK.with(|slot| slot.take()) else {
        return serde_json::to_value(value)
            .map(Some)
            .map_err(|err| not_serialisable(&err));
    };
    // SAFETY: set by `streaming` to its local, which outlives the command
    // it runs; taken out of the slot, so that nothing else reaches it.
    let sink = unsafe { &mut *sink };
    let written = write_response(sink.out, sink.id, value);
    sink.written = Some(written);
    Ok(None)
}

/// A value read under one of the program's locks, as its reply: measured
/// and copied here, never written to the client, so that the caller drops
/// its guard before the first byte goes out. A client that reads slowly
/// then holds only its session, never the program's lock.
///
/// # Errors
///
/// As [`reply`].
pub(crate) fn detached<T: ?Sized + Serialize>(value: &T) -> Result<Value, Failure> {
    measure(value)?;
    serde_json::to_value(value).map_err(|err| not_serialisable(&err))
}

/// Serialises `value` into a counter: nothing is kept, and it stops past
/// `max_reply_bytes`.
fn measure<T: ?Sized + Serialize>(value: &T) -> Result<(), Failure> {
    let limit = MAX_REPLY_BYTES.load(Relaxed);
    let mut counter = Counter { bytes: 0, limit };
    if let Err(err) = serde_json::to_writer(&mut counter, value) {
        return Err(if counter.bytes > limit {
            Failure::new(
                Reason::ReplyTooLarge,
                format!(
                    "the reply is larger than max_reply_bytes ({limit} bytes of JSON), so none of it was sent; ask for less, or raise max_reply_bytes"
                ),
            )
        } else {
            not_serialisable(&err)
        });
    }
    Ok(())
}

/// `{"id":…,"jsonrpc":"2.0","result":VALUE}` and a newline, through a
/// buffer of its own, with VALUE serialised straight into it.
fn write_response<T: ?Sized + Serialize>(
    out: &mut dyn Write,
    id: &Value,
    value: &T,
) -> io::Result<()> {
    write_result(out, id, &mut |buffered| {
        serde_json::to_writer(buffered, value)
    })
}

/// How much of a result is written to the client at a time.
const RESULT_BUFFER: usize = 64 * 1024;

/// A response whose result `write_value` serialises as it goes out: what
/// both a command's reply and a large built-in's result (`stacks`,
/// `tasks`) are written with, so that nothing holds the whole result.
///
/// # Errors
///
/// When `out` fails (the client went away, or stayed stuck past
/// `write_timeout`), or the value cannot be written as JSON.
pub(crate) fn write_result(
    out: &mut dyn Write,
    id: &Value,
    write_value: &mut dyn FnMut(&mut dyn Write) -> serde_json::Result<()>,
) -> io::Result<()> {
    let mut buffered = io::BufWriter::with_capacity(RESULT_BUFFER, out);
    write!(buffered, r#"{{"id":{id},"jsonrpc":"2.0","result":"#)?;
    write_value(&mut buffered).map_err(io::Error::from)?;
    buffered.write_all(b"}\n")?;
    buffered.flush()
}

fn not_serialisable(err: &serde_json::Error) -> Failure {
    Failure::new(
        Reason::NotSerialisable,
        format!("the value could not be turned into JSON: {err}"),
    )
}
