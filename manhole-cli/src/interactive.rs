//! The interactive session: the greeting, then a prompt with line editing,
//! history and completion, each line answered through the `text` method.
//!
//! Names for completion are the text commands of the shared method table,
//! and every command and inspected item, fetched once, at connect, with
//! `help`. The prompt is `manhole PID> `, so that several sessions side by
//! side are told apart.
//! `watch` is run by the client (see [`crate::watch`]), and a session the
//! server ended while the prompt waited (its `idle_timeout`) is opened
//! again before the next line is sent.

use crate::error::Error;
use crate::interrupt::Cancellable;
use crate::rpc::Client;
use crate::style;
use crate::watch::{self, Watch};
use manhole_wire::{
    Builtin, ProfileFormat, Reason, Request, COLLAPSE_FLAG, FORMAT_FLAG, PROFILE_FLAGS, SHORT_FLAG,
};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use serde_json::Value;
use std::io::IsTerminal as _;
use std::io::Write;
use std::path::PathBuf;

/// Runs the session until Ctrl-D, `quit` or `exit`. `host` is the ssh
/// destination of a remote process, named in the prompt. `reconnect` opens
/// a new session when the server has ended this one meanwhile (its
/// `idle_timeout`), so that the next line still gets its answer.
pub fn run(
    client: &mut Client,
    host: Option<&str>,
    reconnect: impl FnMut() -> Result<Client, Error>,
) -> Result<(), Error> {
    client.show_countdown(std::io::stderr().is_terminal());
    // Collapsed, as a text session's greeting is; a server from before
    // `collapse` refuses the param, and is asked again without it.
    let mut greeting = client.ask(&Request::Greeting { collapse: true })?;
    if matches!(&greeting, Err(reply) if reply.failure.is(Reason::BadParams)) {
        greeting = client.ask(&Request::Greeting { collapse: false })?;
    }
    let greeting = match greeting {
        Ok(result) => result,
        Err(reply) => {
            return Err(client.bad_reply(format!(
                "`{}` failed: {}",
                Builtin::Greeting.name(),
                reply.failure.one_line()
            )))
        }
    };
    let pid = greeting.get("pid").and_then(Value::as_u64);
    write_stdout(&crate::escape::text(&client.text_field(&greeting)?));
    let names = match client.ask(&Request::Help(None))? {
        Ok(help) => Names::from_help(&help),
        // Completion is a convenience: without the server's names the
        // built-ins still complete, and the session works.
        Err(_) => Names::from_help(&Value::Null),
    };

    let config = Config::builder()
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<Names, FileHistory> = Editor::with_config(config)
        .map_err(|err| Error::io("set up the terminal", std::io::Error::other(err)))?;
    editor.set_helper(Some(names));
    let history = history_path();
    if let Some(path) = &history {
        match editor.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => warn(&format!(
                "could not read history from {}: {err}",
                path.display()
            )),
        }
    }

    let prompt = prompt(host, pid);
    let result = prompt_loop(client, reconnect, &mut editor, &prompt);
    if let Some(path) = &history {
        if let Err(err) = editor.save_history(path) {
            warn(&format!(
                "could not save history to {}: {err}",
                path.display()
            ));
        }
    }
    result
}

fn prompt_loop(
    client: &mut Client,
    mut reconnect: impl FnMut() -> Result<Client, Error>,
    editor: &mut Editor<Names, FileHistory>,
    prompt: &str,
) -> Result<(), Error> {
    // Whether the last thing at the prompt was a Ctrl-C: a second one in a
    // row ends the session.
    let mut interrupted = false;
    loop {
        let line = match editor.readline(prompt) {
            Ok(line) => {
                interrupted = false;
                line
            }
            // Ctrl-C drops the line being typed; twice in a row, it leaves.
            Err(ReadlineError::Interrupted) if interrupted => return Ok(()),
            Err(ReadlineError::Interrupted) => {
                interrupted = true;
                eprintln!("(Ctrl-C again, or Ctrl-D, to leave)");
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(err) => return Err(Error::io("read a line", std::io::Error::other(err))),
        };
        if line.trim().is_empty() {
            continue;
        }
        // A completion leaves a space after the word; history need not.
        let _ = editor.add_history_entry(line.trim_end());
        let request = manhole_wire::parse_text(&line);
        if matches!(request, Ok(Some(Request::Quit))) {
            return Ok(());
        }
        if let Some(said) = client.ended_by_server() {
            *client = reopen(&mut reconnect)?;
            client.show_countdown(std::io::stderr().is_terminal());
            let why = if said.is_empty() {
                String::new()
            } else {
                format!(" ({said})")
            };
            eprintln!("manhole-cli: the server had ended the session{why}; reconnected");
        }
        if let Some(watch) = Watch::parse(&line) {
            match watch::run(client, &line, &watch, true)? {
                watch::Watching::Answered(text) => write_stdout(&crate::escape::text(&text)),
                watch::Watching::Refused(reply) => write_stdout(&style::error_line(
                    &reply.failure.one_line(),
                    style::colour_for(&std::io::stdout()),
                )),
                watch::Watching::Ran(_) => {}
            }
            continue;
        }
        let cancellable = Cancellable::new(client.reply_fd());
        let answer = client.text(&line);
        let cancelled = cancellable.cancelled();
        drop(cancellable);
        if cancelled {
            // The connection was cut off mid-answer; the server gives the
            // command up when it sees its client gone.
            drop(answer);
            *client = reopen(&mut reconnect)?;
            client.show_countdown(std::io::stderr().is_terminal());
            eprintln!("^C: cancelled");
            continue;
        }
        match answer {
            Ok(Ok(text)) => write_stdout(&crate::escape::text(&text)),
            Ok(Err(reply)) => write_stdout(&style::error_line(
                &reply.failure.one_line(),
                style::colour_for(&std::io::stdout()),
            )),
            // A slow answer is skipped when it comes; the session goes on.
            Err(err @ Error::Timeout { .. }) => eprintln!("manhole-cli: {err}"),
            Err(err) => return Err(err),
        }
    }
}

/// A new session, made a JSON one at once: a server that heard nothing
/// from a new client for a moment would greet it as a person at `nc`,
/// and that greeting would read as the server's last word before the
/// next command.
fn reopen(reconnect: &mut impl FnMut() -> Result<Client, Error>) -> Result<Client, Error> {
    let mut client = reconnect()?;
    // Any reply will do, an error one too: the session is JSON now.
    let _reply = client.ask(&Request::Help(None))?;
    Ok(client)
}

/// `manhole PID> `, or `manhole HOST:PID> ` for a process on another host.
fn prompt(host: Option<&str>, pid: Option<u64>) -> String {
    match (host, pid) {
        (Some(host), Some(pid)) => format!("manhole {host}:{pid}> "),
        (Some(host), None) => format!("manhole {host}> "),
        (None, Some(pid)) => format!("manhole {pid}> "),
        (None, None) => "manhole> ".to_owned(),
    }
}

fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn warn(message: &str) {
    eprintln!("manhole-cli: warning: {message}");
}

/// `$XDG_STATE_HOME/manhole/history`, else
/// `~/.local/state/manhole/history`; the directory is created (private). A
/// failure is a warning, and the session runs without saved history.
fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_absolute())
                .map(|home| home.join(".local/state"))
        });
    let Some(dir) = state.map(|state| state.join("manhole")) else {
        warn("neither XDG_STATE_HOME nor HOME is set, so history is not kept");
        return None;
    };
    let created = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
    };
    match created {
        Ok(()) => Some(dir.join("history")),
        Err(err) => {
            warn(&format!(
                "could not create {}: {err}; history is not kept",
                dir.display()
            ));
            None
        }
    }
}

/// The names to complete, and the completer itself.
#[derive(Debug)]
pub struct Names {
    builtins: Vec<String>,
    commands: Vec<String>,
    inspected: Vec<String>,
    /// The inspected items that `set` may replace.
    writable: Vec<String>,
    /// The functions under `inspect(calls)`, which `stats reset` takes.
    counted: Vec<String>,
    /// The words that follow a built-in's name (`stats reset`, `log set`).
    subwords: Vec<String>,
}

impl Names {
    /// Every text command of the method table, by its name and its
    /// aliases; and from the `help` method's result, `commands` and
    /// `inspected`, each an array of objects with a `name`.
    pub fn from_help(help: &Value) -> Names {
        let builtins = Builtin::text_commands()
            .flat_map(|builtin| {
                let spec = builtin.spec();
                std::iter::once(spec.name).chain(spec.aliases.iter().copied())
            })
            .map(str::to_owned)
            .collect();
        let items = |key: &str| -> Vec<&Value> {
            help.get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().collect())
                .unwrap_or_default()
        };
        let name = |item: &&Value| item.get("name")?.as_str().map(str::to_owned);
        Names {
            builtins,
            commands: items("commands").iter().filter_map(name).collect(),
            inspected: items("inspected").iter().filter_map(name).collect(),
            writable: items("inspected")
                .iter()
                .filter(|item| item.get("writable") == Some(&Value::Bool(true)))
                .filter_map(name)
                .collect(),
            counted: items("inspected")
                .iter()
                .filter(|item| item.get("kind") == Some(&Value::from("calls")))
                .filter_map(name)
                .collect(),
            subwords: [
                "reset",
                "--sort",
                "--window",
                "set",
                "tail",
                "follow",
                COLLAPSE_FLAG,
                SHORT_FLAG,
            ]
            .into_iter()
            .chain(PROFILE_FLAGS)
            .chain(ProfileFormat::ALL.map(ProfileFormat::name))
            .map(str::to_owned)
            .collect(),
        }
    }

    /// `wanted`, as owned by these names, for the candidate pool.
    fn words(&self, wanted: &[&str]) -> Vec<&String> {
        self.subwords
            .iter()
            .filter(|word| wanted.contains(&word.as_str()))
            .collect()
    }

    /// The candidates for the word that starts at `start` and is `prefix`
    /// so far, after the words `before`.
    pub fn candidates(&self, before: &[&str], prefix: &str) -> Vec<String> {
        let every_name = || {
            self.builtins
                .iter()
                .chain(&self.commands)
                .chain(&self.inspected)
                .collect()
        };
        let pool: Vec<&String> = match before {
            [] => every_name(),
            [first] => match Builtin::from_word(first).filter(|builtin| builtin.over_text()) {
                Some(Builtin::Call) => self.commands.iter().collect(),
                Some(Builtin::Help) => every_name(),
                Some(Builtin::Get | Builtin::Watch) => self.inspected.iter().collect(),
                Some(Builtin::Set) => self.writable.iter().collect(),
                Some(Builtin::Stats) => self.words(&["reset", "--sort", "--window"]),
                Some(Builtin::Log) => self.words(&["set", "reset", "tail", "follow"]),
                Some(Builtin::Stacks) => self.words(&[COLLAPSE_FLAG, SHORT_FLAG]),
                Some(Builtin::Profile) => self.words(&PROFILE_FLAGS),
                _ => Vec::new(),
            },
            [first, .., last] if Builtin::from_word(first) == Some(Builtin::Profile) => {
                if *last == FORMAT_FLAG {
                    self.words(&ProfileFormat::ALL.map(ProfileFormat::name))
                } else {
                    self.words(&PROFILE_FLAGS)
                }
            }
            [first, "reset"] if Builtin::from_word(first) == Some(Builtin::Stats) => {
                self.counted.iter().collect()
            }
            _ => Vec::new(),
        };
        let mut found: Vec<String> = pool
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

impl Completer for Names {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(char::is_whitespace).map_or(0, |space| {
            space + head[space..].chars().next().map_or(1, char::len_utf8)
        });
        let before: Vec<&str> = head[..start].split_whitespace().collect();
        let found = self.candidates(&before, &head[start..]);
        // A single match is completed with a space after it, as a shell does.
        let unique = found.len() == 1;
        Ok((
            start,
            found
                .into_iter()
                .map(|name| Pair {
                    replacement: if unique {
                        format!("{name} ")
                    } else {
                        name.clone()
                    },
                    display: name,
                })
                .collect(),
        ))
    }
}

impl Hinter for Names {
    type Hint = String;
}

impl Highlighter for Names {}

impl Validator for Names {}

impl Helper for Names {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        Names::from_help(&json!({
            "commands": [{"name": "reload_config"}, {"name": "add"}, {"name": "get_ready"}],
            "inspected": [{"name": "REQUESTS"}, {"name": "queue_depth"}, {"name": "PAUSED", "writable": true}, {"name": "handle", "kind": "calls"}],
        }))
    }

    #[test]
    fn the_prompt_names_the_host_and_the_pid() {
        assert_eq!(prompt(None, Some(7)), "manhole 7> ");
        assert_eq!(prompt(Some("db1"), Some(7)), "manhole db1:7> ");
        assert_eq!(prompt(None, None), "manhole> ");
    }

    #[test]
    fn the_first_word_completes_with_every_name() {
        let names = names();
        assert_eq!(names.candidates(&[], "re"), ["reload_config"]);
        assert_eq!(names.candidates(&[], "ge"), ["get", "get_ready"]);
        assert_eq!(names.candidates(&[], "q"), ["queue_depth", "quit"]);
        assert_eq!(names.candidates(&[], "e"), ["exit"]);
    }

    #[test]
    fn later_words_complete_by_the_first() {
        let names = names();
        assert_eq!(
            names.candidates(&["call"], ""),
            ["add", "get_ready", "reload_config"]
        );
        assert_eq!(
            names.candidates(&["get"], ""),
            ["PAUSED", "REQUESTS", "handle", "queue_depth"]
        );
        assert_eq!(names.candidates(&["watch"], "R"), ["REQUESTS"]);
        assert_eq!(names.candidates(&["set"], ""), ["PAUSED"]);
        assert_eq!(names.candidates(&["help"], "q"), ["queue_depth", "quit"]);
        assert!(names.candidates(&["add"], "").is_empty());
        assert_eq!(
            names.candidates(&["log"], ""),
            ["follow", "reset", "set", "tail"]
        );
        assert_eq!(names.candidates(&["stats"], "--"), ["--sort", "--window"]);
        assert_eq!(
            names.candidates(&["stacks"], ""),
            [COLLAPSE_FLAG, SHORT_FLAG]
        );
        assert_eq!(names.candidates(&["profile", "5"], "--p"), ["--per-thread"]);
        assert_eq!(names.candidates(&["profile", "--format"], "f"), ["folded"]);
        assert_eq!(names.candidates(&["stats", "reset"], ""), ["handle"]);
        assert!(names.candidates(&["call", "add"], "").is_empty());
    }

    #[test]
    fn every_text_command_of_the_table_completes_without_the_server() {
        let names = Names::from_help(&Value::Null);
        let first_words = names.candidates(&[], "");
        for builtin in Builtin::ALL {
            let spec = builtin.spec();
            for word in std::iter::once(&spec.name).chain(spec.aliases) {
                // Methods that only JSON sessions take are not typed at a
                // prompt.
                assert_eq!(
                    first_words.iter().any(|name| name == word),
                    builtin.over_text(),
                    "{word} in {first_words:?}"
                );
            }
        }
        assert!(first_words.iter().any(|name| name == "exit"));
        assert!(names.candidates(&["get"], "").is_empty());
    }
}
