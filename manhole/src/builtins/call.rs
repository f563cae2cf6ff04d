//! `call`: a registered command, with its arguments checked against its
//! signature; an async command runs on the program's runtime.

use super::answer::{ambiguous, in_context, unknown, Answer, Asked};
use super::items::read;
use crate::instrument::async_commands::Waiting;
use crate::instrument::registry::{self, Args, Lookup};
use manhole_wire::{ArgValue, Failure, Reason};
use serde_json::json;

pub(super) fn call(
    name: &str,
    args: &[ArgValue],
    bare: bool,
    asked: Asked<'_>,
) -> Result<Answer, Failure> {
    let commands = registry::commands();
    let command = match registry::find(&commands, name) {
        Lookup::Found(command) => command,
        Lookup::Ambiguous(commands) => return Err(ambiguous(name, &commands)),
        Lookup::Missing => {
            let inspected = registry::inspected();
            if let Lookup::Found(item) = registry::find(&inspected, name) {
                if bare && args.is_empty() {
                    return read(item);
                }
                return Err(Failure::new(
                    Reason::WrongKind,
                    format!("`{name}` is an inspected item, not a command; use `get {name}`"),
                ));
            }
            return Err(unknown("command", name, &commands, &inspected));
        }
    };
    let (required, total) = (command.required_count(), command.params.len());
    if args.len() < required || args.len() > total {
        let expected = match (required, total) {
            (0, 0) => "no arguments".to_owned(),
            (r, t) if r == t => format!("{r} argument{}", if r == 1 { "" } else { "s" }),
            (r, t) => format!("{r} to {t} arguments"),
        };
        return Err(Failure::new(
            Reason::BadParams,
            format!(
                "`{}` takes {expected}, got {}; usage: {}",
                name,
                args.len(),
                command.usage()
            ),
        )
        .with_details(json!({"expected": command.signature(), "got": args.len()})));
    }
    let mut args = Args {
        command,
        values: args,
        waiting: Waiting {
            runtime: &asked.served.runtime,
            timeout: asked.served.waits.command,
            client_gone: asked.client_gone,
        },
    };
    (command.invoke)(&mut args)
        .map(Answer::value)
        .map_err(|failure| in_context(failure, name, "calling"))
}
