//! A JSON-RPC 2.0 client over the manhole socket.
//!
//! The session is JSON because the first byte the server reads is `{`: the
//! first request is written as soon as the connection is made, well within
//! the server's 50 ms sniffing window. The text a person sees comes from
//! the `greeting` and `text` methods, which render exactly what a text
//! session would, so nothing here ever parses text.

use crate::error::Error;
use crate::pipe;
use crate::transport::{Link, Source, Transport};
use manhole_wire::{Failure, Reason, Request};
use nix::poll::PollFlags;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// An error reply: the server's `error` object, or a failure found here
/// before anything was sent (a usage error, a text-only command).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    /// What went wrong, read with the server's own types.
    pub failure: Failure,
    /// The object as the server sent it, for `--json` to print: a reason or
    /// a field that this client does not know is kept here, while
    /// `failure` has no place for it.
    pub object: Value,
}

impl ErrorReply {
    /// Reads an `error` object; `None` when it has no integer `code`.
    pub fn read(object: &Value) -> Option<ErrorReply> {
        Some(ErrorReply {
            failure: Failure::from_json(object)?,
            object: object.clone(),
        })
    }
}

impl From<Failure> for ErrorReply {
    fn from(failure: Failure) -> Self {
        ErrorReply {
            object: failure.to_json(),
            failure,
        }
    }
}

/// A reply: the `result`, or the server's `error`.
pub type Reply<T> = Result<T, ErrorReply>;

/// A JSON-RPC session with one manhole.
pub struct Client {
    // Dropped in this order: the streams close before the link, so that a
    // tunnel's remote side sees its input end and can finish by itself.
    reader: BufReader<Box<dyn Source>>,
    writer: Box<dyn Write + Send>,
    link: Link,
    timeout: Duration,
    /// How long the request being asked runs on the server.
    work: Duration,
    /// What the countdown calls that work.
    work_label: &'static str,
    countdown: bool,
    next_id: u64,
    /// Whether the server ever sent a byte: a close before that is a
    /// refusal, after it the end of the session.
    answered: bool,
    /// Whether every string of every reply is escaped for a terminal as it
    /// arrives (the dashboard, which draws them all).
    escape_strings: bool,
}

/// The longest reply line read by default: the server's largest reply
/// (`max_reply_bytes`, 64 MiB) and a margin for its envelope.
pub const DEFAULT_MAX_REPLY: usize = 65 * 1024 * 1024;

/// How many responses to earlier requests (answered late, after this
/// client gave up on them) are skipped while waiting for one reply; a
/// server that sends more is not answering.
const STALE_REPLIES: usize = 8;

static MAX_REPLY: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_REPLY);

/// Bounds every reply line this process reads (`--max-reply`).
pub fn limit_replies(bytes: usize) {
    MAX_REPLY.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

impl Client {
    /// Starts a session on a connected transport.
    pub fn new(transport: Transport, timeout: Duration) -> Client {
        Client {
            reader: BufReader::new(transport.reader),
            writer: transport.writer,
            link: transport.link,
            timeout,
            work: Duration::ZERO,
            work_label: "",
            countdown: false,
            next_id: 1,
            answered: false,
            escape_strings: false,
        }
    }

    /// Escapes every string of every reply from now on, for a view that
    /// draws them all (see [`crate::escape::value`]).
    pub fn escape_replies(&mut self) {
        self.escape_strings = true;
    }

    /// Asks `request` through its JSON-RPC method and waits for the reply.
    /// A request that has no method (`watch`, `quit`) is answered here, with
    /// the failure that the server would give.
    pub fn ask(&mut self, request: &Request) -> Result<Reply<Value>, Error> {
        self.work = request.runs_for();
        // A `text` line is labelled as the request it holds.
        let held = match request {
            Request::Text(line) => manhole_wire::parse_text(line).ok().flatten(),
            _ => None,
        };
        self.work_label = match held.as_ref().unwrap_or(request) {
            Request::Profile(_) => "profiling",
            _ => "measuring",
        };
        let reply = match request.to_json() {
            Ok((method, params)) => self.call(method, params),
            Err(failure) => Ok(Err(failure.into())),
        };
        self.work = Duration::ZERO;
        reply
    }

    /// Shows a countdown on stderr, when it is a terminal, while a request
    /// that takes a while (`profile`, `top`) runs.
    pub fn show_countdown(&mut self, show: bool) {
        self.countdown = show;
    }

    /// Waits for the reply's first byte through the time the request runs
    /// on the server, before the usual timeout starts.
    fn wait_for_work(&mut self) -> Result<(), Error> {
        if self.work.is_zero() {
            return Ok(());
        }
        let deadline = Instant::now() + self.work;
        let mut shown = false;
        while self.reader.buffer().is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.countdown {
                let left = (deadline - now).as_secs_f64().ceil();
                let _ = write!(std::io::stderr(), "\r{}: {left} s left ", self.work_label);
                shown = true;
            }
            let step = (deadline - now).min(Duration::from_secs(1));
            match pipe::wait_ready(self.reader.get_ref().as_fd(), PollFlags::POLLIN, now + step) {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => return Err(self.failure(err, "waiting for a reply from")),
            }
        }
        if shown {
            let _ = write!(std::io::stderr(), "\r{:30}\r", "");
        }
        Ok(())
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Reply<Value>, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            request["params"] = params;
        }
        let mut line = request.to_string();
        line.push('\n');
        let sent = self
            .writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush());
        if let Err(err) = sent {
            let hung_up = matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            );
            if hung_up {
                if let Some(failure) = self.link.failure(self.timeout) {
                    return Err(failure);
                }
            }
            if hung_up && !self.answered {
                // It may have said why before it hung up (`busy`).
                return Err(self
                    .last_word()
                    .unwrap_or_else(|| self.link.closed_without_a_byte()));
            }
            return Err(self.failure(err, "sending a request to"));
        }
        self.wait_for_work()?;
        self.read_reply(id)
    }

    /// The descriptor replies are read from: what Ctrl-C cuts off to cancel
    /// a command (see [`crate::interrupt`]).
    pub fn reply_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        self.reader.get_ref().as_fd().as_raw_fd()
    }

    /// Sends one text-protocol line through the `text` method: the reply is
    /// the text a text session would print for it.
    pub fn text(&mut self, line: &str) -> Result<Reply<String>, Error> {
        Ok(match self.ask(&Request::Text(line.to_owned()))? {
            Ok(result) => Ok(self.text_field(&result)?),
            Err(err) => Err(err),
        })
    }

    /// The `text` field of a `greeting` or `text` result.
    pub fn text_field(&self, result: &Value) -> Result<String, Error> {
        match result.get("text") {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(self.bad_reply(format!("no `text` string in {result}"))),
        }
    }

    /// One reply line, read within `deadline` and at most `--max-reply`
    /// bytes long: a server that streams an endless line, or trickles one,
    /// costs this client neither its memory nor more than its timeout.
    fn read_bounded_line(
        &mut self,
        line: &mut String,
        deadline: Instant,
    ) -> std::io::Result<usize> {
        let limit = MAX_REPLY.load(std::sync::atomic::Ordering::Relaxed);
        let mut bytes = Vec::new();
        loop {
            if self.reader.buffer().is_empty()
                && !pipe::wait_ready(self.reader.get_ref().as_fd(), PollFlags::POLLIN, deadline)?
            {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    "the whole reply did not come within the timeout",
                ));
            }
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                break;
            }
            let (taken, ended) = match available.iter().position(|&byte| byte == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if bytes.len() + taken > limit {
                return Err(std::io::Error::new(
                    ErrorKind::OutOfMemory,
                    format!(
                        "a reply line longer than {limit} bytes (--max-reply); stopped reading it"
                    ),
                ));
            }
            bytes.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            if ended {
                break;
            }
        }
        let read = bytes.len();
        *line = String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(ErrorKind::InvalidData, "a reply that is not UTF-8")
        })?;
        Ok(read)
    }

    /// Reads lines until the response to `id`, all within the timeout. A
    /// response to an earlier request, which timed out here and was
    /// answered late, is skipped, a few times at most.
    fn read_reply(&mut self, id: u64) -> Result<Reply<Value>, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut skipped = 0;
        loop {
            let mut line = String::new();
            match self.read_bounded_line(&mut line, deadline) {
                Ok(0) => {
                    // A tunnel that ended before its remote side ever
                    // connected says why; otherwise the server hung up.
                    return Err(self.link.failure(self.timeout).unwrap_or_else(|| {
                        if self.answered {
                            Error::Closed {
                                peer: self.link.peer.clone(),
                            }
                        } else {
                            self.link.closed_without_a_byte()
                        }
                    }));
                }
                Ok(_) => self.answered = true,
                Err(err)
                    if matches!(err.kind(), ErrorKind::OutOfMemory | ErrorKind::InvalidData) =>
                {
                    return Err(self.bad_reply(err.to_string()))
                }
                Err(err) => return Err(self.failure(err, "waiting for a reply from")),
            }
            let mut response: Value = match serde_json::from_str(&line) {
                Ok(response) => response,
                // Said to any client before it is served, such as `busy`
                // past `max_sessions`; the server then hangs up.
                Err(err) => {
                    return Err(match Failure::from_refusal(&line) {
                        Some(refusal) => self.ended(refusal),
                        None => self.bad_reply(format!("{err}: {:?}", line.trim_end())),
                    })
                }
            };
            match response.get("id") {
                Some(Value::Number(answered)) if answered.as_u64() == Some(id) => {}
                Some(Value::Number(answered))
                    if answered.as_u64() < Some(id) && skipped < STALE_REPLIES =>
                {
                    skipped += 1;
                    continue;
                }
                // An error about a line whose id the server could not read
                // (too long, say): with one request in flight, it is ours.
                Some(Value::Null) if response.get("error").is_some() => {}
                _ => return Err(self.bad_reply(format!("unexpected id in {response}"))),
            }
            if self.escape_strings {
                crate::escape::value(&mut response);
            }
            if let Some(error) = response.get("error") {
                return match ErrorReply::read(error) {
                    // Refused before being served (every session is
                    // taken): the server hangs up after saying so.
                    Some(reply) if reply.failure.is(Reason::Busy) && response["id"].is_null() => {
                        Err(self.ended(reply.failure))
                    }
                    Some(reply) => Ok(Err(reply)),
                    None => Err(self.bad_reply(format!(
                        "an `error` without an integer `code` in {response}"
                    ))),
                };
            }
            return match response.get("result") {
                Some(result) => Ok(Ok(result.clone())),
                None => Err(self.bad_reply(format!("neither `result` nor `error` in {response}"))),
            };
        }
    }

    /// What a server that hung up on us said first, if it was a refusal.
    fn last_word(&mut self) -> Option<Error> {
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        Some(self.ended(Failure::from_refusal(&line)?))
    }

    fn ended(&self, refusal: Failure) -> Error {
        Error::Ended {
            peer: self.link.peer.clone(),
            message: refusal.message,
        }
    }

    /// Whether the server ended the session while nobody was asking (its
    /// `idle_timeout`, or an `uninstall`): `Some` with its last word, if it
    /// said one. Nothing is sent, and a live session is left as it was.
    pub fn ended_by_server(&mut self) -> Option<String> {
        let quiet = self.reader.buffer().is_empty()
            && !pipe::readable_now(self.reader.get_ref().as_fd()).ok()?;
        if quiet {
            return None;
        }
        match self.reader.fill_buf().map(|buffer| !buffer.is_empty()) {
            Ok(true) => {
                let mut line = String::new();
                let deadline = Instant::now() + self.timeout;
                let _ = self.read_bounded_line(&mut line, deadline);
                Some(last_word_of(&line))
            }
            Ok(false) | Err(_) => Some(String::new()),
        }
    }

    fn failure(&mut self, err: std::io::Error, doing: &str) -> Error {
        // A tunnel whose ssh already failed says why, rather than that
        // nothing came.
        if let Some(failure) = self.link.failure(Duration::ZERO) {
            return failure;
        }
        let peer = self.link.peer.clone();
        match err.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout {
                doing: format!("{doing} {peer}"),
                timeout: self.timeout,
            },
            // The server hung up: before its first byte that is a refusal.
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe if !self.answered => {
                self.link.closed_without_a_byte()
            }
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Error::Closed { peer },
            _ => Error::io(format!("{doing} {peer}"), err),
        }
    }

    /// A reply that is not what PROTOCOL.md promises.
    pub fn bad_reply(&self, reason: String) -> Error {
        Error::BadReply {
            peer: self.link.peer.clone(),
            reason,
        }
    }
}

/// The message of the line a server wrote as it ended a session: an error
/// response (its `idle_timeout`), a refusal, or else the line itself.
fn last_word_of(line: &str) -> String {
    let response = serde_json::from_str::<Value>(line).ok();
    let failure = match response.as_ref().and_then(|response| response.get("error")) {
        Some(error) => Failure::from_json(error),
        None => Failure::from_refusal(line),
    };
    failure.map_or_else(|| line.trim_end().to_owned(), |failure| failure.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use manhole_wire::{code, Reason};

    #[test]
    fn an_error_object_is_kept_whole_beside_what_it_says() {
        let object = json!({
            "code": code::NOT_FOUND,
            "message": "unknown command `ad`",
            "data": {"reason": "some_later_reason", "suggestion": "add"},
            "extra": true,
        });
        let reply = ErrorReply::read(&object).unwrap();
        assert_eq!(reply.failure.code, code::NOT_FOUND);
        assert_eq!(reply.failure.reason, None);
        assert_eq!(reply.failure.message, "unknown command `ad`");
        assert_eq!(reply.object, object);
        assert_eq!(ErrorReply::read(&json!({"message": "no code"})), None);

        let local = ErrorReply::from(Failure::new(Reason::BadParams, "usage: get NAME"));
        assert_eq!(local.object["data"]["reason"], "bad_params");
        assert_eq!(ErrorReply::read(&local.object), Some(local));
    }

    #[test]
    fn a_servers_last_word_is_its_message_in_any_form() {
        let idle = Failure::new(Reason::IdleTimeout, "no complete line within 1 s");
        let response = json!({"jsonrpc": "2.0", "id": null, "error": idle.to_json()});
        assert_eq!(
            last_word_of(&format!("{response}\n")),
            "no complete line within 1 s"
        );
        let busy = Failure::new(Reason::Busy, "busy: 16 sessions are open");
        assert_eq!(
            last_word_of(&busy.to_refusal()),
            "busy: 16 sessions are open"
        );
        // A server from before refusals carried their reason.
        assert_eq!(
            last_word_of("error: busy: 16 sessions are open\n"),
            "busy: 16 sessions are open"
        );
        assert_eq!(last_word_of("bye\n"), "bye");
    }
}
