//! `watch NAME [SECONDS]`, run by the client.
//!
//! The server's `watch` holds a text session for itself, so over JSON it is
//! refused. The client asks the server first (through `text`), which checks
//! the arguments; when the only objection is that this is not a text
//! session, the client reprints `get NAME` at the interval itself, in the
//! server's own format, until a line arrives on stdin.

use crate::error::Error;
use crate::rpc::{Client, RemoteError};
use crate::style;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The start of the server's refusal of `watch` over JSON.
const NEEDS_TEXT: &str = "`watch` needs a text session";

/// What became of a `watch` line.
pub enum Watching {
    /// The server answered it itself (some future server), with this text.
    Answered(String),
    /// The server refused it for another reason, such as its usage.
    Refused(RemoteError),
    /// The client watched until stopped, or until the item failed (then
    /// with that error, already printed).
    Ran(Option<RemoteError>),
}

/// Whether `line` is a `watch` command.
pub fn is_watch(line: &str) -> bool {
    line.split_whitespace().next() == Some("watch")
}

/// The words of a line typed at the prompt, for `watch NAME [SECONDS]`:
/// split at whitespace, with quotes around a word taken off.
pub fn typed_words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|word| {
            let unquoted = ['\'', '"'].iter().find_map(|quote| {
                word.strip_prefix(*quote)
                    .and_then(|rest| rest.strip_suffix(*quote))
            });
            unquoted.unwrap_or(word).to_owned()
        })
        .collect()
}

/// Runs `line`, a `watch` command whose words are `words` (unquoted).
/// `stop_at_end_of_input`: whether the end of stdin stops it too (a person
/// at a prompt), or only a line does (a script that runs it with no input,
/// until it is killed).
pub fn run(
    client: &mut Client,
    line: &str,
    words: &[String],
    stop_at_end_of_input: bool,
) -> Result<Watching, Error> {
    match client.text(line)? {
        Ok(text) => return Ok(Watching::Answered(text)),
        Err(err) if err.code == -32601 && err.message.starts_with(NEEDS_TEXT) => {}
        Err(err) => return Ok(Watching::Refused(err)),
    }
    // The server accepted the arguments: a name, then seconds (default 1).
    let name = words.get(1).map_or("", String::as_str);
    let seconds = words
        .get(2)
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or(1.0);
    let interval = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    write_stdout(&format!(
        "watching `{name}` every {:.1}s; send a line to stop\n",
        interval.as_secs_f64()
    ));
    let get = format!("get {}", crate::oneshot::quote_word(name));
    let mut stdin_open = true;
    loop {
        match client.text(&get)? {
            Ok(body) => {
                let header = format!("[{:.1}s]", started.elapsed().as_secs_f64());
                if body.lines().count() > 1 {
                    write_stdout(&format!("{header}\n{body}"));
                } else {
                    write_stdout(&format!("{header} {body}"));
                }
            }
            Err(err) => {
                let stdout = std::io::stdout();
                write_stdout(&style::error_line(
                    &err.one_line(),
                    style::colour_for(&stdout),
                ));
                return Ok(Watching::Ran(Some(err)));
            }
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
