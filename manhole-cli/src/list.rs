//! `manhole-cli list` (or `ps`): every manhole on the machine that this
//! user may use, that is every one for root and this user's own otherwise.
//!
//! Two sources are merged: the `/tmp/manhole-N` sockets, and for every
//! process its own listening manhole sockets (see [`crate::discover`]). A
//! process with neither but with a thread named `manhole` has a dormant
//! `activate_on`/`oneshot_on` listener: it is listed as `waiting`.
//!
//! Whether a socket is live is asked of the kernel's sock_diag (is anything
//! listening on this file?) rather than by connecting, because a connection
//! would use up the one session of a `oneshot_on` manhole. Connecting is
//! the fallback, and the last check before `--clean` removes a file: only a
//! socket that refuses (`ECONNREFUSED`) is removed.

use crate::discover::{self, Listening};
use crate::error::Error;
use crate::procfs::{self, Process};
use crate::sockdiag::FileId;
use nix::errno::Errno;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What state a manhole is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Something accepts on the socket.
    Live,
    /// The socket file is there, but nothing accepts on it.
    Stale,
    /// The process has a dormant `manhole` thread and no socket yet.
    Waiting,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Live => "live",
            State::Stale => "stale",
            State::Waiting => "waiting",
        }
    }
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The process, or the pid in a `/tmp/manhole-N` name.
    pub pid: i32,
    /// The process's effective uid; for a `/tmp/manhole-N` socket, the
    /// socket's owner.
    pub uid: u32,
    /// The executable's path, its command name, or `-` when it is gone.
    pub executable: String,
    /// The socket file; `None` while waiting.
    pub socket: Option<PathBuf>,
    /// Live, stale or waiting.
    pub state: State,
    /// Whether `--clean` removed the socket.
    pub removed: bool,
    /// In another PID or mount namespace (a container): its own pid there,
    /// and a short name for the container ([`Process::container_hint`]).
    pub container: Option<(i32, String)>,
}

/// Lists, cleans when asked, and prints.
pub fn run(clean: bool, json: bool) -> Result<(), Error> {
    let mut entries = discover_all();
    let mut removed = Vec::new();
    if clean {
        for entry in entries
            .iter_mut()
            .filter(|entry| entry.state == State::Stale)
        {
            let Some(path) = &entry.socket else { continue };
            match remove_if_stale_and_ours(path) {
                Ok(true) => {
                    entry.removed = true;
                    removed.push(path.clone());
                }
                Ok(false) => {}
                Err(err) => eprintln!(
                    "manhole-cli: warning: could not remove {}: {err}",
                    path.display()
                ),
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let text = if json {
        let rows: Vec<Value> = entries
            .iter()
            .map(|entry| entry_json(entry, clean))
            .collect();
        format!(
            "{}\n",
            crate::escape::json(serde_json::to_string_pretty(&rows).unwrap_or_default())
        )
    } else if entries.is_empty() {
        eprintln!("manhole-cli: no manhole found (only your own processes are listed, unless you are root)");
        String::new()
    } else {
        let mut text = table(&entries);
        for path in &removed {
            text.push_str(&format!("removed stale socket {}\n", path.display()));
        }
        text
    };
    if clean && !json {
        let count = removed.len();
        let sockets = if count == 1 { "socket" } else { "sockets" };
        eprintln!("manhole-cli: removed {count} stale {sockets} of yours whose process is gone");
    }
    let _ = stdout.write_all(text.as_bytes());
    Ok(())
}

/// A live manhole, as `--all` runs a command on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The process.
    pub pid: i32,
    /// Its executable, as `list` shows it.
    pub executable: String,
    /// Its socket, on the machine that listed it.
    pub socket: PathBuf,
}

/// The live manholes among `entries`, one per process: a process has one
/// manhole at a time, and any other socket of its is a leftover.
pub fn live(entries: &[Entry]) -> Vec<Live> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|entry| entry.state == State::Live)
        .filter_map(|entry| {
            let socket = entry.socket.clone()?;
            seen.insert(entry.pid).then(|| Live {
                pid: entry.pid,
                executable: entry.executable.clone(),
                socket,
            })
        })
        .collect()
}

/// The live manholes in what `list --json` printed (on another host), one
/// per process, in its order.
pub fn live_in_json(printed: &str) -> Result<Vec<Live>, String> {
    let rows: Vec<Value> = serde_json::from_str(printed).map_err(|err| err.to_string())?;
    let field = |row: &Value, key: &str| -> Result<Value, String> {
        row.get(key)
            .cloned()
            .ok_or_else(|| format!("a row without `{key}`: {row}"))
    };
    let mut entries = Vec::new();
    for row in &rows {
        if field(row, "state")? != State::Live.name() {
            continue;
        }
        let pid = field(row, "pid")?
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| format!("a `pid` that is not a pid: {row}"))?;
        let text = |key: &str| -> Result<String, String> {
            match field(row, key)? {
                Value::String(text) => Ok(text),
                other => Err(format!("a `{key}` that is not a string: {other}")),
            }
        };
        entries.push(Entry {
            pid,
            uid: 0,
            executable: text("executable")?,
            socket: Some(PathBuf::from(text("socket")?)),
            state: State::Live,
            removed: false,
            container: None,
        });
    }
    Ok(live(&entries))
}

fn entry_json(entry: &Entry, clean: bool) -> Value {
    let mut row = json!({
        "pid": entry.pid,
        "uid": entry.uid,
        "user": procfs::user_name(entry.uid),
        "executable": entry.executable,
        "socket": entry.socket.as_ref().map(|path| path.display().to_string()),
        "state": entry.state.name(),
    });
    if clean {
        row["removed"] = Value::Bool(entry.removed);
    }
    if let Some((own_pid, container)) = &entry.container {
        row["own_pid"] = json!(own_pid);
        row["container"] = json!(container);
    }
    row
}

fn table(entries: &[Entry]) -> String {
    // A process in a container shows its own pid there too, and which
    // container it is in.
    let pid_of = |entry: &Entry| match &entry.container {
        Some((own_pid, container)) if *own_pid != entry.pid => format!(
            "{} ({own_pid} in {})",
            entry.pid,
            crate::escape::field(container)
        ),
        Some((_, container)) => format!("{} (in {})", entry.pid, crate::escape::field(container)),
        None => entry.pid.to_string(),
    };
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            [
                pid_of(entry),
                procfs::user_name(entry.uid).unwrap_or_else(|| entry.uid.to_string()),
                crate::escape::field(&entry.executable).into_owned(),
                entry.socket.as_ref().map_or_else(
                    || "-".to_owned(),
                    |path| crate::escape::field(&path.display().to_string()).into_owned(),
                ),
                if entry.removed {
                    "stale (removed)".to_owned()
                } else {
                    entry.state.name().to_owned()
                },
            ]
        })
        .collect();
    let header = ["PID", "USER", "EXECUTABLE", "SOCKET", "STATE"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Every manhole this user may use, by pid.
pub fn discover_all() -> Vec<Entry> {
    let me = nix::unistd::geteuid().as_raw();
    let visible = |uid: u32| me == 0 || uid == me;
    let listening = Listening::fetch();
    let mut entries = Vec::new();

    for (pid, path) in default_sockets() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let uid = meta.uid();
        if !visible(uid) {
            continue;
        }
        // A process of another user under that pid is a reused pid: the
        // socket's own process is gone.
        let process = Process::read(pid).filter(|process| process.euid == uid);
        let state = match listening.is_listening(FileId::of(&meta)) {
            Some(true) => State::Live,
            _ if process.is_none() => State::Stale,
            _ => match manhole_wire::probe(&path) {
                Ok(()) => State::Live,
                Err(_) => State::Stale,
            },
        };
        entries.push(Entry {
            pid,
            uid,
            executable: process
                .as_ref()
                .map_or_else(|| "-".to_owned(), Process::executable),
            socket: Some(path),
            state,
            removed: false,
            container: None,
        });
    }

    let own_pid = std::process::id() as i32;
    let listed: HashSet<PathBuf> = entries.iter().filter_map(|e| e.socket.clone()).collect();
    for pid in procfs::pids() {
        if pid == own_pid {
            continue;
        }
        let Some(process) = Process::read(pid) else {
            continue;
        };
        if !visible(process.euid) {
            continue;
        }
        let held: Vec<PathBuf> = discover::held_manhole_sockets(&process, &listening)
            .into_iter()
            .filter(|path| !listed.contains(path))
            .collect();
        let container = process.container_hint().map(|hint| (process.own_pid, hint));
        let live_before = entries
            .iter()
            .any(|entry| entry.pid == pid && entry.state == State::Live);
        if held.is_empty() && !live_before && process.has_manhole_thread() {
            entries.push(Entry {
                pid,
                uid: process.euid,
                executable: process.executable(),
                socket: None,
                state: State::Waiting,
                removed: false,
                container: container.clone(),
            });
        }
        for path in held {
            entries.push(Entry {
                pid,
                uid: process.euid,
                executable: process.executable(),
                socket: Some(path),
                state: State::Live,
                removed: false,
                container: container.clone(),
            });
        }
    }
    entries.sort_by(|a, b| (a.pid, &a.socket).cmp(&(b.pid, &b.socket)));
    entries
}

/// `/tmp/manhole-N` sockets, with N.
fn default_sockets() -> Vec<(i32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/tmp") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry
            .file_name()
            .to_str()?
            .strip_prefix("manhole-")?
            .parse()
            .ok()
            .filter(|pid| *pid > 0)?;
        entry
            .file_type()
            .ok()?
            .is_socket()
            .then(|| (pid, entry.path()))
    })
    .collect()
}

/// Removes `path` if it is a socket owned by us (root included: only its
/// own) that refuses connections. `Ok(false)` when it is not ours or not
/// stale after all.
fn remove_if_stale_and_ours(path: &Path) -> std::io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(false);
    }
    if manhole_wire::probe(path) != Err(Errno::ECONNREFUSED) {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_manholes_are_read_back_from_json() {
        let entry = |pid, state| Entry {
            pid,
            uid: 0,
            executable: format!("/bin/app{pid}"),
            socket: Some(format!("/tmp/manhole-{pid}").into()),
            state,
            removed: false,
            container: None,
        };
        let entries = [
            entry(3, State::Live),
            entry(4, State::Stale),
            entry(5, State::Live),
            entry(5, State::Live),
        ];
        let printed = serde_json::to_string(
            &entries
                .iter()
                .map(|entry| entry_json(entry, false))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let live = live_in_json(&printed).unwrap();
        assert_eq!(live.iter().map(|live| live.pid).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(live[0].executable, "/bin/app3");
        assert!(live_in_json("{}").is_err());
        assert!(live_in_json(r#"[{"state": "live"}]"#).is_err());
    }

    #[test]
    fn the_table_lines_up() {
        let entries = [
            Entry {
                pid: 7,
                uid: u32::MAX - 1,
                executable: "/bin/app".into(),
                socket: Some("/tmp/manhole-7".into()),
                state: State::Live,
                removed: false,
                container: None,
            },
            Entry {
                pid: 12345,
                uid: u32::MAX - 1,
                executable: "-".into(),
                socket: None,
                state: State::Waiting,
                removed: false,
                container: None,
            },
        ];
        let uid = (u32::MAX - 1).to_string();
        let user_width = uid.len();
        assert_eq!(
            table(&entries),
            format!(
                "  PID  {:<user_width$}  EXECUTABLE  SOCKET          STATE\n    7  {uid}  /bin/app    /tmp/manhole-7  live\n12345  {uid}  -           -               waiting\n",
                "USER"
            )
        );
    }
}
