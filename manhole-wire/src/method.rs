//! The one table of built-in methods: name, params, usage and help text.
//!
//! The text grammar, the JSON params check, `help`, the CLI's completion
//! list and PROTOCOL.md's tables all derive from [`Builtin::ALL`]; a test
//! fails when PROTOCOL.md disagrees with it. Every match on [`Builtin`] is
//! exhaustive, so a method cannot be added to one place and forgotten in
//! another, and an unknown name is never mistaken for a known one.

/// A built-in method or text command.
// Not `non_exhaustive`: the server matches on it exhaustively, so that a
// new method cannot be added here and forgotten there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `help [NAME]`.
    Help,
    /// `list`.
    List,
    /// `stacks [--collapse]`.
    Stacks,
    /// `threads`.
    Threads,
    /// `panics`: the panics kept.
    Panics,
    /// `watchdog [DURATION|off]`: the stall threshold, shown or changed.
    Watchdog,
    /// `stalls`: the watchdog's reports kept.
    Stalls,
    /// `history [--since DURATION] [--every DURATION] [NAME...]`: the
    /// flight recorder's series and events.
    History,
    /// `info`: the process at a glance.
    Info,
    /// `top [SECONDS]`: CPU use per thread over an interval.
    Top,
    /// `mem [--heap-profile]`: resident memory and the allocator's
    /// statistics, or jemalloc's heap profile.
    Mem,
    /// `runtime`: the tokio runtime's metrics.
    Runtime,
    /// `tasks [--older-than DURATION]`: the in-flight instrumented async
    /// calls, as a tree.
    Tasks,
    /// `profile [SECONDS] [--hz N] [--wall] [--format F]`: a sampling CPU
    /// or wall-clock profile.
    Profile,
    /// `get NAME`.
    Get,
    /// `set NAME VALUE`.
    Set,
    /// `stats [--sort COLUMN] [--window DURATION]`, `stats reset [NAME]`.
    Stats,
    /// `log`: the tracing filter, changed live, and the recent events.
    Log,
    /// `watch NAME [SECONDS]`, text only.
    Watch,
    /// `call NAME [ARG...]`.
    Call,
    /// `quit`, text only.
    Quit,
    /// The text session's greeting, JSON only.
    Greeting,
    /// One text line, answered as a text session would, JSON only.
    Text,
}

/// Which sessions a built-in is offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// Text and JSON-RPC.
    Both,
    /// Text sessions only; over JSON it is [`crate::Reason::TextOnly`].
    TextOnly,
    /// JSON-RPC only; over text the word is taken as a command's name.
    JsonOnly,
}

/// One JSON param of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its key in `params`.
    pub name: &'static str,
    /// Whether a request without it is refused.
    pub required: bool,
}

/// What the table says about one built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The method's name, and the text command's first word.
    pub name: &'static str,
    /// Other first words the text protocol takes for it.
    pub aliases: &'static [&'static str],
    /// Where it is offered.
    pub protocols: Protocols,
    /// The JSON params it takes.
    pub params: &'static [Param],
    /// The text command's usage, as `help` shows it.
    pub usage: &'static str,
    /// One line of help.
    pub summary: &'static str,
}

impl Builtin {
    /// Every built-in, in the order `help` lists them.
    pub const ALL: &'static [Builtin] = &[
        Builtin::Help,
        Builtin::List,
        Builtin::Stacks,
        Builtin::Threads,
        Builtin::Panics,
        Builtin::Watchdog,
        Builtin::Stalls,
        Builtin::History,
        Builtin::Info,
        Builtin::Top,
        Builtin::Mem,
        Builtin::Runtime,
        Builtin::Tasks,
        Builtin::Profile,
        Builtin::Get,
        Builtin::Set,
        Builtin::Stats,
        Builtin::Log,
        Builtin::Watch,
        Builtin::Call,
        Builtin::Quit,
        Builtin::Greeting,
        Builtin::Text,
    ];

    /// The table's row for this built-in.
    #[must_use]
    pub const fn spec(self) -> &'static Spec {
        match self {
            Builtin::Help => &Spec {
                name: "help",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "name",
                    required: false,
                }],
                usage: "help [NAME]",
                summary: "show this help, or one command's signature and doc",
            },
            Builtin::List => &Spec {
                name: "list",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[],
                usage: "list",
                summary: "list every command and inspected item",
            },
            Builtin::Stacks => &Spec {
                name: "stacks",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "collapse",
                        required: false,
                    },
                    Param {
                        name: "short",
                        required: false,
                    },
                    Param {
                        name: "thread",
                        required: false,
                    },
                ],
                usage: "stacks [--collapse] [--short] [TID|NAME]",
                summary: "show every thread's stack, or one thread's (by tid) or those whose name starts with NAME; --collapse shows threads with the same stack once, --short folds the runtime's frames",
            },
            Builtin::Threads => &Spec {
                name: "threads",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[],
                usage: "threads",
                summary: "show one line per thread: tid, name and state",
            },
            Builtin::Panics => &Spec {
                name: "panics",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[],
                usage: "panics",
                summary: "show the last 32 panics, newest first: message, place, thread and stack",
            },
            Builtin::Watchdog => &Spec {
                name: "watchdog",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "threshold",
                    required: false,
                }],
                usage: "watchdog [DURATION|off]",
                summary: "show the watchdog's threshold, or set it live (`500ms`) or turn it off: polls and lock waits longer than it are reported",
            },
            Builtin::Stalls => &Spec {
                name: "stalls",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "short",
                    required: false,
                }],
                usage: "stalls [--short]",
                summary: "show the watchdog's last 32 reports, newest first: slow polls, stuck calls, missed heartbeats, lock waits",
            },
            Builtin::History => &Spec {
                name: "history",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "since",
                        required: false,
                    },
                    Param {
                        name: "every",
                        required: false,
                    },
                    Param {
                        name: "names",
                        required: false,
                    },
                ],
                usage: "history [--since DURATION] [--every DURATION] [NAME...]",
                summary: "the flight recorder: CPU, memory, threads, descriptors, calls and numeric statics over the last minutes (10m kept by default), each with a sparkline, and who connected, set and called what",
            },
            Builtin::Info => &Spec {
                name: "info",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[],
                usage: "info",
                summary:
                    "the process at a glance: pid, uptime, threads, memory, files, CPU time, limits",
            },
            Builtin::Top => &Spec {
                name: "top",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "seconds",
                    required: false,
                }],
                usage: "top [SECONDS]",
                summary: "CPU use of every thread over SECONDS (default 1), hottest first; 100% is one core",
            },
            Builtin::Mem => &Spec {
                name: "mem",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "heap_profile",
                    required: false,
                }],
                usage: "mem [--heap-profile]",
                summary: "resident memory (anonymous and file-backed) and the allocator's own statistics; --heap-profile: jemalloc's heap profile as pprof (manhole-cli PID mem --heap-profile -o FILE)",
            },
            Builtin::Runtime => &Spec {
                name: "runtime",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[],
                usage: "runtime",
                summary: "the tokio runtime's metrics: workers, alive tasks, global queue, each worker's busy time and parks",
            },
            Builtin::Tasks => &Spec {
                name: "tasks",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "older_than_s",
                    required: false,
                }],
                usage: "tasks [--older-than DURATION]",
                summary: "the async calls under inspect(calls) in flight, as a tree: age, waiting or polling, and the poll that blocks its worker",
            },
            Builtin::Profile => &Spec {
                name: "profile",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "seconds",
                        required: false,
                    },
                    Param {
                        name: "hz",
                        required: false,
                    },
                    Param {
                        name: "mode",
                        required: false,
                    },
                    Param {
                        name: "format",
                        required: false,
                    },
                    Param {
                        name: "thread",
                        required: false,
                    },
                    Param {
                        name: "per_thread",
                        required: false,
                    },
                    Param {
                        name: "flame",
                        required: false,
                    },
                ],
                usage: "profile [SECONDS] [--hz N] [--wall] [--format top|folded|pprof|svg] [--thread NAME|TID] [--per-thread] [--flame]",
                summary: "sample where the CPU (or, with --wall, the time) goes for SECONDS (default 10) at N Hz (default 99); one profile at a time",
            },
            Builtin::Get => &Spec {
                name: "get",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[Param {
                    name: "name",
                    required: false,
                }],
                usage: "get [NAME]",
                summary: "read an inspected item; alone, list what there is to read",
            },
            Builtin::Set => &Spec {
                name: "set",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "name",
                        required: true,
                    },
                    Param {
                        name: "value",
                        required: true,
                    },
                ],
                usage: "set NAME VALUE",
                summary: "write a static marked `inspect(writable)`; VALUE is JSON, or plain text",
            },
            Builtin::Stats => &Spec {
                name: "stats",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "sort",
                        required: false,
                    },
                    Param {
                        name: "window_s",
                        required: false,
                    },
                    Param {
                        name: "reset",
                        required: false,
                    },
                    Param {
                        name: "name",
                        required: false,
                    },
                ],
                usage: "stats [--sort COLUMN] [--window DURATION], stats reset [NAME]",
                summary: "call counts and latencies of every function under `inspect(calls)`, since start or over the last DURATION; `reset` zeroes them",
            },
            Builtin::Log => &Spec {
                name: "log",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "set",
                        required: false,
                    },
                    Param {
                        name: "for_s",
                        required: false,
                    },
                    Param {
                        name: "reset",
                        required: false,
                    },
                    Param {
                        name: "tail",
                        required: false,
                    },
                    Param {
                        name: "after",
                        required: false,
                    },
                ],
                usage: "log, log set FILTER [--for DURATION], log reset, log tail [N], log follow",
                summary: "the tracing filter (EnvFilter syntax): show it, change it live (for a while), reset it; the recent events, or new ones as they come",
            },
            Builtin::Watch => &Spec {
                name: "watch",
                aliases: &[],
                protocols: Protocols::TextOnly,
                params: &[],
                usage: "watch NAME [SECONDS]",
                summary: "reprint an item every SECONDS (default 1) until you send a line",
            },
            Builtin::Call => &Spec {
                name: "call",
                aliases: &[],
                protocols: Protocols::Both,
                params: &[
                    Param {
                        name: "name",
                        required: true,
                    },
                    Param {
                        name: "args",
                        required: false,
                    },
                    Param {
                        name: "bare",
                        required: false,
                    },
                ],
                usage: "call NAME [ARG...]",
                summary: "call a command; `NAME [ARG...]` alone works too",
            },
            Builtin::Quit => &Spec {
                name: "quit",
                aliases: &["exit"],
                protocols: Protocols::TextOnly,
                params: &[],
                usage: "quit, exit",
                summary: "close the session (so does end of input)",
            },
            Builtin::Greeting => &Spec {
                name: "greeting",
                aliases: &[],
                protocols: Protocols::JsonOnly,
                params: &[Param {
                    name: "collapse",
                    required: false,
                }],
                usage: "greeting",
                summary: "the text session's greeting: banner, stacks and hint",
            },
            Builtin::Text => &Spec {
                name: "text",
                aliases: &[],
                protocols: Protocols::JsonOnly,
                params: &[Param {
                    name: "line",
                    required: true,
                }],
                usage: "text LINE",
                summary: "one text line, answered with the text session's rendering",
            },
        }
    }

    /// The method's name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// The built-in that `word` names (its name or an alias), whatever the
    /// protocol.
    #[must_use]
    pub fn from_word(word: &str) -> Option<Builtin> {
        Builtin::ALL.iter().copied().find(|builtin| {
            let spec = builtin.spec();
            spec.name == word || spec.aliases.contains(&word)
        })
    }

    /// Whether a text session takes it.
    #[must_use]
    pub fn over_text(self) -> bool {
        self.spec().protocols != Protocols::JsonOnly
    }

    /// Whether a JSON-RPC session takes it.
    #[must_use]
    pub fn over_json(self) -> bool {
        self.spec().protocols != Protocols::TextOnly
    }

    /// The built-ins a text session takes, as `help` lists them.
    pub fn text_commands() -> impl Iterator<Item = Builtin> {
        Builtin::ALL.iter().copied().filter(|b| b.over_text())
    }

    /// The methods a JSON-RPC session takes.
    pub fn json_methods() -> impl Iterator<Item = Builtin> {
        Builtin::ALL.iter().copied().filter(|b| b.over_json())
    }
}
