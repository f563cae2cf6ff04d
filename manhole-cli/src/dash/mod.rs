//! `manhole-cli PID dash`: a live dashboard of the process's threads,
//! in-flight calls, counted calls, runtime, log and stalls.
//!
//! No special build and no port: the same session and the same built-ins,
//! asked once per interval, one request at a time, by a poller thread that
//! owns the connection. `top` itself measures over the interval, so a round
//! is: `top` (the interval), then `tasks`, `stats --window`, `runtime`,
//! `log` and `stalls`. A built-in the server lacks (an older server, a
//! feature it was built without) hides its pane. The UI thread draws and
//! reads keys, and never waits on the process.

mod panes;
mod view;

use crate::error::Error;
use crate::rpc::{Client, ErrorReply};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::ExecutableCommand as _;
use manhole_wire::{LogRequest, Reason, Request, SortBy};
use panes::{Pane, Popup, Prompt, Screen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use serde_json::Value;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};
use view::{View, HISTORY};

/// The word that starts the dashboard: `manhole-cli PID dash`.
pub const DASH_COMMAND: &str = "dash";
/// Its flag for the interval between rounds.
pub const INTERVAL_FLAG: &str = "--interval";
/// The interval when not told.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The interval asked for by `dash [--interval DURATION]`.
///
/// # Errors
///
/// A message for a bad duration or an unknown word.
pub fn interval_of(words: &[String]) -> Result<Duration, String> {
    match words {
        [] => Ok(DEFAULT_INTERVAL),
        [flag, value] if flag == INTERVAL_FLAG => manhole_wire::parse_duration(value)
            .filter(|interval| *interval >= Duration::from_millis(200))
            .ok_or_else(|| format!("`{INTERVAL_FLAG}` takes a duration of 200ms or more, such as 1s; got `{value}`")),
        _ => Err(format!("usage: {DASH_COMMAND} [{INTERVAL_FLAG} DURATION]")),
    }
}

/// What the UI asks of the poller.
enum Ask {
    Stack(i64),
    LogFilter(String),
    Pause(bool),
}

/// What the poller tells the UI.
enum Update {
    View(Box<View>),
    Popup(Popup),
    Status(String, bool),
}

/// Puts the terminal back as it was when dropped: on quit, on an error,
/// and on a panic (the hook restores it before the message is printed).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let mut stdout = std::io::stdout();
    let _ = stdout.execute(LeaveAlternateScreen);
    let _ = stdout.execute(crossterm::cursor::Show);
}

impl TerminalGuard {
    fn open() -> Result<TerminalGuard, Error> {
        let failed = |err: std::io::Error| Error::io("set up the terminal", err);
        terminal::enable_raw_mode().map_err(failed)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        let mut stdout = std::io::stdout();
        stdout.execute(EnterAlternateScreen).map_err(failed)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).map_err(failed)?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the dashboard until `q` or Ctrl-C. `who` names the process in the
/// status line; `pid` is its pid when it is on this machine (to tell a
/// process that exited from a connection lost); `reconnect` opens a new
/// session after a lost one.
///
/// # Errors
///
/// The terminal could not be set up or drawn on.
pub fn run(
    mut client: Client,
    who: String,
    pid: Option<i32>,
    interval: Duration,
    mut reconnect: impl FnMut() -> Result<Client, Error> + Send + 'static,
) -> Result<(), Error> {
    client.show_countdown(false);
    // Everything drawn came from the server: no control character of it
    // reaches the terminal.
    client.escape_replies();
    let reconnect = move || {
        reconnect().map(|mut client| {
            client.escape_replies();
            client
        })
    };
    let who = crate::escape::field(&who).into_owned();
    let (asks, asked) = mpsc::channel();
    let (updates, updated) = mpsc::channel();
    let label = format!("{who} · every {}", humanize(interval));
    std::thread::Builder::new()
        .name("manhole-dash".to_owned())
        .spawn(move || poll(client, interval, pid, reconnect, &asked, &updates))
        .map_err(|err| Error::io("start the dashboard's poller", err))?;
    let mut terminal = TerminalGuard::open()?;
    let mut view = View::default();
    let mut screen = Screen {
        status: format!("{label} · connecting"),
        ..Screen::default()
    };
    let mut last_update: Option<Instant> = None;
    let mut connection = String::from("connecting");
    loop {
        while let Ok(update) = updated.try_recv() {
            match update {
                Update::View(new) => {
                    view = *new;
                    last_update = Some(Instant::now());
                    connection.clear();
                    screen.trouble = false;
                }
                Update::Popup(popup) => screen.popup = Some(popup),
                Update::Status(text, trouble) => {
                    connection = text;
                    screen.trouble = trouble;
                }
            }
        }
        let age = last_update.map_or_else(
            || "waiting for the first round".to_owned(),
            |at| format!("updated {:.1}s ago", at.elapsed().as_secs_f64()),
        );
        screen.status = format!(
            "{label} · {age}{}{} · ? for keys, q quits",
            if screen.paused { " · PAUSED" } else { "" },
            if connection.is_empty() {
                String::new()
            } else {
                format!(" · {connection}")
            }
        );
        terminal
            .terminal
            .draw(|frame| panes::draw(frame, &view, &screen))
            .map_err(|err| Error::io("draw the dashboard", err))?;
        if !event::poll(Duration::from_millis(100)).unwrap_or(false) {
            continue;
        }
        let Ok(Event::Key(key)) = event::read() else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        if !on_key(key, &view, &mut screen, &asks) {
            return Ok(());
        }
    }
}

/// Handles one key; `false` to quit.
fn on_key(key: KeyEvent, view: &View, screen: &mut Screen, asks: &Sender<Ask>) -> bool {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl_c {
        return false;
    }
    match screen.popup.take() {
        Some(Popup::Input(prompt, mut typed)) => {
            match key.code {
                KeyCode::Enter => match prompt {
                    Prompt::Filter => screen.filter = typed,
                    Prompt::LogFilter if !typed.is_empty() => {
                        let _ = asks.send(Ask::LogFilter(typed));
                    }
                    Prompt::LogFilter => {}
                },
                KeyCode::Esc if prompt == Prompt::Filter => screen.filter.clear(),
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    typed.pop();
                    screen.popup = Some(Popup::Input(prompt, typed));
                }
                KeyCode::Char(letter) => {
                    typed.push(letter);
                    screen.popup = Some(Popup::Input(prompt, typed));
                }
                _ => screen.popup = Some(Popup::Input(prompt, typed)),
            }
            return true;
        }
        // Any key closes a window; `q` still quits.
        Some(_) => return key.code != KeyCode::Char('q'),
        None => {}
    }
    let panes = Screen::panes(view);
    let count = panes.len().max(1);
    let focused = screen.focused(view);
    match key.code {
        KeyCode::Char('q') => return false,
        KeyCode::Tab => screen.focus = (screen.focus + 1) % count,
        KeyCode::BackTab => screen.focus = (screen.focus + count - 1) % count,
        KeyCode::Down | KeyCode::Up => {
            if let Some(pane) = focused {
                let rows = panes::rows_in(pane, view, screen);
                let now = screen.selected_of(pane);
                let next = if key.code == KeyCode::Down {
                    (now + 1).min(rows.saturating_sub(1))
                } else {
                    now.saturating_sub(1)
                };
                screen.select(pane, next);
            }
        }
        KeyCode::Enter => match focused {
            Some(Pane::Threads) => {
                let threads = panes::threads_shown(view, screen);
                if let Some(thread) = threads.get(screen.selected_of(Pane::Threads)) {
                    let _ = asks.send(Ask::Stack(thread.tid));
                }
            }
            Some(Pane::Tasks) => {
                if let Some(task) = view
                    .tasks
                    .as_ref()
                    .and_then(|tasks| tasks.get(screen.selected_of(Pane::Tasks)))
                {
                    let mut lines = Vec::new();
                    subtree_lines(&task.node, 0, &mut lines);
                    screen.popup = Some(Popup::Text(format!("subtree of {}", task.label), lines));
                }
            }
            _ => {}
        },
        KeyCode::Char('s') => screen.sort = screen.sort.next(),
        KeyCode::Char('/') => {
            screen.popup = Some(Popup::Input(Prompt::Filter, screen.filter.clone()));
        }
        KeyCode::Char('p') => {
            screen.paused = !screen.paused;
            let _ = asks.send(Ask::Pause(screen.paused));
        }
        KeyCode::Char('f') => {
            screen.popup = Some(Popup::Input(
                Prompt::LogFilter,
                view.log_filter.clone().unwrap_or_default(),
            ));
        }
        KeyCode::Char('?') => screen.popup = Some(Popup::Help),
        _ => {}
    }
    true
}

fn subtree_lines(node: &Value, depth: usize, lines: &mut Vec<String>) {
    let name = node["name"].as_str().unwrap_or("?");
    let label = match node["args"].as_str() {
        Some(args) => format!("{name}({args})"),
        None => name.to_owned(),
    };
    lines.push(format!(
        "{:indent$}{label}  {}  {}",
        "",
        panes::millis(node["age_ms"].as_f64().unwrap_or(0.0)),
        node["state"].as_str().unwrap_or(""),
        indent = depth * 2
    ));
    for child in node["children"].as_array().into_iter().flatten() {
        subtree_lines(child, depth + 1, lines);
    }
}

/// `1s`, `500ms`.
fn humanize(interval: Duration) -> String {
    if interval.subsec_millis() == 0 {
        format!("{}s", interval.as_secs())
    } else {
        format!("{}ms", interval.as_millis())
    }
}

/// Whether a failure means the server lacks the built-in, which hides its
/// pane, rather than a passing error.
fn lacks(reply: &ErrorReply) -> bool {
    [Reason::UnknownMethod, Reason::NotEnabled, Reason::NoRuntime]
        .iter()
        .any(|reason| reply.failure.is(*reason))
}

/// The poller: rounds of requests, one at a time, until the UI is gone.
fn poll(
    client: Client,
    interval: Duration,
    pid: Option<i32>,
    mut reconnect: impl FnMut() -> Result<Client, Error>,
    asks: &Receiver<Ask>,
    updates: &Sender<Update>,
) {
    let mut client = Some(client);
    let mut view = View::default();
    let mut paused = false;
    loop {
        // What the UI asked meanwhile.
        loop {
            match asks.try_recv() {
                Ok(Ask::Pause(now)) => paused = now,
                Ok(Ask::Stack(tid)) => {
                    if let Some(session) = client.as_mut() {
                        if let Some(popup) = stack_popup(session, tid) {
                            if updates.send(Update::Popup(popup)).is_err() {
                                return;
                            }
                        }
                    }
                }
                Ok(Ask::LogFilter(filter)) => {
                    if let Some(session) = client.as_mut() {
                        let set = Request::Log(LogRequest::Set {
                            filter,
                            revert_after: None,
                        });
                        if let Ok(Err(reply)) = session.ask(&set) {
                            let _ = updates.send(Update::Popup(Popup::Text(
                                "log filter".to_owned(),
                                vec![reply.failure.one_line()],
                            )));
                        }
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        if paused {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let Some(session) = client.as_mut() else {
            if pid.is_some_and(|pid| !crate::procfs::runs(pid)) {
                let pid = pid.unwrap_or_default();
                let _ = updates.send(Update::Status(format!("process {pid} has exited"), true));
                std::thread::sleep(Duration::from_millis(500));
                if updates
                    .send(Update::Status(format!("process {pid} has exited"), true))
                    .is_err()
                {
                    return;
                }
                continue;
            }
            match reconnect() {
                Ok(mut fresh) => {
                    fresh.show_countdown(false);
                    client = Some(fresh);
                    let _ = updates.send(Update::Status("reconnected".to_owned(), false));
                }
                Err(err) => {
                    if updates
                        .send(Update::Status(
                            format!("connection lost: {err}; retrying"),
                            true,
                        ))
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            continue;
        };
        match round(session, interval, &mut view) {
            Ok(()) => {
                if updates.send(Update::View(Box::new(view.clone()))).is_err() {
                    return;
                }
            }
            Err(err) => {
                client = None;
                if updates
                    .send(Update::Status(format!("connection lost: {err}"), true))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// One round of requests into `view`.
fn round(session: &mut Client, interval: Duration, view: &mut View) -> Result<(), Error> {
    // `top` samples over the interval: the round's own wait.
    let top = session.ask(&Request::Top { interval })?;
    let tasks = session.ask(&Request::Tasks {
        older_than: Duration::ZERO,
    })?;
    // A thread's poll comes from `tasks`, when there is one.
    let polls = tasks.as_ref().ok();
    apply(
        view,
        &top,
        &mut |view, top| view.set_threads(top, polls),
        |view| {
            view.threads = None;
        },
    );
    apply(view, &tasks, &mut View::set_tasks, |view| view.tasks = None);
    if !view.history_asked {
        view.history_asked = true;
        // The first round: the sparklines start from the recorder's last
        // minute, where the server keeps one (an error leaves them empty).
        let past = session.ask(&Request::History {
            since: Duration::from_secs(HISTORY as u64),
            every: Duration::from_secs(1),
            names: Vec::new(),
        })?;
        if let Ok(past) = past {
            view.prefill_history(&past);
        }
    }
    let stats = session.ask(&Request::Stats {
        sort: SortBy::Name,
        window: Some(interval.max(Duration::from_secs(1))),
    })?;
    apply(view, &stats, &mut View::set_calls, |view| view.calls = None);
    let runtime = session.ask(&Request::Runtime)?;
    apply(view, &runtime, &mut View::set_runtime, |view| {
        view.runtime = None
    });
    // The filter in force, then the events after the newest kept.
    let shown = session.ask(&Request::Log(LogRequest::Show))?;
    apply(view, &shown, &mut View::set_log_filter, |view| {
        view.log = None
    });
    if shown.is_ok() {
        let events = session.ask(&Request::Log(LogRequest::After(view.newest_log())))?;
        apply(view, &events, &mut View::add_log, |view| view.log = None);
    }
    let stalls = session.ask(&Request::Stalls { short: false })?;
    apply(view, &stalls, &mut View::set_stalls, |view| {
        view.stalls = None
    });
    Ok(())
}

/// One built-in's answer for its pane: shown; the pane hidden when the
/// server lacks the built-in; or, after a passing error, left as it was.
fn apply(
    view: &mut View,
    answer: &Result<Value, ErrorReply>,
    show: &mut dyn FnMut(&mut View, &Value),
    hide: fn(&mut View),
) {
    match answer {
        Ok(value) => show(view, value),
        Err(reply) if lacks(reply) => hide(view),
        Err(_) => {}
    }
}

/// A thread's stack, shortened, for the popup.
fn stack_popup(session: &mut Client, tid: i64) -> Option<Popup> {
    let asked = session.ask(&Request::Stacks {
        collapse: false,
        short: true,
        thread: Some(tid.to_string()),
    });
    let lines = match asked {
        Ok(Ok(dump)) => {
            let thread = dump["threads"].get(0)?;
            let mut lines = Vec::new();
            for frame in thread["frames"].as_array().into_iter().flatten() {
                if let Some(folded) = frame["folded"].as_u64() {
                    lines.push(format!("     … {folded} runtime frames"));
                    continue;
                }
                lines.push(format!(
                    "  {}",
                    frame["function"].as_str().unwrap_or("<unknown>")
                ));
                if let (Some(file), Some(line)) = (frame["file"].as_str(), frame["line"].as_u64()) {
                    lines.push(format!("        at {file}:{line}"));
                }
            }
            lines
        }
        Ok(Err(reply)) => vec![reply.failure.one_line()],
        Err(err) => vec![err.to_string()],
    };
    Some(Popup::Text(format!("stack of thread {tid}"), lines))
}
