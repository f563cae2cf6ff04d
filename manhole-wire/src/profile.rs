//! `profile`: what a sampling profile is asked for, in both grammars, and
//! the names its answer uses.

use crate::error::{Failure, Reason};
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

/// The fewest seconds a profile runs.
pub const MIN_PROFILE_SECONDS: f64 = 1.0;
/// The most seconds a profile runs.
pub const MAX_PROFILE_SECONDS: f64 = 300.0;
/// How long a profile runs when not told.
pub const DEFAULT_PROFILE_SECONDS: f64 = 10.0;
/// The lowest sampling frequency.
pub const MIN_PROFILE_HZ: u32 = 1;
/// The highest sampling frequency.
pub const MAX_PROFILE_HZ: u32 = 1000;
/// The sampling frequency when not told: not a multiple of common timer
/// periods, so that samples do not march in step with periodic work.
pub const DEFAULT_PROFILE_HZ: u32 = 99;

/// The text flag that asks for wall-clock mode.
pub const WALL_FLAG: &str = "--wall";
/// The text flag for the frequency.
pub const HZ_FLAG: &str = "--hz";
/// The text flag for the output format.
pub const FORMAT_FLAG: &str = "--format";
/// The text flag that limits a profile to some threads.
pub const THREAD_FLAG: &str = "--thread";
/// The text flag that roots each folded stack at its thread's name.
pub const PER_THREAD_FLAG: &str = "--per-thread";
/// The text flag that draws `svg` as a classic flame graph, root at the
/// bottom, rather than an icicle graph, root at the top.
pub const FLAME_FLAG: &str = "--flame";
/// Every flag of `profile`, for completion.
pub const PROFILE_FLAGS: [&str; 6] = [
    HZ_FLAG,
    WALL_FLAG,
    FORMAT_FLAG,
    THREAD_FLAG,
    PER_THREAD_FLAG,
    FLAME_FLAG,
];

/// What a profile samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileMode {
    /// Each thread in proportion to the CPU time it uses.
    #[default]
    Cpu,
    /// Every thread at the frequency, whatever its state: time blocked on
    /// locks, I/O and sleep shows up.
    Wall,
}

impl ProfileMode {
    /// Its name on the wire (`mode`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ProfileMode::Cpu => "cpu",
            ProfileMode::Wall => "wall",
        }
    }
}

/// How a profile's samples are written out (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFormat {
    /// A table of functions with self % and total %.
    Top,
    /// Brendan Gregg's collapsed stacks, root first: `a;b;c COUNT`.
    Folded,
    /// Base64 of a gzipped pprof `profile.proto`.
    Pprof,
    /// A flame graph, as SVG.
    Svg,
}

impl ProfileFormat {
    /// Every format, in the order errors list them.
    pub const ALL: [ProfileFormat; 4] = [
        ProfileFormat::Top,
        ProfileFormat::Folded,
        ProfileFormat::Pprof,
        ProfileFormat::Svg,
    ];

    /// Its name on the wire.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ProfileFormat::Top => "top",
            ProfileFormat::Folded => "folded",
            ProfileFormat::Pprof => "pprof",
            ProfileFormat::Svg => "svg",
        }
    }

    /// The format called `name`, or an error that lists them.
    ///
    /// # Errors
    ///
    /// [`Reason::BadParams`] for a name that is none of them.
    pub fn parse(name: &str) -> Result<ProfileFormat, Failure> {
        ProfileFormat::ALL
            .into_iter()
            .find(|format| format.name() == name)
            .ok_or_else(|| {
                bad_params(format!(
                    "unknown profile format {name:?}; expected one of: top, folded, pprof, svg"
                ))
            })
    }
}

impl fmt::Display for ProfileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `profile` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRequest {
    /// How long to sample.
    pub duration: Duration,
    /// Samples per second of CPU time (cpu mode) or of wall time (wall
    /// mode), per thread.
    pub hz: u32,
    /// What is sampled.
    pub mode: ProfileMode,
    /// The output; `None` is the protocol's default (`top` over text,
    /// `folded` over JSON).
    pub format: Option<ProfileFormat>,
    /// Only threads whose name starts with this, or whose tid it is.
    pub thread: Option<String>,
    /// Whether each folded stack is rooted at its thread's name.
    pub per_thread: bool,
    /// Whether `svg` is a classic flame graph (root at the bottom) rather
    /// than the default icicle graph (root at the top, where it is seen
    /// first however deep the stacks).
    pub flame: bool,
}

impl Default for ProfileRequest {
    fn default() -> Self {
        ProfileRequest {
            duration: Duration::from_secs_f64(DEFAULT_PROFILE_SECONDS),
            hz: DEFAULT_PROFILE_HZ,
            mode: ProfileMode::Cpu,
            format: None,
            thread: None,
            per_thread: false,
            flame: false,
        }
    }
}

fn bad_params(message: impl Into<String>) -> Failure {
    Failure::new(Reason::BadParams, message)
}

fn seconds(value: Option<f64>, given: &str) -> Result<Duration, Failure> {
    match value {
        Some(seconds) if (MIN_PROFILE_SECONDS..=MAX_PROFILE_SECONDS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(bad_params(format!(
            "`profile` samples for {MIN_PROFILE_SECONDS} to {MAX_PROFILE_SECONDS} seconds; got {given}"
        ))),
    }
}

fn hz(value: Option<u64>, given: &str) -> Result<u32, Failure> {
    match value {
        Some(hz) if (u64::from(MIN_PROFILE_HZ)..=u64::from(MAX_PROFILE_HZ)).contains(&hz) => {
            Ok(u32::try_from(hz).unwrap_or(DEFAULT_PROFILE_HZ))
        }
        _ => Err(bad_params(format!(
            "`hz` is a whole number of samples per second from {MIN_PROFILE_HZ} to {MAX_PROFILE_HZ}; got {given}"
        ))),
    }
}

/// The JSON param `thread`, of `profile` and `stacks`: a tid, or a name or
/// the start of one.
pub(crate) fn thread_param(given: Option<Value>) -> Result<Option<String>, Failure> {
    match given {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => thread(&name).map(Some),
        Some(Value::Number(tid)) => Ok(Some(tid.to_string())),
        Some(given) => Err(bad_params(format!(
            "`thread` is a thread's name (or the start of it) or its tid; got {given}"
        ))),
    }
}

fn thread(name: &str) -> Result<String, Failure> {
    if name.is_empty() {
        Err(bad_params(
            "`thread` is a thread's name (or the start of it) or its tid; got an empty string",
        ))
    } else {
        Ok(name.to_owned())
    }
}

impl ProfileRequest {
    /// The text form's arguments after `profile`:
    /// `[SECONDS] [--hz N] [--wall] [--format F] [--thread NAME|TID]
    /// [--per-thread] [--flame]`.
    ///
    /// # Errors
    ///
    /// [`Reason::BadParams`], saying which word is wrong and what it takes.
    pub fn from_words(words: &[String]) -> Result<ProfileRequest, Failure> {
        let mut request = ProfileRequest::default();
        let mut words = words.iter();
        let mut seen_seconds = false;
        while let Some(word) = words.next() {
            let mut value = |flag: &str| {
                words
                    .next()
                    .ok_or_else(|| bad_params(format!("`{flag}` needs a value")))
            };
            match word.as_str() {
                WALL_FLAG => request.mode = ProfileMode::Wall,
                PER_THREAD_FLAG => request.per_thread = true,
                FLAME_FLAG => request.flame = true,
                HZ_FLAG => {
                    let given = value(HZ_FLAG)?;
                    request.hz = hz(given.parse().ok(), &format!("{given:?}"))?;
                }
                FORMAT_FLAG => request.format = Some(ProfileFormat::parse(value(FORMAT_FLAG)?)?),
                THREAD_FLAG => request.thread = Some(thread(value(THREAD_FLAG)?)?),
                flag if flag.starts_with("--") => {
                    return Err(bad_params(format!(
                        "unknown flag `{flag}`; usage: profile [SECONDS] [--hz N] [--wall] [--format top|folded|pprof|svg] [--thread NAME|TID] [--per-thread] [--flame]"
                    )))
                }
                given if !seen_seconds => {
                    seen_seconds = true;
                    let number = given.strip_suffix('s').unwrap_or(given);
                    request.duration = seconds(number.parse().ok(), &format!("{given:?}"))?;
                }
                extra => return Err(bad_params(format!("`profile` takes one SECONDS; got another, {extra:?}"))),
            }
        }
        Ok(request)
    }

    /// The JSON params `{"seconds"?, "hz"?, "mode"?, "format"?, "thread"?,
    /// "per_thread"?, "flame"?}`, already checked for unknown keys.
    ///
    /// # Errors
    ///
    /// [`Reason::BadParams`] for a value of the wrong type or out of range.
    pub fn from_params(params: &mut Map<String, Value>) -> Result<ProfileRequest, Failure> {
        let mut request = ProfileRequest::default();
        let mut take = |key: &str| params.remove(key).filter(|value| !value.is_null());
        if let Some(given) = take("seconds") {
            request.duration = seconds(given.as_f64(), &given.to_string())?;
        }
        if let Some(given) = take("hz") {
            request.hz = hz(given.as_u64(), &given.to_string())?;
        }
        if let Some(given) = take("mode") {
            request.mode = match given.as_str() {
                Some("cpu") => ProfileMode::Cpu,
                Some("wall") => ProfileMode::Wall,
                _ => {
                    return Err(bad_params(format!(
                        "`mode` is \"cpu\" or \"wall\"; got {given}"
                    )))
                }
            };
        }
        if let Some(given) = take("format") {
            let Some(name) = given.as_str() else {
                return Err(bad_params(format!(
                    "`format` is a string, one of: top, folded, pprof, svg; got {given}"
                )));
            };
            request.format = Some(ProfileFormat::parse(name)?);
        }
        request.thread = thread_param(take("thread"))?;
        match take("per_thread") {
            None => {}
            Some(Value::Bool(per_thread)) => request.per_thread = per_thread,
            Some(_) => return Err(bad_params("`per_thread` must be true or false")),
        }
        match take("flame") {
            None => {}
            Some(Value::Bool(flame)) => request.flame = flame,
            Some(_) => return Err(bad_params("`flame` must be true or false")),
        }
        Ok(request)
    }

    /// The JSON params that ask the same.
    #[must_use]
    pub fn to_params(&self) -> Value {
        let mut params = json!({
            "seconds": self.duration.as_secs_f64(),
            "hz": self.hz,
            "mode": self.mode.name(),
        });
        if let Some(format) = self.format {
            params["format"] = json!(format.name());
        }
        if let Some(thread) = &self.thread {
            params["thread"] = json!(thread);
        }
        if self.per_thread {
            params["per_thread"] = json!(true);
        }
        if self.flame {
            params["flame"] = json!(true);
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn text_flags_in_any_order() {
        let request = ProfileRequest::from_words(&words(
            "--wall 3 --format svg --hz 250 --thread tokio --per-thread --flame",
        ))
        .unwrap();
        assert_eq!(
            request,
            ProfileRequest {
                duration: Duration::from_secs(3),
                hz: 250,
                mode: ProfileMode::Wall,
                format: Some(ProfileFormat::Svg),
                thread: Some("tokio".into()),
                per_thread: true,
                flame: true,
            }
        );
        assert_eq!(
            ProfileRequest::from_words(&[]).unwrap(),
            ProfileRequest::default()
        );
    }

    #[test]
    fn every_bad_word_says_what_it_takes() {
        for (line, needle) in [
            ("0", "1 to 300 seconds"),
            ("301", "1 to 300 seconds"),
            ("ten", "1 to 300 seconds"),
            ("--hz 0", "from 1 to 1000"),
            ("--hz 1001", "from 1 to 1000"),
            ("--hz 2.5", "whole number"),
            ("--hz", "needs a value"),
            ("--format png", "top, folded, pprof, svg"),
            ("--thread", "needs a value"),
            ("--fast", "unknown flag"),
            ("2 3", "one SECONDS"),
        ] {
            let failure = ProfileRequest::from_words(&words(line)).unwrap_err();
            assert_eq!(failure.reason, Some(Reason::BadParams), "{line}");
            assert!(
                failure.message.contains(needle),
                "{line}: {}",
                failure.message
            );
        }
    }

    #[test]
    fn json_params_round_trip() {
        let request = ProfileRequest {
            duration: Duration::from_secs(2),
            hz: 500,
            mode: ProfileMode::Wall,
            format: Some(ProfileFormat::Pprof),
            thread: Some("worker".into()),
            per_thread: true,
            flame: true,
        };
        let Value::Object(mut params) = request.to_params() else {
            panic!("params are an object");
        };
        assert_eq!(ProfileRequest::from_params(&mut params).unwrap(), request);
        for bad in [
            json!({"seconds": 0}),
            json!({"seconds": "5"}),
            json!({"hz": 5000}),
            json!({"mode": "gpu"}),
            json!({"format": 3}),
            json!({"thread": ""}),
            json!({"per_thread": "yes"}),
        ] {
            let Value::Object(mut params) = bad.clone() else {
                unreachable!()
            };
            let failure = ProfileRequest::from_params(&mut params).unwrap_err();
            assert_eq!(failure.reason, Some(Reason::BadParams), "{bad}");
        }
    }
}
