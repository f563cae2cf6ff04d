//! `help` and `list`: the built-ins, commands and inspected items, with
//! their signatures, summaries and docs.

use super::answer::{table, unknown, Answer};
use crate::instrument::registry::{self, Command, Inspect, InspectKind};
use manhole_wire::{Builtin, Failure};
use serde_json::{json, Value};
use std::fmt::Write as _;

pub(super) fn command_json(command: &Command) -> Value {
    json!({
        "name": command.meta.name,
        "signature": command.signature(),
        "usage": command.usage(),
        "params": command.params.iter().map(|param| json!({
            "name": param.name,
            "type": param.ty,
            "optional": param.optional,
        })).collect::<Vec<_>>(),
        "returns": command.returns,
        "doc": command.meta.doc,
        "module": command.meta.module,
        "file": command.meta.file,
        "line": command.meta.line,
    })
}

pub(super) fn inspect_json(item: &'static Inspect) -> Value {
    json!({
        "name": registry::shown_name(item),
        "kind": item.kind,
        "type": item.ty,
        "signature": item.signature(),
        "writable": item.write.is_some(),
        "doc": item.meta.doc,
        "module": item.meta.module,
        "file": item.meta.file,
        "line": item.meta.line,
    })
}

pub(super) fn builtin_json(builtin: Builtin) -> Value {
    let spec = builtin.spec();
    json!({"name": spec.name, "usage": spec.usage, "summary": spec.summary})
}

pub(super) fn list() -> Answer {
    let commands = registry::commands();
    let inspected = registry::inspected();
    let mut text = String::new();
    let command_rows: Vec<_> = commands
        .iter()
        .map(|c| (c.signature(), c.meta.summary()))
        .collect();
    text.push_str("commands (call NAME [ARG...]):\n");
    text.push_str(&if command_rows.is_empty() {
        "  (none registered)\n".to_owned()
    } else {
        table(&command_rows)
    });
    text.push_str(&inspected_table(&inspected));
    Answer {
        json: json!({
            "commands": commands.iter().map(|c| command_json(c)).collect::<Vec<_>>(),
            "inspected": inspected.iter().map(|i| inspect_json(i)).collect::<Vec<_>>(),
        }),
        text,
    }
}

/// `get` with no name: what there is to get, as `list` shows it.
pub(super) fn inspectable() -> Answer {
    let inspected = registry::inspected();
    Answer {
        json: json!({
            "inspected": inspected.iter().map(|i| inspect_json(i)).collect::<Vec<_>>(),
        }),
        text: inspected_table(&inspected),
    }
}

/// The inspected items' part of `list`.
fn inspected_table(inspected: &[&Inspect]) -> String {
    let rows: Vec<_> = inspected
        .iter()
        .map(|i| {
            let mark = match (i.kind, i.write.is_some()) {
                (_, true) => "(writable) ",
                (InspectKind::Calls, _) => "(calls) ",
                _ => "",
            };
            (i.signature(), format!("{mark}{}", i.meta.summary()))
        })
        .collect();
    let mut text = String::from("inspected (get NAME):\n");
    text.push_str(&if rows.is_empty() {
        "  (none registered)\n".to_owned()
    } else {
        table(&rows)
    });
    text
}

pub(super) fn help_all() -> Answer {
    let builtin_rows: Vec<_> = Builtin::text_commands()
        .map(|builtin| {
            let spec = builtin.spec();
            (spec.usage.to_owned(), spec.summary.to_owned())
        })
        .collect();
    let mut text = String::from("built-in commands:\n");
    text.push_str(&table(&builtin_rows));
    text.push_str(&list().text);
    text.push_str("`help NAME` shows one command's full doc.\n");
    Answer {
        json: json!({
            "builtins": Builtin::text_commands().map(builtin_json).collect::<Vec<_>>(),
            "commands": registry::commands().iter().map(|c| command_json(c)).collect::<Vec<_>>(),
            "inspected": registry::inspected().iter().map(|i| inspect_json(i)).collect::<Vec<_>>(),
        }),
        text,
    }
}

pub(super) fn help_one(name: &str) -> Result<Answer, Failure> {
    let commands = registry::commands();
    let inspected = registry::inspected();
    let mut text = String::new();
    let mut json = Vec::new();
    if let Some(builtin) = Builtin::from_word(name).filter(|builtin| builtin.over_text()) {
        let spec = builtin.spec();
        let _ = writeln!(text, "{} (built-in)\n    {}", spec.usage, spec.summary);
        json.push(builtin_json(builtin));
    }
    for command in commands.iter().filter(|c| c.meta.name == name) {
        let _ = writeln!(
            text,
            "{}\nusage: {}\ndefined in {}",
            command.signature(),
            command.usage(),
            command.meta.location()
        );
        if !command.meta.doc.is_empty() {
            let _ = writeln!(text, "\n{}", command.meta.doc);
        }
        json.push(command_json(command));
    }
    for &item in inspected
        .iter()
        .filter(|i| i.meta.name == name || registry::shown_name(i) == name)
    {
        let shown = registry::shown_name(item);
        let usage = match (item.kind, item.write.is_some()) {
            (_, true) => format!("get {shown}, set {shown} VALUE"),
            (InspectKind::Calls, _) => format!("get {shown} (its calls), stats"),
            _ => format!("get {shown}"),
        };
        let _ = writeln!(
            text,
            "{}\nusage: {usage}\ndefined in {}",
            item.signature(),
            item.meta.location()
        );
        if !item.meta.doc.is_empty() {
            let _ = writeln!(text, "\n{}", item.meta.doc);
        }
        json.push(inspect_json(item));
    }
    if json.is_empty() {
        return Err(unknown("name", name, &commands, &inspected));
    }
    Ok(Answer {
        json: if json.len() == 1 {
            json.remove(0)
        } else {
            Value::Array(json)
        },
        text,
    })
}
