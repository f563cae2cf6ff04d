//! One command, for scripts: `manhole-cli PID COMMAND [ARG...]`.
//!
//! Without `--json` the words are quoted for the server's shell-like
//! splitter and sent as one line through the `text` method, so the output
//! is what a text session prints. With `--json` the matching structured
//! method is called and its raw `result` printed.

use crate::error::Error;
use crate::rpc::{Client, RemoteError, Reply};
use crate::style;
use crate::watch;
use serde_json::{json, Value};
use std::io::Write;

/// The process exit status for a command that ran.
pub enum Outcome {
    /// The server answered with a result.
    Success,
    /// The server answered with an error.
    ErrorReply,
}

/// Runs `words` as one command and prints its answer.
pub fn run(client: &mut Client, words: &[String], json: bool) -> Result<Outcome, Error> {
    if json {
        let reply = match structured(words) {
            Ok((method, params)) => client.call(method, params)?,
            Err(usage) => Err(usage),
        };
        return Ok(print_json(reply));
    }
    let line = quote_line(words);
    if watch::is_watch(&line) {
        // Runs until a line arrives on stdin, or until it is killed.
        return Ok(match watch::run(client, &line, words, false)? {
            watch::Watching::Answered(text) => print_text(Ok(text)),
            watch::Watching::Refused(err) => print_text(Err(err)),
            watch::Watching::Ran(None) => Outcome::Success,
            watch::Watching::Ran(Some(_)) => Outcome::ErrorReply,
        });
    }
    Ok(print_text(client.text(&line)?))
}

fn print_text(reply: Reply<String>) -> Outcome {
    match reply {
        Ok(text) => {
            // A reader that went away (`| head`) is not our failure.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Outcome::Success
        }
        Err(err) => {
            print_error(&err);
            Outcome::ErrorReply
        }
    }
}

fn print_error(err: &RemoteError) {
    let stderr = std::io::stderr();
    let line = style::error_line(&err.one_line(), style::colour_for(&stderr));
    let _ = stderr.lock().write_all(line.as_bytes());
}

/// The result, pretty-printed, on stdout; an error reply prints its error
/// object there instead (so stdout is always JSON), and `error: MESSAGE` on
/// stderr.
fn print_json(reply: Reply<Value>) -> Outcome {
    let (value, outcome) = match reply {
        Ok(result) => (result, Outcome::Success),
        Err(err) => {
            print_error(&err);
            (err.object, Outcome::ErrorReply)
        }
    };
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    outcome
}

/// The words as one line that the server's splitter turns back into
/// exactly these words: each argument in POSIX single quotes, a `'` written
/// `'\''`. The command word itself goes bare when it is a plain name,
/// because the server knows `set` by the line's first characters (and takes
/// the rest of the line as the value).
pub fn quote_line(words: &[String]) -> String {
    let Some((command, args)) = words.split_first() else {
        return String::new();
    };
    let plain = !command.is_empty()
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    let command = if plain {
        command.clone()
    } else {
        quote_word(command)
    };
    std::iter::once(command)
        .chain(args.iter().map(|arg| quote_word(arg)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word in POSIX single quotes.
pub fn quote_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The JSON-RPC method and params for a command line, with the same usage
/// errors the text protocol gives.
pub fn structured(words: &[String]) -> Result<(&'static str, Value), RemoteError> {
    let (first, rest) = words
        .split_first()
        .ok_or_else(|| RemoteError::usage("no command given"))?;
    let no_args = |method: &'static str| {
        if rest.is_empty() {
            Ok((method, Value::Null))
        } else {
            Err(RemoteError::usage(format!("`{first}` takes no arguments")))
        }
    };
    match first.as_str() {
        "help" => match rest {
            [] => Ok(("help", Value::Null)),
            [name] => Ok(("help", json!({ "name": name }))),
            _ => Err(RemoteError::usage("usage: help [NAME]")),
        },
        "list" => no_args("list"),
        "stacks" => no_args("stacks"),
        "threads" => no_args("threads"),
        "get" => match rest {
            [name] => Ok(("get", json!({ "name": name }))),
            _ => Err(RemoteError::usage("usage: get NAME")),
        },
        // The value is the rest of the line, as JSON or else a string, as
        // the text protocol reads it.
        "set" => match rest {
            [name, value @ ..] if !value.is_empty() => {
                let text = value.join(" ");
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                Ok(("set", json!({"name": name, "value": value})))
            }
            _ => Err(RemoteError::usage("usage: set NAME VALUE")),
        },
        "stats" => match rest {
            [] => Ok(("stats", Value::Null)),
            [flag, column] if flag == "--sort" => Ok(("stats", json!({ "sort": column }))),
            [flag] if flag.starts_with("--sort=") => {
                Ok(("stats", json!({ "sort": &flag["--sort=".len()..] })))
            }
            _ => Err(RemoteError::usage("usage: stats [--sort COLUMN]")),
        },
        // The server says why there is no `watch` over JSON.
        "watch" => Ok(("watch", Value::Null)),
        "call" => match rest {
            [name, args @ ..] => Ok(("call", json!({"name": name, "args": args}))),
            [] => Err(RemoteError::usage("usage: call NAME [ARG...]")),
        },
        name => Ok(("call", json!({"name": name, "args": rest}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn every_argument_is_single_quoted() {
        assert_eq!(
            quote_line(&words(&["call", "add", "40", "2"])),
            "call 'add' '40' '2'"
        );
        assert_eq!(
            quote_line(&words(&["echo", "it's", "", "a \"b\" \\c"])),
            r#"echo 'it'\''s' '' 'a "b" \c'"#
        );
        assert_eq!(quote_line(&words(&["two words"])), "'two words'");
        assert_eq!(
            quote_line(&words(&["set", "X", "{\"a\": 1}"])),
            r#"set 'X' '{"a": 1}'"#
        );
    }

    #[test]
    fn commands_map_to_methods() {
        assert_eq!(
            structured(&words(&["get", "REQUESTS"])).unwrap(),
            ("get", json!({"name": "REQUESTS"}))
        );
        assert_eq!(
            structured(&words(&["call", "add", "1", "2"])).unwrap(),
            ("call", json!({"name": "add", "args": ["1", "2"]}))
        );
        assert_eq!(
            structured(&words(&["add", "1", "2"])).unwrap(),
            ("call", json!({"name": "add", "args": ["1", "2"]}))
        );
        assert_eq!(
            structured(&words(&["stacks"])).unwrap(),
            ("stacks", Value::Null)
        );
        assert_eq!(
            structured(&words(&["help", "add"])).unwrap(),
            ("help", json!({"name": "add"}))
        );
        assert_eq!(
            structured(&words(&["set", "LIMIT", "250"])).unwrap(),
            ("set", json!({"name": "LIMIT", "value": 250}))
        );
        assert_eq!(
            structured(&words(&["set", "MODE", "fast", "mode"])).unwrap(),
            ("set", json!({"name": "MODE", "value": "fast mode"}))
        );
        assert_eq!(
            structured(&words(&["stats", "--sort", "p99"])).unwrap(),
            ("stats", json!({"sort": "p99"}))
        );
        assert_eq!(
            structured(&words(&["get"])).unwrap_err().message,
            "usage: get NAME"
        );
        assert_eq!(
            structured(&words(&["list", "x"])).unwrap_err().message,
            "`list` takes no arguments"
        );
    }
}
