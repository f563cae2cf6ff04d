//! The wire contract of [manhole](https://docs.rs/manhole): what a client
//! and the server say to each other, in one place that both link.
//!
//! - [`error`]: the JSON-RPC codes, the machine-readable [`Reason`] that
//!   every error carries in `data.reason`, and [`Failure`], the error itself.
//! - [`method`]: the table of built-in methods ([`Builtin`]), from which the
//!   text grammar, the JSON params check, `help` and completion derive.
//! - [`request`]: [`Request`] and its two grammars, [`parse_text`] and
//!   [`parse_json`], and [`Request::to_json`] for a client.
//! - [`words`]: the text protocol's shell-like word splitting and quoting.
//! - [`duration`]: durations as options and flags take them (`500ms`, `2s`).
//! - [`mod@probe`]: whether something listens on a socket path.
//! - [`profile`]: what a `profile` request asks for, and its formats.
//!
//! This crate has no runtime: no threads, no globals, no I/O but
//! [`probe()`]'s one `connect`. PROTOCOL.md is the prose of the same contract.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod duration;
pub mod error;
pub mod method;
pub mod probe;
pub mod profile;
pub mod request;
pub mod words;

pub use duration::parse_duration;
pub use error::{code, Failure, Reason, REFUSAL_PREFIX};
pub use method::{Builtin, Param, Protocols, Spec};
pub use probe::probe;
pub use profile::{
    ProfileFormat, ProfileMode, ProfileRequest, DEFAULT_PROFILE_HZ, DEFAULT_PROFILE_SECONDS,
    FLAME_FLAG, FORMAT_FLAG, HZ_FLAG, MAX_PROFILE_HZ, MAX_PROFILE_SECONDS, MIN_PROFILE_HZ,
    MIN_PROFILE_SECONDS, PER_THREAD_FLAG, PROFILE_FLAGS, THREAD_FLAG, WALL_FLAG,
};
pub use request::{
    follow_text_only, json_response, log_event_line, log_follow_heading, parse_json, parse_text,
    text_only, value_text, ArgValue, JsonLine, LogRequest, Request, SortBy, WatchdogThreshold,
    COLLAPSE_FLAG, DEFAULT_LOG_TAIL, DEFAULT_TOP_SECONDS, HEAP_PROFILE_FLAG, LOG_FOLLOW_INTERVAL,
    MAX_LOG_FOR_S, MAX_LOG_TAIL, MAX_STATS_WINDOW_S, MAX_TOP_SECONDS, MAX_WATCH_INTERVAL,
    MIN_LOG_FOR_S, MIN_STATS_WINDOW_S, MIN_TOP_SECONDS, MIN_WATCHDOG_THRESHOLD, MIN_WATCH_INTERVAL,
    SHORT_FLAG,
};
pub use words::{quote_line, quote_word, split_words};
