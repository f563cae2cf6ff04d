//! One client connection, from its first byte to its end.
//!
//! The session waits up to [`SNIFF_TIMEOUT`] for the client's first byte:
//! `{` starts a JSON-RPC session, anything else (or silence, as from an
//! interactive `nc -U`) a text session with a greeting and a prompt. Every
//! write uses `MSG_NOSIGNAL`, so a client that goes away mid-answer ends the
//! session with `EPIPE` instead of raising `SIGPIPE` in the host.

use crate::builtins::{self, Asked};
use crate::options::{deadline_after, Options, Served};
use crate::serve::reply;
use manhole_wire::{
    json_response, parse_json, parse_text, Failure, JsonLine, LogRequest, Reason, Request,
};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, MsgFlags};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long the server waits for the first byte before choosing text.
pub(crate) const SNIFF_TIMEOUT: Duration = Duration::from_millis(50);

const PROMPT: &[u8] = b"manhole> ";

/// What a session takes from the installed manhole's options.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) max_line_length: usize,
    pub(crate) max_sessions: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) served: Served,
}

impl SessionConfig {
    pub(crate) fn from_options(options: &Options) -> Self {
        SessionConfig {
            max_line_length: options.max_line_length,
            max_sessions: options.max_sessions,
            idle_timeout: options.idle_timeout,
            write_timeout: options.write_timeout,
            served: options.served(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig::from_options(&Options::new())
    }
}

/// Why a client past `max_sessions` is refused.
pub(crate) fn busy(open: usize) -> Failure {
    Failure::new(
        Reason::Busy,
        format!("busy: {open} sessions are open, the most this manhole allows (max_sessions); try again when one ends"),
    )
}

/// Tells a client it is not served, in the protocol its first byte chose
/// (a JSON-RPC error with `id` null after `{`, else the refusal line that
/// a client of either protocol can read back with
/// [`Failure::from_refusal`]), without waiting for it to read, and lets
/// the caller close it.
pub(crate) fn refuse(stream: &UnixStream, failure: &Failure) {
    let mut byte = [0u8; 1];
    let speaks_json = matches!(
        recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(1)
    ) && byte[0] == b'{';
    let line = if speaks_json {
        let mut line = json_response(&Value::Null, Err(failure.clone()));
        line.push('\n');
        line
    } else {
        failure.to_refusal()
    };
    let _ = send(
        stream.as_raw_fd(),
        line.as_bytes(),
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    );
}

pub(crate) fn serve(stream: &UnixStream, config: SessionConfig) {
    if stream
        .set_write_timeout(Some(config.write_timeout))
        .is_err()
    {
        return;
    }
    let peer = crate::os::socket::peer_credentials(stream).ok();
    crate::report::history::session_opened(
        peer.map(|peer| peer.uid()),
        peer.map(|peer| peer.pid()),
    );
    let Some(first) = first_byte(stream) else {
        return;
    };
    let mut out = Output::new(stream, config.write_timeout);
    let mut lines = Lines::new(stream, config);
    // An I/O error means the client is gone; there is no one to tell.
    let _ = if first == Some(b'{') {
        serve_json(&mut lines, &mut out)
    } else {
        serve_text(&mut lines, &mut out, Greet::Yes)
    };
}

/// Serves `input` as one client's whole session, into `out`: the same
/// line reader, parsers and built-ins as a socket session, without the
/// greeting's stack dump (the fuzz target runs this thousands of times a
/// second).
pub(crate) fn serve_bytes(input: &[u8], config: &SessionConfig) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lines = Lines::new(input, config.clone());
    // Writing to a `Vec` cannot fail.
    let _ = if input.first() == Some(&b'{') {
        serve_json(&mut lines, &mut out)
    } else {
        serve_text(&mut lines, &mut out, Greet::No)
    };
    out
}

impl Replies for Vec<u8> {
    fn begin_reply(&mut self) {}
}

/// Where a session's lines come from: a socket, or bytes in memory.
trait Input: Read + Copy {
    /// Bounds the wait of the next read; `None` waits as long as it takes.
    fn limit_wait(&self, left: Option<Duration>) -> io::Result<()>;
    /// Whether a read would return at once within `timeout`.
    fn readable_within(&self, timeout: Duration) -> io::Result<bool>;
    /// Whether the client has closed its end for good, so that nothing
    /// more is worth computing for it. A client that only shut down its
    /// writing half (`socat` at the end of its input) still reads, and is
    /// not gone.
    fn peer_gone(&self) -> bool;
}

impl Input for &UnixStream {
    fn limit_wait(&self, left: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(left)
    }

    fn readable_within(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = deadline_after(timeout);
        loop {
            let left = deadline.map_or(Duration::MAX, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(false);
            }
            let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
            let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) => return Ok(true),
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn peer_gone(&self) -> bool {
        // POLLHUP and POLLERR are reported whatever is asked for.
        let mut fds = [PollFd::new(self.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
            && fds[0]
                .revents()
                .is_some_and(|events| events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    }
}

/// Bytes in memory never make a reader wait.
impl Input for &[u8] {
    fn limit_wait(&self, _left: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn readable_within(&self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }

    fn peer_gone(&self) -> bool {
        false
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Greet {
    Yes,
    No,
}

/// `Some(Some(byte))` when the client spoke first, `Some(None)` when it was
/// silent, `None` when it is already gone.
fn first_byte(stream: &UnixStream) -> Option<Option<u8>> {
    stream.set_read_timeout(Some(SNIFF_TIMEOUT)).ok()?;
    let mut byte = [0u8; 1];
    let first = loop {
        match recv(stream.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK) {
            Ok(0) => return None,
            Ok(_) => break Some(byte[0]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => break None,
            Err(_) => return None,
        }
    };
    Some(first)
}

/// The session's side of the socket: every reply must be taken by the
/// client within `write_timeout` as a whole, not per `send`, so a client
/// that reads a few bytes now and then is cut off all the same. Sends never
/// block (`MSG_DONTWAIT`); when the socket is full, the session waits for
/// room in `poll`, at most until the reply's deadline.
pub(super) struct Output<'a> {
    stream: &'a UnixStream,
    write_timeout: Duration,
    /// Set by the reply's first write; cleared by [`Output::begin_reply`].
    deadline: Option<Instant>,
}

impl<'a> Output<'a> {
    fn new(stream: &'a UnixStream, write_timeout: Duration) -> Self {
        Output {
            stream,
            write_timeout,
            deadline: None,
        }
    }
}

/// Where a session writes: a [`Write`] that knows where one reply ends and
/// the next begins (each update of `watch` and `log follow` is a reply).
pub(super) trait Replies: Write {
    /// The next write starts a new reply, with a deadline of its own.
    fn begin_reply(&mut self);
}

impl Replies for Output<'_> {
    fn begin_reply(&mut self) {
        self.deadline = None;
    }
}

impl Write for Output<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.write_timeout);
        loop {
            let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
            match send(self.stream.as_raw_fd(), buf, flags) {
                Ok(sent) => return Ok(sent),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not take the reply within write_timeout",
                        ));
                    }
                    let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
                    let mut room = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                    match poll(&mut room, PollTimeout::from(millis)) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Line {
    Complete(Vec<u8>),
    /// Longer than the limit; it was read to its end and dropped.
    TooLong,
    /// No complete line within the idle timeout.
    Idle,
    End,
}

/// Reads lines of bounded length in bounded time: a longer line is consumed
/// without being stored, so a client cannot make the session buffer more
/// than the limit, and a line must be complete within the idle timeout of
/// the moment the session started waiting for it.
struct Lines<R> {
    reader: BufReader<R>,
    max: usize,
    idle_timeout: Duration,
    served: Served,
    /// The wait last given to the input, so that a line that starts
    /// with the same wait as the one before costs no system call to set it.
    wait: Option<Option<Duration>>,
}

/// How far a read's wait may be from the one set before and still keep it:
/// a millisecond more on an idle timeout of minutes.
const WAIT_SLACK: Duration = Duration::from_millis(1);

impl<R: Input> Lines<R> {
    fn new(input: R, config: SessionConfig) -> Self {
        Lines {
            reader: BufReader::new(input),
            max: config.max_line_length,
            idle_timeout: config.idle_timeout,
            served: config.served,
            wait: None,
        }
    }

    /// What a request of this session runs under.
    fn asked<'a>(&'a self, client_gone: &'a dyn Fn() -> bool) -> Asked<'a> {
        Asked {
            served: &self.served,
            client_gone,
        }
    }

    /// Whether a line (or the end of input) can be read within `timeout`.
    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        self.reader.get_ref().readable_within(timeout)
    }

    fn next(&mut self) -> io::Result<Line> {
        let deadline = deadline_after(self.idle_timeout);
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            if self.reader.buffer().is_empty() {
                let left =
                    deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
                if left.is_some_and(|left| left.is_zero()) {
                    return Ok(Line::Idle);
                }
                let same = match (self.wait, left) {
                    (Some(None), None) => true,
                    (Some(Some(set)), Some(left)) => set.abs_diff(left) <= WAIT_SLACK,
                    _ => false,
                };
                if !same {
                    self.reader.get_ref().limit_wait(left)?;
                    self.wait = Some(left);
                }
            }
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Line::Idle)
                }
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Line::TooLong,
                    (false, true) => Line::End,
                    (false, false) => Line::Complete(line),
                });
            }
            let (chunk, used, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], end + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if line.len() + chunk.len() > self.max {
                    too_long = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(used);
            if complete {
                if too_long {
                    return Ok(Line::TooLong);
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Line::Complete(line));
            }
        }
    }
}

fn idle_failure(timeout: Duration) -> Failure {
    Failure::new(
        Reason::IdleTimeout,
        format!(
            "no complete line within {} s (idle_timeout); closing the session",
            timeout.as_secs_f64()
        ),
    )
}

fn error_line(failure: &Failure) -> String {
    format!("{}{}\n", manhole_wire::REFUSAL_PREFIX, failure.one_line())
}

fn too_long(what: &str, max: usize) -> Failure {
    Failure::new(
        Reason::TooLong,
        format!("{what} is longer than {max} bytes and was ignored"),
    )
}

fn serve_text<R: Input>(
    lines: &mut Lines<R>,
    out: &mut impl Replies,
    greet: Greet,
) -> io::Result<()> {
    let input = *lines.reader.get_ref();
    let client_gone = move || input.peer_gone();
    if greet == Greet::Yes {
        if client_gone() {
            return Ok(());
        }
        match builtins::greeting(lines.asked(&client_gone), true) {
            Ok(greeting) => out.write_all(greeting.text.as_bytes())?,
            Err(_) => return Ok(()),
        }
    }
    loop {
        out.begin_reply();
        out.write_all(PROMPT)?;
        let line = lines.next()?;
        out.begin_reply();
        let reply = match line {
            Line::End => return Ok(()),
            Line::Idle => {
                out.write_all(error_line(&idle_failure(lines.idle_timeout)).as_bytes())?;
                return Ok(());
            }
            Line::TooLong => error_line(&too_long("the line", lines.max)),
            Line::Complete(bytes) => match std::str::from_utf8(&bytes) {
                Err(_) => error_line(&Failure::new(Reason::Parse, "the line is not valid UTF-8")),
                Ok(text) => match parse_text(text) {
                    Ok(None) => String::new(),
                    Ok(Some(Request::Quit)) => return Ok(()),
                    Ok(Some(Request::Watch { name, interval })) => {
                        match watch(lines, out, &name, interval)? {
                            Watched::Stopped => String::new(),
                            Watched::ClientGone => return Ok(()),
                        }
                    }
                    Ok(Some(request)) if takes_a_while(&request) && client_gone() => return Ok(()),
                    Ok(Some(Request::Log(LogRequest::Follow))) => match builtins::follow() {
                        Err(failure) => error_line(&failure),
                        Ok((heading, next)) => match follow(lines, out, &heading, next)? {
                            Watched::Stopped => String::new(),
                            Watched::ClientGone => return Ok(()),
                        },
                    },
                    Ok(Some(request)) => match builtins::run(request, lines.asked(&client_gone)) {
                        Ok(answer) => answer.text,
                        Err(failure) => error_line(&failure),
                    },
                    Err(failure) => error_line(&failure),
                },
            },
        };
        out.write_all(reply.as_bytes())?;
    }
}

enum Watched {
    /// The client sent a line; the session goes on.
    Stopped,
    ClientGone,
}

/// Reprints `name` every `interval` until the client sends a line (which is
/// consumed, not run) or goes away. An item that cannot be read ends the
/// watch with its error.
fn watch<R: Input>(
    lines: &mut Lines<R>,
    out: &mut impl Replies,
    name: &str,
    interval: Duration,
) -> io::Result<Watched> {
    let started = Instant::now();
    // An item that cannot be read gets its error alone, not a heading that
    // promises a watch.
    let mut reading = Some(builtins::get(name, &lines.served));
    if let Some(Err(failure)) = &reading {
        out.write_all(error_line(failure).as_bytes())?;
        return Ok(Watched::Stopped);
    }
    out.write_all(
        format!(
            "watching `{name}` every {:.1}s; send a line to stop\n",
            interval.as_secs_f64()
        )
        .as_bytes(),
    )?;
    loop {
        let read = reading
            .take()
            .unwrap_or_else(|| builtins::get(name, &lines.served));
        // Each update, or the error that ends the watch, is a reply.
        out.begin_reply();
        match read {
            Ok(answer) => {
                let header = format!("[{:.1}s]", started.elapsed().as_secs_f64());
                let body = answer.text;
                let shown = if body.lines().count() > 1 {
                    format!("{header}\n{body}")
                } else {
                    format!("{header} {body}")
                };
                out.write_all(shown.as_bytes())?;
            }
            Err(failure) => {
                out.write_all(error_line(&failure).as_bytes())?;
                return Ok(Watched::Stopped);
            }
        }
        if let Some(watched) = line_or_idle(lines, out, interval, started)? {
            return Ok(watched);
        }
    }
}

/// Between two outputs of `watch` or `log follow`: waits up to `wait` for
/// a line from the client, which ends the stream (consumed, not run). A
/// stream is output, not input, so a client silent past the idle timeout
/// (counted from `started`) loses its session here too. `None` goes on.
fn line_or_idle<R: Input>(
    lines: &mut Lines<R>,
    out: &mut impl Replies,
    wait: Duration,
    started: Instant,
) -> io::Result<Option<Watched>> {
    if lines.wait_readable(wait)? {
        let line = lines.next()?;
        out.begin_reply();
        return Ok(Some(match line {
            Line::End => Watched::ClientGone,
            Line::Idle => {
                out.write_all(error_line(&idle_failure(lines.idle_timeout)).as_bytes())?;
                Watched::ClientGone
            }
            Line::Complete(_) | Line::TooLong => Watched::Stopped,
        }));
    }
    if started.elapsed() >= lines.idle_timeout {
        out.begin_reply();
        out.write_all(error_line(&idle_failure(lines.idle_timeout)).as_bytes())?;
        return Ok(Some(Watched::ClientGone));
    }
    Ok(None)
}

/// Whether a request costs enough (a dump, a measurement over time) to be
/// worth a look at whether its client is still there. A cheap one is just
/// answered: a client that left makes the write fail, and the session
/// ends there, without a system call spent on every request.
fn takes_a_while(request: &Request) -> bool {
    matches!(
        request,
        Request::Stacks { .. }
            | Request::Greeting { .. }
            | Request::Text(_)
            | Request::Top { .. }
            | Request::Profile(_)
    )
}

/// A response whose result is already written as JSON, with the members
/// in the order [`json_response`] writes them.
/// Writes a response whose result is serialised as it goes out, through a
/// buffer of its own: nothing holds the whole result. A failure, known
/// before anything is written, is returned as the response to write
/// instead. A notification (no `id`) gets nothing.
fn write_streamed(
    out: &mut impl Replies,
    id: Option<Value>,
    result: Result<builtins::Streamed, Failure>,
) -> io::Result<Option<String>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let streamed = match result {
        Ok(streamed) => streamed,
        Err(failure) => return Ok(Some(json_response(&id, Err(failure)))),
    };
    reply::write_result(out, &id, &mut |buffered| streamed.write_to(buffered))?;
    Ok(None)
}

/// How often `log follow` looks for new events.
const FOLLOW_INTERVAL: Duration = manhole_wire::LOG_FOLLOW_INTERVAL;

/// `log follow`: writes new events as they come until the client sends a
/// line (consumed, not run) or goes away.
fn follow<R: Input>(
    lines: &mut Lines<R>,
    out: &mut impl Replies,
    heading: &str,
    mut next: builtins::Follow,
) -> io::Result<Watched> {
    let started = Instant::now();
    out.write_all(heading.as_bytes())?;
    loop {
        let new = next();
        out.begin_reply();
        if !new.is_empty() {
            out.write_all(new.as_bytes())?;
        }
        if let Some(watched) = line_or_idle(lines, out, FOLLOW_INTERVAL, started)? {
            return Ok(watched);
        }
    }
}

fn serve_json<R: Input>(lines: &mut Lines<R>, out: &mut impl Replies) -> io::Result<()> {
    let input = *lines.reader.get_ref();
    let client_gone = move || input.peer_gone();
    loop {
        let line = lines.next()?;
        out.begin_reply();
        let idle = matches!(line, Line::Idle);
        let response = match line {
            Line::End => return Ok(()),
            Line::Idle => Some(json_response(
                &Value::Null,
                Err(idle_failure(lines.idle_timeout)),
            )),
            Line::TooLong => Some(json_response(
                &Value::Null,
                Err(too_long("the request line", lines.max)),
            )),
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => None,
            Line::Complete(bytes) => match parse_json(&bytes) {
                JsonLine::Request { request, .. } if takes_a_while(&request) && client_gone() => {
                    return Ok(())
                }
                JsonLine::Request { id, request } => {
                    let asked = lines.asked(&client_gone);
                    match request {
                        Request::Stacks {
                            collapse,
                            short,
                            thread,
                        } => {
                            let shown = builtins::Shown {
                                collapse,
                                short,
                                thread: thread.as_deref(),
                            };
                            let result = builtins::stacks_json(asked, shown);
                            write_streamed(out, id, result)?
                        }
                        Request::Tasks { older_than } => {
                            let result = builtins::tasks_json(older_than, asked);
                            write_streamed(out, id, Ok(result))?
                        }
                        request @ Request::Call { .. } => match id {
                            // The reply goes straight out as it is
                            // serialised; a failure (or an async command's
                            // value) is answered here as usual.
                            Some(id) => {
                                let (result, written) = reply::streaming(out, &id, || {
                                    builtins::run(request, asked).map(|answer| answer.json)
                                });
                                match written {
                                    Some(Ok(())) => None,
                                    // Cut off part way: the client left, or
                                    // could not keep up within write_timeout.
                                    Some(Err(err)) => return Err(err),
                                    None => Some(json_response(&id, result)),
                                }
                            }
                            None => {
                                let _ = builtins::run(request, asked);
                                None
                            }
                        },
                        request => {
                            let result = builtins::run(request, asked).map(|answer| answer.json);
                            id.map(|id| json_response(&id, result))
                        }
                    }
                }
                JsonLine::Invalid { id, failure } => Some(json_response(&id, Err(failure))),
            },
        };
        if let Some(mut response) = response {
            response.push('\n');
            out.write_all(response.as_bytes())?;
        }
        if idle {
            return Ok(());
        }
    }
}
