//! The command table and the inspected items, gathered at link time.
//!
//! `#[manhole::command]` and `#[manhole::inspect]` submit `const`-built
//! entries to [`inventory`]; nothing runs before `main` except inventory's own
//! constructors. Lookups walk the collected entries; they are few, so a
//! sorted copy is made per request rather than cached.

use crate::instrument::async_commands::Waiting;
use crate::instrument::calls::CallStats;
use crate::options::DEFAULT_LOCK_TIMEOUT;
use manhole_wire::{ArgValue, Failure, Reason};
use serde::Serialize;
use std::cell::Cell;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// What a command or an inspected value produced: its JSON value, or the
/// reason there is none.
pub type Outcome = Result<serde_json::Value, Failure>;

/// Name, help text and source location of a registered item.
#[doc(hidden)]
#[derive(Debug)]
pub struct Meta {
    pub(crate) name: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) module: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    /// Named with `name = "..."`: shown as written, never qualified.
    pub(crate) explicit: bool,
}

impl Meta {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        doc: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Meta {
            name,
            doc,
            module,
            file,
            line,
            explicit: false,
        }
    }

    /// The same, for an item given its name with `name = "..."`.
    #[doc(hidden)]
    #[must_use]
    pub const fn named_explicitly(self) -> Self {
        Meta {
            explicit: true,
            ..self
        }
    }

    /// The doc comment's first paragraph, on one line.
    pub(crate) fn summary(&self) -> String {
        self.doc
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn location(&self) -> String {
        format!("{} ({}:{})", self.module, self.file, self.line)
    }
}

/// One parameter of a command.
#[doc(hidden)]
#[derive(Debug)]
pub struct Param {
    pub(crate) name: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) optional: bool,
}

impl Param {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(name: &'static str, ty: &'static str, optional: bool) -> Self {
        Param { name, ty, optional }
    }
}

/// A function registered with `#[manhole::command]`.
#[doc(hidden)]
pub struct Command {
    pub(crate) meta: Meta,
    pub(crate) params: &'static [Param],
    pub(crate) returns: &'static str,
    pub(crate) invoke: fn(&mut Args<'_>) -> Outcome,
}

impl Command {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        meta: Meta,
        params: &'static [Param],
        returns: &'static str,
        invoke: fn(&mut Args<'_>) -> Outcome,
    ) -> Self {
        Command {
            meta,
            params,
            returns,
            invoke,
        }
    }

    pub(crate) fn required_count(&self) -> usize {
        self.params.iter().filter(|param| !param.optional).count()
    }

    /// `add(a: i64, b: Option<i64>) -> i64`
    pub(crate) fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|param| {
                if param.optional {
                    format!("{}: Option<{}>", param.name, param.ty)
                } else {
                    format!("{}: {}", param.name, param.ty)
                }
            })
            .collect();
        let mut signature = format!("{}({})", self.meta.name, params.join(", "));
        if self.returns != "()" {
            signature.push_str(" -> ");
            signature.push_str(self.returns);
        }
        signature
    }

    /// `call add A B`, with optional arguments in brackets.
    pub(crate) fn usage(&self) -> String {
        let mut usage = format!("call {}", self.meta.name);
        for param in self.params {
            if param.optional {
                usage.push_str(&format!(" [{}]", param.name.to_uppercase()));
            } else {
                usage.push_str(&format!(" {}", param.name.to_uppercase()));
            }
        }
        usage
    }
}

/// Whether an inspected item is a static, a function computed on read, or
/// a function whose calls are counted.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InspectKind {
    Static,
    Computed,
    Calls,
}

/// Where an inspected item's value comes from.
pub(crate) enum Source {
    /// A static's serialiser, or a computed function's adapter.
    Read(fn() -> Outcome),
    /// The counters of a function under `#[manhole::inspect(calls)]`.
    Calls(&'static CallStats),
}

/// Replaces a writable static's value and returns
/// `{"previous": ..., "value": ...}`.
pub type Write = fn(serde_json::Value) -> Outcome;

/// A static or a function registered with `#[manhole::inspect]`.
#[doc(hidden)]
pub struct Inspect {
    pub(crate) meta: Meta,
    /// The static's type, the computed function's return type, or the
    /// counted function's parameters and return type.
    pub(crate) ty: &'static str,
    pub(crate) kind: InspectKind,
    pub(crate) source: Source,
    pub(crate) write: Option<Write>,
    /// Where a static lies in memory, as (address, size), for the
    /// watchdog: the lock a thread waits on, the heartbeat that is late.
    pub(crate) place: Option<fn() -> (usize, usize)>,
}

impl Inspect {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        meta: Meta,
        ty: &'static str,
        kind: InspectKind,
        read: fn() -> Outcome,
    ) -> Self {
        Inspect {
            meta,
            ty,
            kind,
            source: Source::Read(read),
            write: None,
            place: None,
        }
    }

    /// A function under `#[manhole::inspect(calls)]`; `signature` is its
    /// parameter list and return type, as in `(key: &str) -> u64`.
    #[doc(hidden)]
    #[must_use]
    pub const fn calls(meta: Meta, signature: &'static str, stats: &'static CallStats) -> Self {
        Inspect {
            meta,
            ty: signature,
            kind: InspectKind::Calls,
            source: Source::Calls(stats),
            write: None,
            place: None,
        }
    }

    /// Makes a static writable with `set`.
    #[doc(hidden)]
    #[must_use]
    pub const fn writable(mut self, write: Write) -> Self {
        self.write = Some(write);
        self
    }

    /// A static's place in memory, given by a function the attribute
    /// writes (an address cannot be a constant).
    #[doc(hidden)]
    #[must_use]
    pub const fn at(mut self, place: fn() -> (usize, usize)) -> Self {
        self.place = Some(place);
        self
    }

    /// `REQUESTS: AtomicU64`, `queue_depth() -> usize` or
    /// `lookup(key: &str) -> u64`.
    pub(crate) fn signature(&self) -> String {
        match self.kind {
            InspectKind::Static => format!("{}: {}", self.meta.name, self.ty),
            InspectKind::Computed => format!("{}() -> {}", self.meta.name, self.ty),
            InspectKind::Calls => format!("{}{}", self.meta.name, self.ty),
        }
    }
}

/// The arguments of one call, matched to the command's parameters by
/// position. Their count has been checked before the command is invoked.
pub struct Args<'a> {
    pub(crate) command: &'static Command,
    pub(crate) values: &'a [ArgValue],
    /// What an async command's future runs under.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) waiting: Waiting<'a>,
}

impl Args<'_> {
    /// Parses the argument at `index` for a required parameter.
    ///
    /// # Errors
    ///
    /// An invalid-params failure that names the parameter, its type and why
    /// the text did not parse.
    pub fn required<T: CommandArg>(&mut self, index: usize) -> Result<T, Failure> {
        match self.values.get(index) {
            Some(ArgValue::Text(text)) => self.parse(index, text),
            Some(ArgValue::Null) | None => Err(self.failure(
                index,
                "it is required (`null` only leaves out an `Option` parameter)".to_owned(),
                None,
            )),
        }
    }

    /// Parses the argument at `index` for an `Option<T>` parameter; a
    /// missing argument or JSON `null` is `None`.
    ///
    /// # Errors
    ///
    /// As [`Args::required`], when an argument is present but does not parse.
    pub fn optional<T: CommandArg>(&mut self, index: usize) -> Result<Option<T>, Failure> {
        match self.values.get(index) {
            Some(ArgValue::Text(text)) => self.parse(index, text).map(Some),
            Some(ArgValue::Null) | None => Ok(None),
        }
    }

    fn parse<T: CommandArg>(&self, index: usize, text: &str) -> Result<T, Failure> {
        T::parse_arg(text)
            .map_err(|reason| self.failure(index, format!("got {text:?}: {reason}"), Some(text)))
    }

    fn failure(&self, index: usize, problem: String, got: Option<&str>) -> Failure {
        let param = &self.command.params[index];
        Failure::new(
            Reason::BadArgument,
            format!(
                "argument `{}` of `{}` expects {}; {problem}",
                param.name, self.command.meta.name, param.ty
            ),
        )
        .with_details(serde_json::json!({
            "argument": param.name,
            "index": index,
            "expected": param.ty,
            "got": got,
        }))
    }
}

/// A type a command parameter can have: parsed from text with `FromStr`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a command parameter, because it does not implement `FromStr` with an `Err` that implements `Display`",
    label = "command arguments are parsed from text with `FromStr`",
    note = "implement `FromStr` for `{Self}`, or take a `String` and parse it in the body"
)]
pub trait CommandArg: Sized {
    /// Parses one argument.
    ///
    /// # Errors
    ///
    /// The `FromStr` error, as text.
    fn parse_arg(text: &str) -> Result<Self, String>;
}

impl<T> CommandArg for T
where
    T: FromStr,
    T::Err: Display,
{
    fn parse_arg(text: &str) -> Result<Self, String> {
        text.parse().map_err(|err: T::Err| err.to_string())
    }
}

thread_local! {
    /// The lock timeout of the manhole whose request this thread runs.
    static LOCK_TIMEOUT: Cell<Duration> = const { Cell::new(DEFAULT_LOCK_TIMEOUT) };
}

/// Runs `request` with `timeout` as the lock timeout that the adapters of
/// inspected `Mutex` and `RwLock` statics wait for. The adapters are plain
/// `fn()`s built by the attributes, so the installed manhole's setting
/// reaches them through the thread that runs the request, never through a
/// process-wide global that outlives the manhole.
pub(crate) fn with_lock_timeout<R>(timeout: Duration, request: impl FnOnce() -> R) -> R {
    let previous = LOCK_TIMEOUT.with(|cell| cell.replace(timeout));
    let result = request();
    LOCK_TIMEOUT.with(|cell| cell.set(previous));
    result
}

/// The lock timeout of the request running on this thread (the default
/// outside any request).
pub(crate) fn lock_timeout() -> Duration {
    LOCK_TIMEOUT.with(Cell::get)
}

inventory::collect!(Command);
inventory::collect!(Inspect);

/// Anything in the table: both kinds answer to a name.
pub(crate) trait Named {
    fn meta(&self) -> &Meta;

    /// The name it is shown by: its own, but for a counted function that
    /// shares it (see [`shown_name`]).
    fn shown_name(&'static self) -> &'static str {
        self.meta().name
    }
}

impl Named for Command {
    fn meta(&self) -> &Meta {
        &self.meta
    }
}

impl Named for Inspect {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn shown_name(&'static self) -> &'static str {
        shown_name(self)
    }
}

/// Every registered command, sorted by name.
pub(crate) fn commands() -> Vec<&'static Command> {
    sorted(inventory::iter::<Command>.into_iter())
}

/// Every inspected item, sorted by name.
pub(crate) fn inspected() -> Vec<&'static Inspect> {
    sorted(inventory::iter::<Inspect>.into_iter())
}

/// The counters of every function under `#[manhole::inspect(calls)]`,
/// by name.
pub(crate) fn call_stats() -> Vec<(&'static str, &'static CallStats)> {
    inspected()
        .into_iter()
        .filter_map(|item| match item.source {
            Source::Calls(stats) => Some((shown_name(item), stats)),
            Source::Read(_) => None,
        })
        .collect()
}

/// The name an item is shown by: its own, or, when another counted
/// function of another module has the same one, its module's last part
/// before it (`get::apply`, `set::apply`); the whole module path where
/// even that is shared. A name given with `name = "..."` is shown as
/// written. Worked out once, from the registry, which is fixed at link
/// time; the counters keep it for the calls in flight to take.
pub(crate) fn shown_name(item: &'static Inspect) -> &'static str {
    let Source::Calls(stats) = item.source else {
        return item.meta.name;
    };
    if let Some(shown) = stats.shown_name() {
        return shown;
    }
    qualify_names();
    stats.shown_name().unwrap_or(item.meta.name)
}

/// Gives every counted function its shown name (see [`shown_name`]).
pub(crate) fn qualify_names() {
    let counted: Vec<&'static Inspect> = inspected()
        .into_iter()
        .filter(|item| matches!(item.source, Source::Calls(_)))
        .collect();
    let last_part = |module: &'static str| module.rsplit("::").next().unwrap_or(module);
    for item in &counted {
        let Source::Calls(stats) = item.source else {
            continue;
        };
        let meta = &item.meta;
        let namesakes: Vec<&Meta> = counted
            .iter()
            .map(|other| &other.meta)
            .filter(|other| other.name == meta.name && !std::ptr::eq(*other, meta))
            .collect();
        let shown: &'static str = if meta.explicit || namesakes.is_empty() {
            meta.name
        } else if namesakes
            .iter()
            .all(|other| last_part(other.module) != last_part(meta.module))
        {
            Box::leak(format!("{}::{}", last_part(meta.module), meta.name).into_boxed_str())
        } else {
            Box::leak(format!("{}::{}", meta.module, meta.name).into_boxed_str())
        };
        stats.set_shown_name(shown);
    }
}

fn sorted<T: Named>(items: impl Iterator<Item = &'static T>) -> Vec<&'static T> {
    let mut items: Vec<_> = items.collect();
    items.sort_by(|a, b| (a.meta().name, a.meta().module).cmp(&(b.meta().name, b.meta().module)));
    items
}

/// The result of looking a name up in one kind of item.
pub(crate) enum Lookup<T: 'static> {
    Found(&'static T),
    /// Two crates registered the same name; calling either would be a guess.
    Ambiguous(Vec<&'static T>),
    Missing,
}

pub(crate) fn find<T: Named>(items: &[&'static T], name: &str) -> Lookup<T> {
    // The name shown (`get::apply`) always; the short one when it is
    // the only item of that name.
    let shown: Vec<_> = items
        .iter()
        .copied()
        .filter(|item| item.shown_name() == name)
        .collect();
    if !shown.is_empty() {
        return match shown.as_slice() {
            [one] => Lookup::Found(one),
            _ => Lookup::Ambiguous(shown),
        };
    }
    let matches: Vec<_> = items
        .iter()
        .copied()
        .filter(|item| item.meta().name == name)
        .collect();
    match matches.as_slice() {
        [] => Lookup::Missing,
        [one] => Lookup::Found(one),
        _ => Lookup::Ambiguous(matches),
    }
}

/// The registered name closest to `name`, if any is close enough to be a
/// likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    // The same name in other case (`settings` for `SETTINGS`) first, then
    // a name it begins (`stak` for `stacks`), then a near miss.
    if let Some(same) = candidates
        .iter()
        .find(|candidate| candidate.eq_ignore_ascii_case(name))
    {
        return Some(same);
    }
    let lower = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let folded = candidate.to_ascii_lowercase();
            let distance = edit_distance(&lower, &folded);
            let begins =
                lower.chars().count() >= 3 && folded.starts_with(lower.get(..3)?) && distance <= 2;
            (distance <= limit || begins).then_some((distance, candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits from `a` to `b`: insertions, deletions, substitutions, and swaps
/// of two neighbours (`evcit` is one edit from `evict`), each counting one
/// (the optimal string alignment distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = rows[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitution.min(rows[i - 1][j] + 1).min(rows[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Every inspected static's place and name, and whether any is a lock,
/// read once: the registry is fixed at link time.
struct Places {
    statics: Vec<(usize, usize, &'static str)>,
    any_lock: bool,
    /// Each inspected lock's address, and whether it is a `RwLock`.
    locks: Vec<(usize, bool)>,
}

fn places() -> &'static Places {
    static PLACES: std::sync::OnceLock<Places> = std::sync::OnceLock::new();
    PLACES.get_or_init(|| {
        let items = inspected();
        Places {
            statics: items
                .iter()
                .filter_map(|item| {
                    let (start, size) = (item.place?)();
                    Some((start, size.max(1), item.meta.name))
                })
                .collect(),
            any_lock: items.iter().any(|item| {
                item.place.is_some() && (item.ty.contains("Mutex") || item.ty.contains("RwLock"))
            }),
            locks: items
                .iter()
                .filter(|item| item.ty.contains("Mutex") || item.ty.contains("RwLock"))
                .filter_map(|item| {
                    let (start, size) = (item.place?)();
                    (size >= 4).then_some((start, item.ty.contains("RwLock")))
                })
                .collect(),
        }
    })
}

/// The inspected static whose memory holds `address` (a lock's futex
/// word, a heartbeat), by name.
pub(crate) fn static_at(address: usize) -> Option<&'static str> {
    places()
        .statics
        .iter()
        .find(|(start, size, _)| (*start..*start + *size).contains(&address))
        .map(|(_, _, name)| *name)
}

/// Whether any inspected lock's state word says threads may be waiting on
/// it, as std's futex locks keep it: a `Mutex` in state 2 ("locked, with
/// waiters"), a `RwLock` with its readers- or writers-waiting bit set. The
/// word is the lock's first four bytes, as std lays its locks out; it is
/// copied by the kernel (`process_vm_readv`), never read through a
/// reference, since the program writes it meanwhile. A cheap hint, read on
/// every look, that says when a scan of every thread is worth its cost;
/// locks laid out otherwise are caught by the scans that run anyway.
pub(crate) fn lock_words_say_waiting() -> bool {
    let locks = &places().locks;
    let addresses: Vec<usize> = locks.iter().map(|&(address, _)| address).collect();
    let mut words = vec![0u32; addresses.len()];
    let mut copied = 0;
    // One system call for up to 64 locks.
    while copied < addresses.len() {
        let more = crate::os::interrupted::copy_words(&addresses[copied..], &mut words[copied..]);
        if more == 0 {
            break;
        }
        copied += more;
    }
    locks
        .iter()
        .zip(&words[..copied])
        .any(|(&(_, rwlock), &state)| {
            if rwlock {
                state & (0b11 << 30) != 0
            } else {
                state == 2
            }
        })
}

/// Whether any inspected static is a lock that threads may wait on.
pub(crate) fn any_inspected_lock() -> bool {
    places().any_lock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["reload_config", "add", "queue_depth"];
        assert_eq!(suggest("reload_cofig", names), Some("reload_config"));
        assert_eq!(suggest("ad", names), Some("add"));
        assert_eq!(suggest("shutdown", names), None);
        let builtins = ["stacks", "stats", "SETTINGS", "threads"];
        assert_eq!(suggest("stak", builtins), Some("stacks"));
        assert_eq!(suggest("settings", builtins), Some("SETTINGS"));
        assert_eq!(suggest("treads", builtins), Some("threads"));
        assert_eq!(suggest("evcit", ["evict", "stats"]), Some("evict"));
        assert_eq!(suggest("stakcs", builtins), Some("stacks"));
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("evcit", "evict"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
