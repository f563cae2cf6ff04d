//! `manhole-cli`: connect to a running process's manhole.
//!
//! - `manhole-cli PID` (or a socket PATH): an interactive session.
//! - `manhole-cli PID COMMAND [ARG...]`: one command, for scripts; exit
//!   status 0 on success, 1 on an error reply, 2 when no connection could
//!   be made.
//! - `manhole-cli list` (or `ps`): every manhole on the machine.
//!
//! It speaks JSON-RPC only; what a person sees is the server's own text
//! rendering, through the `greeting` and `text` methods (see PROTOCOL.md).

#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod connect;
mod discover;
mod error;
mod interactive;
mod list;
mod oneshot;
mod procfs;
mod rpc;
mod sockdiag;
mod style;
mod watch;

use args::{Cli, Endpoint, Mode};
use clap::Parser;
use error::Error;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status when the server answered with an error.
const EXIT_ERROR_REPLY: u8 = 1;
/// Exit status when no answer could be had: no process, no socket, refused,
/// timed out.
const EXIT_NO_CONNECTION: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("manhole-cli: {err}");
            ExitCode::from(EXIT_NO_CONNECTION)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, Error> {
    match cli.mode() {
        Mode::List { clean } => {
            list::run(clean, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Interactive(endpoint) => {
            let mut client = open(&endpoint, cli.timeout)?;
            interactive::run(&mut client, || open(&endpoint, cli.timeout))?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::OneShot(endpoint, words) => {
            let mut client = open(&endpoint, cli.timeout)?;
            Ok(match oneshot::run(&mut client, &words, cli.json)? {
                oneshot::Outcome::Success => ExitCode::SUCCESS,
                oneshot::Outcome::ErrorReply => ExitCode::from(EXIT_ERROR_REPLY),
            })
        }
    }
}

fn open(endpoint: &Endpoint, timeout: Duration) -> Result<rpc::Client, Error> {
    let connection = match endpoint {
        Endpoint::Pid(pid, Some(signal)) => connect::to_pid_after_signal(*pid, *signal, timeout)?,
        Endpoint::Pid(pid, None) => connect::to_pid(*pid, timeout)?,
        Endpoint::Path(path) => connect::to_path(path, timeout)?,
    };
    rpc::Client::new(connection, timeout)
}
