//! Drawing the dashboard: one function per pane, from the [`View`] and the
//! [`Screen`] state (focus, selection, sort, filter, popup), so that each
//! can be tested against ratatui's `TestBackend` with fixed answers.

use super::view::{CallRow, ThreadRow, View};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;
use std::collections::HashMap;

/// The panes, in the order `Tab` visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Threads,
    Tasks,
    Calls,
    Runtime,
    Log,
    Stalls,
}

impl Pane {
    pub const ALL: [Pane; 6] = [
        Pane::Threads,
        Pane::Tasks,
        Pane::Calls,
        Pane::Runtime,
        Pane::Log,
        Pane::Stalls,
    ];

    fn title(self) -> &'static str {
        match self {
            Pane::Threads => "threads",
            Pane::Tasks => "tasks",
            Pane::Calls => "calls",
            Pane::Runtime => "runtime",
            Pane::Log => "log",
            Pane::Stalls => "stalls",
        }
    }

    /// Whether the server gave what this pane shows.
    pub fn shown(self, view: &View) -> bool {
        match self {
            Pane::Threads => view.threads.is_some(),
            Pane::Tasks => view.tasks.is_some(),
            Pane::Calls => view.calls.is_some(),
            Pane::Runtime => view.runtime.is_some(),
            Pane::Log => view.log.is_some(),
            Pane::Stalls => view.stalls.is_some(),
        }
    }
}

/// How the threads and calls are sorted (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Threads by CPU, calls by calls/s: the busiest first.
    #[default]
    Busiest,
    /// Calls by p99, threads by CPU still.
    Slowest,
    /// By name.
    Name,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Busiest => Sort::Slowest,
            Sort::Slowest => Sort::Name,
            Sort::Name => Sort::Busiest,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Busiest => "busiest",
            Sort::Slowest => "slowest",
            Sort::Name => "name",
        }
    }
}

/// A window over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    /// A title and its lines (a thread's stack, a task's subtree).
    Text(String, Vec<String>),
    /// Typing a value: what for, and what is typed so far.
    Input(Prompt, String),
}

/// What a typed value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Filter,
    LogFilter,
}

/// Everything on screen that is not the process's: the UI's own state.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    pub focus: usize,
    /// The selected row of each pane, by [`Pane::ALL`] index.
    pub selected: [usize; 6],
    pub sort: Sort,
    /// Only threads and calls whose name contains this.
    pub filter: String,
    pub paused: bool,
    pub popup: Option<Popup>,
    /// The status line: the process, the interval, the connection.
    pub status: String,
    /// Whether the status says something is wrong (red).
    pub trouble: bool,
}

impl Screen {
    /// The panes shown, in `Tab` order.
    pub fn panes(view: &View) -> Vec<Pane> {
        Pane::ALL
            .into_iter()
            .filter(|pane| pane.shown(view))
            .collect()
    }

    /// The pane that has the focus.
    pub fn focused(&self, view: &View) -> Option<Pane> {
        let panes = Self::panes(view);
        panes.get(self.focus % panes.len().max(1)).copied()
    }

    pub fn selected_of(&self, pane: Pane) -> usize {
        self.selected[pane_index(pane)]
    }

    pub fn select(&mut self, pane: Pane, row: usize) {
        self.selected[pane_index(pane)] = row;
    }
}

fn pane_index(pane: Pane) -> usize {
    Pane::ALL.iter().position(|each| *each == pane).unwrap_or(0)
}

/// The threads as shown: filtered and sorted.
pub fn threads_shown<'a>(view: &'a View, screen: &Screen) -> Vec<&'a ThreadRow> {
    let mut rows: Vec<&ThreadRow> = view
        .threads
        .iter()
        .flatten()
        .filter(|row| row.name.contains(&screen.filter))
        .collect();
    match screen.sort {
        Sort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.tid.cmp(&b.tid))),
        Sort::Busiest => {
            rows.sort_by(|a, b| {
                b.cpu_percent
                    .total_cmp(&a.cpu_percent)
                    .then(a.tid.cmp(&b.tid))
            });
        }
        // The poll that blocks its worker first, then the longest poll.
        Sort::Slowest => {
            let key = |row: &ThreadRow| match &row.polling {
                Some((_, for_ms, blocking)) => (*blocking, *for_ms),
                None => (false, -1.0),
            };
            rows.sort_by(|a, b| {
                let ((a_blocks, a_ms), (b_blocks, b_ms)) = (key(a), key(b));
                b_blocks
                    .cmp(&a_blocks)
                    .then(b_ms.total_cmp(&a_ms))
                    .then(b.cpu_percent.total_cmp(&a.cpu_percent))
                    .then(a.tid.cmp(&b.tid))
            });
        }
    }
    rows
}

/// For each counted function in flight, from the tasks pane: whether one of
/// its calls blocks its worker, and the age of its oldest call.
fn in_flight_by_name(view: &View) -> HashMap<&str, (bool, f64)> {
    let mut found: HashMap<&str, (bool, f64)> = HashMap::new();
    for task in view.tasks.iter().flatten() {
        let name = task.label.split('(').next().unwrap_or(&task.label);
        let entry = found.entry(name).or_insert((false, 0.0));
        entry.0 |= task.blocking;
        entry.1 = entry.1.max(task.age_ms);
    }
    found
}

/// The calls as shown: filtered and sorted.
pub fn calls_shown<'a>(view: &'a View, screen: &Screen) -> Vec<&'a CallRow> {
    let mut rows: Vec<&CallRow> = view
        .calls
        .iter()
        .flatten()
        .filter(|row| row.name.contains(&screen.filter))
        .collect();
    match screen.sort {
        Sort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        Sort::Busiest => rows.sort_by(|a, b| b.calls_per_s.total_cmp(&a.calls_per_s)),
        // A call that blocks its worker first, then the oldest call in
        // flight, then the slowest p99.
        Sort::Slowest => {
            let in_flight = in_flight_by_name(view);
            let key = |row: &CallRow| {
                in_flight
                    .get(row.name.as_str())
                    .copied()
                    .unwrap_or((false, 0.0))
            };
            rows.sort_by(|a, b| {
                let ((a_blocks, a_age), (b_blocks, b_age)) = (key(a), key(b));
                b_blocks
                    .cmp(&a_blocks)
                    .then(b_age.total_cmp(&a_age))
                    .then(b.p99_ns.unwrap_or(0.0).total_cmp(&a.p99_ns.unwrap_or(0.0)))
            });
        }
    }
    rows
}

/// Which of `columns` (`(heading, width, use)`, the name's width given as
/// 0) fit in `width`: the name always, with at least `name_at_least`
/// columns of its own, and the others by `use` (most used first) while
/// there is room. Returns the name's width (what is left) and which are
/// shown, in the order given.
fn fitting_columns(
    width: u16,
    name_at_least: u16,
    columns: &[(&'static str, u16, u8)],
) -> (u16, Vec<bool>) {
    let name = columns
        .iter()
        .position(|(_, _, used)| *used == 0)
        .unwrap_or(0);
    let mut by_use: Vec<usize> = (0..columns.len()).filter(|&index| index != name).collect();
    by_use.sort_by_key(|&index| columns[index].2);
    let mut shown = vec![false; columns.len()];
    shown[name] = true;
    let mut used = name_at_least;
    for index in by_use {
        let needed = columns[index].1 + 1;
        if used + needed <= width {
            used += needed;
            shown[index] = true;
        }
    }
    let others: u16 = columns
        .iter()
        .zip(&shown)
        .enumerate()
        .filter(|(index, (_, shown))| *index != name && **shown)
        .map(|(_, ((_, width, _), _))| width + 1)
        .sum();
    (width.saturating_sub(others).max(1), shown)
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// How many rows a pane has, for moving the selection.
pub fn rows_in(pane: Pane, view: &View, screen: &Screen) -> usize {
    match pane {
        Pane::Threads => threads_shown(view, screen).len(),
        Pane::Tasks => view.tasks.as_ref().map_or(0, Vec::len),
        Pane::Calls => calls_shown(view, screen).len(),
        Pane::Runtime => view
            .runtime
            .as_ref()
            .map_or(0, |runtime| runtime.workers.len()),
        Pane::Log => view.log.as_ref().map_or(0, |log| log.len()),
        Pane::Stalls => view.stalls.as_ref().map_or(0, Vec::len),
    }
}

/// The whole dashboard.
pub fn draw(frame: &mut Frame<'_>, view: &View, screen: &Screen) {
    let [body, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let panes = Screen::panes(view);
    let focused = screen.focused(view);
    // Two columns: threads, calls and runtime on the left; tasks, stalls
    // and the log on the right.
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let column = |area: Rect, members: &[Pane]| -> Vec<(Pane, Rect)> {
        let present: Vec<Pane> = members
            .iter()
            .copied()
            .filter(|pane| panes.contains(pane))
            .collect();
        if present.is_empty() {
            return Vec::new();
        }
        let areas = Layout::default()
            .direction(Direction::Vertical)
            .constraints(present.iter().map(|pane| match pane {
                Pane::Runtime => Constraint::Length(3 + 2),
                _ => Constraint::Fill(1),
            }))
            .split(area);
        present.into_iter().zip(areas.iter().copied()).collect()
    };
    let mut placed = column(left, &[Pane::Threads, Pane::Calls, Pane::Runtime]);
    placed.extend(column(right, &[Pane::Tasks, Pane::Stalls, Pane::Log]));
    for (pane, area) in placed {
        let block = Block::default()
            .borders(Borders::ALL)
            .title(pane_title(pane, screen))
            .border_style(if Some(pane) == focused {
                Style::default().fg(Color::Cyan)
            } else {
                Style::default()
            });
        let inner = block.inner(area);
        frame.render_widget(block, area);
        match pane {
            Pane::Threads => draw_threads(frame, inner, view, screen),
            Pane::Tasks => draw_tasks(frame, inner, view, screen),
            Pane::Calls => draw_calls(frame, inner, view, screen),
            Pane::Runtime => draw_runtime(frame, inner, view),
            Pane::Log => draw_log(frame, inner, view),
            Pane::Stalls => draw_stalls(frame, inner, view, screen),
        }
    }
    let status_style = if screen.trouble {
        Style::default().fg(Color::White).bg(Color::Red)
    } else {
        Style::default().add_modifier(Modifier::REVERSED)
    };
    frame.render_widget(
        Paragraph::new(screen.status.as_str()).style(status_style),
        status,
    );
    if let Some(popup) = &screen.popup {
        draw_popup(frame, popup);
    }
}

fn pane_title(pane: Pane, screen: &Screen) -> String {
    let mut title = format!(" {} ", pane.title());
    if matches!(pane, Pane::Threads | Pane::Calls) {
        title.push_str(&format!("(by {}) ", screen.sort.label()));
        if !screen.filter.is_empty() {
            title.push_str(&format!("/{} ", screen.filter));
        }
    }
    title
}

fn highlight(selected: bool, focused: bool) -> Style {
    if selected && focused {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
    }
}

/// `1.2 ms`, `340 µs`, `2.1 s`.
pub fn nanos(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(ns) if ns >= 1e9 => format!("{:.1} s", ns / 1e9),
        Some(ns) if ns >= 1e6 => format!("{:.1} ms", ns / 1e6),
        Some(ns) if ns >= 1e3 => format!("{:.0} µs", ns / 1e3),
        Some(ns) => format!("{ns:.0} ns"),
    }
}

/// `850 ms`, `12.3 s`, `4m05s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let seconds = (ms / 1000.0) as u64;
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

fn draw_threads(frame: &mut Frame<'_>, area: Rect, view: &View, screen: &Screen) {
    let focused = screen.focused(view) == Some(Pane::Threads);
    let selected = screen.selected_of(Pane::Threads);
    // NAME, cut with `…` in a narrow pane but never dropped, then TID and
    // POLLING; CPU% and STATE while there is room.
    let (name_room, shown) = fitting_columns(
        area.width,
        12,
        &[
            ("TID", 8, 1),
            ("NAME", 0, 0),
            ("STATE", 9, 4),
            ("CPU%", 6, 3),
            ("POLLING", POLLING_AT_LEAST, 2),
        ],
    );
    // The name takes up to 16; POLLING the rest.
    let name_width = name_room.min(16);
    let headings = ["TID", "NAME", "STATE", "CPU%", "POLLING"];
    let widths = [
        Constraint::Length(8),
        Constraint::Length(name_width),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let rows: Vec<Row<'_>> = threads_shown(view, screen)
        .into_iter()
        .enumerate()
        .map(|(index, thread)| {
            let polling = match &thread.polling {
                Some((name, for_ms, blocking)) => format!(
                    "{name} {}{}",
                    millis(*for_ms),
                    if *blocking { " BLOCKING" } else { "" }
                ),
                None => String::new(),
            };
            let blocking = thread
                .polling
                .as_ref()
                .is_some_and(|(_, _, blocking)| *blocking);
            let style = if blocking {
                Style::default().fg(Color::Red)
            } else if thread.cpu_percent >= 50.0 {
                Style::default().fg(Color::Yellow)
            } else {
                Style::default()
            };
            let cells = [
                thread.tid.to_string(),
                cut(&thread.name, usize::from(name_width)),
                thread.state.clone(),
                format!("{:.1}", thread.cpu_percent),
                polling,
            ];
            Row::new(picked(&cells, &shown))
                .style(style.patch(highlight(index == selected, focused)))
        })
        .collect();
    let table = Table::new(rows, picked(&widths, &shown)).header(
        Row::new(picked(&headings, &shown)).style(Style::default().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, area);
}

/// The least a thread's poll is given, before STATE and CPU% are.
const POLLING_AT_LEAST: u16 = 14;

/// The entries of `all` whose column is shown.
fn picked<T: Clone>(all: &[T], shown: &[bool]) -> Vec<T> {
    all.iter()
        .zip(shown)
        .filter(|(_, shown)| **shown)
        .map(|(item, _)| item.clone())
        .collect()
}

fn draw_tasks(frame: &mut Frame<'_>, area: Rect, view: &View, screen: &Screen) {
    let focused = screen.focused(view) == Some(Pane::Tasks);
    let selected = screen.selected_of(Pane::Tasks);
    let lines: Vec<Line<'_>> = match view.tasks.as_deref() {
        Some([]) => vec![Line::from("no instrumented async call in flight")],
        Some(tasks) => tasks
            .iter()
            .enumerate()
            .map(|(index, task)| {
                let state = if task.blocking {
                    let long = "BLOCKING its worker";
                    let needed = task.depth * 2 + task.label.len() + long.len() + 12;
                    if usize::from(area.width) >= needed {
                        long
                    } else {
                        "BLOCKING"
                    }
                } else if task.polling {
                    "polling"
                } else {
                    "waiting"
                };
                let style = if task.blocking {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                };
                // The label is cut, so that the age and the state stay on
                // the row.
                let age = millis(task.age_ms);
                let room = usize::from(area.width)
                    .saturating_sub(task.depth * 2 + age.len() + state.len() + 4);
                Line::from(format!(
                    "{:indent$}{}  {age}  {state}",
                    "",
                    cut(&task.label, room.max(8)),
                    indent = task.depth * 2
                ))
                .style(style.patch(highlight(index == selected, focused)))
            })
            .collect(),
        None => Vec::new(),
    };
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_calls(frame: &mut Frame<'_>, area: Rect, view: &View, screen: &Screen) {
    let focused = screen.focused(view) == Some(Pane::Calls);
    let selected = screen.selected_of(Pane::Calls);
    let calls = calls_shown(view, screen);
    let [table_area, spark_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(3)]).areas(area);
    // NAME always, cut with `…` when narrow; the other columns in order of
    // use while there is room.
    let (name_width, shown) = fitting_columns(
        table_area.width,
        14,
        &[
            ("NAME", 0, 0),
            ("CALLS/S", 9, 1),
            ("P50", 9, 4),
            ("P99", 9, 2),
            ("ERR/S", 8, 5),
            ("IN-FLIGHT", 9, 3),
        ],
    );
    let rows: Vec<Row<'_>> = calls
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let style = if row.errors_per_s > 0.0 {
                Style::default().fg(Color::Yellow)
            } else {
                Style::default()
            };
            let cells = [
                cut(&row.name, usize::from(name_width)),
                format!("{:.1}", row.calls_per_s),
                nanos(row.p50_ns),
                nanos(row.p99_ns),
                format!("{:.1}", row.errors_per_s),
                row.in_flight.to_string(),
            ];
            Row::new(picked(&cells, &shown))
                .style(style.patch(highlight(index == selected, focused)))
        })
        .collect();
    let widths = [
        Constraint::Length(name_width),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    let headings = ["NAME", "CALLS/S", "P50", "P99", "ERR/S", "IN-FLIGHT"];
    let table = Table::new(rows, picked(&widths, &shown)).header(
        Row::new(picked(&headings, &shown)).style(Style::default().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, table_area);
    if let Some(row) = calls.get(selected.min(calls.len().saturating_sub(1))) {
        let history: Vec<u64> = view
            .history
            .get(&row.name)
            .map(|history| history.iter().copied().collect())
            .unwrap_or_default();
        let spark = Sparkline::default()
            .block(Block::default().title(format!("{} calls/s, last minute", row.name)))
            .data(&history)
            .style(Style::default().fg(Color::Green));
        frame.render_widget(spark, spark_area);
    }
}

fn draw_runtime(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let Some(runtime) = &view.runtime else {
        return;
    };
    let [heading, bars] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!(
            "{} runtime, {} alive tasks, global queue {}",
            runtime.flavor, runtime.alive_tasks, runtime.global_queue_depth
        )),
        heading,
    );
    if runtime.workers.is_empty() {
        return;
    }
    let columns = Layout::horizontal(
        runtime
            .workers
            .iter()
            .map(|_| Constraint::Ratio(1, runtime.workers.len() as u32)),
    )
    .split(bars);
    for (worker, (busy, column)) in runtime.workers.iter().zip(columns.iter()).enumerate() {
        let ratio = busy.ratio.unwrap_or(0.0).clamp(0.0, 1.0);
        // A worker that never parked in the interval is drawn as the tasks
        // pane draws a blocking poll: it is the same event, seen by tokio.
        let (label, style) = if busy.throughout {
            (
                format!("w{worker} BLOCKING"),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        } else {
            let colour = if ratio > 0.9 {
                Color::Yellow
            } else {
                Color::Green
            };
            (
                format!("w{worker} {:.0}%", ratio * 100.0),
                Style::default().fg(colour),
            )
        };
        let gauge = Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(style);
        frame.render_widget(gauge, *column);
    }
}

fn level_style(level: &str) -> Style {
    match level {
        "ERROR" => Style::default().fg(Color::Red),
        "WARN" => Style::default().fg(Color::Yellow),
        "INFO" => Style::default().fg(Color::Green),
        "DEBUG" => Style::default().fg(Color::Blue),
        _ => Style::default().fg(Color::DarkGray),
    }
}

fn draw_log(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let Some(log) = &view.log else {
        return;
    };
    let height = usize::from(area.height.saturating_sub(1));
    let mut lines: Vec<Line<'_>> = vec![Line::from(format!(
        "filter: {} (f to change)",
        view.log_filter.as_deref().unwrap_or("?")
    ))
    .style(Style::default().add_modifier(Modifier::DIM))];
    lines.extend(
        log.iter()
            .skip(log.len().saturating_sub(height))
            .map(|event| {
                Line::from(vec![
                    Span::styled(format!("{:5} ", event.level), level_style(&event.level)),
                    Span::raw(format!("{}: {}", event.target, event.message)),
                ])
            }),
    );
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_stalls(frame: &mut Frame<'_>, area: Rect, view: &View, screen: &Screen) {
    let focused = screen.focused(view) == Some(Pane::Stalls);
    let selected = screen.selected_of(Pane::Stalls);
    let lines: Vec<Line<'_>> = match view.stalls.as_deref() {
        Some([]) => vec![Line::from(
            "no stall reported (is the watchdog on? `watchdog 500ms`)",
        )],
        Some(stalls) => stalls
            .iter()
            .enumerate()
            .map(|(index, stall)| {
                let style = if stall.over {
                    Style::default()
                } else {
                    Style::default().fg(Color::Red)
                };
                // Most telling first, so that a narrow pane cuts the least:
                // when, what kind, how long, a deadlock, then the calls
                // with their arguments; one that is over is not red.
                let line = format!(
                    "{} {} {}{} {}{}",
                    stall.at.get(11..19).unwrap_or(&stall.at),
                    stall.kind,
                    millis(stall.for_ms as f64),
                    if stall.deadlock { " DEADLOCK" } else { "" },
                    stall.what,
                    if stall.over { " (over)" } else { "" }
                );
                Line::from(cut(&line, usize::from(area.width)))
                    .style(style.patch(highlight(index == selected, focused)))
            })
            .collect(),
        None => Vec::new(),
    };
    frame.render_widget(Paragraph::new(lines), area);
}

/// The keys, for `?`.
pub const HELP: &[&str] = &[
    "Tab / Shift-Tab   next / previous pane",
    "Up / Down         select a row",
    "Enter             a thread's stack, a task's subtree",
    "s                 sort: busiest, slowest, by name",
    "/                 filter threads and calls by name",
    "p                 pause / resume",
    "f                 set the log filter",
    "?                 this help",
    "q, Ctrl-C         quit",
];

fn draw_popup(frame: &mut Frame<'_>, popup: &Popup) {
    let area = frame.area();
    let width = area.width.saturating_mul(3) / 4;
    let height = match popup {
        Popup::Input(..) => 3,
        _ => area.height.saturating_mul(3) / 4,
    };
    let window = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, window);
    let (title, lines): (String, Vec<Line<'_>>) = match popup {
        Popup::Help => (
            " keys (any key closes) ".to_owned(),
            HELP.iter().map(|line| Line::from(*line)).collect(),
        ),
        Popup::Text(title, lines) => (
            format!(" {title} (Esc closes) "),
            lines.iter().map(|line| Line::from(line.as_str())).collect(),
        ),
        Popup::Input(prompt, typed) => (
            match prompt {
                Prompt::Filter => " filter by name (Enter keeps, Esc clears) ".to_owned(),
                Prompt::LogFilter => {
                    " log filter, as RUST_LOG (Enter sets, Esc cancels) ".to_owned()
                }
            },
            vec![Line::from(format!("{typed}_"))],
        ),
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        window,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use serde_json::json;
    use std::collections::VecDeque;

    fn view() -> View {
        let mut view = View::default();
        let tasks = json!({"tasks": [{
            "name": "handle", "args": "id=7", "age_ms": 4500.0, "state": "waiting",
            "thread": null, "poll_ms": null, "blocking": false,
            "children": [{"name": "compact", "args": null, "age_ms": 1200.0, "state": "polling",
                "thread": 12, "poll_ms": 1200.0, "blocking": true, "children": []}]
        }]});
        view.set_threads(
            &json!({"seconds": 1.0, "threads": [
                {"tid": 11, "name": "idle-worker", "state": "sleeping", "cpu_percent": 0.0},
                {"tid": 12, "name": "hot-worker", "state": "running", "cpu_percent": 97.5},
            ]}),
            Some(&tasks),
        );
        view.set_tasks(&tasks);
        view.set_calls(&json!({"window_s": 1, "functions": [
            {"name": "handle", "calls_per_s": 40.0, "p50_ns": 1_200_000.0, "p99_ns": 9_000_000.0,
             "errors": 2, "covered_s": 1.0, "in_flight": 3},
        ]}));
        view
    }

    fn render(view: &View, screen: &Screen) -> String {
        render_at(view, screen, 140, 40)
    }

    use ratatui::Terminal;

    fn render_at(view: &View, screen: &Screen, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, view, screen)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn at_80_by_24_every_pane_keeps_its_names() {
        let mut view = view();
        view.set_calls(&json!({"functions": [
            {"name": "handle_request", "calls_per_s": 5934.4, "p50_ns": 9_000.0,
             "p99_ns": 72_000.0, "errors": 0, "covered_s": 1.0, "in_flight": 2},
        ]}));
        view.set_stalls(&json!({"reports": [{"kind": "lock_wait", "name": "LOCK_A",
            "chain": ["LOCK_A"], "for_ms": 5100, "at": "2026-12-08T01:00:00.000Z",
            "deadlock": true}, {"kind": "stuck_call", "name": "handle",
            "chain": ["handle(id=7)", "fetch_backend(host=\"db1\")"], "for_ms": 6200,
            "at": "2026-12-08T01:00:01.000Z", "ended_after_ms": 7000}]}));
        for (width, height) in [(80, 24), (200, 60)] {
            let text = render_at(&view, &Screen::default(), width, height);
            assert!(text.contains("handle_request"), "{width}x{height}:\n{text}");
            assert!(text.contains("hot-worker"), "{width}x{height}:\n{text}");
            assert!(
                text.contains("compact 1.2 s"),
                "POLLING at {width}x{height}:\n{text}"
            );
            assert!(
                text.contains("lock_wait 5.1 s DEADLOCK"),
                "{width}x{height}:\n{text}"
            );
            assert!(
                text.contains("stuck_call 6.2 s handle("),
                "{width}x{height}:\n{text}"
            );
            assert!(
                text.contains("4.5 s  waiting") && text.contains("1.2 s  BLOCKING"),
                "task states at {width}x{height}:\n{text}"
            );
        }
    }

    #[test]
    fn a_wide_screen_shows_the_whole_chain() {
        let mut view = view();
        view.set_stalls(&json!({"reports": [{"kind": "stuck_call", "name": "handle",
            "chain": ["handle(id=7)", "fetch_backend(host=\"db1\")"], "for_ms": 6200,
            "at": "2026-12-08T01:00:01.000Z", "ended_after_ms": 7000}]}));
        let wide = render_at(&view, &Screen::default(), 200, 60);
        assert!(
            wide.contains("handle(id=7) → fetch_backend(host=\"db1\") (over)"),
            "{wide}"
        );
    }

    #[test]
    fn by_slowest_puts_the_blocking_poll_first() {
        let mut view = view();
        view.set_calls(&json!({"functions": [
            {"name": "fast", "calls_per_s": 9.6, "p50_ns": 1_000.0, "p99_ns": 9_600_000.0,
             "errors": 0, "covered_s": 1.0, "in_flight": 0},
            {"name": "compact", "calls_per_s": 0.0, "p50_ns": null, "p99_ns": null,
             "errors": 0, "covered_s": 1.0, "in_flight": 1},
        ]}));
        let slowest = Screen {
            sort: Sort::Slowest,
            ..Screen::default()
        };
        let names: Vec<&str> = calls_shown(&view, &slowest)
            .iter()
            .map(|row| row.name.as_str())
            .collect();
        assert_eq!(names[0], "compact", "{names:?}");
        let threads: Vec<&str> = threads_shown(&view, &slowest)
            .iter()
            .map(|row| row.name.as_str())
            .collect();
        assert_eq!(threads[0], "hot-worker", "{threads:?}");
    }

    #[test]
    fn threads_sorted_by_cpu_with_the_poll_that_blocks() {
        let view = view();
        let text = render(&view, &Screen::default());
        let hot = text.find("hot-worker").expect("the hot thread");
        let idle = text.find("idle-worker").expect("the idle thread");
        assert!(hot < idle, "busiest first:\n{text}");
        assert!(text.contains("compact 1.2 s BLOCKING"), "{text}");
        let by_name = Screen {
            sort: Sort::Name,
            ..Screen::default()
        };
        let text = render(&view, &by_name);
        assert!(text.find("hot-worker") < text.find("idle-worker"), "{text}");
        let filtered = Screen {
            filter: "idle".to_owned(),
            ..Screen::default()
        };
        let text = render(&view, &filtered);
        assert!(
            !text.contains("hot-worker") && text.contains("idle-worker"),
            "{text}"
        );
    }

    #[test]
    fn tasks_are_a_tree_with_arguments_and_the_blocking_poll_flagged() {
        let text = render(&view(), &Screen::default());
        assert!(text.contains("handle(id=7)  4.5 s  waiting"), "{text}");
        assert!(
            text.contains("  compact  1.2 s  BLOCKING its worker"),
            "{text}"
        );
    }

    #[test]
    fn calls_show_rate_latency_errors_and_a_sparkline() {
        let mut view = view();
        for rate in [10.0, 20.0, 30.0] {
            view.set_calls(&json!({"functions": [
                {"name": "handle", "calls_per_s": rate, "p50_ns": 1_200_000.0,
                 "p99_ns": 9_000_000.0, "errors": 0, "covered_s": 1.0, "in_flight": 1},
            ]}));
        }
        assert_eq!(
            view.history["handle"].iter().copied().collect::<Vec<_>>(),
            [40, 10, 20, 30]
        );
        let text = render(&view, &Screen::default());
        assert!(text.contains("handle calls/s, last minute"), "{text}");
        assert!(text.contains("1.2 ms") && text.contains("9.0 ms"), "{text}");
    }

    #[test]
    fn the_sparklines_start_from_the_recorders_past() {
        let mut view = view();
        view.prefill_history(&json!({"series": {
            "handle_request.calls_per_s": [null, null, 0.0, 40.4, 40.0, 0.0],
            "handle_request.p99_ms": [null, null, 1.0, 2.0, 2.0, 1.0],
            "cpu": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        }}));
        assert_eq!(
            view.history["handle_request"],
            VecDeque::from([0, 40, 40, 0])
        );
        assert!(view
            .history
            .keys()
            .all(|name| !name.contains('.') && name != "cpu"));
    }

    #[test]
    fn panes_the_server_lacks_are_hidden_and_the_others_drawn() {
        let mut view = view();
        let text = render(&view, &Screen::default());
        assert!(
            !text.contains(" runtime ") && !text.contains(" log ") && !text.contains(" stalls "),
            "{text}"
        );
        view.set_runtime(
            &json!({"flavor": "multi_thread", "alive_tasks": 5, "global_queue_depth": 2,
            "per_worker": [{"busy_ratio": 0.25}, {"busy_ratio": null},
                {"busy_ratio": 1.0, "busy_throughout": true}]}),
        );
        view.add_log(&json!({"events": [{"seq": 1, "level": "WARN", "target": "app", "message": "slow disk"}]}));
        view.log_filter = Some("info".to_owned());
        view.set_stalls(
            &json!({"reports": [{"kind": "slow_poll", "name": "compact", "for_ms": 1200,
            "at": "2026-12-04T20:00:01.000Z", "ended_after_ms": null}]}),
        );
        let text = render(&view, &Screen::default());
        assert!(
            text.contains("multi_thread runtime, 5 alive tasks, global queue 2"),
            "{text}"
        );
        assert!(text.contains("w0 25%"), "{text}");
        assert!(text.contains("w2 BLOCKING"), "{text}");
        assert!(text.contains("WARN  app: slow disk"), "{text}");
        assert!(text.contains("filter: info"), "{text}");
        assert!(text.contains("20:00:01 slow_poll 1.2 s compact"), "{text}");
    }

    #[test]
    fn the_status_line_and_the_help() {
        let screen = Screen {
            status: "pid 42 · every 1s · connection lost".to_owned(),
            trouble: true,
            popup: Some(Popup::Help),
            ..Screen::default()
        };
        let text = render(&view(), &screen);
        assert!(
            text.contains("pid 42 · every 1s · connection lost"),
            "{text}"
        );
        assert!(text.contains("Tab / Shift-Tab"), "{text}");
    }
}
