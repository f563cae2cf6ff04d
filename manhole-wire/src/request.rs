//! Requests, whichever protocol carries them, and their two grammars.
//!
//! - Text: one command per line, split into words by [`crate::split_words`].
//! - JSON: newline-delimited JSON-RPC 2.0, one request object per line,
//!   `params` by name. Batches are not supported.
//!
//! Both parse into the same [`Request`], so the server's built-ins never
//! know which one they serve, and [`Request::to_json`] lets a client send
//! a text command line as its structured method.

use crate::method::{Builtin, Protocols};
use crate::profile::{thread_param, ProfileRequest};
use crate::{split_words, Failure, Reason};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// One argument of a `call`, before it is parsed into the parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// An argument's text (a JSON number or boolean is turned into text).
    Text(String),
    /// JSON `null`: accepted for an optional parameter, meaning "left out".
    Null,
}

/// A request, whichever protocol carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Every built-in, command and item; or one by name.
    Help(Option<String>),
    /// Every command and item.
    List,
    /// Every thread's stack, or the chosen threads'.
    Stacks {
        /// Whether threads with the same state and frames are shown once,
        /// with their count and tids.
        collapse: bool,
        /// Whether runs of frames of std, core, alloc, tokio, futures and
        /// the manhole are folded into one line each.
        short: bool,
        /// Only the thread with this tid, or the threads whose name starts
        /// with it.
        thread: Option<String>,
    },
    /// One line per thread.
    Threads,
    /// The panics kept, newest first.
    Panics,
    /// The watchdog's threshold: shown (`None`), or set.
    Watchdog(Option<WatchdogThreshold>),
    /// The watchdog's reports kept, newest first.
    /// `stalls [--short]`: the watchdog's reports kept, their stacks
    /// shortened as `stacks --short` shortens them when asked.
    Stalls {
        /// Only the program's frames, runtime runs folded.
        short: bool,
    },
    /// The flight recorder's series over the last `since`, one value per
    /// `every`, of the series whose names start with one of `names` (all
    /// when empty), and its events.
    History {
        /// How far back to look.
        since: Duration,
        /// The step between values.
        every: Duration,
        /// Which series.
        names: Vec<String>,
    },
    /// The process at a glance: ids, times, memory, files, limits.
    Info,
    /// Resident memory and the allocator's statistics; with
    /// `heap_profile`, jemalloc's heap profile instead, as gzipped pprof.
    Mem {
        /// Whether the heap profile is asked for.
        heap_profile: bool,
    },
    /// The tokio runtime's metrics.
    Runtime,
    /// The in-flight instrumented async calls whose outermost call is at
    /// least `older_than` old.
    Tasks {
        /// How old a tree's root must be to be shown.
        older_than: Duration,
    },
    /// CPU use per thread, measured over `interval`.
    Top {
        /// How long to measure.
        interval: Duration,
    },
    /// A sampling profile.
    Profile(ProfileRequest),
    /// An inspected item's value; with an empty name, the list of them.
    Get(String),
    /// Calls a command. `bare` is set when the text line named the command
    /// without `call`; then an inspected item of that name is read instead,
    /// for convenience.
    Call {
        /// The command's name.
        name: String,
        /// Its arguments, in order.
        args: Vec<ArgValue>,
        /// Whether the word `call` was left out.
        bare: bool,
    },
    /// Replaces a writable static's value.
    Set {
        /// The static's name.
        name: String,
        /// Its new value.
        value: Value,
    },
    /// The call statistics of every function under `inspect(calls)`.
    Stats {
        /// The column to sort by.
        sort: SortBy,
        /// Only the calls of this recent window; `None` for every call
        /// since the start (or the last reset).
        window: Option<Duration>,
    },
    /// Zeroes the call statistics of one function under `inspect(calls)`,
    /// or of all of them; calls in flight stay counted.
    StatsReset(Option<String>),
    /// The tracing filter and the recent events.
    Log(LogRequest),
    /// Text only: reprints an item every `interval` until the client speaks.
    Watch {
        /// The item's name.
        name: String,
        /// How often.
        interval: Duration,
    },
    /// JSON only: the text session's greeting (banner, stacks, hint).
    Greeting {
        /// Whether its stacks are collapsed, as a text session's greeting
        /// is; complete otherwise.
        collapse: bool,
    },
    /// JSON only: one text-protocol line, answered with its text rendering.
    Text(String),
    /// Text only: ends the session.
    Quit,
}

/// What `log` is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRequest {
    /// Show the filter in force, the default, and when a timed one reverts.
    Show,
    /// Put `filter` in force, for good or for `revert_after`.
    Set {
        /// The new filter, in `EnvFilter` syntax.
        filter: String,
        /// When to go back to the filter in force before.
        revert_after: Option<Duration>,
    },
    /// Go back to the default filter.
    Reset,
    /// The last `n` events kept, oldest first.
    Tail(usize),
    /// Text only: new events as they come, until the client sends a line.
    Follow,
    /// JSON only: the events kept that came after the one numbered `seq`
    /// (every event has a `seq`, and `log` says the newest), oldest first:
    /// how a JSON client such as `manhole-cli` follows the log.
    After(u64),
}

/// How often `log follow` looks for new events, in a text session and in
/// `manhole-cli` alike.
pub const LOG_FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// The line `log follow` starts with.
#[must_use]
pub fn log_follow_heading(filter: &str) -> String {
    format!("following events that pass the filter `{filter}`; send a line to stop\n")
}

/// One event of `log tail` or `log follow` as the text protocol prints it,
/// from its JSON (`{"time","level","target","message","fields"}`):
/// `TIME LEVEL target: message key=value ...`, on one line whatever its
/// message holds.
#[must_use]
pub fn log_event_line(event: &Value) -> String {
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("");
    let mut line = format!(
        "{} {:>5} {}: {}",
        text("time"),
        text("level"),
        text("target"),
        text("message")
    );
    if let Some(Value::Object(fields)) = event.get("fields") {
        for (key, value) in fields {
            line.push(' ');
            line.push_str(key);
            line.push('=');
            line.push_str(&value_text(value));
        }
    }
    let mut line = line.replace('\n', "\\n");
    line.push('\n');
    line
}

/// `log set --for` lasts at least this many seconds...
pub const MIN_LOG_FOR_S: u64 = 1;
/// ...and at most this many (a day).
pub const MAX_LOG_FOR_S: u64 = 86_400;
/// The most events `log tail` returns.
pub const MAX_LOG_TAIL: usize = 100_000;
/// What `log tail` returns when not told how many.
pub const DEFAULT_LOG_TAIL: usize = 20;

fn log_for(seconds: Option<f64>, given: &str) -> Result<Duration, Failure> {
    match seconds {
        Some(seconds) if (MIN_LOG_FOR_S as f64..=MAX_LOG_FOR_S as f64).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(bad_params(format!(
            "`--for` must be from {MIN_LOG_FOR_S}s to {MAX_LOG_FOR_S}s (a day), such as 90s or 10m; got {given}"
        ))),
    }
}

fn log_tail(count: Option<u64>, given: &str) -> Result<usize, Failure> {
    match count.and_then(|count| usize::try_from(count).ok()) {
        Some(count @ 1..=MAX_LOG_TAIL) => Ok(count),
        _ => Err(bad_params(format!(
            "`tail` takes a number of events from 1 to {MAX_LOG_TAIL}; got {given}"
        ))),
    }
}

fn parse_log(rest: &[String]) -> Result<Request, Failure> {
    let request = match rest {
        [] => LogRequest::Show,
        [reset] if reset == "reset" => LogRequest::Reset,
        [follow] if follow == "follow" => LogRequest::Follow,
        [tail] if tail == "tail" => LogRequest::Tail(DEFAULT_LOG_TAIL),
        [tail, count] if tail == "tail" => {
            LogRequest::Tail(log_tail(count.parse().ok(), &format!("{count:?}"))?)
        }
        [set, filter] if set == "set" => LogRequest::Set {
            filter: filter.clone(),
            revert_after: None,
        },
        [set, filter, flag, duration] if set == "set" && flag == "--for" => LogRequest::Set {
            filter: filter.clone(),
            revert_after: Some(log_for(
                crate::parse_duration(duration).map(|d| d.as_secs_f64()),
                &format!("{duration:?}"),
            )?),
        },
        [set, filter, flag] if set == "set" && flag.starts_with("--for=") => {
            let duration = &flag["--for=".len()..];
            LogRequest::Set {
                filter: filter.clone(),
                revert_after: Some(log_for(
                    crate::parse_duration(duration).map(|d| d.as_secs_f64()),
                    &format!("{duration:?}"),
                )?),
            }
        }
        _ => return Err(usage(Builtin::Log)),
    };
    Ok(Request::Log(request))
}

fn json_log(params: &mut Params) -> Result<Request, Failure> {
    let set = params.string("set")?;
    let for_s = params.value("for_s");
    let reset = params.flag("reset")?;
    let tail = params.value("tail");
    let after = params.value("after");
    let asked = usize::from(set.is_some())
        + usize::from(reset)
        + usize::from(tail.is_some())
        + usize::from(after.is_some());
    if asked > 1 {
        return Err(bad_params(
            "`log` takes one of `set`, `reset`, `tail` and `after` at a time",
        ));
    }
    if for_s.is_some() && set.is_none() {
        return Err(bad_params("`for_s` goes with `set`"));
    }
    let request = if let Some(filter) = set {
        let revert_after = match for_s {
            None | Some(Value::Null) => None,
            Some(seconds) => Some(log_for(seconds.as_f64(), &seconds.to_string())?),
        };
        LogRequest::Set {
            filter,
            revert_after,
        }
    } else if reset {
        LogRequest::Reset
    } else if let Some(count) = tail {
        LogRequest::Tail(log_tail(count.as_u64(), &count.to_string())?)
    } else if let Some(seq) = after {
        LogRequest::After(seq.as_u64().ok_or_else(|| {
            bad_params(format!(
                "`after` takes the `seq` of an event, or 0 for every event kept; got {seq}"
            ))
        })?)
    } else {
        LogRequest::Show
    };
    Ok(Request::Log(request))
}

/// Why `log follow` cannot run over JSON.
#[must_use]
pub fn follow_text_only() -> Failure {
    Failure::new(
        Reason::TextOnly,
        "`log follow` needs a text session of its own (`nc -U`, `socat`, `manhole-cli`); over JSON, ask `log` with `{\"after\": SEQ}` as often as you want, from the `newest` that `log` gives",
    )
}

/// The columns `stats` can sort by; numbers sort largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// By name, A to Z.
    #[default]
    Name,
    /// Calls made.
    Calls,
    /// Calls running now.
    InFlight,
    /// Calls that returned `Err`.
    Errors,
    /// Calls that panicked.
    Panics,
    /// Mean latency.
    Mean,
    /// Median latency.
    P50,
    /// 99th percentile latency.
    P99,
    /// Longest call.
    Max,
}

impl SortBy {
    const COLUMNS: &'static [(&'static str, SortBy)] = &[
        ("name", SortBy::Name),
        ("calls", SortBy::Calls),
        ("in-flight", SortBy::InFlight),
        ("errors", SortBy::Errors),
        ("panics", SortBy::Panics),
        ("mean", SortBy::Mean),
        ("p50", SortBy::P50),
        ("p99", SortBy::P99),
        ("max", SortBy::Max),
    ];

    /// The column's name, as `--sort` takes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::COLUMNS
            .iter()
            .find(|(_, sort)| *sort == self)
            .map_or("name", |(name, _)| name)
    }

    fn column_list() -> String {
        Self::COLUMNS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses a column name (any case; `in_flight` and `inflight` too).
    ///
    /// # Errors
    ///
    /// A [`Reason::BadParams`] failure that lists the columns.
    pub fn parse(column: &str) -> Result<Self, Failure> {
        let wanted = column.to_ascii_lowercase().replace(['_'], "-");
        let wanted = if wanted == "inflight" {
            "in-flight".to_owned()
        } else {
            wanted
        };
        Self::COLUMNS
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, sort)| *sort)
            .ok_or_else(|| {
                Failure::new(
                    Reason::BadParams,
                    format!(
                        "cannot sort by `{column}`; sort by one of: {}",
                        Self::column_list()
                    ),
                )
            })
    }
}

/// The flag of `stacks` that shows threads with the same stack once.
pub const COLLAPSE_FLAG: &str = "--collapse";

/// The flag of `stacks` that folds the runtime's frames.
pub const SHORT_FLAG: &str = "--short";

/// The flag of `mem` that asks for jemalloc's heap profile.
pub const HEAP_PROFILE_FLAG: &str = "--heap-profile";

/// `top` measures over at least this many seconds, and at most
/// [`MAX_TOP_SECONDS`].
pub const MIN_TOP_SECONDS: f64 = 0.1;
/// See [`MIN_TOP_SECONDS`].
pub const MAX_TOP_SECONDS: f64 = 60.0;
/// What `top` measures over when not told.
pub const DEFAULT_TOP_SECONDS: f64 = 1.0;

/// `seconds` as `top`'s interval, or why not.
fn top_interval(seconds: Option<f64>, given: &str) -> Result<Duration, Failure> {
    match seconds {
        Some(seconds) if (MIN_TOP_SECONDS..=MAX_TOP_SECONDS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(bad_params(format!(
            "`top` measures over a number of seconds from {MIN_TOP_SECONDS} to {MAX_TOP_SECONDS}; got {given}"
        ))),
    }
}

/// `watch` reprints at least this far apart, so a typo cannot flood the
/// client or busy the host, and at most this far apart.
pub const MIN_WATCH_INTERVAL: f64 = 0.1;
/// See [`MIN_WATCH_INTERVAL`].
pub const MAX_WATCH_INTERVAL: f64 = 3600.0;

/// How far back `history` looks by default.
pub const DEFAULT_HISTORY_SINCE: Duration = Duration::from_secs(600);
/// The step between `history`'s values by default.
pub const DEFAULT_HISTORY_EVERY: Duration = Duration::from_secs(10);

/// `history [--since DURATION] [--every DURATION] [NAME...]`.
fn parse_history(words: &[String]) -> Result<Request, Failure> {
    let (mut since, mut every) = (DEFAULT_HISTORY_SINCE, DEFAULT_HISTORY_EVERY);
    let mut names = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let mut value = |flag: &str| {
            words.next().ok_or_else(|| {
                bad_params(format!(
                    "`{flag}` takes a duration, such as 10m or 30s; usage: {}",
                    Builtin::History.spec().usage
                ))
            })
        };
        match word.as_str() {
            "--since" => since = history_duration("--since", value("--since")?)?,
            "--every" => every = history_duration("--every", value("--every")?)?,
            flag if flag.starts_with("--") => {
                return Err(bad_params(format!(
                    "unknown option `{flag}`; usage: {}",
                    Builtin::History.spec().usage
                )))
            }
            name => names.push(name.to_owned()),
        }
    }
    Ok(Request::History {
        since,
        every,
        names,
    })
}

/// A `history` duration: at least a second.
fn history_duration(what: &str, text: &str) -> Result<Duration, Failure> {
    crate::parse_duration(text)
        .filter(|duration| *duration >= Duration::from_secs(1))
        .ok_or_else(|| {
            bad_params(format!(
                "`{what}` takes a duration of a second or more, such as 10m or 30s; got {text:?}"
            ))
        })
}

fn bad_params(message: impl Into<String>) -> Failure {
    Failure::new(Reason::BadParams, message)
}

/// The watchdog's threshold as a request sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogThreshold {
    /// No watchdog: polls and lock waits are not watched.
    Off,
    /// Report a poll or a lock wait longer than this.
    After(Duration),
}

/// The shortest watchdog threshold taken: the watchdog wakes four times
/// per threshold.
pub const MIN_WATCHDOG_THRESHOLD: Duration = Duration::from_millis(10);

impl WatchdogThreshold {
    /// `off`, or a duration such as `500ms` (at least
    /// [`MIN_WATCHDOG_THRESHOLD`]).
    ///
    /// # Errors
    ///
    /// A `bad_params` failure that says what to write.
    pub fn parse(text: &str) -> Result<WatchdogThreshold, Failure> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(WatchdogThreshold::Off);
        }
        match crate::parse_duration(text) {
            Some(threshold) if threshold >= MIN_WATCHDOG_THRESHOLD => {
                Ok(WatchdogThreshold::After(threshold))
            }
            Some(_) => Err(bad_params(format!(
                "the watchdog's threshold must be at least {} ms; got {text:?}",
                MIN_WATCHDOG_THRESHOLD.as_millis()
            ))),
            None => Err(bad_params(format!(
                "the watchdog's threshold is a duration such as `500ms` or `2s`, or `off`; got {text:?}"
            ))),
        }
    }
}

impl std::fmt::Display for WatchdogThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchdogThreshold::Off => f.write_str("off"),
            WatchdogThreshold::After(threshold) => write!(f, "{}ms", threshold.as_millis()),
        }
    }
}

fn usage(builtin: Builtin) -> Failure {
    bad_params(format!("usage: {}", builtin.spec().usage))
}

/// Why a text-only built-in cannot run over JSON.
#[must_use]
pub fn text_only(builtin: Builtin) -> Failure {
    let instead = match builtin {
        Builtin::Watch => "; over JSON, send `get` or `stats` as often as you want",
        Builtin::Quit => "; a JSON client ends the session by closing the connection",
        _ => "",
    };
    Failure::new(
        Reason::TextOnly,
        format!(
            "`{}` needs a text session of its own (`nc -U`, `manhole-cli`){instead}",
            builtin.name()
        ),
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
    let (name, raw) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| usage(Builtin::Set))?;
    let name = match split_words(name)?.as_slice() {
        [name] => name.clone(),
        _ => return Err(usage(Builtin::Set)),
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

/// `stats --window` looks back at least this many seconds (one sample)...
pub const MIN_STATS_WINDOW_S: u64 = 1;
/// ...and at most this many (ten minutes of history are kept).
pub const MAX_STATS_WINDOW_S: u64 = 600;

fn stats_window(seconds: Option<f64>, given: &str) -> Result<Duration, Failure> {
    match seconds {
        Some(seconds)
            if (MIN_STATS_WINDOW_S as f64..=MAX_STATS_WINDOW_S as f64).contains(&seconds) =>
        {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(bad_params(format!(
            "the window must be from {MIN_STATS_WINDOW_S}s to {MAX_STATS_WINDOW_S}s (10m), such as 10s or 5m; got {given}"
        ))),
    }
}

fn parse_stats(rest: &[String]) -> Result<Request, Failure> {
    if let Some((first, names)) = rest.split_first() {
        if first == "reset" {
            return match names {
                [] => Ok(Request::StatsReset(None)),
                [name] => Ok(Request::StatsReset(Some(name.clone()))),
                _ => Err(usage(Builtin::Stats)),
            };
        }
    }
    let mut sort = None;
    let mut window = None;
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        let (flag, value) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (word.as_str(), None),
        };
        let mut value = || value.clone().or_else(|| words.next().cloned());
        match flag {
            "--sort" if sort.is_none() => {
                sort = Some(SortBy::parse(
                    &value().ok_or_else(|| usage(Builtin::Stats))?,
                )?);
            }
            "--window" if window.is_none() => {
                let text = value().ok_or_else(|| usage(Builtin::Stats))?;
                let seconds = crate::parse_duration(&text).map(|d| d.as_secs_f64());
                window = Some(stats_window(seconds, &format!("{text:?}"))?);
            }
            _ => return Err(usage(Builtin::Stats)),
        }
    }
    Ok(Request::Stats {
        sort: sort.unwrap_or_default(),
        window,
    })
}

fn parse_watch(rest: &[String]) -> Result<Request, Failure> {
    let (name, seconds) = match rest {
        [name] => (name, 1.0),
        [name, seconds] => match seconds.parse::<f64>() {
            Ok(seconds) if (MIN_WATCH_INTERVAL..=MAX_WATCH_INTERVAL).contains(&seconds) => {
                (name, seconds)
            }
            _ => {
                return Err(bad_params(format!(
                    "the interval must be a number of seconds from {MIN_WATCH_INTERVAL} to {MAX_WATCH_INTERVAL}; got {seconds:?}"
                )))
            }
        },
        _ => return Err(usage(Builtin::Watch)),
    };
    Ok(Request::Watch {
        name: name.clone(),
        interval: Duration::from_secs_f64(seconds),
    })
}

fn bare_call(first: &str, rest: &[String]) -> Request {
    Request::Call {
        name: first.to_owned(),
        args: rest.iter().cloned().map(ArgValue::Text).collect(),
        bare: true,
    }
}

/// `stacks [--collapse] [--short] [TID|NAME]`, after the word `stacks`.
fn parse_stacks(words: &[String]) -> Option<Request> {
    let (mut collapse, mut short, mut thread) = (false, false, None);
    for word in words {
        match word.as_str() {
            COLLAPSE_FLAG => collapse = true,
            SHORT_FLAG => short = true,
            flag if flag.starts_with("--") => return None,
            name if thread.is_none() => thread = Some(name.to_owned()),
            _ => return None,
        }
    }
    Some(Request::Stacks {
        collapse,
        short,
        thread,
    })
}

/// Parses one text line. `Ok(None)` is an empty line.
///
/// # Errors
///
/// A [`Reason::Parse`] failure for an open quote, or a
/// [`Reason::BadParams`] one for words that do not fit a built-in's usage.
///
/// # Examples
///
/// ```
/// use manhole_wire::{parse_text, ArgValue, Request};
///
/// let request = parse_text("add 40 2").unwrap();
/// assert_eq!(request, Some(Request::Call {
///     name: "add".into(),
///     args: vec![ArgValue::Text("40".into()), ArgValue::Text("2".into())],
///     bare: true,
/// }));
/// ```
pub fn parse_text(line: &str) -> Result<Option<Request>, Failure> {
    if let Some(rest) = after_command(line, Builtin::Set.name()) {
        return parse_set(rest).map(Some);
    }
    let words = split_words(line)?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(None);
    };
    let Some(builtin) = Builtin::from_word(first).filter(|builtin| builtin.over_text()) else {
        return Ok(Some(bare_call(first, rest)));
    };
    let no_args = |request: Request| {
        if rest.is_empty() {
            Ok(request)
        } else {
            Err(bad_params(format!("`{first}` takes no arguments")))
        }
    };
    let request = match builtin {
        Builtin::Help => match rest {
            [] => Request::Help(None),
            [name] => Request::Help(Some(name.clone())),
            _ => return Err(usage(builtin)),
        },
        Builtin::List => no_args(Request::List)?,
        Builtin::Stacks => parse_stacks(rest).ok_or_else(|| usage(builtin))?,
        Builtin::Threads => no_args(Request::Threads)?,
        Builtin::Panics => no_args(Request::Panics)?,
        Builtin::History => parse_history(rest)?,
        Builtin::Stalls => match rest {
            [] => Request::Stalls { short: false },
            [flag] if flag == SHORT_FLAG => Request::Stalls { short: true },
            _ => return Err(usage(builtin)),
        },
        Builtin::Watchdog => match rest {
            [] => Request::Watchdog(None),
            [threshold] => Request::Watchdog(Some(WatchdogThreshold::parse(threshold)?)),
            _ => return Err(usage(builtin)),
        },
        Builtin::Info => no_args(Request::Info)?,
        Builtin::Mem => match rest {
            [] => Request::Mem {
                heap_profile: false,
            },
            [flag] if flag == HEAP_PROFILE_FLAG => Request::Mem { heap_profile: true },
            _ => return Err(usage(builtin)),
        },
        Builtin::Runtime => no_args(Request::Runtime)?,
        Builtin::Tasks => match rest {
            [] => Request::Tasks {
                older_than: Duration::ZERO,
            },
            [flag, duration] if flag == "--older-than" => Request::Tasks {
                older_than: crate::parse_duration(duration).ok_or_else(|| {
                    bad_params(format!(
                        "`--older-than` takes a duration, such as 500ms, 10s or 5m; got {duration:?}"
                    ))
                })?,
            },
            _ => return Err(usage(builtin)),
        },
        Builtin::Top => match rest {
            [] => Request::Top {
                interval: Duration::from_secs_f64(DEFAULT_TOP_SECONDS),
            },
            [seconds] => Request::Top {
                interval: top_interval(
                    seconds.strip_suffix('s').unwrap_or(seconds).parse().ok(),
                    &format!("{seconds:?}"),
                )?,
            },
            _ => return Err(usage(builtin)),
        },
        Builtin::Profile => Request::Profile(ProfileRequest::from_words(rest)?),
        Builtin::Stats => parse_stats(rest)?,
        Builtin::Log => parse_log(rest)?,
        Builtin::Watch => parse_watch(rest)?,
        Builtin::Quit => no_args(Request::Quit)?,
        Builtin::Get => match rest {
            [] => Request::Get(String::new()),
            [name] => Request::Get(name.clone()),
            _ => return Err(usage(builtin)),
        },
        // Reached only for a line such as `set` alone, which
        // `after_command` passed over for want of a value.
        Builtin::Set => return Err(usage(builtin)),
        Builtin::Call => match rest {
            [name, args @ ..] => Request::Call {
                name: name.clone(),
                args: args.iter().cloned().map(ArgValue::Text).collect(),
                bare: false,
            },
            [] => return Err(usage(builtin)),
        },
        Builtin::Greeting | Builtin::Text => bare_call(first, rest),
    };
    Ok(Some(request))
}

/// A JSON-RPC line, parsed.
#[derive(Debug)]
pub enum JsonLine {
    /// A well-formed request; `id` is `None` for a notification, which gets
    /// no response.
    Request {
        /// The request's `id`.
        id: Option<Value>,
        /// What it asks.
        request: Request,
    },
    /// A line that is not a valid request; answered with `id` (or `null`
    /// when the id itself could not be read).
    Invalid {
        /// The `id` to answer with.
        id: Value,
        /// Why it is not valid.
        failure: Failure,
    },
}

/// Parses one JSON-RPC request line.
#[must_use]
pub fn parse_json(line: &[u8]) -> JsonLine {
    let invalid = |id: Value, failure| JsonLine::Invalid { id, failure };
    let invalid_request = |message: &str| Failure::new(Reason::InvalidRequest, message);
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => {
            return invalid(
                Value::Null,
                Failure::new(Reason::Parse, format!("parse error: {err}")),
            )
        }
    };
    let Value::Object(mut object) = value else {
        return invalid(
            Value::Null,
            invalid_request("a request is one JSON object per line; batches are not supported"),
        );
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            return invalid(
                Value::Null,
                invalid_request("`id` must be a string, a number or null"),
            )
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return invalid(reply_id, invalid_request("`jsonrpc` must be \"2.0\""));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        return invalid(reply_id, invalid_request("`method` must be a string"));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return invalid(
                reply_id,
                bad_params("`params` must be an object, such as {\"name\":\"add\"}"),
            )
        }
    };
    match json_request(&method, params) {
        Ok(request) => JsonLine::Request { id, request },
        Err(failure) => invalid(reply_id, failure),
    }
}

fn method_list() -> String {
    Builtin::json_methods()
        .map(|builtin| format!("`{}`", builtin.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes the params out of a request object, checking each against the
/// method's row of the table.
struct Params {
    method: Builtin,
    params: Map<String, Value>,
}

impl Params {
    fn check(method: Builtin, params: Map<String, Value>) -> Result<Self, Failure> {
        let allowed = method.spec().params;
        if let Some(key) = params
            .keys()
            .find(|key| !allowed.iter().any(|param| param.name == key.as_str()))
        {
            let expected = if allowed.is_empty() {
                "no params".to_owned()
            } else {
                allowed
                    .iter()
                    .map(|param| format!("`{}`", param.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(bad_params(format!(
                "unknown param `{key}`; `{}` takes {expected}",
                method.name()
            )));
        }
        if let Some(missing) = allowed
            .iter()
            .find(|param| param.required && !params.contains_key(param.name))
        {
            return Err(bad_params(format!(
                "`{}` needs the param `{}`",
                method.name(),
                missing.name
            )));
        }
        Ok(Params { method, params })
    }

    /// A param that must be a string when present.
    fn string(&mut self, key: &str) -> Result<Option<String>, Failure> {
        match self.params.remove(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad_params(format!("`{key}` must be a string"))),
        }
    }

    /// A param the table marks required, so `check` saw it.
    fn required_string(&mut self, key: &str) -> Result<String, Failure> {
        Ok(self.string(key)?.unwrap_or_default())
    }

    fn value(&mut self, key: &str) -> Option<Value> {
        self.params.remove(key)
    }

    /// A param that is `true` or `false`; absent or null is `false`.
    fn flag(&mut self, key: &str) -> Result<bool, Failure> {
        match self.params.remove(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(flag)) => Ok(flag),
            Some(_) => Err(bad_params(format!("`{key}` must be true or false"))),
        }
    }

    fn method(&self) -> Builtin {
        self.method
    }
}

fn json_request(method: &str, params: Map<String, Value>) -> Result<Request, Failure> {
    let Some(builtin) = Builtin::from_word(method).filter(|b| b.spec().name == method) else {
        return Err(Failure::new(
            Reason::UnknownMethod,
            format!(
                "unknown method `{method}`; expected one of: {}",
                method_list()
            ),
        ));
    };
    if builtin.spec().protocols == Protocols::TextOnly {
        return Err(text_only(builtin));
    }
    let mut params = Params::check(builtin, params)?;
    Ok(match params.method() {
        Builtin::Help => Request::Help(params.string("name")?),
        Builtin::List => Request::List,
        Builtin::Stacks => Request::Stacks {
            collapse: params.flag("collapse")?,
            short: params.flag("short")?,
            thread: thread_param(params.value("thread"))?,
        },
        Builtin::Threads => Request::Threads,
        Builtin::Panics => Request::Panics,
        Builtin::Stalls => Request::Stalls {
            short: params.flag("short")?,
        },
        Builtin::History => {
            let duration = |params: &mut Params, key: &str, default: Duration| {
                params
                    .string(key)?
                    .map_or(Ok(default), |text| history_duration(key, &text))
            };
            let since = duration(&mut params, "since", DEFAULT_HISTORY_SINCE)?;
            let every = duration(&mut params, "every", DEFAULT_HISTORY_EVERY)?;
            let names = match params.value("names") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(names)) => names
                    .into_iter()
                    .map(|name| match name {
                        Value::String(name) => Ok(name),
                        other => Err(bad_params(format!(
                            "`names` must be an array of strings; got {other}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(bad_params(format!(
                        "`names` must be an array of strings; got {other}"
                    )))
                }
            };
            Request::History {
                since,
                every,
                names,
            }
        }
        Builtin::Watchdog => Request::Watchdog(
            params
                .string("threshold")?
                .map(|threshold| WatchdogThreshold::parse(&threshold))
                .transpose()?,
        ),
        Builtin::Info => Request::Info,
        Builtin::Mem => Request::Mem {
            heap_profile: params.flag("heap_profile")?,
        },
        Builtin::Runtime => Request::Runtime,
        Builtin::Tasks => Request::Tasks {
            older_than: match params.value("older_than_s") {
                None | Some(Value::Null) => Duration::ZERO,
                Some(seconds) => seconds
                    .as_f64()
                    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0 && *seconds < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        bad_params(format!(
                            "`older_than_s` takes a number of seconds, 0 or more; got {seconds}"
                        ))
                    })?,
            },
        },
        Builtin::Top => match params.value("seconds") {
            None | Some(Value::Null) => Request::Top {
                interval: Duration::from_secs_f64(DEFAULT_TOP_SECONDS),
            },
            Some(seconds) => Request::Top {
                interval: top_interval(seconds.as_f64(), &seconds.to_string())?,
            },
        },
        Builtin::Greeting => Request::Greeting {
            collapse: params.flag("collapse")?,
        },
        Builtin::Profile => Request::Profile(ProfileRequest::from_params(&mut params.params)?),
        Builtin::Get => Request::Get(params.string("name")?.unwrap_or_default()),
        Builtin::Text => Request::Text(params.required_string("line")?),
        Builtin::Call => {
            let name = params.required_string("name")?;
            let args = match params.value("args") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(args)) => args
                    .into_iter()
                    .enumerate()
                    .map(|(index, arg)| json_arg(index, arg))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(bad_params("`args` must be an array, such as [40, 2]")),
            };
            let bare = params.flag("bare")?;
            Request::Call { name, args, bare }
        }
        Builtin::Set => {
            let name = params.required_string("name")?;
            let value = params.value("value").unwrap_or(Value::Null);
            Request::Set { name, value }
        }
        Builtin::Stats => json_stats(&mut params)?,
        Builtin::Log => json_log(&mut params)?,
        Builtin::Watch | Builtin::Quit => return Err(text_only(builtin)),
    })
}

fn json_stats(params: &mut Params) -> Result<Request, Failure> {
    let sort = params.value("sort");
    let window = params.value("window_s");
    let name = params.string("name")?;
    if params.flag("reset")? {
        if sort.is_some() || window.is_some() {
            return Err(bad_params(
                "`reset` takes only `name`, not `sort` or `window_s`",
            ));
        }
        return Ok(Request::StatsReset(name));
    }
    if name.is_some() {
        return Err(bad_params(
            "`name` goes with `\"reset\": true`; `get` reads one function's row",
        ));
    }
    let sort = match sort {
        None | Some(Value::Null) => SortBy::Name,
        Some(Value::String(column)) => SortBy::parse(&column)?,
        Some(_) => {
            return Err(bad_params(format!(
                "`sort` must be a string, one of: {}",
                SortBy::column_list()
            )))
        }
    };
    let window = match window {
        None | Some(Value::Null) => None,
        Some(seconds) => Some(stats_window(seconds.as_f64(), &seconds.to_string())?),
    };
    Ok(Request::Stats { sort, window })
}

fn json_arg(index: usize, arg: Value) -> Result<ArgValue, Failure> {
    match arg {
        Value::String(text) => Ok(ArgValue::Text(text)),
        Value::Number(number) => Ok(ArgValue::Text(number.to_string())),
        Value::Bool(flag) => Ok(ArgValue::Text(flag.to_string())),
        Value::Null => Ok(ArgValue::Null),
        Value::Array(_) | Value::Object(_) => Err(bad_params(format!(
            "argument {} must be a string, a number, a boolean or null",
            index + 1
        ))
        .with_details(json!({"index": index}))),
    }
}

impl Request {
    /// How long the server works on this request before it answers, on
    /// purpose (`top` measures, `profile` samples): a client waits that
    /// long on top of its usual timeout. Zero for every other request; a
    /// `text` line counts as the request it holds.
    #[must_use]
    pub fn runs_for(&self) -> Duration {
        match self {
            Request::Top { interval } => *interval,
            Request::Profile(profile) => profile.duration,
            Request::Text(line) => parse_text(line)
                .ok()
                .flatten()
                .filter(|request| !matches!(request, Request::Text(_)))
                .map_or(Duration::ZERO, |request| request.runs_for()),
            _ => Duration::ZERO,
        }
    }

    /// The JSON-RPC method and params that ask the same thing, for a client
    /// that reads a command line and speaks JSON.
    ///
    /// # Errors
    ///
    /// A [`Reason::TextOnly`] failure for `watch` and `quit`.
    ///
    /// # Examples
    ///
    /// ```
    /// use manhole_wire::parse_text;
    /// use serde_json::json;
    ///
    /// let request = parse_text("stats --sort p99").unwrap().unwrap();
    /// assert_eq!(request.to_json().unwrap(), ("stats", json!({"sort": "p99"})));
    /// ```
    pub fn to_json(&self) -> Result<(&'static str, Value), Failure> {
        let method = |builtin: Builtin| builtin.name();
        Ok(match self {
            Request::Help(None) => (method(Builtin::Help), Value::Null),
            Request::Help(Some(name)) => (method(Builtin::Help), json!({ "name": name })),
            Request::List => (method(Builtin::List), Value::Null),
            Request::Stacks {
                collapse,
                short,
                thread,
            } => {
                let mut params = Map::new();
                if *collapse {
                    params.insert("collapse".to_owned(), Value::Bool(true));
                }
                if *short {
                    params.insert("short".to_owned(), Value::Bool(true));
                }
                if let Some(thread) = thread {
                    let thread = thread
                        .parse::<i32>()
                        .map_or_else(|_| json!(thread), |tid| json!(tid));
                    params.insert("thread".to_owned(), thread);
                }
                let params = if params.is_empty() {
                    Value::Null
                } else {
                    Value::Object(params)
                };
                (method(Builtin::Stacks), params)
            }
            Request::Threads => (method(Builtin::Threads), Value::Null),
            Request::Panics => (method(Builtin::Panics), Value::Null),
            Request::Stalls { short: false } => (method(Builtin::Stalls), Value::Null),
            Request::History {
                since,
                every,
                names,
            } => (
                method(Builtin::History),
                json!({
                    "since": format!("{}s", since.as_secs_f64()),
                    "every": format!("{}s", every.as_secs_f64()),
                    "names": names,
                }),
            ),
            Request::Stalls { short: true } => (method(Builtin::Stalls), json!({"short": true})),
            Request::Watchdog(None) => (method(Builtin::Watchdog), Value::Null),
            Request::Watchdog(Some(threshold)) => (
                method(Builtin::Watchdog),
                json!({"threshold": threshold.to_string()}),
            ),
            Request::Info => (method(Builtin::Info), Value::Null),
            Request::Mem {
                heap_profile: false,
            } => (method(Builtin::Mem), Value::Null),
            Request::Mem { heap_profile: true } => {
                (method(Builtin::Mem), json!({"heap_profile": true}))
            }
            Request::Runtime => (method(Builtin::Runtime), Value::Null),
            Request::Tasks { older_than } => (
                method(Builtin::Tasks),
                json!({"older_than_s": older_than.as_secs_f64()}),
            ),
            Request::Top { interval } => (
                method(Builtin::Top),
                json!({"seconds": interval.as_secs_f64()}),
            ),
            Request::Greeting { collapse: false } => (method(Builtin::Greeting), Value::Null),
            Request::Greeting { collapse: true } => {
                (method(Builtin::Greeting), json!({"collapse": true}))
            }
            Request::Profile(profile) => (method(Builtin::Profile), profile.to_params()),
            Request::Get(name) => (method(Builtin::Get), json!({ "name": name })),
            Request::Text(line) => (method(Builtin::Text), json!({ "line": line })),
            Request::Set { name, value } => {
                (method(Builtin::Set), json!({"name": name, "value": value}))
            }
            Request::Stats { sort, window } => {
                let mut params = json!({"sort": sort.name()});
                if let Some(window) = window {
                    params["window_s"] = json!(window.as_secs_f64());
                }
                (method(Builtin::Stats), params)
            }
            Request::StatsReset(name) => {
                let mut params = json!({"reset": true});
                if let Some(name) = name {
                    params["name"] = json!(name);
                }
                (method(Builtin::Stats), params)
            }
            Request::Call { name, args, bare } => {
                let args: Vec<Value> = args
                    .iter()
                    .map(|arg| match arg {
                        ArgValue::Text(text) => Value::from(text.as_str()),
                        ArgValue::Null => Value::Null,
                    })
                    .collect();
                let mut params = json!({"name": name, "args": args});
                if *bare {
                    params["bare"] = Value::Bool(true);
                }
                (method(Builtin::Call), params)
            }
            Request::Log(log) => (
                method(Builtin::Log),
                match log {
                    LogRequest::Show => Value::Null,
                    LogRequest::Set {
                        filter,
                        revert_after: None,
                    } => json!({ "set": filter }),
                    LogRequest::Set {
                        filter,
                        revert_after: Some(after),
                    } => json!({"set": filter, "for_s": after.as_secs_f64()}),
                    LogRequest::Reset => json!({"reset": true}),
                    LogRequest::Tail(count) => json!({ "tail": count }),
                    LogRequest::After(seq) => json!({ "after": seq }),
                    LogRequest::Follow => return Err(follow_text_only()),
                },
            ),
            Request::Watch { .. } => return Err(text_only(Builtin::Watch)),
            Request::Quit => return Err(text_only(Builtin::Quit)),
        })
    }
}

/// One response line (without the newline).
#[must_use]
pub fn json_response(id: &Value, result: Result<Value, Failure>) -> String {
    let response = match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(failure) => json!({"jsonrpc": "2.0", "id": id, "error": failure.to_json()}),
    };
    response.to_string()
}

/// A value as the text protocol prints it: a string bare, anything else as
/// compact JSON.
#[must_use]
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_builtins_check_their_arity() {
        assert_eq!(parse_text("list").unwrap(), Some(Request::List));
        assert_eq!(parse_text("   ").unwrap(), None);
        assert_eq!(
            parse_text("get").unwrap(),
            Some(Request::Get(String::new()))
        );
        assert_eq!(
            parse_text("get A B").unwrap_err().message,
            "usage: get [NAME]"
        );
        assert_eq!(
            parse_text("list all").unwrap_err().message,
            "`list` takes no arguments"
        );
        assert_eq!(parse_text("exit").unwrap(), Some(Request::Quit));
        assert_eq!(
            parse_text("greeting").unwrap(),
            Some(bare_call("greeting", &[]))
        );
    }

    #[test]
    fn stacks_collapse_is_a_flag_in_text_and_a_boolean_in_json() {
        let stacks = |collapse, short, thread: Option<&str>| Request::Stacks {
            collapse,
            short,
            thread: thread.map(str::to_owned),
        };
        assert_eq!(
            parse_text("stacks").unwrap(),
            Some(stacks(false, false, None))
        );
        let collapsed = parse_text("stacks --collapse").unwrap().unwrap();
        assert_eq!(collapsed, stacks(true, false, None));
        assert_eq!(
            collapsed.to_json().unwrap(),
            ("stacks", json!({"collapse": true}))
        );
        assert_eq!(
            parse_text("stacks --colapse").unwrap_err().message,
            "usage: stacks [--collapse] [--short] [TID|NAME]"
        );
        assert_eq!(
            parse_text("stacks --short worker").unwrap(),
            Some(stacks(false, true, Some("worker")))
        );
        let one = stacks(true, true, Some("4242"));
        assert_eq!(
            one.to_json().unwrap(),
            (
                "stacks",
                json!({"collapse": true, "short": true, "thread": 4242})
            )
        );
        assert!(parse_text("stacks a b").is_err());
        let JsonLine::Request { request, .. } = parse_json(
            br#"{"jsonrpc":"2.0","id":1,"method":"stacks","params":{"thread":"work","short":true}}"#,
        ) else {
            panic!("not a request")
        };
        assert_eq!(request, stacks(false, true, Some("work")));
        let JsonLine::Request { request, .. } = parse_json(
            br#"{"jsonrpc":"2.0","id":1,"method":"greeting","params":{"collapse":true}}"#,
        ) else {
            panic!("not a request")
        };
        assert_eq!(request, Request::Greeting { collapse: true });
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"stacks","params":{"collapse":"yes"}}"#),
            (json!(1), Some(Reason::BadParams))
        );
    }

    #[test]
    fn top_takes_seconds_in_its_range() {
        assert_eq!(
            parse_text("top").unwrap(),
            Some(Request::Top {
                interval: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_text("top 2.5s").unwrap(),
            Some(Request::Top {
                interval: Duration::from_millis(2500)
            })
        );
        for bad in ["top 0.01", "top 61", "top soon", "top -1", "top NaN"] {
            let failure = parse_text(bad).unwrap_err();
            assert!(failure.is(Reason::BadParams), "{bad}");
            assert!(
                failure.message.contains("from 0.1 to 60"),
                "{bad}: {failure}"
            );
        }
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"top","params":{"seconds":"1"}}"#),
            (json!(1), Some(Reason::BadParams))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"top","params":{"seconds":0}}"#),
            (json!(1), Some(Reason::BadParams))
        );
    }

    #[test]
    fn stats_takes_a_window_and_a_reset() {
        assert_eq!(
            parse_text("stats --window 10s --sort p99").unwrap(),
            Some(Request::Stats {
                sort: SortBy::P99,
                window: Some(Duration::from_secs(10))
            })
        );
        assert_eq!(
            parse_text("stats reset f").unwrap(),
            Some(Request::StatsReset(Some("f".into())))
        );
        for bad in [
            "stats --window 0.5s",
            "stats --window 11m",
            "stats --window soon",
        ] {
            let failure = parse_text(bad).unwrap_err();
            assert!(
                failure.message.contains("from 1s to 600s"),
                "{bad}: {failure}"
            );
        }
        for bad in [
            "stats --window",
            "stats --sort p99 --sort p50",
            "stats reset a b",
            "stats now",
        ] {
            assert!(
                parse_text(bad)
                    .unwrap_err()
                    .message
                    .starts_with("usage: stats"),
                "{bad}"
            );
        }
        for params in [
            r#"{"window_s":0}"#,
            r#"{"window_s":"10s"}"#,
            r#"{"reset":true,"sort":"calls"}"#,
            r#"{"name":"f"}"#,
            r#"{"reset":"yes"}"#,
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"stats","params":{params}}}"#);
            assert_eq!(
                failure(&line),
                (json!(1), Some(Reason::BadParams)),
                "{params}"
            );
        }
    }

    #[test]
    fn log_takes_its_subcommands() {
        assert_eq!(
            parse_text("log set debug --for=90s").unwrap(),
            Some(Request::Log(LogRequest::Set {
                filter: "debug".into(),
                revert_after: Some(Duration::from_secs(90))
            }))
        );
        assert_eq!(
            parse_text("log follow").unwrap(),
            Some(Request::Log(LogRequest::Follow))
        );
        assert!(parse_text("log follow")
            .unwrap()
            .unwrap()
            .to_json()
            .unwrap_err()
            .is(Reason::TextOnly));
        for bad in ["log set", "log frob", "log tail 1 2", "log set a --for"] {
            assert!(
                parse_text(bad)
                    .unwrap_err()
                    .message
                    .starts_with("usage: log"),
                "{bad}"
            );
        }
        assert!(parse_text("log tail 0")
            .unwrap_err()
            .message
            .contains("from 1 to"));
        assert!(parse_text("log set x --for 2d")
            .unwrap_err()
            .message
            .contains("from 1s to 86400s"));
        for params in [
            r#"{"set":"debug","reset":true}"#,
            r#"{"for_s":10}"#,
            r#"{"tail":0}"#,
            r#"{"tail":"5"}"#,
            r#"{"set":1}"#,
            r#"{"set":"x","for_s":0.5}"#,
            r#"{"follow":true}"#,
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"log","params":{params}}}"#);
            assert_eq!(
                failure(&line),
                (json!(1), Some(Reason::BadParams)),
                "{params}"
            );
        }
    }

    fn failure(line: &str) -> (Value, Option<Reason>) {
        match parse_json(line.as_bytes()) {
            JsonLine::Invalid { id, failure } => (id, failure.reason),
            JsonLine::Request { .. } => panic!("{line} parsed as a request"),
        }
    }

    #[test]
    fn json_requests_are_checked() {
        assert_eq!(failure("{"), (Value::Null, Some(Reason::Parse)));
        assert_eq!(failure("[]"), (Value::Null, Some(Reason::InvalidRequest)));
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":3}"#),
            (json!(3), Some(Reason::InvalidRequest))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"1.0","id":3,"method":"list"}"#),
            (json!(3), Some(Reason::InvalidRequest))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":"a","method":"nope"}"#),
            (json!("a"), Some(Reason::UnknownMethod))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":"a","method":"exit"}"#),
            (json!("a"), Some(Reason::UnknownMethod))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":"a","method":"watch"}"#),
            (json!("a"), Some(Reason::TextOnly))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"call","params":{}}"#),
            (json!(1), Some(Reason::BadParams))
        );
        assert_eq!(
            failure(r#"{"jsonrpc":"2.0","id":1,"method":"get","params":{"nmae":"x"}}"#),
            (json!(1), Some(Reason::BadParams))
        );
        assert_eq!(
            failure(
                r#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"x","args":[[1]]}}"#
            ),
            (json!(1), Some(Reason::BadParams))
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

    /// Every request a text line can make reaches the server's JSON parser
    /// as the same request, so `--json` can never drift from text.
    #[test]
    fn text_requests_survive_the_trip_through_json() {
        for line in [
            "help",
            "help add",
            "list",
            "stacks",
            "threads",
            "info",
            "top",
            "top 0.5",
            "top 60",
            "mem",
            "get CONFIG",
            "set LEVEL \"debug\"",
            "set LIMITS {\"a\": [1, 2]}",
            "stats",
            "stats --sort p99",
            "stats --window 10s",
            "stats --window=2m --sort calls",
            "stats reset",
            "stats reset handle_request",
            "log",
            "log set debug",
            "log set 'info,app=trace' --for 10m",
            "log reset",
            "log tail",
            "log tail 5",
            "call add 40 2",
            "add 40 2",
            "REQUESTS",
        ] {
            let request = parse_text(line).unwrap().unwrap();
            let (method, params) = request.to_json().unwrap();
            let object = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            match parse_json(object.to_string().as_bytes()) {
                JsonLine::Request { request: back, .. } => assert_eq!(back, request, "{line}"),
                JsonLine::Invalid { failure, .. } => panic!("{line}: {failure}"),
            }
        }
        assert!(parse_text("watch X")
            .unwrap()
            .unwrap()
            .to_json()
            .unwrap_err()
            .is(Reason::TextOnly));
    }
}
