//! One command, for scripts: `manhole-cli PID COMMAND [ARG...]`.
//!
//! The words are quoted for the server's shell-like splitter. Without
//! `--json` they are sent as one line through the `text` method, so the
//! output is what a text session prints. With `--json` that line is parsed
//! with the server's own grammar, its structured method called, and the
//! raw `result` printed.

use crate::error::Error;
use crate::output;
use crate::rpc::{Client, ErrorReply, Reply};
use crate::style;
use crate::watch::{self, Watch};
use manhole_wire::{Failure, Reason, Request};
use serde_json::Value;
use std::io::{IsTerminal as _, Write};

/// The process exit status for a command that ran.
pub enum Outcome {
    /// The server answered with a result.
    Success,
    /// The server answered with an error.
    ErrorReply,
}

/// Asks `line` (words already quoted) as its structured method, with the
/// usage errors that the text protocol gives found here.
pub fn ask_json(client: &mut Client, line: &str) -> Result<Reply<Value>, Error> {
    match request_of(line) {
        Ok(request) => client.ask(&request),
        Err(usage) => Ok(Err(usage.into())),
    }
}

/// Runs `words` as one command and prints its answer, or writes it to the
/// file that `-o FILE` names.
pub fn run(client: &mut Client, words: &[String], json: bool) -> Result<Outcome, Error> {
    let (words, path) = match output::split(words) {
        Ok(split) => split,
        Err(usage) => return Ok(print_text(Err(usage.into()))),
    };
    let line = manhole_wire::quote_line(&words);
    client.show_countdown(std::io::stderr().is_terminal());
    if let Some(path) = path {
        let request = match request_of(&line) {
            Ok(request) => request,
            Err(usage) => return Ok(print_text(Err(usage.into()))),
        };
        return Ok(match output::write(client, &request, &path)? {
            Ok(written) => {
                eprintln!(
                    "manhole-cli: wrote {} bytes to {} ({})",
                    written.bytes,
                    path.display(),
                    written.hint
                );
                Outcome::Success
            }
            Err(reply) => print_text(Err(reply)),
        });
    }
    if json {
        return Ok(print_json(ask_json(client, &line)?));
    }
    if let Some(watch) = Watch::parse(&line) {
        // Runs until a line arrives on stdin, or until it is killed.
        return Ok(match watch::run(client, &line, &watch, false)? {
            watch::Watching::Answered(text) => print_text(Ok(text)),
            watch::Watching::Refused(reply) => print_text(Err(reply)),
            watch::Watching::Ran(None) => Outcome::Success,
            watch::Watching::Ran(Some(_)) => Outcome::ErrorReply,
        });
    }
    Ok(print_text(client.text(&line)?))
}

/// The request that `line` makes, with the usage errors the text protocol
/// gives.
fn request_of(line: &str) -> Result<Request, Failure> {
    manhole_wire::parse_text(line)?
        .ok_or_else(|| Failure::new(Reason::BadParams, "no command given"))
}

fn print_text(reply: Reply<String>) -> Outcome {
    match reply {
        Ok(text) => {
            // A reader that went away (`| head`) is not our failure.
            let _ = std::io::stdout()
                .lock()
                .write_all(crate::escape::text(&text).as_bytes());
            Outcome::Success
        }
        Err(reply) => {
            print_error(&reply);
            Outcome::ErrorReply
        }
    }
}

fn print_error(reply: &ErrorReply) {
    let stderr = std::io::stderr();
    let line = style::error_line(&reply.failure.one_line(), style::colour_for(&stderr));
    let _ = stderr.lock().write_all(line.as_bytes());
}

/// The result, pretty-printed, on stdout; an error reply prints its error
/// object there instead (so stdout is always JSON), and `error: MESSAGE` on
/// stderr.
fn print_json(reply: Reply<Value>) -> Outcome {
    let (value, outcome) = match reply {
        Ok(result) => (result, Outcome::Success),
        Err(reply) => {
            print_error(&reply);
            (reply.object, Outcome::ErrorReply)
        }
    };
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let _ = writeln!(std::io::stdout().lock(), "{}", crate::escape::json(text));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use manhole_wire::Builtin;
    use serde_json::json;

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    /// What `--json` sends for the words of a command line.
    fn json_for(words_given: &[&str]) -> Result<(&'static str, Value), Failure> {
        request_of(&manhole_wire::quote_line(&words(words_given)))?.to_json()
    }

    #[test]
    fn every_argument_is_single_quoted() {
        let quote_line = |given: &[&str]| manhole_wire::quote_line(&words(given));
        assert_eq!(
            quote_line(&["call", "add", "40", "2"]),
            "call 'add' '40' '2'"
        );
        assert_eq!(
            quote_line(&["echo", "it's", "", "a \"b\" \\c"]),
            r#"echo 'it'\''s' '' 'a "b" \c'"#
        );
        assert_eq!(quote_line(&["two words"]), "'two words'");
        // `set` stays bare: the server knows it by the line's first word.
        assert_eq!(
            quote_line(&["set", "X", "{\"a\": 1}"]),
            r#"set 'X' '{"a": 1}'"#
        );
    }

    #[test]
    fn commands_map_to_methods() {
        assert_eq!(
            json_for(&["get", "REQUESTS"]).unwrap(),
            ("get", json!({"name": "REQUESTS"}))
        );
        assert_eq!(
            json_for(&["call", "add", "1", "2"]).unwrap(),
            ("call", json!({"name": "add", "args": ["1", "2"]}))
        );
        assert_eq!(
            json_for(&["add", "1", "2"]).unwrap(),
            (
                "call",
                json!({"name": "add", "args": ["1", "2"], "bare": true})
            )
        );
        // A bare name may be an inspected item; the server decides.
        assert_eq!(
            json_for(&["REQUESTS"]).unwrap(),
            (
                "call",
                json!({"name": "REQUESTS", "args": [], "bare": true})
            )
        );
        assert_eq!(json_for(&["stacks"]).unwrap(), ("stacks", Value::Null));
        assert_eq!(
            json_for(&["help", "add"]).unwrap(),
            ("help", json!({"name": "add"}))
        );
        assert_eq!(
            json_for(&["set", "LIMIT", "250"]).unwrap(),
            ("set", json!({"name": "LIMIT", "value": 250}))
        );
        assert_eq!(
            json_for(&["set", "SETTINGS", r#"{"mode": "fast"}"#]).unwrap(),
            (
                "set",
                json!({"name": "SETTINGS", "value": {"mode": "fast"}})
            )
        );
        assert_eq!(
            json_for(&["stats", "--sort", "p99"]).unwrap(),
            ("stats", json!({"sort": "p99"}))
        );
        assert_eq!(json_for(&["get"]).unwrap(), ("get", json!({"name": ""})));
        assert_eq!(
            json_for(&["get", "A", "B"]).unwrap_err(),
            Failure::new(Reason::BadParams, "usage: get [NAME]")
        );
        assert_eq!(
            json_for(&["list", "x"]).unwrap_err(),
            Failure::new(Reason::BadParams, "`list` takes no arguments")
        );
    }

    #[test]
    fn text_only_commands_fail_before_anything_is_sent() {
        assert_eq!(
            json_for(&["watch", "REQUESTS", "0.5"]).unwrap_err(),
            manhole_wire::text_only(Builtin::Watch)
        );
        assert_eq!(
            json_for(&["exit"]).unwrap_err(),
            manhole_wire::text_only(Builtin::Quit)
        );
        // Its usage is checked first, as over text.
        assert!(json_for(&["watch"]).unwrap_err().is(Reason::BadParams));
    }
}
