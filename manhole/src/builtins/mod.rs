//! The built-ins: what each request does, for both protocols. Each
//! built-in (or family) has its own file and produces an [`Answer`], which
//! carries its JSON result and its text rendering; this file is the
//! dispatch table from a parsed `Request` to them.
//!
//! **Layer:** above `os/`, `instrument/`, `capture/` and `profile/`, all of
//! which it may import; below `serve/`, which calls [`run`] once per
//! request and writes the answer.
//!
//! **Architecture invariant:** a built-in never writes to the client. It
//! returns an [`Answer`] or a `Failure` with its `data.reason`, and the
//! session decides how to write it. `answer` matches `Request`
//! exhaustively, so a new request cannot go unanswered.

mod answer;
mod call;
mod help;
mod history;
mod info;
mod items;
mod log;
mod mem;
mod panics;
mod profile;
mod runtime;
mod stacks;
mod stats;
mod tasks;
mod top;
mod watchdog;

pub(crate) use answer::{Answer, Asked, Streamed};
pub(crate) use items::get;
pub(crate) use log::{follow, Follow};
pub(crate) use stacks::{greeting, stacks_json, Shown};
pub(crate) use tasks::tasks_json;

use crate::instrument::registry;
use manhole_wire::{
    follow_text_only, parse_text, text_only, ArgValue, Builtin, Failure, LogRequest, Request,
};
use serde_json::{json, Value};

/// Runs one request. `Request::Quit` is the session's business, not ours.
pub(crate) fn run(request: Request, asked: Asked<'_>) -> Result<Answer, Failure> {
    registry::with_lock_timeout(asked.served.waits.lock, || answer(request, asked))
}

fn answer(request: Request, asked: Asked<'_>) -> Result<Answer, Failure> {
    match request {
        Request::Help(None) => Ok(help::help_all()),
        Request::Help(Some(name)) => help::help_one(&name),
        Request::List => Ok(help::list()),
        Request::Stacks {
            collapse,
            short,
            ref thread,
        } => stacks::stacks(
            asked,
            Shown {
                collapse,
                short,
                thread: thread.as_deref(),
            },
        ),
        Request::Threads => Ok(stacks::threads()),
        Request::Panics => Ok(panics::panics()),
        Request::Watchdog(setting) => Ok(watchdog::watchdog(setting)),
        Request::Stalls { short } => Ok(watchdog::stalls(short)),
        Request::History {
            since,
            every,
            ref names,
        } => history::history(since, every, names),
        Request::Greeting { collapse } => greeting(asked, collapse),
        Request::Info => Ok(info::info(asked.served)),
        Request::Mem {
            heap_profile: false,
        } => Ok(mem::memory()),
        Request::Mem { heap_profile: true } => mem::heap_profile(),
        Request::Tasks { older_than } => Ok(tasks::tasks(older_than, asked.served.waits.slow_poll)),
        Request::Runtime => runtime::answer(&asked.served.runtime),
        Request::Profile(profile) => profile::run_profile(&profile, asked),
        Request::Top { interval } => Ok(top::answer(interval)),
        Request::Get(name) if name.is_empty() => Ok(help::inspectable()),
        Request::Get(name) => items::read(answer::inspected_item(&name)?),
        Request::Set { name, value } => {
            let what = match &value {
                Value::String(text) => format!("{name} = {text}"),
                other => format!("{name} = {other}"),
            };
            let answer = items::set(&name, value);
            crate::report::history::client_acted(
                "set",
                what,
                answer
                    .as_ref()
                    .map(|_| ())
                    .map_err(|failure| failure.message.clone()),
            );
            answer
        }
        Request::Stats { sort, window } => Ok(stats::stats(sort, window)),
        Request::StatsReset(name) => stats::stats_reset(name.as_deref()),
        Request::Log(LogRequest::Follow) => Err(follow_text_only()),
        Request::Log(request) => log::log(request),
        Request::Watch { .. } => Err(text_only(Builtin::Watch)),
        Request::Call { name, args, bare } => {
            let answer = call::call(&name, &args, bare, asked);
            crate::report::history::client_acted(
                "call",
                format!(
                    "{name}({})",
                    args.iter()
                        .map(|arg| match arg {
                            // Plain unless quoting is needed to tell
                            // the arguments apart.
                            ArgValue::Text(text)
                                if !text.is_empty()
                                    && !text.contains([' ', ',', '"', '(', ')']) =>
                            {
                                text.clone()
                            }
                            ArgValue::Text(text) => format!("{text:?}"),
                            ArgValue::Null => "null".to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                answer
                    .as_ref()
                    .map(|_| ())
                    .map_err(|failure| failure.message.clone()),
            );
            answer
        }
        Request::Text(line) => text_line(&line, asked),
        Request::Quit => Ok(Answer {
            json: Value::Null,
            text: String::new(),
        }),
    }
}

/// A text line sent over JSON: answered with the text session's rendering.
fn text_line(line: &str, asked: Asked<'_>) -> Result<Answer, Failure> {
    let text = match parse_text(line)? {
        None => String::new(),
        Some(Request::Quit) => String::new(),
        Some(request) => answer(request, asked)?.text,
    };
    Ok(Answer {
        json: json!({ "text": text }),
        text,
    })
}
