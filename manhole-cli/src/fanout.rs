//! One command against many manholes: every live one on this machine
//! (`--all`), every live one on each of several hosts (`--ssh DEST --all`),
//! or one pid on several hosts (`--ssh A --ssh B PID`).
//!
//! Processes run concurrently, a bounded number at a time, each in its own
//! session under `--timeout`; hosts too, so that one slow host holds no
//! other. The answers are printed once all are in, in a fixed order (hosts
//! as given, then pids), and the exit status is the worst of them.
//!
//! Over ssh, each host is first asked `REMOTE_CLI list --json`, then each
//! live pid gets its own bridge (`REMOTE_CLI --stdio PID`): the session is
//! the same JSON-RPC as here, so nothing that the client does needs the
//! remote side to know about it. That costs one ssh connection per
//! process; a `ControlMaster` spares each one after the first its login
//! (see `docs/fleet.md`).

use crate::args::Scope;
use crate::connect;
use crate::error::Error;
use crate::list::{self, Live};
use crate::oneshot;
use crate::rpc::{Client, ErrorReply, Reply};
use crate::ssh::Ssh;
use crate::status;
use crate::style;
use crate::transport::Transport;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Local sessions open at once.
const PARALLEL_PROCESSES: usize = 8;
/// Hosts worked on at once.
const PARALLEL_HOSTS: usize = 8;
/// Sessions open at once on one host, each its own ssh connection: below
/// sshd's defaults of 10 connections still logging in (`MaxStartups`,
/// past which it drops some) and 10 sessions per shared connection
/// (`MaxSessions`, with `ControlMaster`).
const PARALLEL_PER_HOST: usize = 4;

/// What one process answered.
#[derive(Debug)]
pub enum Answer {
    /// What a text session prints, or its error.
    Text(Reply<String>),
    /// The JSON-RPC `result`, or the `error`.
    Json(Reply<Value>),
}

impl Answer {
    /// Asks `line` (words already quoted) once: through `text`, or with
    /// `json` as its structured method.
    fn ask(client: &mut Client, line: &str, json: bool) -> Result<Answer, Error> {
        Ok(if json {
            Answer::Json(oneshot::ask_json(client, line)?)
        } else {
            Answer::Text(client.text(line)?)
        })
    }

    /// The server's error, if it answered with one.
    fn error(&self) -> Option<&ErrorReply> {
        match self {
            Answer::Text(Err(reply)) | Answer::Json(Err(reply)) => Some(reply),
            Answer::Text(Ok(_)) | Answer::Json(Ok(_)) => None,
        }
    }
}

/// One process's (or one host's) part of the result.
#[derive(Debug)]
pub struct Item {
    /// The host, over ssh.
    pub host: Option<String>,
    /// The process; `None` for a host that could not be asked.
    pub pid: Option<i32>,
    /// Its executable, when it was listed.
    pub exe: Option<String>,
    /// Its answer, or why there is none.
    pub outcome: Outcome,
}

/// What became of one process.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered: a result or an error reply.
    Answered(Answer),
    /// No answer could be had.
    Unreached(Error),
}

impl Item {
    /// This item's part of the exit status.
    fn status(&self) -> u8 {
        match &self.outcome {
            Outcome::Unreached(_) => status::NO_CONNECTION,
            Outcome::Answered(answer) if answer.error().is_some() => status::ERROR_REPLY,
            Outcome::Answered(_) => status::SUCCESS,
        }
    }
}

/// The exit status for them all: the worst one, and success for none.
pub fn exit_status(items: &[Item]) -> u8 {
    items
        .iter()
        .map(Item::status)
        .max()
        .unwrap_or(status::SUCCESS)
}

/// Runs `words` on every live manhole of this machine.
pub fn local_all(words: &[String], json: bool, timeout: Duration) -> Vec<Item> {
    let line = manhole_wire::quote_line(words);
    let live = list::live(&list::discover_all());
    bounded(&live, PARALLEL_PROCESSES, |manhole: &Live| {
        let outcome =
            connect::to_listed(manhole.pid, &manhole.socket, timeout).and_then(|connection| {
                let mut client = Client::new(Transport::socket(connection)?, timeout);
                Answer::ask(&mut client, &line, json)
            });
        Item {
            host: None,
            pid: Some(manhole.pid),
            exe: Some(manhole.executable.clone()),
            outcome: outcome.map_or_else(Outcome::Unreached, Outcome::Answered),
        }
    })
}

/// Runs `words` on `scope` of every host in `hosts`, through ssh.
pub fn remote(
    ssh: &Ssh,
    hosts: &[String],
    scope: &Scope,
    words: &[String],
    json: bool,
) -> Vec<Item> {
    let line = manhole_wire::quote_line(words);
    bounded(hosts, PARALLEL_HOSTS, |host: &String| match scope {
        Scope::Pid(pid, signal) => vec![on_remote_pid(
            ssh,
            host,
            *pid,
            None,
            signal.as_deref(),
            &line,
            json,
        )],
        Scope::All => on_every_remote_manhole(ssh, host, &line, json),
    })
    .into_iter()
    .flatten()
    .collect()
}

fn on_every_remote_manhole(ssh: &Ssh, host: &str, line: &str, json: bool) -> Vec<Item> {
    let listed = ssh.list_json(host).and_then(|printed| {
        list::live_in_json(&printed).map_err(|reason| Error::BadRemoteList {
            command: format!("{} list --json", ssh.remote_cli()),
            reason,
        })
    });
    match listed {
        Ok(live) => bounded(&live, PARALLEL_PER_HOST, |manhole: &Live| {
            on_remote_pid(
                ssh,
                host,
                manhole.pid,
                Some(manhole.executable.clone()),
                None,
                line,
                json,
            )
        }),
        Err(err) => vec![Item {
            host: Some(host.to_owned()),
            pid: None,
            exe: None,
            outcome: Outcome::Unreached(err.on_host(host)),
        }],
    }
}

fn on_remote_pid(
    ssh: &Ssh,
    host: &str,
    pid: i32,
    exe: Option<String>,
    signal: Option<&str>,
    line: &str,
    json: bool,
) -> Item {
    let outcome = ssh.bridge(host, pid, signal).and_then(|bridge| {
        let mut client = Client::new(Transport::bridge(bridge, pid), ssh.timeout());
        Answer::ask(&mut client, line, json)
    });
    Item {
        host: Some(host.to_owned()),
        pid: Some(pid),
        exe,
        outcome: outcome.map_or_else(
            |err| Outcome::Unreached(err.on_host(host)),
            Outcome::Answered,
        ),
    }
}

/// `work` on each of `inputs`, at most `limit` at a time, each in a thread
/// of its own; the results in the order of the inputs.
fn bounded<T: Sync, R: Send>(inputs: &[T], limit: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(inputs.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..limit.min(inputs.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(input) = inputs.get(index) else {
                    break;
                };
                let result = work(input);
                results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|result| result.expect("every input was worked on"))
        .collect()
}

/// Which fields an item shows.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `host`: over ssh, with several hosts or with `--all`.
    pub host: bool,
    /// `exe`: with `--all`, where `list` said it.
    pub exe: bool,
}

/// Prints every item: with `json`, one array on stdout; otherwise, for
/// each process that answered, a header and its answer on stdout. Either
/// way, each process (or host) that could not be reached has one line on
/// stderr.
pub fn print(items: &[Item], json: bool, shape: Shape) {
    for item in items {
        if let Outcome::Unreached(err) = &item.outcome {
            eprintln!("{}", crate::escape::field(&unreached_line(item, err)));
        }
    }
    if json {
        let array: Vec<Value> = items.iter().map(|item| item_json(item, shape)).collect();
        let text = serde_json::to_string_pretty(&array).unwrap_or_else(|_| "[]".to_owned());
        let _ = writeln!(std::io::stdout().lock(), "{}", crate::escape::json(text));
        return;
    }
    let colour = style::colour_for(&std::io::stdout());
    let mut out = String::new();
    for item in items {
        match &item.outcome {
            Outcome::Answered(answer) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&header(item));
                match answer {
                    Answer::Text(Ok(text)) => out.push_str(&crate::escape::text(text)),
                    Answer::Json(Ok(value)) => {
                        out.push_str(&crate::escape::json(format!("{value}\n")));
                    }
                    Answer::Text(Err(reply)) | Answer::Json(Err(reply)) => {
                        out.push_str(&style::error_line(&reply.failure.one_line(), colour));
                    }
                }
            }
            Outcome::Unreached(_) => {}
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

/// `==> HOST: pid N (EXE) <==`, as `tail` heads each of many files.
fn header(item: &Item) -> String {
    let mut name = String::new();
    if let Some(host) = &item.host {
        name.push_str(&format!("{host}: "));
    }
    if let Some(pid) = item.pid {
        name.push_str(&format!("pid {pid}"));
    }
    if let Some(exe) = &item.exe {
        name.push_str(&format!(" ({})", crate::escape::field(exe)));
    }
    format!("==> {name} <==\n")
}

/// `manhole-cli: HOST: pid N: REASON`, one line.
fn unreached_line(item: &Item, err: &Error) -> String {
    let mut line = crate::error::FAILURE_PREFIX.to_owned();
    if let Some(host) = &item.host {
        line.push_str(&format!("{host}: "));
    }
    if let Some(pid) = item.pid {
        line.push_str(&format!("pid {pid}: "));
    }
    line.push_str(&without_host(err).to_string());
    line
}

/// The failure itself, without the host that the item names already.
fn without_host(err: &Error) -> &Error {
    match err {
        Error::OnHost { source, .. } => without_host(source),
        other => other,
    }
}

fn item_json(item: &Item, shape: Shape) -> Value {
    let mut object = Map::new();
    if shape.host {
        object.insert("host".to_owned(), json!(item.host));
    }
    object.insert("pid".to_owned(), json!(item.pid));
    if shape.exe {
        object.insert("exe".to_owned(), json!(item.exe));
    }
    let (key, value) = match &item.outcome {
        Outcome::Answered(Answer::Json(Ok(result))) => ("result", result.clone()),
        Outcome::Answered(Answer::Text(Ok(text))) => ("result", json!(text)),
        Outcome::Answered(Answer::Json(Err(reply)) | Answer::Text(Err(reply))) => {
            ("error", reply.object.clone())
        }
        // No server said it, so it has no JSON-RPC `code`: that tells a
        // process not reached from an error reply.
        Outcome::Unreached(err) => ("error", json!({"message": without_host(err).to_string()})),
    };
    object.insert(key.to_owned(), value);
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use manhole_wire::{Failure, Reason};

    fn item(pid: i32, outcome: Outcome) -> Item {
        Item {
            host: Some("db1".to_owned()),
            pid: Some(pid),
            exe: Some("/bin/app".to_owned()),
            outcome,
        }
    }

    fn answered(value: Value) -> Outcome {
        Outcome::Answered(Answer::Json(Ok(value)))
    }

    fn error_reply() -> Outcome {
        Outcome::Answered(Answer::Json(Err(ErrorReply::from(Failure::new(
            Reason::Unknown,
            "unknown command `x`",
        )))))
    }

    fn unreached() -> Outcome {
        Outcome::Unreached(Error::NoSuchProcess { pid: 9 }.on_host("db1"))
    }

    #[test]
    fn the_worst_outcome_is_the_exit_status() {
        assert_eq!(exit_status(&[]), status::SUCCESS);
        assert_eq!(exit_status(&[item(1, answered(json!(1)))]), status::SUCCESS);
        assert_eq!(
            exit_status(&[item(1, answered(json!(1))), item(2, error_reply())]),
            status::ERROR_REPLY
        );
        assert_eq!(
            exit_status(&[
                item(1, unreached()),
                item(2, error_reply()),
                item(3, answered(json!(1)))
            ]),
            status::NO_CONNECTION
        );
    }

    #[test]
    fn items_carry_what_their_shape_asks_for() {
        let all = Shape {
            host: true,
            exe: true,
        };
        assert_eq!(
            item_json(&item(1, answered(json!(42))), all),
            json!({"host": "db1", "pid": 1, "exe": "/bin/app", "result": 42})
        );
        let error = item_json(
            &item(2, error_reply()),
            Shape {
                host: false,
                exe: true,
            },
        );
        assert_eq!(error["error"]["code"], Reason::Unknown.code());
        assert!(error.get("host").is_none());
        assert_eq!(
            item_json(
                &item(9, unreached()),
                Shape {
                    host: true,
                    exe: false
                }
            ),
            json!({"host": "db1", "pid": 9, "error": {"message": "no process with pid 9; `manhole-cli list` shows the processes that have a manhole"}})
        );
    }

    #[test]
    fn headers_and_failures_name_host_and_pid() {
        assert_eq!(
            header(&item(7, answered(json!(1)))),
            "==> db1: pid 7 (/bin/app) <==\n"
        );
        let local = Item {
            host: None,
            pid: Some(7),
            exe: None,
            outcome: answered(json!(1)),
        };
        assert_eq!(header(&local), "==> pid 7 <==\n");
        let unreached_item = item(9, unreached());
        let Outcome::Unreached(err) = &unreached_item.outcome else {
            unreachable!()
        };
        assert!(unreached_line(&unreached_item, err)
            .starts_with("manhole-cli: db1: pid 9: no process with pid 9;"));
    }

    #[test]
    fn bounded_work_keeps_the_order_of_its_inputs() {
        let inputs: Vec<u64> = (0..20).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = bounded(&inputs, 3, |n| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20 - n));
            running.fetch_sub(1, Ordering::SeqCst);
            n * 2
        });
        assert_eq!(out, inputs.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
    }
}
