//! Why a request produced no value: a JSON-RPC error code, a reason that a
//! program can match on, and a message for a person.
//!
//! Every error a server sends carries `data.reason`. Each [`Reason`] belongs
//! to exactly one [`code`], so the code can never disagree with the reason.

use serde_json::{json, Map, Value};
use std::fmt;

/// The JSON-RPC error codes, as PROTOCOL.md lists them.
pub mod code {
    /// The line is not JSON, not UTF-8, or has an unbalanced quote.
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid request: not an object, a bad `id`, a line too long.
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method, command or item, or not available over this protocol.
    pub const NOT_FOUND: i32 = -32601;
    /// A bad param or argument.
    pub const INVALID_PARAMS: i32 = -32602;
    /// The value could not be turned into JSON.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The command returned `Err`.
    pub const COMMAND_FAILED: i32 = -32000;
    /// The command panicked.
    pub const COMMAND_PANICKED: i32 = -32001;
    /// Something stayed busy: a lock past the lock timeout, every session.
    pub const UNAVAILABLE: i32 = -32002;
    /// An async command ran past `command_timeout`; its future was dropped.
    pub const TIMED_OUT: i32 = -32003;
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $code:ident;)*) => {
        /// The machine-readable cause of an error, sent as `error.data.reason`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in the order PROTOCOL.md lists them.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The reason as it is written on the wire.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            /// The JSON-RPC code that goes with this reason.
            #[must_use]
            pub const fn code(self) -> i32 {
                match self {
                    $(Reason::$variant => code::$code,)*
                }
            }

            /// The reason written `name` on the wire, if there is one.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Reason> {
                match name {
                    $($name => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// The line is not JSON or not UTF-8, or a quote is left open.
    Parse = "parse", PARSE_ERROR;
    /// The line is not a JSON-RPC 2.0 request object.
    InvalidRequest = "invalid_request", INVALID_REQUEST;
    /// The line is longer than `max_line_length`; it was skipped.
    TooLong = "too_long", INVALID_REQUEST;
    /// No complete line within `idle_timeout`; the session ends.
    IdleTimeout = "idle_timeout", INVALID_REQUEST;
    /// No method of that name.
    UnknownMethod = "unknown_method", NOT_FOUND;
    /// No command or inspected item of that name.
    Unknown = "unknown", NOT_FOUND;
    /// Two crates registered the name; which one is meant is a guess.
    Ambiguous = "ambiguous", NOT_FOUND;
    /// A command where an item was asked for, or the other way round.
    WrongKind = "wrong_kind", NOT_FOUND;
    /// A text-session command asked over JSON (`watch`, `quit`, `log follow`).
    TextOnly = "text_only", NOT_FOUND;
    /// The params or words of a request do not fit its usage.
    BadParams = "bad_params", INVALID_PARAMS;
    /// One argument of a `call` does not parse as its parameter's type.
    BadArgument = "bad_argument", INVALID_PARAMS;
    /// `set` on an item that is not a writable static.
    NotWritable = "not_writable", INVALID_PARAMS;
    /// `set` with a value that does not fit the static's type.
    BadValue = "bad_value", INVALID_PARAMS;
    /// The value has no JSON form (a map with non-string keys, say).
    NotSerialisable = "not_serialisable", INTERNAL_ERROR;
    /// The command or computed item returned `Err`.
    ReturnedErr = "returned_err", COMMAND_FAILED;
    /// The command or computed item panicked.
    Panicked = "panicked", COMMAND_PANICKED;
    /// A `Mutex` or `RwLock` stayed held past the lock timeout.
    LockTimeout = "lock_timeout", UNAVAILABLE;
    /// Every session is taken (`max_sessions`), and the client is closed;
    /// or a profile is already running (one runs at a time).
    Busy = "busy", UNAVAILABLE;
    /// The built-in needs a cargo feature the program was built without,
    /// or a part the program did not set up (`log` without the `tracing`
    /// feature, or without `manhole::tracing::layer()` in its subscriber).
    NotEnabled = "not_enabled", NOT_FOUND;
    /// An async command was called, and the manhole knows no tokio runtime
    /// to run it on (installed outside one, without `Options::tokio_handle`).
    NoRuntime = "no_runtime", UNAVAILABLE;
    /// An async command ran past `command_timeout`; its future was dropped.
    TimedOut = "timed_out", TIMED_OUT;
    /// The allocator could not write the heap profile asked for.
    DumpFailed = "dump_failed", INTERNAL_ERROR;
    /// A profile could not start: the stack signal could not be installed,
    /// or `/proc/self/task` could not be read.
    ProfileFailed = "profile_failed", INTERNAL_ERROR;
    /// A command's reply is larger than `max_reply_bytes`; nothing of it
    /// was sent.
    ReplyTooLarge = "reply_too_large", INTERNAL_ERROR;
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON-RPC error: what the server sends, and what a client reads back.
///
/// # Examples
///
/// ```
/// use manhole_wire::{Failure, Reason};
///
/// let failure = Failure::new(Reason::Unknown, "unknown command `ad`");
/// let object = failure.to_json();
/// assert_eq!(object["code"], -32601);
/// assert_eq!(object["data"]["reason"], "unknown");
/// assert_eq!(Failure::from_json(&object).unwrap(), failure);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The JSON-RPC code: [`Reason::code`] for a failure made here; as read
    /// for one read back.
    pub code: i32,
    /// Why, for programs. `None` only for an error read back from a server
    /// that sent a reason this crate does not know (or none).
    pub reason: Option<Reason>,
    /// Why, for people: what went wrong and what was expected.
    pub message: String,
    /// More about it, beside `reason` in `data`: which argument, what it
    /// expected.
    pub details: Map<String, Value>,
}

impl Failure {
    /// A failure for `reason`, with its code.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            code: reason.code(),
            reason: Some(reason),
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds the fields of `details` (an object) to `data`.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        if let Value::Object(details) = details {
            self.details.extend(details);
        }
        self
    }

    /// Whether this failure is for `reason`.
    #[must_use]
    pub fn is(&self, reason: Reason) -> bool {
        self.reason == Some(reason)
    }

    /// The message as one line, as the text protocol prints it.
    #[must_use]
    pub fn one_line(&self) -> String {
        self.message.lines().collect::<Vec<_>>().join("; ")
    }

    /// The JSON-RPC `error` object: `{"code","message","data":{"reason",...}}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut data = Map::new();
        if let Some(reason) = self.reason {
            data.insert("reason".to_owned(), Value::from(reason.as_str()));
        }
        data.extend(self.details.clone());
        json!({"code": self.code, "message": self.message, "data": data})
    }

    /// Reads an `error` object back; `None` when it has no integer `code`.
    #[must_use]
    pub fn from_json(error: &Value) -> Option<Failure> {
        let code = i32::try_from(error.get("code")?.as_i64()?).ok()?;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_owned();
        let mut details = match error.get("data") {
            Some(Value::Object(data)) => data.clone(),
            _ => Map::new(),
        };
        let reason = match details.remove("reason") {
            Some(Value::String(name)) => Reason::from_name(&name),
            _ => None,
        };
        Some(Failure {
            code,
            reason,
            message,
            details,
        })
    }

    /// The one line a server writes to a client it will not serve, before
    /// it knows which protocol the client speaks: `error: MESSAGE
    /// (reason: REASON)`. [`Failure::from_refusal`] reads it back.
    #[must_use]
    pub fn to_refusal(&self) -> String {
        let reason = self.reason.map_or("", Reason::as_str);
        format!(
            "{REFUSAL_PREFIX}{} ({REASON_TAG}{reason})\n",
            self.one_line()
        )
    }

    /// Reads a line written by [`Failure::to_refusal`].
    #[must_use]
    pub fn from_refusal(line: &str) -> Option<Failure> {
        let rest = line.trim_end().strip_prefix(REFUSAL_PREFIX)?;
        let (message, reason) = match rest.rsplit_once(&format!(" ({REASON_TAG}")) {
            Some((message, reason)) => (
                message,
                reason.strip_suffix(')').and_then(Reason::from_name),
            ),
            None => (rest, None),
        };
        Some(Failure {
            code: reason.map_or(code::UNAVAILABLE, Reason::code),
            reason,
            message: message.to_owned(),
            details: Map::new(),
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// How the text protocol starts an error line, and a refusal.
pub const REFUSAL_PREFIX: &str = "error: ";
const REASON_TAG: &str = "reason: ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_by_name() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_name(reason.as_str()), Some(*reason));
        }
        assert_eq!(Reason::from_name("nope"), None);
    }

    #[test]
    fn refusals_round_trip() {
        let busy = Failure::new(Reason::Busy, "busy: 16 sessions are open");
        let line = busy.to_refusal();
        assert_eq!(line, "error: busy: 16 sessions are open (reason: busy)\n");
        assert_eq!(Failure::from_refusal(&line), Some(busy));
        assert_eq!(Failure::from_refusal("hello"), None);
    }

    #[test]
    fn details_sit_beside_the_reason() {
        let failure = Failure::new(Reason::BadArgument, "no").with_details(json!({"index": 1}));
        assert_eq!(
            failure.to_json(),
            json!({"code": -32602, "message": "no", "data": {"reason": "bad_argument", "index": 1}})
        );
    }
}
