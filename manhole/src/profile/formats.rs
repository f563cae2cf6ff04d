//! A finished profile, symbolised, written out as `folded`, `top`, `svg`
//! or `pprof`.
//!
//! - `folded` is Brendan Gregg's collapsed-stack format, root first, which
//!   flamegraph.pl, inferno and speedscope read.
//! - `top` is a table of functions by self and total share.
//! - `svg` is a flame graph drawn here (no CDDL code linked): each frame a
//!   box as wide as its share, its name and figures in a tooltip.
//! - `pprof` is `profile.proto` (written by [`super::pprof`]), encoded with prost and gzipped, which
//!   `go tool pprof` and the pprof web UI load; each sample carries `thread`
//!   and `tid` labels.

use crate::capture::stacks::Symbols;
use crate::profile::sampler::Collected;
use manhole_wire::ProfileMode;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// One code address of a stack, with the functions inlined there,
/// innermost first.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub(crate) address: u64,
    pub(crate) lines: Vec<Line>,
}

/// One function at a location.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) function: String,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// A distinct stack of one thread, and how many ticks landed on it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    pub(crate) tid: i32,
    pub(crate) thread: String,
    /// Innermost first.
    pub(crate) locations: Vec<Location>,
    pub(crate) weight: u64,
}

/// A profile with symbols.
pub(crate) struct Symbolised {
    pub(crate) mode: ProfileMode,
    pub(crate) hz: u32,
    pub(crate) elapsed_ns: u64,
    pub(crate) stacks: Vec<Stack>,
}

impl Symbolised {
    /// Looks up every address of `collected`. The caller holds the dump's
    /// turn, as every use of the symboliser does.
    pub(crate) fn new(collected: &Collected) -> Symbolised {
        let mut symbols = Symbols::default();
        let stacks = collected
            .stacks
            .iter()
            .map(|((tid, addresses), &weight)| {
                let addresses: Vec<usize> = addresses.iter().map(|&a| a as usize).collect();
                let mut locations: Vec<Location> = Vec::new();
                for frame in symbols.frames(&addresses, true) {
                    let line = Line {
                        function: frame
                            .function
                            .unwrap_or_else(|| format!("{:#x}", frame.address)),
                        file: frame.file,
                        line: frame.line,
                    };
                    match locations.last_mut() {
                        Some(last) if last.address == frame.address as u64 => last.lines.push(line),
                        _ => locations.push(Location {
                            address: frame.address as u64,
                            lines: vec![line],
                        }),
                    }
                }
                Stack {
                    tid: *tid,
                    thread: collected
                        .threads
                        .get(tid)
                        .map_or_else(|| tid.to_string(), |thread| thread.name.clone()),
                    locations,
                    weight,
                }
            })
            .collect();
        Symbolised {
            mode: collected.mode,
            hz: collected.hz,
            elapsed_ns: u64::try_from(collected.elapsed.as_nanos()).unwrap_or(u64::MAX),
            stacks,
        }
    }

    fn total(&self) -> u64 {
        self.stacks.iter().map(|stack| stack.weight).sum()
    }

    /// Each stack's function names, root first, with the thread's name as
    /// the root when `per_thread`.
    fn paths(&self, per_thread: bool) -> impl Iterator<Item = (Vec<&str>, u64)> {
        self.stacks.iter().map(move |stack| {
            let mut names: Vec<&str> = Vec::new();
            if per_thread {
                names.push(&stack.thread);
            }
            for location in stack.locations.iter().rev() {
                for line in location.lines.iter().rev() {
                    names.push(&line.function);
                }
            }
            if names.is_empty() || (per_thread && names.len() == 1) {
                names.push("[no frames]");
            }
            (names, stack.weight)
        })
    }

    /// `a;b;c COUNT` per distinct stack, root first, sorted.
    pub(crate) fn folded(&self, per_thread: bool) -> String {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (names, weight) in self.paths(per_thread) {
            let line = names
                .iter()
                .map(|name| folded_name(name))
                .collect::<Vec<_>>()
                .join(";");
            *counts.entry(line).or_default() += weight;
        }
        let mut out = String::new();
        for (line, count) in counts {
            let _ = writeln!(out, "{line} {count}");
        }
        out
    }

    /// The functions by self share, with their total share, after a
    /// heading that says what was sampled.
    pub(crate) fn top(&self, heading: &str, rows: usize) -> String {
        let total = self.total();
        let mut own: HashMap<&str, u64> = HashMap::new();
        let mut inclusive: HashMap<&str, u64> = HashMap::new();
        for (names, weight) in self.paths(false) {
            if let Some(leaf) = names.last() {
                *own.entry(leaf).or_default() += weight;
            }
            let distinct: HashSet<&str> = names.into_iter().collect();
            for name in distinct {
                *inclusive.entry(name).or_default() += weight;
            }
        }
        let mut functions: Vec<(&str, u64, u64)> = inclusive
            .iter()
            .map(|(&name, &all)| (name, own.get(name).copied().unwrap_or(0), all))
            .collect();
        functions.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
        let share = |count: u64| {
            if total == 0 {
                0.0
            } else {
                count as f64 * 100.0 / total as f64
            }
        };
        let mut out = format!("{heading}\n");
        if total == 0 {
            out.push_str("no samples: no selected thread ran on a CPU while it sampled\n");
            return out;
        }
        out.push_str("  SELF%  TOTAL%   SAMPLES  FUNCTION\n");
        for (name, own, all) in functions.iter().take(rows) {
            let _ = writeln!(
                out,
                "{:>6.1}% {:>6.1}% {own:>9}  {name}",
                share(*own),
                share(*all)
            );
        }
        if functions.len() > rows {
            let _ = writeln!(
                out,
                "({} more functions; `--format folded` or `svg` shows them all)",
                functions.len() - rows
            );
        }
        out
    }

    /// An icicle graph, root at the top, where it is seen first however
    /// deep the stacks (tokio's are); or, with `flame`, a classic flame
    /// graph, root at the bottom. The title says which.
    pub(crate) fn svg(&self, title: &str, per_thread: bool, flame: bool) -> String {
        let mut root = Node::default();
        for (names, weight) in self.paths(per_thread) {
            root.add(&names, weight);
        }
        let depth = root.depth();
        let width = 1200.0;
        let row = 16.0;
        let top_margin = 40.0;
        let height = top_margin + row * depth as f64 + 10.0;
        let mut out = String::new();
        let _ = write!(
            out,
            r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
<style>text {{ font-family: monospace; font-size: 11px; }} rect:hover {{ stroke: black; }}</style>
<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f8"/>
<text x="{}" y="20" text-anchor="middle" style="font-size:15px">{}</text>
"##,
            width / 2.0,
            escape(&format!(
                "{title} ({})",
                if flame {
                    "flame graph: the root at the bottom"
                } else {
                    "icicle graph: the root at the top; --flame for a flame graph"
                }
            ))
        );
        let total = root.value.max(1) as f64;
        let scale = (width - 20.0) / total;
        let mut frames = Vec::new();
        root.layout(10.0, 0, &mut frames);
        for (name, x, level, value) in frames {
            let w = value as f64 * scale;
            if w < 0.3 {
                continue;
            }
            let x = 10.0 + (x - 10.0) * scale;
            let y = if flame {
                height - 10.0 - row * (level as f64 + 1.0)
            } else {
                top_margin + row * level as f64
            };
            let percent = value as f64 * 100.0 / total;
            let _ = write!(
                out,
                "<g><title>{} ({value} samples, {percent:.2}%)</title><rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{}\" rx=\"2\"/>",
                escape(name),
                row - 1.0,
                colour(name)
            );
            let fits = (w / 7.0) as usize;
            if fits >= 3 {
                let shown: String = if name.chars().count() > fits {
                    let mut cut: String = name.chars().take(fits.saturating_sub(2)).collect();
                    cut.push_str("..");
                    cut
                } else {
                    name.to_owned()
                };
                let _ = write!(
                    out,
                    "<text x=\"{:.2}\" y=\"{:.1}\">{}</text>",
                    x + 3.0,
                    y + row - 4.5,
                    escape(&shown)
                );
            }
            out.push_str("</g>\n");
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Folded stacks use `;` between frames and a space before the count:
/// `;` inside a name (an array type, `[u8; 4]`) and line breaks would
/// split it, so they are replaced.
fn folded_name(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A warm colour that stays the same for a name from one graph to the
/// next.
fn colour(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let red = 205 + (hash % 50);
    let green = 80 + ((hash >> 8) % 150);
    let blue = (hash >> 16) % 55;
    format!("rgb({red},{green},{blue})")
}

/// The call tree a flame graph draws.
#[derive(Default)]
struct Node {
    value: u64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn add(&mut self, names: &[&str], weight: u64) {
        self.value += weight;
        if let Some((first, rest)) = names.split_first() {
            self.children
                .entry((*first).to_owned())
                .or_default()
                .add(rest, weight);
        }
    }

    fn depth(&self) -> usize {
        self.children
            .values()
            .map(|child| child.depth() + 1)
            .max()
            .unwrap_or(0)
    }

    /// (name, x in samples from 10, level, value) of every frame below.
    fn layout<'a>(&'a self, x: f64, level: usize, out: &mut Vec<(&'a str, f64, usize, u64)>) {
        let mut offset = x;
        for (name, child) in &self.children {
            out.push((name, offset, level, child.value));
            child.layout(offset, level + 1, out);
            offset += child.value as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(function: &str) -> Line {
        Line {
            function: function.to_owned(),
            file: Some("src/main.rs".to_owned()),
            line: Some(7),
        }
    }

    fn profile() -> Symbolised {
        let stack = |tid, thread: &str, names: &[&str], weight| Stack {
            tid,
            thread: thread.to_owned(),
            locations: names
                .iter()
                .enumerate()
                .map(|(index, name)| Location {
                    address: 0x1000 + index as u64 * 16 + name.len() as u64,
                    lines: vec![line(name)],
                })
                .collect(),
            weight,
        };
        Symbolised {
            mode: ProfileMode::Cpu,
            hz: 100,
            elapsed_ns: 1_000_000_000,
            stacks: vec![
                stack(1, "worker-1", &["seventy", "work", "main"], 70),
                stack(2, "worker-2", &["thirty", "work", "main"], 30),
            ],
        }
    }

    #[test]
    fn folded_is_root_first_and_per_thread_adds_the_root() {
        assert_eq!(
            profile().folded(false),
            "main;work;seventy 70\nmain;work;thirty 30\n"
        );
        assert_eq!(
            profile().folded(true),
            "worker-1;main;work;seventy 70\nworker-2;main;work;thirty 30\n"
        );
        assert_eq!(
            folded_name("<[u8; 4] as Foo>::bar"),
            "<[u8: 4] as Foo>::bar"
        );
    }

    #[test]
    fn top_gives_self_and_total_shares() {
        let top = profile().top("heading", 10);
        let rows: Vec<Vec<&str>> = top
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["heading"]);
        assert_eq!(rows[1], ["SELF%", "TOTAL%", "SAMPLES", "FUNCTION"]);
        assert_eq!(rows[2], ["70.0%", "70.0%", "70", "seventy"], "{top}");
        assert_eq!(rows[3], ["30.0%", "30.0%", "30", "thirty"], "{top}");
        assert!(rows.contains(&vec!["0.0%", "100.0%", "0", "main"]), "{top}");
        assert_eq!(
            profile().top("heading", 2).lines().last(),
            Some("(2 more functions; `--format folded` or `svg` shows them all)")
        );
    }

    #[test]
    fn svg_draws_every_frame_with_its_share() {
        let svg = profile().svg("a <profile>", false, false);
        assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;profile&gt;"));
        assert!(
            svg.contains("<title>seventy (70 samples, 70.00%)</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>main (100 samples, 100.00%)</title>"));
    }

    /// The y of the rectangle drawn for `name`.
    fn y_of(svg: &str, name: &str) -> f64 {
        let at = svg.find(&format!("<title>{name} (")).expect(name);
        let rest = &svg[at..];
        let y = &rest[rest.find(" y=\"").expect("a y") + 4..];
        y[..y.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_root_is_at_the_top_of_an_icicle_and_the_bottom_of_a_flame() {
        let icicle = profile().svg("cpu", false, false);
        assert!(
            icicle.contains("icicle graph: the root at the top"),
            "{icicle}"
        );
        assert!(y_of(&icicle, "main") < y_of(&icicle, "seventy"), "{icicle}");
        let flame = profile().svg("cpu", false, true);
        assert!(
            flame.contains("flame graph: the root at the bottom"),
            "{flame}"
        );
        assert!(y_of(&flame, "main") > y_of(&flame, "seventy"), "{flame}");
    }

    #[test]
    fn pprof_decodes_with_sample_types_labels_and_cpu_time() {
        let decoded = super::super::pprof::decode(&super::super::pprof::encode(&profile()));
        assert_eq!(decoded.strings()[0], "");
        assert_eq!(
            decoded.sample_types(),
            [
                ("samples".to_owned(), "count".to_owned()),
                ("cpu".to_owned(), "nanoseconds".to_owned())
            ]
        );
        let mut values = decoded.sample_values();
        values.sort();
        assert_eq!(values, [vec![30, 300_000_000], vec![70, 700_000_000]]);
        for label in ["thread", "tid", "worker-1", "seventy"] {
            assert!(decoded.strings().iter().any(|s| s == label), "{label}");
        }
    }
}
