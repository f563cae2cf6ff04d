//! What every built-in shares: the [`Answer`] it produces in both forms,
//! what a request runs under ([`Asked`]), the failures that name an item,
//! and the layouts of tables and figures for people.

use crate::instrument::registry::{self, Command, Inspect, Lookup, Named};
use crate::options::Served;
use manhole_wire::{value_text, Builtin, Failure, Reason};
use serde_json::Value;
use std::io::Write as _;

/// A successful reply in both forms. `text` ends with a newline, or is empty.
pub(crate) struct Answer {
    pub(crate) json: Value,
    pub(crate) text: String,
}

impl Answer {
    pub(super) fn value(json: Value) -> Self {
        let mut text = value_text(&json);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Answer { json, text }
    }
}

/// A JSON result too large to build first (a dump of a thousand threads is
/// megabytes): the session writes it into the response as it is
/// serialised, through a buffer of its own, so nothing holds it whole.
pub(crate) struct Streamed(Box<WriteJson>);

type WriteJson = dyn Fn(&mut dyn std::io::Write) -> serde_json::Result<()>;

impl Streamed {
    pub(super) fn new<T: serde::Serialize + 'static>(value: T) -> Self {
        Streamed(Box::new(move |out| {
            // A buffer of a concrete type, so that the serialiser's many
            // small writes (a dozen a frame) are inlined copies rather than
            // calls through `dyn Write`.
            let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, out);
            serde_json::to_writer(&mut buffered, &value)?;
            buffered.flush().map_err(serde_json::Error::io)
        }))
    }

    /// Serialises the result into `out`.
    ///
    /// # Errors
    ///
    /// When `out` fails (the client went away) or the value cannot be
    /// written as JSON.
    pub(crate) fn write_to(&self, out: &mut dyn std::io::Write) -> serde_json::Result<()> {
        (self.0)(out)
    }
}

/// What a request runs under: the installed manhole's waits, and a way to
/// tell that its client has hung up, so that a long wait is given up.
#[derive(Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) served: &'a Served,
    pub(crate) client_gone: &'a dyn Fn() -> bool,
}

/// A request given up because its client hung up; no one reads this.
pub(super) fn abandoned() -> Failure {
    Failure::new(Reason::Busy, "the dump was abandoned: the client hung up")
}

/// Signature and summary per row, the summaries lined up; a signature too
/// long for the column gets its summary on the next line.
pub(super) fn table(rows: &[(String, String)]) -> String {
    const MAX_WIDTH: usize = 40;
    let width = rows
        .iter()
        .map(|(signature, _)| signature.len())
        .filter(|len| *len <= MAX_WIDTH)
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (signature, summary) in rows {
        let line = if signature.len() <= width {
            format!("  {signature:<width$}  {summary}")
        } else {
            format!("  {signature}\n  {:width$}  {summary}", "")
        };
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Bytes for people: `512 B`, `12.3 MiB`.
pub(super) fn bytes_human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{bytes} B")
}

/// Seconds for people: `42.0s`, `3m12s`, `5h03m`, `2d04h`.
pub(super) fn seconds_human(seconds: f64) -> String {
    let whole = seconds as u64;
    match whole {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..86_400 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// Says which item a failure came from, for the failures whose message is
/// the user's own text (an `Err`, a panic, a held lock).
pub(super) fn in_context(failure: Failure, name: &str, doing: &str) -> Failure {
    let message = match failure.reason {
        Some(Reason::ReturnedErr) => format!("`{name}` returned an error: {}", failure.message),
        Some(Reason::Panicked) => format!("`{name}` panicked: {}", failure.message),
        Some(Reason::LockTimeout | Reason::NotSerialisable) => {
            format!("{doing} `{name}`: {}", failure.message)
        }
        _ => return failure,
    };
    Failure { message, ..failure }
}

pub(super) fn ambiguous<T: Named>(name: &str, items: &[&'static T]) -> Failure {
    // Counted functions that share a name are shown by qualified ones:
    // those are what to ask for.
    let shown: Vec<&str> = items.iter().map(|item| item.shown_name()).collect();
    if shown.iter().all(|shown| *shown != name) {
        let choices: Vec<String> = shown
            .iter()
            .zip(items)
            .map(|(shown, item)| format!("`{shown}` ({})", item.meta().location()))
            .collect();
        return Failure::new(
            Reason::Ambiguous,
            format!(
                "`{name}` names more than one function: {}; ask for one of those",
                choices.join(" and ")
            ),
        );
    }
    let places: Vec<String> = items.iter().map(|item| item.meta().location()).collect();
    Failure::new(
        Reason::Ambiguous,
        format!(
            "`{name}` is registered more than once, in {}; give one a distinct `name = \"...\"`",
            places.join(" and ")
        ),
    )
}

pub(super) fn unknown(
    what: &str,
    name: &str,
    commands: &[&Command],
    inspected: &[&'static Inspect],
) -> Failure {
    let names = commands
        .iter()
        .map(|c| c.meta.name)
        .chain(inspected.iter().map(|i| registry::shown_name(i)))
        .chain(Builtin::text_commands().map(Builtin::name));
    let hint = match registry::suggest(name, names) {
        Some(close) => format!("did you mean `{close}`? "),
        None => String::new(),
    };
    Failure::new(
        Reason::Unknown,
        format!("unknown {what} `{name}`; {hint}`list` shows what is registered"),
    )
}

/// The inspected item called `name`, or why there is none.
pub(super) fn inspected_item(name: &str) -> Result<&'static Inspect, Failure> {
    let inspected = registry::inspected();
    match registry::find(&inspected, name) {
        Lookup::Found(item) => Ok(item),
        Lookup::Ambiguous(items) => Err(ambiguous(name, &items)),
        Lookup::Missing => {
            let commands = registry::commands();
            if let Lookup::Found(_) | Lookup::Ambiguous(_) = registry::find(&commands, name) {
                return Err(Failure::new(
                    Reason::WrongKind,
                    format!("`{name}` is a command, not an inspected item; use `call {name}`"),
                ));
            }
            Err(unknown("inspected item", name, &commands, &inspected))
        }
    }
}
