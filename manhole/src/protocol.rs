//! The two wire formats, and the requests they carry.
//!
//! A session speaks text or JSON, decided by its first byte (see
//! [`crate::session`]). Both are parsed here into the same [`Request`], so
//! the built-ins in [`crate::builtins`] never know which one they serve.
//!
//! - Text: one command per line, split into words the way a shell splits
//!   them (`'...'`, `"..."` and `\` quote; there are no comments or
//!   variables).
//! - JSON: newline-delimited JSON-RPC 2.0, one request object per line,
//!   `params` by name. Batches are not supported.

use serde_json::{json, Map, Value};

/// JSON-RPC error codes, as documented in PROTOCOL.md.
pub(crate) mod code {
    pub(crate) const PARSE_ERROR: i32 = -32700;
    pub(crate) const INVALID_REQUEST: i32 = -32600;
    pub(crate) const NOT_FOUND: i32 = -32601;
    pub(crate) const INVALID_PARAMS: i32 = -32602;
    pub(crate) const INTERNAL_ERROR: i32 = -32603;
    pub(crate) const COMMAND_FAILED: i32 = -32000;
    pub(crate) const COMMAND_PANICKED: i32 = -32001;
    pub(crate) const UNAVAILABLE: i32 = -32002;
}

/// Why a request produced no value: a JSON-RPC error code and a message that
/// says what went wrong and what was expected.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The message as one line, for the text protocol.
    pub(crate) fn one_line(&self) -> String {
        self.message.lines().collect::<Vec<_>>().join("; ")
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

/// One argument of a `call`, before it is parsed into the parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgValue {
    Text(String),
    /// JSON `null`: accepted for an optional parameter, meaning "left out".
    Null,
}

/// A request, whichever protocol carried it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Help(Option<String>),
    List,
    Stacks,
    Threads,
    Get(String),
    /// `bare` is set when the text line named the command without `call`;
    /// then an inspected item of that name is read instead, for convenience.
    Call {
        name: String,
        args: Vec<ArgValue>,
        bare: bool,
    },
    /// Replaces a writable static's value.
    Set {
        name: String,
        value: Value,
    },
    /// The call statistics of every function under `inspect(calls)`.
    Stats {
        sort: SortBy,
    },
    /// Text only: reprints an item every `interval` until the client speaks.
    Watch {
        name: String,
        interval: std::time::Duration,
    },
    /// JSON only: the text session's greeting (banner, stacks, hint).
    Greeting,
    /// JSON only: one text-protocol line, answered with its text rendering,
    /// so a client such as `manhole-cli` shows exactly what a text session
    /// would without scraping it.
    Text(String),
    Quit,
}

/// The built-in text commands: name, usage and one-line description, in the
/// order `help` shows them.
pub(crate) const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "help",
        "help [NAME]",
        "show this help, or one command's signature and doc",
    ),
    ("list", "list", "list every command and inspected item"),
    ("stacks", "stacks", "show every thread's stack"),
    (
        "threads",
        "threads",
        "show one line per thread: tid, name and state",
    ),
    ("get", "get NAME", "read an inspected item"),
    (
        "set",
        "set NAME VALUE",
        "write a static marked `inspect(writable)`; VALUE is JSON, or plain text",
    ),
    (
        "stats",
        "stats [--sort COLUMN]",
        "call counts and latencies of every function under `inspect(calls)`",
    ),
    (
        "watch",
        "watch NAME [SECONDS]",
        "reprint an item every SECONDS (default 1) until you send a line",
    ),
    (
        "call",
        "call NAME [ARG...]",
        "call a command; `NAME [ARG...]` alone works too",
    ),
    (
        "quit",
        "quit, exit",
        "close the session (so does end of input)",
    ),
];

/// The columns `stats` can sort by; numbers sort largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortBy {
    #[default]
    Name,
    Calls,
    InFlight,
    Errors,
    Panics,
    Mean,
    P50,
    P99,
    Max,
}

const SORT_COLUMNS: &str = "name, calls, in-flight, errors, panics, mean, p50, p99, max";

impl SortBy {
    fn parse(column: &str) -> Result<Self, Failure> {
        Ok(match column.to_ascii_lowercase().as_str() {
            "name" => SortBy::Name,
            "calls" => SortBy::Calls,
            "in-flight" | "in_flight" | "inflight" => SortBy::InFlight,
            "errors" => SortBy::Errors,
            "panics" => SortBy::Panics,
            "mean" => SortBy::Mean,
            "p50" => SortBy::P50,
            "p99" => SortBy::P99,
            "max" => SortBy::Max,
            _ => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    format!("cannot sort by `{column}`; sort by one of: {SORT_COLUMNS}"),
                ))
            }
        })
    }
}

/// `watch` reprints at least this far apart, so a typo cannot flood the
/// client or busy the host, and at most this far apart.
const MIN_WATCH_INTERVAL: f64 = 0.1;
const MAX_WATCH_INTERVAL: f64 = 3600.0;

/// Why `watch` cannot run over JSON, whether asked as a method or as a text
/// line.
pub(crate) fn watch_needs_text() -> Failure {
    Failure::new(
        code::NOT_FOUND,
        "`watch` needs a text session of its own (`nc -U`, `manhole-cli`); over JSON, send `get` or `stats` as often as you want",
    )
}

/// `rest` when `line` starts with the word `command`.
fn after_command<'a>(line: &'a str, command: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(command)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// `set NAME VALUE`: the value is the rest of the line, not split into
/// words, so that JSON with spaces and quotes arrives whole. A value that is
/// not JSON as written but is one quoted word (as `manhole-cli` sends it) is
/// unquoted first; then it is parsed as JSON, or else taken as a string.
fn parse_set(rest: &str) -> Result<Request, Failure> {
    let usage = || Failure::new(code::INVALID_PARAMS, "usage: set NAME VALUE");
    let (name, raw) = rest.split_once(char::is_whitespace).ok_or_else(usage)?;
    let name = match split_words(name)?.as_slice() {
        [name] => name.clone(),
        _ => return Err(usage()),
    };
    let raw = raw.trim();
    let text = match serde_json::from_str::<Value>(raw) {
        Ok(value) => return Ok(Request::Set { name, value }),
        Err(_) => match split_words(raw) {
            Ok(words) if words.len() == 1 => words.into_iter().next().unwrap_or_default(),
            _ => raw.to_owned(),
        },
    };
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Request::Set { name, value })
}

fn parse_stats(rest: &[String]) -> Result<Request, Failure> {
    let usage = || Failure::new(code::INVALID_PARAMS, "usage: stats [--sort COLUMN]");
    let sort = match rest {
        [] => SortBy::Name,
        [flag, column] if flag == "--sort" => SortBy::parse(column)?,
        [flag] => match flag.strip_prefix("--sort=") {
            Some(column) => SortBy::parse(column)?,
            None => return Err(usage()),
        },
        _ => return Err(usage()),
    };
    Ok(Request::Stats { sort })
}

fn parse_watch(rest: &[String]) -> Result<Request, Failure> {
    let usage = || Failure::new(code::INVALID_PARAMS, "usage: watch NAME [SECONDS]");
    let (name, seconds) = match rest {
        [name] => (name, 1.0),
        [name, seconds] => match seconds.parse::<f64>() {
            Ok(seconds) if (MIN_WATCH_INTERVAL..=MAX_WATCH_INTERVAL).contains(&seconds) => {
                (name, seconds)
            }
            _ => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    format!("the interval must be a number of seconds from {MIN_WATCH_INTERVAL} to {MAX_WATCH_INTERVAL}; got {seconds:?}"),
                ))
            }
        },
        _ => return Err(usage()),
    };
    Ok(Request::Watch {
        name: name.clone(),
        interval: std::time::Duration::from_secs_f64(seconds),
    })
}

/// Parses one text line. `Ok(None)` is an empty line.
pub(crate) fn parse_text(line: &str) -> Result<Option<Request>, Failure> {
    if let Some(rest) = after_command(line, "set") {
        return parse_set(rest).map(Some);
    }
    let words = split_words(line)?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(None);
    };
    let no_args = |request: Request| {
        if rest.is_empty() {
            Ok(request)
        } else {
            Err(Failure::new(
                code::INVALID_PARAMS,
                format!("`{first}` takes no arguments"),
            ))
        }
    };
    let request = match first.as_str() {
        "help" => match rest {
            [] => Request::Help(None),
            [name] => Request::Help(Some(name.clone())),
            _ => return Err(Failure::new(code::INVALID_PARAMS, "usage: help [NAME]")),
        },
        "list" => no_args(Request::List)?,
        "stacks" => no_args(Request::Stacks)?,
        "threads" => no_args(Request::Threads)?,
        "stats" => parse_stats(rest)?,
        "watch" => parse_watch(rest)?,
        "quit" | "exit" => no_args(Request::Quit)?,
        "get" => match rest {
            [name] => Request::Get(name.clone()),
            _ => return Err(Failure::new(code::INVALID_PARAMS, "usage: get NAME")),
        },
        "call" => match rest {
            [name, args @ ..] => Request::Call {
                name: name.clone(),
                args: args.iter().cloned().map(ArgValue::Text).collect(),
                bare: false,
            },
            [] => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    "usage: call NAME [ARG...]",
                ))
            }
        },
        _ => Request::Call {
            name: first.clone(),
            args: rest.iter().cloned().map(ArgValue::Text).collect(),
            bare: true,
        },
    };
    Ok(Some(request))
}

/// Splits a line into words like a POSIX shell: whitespace separates words,
/// `'...'` quotes literally, `"..."` quotes with `\` escaping `"` and `\`,
/// and a bare `\` escapes the next character.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, Failure> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unbalanced('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unbalanced('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unbalanced('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn unbalanced(quote: char) -> Failure {
    Failure::new(
        code::PARSE_ERROR,
        format!("unbalanced {quote} quote; close it, or escape it with a backslash"),
    )
}

/// A JSON-RPC line, parsed.
#[derive(Debug)]
pub(crate) enum JsonLine {
    /// A well-formed request; `id` is `None` for a notification, which gets
    /// no response.
    Request { id: Option<Value>, request: Request },
    /// A line that is not a valid request; answered with `id` (or `null`
    /// when the id itself could not be read).
    Invalid { id: Value, failure: Failure },
}

const METHODS: &str =
    "`help`, `list`, `stacks`, `threads`, `get`, `set`, `call`, `stats`, `greeting`, `text`";

pub(crate) fn parse_json(line: &[u8]) -> JsonLine {
    let invalid = |id: Value, failure| JsonLine::Invalid { id, failure };
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => {
            return invalid(
                Value::Null,
                Failure::new(code::PARSE_ERROR, format!("parse error: {err}")),
            )
        }
    };
    let Value::Object(mut object) = value else {
        return invalid(
            Value::Null,
            Failure::new(
                code::INVALID_REQUEST,
                "a request is one JSON object per line; batches are not supported",
            ),
        );
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            return invalid(
                Value::Null,
                Failure::new(
                    code::INVALID_REQUEST,
                    "`id` must be a string, a number or null",
                ),
            )
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return invalid(
            reply_id,
            Failure::new(code::INVALID_REQUEST, "`jsonrpc` must be \"2.0\""),
        );
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return invalid(
            reply_id,
            Failure::new(code::INVALID_REQUEST, "`method` must be a string"),
        );
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return invalid(
                reply_id,
                Failure::new(
                    code::INVALID_PARAMS,
                    "`params` must be an object, such as {\"name\":\"add\"}",
                ),
            )
        }
    };
    match json_request(&method, params) {
        Ok(request) => JsonLine::Request { id, request },
        Err(failure) => invalid(reply_id, failure),
    }
}

fn json_request(method: &str, mut params: Map<String, Value>) -> Result<Request, Failure> {
    let allowed: &[&str] = match method {
        "help" => &["name"],
        "get" => &["name"],
        "call" => &["name", "args"],
        "text" => &["line"],
        "set" => &["name", "value"],
        "stats" => &["sort"],
        "watch" => return Err(Failure::new(
            code::NOT_FOUND,
            "`watch` is for text sessions; over JSON, send `get` or `stats` as often as you want",
        )),
        "list" | "stacks" | "threads" | "greeting" => &[],
        other => {
            return Err(Failure::new(
                code::NOT_FOUND,
                format!("unknown method `{other}`; expected one of: {METHODS}"),
            ))
        }
    };
    if let Some(key) = params.keys().find(|key| !allowed.contains(&key.as_str())) {
        let expected = if allowed.is_empty() {
            "no params".to_owned()
        } else {
            allowed
                .iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Failure::new(
            code::INVALID_PARAMS,
            format!("unknown param `{key}`; `{method}` takes {expected}"),
        ));
    }
    let mut name = |required: bool| match params.remove("name") {
        Some(Value::String(name)) => Ok(Some(name)),
        None if !required => Ok(None),
        None => Err(Failure::new(
            code::INVALID_PARAMS,
            format!("`{method}` needs the param `name`"),
        )),
        Some(_) => Err(Failure::new(
            code::INVALID_PARAMS,
            "`name` must be a string",
        )),
    };
    Ok(match method {
        "help" => Request::Help(name(false)?),
        "get" => Request::Get(name(true)?.unwrap_or_default()),
        "call" => {
            let name = name(true)?.unwrap_or_default();
            let args = match params.remove("args") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(args)) => args
                    .into_iter()
                    .enumerate()
                    .map(|(index, arg)| json_arg(index, arg))
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(Failure::new(
                        code::INVALID_PARAMS,
                        "`args` must be an array, such as [40, 2]",
                    ))
                }
            };
            Request::Call {
                name,
                args,
                bare: false,
            }
        }
        "text" => match params.remove("line") {
            Some(Value::String(line)) => Request::Text(line),
            None => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    "`text` needs the param `line`",
                ))
            }
            Some(_) => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    "`line` must be a string",
                ))
            }
        },
        "set" => {
            let name = name(true)?.unwrap_or_default();
            match params.remove("value") {
                Some(value) => Request::Set { name, value },
                None => {
                    return Err(Failure::new(
                        code::INVALID_PARAMS,
                        "`set` needs the param `value`",
                    ))
                }
            }
        }
        "stats" => match params.remove("sort") {
            None | Some(Value::Null) => Request::Stats { sort: SortBy::Name },
            Some(Value::String(column)) => Request::Stats {
                sort: SortBy::parse(&column)?,
            },
            Some(_) => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    format!("`sort` must be a string, one of: {SORT_COLUMNS}"),
                ))
            }
        },
        "list" => Request::List,
        "stacks" => Request::Stacks,
        "greeting" => Request::Greeting,
        _ => Request::Threads,
    })
}

fn json_arg(index: usize, arg: Value) -> Result<ArgValue, Failure> {
    match arg {
        Value::String(text) => Ok(ArgValue::Text(text)),
        Value::Number(number) => Ok(ArgValue::Text(number.to_string())),
        Value::Bool(flag) => Ok(ArgValue::Text(flag.to_string())),
        Value::Null => Ok(ArgValue::Null),
        Value::Array(_) | Value::Object(_) => Err(Failure::new(
            code::INVALID_PARAMS,
            format!(
                "argument {} must be a string, a number, a boolean or null",
                index + 1
            ),
        )
        .with_data(json!({"index": index}))),
    }
}

/// One response line (without the newline).
pub(crate) fn json_response(id: &Value, result: Result<Value, Failure>) -> String {
    let response = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(failure) => json!({"jsonrpc": "2.0", "id": id, "error": failure.to_json()}),
    };
    response.to_string()
}

/// A value as the text protocol prints it: a string bare, anything else as
/// compact JSON.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(words("  call add 40   2 "), ["call", "add", "40", "2"]);
        assert_eq!(
            words(r#"say 'hello world' "a \"b\"" c\ d"#),
            ["say", "hello world", "a \"b\"", "c d"]
        );
        assert_eq!(words("x '' #tag"), ["x", "", "#tag"]);
        assert!(words("").is_empty());
        assert_eq!(
            split_words("say 'open").unwrap_err().code,
            code::PARSE_ERROR
        );
    }

    #[test]
    fn text_builtins_check_their_arity() {
        assert_eq!(parse_text("list").unwrap(), Some(Request::List));
        assert_eq!(parse_text("   ").unwrap(), None);
        assert_eq!(parse_text("get").unwrap_err().message, "usage: get NAME");
        assert_eq!(
            parse_text("list all").unwrap_err().message,
            "`list` takes no arguments"
        );
        assert_eq!(
            parse_text("add 1 2").unwrap(),
            Some(Request::Call {
                name: "add".into(),
                args: vec![ArgValue::Text("1".into()), ArgValue::Text("2".into())],
                bare: true
            })
        );
    }

    fn failure(line: &str) -> (Value, i32) {
        match parse_json(line.as_bytes()) {
            JsonLine::Invalid { id, failure } => (id, failure.code),
            JsonLine::Request { .. } => panic!("{line} parsed as a request"),
        }
    }

    #[test]
    fn json_requests_are_checked() {
        assert_eq!(failure("{"), (Value::Null, code::PARSE_ERROR));
        assert_eq!(failure("[]"), (Value::Null, code::INVALID_REQUEST));
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":3}"#),
            (json!(3), code::INVALID_REQUEST)
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"1.0","id":3,"method":"list"}"#),
            (json!(3), code::INVALID_REQUEST)
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":"a","method":"nope"}"#),
            (json!("a"), code::NOT_FOUND)
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"get","params":{}}"#),
            (json!(1), code::INVALID_PARAMS)
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"get","params":{"nmae":"x"}}"#),
            (json!(1), code::INVALID_PARAMS)
        );
        assert_eq!(
            failure(
                r#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"x","args":[[1]]}}"#
            ),
            (json!(1), code::INVALID_PARAMS)
        );
    }

    #[test]
    fn json_call_args_become_text() {
        let line = r#"{"jsonrpc":"2.0","id":7,"method":"call","params":{"name":"add","args":[40,"2",true,null]}}"#;
        let JsonLine::Request { id, request } = parse_json(line.as_bytes()) else {
            panic!("not a request")
        };
        assert_eq!(id, Some(json!(7)));
        assert_eq!(
            request,
            Request::Call {
                name: "add".into(),
                args: vec![
                    ArgValue::Text("40".into()),
                    ArgValue::Text("2".into()),
                    ArgValue::Text("true".into()),
                    ArgValue::Null
                ],
                bare: false
            }
        );
    }

    #[test]
    fn notifications_have_no_id() {
        let line = r#"{"jsonrpc":"2.0","method":"list"}"#;
        assert!(matches!(
            parse_json(line.as_bytes()),
            JsonLine::Request { id: None, .. }
        ));
    }
}
