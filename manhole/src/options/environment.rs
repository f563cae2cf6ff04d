//! `MANHOLE=key=value,...`: the environment's say over the options, and
//! `MANHOLE=off`.

use super::{Activation, Options, ENVIRONMENT_VARIABLE};
use crate::error::Error;
use crate::signal_names;
use manhole_wire::parse_duration;

/// Applies `MANHOLE` from the environment: `None` when it says the
/// manhole is off, the options it overrides otherwise.
pub(crate) fn apply_environment(options: Options) -> Result<Option<Options>, Error> {
    match std::env::var(ENVIRONMENT_VARIABLE) {
        Ok(value) => apply_settings(options, &value),
        Err(std::env::VarError::NotPresent) => Ok(Some(options)),
        Err(std::env::VarError::NotUnicode(_)) => Err(environment_error("is not valid UTF-8")),
    }
}

fn environment_error(reason: impl std::fmt::Display) -> Error {
    Error::InvalidOption {
        option: ENVIRONMENT_VARIABLE,
        reason: reason.to_string(),
    }
}

/// The keys `MANHOLE=key=value,...` takes: the attribute's, and the
/// builder's other options.
const ENVIRONMENT_KEYS: &[&str] = &[
    "socket_path",
    "verbose",
    "activate_on",
    "oneshot_on",
    "sigmask",
    "reinstall_on_fork",
    "reinstall_delay",
    "max_line_length",
    "max_sessions",
    "idle_timeout",
    "write_timeout",
    "lock_timeout",
    "stack_signal",
    "stack_timeout",
    "command_timeout",
    "slow_poll",
    "crash_report",
    "crash_file",
    "crash_timeout",
    "watchdog",
    "stuck_call",
    "watchdog_stacks",
    "symbol_cache_idle",
    "max_reply_bytes",
    "history",
    "history_bytes",
];

pub(super) fn apply_settings(mut options: Options, value: &str) -> Result<Option<Options>, Error> {
    let value = value.trim();
    if ["off", "0", "false", "no", "disabled"].contains(&value.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    // The environment overrides the program's activation, but one value
    // cannot ask for two.
    let mut activation_key: Option<&str> = None;
    for setting in value
        .split(',')
        .map(str::trim)
        .filter(|setting| !setting.is_empty())
    {
        let Some((key, text)) = setting.split_once('=') else {
            return Err(environment_error(format!(
                "{setting:?} is not `key=value`; write for example MANHOLE=socket_path=/run/app.sock,activate_on=USR1, or MANHOLE=off"
            )));
        };
        let (key, text) = (key.trim(), text.trim());
        let bad =
            |expected: &str| environment_error(format!("{key}={text:?}: expected {expected}"));
        let signal = |text: &str| {
            signal_names::parse(text)
                .map_err(|reason| environment_error(format!("{key}: {reason}")))
        };
        options = match key {
            "socket_path" => options.socket_path(text),
            "verbose" => options.verbose(parse_bool(text).ok_or_else(|| bad("true or false"))?),
            "activate_on" | "oneshot_on" => {
                if let Some(earlier) = activation_key.replace(key) {
                    return Err(environment_error(format!(
                        "`{key}` cannot be combined with `{earlier}`: a signal either activates the manhole for good (`activate_on`) or opens one session each time (`oneshot_on`); keep one of them"
                    )));
                }
                let signal = signal(text)?;
                options.activation(if key == "activate_on" {
                    Activation::OnSignal(signal)
                } else {
                    Activation::OneshotOn(signal)
                })
            }
            "sigmask" => options.sigmask(parse_bool(text).ok_or_else(|| bad("true or false"))?),
            "reinstall_on_fork" => {
                options.reinstall_on_fork(parse_bool(text).ok_or_else(|| bad("true or false"))?)
            }
            "reinstall_delay" => options.reinstall_delay(
                parse_duration(text).ok_or_else(|| bad("a duration such as 500ms or 2s"))?,
            ),
            "max_line_length" => {
                options.max_line_length(text.parse().map_err(|_| bad("a number of bytes"))?)
            }
            "max_sessions" => {
                options.max_sessions(text.parse().map_err(|_| bad("a number of sessions"))?)
            }
            "idle_timeout" => options
                .idle_timeout(parse_duration(text).ok_or_else(|| bad("a duration such as 10m"))?),
            "write_timeout" => options
                .write_timeout(parse_duration(text).ok_or_else(|| bad("a duration such as 10s"))?),
            "lock_timeout" => options
                .lock_timeout(parse_duration(text).ok_or_else(|| bad("a duration such as 100ms"))?),
            "stack_signal" => options.stack_signal(signal(text)?),
            "stack_timeout" => options.stack_timeout(
                parse_duration(text).ok_or_else(|| bad("a duration such as 200ms"))?,
            ),
            "command_timeout" => options.command_timeout(
                parse_duration(text).ok_or_else(|| bad("a duration such as 30s"))?,
            ),
            "crash_report" => {
                options.crash_report(parse_bool(text).ok_or_else(|| bad("on or off"))?)
            }
            "crash_file" => options.crash_file(text),
            "watchdog" => options.watchdog(if text.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_duration(text).ok_or_else(|| bad("a duration such as 500ms, or off"))?)
            }),
            "stuck_call" => options
                .stuck_call(parse_duration(text).ok_or_else(|| bad("a duration such as 5s"))?),
            "watchdog_stacks" => options.watchdog_stacks(
                super::WatchdogStacks::from_name(text).ok_or_else(|| bad("short, full or none"))?,
            ),
            "max_reply_bytes" => options.max_reply_bytes(
                text.parse()
                    .map_err(|_| bad("a number of bytes, such as 16777216"))?,
            ),
            "history" => options.history(if text.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_duration(text).ok_or_else(|| bad("a duration such as 10m, or off"))?)
            }),
            "history_bytes" => options.history_bytes(
                text.parse()
                    .map_err(|_| bad("a number of bytes, such as 8388608"))?,
            ),
            "symbol_cache_idle" => options.symbol_cache_idle(
                parse_duration(text).ok_or_else(|| bad("a duration such as 1m"))?,
            ),
            "crash_timeout" => options
                .crash_timeout(parse_duration(text).ok_or_else(|| bad("a duration such as 10s"))?),
            "slow_poll" => options
                .slow_poll(parse_duration(text).ok_or_else(|| bad("a duration such as 250ms"))?),
            other => {
                let expected = ENVIRONMENT_KEYS
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(environment_error(format!(
                    "unknown key `{other}`; expected one of: {expected}"
                )));
            }
        };
    }
    Ok(Some(options))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}
