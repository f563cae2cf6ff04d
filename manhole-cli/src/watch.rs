//! `watch NAME [SECONDS]` and `log follow`, run by the client.
//!
//! The server's `watch` and `log follow` hold a text session for
//! themselves, so over JSON they are refused. The client asks the server
//! first (through `text`); when the only objection is that this is not a
//! text session, the client runs them itself, in the server's own format,
//! until a line arrives on stdin: it reprints `get NAME` at the interval,
//! or asks `log` for the events after the newest it has printed.

use crate::error::Error;
use crate::rpc::{Client, ErrorReply};
use crate::style;
use manhole_wire::{quote_word, Builtin, Failure, LogRequest, Reason, Request};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A line that runs until it is stopped, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// `watch NAME [SECONDS]`.
    Item {
        /// The inspected item.
        name: String,
        /// How often it is reprinted.
        interval: Duration,
    },
    /// `log follow`.
    Log,
}

impl Watch {
    /// What `line` asks to follow; `None` for any other line, and for a
    /// `watch` whose words do not fit its usage: sent as it is, that line
    /// gets the server's usage error like any other bad line.
    pub fn parse(line: &str) -> Option<Watch> {
        match manhole_wire::parse_text(line) {
            Ok(Some(Request::Watch { name, interval })) => Some(Watch::Item { name, interval }),
            Ok(Some(Request::Log(LogRequest::Follow))) => Some(Watch::Log),
            _ => None,
        }
    }
}

/// What became of a `watch` line.
pub enum Watching {
    /// The server answered it itself (some future server), with this text.
    Answered(String),
    /// The server refused it for another reason, or its item cannot be
    /// read.
    Refused(ErrorReply),
    /// The client watched until stopped, or until the item failed (then
    /// with that error, already printed).
    Ran(Option<ErrorReply>),
}

/// Whether the server's only objection to a `watch` line is that this
/// session is not a text session of its own.
fn wants_a_text_session(failure: &Failure) -> bool {
    failure.is(Reason::TextOnly)
        // A server from before `data.reason` sends the code alone. For a
        // line that the shared grammar parsed as `watch`, that code has no
        // other cause there.
        || (failure.reason.is_none() && failure.code == Reason::TextOnly.code())
}

/// Runs `line`, which asks for `watch` or `log follow`.
/// `stop_at_end_of_input`: whether the end of stdin stops it too (a person
/// at a prompt), or only a line does (a script that runs it with no input,
/// until it is killed).
pub fn run(
    client: &mut Client,
    line: &str,
    watch: &Watch,
    stop_at_end_of_input: bool,
) -> Result<Watching, Error> {
    match client.text(line)? {
        Ok(text) => return Ok(Watching::Answered(text)),
        Err(reply) if wants_a_text_session(&reply.failure) => {}
        Err(reply) => return Ok(Watching::Refused(reply)),
    }
    match watch {
        Watch::Item { name, interval } => watch_item(client, name, *interval, stop_at_end_of_input),
        Watch::Log => follow_log(client, stop_at_end_of_input),
    }
}

/// `log follow`: the events after the newest seen, asked for at the
/// server's own interval.
fn follow_log(client: &mut Client, stop_at_end_of_input: bool) -> Result<Watching, Error> {
    let status = match client.ask(&Request::Log(LogRequest::Show))? {
        Ok(status) => status,
        Err(reply) => return Ok(Watching::Refused(reply)),
    };
    let filter = status.get("filter").and_then(Value::as_str).unwrap_or("?");
    let mut newest = status.get("newest").and_then(Value::as_u64).unwrap_or(0);
    write_stdout(&manhole_wire::log_follow_heading(filter));
    let mut stdin_open = true;
    loop {
        if stdin_open {
            match line_within(manhole_wire::LOG_FOLLOW_INTERVAL) {
                Input::Line => return Ok(Watching::Ran(None)),
                Input::End if stop_at_end_of_input => return Ok(Watching::Ran(None)),
                Input::End => stdin_open = false,
                Input::Nothing => {}
            }
        } else {
            std::thread::sleep(manhole_wire::LOG_FOLLOW_INTERVAL);
        }
        match client.ask(&Request::Log(LogRequest::After(newest)))? {
            Ok(found) => {
                let events = found.get("events").and_then(Value::as_array);
                let lines: String = events
                    .into_iter()
                    .flatten()
                    .map(manhole_wire::log_event_line)
                    .collect();
                write_stdout(&crate::escape::text(&lines));
                newest = found
                    .get("newest")
                    .and_then(Value::as_u64)
                    .unwrap_or(newest);
            }
            Err(reply) => return Ok(stopped_by(reply)),
        }
    }
}

/// `watch NAME`: `get NAME` reprinted at the interval.
fn watch_item(
    client: &mut Client,
    name: &str,
    interval: Duration,
    stop_at_end_of_input: bool,
) -> Result<Watching, Error> {
    let started = Instant::now();
    let get = format!("{} {}", Builtin::Get.name(), quote_word(name));
    // The first reading comes before the heading, so that an item that
    // cannot be read gets its error alone, as any refused line does.
    let mut reading = match client.text(&get)? {
        Ok(first) => Some(Ok(first)),
        Err(reply) => return Ok(Watching::Refused(reply)),
    };
    write_stdout(&format!(
        "watching `{name}` every {:.1}s; send a line to stop\n",
        interval.as_secs_f64()
    ));
    let mut stdin_open = true;
    loop {
        let read = match reading.take() {
            Some(read) => read,
            None => client.text(&get)?,
        };
        match read {
            Ok(body) => {
                let header = format!("[{:.1}s]", started.elapsed().as_secs_f64());
                let body = crate::escape::text(&body);
                if body.lines().count() > 1 {
                    write_stdout(&format!("{header}\n{body}"));
                } else {
                    write_stdout(&format!("{header} {body}"));
                }
            }
            Err(reply) => return Ok(stopped_by(reply)),
        }
        let next = Instant::now() + interval;
        if stdin_open {
            match line_within(interval) {
                Input::Line => return Ok(Watching::Ran(None)),
                Input::End if stop_at_end_of_input => return Ok(Watching::Ran(None)),
                Input::End => stdin_open = false,
                Input::Nothing => {}
            }
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Prints the error that stopped a watch, which then ends with it.
fn stopped_by(reply: ErrorReply) -> Watching {
    let stdout = std::io::stdout();
    write_stdout(&style::error_line(
        &reply.failure.one_line(),
        style::colour_for(&stdout),
    ));
    Watching::Ran(Some(reply))
}

enum Input {
    Line,
    End,
    Nothing,
}

/// Waits up to `interval` for a line on stdin, and consumes it.
fn line_within(interval: Duration) -> Input {
    let stdin = std::io::stdin();
    let deadline = Instant::now() + interval;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Input::Nothing;
        }
        // poll(2) takes at most u16::MAX ms here; a longer wait loops.
        let timeout = PollTimeout::from(u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1));
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Input::Nothing,
            Ok(_) => {
                let mut line = String::new();
                return match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => Input::End,
                    Ok(_) => Input::Line,
                };
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Input::End,
        }
    }
}

fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_watch_line_is_read_with_the_servers_grammar() {
        assert_eq!(
            Watch::parse("watch 'QUEUE DEPTH' 0.5"),
            Some(Watch::Item {
                name: "QUEUE DEPTH".to_owned(),
                interval: Duration::from_millis(500),
            })
        );
        assert_eq!(
            Watch::parse("  watch REQUESTS"),
            Some(Watch::Item {
                name: "REQUESTS".to_owned(),
                interval: Duration::from_secs(1),
            })
        );
        assert_eq!(Watch::parse("log follow"), Some(Watch::Log));
        assert_eq!(Watch::parse("log tail"), None);
        // Left to the server, which says what is wrong with them.
        assert_eq!(Watch::parse("watch"), None);
        assert_eq!(Watch::parse("watch REQUESTS 0.01"), None);
        assert_eq!(Watch::parse("get REQUESTS"), None);
        assert_eq!(Watch::parse("watcher REQUESTS"), None);
    }

    #[test]
    fn only_a_text_only_refusal_lets_the_client_watch() {
        let text_only = manhole_wire::text_only(Builtin::Watch);
        assert!(wants_a_text_session(&text_only));
        let without_reason = json!({"code": text_only.code, "message": text_only.message});
        assert!(wants_a_text_session(
            &Failure::from_json(&without_reason).unwrap()
        ));
        assert!(!wants_a_text_session(&Failure::new(
            Reason::Unknown,
            "unknown inspected item `X`"
        )));
        assert!(!wants_a_text_session(&Failure::new(
            Reason::BadParams,
            "usage: watch NAME [SECONDS]"
        )));
    }
}
