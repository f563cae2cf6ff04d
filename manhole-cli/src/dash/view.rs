//! What the dashboard shows, read from the built-ins' JSON answers: one
//! type per pane, each `None` when the server lacks the built-in (an older
//! server, or a feature it was built without), which hides the pane.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// How many intervals of calls/s a sparkline keeps: a minute at 1 s.
pub const HISTORY: usize = 60;
/// How many log events the log pane keeps.
pub const LOG_KEPT: usize = 200;

/// One thread, from `top`, with the instrumented poll it is in, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRow {
    pub tid: i64,
    pub name: String,
    pub state: String,
    pub cpu_percent: f64,
    /// The `inspect(calls)` future it polls: name, for how long (ms), and
    /// whether that blocks its worker.
    pub polling: Option<(String, f64, bool)>,
}

/// One line of the tasks tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    pub depth: usize,
    pub label: String,
    pub age_ms: f64,
    pub polling: bool,
    pub blocking: bool,
    /// The node itself, for its subtree.
    pub node: Value,
}

/// One counted function over the last interval, from `stats --window`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub name: String,
    pub calls_per_s: f64,
    pub p50_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    pub errors_per_s: f64,
    pub in_flight: u64,
}

/// The tokio runtime, from `runtime`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeView {
    pub flavor: String,
    pub alive_tasks: u64,
    pub global_queue_depth: u64,
    pub workers: Vec<WorkerBusy>,
}

/// How busy one runtime worker was over the interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerBusy {
    /// From 0 to 1 (`None` on the first read).
    pub ratio: Option<f64>,
    /// It has not parked in the interval: a poll may be blocking it.
    pub throughout: bool,
}

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub seq: u64,
    pub level: String,
    pub target: String,
    pub message: String,
}

/// One watchdog report.
#[derive(Debug, Clone, PartialEq)]
pub struct StallLine {
    pub kind: String,
    pub name: String,
    /// The calls with their arguments (`handle(id=7) → fetch_backend`), or
    /// the name when the server gave no chain.
    pub what: String,
    pub for_ms: u64,
    pub at: String,
    pub over: bool,
    /// A possible deadlock.
    pub deadlock: bool,
}

/// Everything on screen.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub threads: Option<Vec<ThreadRow>>,
    pub tasks: Option<Vec<TaskLine>>,
    pub calls: Option<Vec<CallRow>>,
    pub runtime: Option<RuntimeView>,
    pub log: Option<VecDeque<LogLine>>,
    /// The log filter in force.
    pub log_filter: Option<String>,
    pub stalls: Option<Vec<StallLine>>,
    /// Calls/s per function, one entry per interval, oldest first.
    pub history: HashMap<String, VecDeque<u64>>,
    /// Whether the flight recorder was asked for the sparklines' past.
    pub history_asked: bool,
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl View {
    /// `top`'s threads, joined with the polls `tasks` shows.
    pub fn set_threads(&mut self, top: &Value, tasks: Option<&Value>) {
        let mut polling: HashMap<i64, (String, f64, bool)> = HashMap::new();
        if let Some(tasks) = tasks {
            fn walk(node: &Value, polling: &mut HashMap<i64, (String, f64, bool)>) {
                if let Some(tid) = node["thread"].as_i64() {
                    polling.insert(
                        tid,
                        (
                            text(&node["name"]),
                            number(&node["poll_ms"]),
                            node["blocking"] == true,
                        ),
                    );
                }
                for child in node["children"].as_array().into_iter().flatten() {
                    walk(child, polling);
                }
            }
            for root in tasks["tasks"].as_array().into_iter().flatten() {
                walk(root, &mut polling);
            }
        }
        self.threads = Some(
            top["threads"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|thread| {
                    let tid = thread["tid"].as_i64().unwrap_or(0);
                    ThreadRow {
                        tid,
                        name: text(&thread["name"]),
                        state: text(&thread["state"]),
                        cpu_percent: number(&thread["cpu_percent"]),
                        polling: polling.remove(&tid),
                    }
                })
                .collect(),
        );
    }

    /// The `tasks` tree, flattened, oldest first.
    pub fn set_tasks(&mut self, tasks: &Value) {
        fn walk(node: &Value, depth: usize, lines: &mut Vec<TaskLine>) {
            let name = text(&node["name"]);
            let label = match node["args"].as_str() {
                Some(args) => format!("{name}({args})"),
                None => name,
            };
            lines.push(TaskLine {
                depth,
                label,
                age_ms: number(&node["age_ms"]),
                polling: node["state"] == "polling",
                blocking: node["blocking"] == true,
                node: node.clone(),
            });
            for child in node["children"].as_array().into_iter().flatten() {
                walk(child, depth + 1, lines);
            }
        }
        let mut lines = Vec::new();
        for root in tasks["tasks"].as_array().into_iter().flatten() {
            walk(root, 0, &mut lines);
        }
        self.tasks = Some(lines);
    }

    /// `stats --window`'s rows, and each one's calls/s kept for its
    /// sparkline.
    pub fn set_calls(&mut self, stats: &Value) {
        let rows: Vec<CallRow> = stats["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                let covered = number(&row["covered_s"]).max(1e-9);
                CallRow {
                    name: text(&row["name"]),
                    calls_per_s: number(&row["calls_per_s"]),
                    p50_ns: row["p50_ns"].as_f64(),
                    p99_ns: row["p99_ns"].as_f64(),
                    errors_per_s: number(&row["errors"]) / covered,
                    in_flight: row["in_flight"].as_u64().unwrap_or(0),
                }
            })
            .collect();
        for row in &rows {
            let history = self.history.entry(row.name.clone()).or_default();
            history.push_back(row.calls_per_s.round() as u64);
            while history.len() > HISTORY {
                history.pop_front();
            }
        }
        self.calls = Some(rows);
    }

    /// Fills the calls pane's sparklines from the flight recorder's
    /// `history` (its `NAME.calls_per_s` series), so that a dashboard
    /// opened after a burst shows it instead of starting empty.
    pub fn prefill_history(&mut self, history: &Value) {
        let Some(series) = history["series"].as_object() else {
            return;
        };
        for (key, values) in series {
            let Some(name) = key.strip_suffix(".calls_per_s") else {
                continue;
            };
            let Some(values) = values.as_array() else {
                continue;
            };
            // From the first step with a figure: before it the process (or
            // the recorder) had not started.
            let known: VecDeque<u64> = values
                .iter()
                .skip_while(|value| value.is_null())
                .map(|value| value.as_f64().unwrap_or(0.0).round() as u64)
                .collect();
            let kept = self.history.entry(name.to_owned()).or_default();
            if kept.is_empty() {
                *kept = known;
                while kept.len() > HISTORY {
                    kept.pop_front();
                }
            }
        }
    }

    pub fn set_runtime(&mut self, runtime: &Value) {
        self.runtime = Some(RuntimeView {
            flavor: text(&runtime["flavor"]),
            alive_tasks: runtime["alive_tasks"].as_u64().unwrap_or(0),
            global_queue_depth: runtime["global_queue_depth"].as_u64().unwrap_or(0),
            workers: runtime["per_worker"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|worker| WorkerBusy {
                    ratio: worker["busy_ratio"].as_f64(),
                    throughout: worker["busy_throughout"].as_bool().unwrap_or(false),
                })
                .collect(),
        });
    }

    /// The log filter in force, from `log`.
    pub fn set_log_filter(&mut self, shown: &Value) {
        self.log_filter = shown["filter"].as_str().map(str::to_owned);
    }

    /// New log events, after those already kept.
    pub fn add_log(&mut self, events: &Value) {
        let log = self.log.get_or_insert_with(VecDeque::new);
        for event in events["events"].as_array().into_iter().flatten() {
            log.push_back(LogLine {
                seq: event["seq"].as_u64().unwrap_or(0),
                level: text(&event["level"]),
                target: text(&event["target"]),
                message: text(&event["message"]),
            });
        }
        while log.len() > LOG_KEPT {
            log.pop_front();
        }
    }

    /// The newest log event kept, to ask for those after it.
    pub fn newest_log(&self) -> u64 {
        self.log
            .as_ref()
            .and_then(|log| log.back())
            .map_or(0, |line| line.seq)
    }

    pub fn set_stalls(&mut self, stalls: &Value) {
        self.stalls = Some(
            stalls["reports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|report| StallLine {
                    kind: text(&report["kind"]),
                    name: text(&report["name"]),
                    what: report["chain"]
                        .as_array()
                        .filter(|chain| !chain.is_empty())
                        .map_or_else(
                            || text(&report["name"]),
                            |chain| chain.iter().map(text).collect::<Vec<_>>().join(" → "),
                        ),
                    deadlock: report["deadlock"].as_bool().unwrap_or(false),
                    for_ms: report["for_ms"].as_u64().unwrap_or(0),
                    at: text(&report["at"]),
                    over: report
                        .get("ended_after_ms")
                        .is_some_and(|ended| !ended.is_null()),
                })
                .collect(),
        );
    }
}
