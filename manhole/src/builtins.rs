//! What each request does, for both protocols: every built-in produces an
//! [`Answer`] that carries its JSON result and its text rendering.

use crate::calls::{human, Summary};
use crate::options::Served;
use crate::profile_formats::Symbolised;
use crate::registry::{self, Args, Command, Inspect, InspectKind, Lookup, Named, Source};
use crate::stacks;
use crate::tasks::Waiting;
use crate::{capture, inflight, limits, mem, process, profiler, runtime, top};
use manhole_wire::{
    follow_text_only, parse_text, text_only, value_text, ArgValue, Builtin, Failure, LogRequest,
    ProfileFormat, ProfileRequest, Reason, Request, SortBy,
};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// A successful reply in both forms. `text` ends with a newline, or is empty.
pub(crate) struct Answer {
    pub(crate) json: Value,
    pub(crate) text: String,
}

impl Answer {
    fn value(json: Value) -> Self {
        let mut text = value_text(&json);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Answer { json, text }
    }
}

/// What a request runs under: the installed manhole's waits, and a way to
/// tell that its client has hung up, so that a long wait is given up.
#[derive(Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) served: &'a Served,
    pub(crate) client_gone: &'a dyn Fn() -> bool,
}

/// Runs one request. `Request::Quit` is the session's business, not ours.
pub(crate) fn run(request: Request, asked: Asked<'_>) -> Result<Answer, Failure> {
    registry::with_lock_timeout(asked.served.waits.lock, || answer(request, asked))
}

fn answer(request: Request, asked: Asked<'_>) -> Result<Answer, Failure> {
    match request {
        Request::Help(None) => Ok(help_all()),
        Request::Help(Some(name)) => help_one(&name),
        Request::List => Ok(list()),
        // Over JSON a dump goes through `stacks_json`; this is its text.
        Request::Stacks { collapse } => Ok(Answer {
            json: Value::Null,
            text: stacks_text(&dump(asked)?, collapse),
        }),
        Request::Threads => Ok(threads()),
        Request::Info => Ok(info(asked.served)),
        Request::Mem {
            heap_profile: false,
        } => Ok(memory()),
        Request::Mem { heap_profile: true } => {
            let profile = mem::heap_profile()?;
            // Binary pprof goes to a file through manhole-cli's `-o`; a
            // text session gets it as base64, which a shell can decode.
            let text = format!(
                "jemalloc heap profile, {} bytes of gzipped pprof as base64 (`base64 -d > heap.pb.gz`; `manhole-cli {} mem --heap-profile -o heap.pb.gz` writes the file):\n{}\n",
                profile["bytes"],
                std::process::id(),
                value_text(&profile["data"])
            );
            Ok(Answer {
                json: profile,
                text,
            })
        }
        Request::Tasks { older_than } => Ok(tasks(older_than, asked.served.waits.slow_poll)),
        Request::Runtime => {
            let reading = runtime::read(&asked.served.runtime)?;
            Ok(Answer {
                text: reading.render(),
                json: serde_json::to_value(&reading).unwrap_or(Value::Null),
            })
        }
        Request::Profile(profile) => run_profile(&profile, asked),
        Request::Top { interval } => {
            let threads = top::sample(interval);
            Ok(Answer {
                json: json!({
                    "seconds": interval.as_secs_f64(),
                    "threads": threads.iter().map(|t| json!({
                        "tid": t.tid,
                        "name": t.name,
                        "state": t.state,
                        "cpu_percent": t.cpu_percent,
                    })).collect::<Vec<_>>(),
                }),
                text: top::render(interval, &threads),
            })
        }
        Request::Get(name) => read(inspected_item(&name)?),
        Request::Set { name, value } => set(&name, value),
        Request::Stats { sort, window } => Ok(stats(sort, window)),
        Request::StatsReset(name) => stats_reset(name.as_deref()),
        Request::Log(LogRequest::Follow) => Err(follow_text_only()),
        Request::Log(request) => log(request),
        Request::Watch { .. } => Err(text_only(Builtin::Watch)),
        Request::Call { name, args, bare } => call(&name, &args, bare, asked),
        Request::Greeting { collapse } => greeting(asked, collapse),
        Request::Text(line) => text_line(&line, asked),
        Request::Quit => Ok(Answer {
            json: Value::Null,
            text: String::new(),
        }),
    }
}

/// The JSON result of `tasks`, written straight to a string, as
/// [`stacks_json`] is and for the same reason.
pub(crate) fn tasks_json(older_than: Duration, asked: Asked<'_>) -> Result<String, Failure> {
    let calls = inflight::calls(asked.served.waits.slow_poll);
    let forest = inflight::forest(&calls, older_than);
    #[derive(serde::Serialize)]
    struct Tasks<'a> {
        tasks: &'a [inflight::Tree],
    }
    serde_json::to_string(&Tasks { tasks: &forest }).map_err(|err| {
        Failure::new(
            Reason::NotSerialisable,
            format!("the tasks could not be written as JSON: {err}"),
        )
    })
}

/// `tasks`: the in-flight instrumented async calls, as a forest.
fn tasks(older_than: Duration, slow_poll: Duration) -> Answer {
    let calls = inflight::calls(slow_poll);
    let forest = inflight::forest(&calls, older_than);
    let mut text = match (calls.len(), older_than.is_zero()) {
        (0, _) => "no instrumented async call is in flight (calls of `#[manhole::inspect(calls)] async fn` show here)\n".to_owned(),
        (count, true) => format!("{count} instrumented async call(s) in flight, oldest first\n"),
        (count, false) => format!(
            "{count} instrumented async call(s) in flight; the trees at least {:?} old, oldest first\n",
            older_than
        ),
    };
    for tree in &forest {
        tree.render(0, &mut text);
    }
    Answer {
        json: json!({ "tasks": forest }),
        text,
    }
}

/// The text session's greeting: banner, every thread's stack, and a hint.
/// A text session collapses alike threads (a pool of idle workers would
/// otherwise fill screens with the same frames); JSON asks either way.
pub(crate) fn greeting(asked: Asked<'_>, collapse: bool) -> Result<Answer, Failure> {
    let executable =
        std::env::current_exe().map_or_else(|_| "?".to_owned(), |path| path.display().to_string());
    let version = env!("CARGO_PKG_VERSION");
    let pid = std::process::id();
    let stacks = stacks_text(&dump(asked)?, collapse);
    let text = format!(
        "manhole {version}, pid {pid}, {executable}\n{stacks}type `help` for commands, `quit` to leave\n",
    );
    Ok(Answer {
        json: json!({"version": version, "pid": pid, "executable": executable, "text": text}),
        text,
    })
}

/// A dump as text: every thread, or alike threads once.
fn stacks_text(snapshot: &stacks::Stacks, collapse: bool) -> String {
    if collapse {
        snapshot.collapsed().to_string()
    } else {
        snapshot.to_string()
    }
}

fn dump(asked: Asked<'_>) -> Result<stacks::Stacks, Failure> {
    stacks::snapshot_unless(asked.served.waits, asked.client_gone, None).ok_or_else(abandoned)
}

/// The JSON result of `stacks`, written straight to a string: a dump of a
/// thousand threads is megabytes of JSON, which would cost as much again
/// built as a `Value` first.
pub(crate) fn stacks_json(asked: Asked<'_>, collapse: bool) -> Result<String, Failure> {
    let snapshot = dump(asked)?;
    let written = if collapse {
        serde_json::to_string(&snapshot.collapsed())
    } else {
        serde_json::to_string(&snapshot)
    };
    written.map_err(|err| {
        Failure::new(
            Reason::NotSerialisable,
            format!("the dump could not be written as JSON: {err}"),
        )
    })
}

/// A dump given up because its client hung up; no one reads this.
/// How many functions the `top` format lists.
const PROFILE_TOP_ROWS: usize = 40;

/// `profile`: samples, then writes the format asked for (or the
/// protocol's default: `folded` over JSON, `top` over text).
fn run_profile(request: &ProfileRequest, asked: Asked<'_>) -> Result<Answer, Failure> {
    let collected = profiler::run(request, asked.client_gone)?.ok_or_else(abandoned)?;
    let symbolised = {
        let _turn = capture::turn();
        Symbolised::new(&collected)
    };
    let samples = collected.samples();
    let sampled_threads = collected
        .stacks
        .keys()
        .map(|(tid, _)| tid)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let seconds = request.duration.as_secs_f64();
    let heading = format!(
        "{} profile of pid {}: {seconds} s at {} Hz, {samples} samples from {sampled_threads} threads ({} dropped)",
        request.mode.name(),
        std::process::id(),
        request.hz,
        collected.dropped,
    );
    let mut unsampled: Vec<(i32, &str, &str)> = collected
        .threads
        .iter()
        .filter_map(|(tid, thread)| {
            Some((*tid, thread.name.as_str(), thread.unsampled.as_deref()?))
        })
        .collect();
    unsampled.sort_unstable();
    let render = |format: ProfileFormat| match format {
        ProfileFormat::Top => symbolised.top(&heading, PROFILE_TOP_ROWS),
        ProfileFormat::Folded => symbolised.folded(request.per_thread),
        ProfileFormat::Svg => symbolised.svg(&heading, request.per_thread),
        ProfileFormat::Pprof => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(symbolised.pprof())
        }
    };
    let json_format = request.format.unwrap_or(ProfileFormat::Folded);
    let text_format = request.format.unwrap_or(ProfileFormat::Top);
    let data = render(json_format);
    let mut text = if text_format == json_format {
        data.clone()
    } else {
        render(text_format)
    };
    if text_format == ProfileFormat::Pprof {
        text = format!(
            "{heading}\ngzipped pprof as base64 (`base64 -d > cpu.pb.gz`; `manhole-cli {} profile --format pprof -o cpu.pb.gz` writes the file):\n{text}\n",
            std::process::id()
        );
    }
    if text_format == ProfileFormat::Top {
        for (tid, name, reason) in &unsampled {
            let _ = writeln!(text, "not sampled: thread {tid} {name:?}: {reason}");
        }
        if collected.skipped > 0 {
            let _ = writeln!(
                text,
                "{} looks at blocked threads were skipped: their stacks could not be read without a signal",
                collected.skipped
            );
        }
    }
    let mut json = json!({
        "mode": request.mode.name(),
        "format": json_format.name(),
        "seconds": seconds,
        "hz": request.hz,
        "samples": samples,
        "dropped": collected.dropped,
        "data": data,
        "elapsed_s": collected.elapsed.as_secs_f64(),
        "threads": sampled_threads,
        "skipped": collected.skipped,
        "truncated": collected.truncated,
        "unsampled": unsampled
            .iter()
            .map(|(tid, name, reason)| json!({"tid": tid, "name": name, "reason": reason}))
            .collect::<Vec<_>>(),
    });
    if json_format == ProfileFormat::Pprof {
        json["encoding"] = json!("base64");
    }
    Ok(Answer { json, text })
}

fn abandoned() -> Failure {
    Failure::new(Reason::Busy, "the dump was abandoned: the client hung up")
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

fn command_json(command: &Command) -> Value {
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

fn inspect_json(item: &Inspect) -> Value {
    json!({
        "name": item.meta.name,
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

fn builtin_json(builtin: Builtin) -> Value {
    let spec = builtin.spec();
    json!({"name": spec.name, "usage": spec.usage, "summary": spec.summary})
}

/// Signature and summary per row, the summaries lined up; a signature too
/// long for the column gets its summary on the next line.
fn table(rows: &[(String, String)]) -> String {
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

fn list() -> Answer {
    let commands = registry::commands();
    let inspected = registry::inspected();
    let mut text = String::new();
    let command_rows: Vec<_> = commands
        .iter()
        .map(|c| (c.signature(), c.meta.summary()))
        .collect();
    let inspect_rows: Vec<_> = inspected
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
    text.push_str("commands (call NAME [ARG...]):\n");
    text.push_str(&if command_rows.is_empty() {
        "  (none registered)\n".to_owned()
    } else {
        table(&command_rows)
    });
    text.push_str("inspected (get NAME):\n");
    text.push_str(&if inspect_rows.is_empty() {
        "  (none registered)\n".to_owned()
    } else {
        table(&inspect_rows)
    });
    Answer {
        json: json!({
            "commands": commands.iter().map(|c| command_json(c)).collect::<Vec<_>>(),
            "inspected": inspected.iter().map(|i| inspect_json(i)).collect::<Vec<_>>(),
        }),
        text,
    }
}

fn help_all() -> Answer {
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

fn help_one(name: &str) -> Result<Answer, Failure> {
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
    for item in inspected.iter().filter(|i| i.meta.name == name) {
        let usage = match (item.kind, item.write.is_some()) {
            (_, true) => format!("get {0}, set {0} VALUE", item.meta.name),
            (InspectKind::Calls, _) => format!("get {0} (its calls), stats", item.meta.name),
            _ => format!("get {}", item.meta.name),
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

fn threads() -> Answer {
    let threads = crate::procfs::Tasks::open()
        .map(|tasks| stacks::thread_list(&tasks))
        .unwrap_or_default();
    let name_width = threads
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!("{:>7}  {:<name_width$}  STATE\n", "TID", "NAME");
    for thread in &threads {
        let _ = writeln!(
            text,
            "{:>7}  {:<name_width$}  {}",
            thread.tid, thread.name, thread.state
        );
    }
    Answer {
        json: json!({
            "threads": threads.iter().map(|t| json!({"tid": t.tid, "name": t.name, "state": t.state})).collect::<Vec<_>>(),
        }),
        text,
    }
}

/// `info`: the process at a glance, and the limits it can see.
fn info(served: &Served) -> Answer {
    let facts = process::facts();
    let limits = limits::read();
    let started_at = facts.started_at.map(process::rfc3339);
    let mut json = json!({
        "pid": facts.pid,
        "exe": facts.exe,
        "args": facts.args,
        "started_at": started_at,
        "uptime_s": facts.uptime_s,
        "threads": facts.threads,
        "rss_bytes": facts.rss_bytes,
        "fds": facts.fds,
        "cpu_s": facts.cpu_s,
        "manhole_version": env!("CARGO_PKG_VERSION"),
        "profiling": profiler::in_progress(),
    });
    let mut limit_json = serde_json::Map::new();
    let mut limit_text = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        limit_json.insert("memory_bytes".to_owned(), json!(bytes));
        limit_text.push(format!("memory {}", bytes_human(bytes)));
    }
    if let Some(cores) = limits.cpu_cores {
        limit_json.insert("cpu_cores".to_owned(), json!(cores));
        limit_text.push(format!("cpu {cores} cores"));
    }
    if let Some((version, path)) = &limits.cgroup {
        limit_json.insert(
            "cgroup".to_owned(),
            json!({"version": version, "path": path}),
        );
        if let Some(last) = limit_text.last_mut() {
            let _ = write!(last, " (cgroup v{version} {path})");
        }
    }
    if let Some((soft, hard)) = limits.open_files {
        limit_json.insert("open_files".to_owned(), json!({"soft": soft, "hard": hard}));
        let shown = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
        limit_text.push(format!(
            "open files {} soft, {} hard",
            shown(soft),
            shown(hard)
        ));
    }
    json["limits"] = Value::Object(limit_json);
    let unknown = || "?".to_owned();
    let mut text = String::new();
    let mut row = |key: &str, value: String| {
        let _ = writeln!(text, "{key:<9} {value}");
    };
    row("pid", facts.pid.to_string());
    row("exe", facts.exe.clone());
    let args: Vec<String> = facts
        .args
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|ch| ch.is_alphanumeric() || "-_./=:,+@%".contains(ch));
            if plain {
                arg.clone()
            } else {
                manhole_wire::quote_word(arg)
            }
        })
        .collect();
    row("args", args.join(" "));
    if let Some(program) = served.program {
        json["program"] = json!({"name": program.name, "version": program.version});
        row("program", format!("{} {}", program.name, program.version));
    }
    row(
        "started",
        match (&started_at, facts.uptime_s) {
            (Some(at), Some(up)) => format!("{at} (up {})", seconds_human(up)),
            _ => unknown(),
        },
    );
    row(
        "threads",
        facts.threads.map_or_else(unknown, |n| n.to_string()),
    );
    if profiler::in_progress() {
        row("profiling", "a profile is running".to_owned());
    }
    row("rss", facts.rss_bytes.map_or_else(unknown, bytes_human));
    row("fds", facts.fds.map_or_else(unknown, |n| n.to_string()));
    row(
        "cpu",
        facts
            .cpu_s
            .map_or_else(unknown, |cpu| format!("{cpu:.2}s user+system")),
    );
    row("manhole", env!("CARGO_PKG_VERSION").to_owned());
    row(
        "limits",
        if limit_text.is_empty() {
            "none found".to_owned()
        } else {
            limit_text.join(", ")
        },
    );
    Answer { json, text }
}

/// `mem`: the kernel's view of resident memory, and the allocator's.
fn memory() -> Answer {
    let resident = mem::resident();
    let allocator = mem::allocator();
    let json = json!({
        "rss_bytes": resident.map(|r| r.rss_bytes),
        "anon_bytes": resident.map(|r| r.anon_bytes),
        "file_bytes": resident.map(|r| r.file_bytes),
        "source": resident.map(|r| r.source),
        "allocator": allocator,
    });
    let mut text = match resident {
        Some(r) => format!(
            "resident   {} (anonymous {}, file-backed {}; from /proc/self/{})\n",
            bytes_human(r.rss_bytes),
            bytes_human(r.anon_bytes),
            bytes_human(r.file_bytes),
            r.source
        ),
        None => {
            "resident   ? (neither /proc/self/smaps_rollup nor /proc/self/status could be read)\n"
                .to_owned()
        }
    };
    let name = allocator["name"].as_str().unwrap_or("unknown");
    let _ = writeln!(text, "allocator  {name}");
    if let Value::Object(fields) = &allocator {
        for (key, value) in fields.iter().filter(|(key, _)| *key != "name") {
            let shown = match (key.strip_suffix("_bytes"), value.as_u64()) {
                (Some(label), Some(bytes)) => format!("{label:<16} {}", bytes_human(bytes)),
                _ => format!("{key:<16} {}", value_text(value)),
            };
            let _ = writeln!(text, "  {shown}");
        }
    }
    Answer { json, text }
}

/// `log` without the `tracing` feature: say how to get it, never pretend.
#[cfg(not(feature = "tracing"))]
fn log_control() -> Result<std::convert::Infallible, Failure> {
    Err(Failure::new(
        Reason::NotEnabled,
        "`log` needs manhole's `tracing` feature: build with `manhole = { version = \"...\", features = [\"tracing\"] }` and put `manhole::tracing::layer()` first in the tracing subscriber",
    ))
}

/// The tracing layer to steer, or why there is none.
#[cfg(feature = "tracing")]
fn log_control() -> Result<crate::tracing::Control, Failure> {
    crate::tracing::control().ok_or_else(|| {
        Failure::new(
            Reason::NotEnabled,
            "no `manhole::tracing::layer()` in this process: put it first in the tracing subscriber, as in `tracing_subscriber::registry().with(manhole::tracing::layer())`",
        )
    })
}

#[cfg(not(feature = "tracing"))]
fn log(_request: LogRequest) -> Result<Answer, Failure> {
    match log_control()? {}
}

/// New events as `log follow` shows them: each call returns the lines of
/// the events since the last.
pub(crate) type Follow = Box<dyn FnMut() -> String + Send>;

/// Starts following the log: the heading, and the source of new lines.
#[cfg(not(feature = "tracing"))]
pub(crate) fn follow() -> Result<(String, Follow), Failure> {
    match log_control()? {}
}

/// Starts following the log: the heading, and the source of new lines.
#[cfg(feature = "tracing")]
pub(crate) fn follow() -> Result<(String, Follow), Failure> {
    let control = log_control()?;
    let heading = manhole_wire::log_follow_heading(&control.status().filter);
    let mut seen = control.newest();
    let next = move || {
        let (events, newest) = control.after(seen);
        seen = newest;
        events.iter().map(|event| event.to_line()).collect()
    };
    Ok((heading, Box::new(next)))
}

#[cfg(feature = "tracing")]
fn log(request: LogRequest) -> Result<Answer, Failure> {
    let control = log_control()?;
    let status = match request {
        LogRequest::Tail(count) => return Ok(events_answer(&control.tail(count), control.newest())),
        LogRequest::After(seq) => {
            let (events, newest) = control.after(seq);
            return Ok(events_answer(&events, newest));
        }
        LogRequest::Follow => return Err(follow_text_only()),
        LogRequest::Show => control.status(),
        LogRequest::Reset => control.reset(),
        LogRequest::Set {
            filter,
            revert_after,
        } => control.set(&filter, revert_after).map_err(|err| {
            Failure::new(
                Reason::BadArgument,
                format!("{err}; the filter in force stays"),
            )
            .with_details(json!({"argument": "set", "got": filter, "expected": "an EnvFilter directive list, such as `info` or `warn,my_app=debug`"}))
        })?,
    };
    let reverts_in_s = status
        .reverts
        .as_ref()
        .map(|(seconds, _, _)| (seconds * 10.0).round() / 10.0);
    let mut json = json!({
        "filter": status.filter,
        "default": status.default,
        "reverts_in_s": reverts_in_s,
        "newest": control.newest(),
    });
    let mut text = match &status.previous {
        Some(previous) => format!("filter `{}` (was `{previous}`)", status.filter),
        None => format!("filter `{}`", status.filter),
    };
    if let Some(previous) = &status.previous {
        json["previous"] = json!(previous);
    }
    if let Some((seconds, at, back_to)) = &status.reverts {
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let at = process::rfc3339_with(at, 0);
        json["reverts_at"] = json!(at);
        json["reverts_to"] = json!(back_to);
        let _ = write!(
            text,
            "; reverts to `{back_to}` in {} (at {at})",
            seconds_human(*seconds)
        );
    }
    if status.filter == status.default {
        text.push_str(", the default\n");
    } else {
        let _ = writeln!(text, "; the default is `{}`", status.default);
    }
    Ok(Answer { json, text })
}

/// Events of `log tail` or `log {"after"}`, with the number of the newest
/// event so far, from which a JSON client follows the log.
#[cfg(feature = "tracing")]
fn events_answer(events: &[std::sync::Arc<crate::tracing::Record>], newest: u64) -> Answer {
    Answer {
        json: json!({
            "events": events.iter().map(|event| event.to_json()).collect::<Vec<_>>(),
            "newest": newest,
        }),
        text: events.iter().map(|event| event.to_line()).collect(),
    }
}

/// Bytes for people: `512 B`, `12.3 MiB`.
fn bytes_human(bytes: u64) -> String {
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
fn seconds_human(seconds: f64) -> String {
    let whole = seconds as u64;
    match whole {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..86_400 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// The inspected item called `name`, or why there is none.
fn inspected_item(name: &str) -> Result<&'static Inspect, Failure> {
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

/// Reads an inspected item, as `get` does, under the installed manhole's
/// lock timeout.
pub(crate) fn get(name: &str, served: &Served) -> Result<Answer, Failure> {
    registry::with_lock_timeout(served.waits.lock, || read(inspected_item(name)?))
}

fn read(item: &Inspect) -> Result<Answer, Failure> {
    match item.source {
        Source::Read(read) => read()
            .map(Answer::value)
            .map_err(|failure| in_context(failure, item.meta.name, "reading")),
        Source::Calls(stats) => {
            let summary = stats.snapshot().summary();
            Ok(Answer {
                json: serde_json::to_value(&summary).unwrap_or(Value::Null),
                text: stats_table(&[(item.meta.name, summary)]),
            })
        }
    }
}

fn set(name: &str, value: Value) -> Result<Answer, Failure> {
    let item = inspected_item(name)?;
    let Some(write) = item.write else {
        let why = match item.kind {
            InspectKind::Static => format!(
                "`{name}` is not writable; mark its static `#[manhole::inspect(writable)]` to allow `set`"
            ),
            InspectKind::Computed => {
                format!("`{name}` is computed by a function, so there is nothing to set")
            }
            InspectKind::Calls => {
                format!("`{name}` is a function's call statistics, which cannot be set")
            }
        };
        return Err(Failure::new(Reason::NotWritable, why));
    };
    let json = write(value).map_err(|failure| match failure.reason {
        Some(Reason::BadValue) => Failure {
            message: format!("cannot set `{name}`: {}", failure.message),
            ..failure
        },
        _ => in_context(failure, name, "setting"),
    })?;
    let text = format!(
        "{name} = {} (was {})\n",
        value_text(&json["value"]),
        value_text(&json["previous"])
    );
    Ok(Answer { json, text })
}

fn stats(sort: SortBy, window: Option<Duration>) -> Answer {
    let mut rows: Vec<(&str, Summary, Option<Option<Duration>>)> = registry::call_stats()
        .into_iter()
        .map(|(name, stats)| match window {
            None => (name, stats.snapshot().summary(), None),
            Some(window) => {
                let (snapshot, covered) = stats.window(window);
                (name, snapshot.summary(), Some(covered))
            }
        })
        .collect();
    let key = |summary: &Summary| match sort {
        SortBy::Name => 0,
        SortBy::Calls => summary.calls,
        SortBy::InFlight => summary.in_flight,
        SortBy::Errors => summary.errors,
        SortBy::Panics => summary.panics,
        SortBy::Mean => summary.mean_ns.unwrap_or(0),
        SortBy::P50 => summary.p50_ns.unwrap_or(0),
        SortBy::P99 => summary.p99_ns.unwrap_or(0),
        SortBy::Max => summary.max_ns.unwrap_or(0),
    };
    // Largest first; names break ties, and order the default sort.
    rows.sort_by(|(a_name, a, _), (b_name, b, _)| key(b).cmp(&key(a)).then(a_name.cmp(b_name)));
    let functions: Vec<Value> =
        rows.iter()
            .map(|(name, summary, covered)| {
                let mut row = serde_json::to_value(summary).unwrap_or(Value::Null);
                row["name"] = Value::from(*name);
                if let Some(covered) = covered {
                    let seconds = covered.map(|covered| covered.as_secs_f64());
                    row["covered_s"] = json!(seconds.map(|s| (s * 10.0).round() / 10.0));
                    row["calls_per_s"] = json!(seconds
                        .filter(|s| *s > 0.0)
                        .map(|s| (summary.calls as f64 / s * 10.0).round() / 10.0));
                }
                row
            })
            .collect();
    let table_rows: Vec<(&str, Summary)> = rows
        .iter()
        .map(|(name, summary, _)| (*name, summary.clone()))
        .collect();
    let mut text = if rows.is_empty() {
        "no function is under #[manhole::inspect(calls)]\n".to_owned()
    } else {
        stats_table(&table_rows)
    };
    let mut json = json!({ "functions": functions });
    if let Some(window) = window {
        json["window_s"] = json!(window.as_secs_f64());
        let mut heading = format!("over the last {}", seconds_human(window.as_secs_f64()));
        for (name, summary, covered) in &rows {
            match covered {
                Some(Some(covered)) if *covered + Duration::from_millis(500) < window => {
                    let _ = write!(
                        heading,
                        "; `{name}` only {} (history since its reset or the manhole's start)",
                        seconds_human(covered.as_secs_f64())
                    );
                }
                Some(None) => {
                    let _ = write!(heading, "; `{name}` since the process started");
                }
                _ => {}
            }
            let _ = summary;
        }
        let rates: Vec<String> = functions
            .iter()
            .filter_map(|row| {
                Some(format!(
                    "{} {}/s",
                    row["name"].as_str()?,
                    row["calls_per_s"].as_f64()?
                ))
            })
            .collect();
        if !rates.is_empty() {
            let _ = write!(heading, "\ncalls per second: {}", rates.join(", "));
        }
        text = format!("{heading}\n{text}");
    }
    Answer { json, text }
}

/// `stats reset [NAME]`: zeroes one function's counters, or every one's.
fn stats_reset(name: Option<&str>) -> Result<Answer, Failure> {
    let all = registry::call_stats();
    let chosen: Vec<(&str, _)> = match name {
        None => all,
        Some(name) => {
            let found: Vec<_> = all.into_iter().filter(|(n, _)| *n == name).collect();
            if found.is_empty() {
                let item = inspected_item(name)?;
                return Err(Failure::new(
                    Reason::WrongKind,
                    format!(
                        "`{}` is not under #[manhole::inspect(calls)], so it has no call statistics to reset",
                        item.meta.name
                    ),
                ));
            }
            found
        }
    };
    let mut kept = 0;
    let names: Vec<&str> = chosen
        .iter()
        .map(|(name, stats)| {
            kept += stats.reset();
            *name
        })
        .collect();
    let mut text = match names.as_slice() {
        [] => "no function is under #[manhole::inspect(calls)]; nothing to reset".to_owned(),
        [one] => format!("reset the call statistics of `{one}` to zero"),
        many => format!(
            "reset the call statistics of {} functions to zero: {}",
            many.len(),
            many.join(", ")
        ),
    };
    if kept > 0 {
        let _ = write!(
            text,
            "; {kept} call{} in flight stay counted",
            if kept == 1 { "" } else { "s" }
        );
    }
    text.push('\n');
    Ok(Answer {
        json: json!({"reset": names, "in_flight": kept}),
        text,
    })
}

fn stats_table(rows: &[(&str, Summary)]) -> String {
    let name_width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    // Async functions add how many of their polls ran past `slow_poll`.
    let any_async = rows.iter().any(|(_, summary)| summary.slow_polls.is_some());
    let mut text = format!(
        "{:<name_width$}  {:>9}  {:>9}  {:>7}  {:>7}  {:>8}  {:>8}  {:>8}  {:>8}",
        "NAME", "CALLS", "IN-FLIGHT", "ERRORS", "PANICS", "MEAN", "P50", "P99", "MAX"
    );
    if any_async {
        text.push_str("  SLOW-POLLS");
    }
    text.push('\n');
    for (name, summary) in rows {
        let _ = write!(
            text,
            "{:<name_width$}  {:>9}  {:>9}  {:>7}  {:>7}  {:>8}  {:>8}  {:>8}  {:>8}",
            name,
            summary.calls,
            summary.in_flight,
            summary.errors,
            summary.panics,
            human(summary.mean_ns),
            human(summary.p50_ns),
            human(summary.p99_ns),
            human(summary.max_ns),
        );
        if any_async {
            let slow = summary
                .slow_polls
                .map_or_else(|| "-".to_owned(), |count| count.to_string());
            let _ = write!(text, "  {slow:>10}");
        }
        text.push('\n');
    }
    text
}

fn call(name: &str, args: &[ArgValue], bare: bool, asked: Asked<'_>) -> Result<Answer, Failure> {
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

/// Says which item a failure came from, for the failures whose message is
/// the user's own text (an `Err`, a panic, a held lock).
fn in_context(failure: Failure, name: &str, doing: &str) -> Failure {
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

fn ambiguous<T: Named>(name: &str, items: &[&T]) -> Failure {
    let places: Vec<String> = items.iter().map(|item| item.meta().location()).collect();
    Failure::new(
        Reason::Ambiguous,
        format!(
            "`{name}` is registered more than once, in {}; give one a distinct `name = \"...\"`",
            places.join(" and ")
        ),
    )
}

fn unknown(what: &str, name: &str, commands: &[&Command], inspected: &[&Inspect]) -> Failure {
    let names = commands
        .iter()
        .map(|c| c.meta.name)
        .chain(inspected.iter().map(|i| i.meta.name))
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
