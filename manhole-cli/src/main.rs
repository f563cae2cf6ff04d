//! `manhole-cli`: connect to a running process's manhole.
//!
//! - `manhole-cli PID` (or a socket PATH): an interactive session.
//! - `manhole-cli PID COMMAND [ARG...]`: one command, for scripts; exit
//!   status 0 on success, 1 on an error reply, 2 when no connection could
//!   be made.
//! - `manhole-cli --all COMMAND [ARG...]`: the command on every live
//!   manhole, concurrently; the worst exit status wins.
//! - `manhole-cli --ssh DEST ...`: any of these on other hosts, through
//!   ssh and a remote `manhole-cli --stdio PID`.
//! - `manhole-cli --stdio PID`: stdin and stdout joined to the socket.
//! - `manhole-cli list` (or `ps`): every manhole on the machine.
//!
//! It speaks JSON-RPC only; what a person sees is the server's own text
//! rendering, through the `greeting` and `text` methods (see PROTOCOL.md).

#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod bridge;
mod connect;
mod dash;
mod discover;
mod error;
mod escape;
mod fanout;
mod interactive;
mod interrupt;
mod list;
mod oneshot;
mod output;
mod peer;
mod pipe;
mod procfs;
mod rpc;
mod sockdiag;
mod ssh;
mod status;
mod style;
mod symbolize;
mod transport;
mod userns;
mod watch;

use args::{Cli, Endpoint, Fanout, Local, Mode, Scope};
use clap::Parser;
use error::{Error, FAILURE_PREFIX};
use std::process::ExitCode;
use std::time::Duration;
use transport::Transport;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{FAILURE_PREFIX}{}", escape::text(&err.to_string()));
            ExitCode::from(status::NO_CONNECTION)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, Error> {
    if let Some(bytes) = cli.max_reply {
        rpc::limit_replies(bytes);
    }
    match cli.mode() {
        Mode::List { clean } => {
            list::run(clean, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Symbolize { report, exe } => {
            let (symbolised, warnings) =
                symbolize::run(&report, exe.as_deref()).map_err(Error::Symbolize)?;
            for warning in warnings {
                eprintln!("{FAILURE_PREFIX}warning: {}", escape::field(&warning));
            }
            print!("{}", escape::text(&symbolised));
            Ok(ExitCode::SUCCESS)
        }
        Mode::Interactive(endpoint) => on_host_of(&endpoint, || {
            let mut client = open(&endpoint, cli.timeout)?;
            interactive::run(&mut client, endpoint.host(), || {
                open(&endpoint, cli.timeout)
            })?;
            Ok(ExitCode::SUCCESS)
        }),
        Mode::OneShot(endpoint, words)
            if words.first().map(String::as_str) == Some(dash::DASH_COMMAND) =>
        {
            on_host_of(&endpoint, || {
                let interval = match dash::interval_of(&words[1..]) {
                    Ok(interval) => interval,
                    Err(usage) => {
                        eprintln!("{FAILURE_PREFIX}{usage}");
                        return Ok(ExitCode::from(status::NO_CONNECTION));
                    }
                };
                let client = open(&endpoint, cli.timeout.max(interval * 3))?;
                let (who, pid) = match &endpoint {
                    Endpoint::Remote(remote) => (format!("{}:{}", remote.host, remote.pid), None),
                    Endpoint::Local(Local::Pid(pid, _)) => (format!("pid {pid}"), Some(*pid)),
                    Endpoint::Local(Local::Path(path)) => (path.display().to_string(), None),
                };
                let again = endpoint.clone();
                let timeout = cli.timeout.max(interval * 3);
                dash::run(client, who, pid, interval, move || open(&again, timeout))?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Mode::OneShot(endpoint, words) => on_host_of(&endpoint, || {
            let mut client = open(&endpoint, cli.timeout)?;
            Ok(match oneshot::run(&mut client, &words, cli.json)? {
                oneshot::Outcome::Success => ExitCode::SUCCESS,
                oneshot::Outcome::ErrorReply => ExitCode::from(status::ERROR_REPLY),
            })
        }),
        Mode::Bridge(local) => {
            bridge::run(|| connect_locally(&local, cli.timeout), cli.timeout)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Fanout(fanout) => Ok(ExitCode::from(fan_out(&fanout, cli)?)),
    }
}

/// Runs `work`; a failure on another host is named with that host.
fn on_host_of(
    endpoint: &Endpoint,
    work: impl FnOnce() -> Result<ExitCode, Error>,
) -> Result<ExitCode, Error> {
    work().map_err(|err| match endpoint.host() {
        Some(host) => err.on_host(host),
        None => err,
    })
}

/// Runs the command on every process of the fan-out and prints the lot;
/// returns the exit status.
fn fan_out(fanout: &Fanout, cli: &Cli) -> Result<u8, Error> {
    let items = if fanout.hosts.is_empty() {
        fanout::local_all(&fanout.words, cli.json, cli.timeout)
    } else {
        let ssh = ssh::Ssh::from_env(&fanout.remote_cli, cli.timeout)?;
        fanout::remote(&ssh, &fanout.hosts, &fanout.scope, &fanout.words, cli.json)
    };
    let all = matches!(fanout.scope, Scope::All);
    if items.is_empty() && !cli.json {
        eprintln!("{FAILURE_PREFIX}no live manhole found (only your own processes are listed, unless you are root)");
    }
    let shape = fanout::Shape {
        host: !fanout.hosts.is_empty() && (all || fanout.hosts.len() > 1),
        exe: all,
    };
    fanout::print(&items, cli.json, shape);
    Ok(fanout::exit_status(&items))
}

/// A JSON-RPC session with `endpoint`.
fn open(endpoint: &Endpoint, timeout: Duration) -> Result<rpc::Client, Error> {
    let transport = match endpoint {
        Endpoint::Remote(remote) => {
            let ssh = ssh::Ssh::from_env(&remote.remote_cli, timeout)?;
            let bridge = ssh.bridge(&remote.host, remote.pid, remote.signal.as_deref())?;
            Transport::bridge(bridge, remote.pid)
        }
        Endpoint::Local(local) => Transport::socket(connect_locally(local, timeout)?)?,
    };
    Ok(rpc::Client::new(transport, timeout))
}

/// A checked, connected socket on this machine.
fn connect_locally(local: &Local, timeout: Duration) -> Result<connect::Connection, Error> {
    match local {
        Local::Pid(pid, Some(signal)) => connect::to_pid_after_signal(*pid, *signal, timeout),
        Local::Pid(pid, None) => connect::to_pid(*pid, timeout),
        Local::Path(path) => connect::to_path(path, timeout),
    }
}
