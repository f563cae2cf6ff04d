//! The command line: what to connect to, and what to do there.
//!
//! The first positional word chooses the mode. `list` (or `ps`) lists every
//! manhole; a number is a pid; anything else is a socket path (a socket
//! file literally named `list` is reached as `./list`). Words after a pid or
//! path are one command to run, as a script would; without them the
//! session is interactive.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

const USAGE: &str = "\
manhole-cli [OPTIONS] <PID|PATH>                    an interactive session
       manhole-cli [OPTIONS] <PID|PATH> COMMAND [ARG]...   one command, for scripts
       manhole-cli [OPTIONS] --all COMMAND [ARG]...        one command on every live manhole
       manhole-cli [OPTIONS] --ssh DEST... <PID|--all> [COMMAND [ARG]...]   the same on other hosts
       manhole-cli [OPTIONS] <PID|PATH> dash [--interval DURATION]   a live dashboard (also with --ssh DEST)
       manhole-cli [OPTIONS] --stdio <PID|PATH>            join stdin and stdout to a manhole
       manhole-cli list [--clean|--prune] [--json]         every manhole on the machine (alias: ps)
       manhole-cli symbolize REPORT [--exe PATH]           symbolise a raw crash report, offline";

const AFTER_HELP: &str = "\
Examples:
  manhole-cli 1234                      talk to pid 1234 (prompt `manhole 1234> `)
  manhole-cli 1234 call reload_config   run one command; exit 0, 1 on an error reply, 2 without a connection
  manhole-cli --json 1234 get REQUESTS  print the JSON result instead of the text
  manhole-cli -s USR1 1234 stacks       wake an activate_on/oneshot_on manhole first
  manhole-cli 1234 profile 10           where the CPU goes for 10 s: the top functions
  manhole-cli 1234 profile 30 --wall -o flame.svg
                                        a wall-clock flame graph, written here (also
                                        -o cpu.pb.gz for pprof, -o cpu.folded)
  manhole-cli 1234 dash                 a live dashboard: threads, tasks, calls, runtime,
                                        log and stalls, every second (`?` for keys)
  manhole-cli /run/app/mh.sock          a socket path instead of a pid
  manhole-cli list --prune              list every manhole; remove your stale sockets
  manhole-cli symbolize /tmp/manhole-crashes-1000/crash-1234.txt --exe ./target/release/app
                                        a raw crash report with function and file:line
  manhole-cli --all threads             one command on every live manhole here
  manhole-cli --ssh db1 1234            a session with pid 1234 on host db1
  manhole-cli --ssh db1 --ssh db2 --all --json get REQUESTS
                                        every live manhole on two hosts, as one JSON array

Errors from the server are printed as `error: MESSAGE`; failures to connect as
`manhole-cli: REASON` (over ssh, `manhole-cli: HOST: REASON`). With --all or
several hosts the exit status is the worst: 0 when every process answered, 1
when any answer was an error, 2 when any process or host could not be reached.
MANHOLE_SSH_COMMAND replaces `ssh` (split like a shell command line). History
is kept in $XDG_STATE_HOME/manhole/history (else ~/.local/state/manhole/history).
NO_COLOR turns colour off.";

/// The remote manhole-cli when `--remote-cli` is not given: found on the
/// remote user's PATH.
pub const DEFAULT_REMOTE_CLI: &str = "manhole-cli";

/// Connect to a running process's manhole.
#[derive(Debug, Parser)]
#[command(
    name = "manhole-cli",
    version,
    about,
    override_usage = USAGE,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// A pid, the path of a manhole's socket, or `list` (alias `ps`). With
    /// --all, the first word of the command.
    #[arg(value_name = "PID|PATH|list")]
    pub target: Option<String>,

    /// One command to run, with its arguments, instead of an interactive
    /// session: each word is sent exactly as given (it is quoted for the
    /// server's shell-like splitter).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,

    /// Print the JSON-RPC `result` (pretty-printed), or the `error` object,
    /// instead of the text rendering; with `list`, a JSON array; with
    /// --all or several hosts, an array of {"pid","exe","result"} or
    /// {"pid","exe","error"} (and "host" over ssh).
    #[arg(long)]
    pub json: bool,

    /// Send this signal first (USR1, SIGUSR1, RTMIN+2 or a number), then
    /// wait for the socket to accept: wakes an activate_on/oneshot_on
    /// manhole.
    #[arg(short, long, value_name = "SIG", value_parser = SignalSpec::parse)]
    pub signal: Option<SignalSpec>,

    /// The limit for connecting, for every write, for each whole answer
    /// (however the server trickles it), and for the socket to appear
    /// after --signal: `5`, `5s`, `500ms`. Over ssh, it also bounds the
    /// wait for the host.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The longest reply line to read, in bytes (or with K, M or G): past
    /// it the CLI stops reading with an error [default: 65M, the server's
    /// largest reply and a margin].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_reply: Option<usize>,

    /// With `list`: remove the stale sockets that you own, whose process
    /// is gone, and say how many (also `--prune`).
    #[arg(long, visible_alias = "prune")]
    pub clean: bool,

    /// Run COMMAND on every live manhole that `list` shows (on each --ssh
    /// host, with --ssh), concurrently; the worst exit status wins.
    #[arg(long)]
    pub all: bool,

    /// Run on this host, through the system's ssh (or
    /// $MANHOLE_SSH_COMMAND): `host`, `user@host`, `ssh://user@host:port`.
    /// Give it again for more hosts.
    #[arg(long = "ssh", value_name = "DEST")]
    pub ssh: Vec<String>,

    /// The manhole-cli to run on the --ssh hosts [default: manhole-cli].
    #[arg(long, value_name = "PATH")]
    pub remote_cli: Option<String>,

    /// With `symbolize`: the executable to read symbols from, for a binary
    /// that was replaced or moved since the crash.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,

    /// Join stdin and stdout to the manhole of PID (or the socket PATH),
    /// byte for byte, after the usual checks: the bridge that --ssh runs on
    /// the remote host.
    #[arg(long)]
    pub stdio: bool,
}

/// What the first positional word names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `list` or `ps`.
    List,
    /// `symbolize`.
    Symbolize,
    /// A process id.
    Pid(i32),
    /// A socket path.
    Path(PathBuf),
}

impl Target {
    fn parse(word: &str) -> Result<Target, String> {
        match word {
            "list" | "ps" => Ok(Target::List),
            "symbolize" | "symbolise" => Ok(Target::Symbolize),
            "" => Err("give a pid, a socket path, or `list`".to_owned()),
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse::<i32>()
                .ok()
                .filter(|pid| *pid > 0)
                .map(Target::Pid)
                .ok_or_else(|| {
                    format!("{digits} is not a valid pid; write a socket path as ./{digits}")
                }),
            path => Ok(Target::Path(PathBuf::from(path))),
        }
    }
}

/// What to do, once the arguments agree with each other.
#[derive(Debug)]
pub enum Mode {
    /// `list`, maybe removing stale sockets.
    List {
        /// `--clean`.
        clean: bool,
    },
    /// `symbolize REPORT [--exe PATH]`.
    Symbolize {
        /// The raw crash report.
        report: PathBuf,
        /// `--exe`.
        exe: Option<PathBuf>,
    },
    /// A prompt.
    Interactive(Endpoint),
    /// One command: its words, as given.
    OneShot(Endpoint, Vec<String>),
    /// `--stdio`: stdin and stdout joined to the socket.
    Bridge(Local),
    /// One command on many processes, here or on several hosts.
    Fanout(Fanout),
}

/// Which manhole to connect to.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// One on this machine.
    Local(Local),
    /// A process on another host, through ssh.
    Remote(Remote),
}

impl Endpoint {
    /// The host that a failure with this endpoint happened on, if another.
    pub fn host(&self) -> Option<&str> {
        match self {
            Endpoint::Remote(remote) => Some(&remote.host),
            Endpoint::Local(_) => None,
        }
    }
}

/// A manhole on this machine.
#[derive(Debug, Clone)]
pub enum Local {
    /// A process, woken first with a signal when one is given.
    Pid(i32, Option<SignalSpec>),
    /// A socket file.
    Path(PathBuf),
}

/// A process on another host.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The ssh destination.
    pub host: String,
    /// The process there.
    pub pid: i32,
    /// The signal to wake it with, as the remote manhole-cli takes it.
    pub signal: Option<String>,
    /// The manhole-cli to run there.
    pub remote_cli: String,
}

/// One command on many processes.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// The ssh destinations; none for this machine.
    pub hosts: Vec<String>,
    /// Which processes on each.
    pub scope: Scope,
    /// The command's words, as given.
    pub words: Vec<String>,
    /// The manhole-cli to run on the hosts.
    pub remote_cli: String,
}

/// Which processes a fan-out reaches on each host.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every live manhole (`--all`).
    All,
    /// One pid, woken first with this signal (as the remote manhole-cli
    /// takes it) when one is given.
    Pid(i32, Option<String>),
}

impl Cli {
    /// Checks the combinations clap cannot express, exiting with a usage
    /// error (status 2) on a bad one.
    pub fn mode(&self) -> Mode {
        for dest in &self.ssh {
            if dest.is_empty() || dest.starts_with('-') {
                fail(&format!("--ssh {dest:?} is not a destination; give a host, user@host or ssh://user@host:port"));
            }
        }
        if self.remote_cli.is_some() && self.ssh.is_empty() {
            fail("--remote-cli names the manhole-cli on the --ssh hosts; give --ssh DEST too");
        }
        if self.clean && (self.all || self.stdio || !self.ssh.is_empty()) {
            fail("--clean goes with `list`: `manhole-cli list --clean`");
        }
        if self.all {
            return self.fanout_of_all();
        }
        let Some(word) = &self.target else {
            fail("give a pid, a socket path, or `list` (or --all with a command)");
        };
        let target = Target::parse(word).unwrap_or_else(|message| {
            Cli::command()
                .error(ErrorKind::InvalidValue, message)
                .exit()
        });
        if target == Target::Symbolize {
            let [report] = self.command.as_slice() else {
                fail("`symbolize` takes one raw crash report: `manhole-cli symbolize REPORT [--exe PATH]`");
            };
            if self.stdio || !self.ssh.is_empty() || self.signal.is_some() || self.json {
                fail("`symbolize` reads a file here; it takes only --exe");
            }
            return Mode::Symbolize {
                report: PathBuf::from(report),
                exe: self.exe.clone(),
            };
        }
        if self.exe.is_some() {
            fail("--exe goes with `symbolize`: `manhole-cli symbolize REPORT --exe PATH`");
        }
        if self.stdio {
            return self.bridge(&target);
        }
        if !self.ssh.is_empty() {
            return self.over_ssh(&target);
        }
        let endpoint = match target {
            Target::Symbolize => fail("`symbolize` takes one raw crash report: `manhole-cli symbolize REPORT [--exe PATH]`"),
            Target::List => {
                if !self.command.is_empty() {
                    fail("`list` takes no command; to run `list` in a process, write `manhole-cli PID list`");
                }
                if self.signal.is_some() {
                    fail("--signal needs a pid, not `list`");
                }
                return Mode::List { clean: self.clean };
            }
            Target::Pid(pid) => Local::Pid(pid, self.signal),
            Target::Path(path) => {
                if self.signal.is_some() {
                    fail("--signal needs a pid to send the signal to, not a socket path");
                }
                Local::Path(path)
            }
        };
        if self.clean {
            fail("--clean goes with `list`: `manhole-cli list --clean`");
        }
        self.session(Endpoint::Local(endpoint))
    }

    /// An interactive session or one command, with one endpoint.
    fn session(&self, endpoint: Endpoint) -> Mode {
        if self.command.is_empty() {
            if self.json {
                fail("--json needs a COMMAND (or `list`); an interactive session prints text");
            }
            Mode::Interactive(endpoint)
        } else {
            Mode::OneShot(endpoint, self.command.clone())
        }
    }

    fn remote_cli(&self) -> String {
        self.remote_cli
            .clone()
            .unwrap_or_else(|| DEFAULT_REMOTE_CLI.to_owned())
    }

    /// `--all`: every positional word is the command's.
    fn fanout_of_all(&self) -> Mode {
        if self.stdio {
            fail("--stdio joins one process, not --all");
        }
        if self.signal.is_some() {
            fail("--signal wakes one process; --all runs on the manholes that are live already");
        }
        let words: Vec<String> = self.target.iter().chain(&self.command).cloned().collect();
        if words.is_empty() {
            fail(
                "--all needs a COMMAND to run on each process, such as `manhole-cli --all threads`",
            );
        }
        if is_watch(&words) {
            fail("`watch` and `log follow` run in one session until they are stopped; run them with one pid, not --all");
        }
        Mode::Fanout(Fanout {
            hosts: self.ssh.clone(),
            scope: Scope::All,
            words,
            remote_cli: self.remote_cli(),
        })
    }

    /// `--stdio PID|PATH`.
    fn bridge(&self, target: &Target) -> Mode {
        if !self.ssh.is_empty() {
            fail("--stdio is what --ssh runs on the remote host; give one or the other");
        }
        if !self.command.is_empty() {
            fail("--stdio takes no command: what arrives on stdin is sent as it is");
        }
        if self.json {
            fail("--stdio passes bytes as they are; --json has nothing to print");
        }
        match target {
            Target::List => fail("--stdio needs a pid or a socket path, not `list`"),
            Target::Symbolize => fail("--stdio needs a pid or a socket path, not `symbolize`"),
            Target::Pid(pid) => Mode::Bridge(Local::Pid(*pid, self.signal)),
            Target::Path(path) => {
                if self.signal.is_some() {
                    fail("--signal needs a pid to send the signal to, not a socket path");
                }
                Mode::Bridge(Local::Path(path.clone()))
            }
        }
    }

    /// `--ssh DEST... PID [COMMAND...]`.
    fn over_ssh(&self, target: &Target) -> Mode {
        let pid = match target {
            Target::Pid(pid) => *pid,
            Target::List => fail("`list` runs on this machine; over ssh, run `ssh DEST manhole-cli list`, or give a pid or --all"),
            Target::Symbolize => fail("`symbolize` reads a file on this machine; copy the report here first"),
            Target::Path(_) => fail("--ssh needs a pid (or --all): the remote manhole-cli finds its socket"),
        };
        let signal = self.signal.map(SignalSpec::as_arg);
        if let [host] = self.ssh.as_slice() {
            return self.session(Endpoint::Remote(Remote {
                host: host.clone(),
                pid,
                signal,
                remote_cli: self.remote_cli(),
            }));
        }
        if self.command.is_empty() {
            fail("an interactive session is with one host; give a COMMAND to run on several");
        }
        if is_watch(&self.command) {
            fail("`watch` and `log follow` run in one session until they are stopped; run them on one host");
        }
        Mode::Fanout(Fanout {
            hosts: self.ssh.clone(),
            scope: Scope::Pid(pid, signal),
            words: self.command.clone(),
            remote_cli: self.remote_cli(),
        })
    }
}

/// Exits with a usage error (status 2) that says `message`.
fn fail(message: &str) -> ! {
    Cli::command()
        .error(ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Whether `words` ask for `watch` or `log follow`, which run until they
/// are stopped, so have no one answer to gather.
fn is_watch(words: &[String]) -> bool {
    use manhole_wire::{LogRequest, Request};
    matches!(
        manhole_wire::parse_text(&manhole_wire::quote_line(words)),
        Ok(Some(
            Request::Watch { .. } | Request::Log(LogRequest::Follow)
        ))
    )
}

/// A signal given by name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSpec(pub i32);

impl SignalSpec {
    /// `USR1`, `SIGUSR1`, `usr1`, `10`, `RTMIN+2`, `SIGRTMAX-1`.
    pub fn parse(text: &str) -> Result<SignalSpec, String> {
        let invalid = || {
            format!("{text:?} is not a signal; write a name such as USR1 or SIGUSR1, RTMIN+N, or a number")
        };
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let number = if let Ok(number) = name.parse::<i32>() {
            number
        } else if let Some(offset) = realtime_offset(name, "RTMIN", '+') {
            libc::SIGRTMIN() + offset.ok_or_else(invalid)?
        } else if let Some(offset) = realtime_offset(name, "RTMAX", '-') {
            libc::SIGRTMAX() - offset.ok_or_else(invalid)?
        } else {
            Signal::from_str(&format!("SIG{name}")).map_err(|_| invalid())? as i32
        };
        if (1..=libc::SIGRTMAX()).contains(&number) {
            Ok(SignalSpec(number))
        } else {
            Err(invalid())
        }
    }

    /// The signal as [`SignalSpec::parse`] reads it on any machine: a
    /// realtime signal by its offset (`RTMIN+2`), since where `SIGRTMIN`
    /// is differs between C libraries.
    pub fn as_arg(self) -> String {
        if Signal::try_from(self.0).is_ok() || self.0 >= libc::SIGRTMIN() {
            self.name()
        } else {
            self.0.to_string()
        }
    }

    /// `SIGUSR1`, `SIGRTMIN+2`.
    pub fn name(self) -> String {
        if let Ok(signal) = Signal::try_from(self.0) {
            signal.as_str().to_owned()
        } else if self.0 >= libc::SIGRTMIN() {
            format!("SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
        } else {
            format!("signal {}", self.0)
        }
    }
}

/// `RTMIN` → `Some(Some(0))`, `RTMIN+2` → `Some(Some(2))`, `RTMIN+x` →
/// `Some(None)`, anything else → `None`.
fn realtime_offset(name: &str, base: &str, sign: char) -> Option<Option<i32>> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(Some(0));
    }
    Some(
        rest.strip_prefix(sign)
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n >= 0),
    )
}

/// Past this a deadline (`Instant::now() + timeout`) could overflow; no
/// one waits 31 years for a reply.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(1_000_000_000);

/// `5`, `5s`, `1.5s`, `500ms`, `2m`, as [`manhole_wire::parse_duration`]
/// reads them; zero is a duration there, but a timeout must be positive.
/// A size in bytes: `1048576`, `64K`, `65M`, `1G` (powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?} is not a size such as 65M")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|count| count.checked_mul(scale))
        .filter(|bytes| *bytes >= 1024)
        .ok_or_else(|| format!("{text:?} must be a size of at least 1K, such as 65M"))
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let not_positive = || format!("{:?} must be a positive duration, such as 5s", text.trim());
    match manhole_wire::parse_duration(text) {
        Some(duration) if !duration.is_zero() && duration < LONGEST_TIMEOUT => Ok(duration),
        Some(_) => Err(not_positive()),
        // The wire's durations have no sign, so `-1s` would read as no
        // duration at all; it is one, only not a positive one.
        None if text
            .trim()
            .strip_prefix('-')
            .and_then(manhole_wire::parse_duration)
            .is_some() =>
        {
            Err(not_positive())
        }
        None => Err(format!(
            "{text:?} is not a duration; write for example 5, 5s, 500ms or 1m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_word_chooses_the_mode() {
        assert_eq!(Target::parse("list"), Ok(Target::List));
        assert_eq!(Target::parse("ps"), Ok(Target::List));
        assert_eq!(Target::parse("1234"), Ok(Target::Pid(1234)));
        assert_eq!(Target::parse("./list"), Ok(Target::Path("./list".into())));
        assert_eq!(
            Target::parse("/tmp/manhole-1"),
            Ok(Target::Path("/tmp/manhole-1".into()))
        );
        assert!(Target::parse("0").is_err());
        assert!(Target::parse("99999999999").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(SignalSpec::parse("USR1"), Ok(SignalSpec(libc::SIGUSR1)));
        assert_eq!(SignalSpec::parse("SIGUSR1"), Ok(SignalSpec(libc::SIGUSR1)));
        assert_eq!(SignalSpec::parse("usr2"), Ok(SignalSpec(libc::SIGUSR2)));
        assert_eq!(SignalSpec::parse("10"), Ok(SignalSpec(10)));
        assert_eq!(
            SignalSpec::parse("RTMIN+2"),
            Ok(SignalSpec(libc::SIGRTMIN() + 2))
        );
        assert_eq!(
            SignalSpec::parse("SIGRTMAX"),
            Ok(SignalSpec(libc::SIGRTMAX()))
        );
        assert!(SignalSpec::parse("USR3").is_err());
        assert!(SignalSpec::parse("RTMIN+x").is_err());
        assert!(SignalSpec::parse("0").is_err());
        assert_eq!(SignalSpec(libc::SIGUSR1).name(), "SIGUSR1");
        assert_eq!(SignalSpec(libc::SIGRTMIN() + 3).name(), "SIGRTMIN+3");
    }

    #[test]
    fn durations_in_seconds_or_milliseconds() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn a_timeout_that_is_not_positive_is_told_apart_from_one_that_is_not_a_duration() {
        let not_positive = r#""-1s" must be a positive duration, such as 5s"#;
        assert_eq!(parse_duration(" -1s").unwrap_err(), not_positive);
        assert_eq!(
            parse_duration("0ms").unwrap_err(),
            r#""0ms" must be a positive duration, such as 5s"#
        );
        assert_eq!(
            parse_duration("1e9").unwrap_err(),
            r#""1e9" must be a positive duration, such as 5s"#
        );
        assert_eq!(
            parse_duration("soon").unwrap_err(),
            r#""soon" is not a duration; write for example 5, 5s, 500ms or 1m"#
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_may_come_before_or_after_the_target_but_not_inside_the_command() {
        let cli = Cli::try_parse_from(["manhole-cli", "--json", "12", "get", "X"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.command, ["get", "X"]);
        let cli = Cli::try_parse_from(["manhole-cli", "12", "--json", "get", "X"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.command, ["get", "X"]);
        let cli =
            Cli::try_parse_from(["manhole-cli", "12", "call", "echo", "--json", "-s"]).unwrap();
        assert!(!cli.json);
        assert_eq!(cli.command, ["call", "echo", "--json", "-s"]);
        let cli = Cli::try_parse_from(["manhole-cli", "12", "call", "add", "-1", "2"]).unwrap();
        assert_eq!(cli.command, ["call", "add", "-1", "2"]);
    }
}
