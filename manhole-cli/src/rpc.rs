//! A JSON-RPC 2.0 client over the manhole socket.
//!
//! The session is JSON because the first byte the server reads is `{`: the
//! first request is written as soon as the connection is made, well within
//! the server's 50 ms sniffing window. The text a person sees comes from
//! the `greeting` and `text` methods, which render exactly what a text
//! session would, so nothing here ever parses text.

use crate::connect::Connection;
use crate::error::Error;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// An error reply: the JSON-RPC `error` object.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    /// Its code, as PROTOCOL.md lists them.
    pub code: i64,
    /// Its message.
    pub message: String,
    /// The whole object, `data` included.
    pub object: Value,
}

impl RemoteError {
    /// A usage error found before anything was sent, in the shape the
    /// server gives its own (`-32602`, invalid params).
    pub fn usage(message: impl Into<String>) -> RemoteError {
        let message = message.into();
        RemoteError {
            code: -32602,
            object: json!({"code": -32602, "message": message}),
            message,
        }
    }

    /// The message on one line, as the text session prints it after
    /// `error: `.
    pub fn one_line(&self) -> String {
        self.message.lines().collect::<Vec<_>>().join("; ")
    }
}

/// A reply: the `result`, or the server's `error`.
pub type Reply<T> = Result<T, RemoteError>;

/// A JSON-RPC session with one manhole.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    path: PathBuf,
    timeout: Duration,
    next_id: u64,
    /// Whether the server ever sent a byte: a close before that is a
    /// refusal, after it the end of the session.
    answered: bool,
}

impl Client {
    /// Starts a session on a connected socket.
    pub fn new(connection: Connection, timeout: Duration) -> Result<Client, Error> {
        let writer = connection.stream.try_clone().map_err(|err| {
            Error::io(
                format!("use the connection to {}", connection.path.display()),
                err,
            )
        })?;
        Ok(Client {
            reader: BufReader::new(connection.stream),
            writer,
            path: connection.path,
            timeout,
            next_id: 1,
            answered: false,
        })
    }

    /// Calls `method` and waits for its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Reply<Value>, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            request["params"] = params;
        }
        let mut line = request.to_string();
        line.push('\n');
        if let Err(err) = self.writer.write_all(line.as_bytes()) {
            let hung_up = matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            );
            if hung_up && !self.answered {
                // It may have said why before it hung up (`busy`).
                return Err(self.last_word().unwrap_or(Error::Refused {
                    path: self.path.clone(),
                }));
            }
            return Err(self.failure(err, "sending a request to"));
        }
        self.read_reply(id)
    }

    /// Sends one text-protocol line through the `text` method: the reply is
    /// the text a text session would print for it.
    pub fn text(&mut self, line: &str) -> Result<Reply<String>, Error> {
        Ok(match self.call("text", json!({ "line": line }))? {
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

    /// Reads lines until the response to `id`. A response to an earlier
    /// request, which timed out here and was answered late, is skipped.
    fn read_reply(&mut self, id: u64) -> Result<Reply<Value>, Error> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) if self.answered => {
                    return Err(Error::Closed {
                        path: self.path.clone(),
                    })
                }
                Ok(0) => {
                    return Err(Error::Refused {
                        path: self.path.clone(),
                    })
                }
                Ok(_) => self.answered = true,
                Err(err) => return Err(self.failure(err, "waiting for a reply from")),
            }
            let response: Value = match serde_json::from_str(&line) {
                Ok(response) => response,
                // Said to any client before it is served, such as `error:
                // busy: ...` past `max_sessions`; the server then hangs up.
                Err(_) if line.starts_with("error: ") => {
                    return Err(Error::Ended {
                        path: self.path.clone(),
                        message: line.trim_start_matches("error: ").trim_end().to_owned(),
                    })
                }
                Err(err) => return Err(self.bad_reply(format!("{err}: {:?}", line.trim_end()))),
            };
            match response.get("id") {
                Some(Value::Number(answered)) if answered.as_u64() == Some(id) => {}
                Some(Value::Number(answered)) if answered.as_u64() < Some(id) => continue,
                // An error about a line whose id the server could not read
                // (too long, say): with one request in flight, it is ours.
                Some(Value::Null) if response.get("error").is_some() => {}
                _ => return Err(self.bad_reply(format!("unexpected id in {response}"))),
            }
            if let Some(error) = response.get("error") {
                return Ok(Err(RemoteError {
                    code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                        .to_owned(),
                    object: error.clone(),
                }));
            }
            return match response.get("result") {
                Some(result) => Ok(Ok(result.clone())),
                None => Err(self.bad_reply(format!("neither `result` nor `error` in {response}"))),
            };
        }
    }

    /// What a server that hung up on us said first, if it said `error: ...`.
    fn last_word(&mut self) -> Option<Error> {
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let message = line.strip_prefix("error: ")?.trim_end().to_owned();
        Some(Error::Ended {
            path: self.path.clone(),
            message,
        })
    }

    /// Whether the server ended the session while nobody was asking (its
    /// `idle_timeout`, or an `uninstall`): `Some` with its last word, if it
    /// said one. Nothing is sent, and a live session is left as it was.
    pub fn ended_by_server(&mut self) -> Option<String> {
        self.reader.get_ref().set_nonblocking(true).ok()?;
        let pending = self.reader.fill_buf().map(|buffer| !buffer.is_empty());
        let _ = self.reader.get_ref().set_nonblocking(false);
        match pending {
            Err(err) if err.kind() == ErrorKind::WouldBlock => None,
            Ok(true) => {
                let mut line = String::new();
                let _ = self.reader.read_line(&mut line);
                let said = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|response| {
                        Some(response.get("error")?.get("message")?.as_str()?.to_owned())
                    })
                    .unwrap_or_else(|| line.trim_end().to_owned());
                Some(said)
            }
            Ok(false) | Err(_) => Some(String::new()),
        }
    }

    fn failure(&self, err: std::io::Error, doing: &str) -> Error {
        match err.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout {
                doing: format!("{doing} {}", self.path.display()),
                timeout: self.timeout,
            },
            // The server hung up: before its first byte that is a refusal.
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe if !self.answered => {
                Error::Refused {
                    path: self.path.clone(),
                }
            }
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Error::Closed {
                path: self.path.clone(),
            },
            _ => Error::io(format!("{doing} {}", self.path.display()), err),
        }
    }

    /// A reply that is not what PROTOCOL.md promises.
    pub fn bad_reply(&self, reason: String) -> Error {
        Error::BadReply {
            path: self.path.clone(),
            reason,
        }
    }
}
