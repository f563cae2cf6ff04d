//! Every command the guide (`docs/*.md`) shows is run against a live
//! example, and its output checked for shape, as `trycmd` does.
//!
//! A block of commands says how it is run in an HTML comment just above
//! its fence, which a reader of the rendered guide never sees:
//! - `<!-- run: EXAMPLE [KEY=VALUE]... [ARG]... -->`: the example to start
//!   (kept for the file's later blocks with the same line); `PID`, and the
//!   guide's sample pids, name its pid. More examples may follow, after
//!   `;`, for `--all`.
//! - `<!-- first: LINE -->` (any number): text commands sent before the
//!   block, whose answers are not checked, to set the scene it shows.
//! - `<!-- not run: WHY -->`: a command that cannot run here (an ssh host,
//!   a terminal UI, an install), with the test that covers it instead.
//!
//! A block with a command and neither comment fails the test, so a new
//! command in the guide is run or says why not.
//!
//! The shape: the first line of each shown output, and every table header
//! in it (a line of upper-case words), must appear in the real output, in
//! order. Numbers match any number, a word holding `/` any path, and `…`
//! any run of words.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{run_with_timeout, Service, Text};

/// The pids the guide's samples show, each standing for the example's.
const SAMPLE_PIDS: &[&str] = &["PID", "4075", "11434", "31337", "1234", "28704"];

#[derive(Debug)]
enum HowRun {
    Run {
        examples: Vec<String>,
        first: Vec<String>,
    },
    NotRun,
    Unsaid,
}

#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    how: HowRun,
    lines: Vec<String>,
}

/// One command of a block and the output the guide shows for it.
#[derive(Debug)]
struct Shown {
    command: Typed,
    output: Vec<String>,
}

#[derive(Debug)]
enum Typed {
    /// `$ …`: a shell command line.
    Shell(String),
    /// `manhole> …` (or `manhole PID> …` in a `manhole-cli` session): a
    /// line of a text session.
    Session(String),
}

fn guide_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let trimmed = lines[index].trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            index += 1;
            continue;
        };
        let indent = lines[index].len() - trimmed.len();
        let start = index;
        let mut body = Vec::new();
        index += 1;
        while index < lines.len() && !lines[index].trim_start().starts_with("```") {
            body.push(lines[index].get(indent..).unwrap_or("").to_owned());
            index += 1;
        }
        index += 1;
        if !matches!(lang, "text" | "sh" | "") || !body.iter().any(|line| is_command(line, lang)) {
            continue;
        }
        found.push(Block {
            file: file.clone(),
            line: start + 1,
            how: how_run(&lines[..start]),
            lines: if lang == "sh" {
                // A `sh` block is commands only: one per line.
                body.iter()
                    .filter(|line| is_command(line, lang))
                    .map(|line| format!("$ {line}"))
                    .collect()
            } else {
                body
            },
        });
    }
    found
}

fn is_command(line: &str, lang: &str) -> bool {
    let line = line.trim_start();
    if lang == "sh" {
        return !line.is_empty() && !line.starts_with('#');
    }
    line.starts_with("$ ") || prompt_line(line).is_some()
}

/// The line typed after a session prompt: `manhole> X` or `manhole 4075> X`.
fn prompt_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("manhole")?;
    let end = rest.find('>')?;
    let between = &rest[..end];
    if !(between.is_empty() || (between.starts_with(' ') && !between[1..].contains(' '))) {
        return None;
    }
    Some(rest[end + 1..].trim_start())
}

/// The comments directly above a fence.
fn how_run(before: &[&str]) -> HowRun {
    let mut examples = None;
    let mut first = Vec::new();
    for line in before.iter().rev() {
        let line = line.trim();
        let Some(comment) = line
            .strip_prefix("<!--")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            break;
        };
        let comment = comment.trim();
        if comment.starts_with("not run:") {
            return HowRun::NotRun;
        } else if let Some(run) = comment.strip_prefix("run:") {
            examples = Some(run.split(';').map(|one| one.trim().to_owned()).collect());
        } else if let Some(line) = comment.strip_prefix("first:") {
            first.insert(0, line.trim().to_owned());
        }
    }
    match examples {
        Some(examples) => HowRun::Run { examples, first },
        None => HowRun::Unsaid,
    }
}

/// A block's commands, each with the output the guide shows under it. The
/// prompts after `$ manhole-cli PID` (a session) are commands; those after
/// any other `$` line (`socat`'s echo) are output.
fn commands(block: &Block) -> Vec<Shown> {
    let mut shown: Vec<Shown> = Vec::new();
    let mut in_session = true;
    for line in &block.lines {
        if let Some(command) = line.strip_prefix("$ ") {
            let words: Vec<&str> = command.split_whitespace().collect();
            in_session = words.len() == 2 && words[0] == "manhole-cli";
            shown.push(Shown {
                command: Typed::Shell(command.to_owned()),
                output: Vec::new(),
            });
        } else if let Some(typed) = prompt_line(line).filter(|_| in_session) {
            if typed.is_empty() {
                continue;
            }
            shown.push(Shown {
                command: Typed::Session(typed.to_owned()),
                output: Vec::new(),
            });
        } else if let Some(last) = shown.last_mut() {
            last.output.push(line.clone());
        }
    }
    shown
}

/// The words of a line, each reduced to what must match: numbers to `#`,
/// paths to `/`.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|word| {
            if word.contains('/') && !word.contains("//") {
                "/".to_owned()
            } else if word.chars().any(|c| c.is_ascii_digit()) {
                "#".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect()
}

/// Whether `actual` has the shape of `shown`: equal words, where `…` in
/// the guide stands for any run of words (and `word…` for a cut word).
fn same_shape(shown: &[String], actual: &[String]) -> bool {
    let Some((first, rest)) = shown.split_first() else {
        return actual.is_empty();
    };
    if first == "…" || first == "..." {
        return (0..=actual.len()).any(|skip| same_shape(rest, &actual[skip..]));
    }
    if let Some(prefix) = first.strip_suffix('…') {
        return actual
            .first()
            .is_some_and(|word| word.starts_with(prefix) || prefix.starts_with(word.as_str()))
            && (1..=actual.len()).any(|skip| same_shape(rest, &actual[skip..]));
    }
    actual.first() == Some(first) && same_shape(rest, &actual[1..])
}

fn is_header(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.len() >= 2
        && words.iter().all(|word| {
            word.chars().any(|c| c.is_ascii_uppercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || "-_%/".contains(c))
        })
}

/// The lines of the guide's output that fix its shape, found in `actual`
/// in order; or the first one that is not.
fn shape_missing(shown: &[String], actual: &str) -> Option<String> {
    let actual: Vec<Vec<String>> = actual.lines().map(words).collect();
    let mut wanted: Vec<&String> = Vec::new();
    if let Some(first) = shown.iter().find(|line| !line.trim().is_empty()) {
        wanted.push(first);
    }
    wanted.extend(shown.iter().skip(1).filter(|line| is_header(line)));
    let mut from = 0;
    for line in wanted {
        let want = words(line);
        if want.iter().all(|word| word == "…" || word == "...") {
            continue;
        }
        match actual[from..]
            .iter()
            .position(|have| same_shape(&want, have))
        {
            Some(at) => from += at + 1,
            None => return Some(line.clone()),
        }
    }
    None
}

/// The examples the guide's blocks run, started as they ask.
#[derive(Default)]
struct Examples {
    running: HashMap<String, Service>,
}

impl Examples {
    fn get(&mut self, spec: &str) -> &Service {
        self.running.entry(spec.to_owned()).or_insert_with(|| {
            let mut words = spec.split_whitespace();
            let name = words.next().expect("an example's name");
            let (env, args): (Vec<&str>, Vec<&str>) = words.partition(|word| word.contains('='));
            let env: Vec<(&str, &str)> = env
                .iter()
                .map(|pair| pair.split_once('=').unwrap())
                .collect();
            let service = Service::spawn_with_env(name, &args, &env, None);
            service.wait_for_socket();
            service
        })
    }
}

fn with_pid(command: &str, pid: u32) -> String {
    let pid = pid.to_string();
    command
        .split(' ')
        .map(|word| {
            let mut word = word.to_owned();
            for sample in SAMPLE_PIDS {
                if word == *sample {
                    word = pid.clone();
                }
                word = word.replace(&format!("manhole-{sample}"), &format!("manhole-{pid}"));
            }
            word
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a shell line as the guide's reader would, with `manhole-cli` on
/// the path; `$?` is the previous line's status.
fn run_shell(line: &str, previous_status: i32, scratch: &Path) -> (i32, String) {
    let cli_dir = support::cli().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        cli_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let finished = run_with_timeout(
        Command::new("bash")
            .arg("-c")
            .arg(format!("(exit {previous_status}); {line}"))
            .current_dir(scratch)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("MANHOLE"),
        Duration::from_secs(60),
    );
    let status = finished.code.unwrap_or(-1);
    // The guide shows an error's stderr line above what stdout printed.
    let output = if status == 0 {
        format!("{}{}", finished.stdout, finished.stderr)
    } else {
        format!("{}{}", finished.stderr, finished.stdout)
    };
    (status, output)
}

/// One line of a text session; a `watch` or `follow` streams until a line
/// is sent, as the guide does.
fn run_session_line(session: &mut Text, line: &str) -> String {
    let streams = line.starts_with("watch ") || line.starts_with("log follow");
    if !streams {
        return session.ask(line);
    }
    session.send(line);
    std::thread::sleep(Duration::from_millis(1200));
    session.send("");
    session.until_prompt()
}

#[test]
fn every_command_in_the_guide_runs_and_answers_as_shown() {
    let scratch = support::scratch("docs-commands");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in guide_files() {
        let mut examples = Examples::default();
        for block in blocks(&file) {
            let place = format!("docs/{}:{}", block.file, block.line);
            let (specs, first) = match &block.how {
                HowRun::NotRun => continue,
                HowRun::Unsaid => {
                    failures.push(format!(
                        "{place}: a block of commands with neither `<!-- run: EXAMPLE -->` nor `<!-- not run: WHY -->` above it"
                    ));
                    continue;
                }
                HowRun::Run { examples, first } => (examples.clone(), first.clone()),
            };
            for spec in &specs[1..] {
                examples.get(spec);
            }
            let service = examples.get(&specs[0]);
            let pid = service.pid;
            let socket = service.socket.clone();
            let mut session = Text::connect(&socket);
            for line in &first {
                run_session_line(&mut session, line);
            }
            let mut status = 0;
            for shown in commands(&block) {
                ran += 1;
                let (what, actual) = match &shown.command {
                    Typed::Session(line) => (line.clone(), run_session_line(&mut session, line)),
                    Typed::Shell(line) if line.starts_with("cargo run --example") => {
                        // The example is running already: its first words
                        // are what `cargo run` printed.
                        (line.clone(), service.stdout())
                    }
                    Typed::Shell(line) => {
                        let line = with_pid(line, pid);
                        let (code, output) = run_shell(&line, status, &scratch);
                        status = code;
                        (line, output)
                    }
                };
                if let Some(missing) = shape_missing(&shown.output, &actual) {
                    failures.push(format!(
                        "{place}: `{what}` printed no line shaped as {missing:?}; it printed:\n{actual}"
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran > 40, "only {ran} commands found in docs/");
}

#[test]
fn the_shape_rules_match_numbers_paths_and_cuts_only() {
    let line = |text: &str| words(text);
    assert!(same_shape(
        &line("pid 4075 exe /srv/app/bin/service"),
        &line("pid 99 exe /work/main/target/debug/examples/service")
    ));
    assert!(same_shape(
        &line("calls: compact 0.4/s, fetch_backend 5/s, …"),
        &line("calls: compact 0.4/s, fetch_backend 5/s, handle_request 5/s")
    ));
    assert!(same_shape(
        &line("over the last 10.0s; `compact` only …"),
        &line("over the last 10.0s; `compact` only 2.6s (history)")
    ));
    assert!(!same_shape(
        &line("tokio runtime: multi_thread"),
        &line("tokio runtime: current_thread")
    ));
    assert!(!same_shape(&line("error: unknown"), &line("42")));
    assert!(is_header("    TID  NAME             STATE"));
    assert!(is_header("  SELF%  TOTAL%   SAMPLES  FUNCTION"));
    assert!(!is_header("CONFIG  handle_request"));
    assert!(!is_header("NAME"));
    assert_eq!(
        prompt_line("manhole 4075> get REQUESTS"),
        Some("get REQUESTS")
    );
    assert_eq!(prompt_line("manhole> "), Some(""));
    assert_eq!(prompt_line("manhole 0.1.0, pid 4075"), None);
}
