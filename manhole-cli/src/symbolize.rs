//! `manhole-cli symbolize REPORT [--exe PATH]`: turns a raw crash report
//! into a symbolised one, offline.
//!
//! A raw report is what a crashed process leaves when its own symboliser
//! could not run (no `/proc`, `execve` forbidden, the binary replaced by an
//! upgrade). It names each frame as `#N 0xADDRESS MODULE+0xOFFSET`, and its
//! `modules:` section gives each module's build id. Here each frame is
//! looked up in the module's own debug info (or in `--exe` for the
//! executable, for a binary that was replaced or lives elsewhere now), and
//! the report is printed again with `function` and `at file:line` under
//! each frame. A module whose build id differs from the report's is named
//! in a warning: its lines may be wrong.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The first line of a raw report, and what it becomes.
const RAW_FIRST_LINE: &str = "manhole crash report (raw): ";
const FIRST_LINE: &str = "manhole crash report: ";

/// Reads the report at `path`, symbolises its raw frames, and returns the
/// symbolised report and its warnings.
pub fn run(path: &Path, exe: Option<&Path>) -> Result<(String, Vec<String>), String> {
    let report = regular_file(path)
        .and_then(|mut file| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text)?;
            Ok(text)
        })
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let Some(rest) = report.strip_prefix(RAW_FIRST_LINE) else {
        return Err(format!(
            "{} is not a raw manhole crash report (its first line does not start with `{}`)",
            path.display(),
            RAW_FIRST_LINE.trim_end()
        ));
    };
    let executable = header_value(&report, "executable: ")
        .map(|value| value.split(" (build id").next().unwrap_or(value).to_owned());
    let build_ids = build_ids(&report);
    let mut modules = Modules {
        loaded: HashMap::new(),
        exe: exe.map(Path::to_owned),
        executable,
        warnings: Vec::new(),
        build_ids,
    };
    let mut out = String::from(FIRST_LINE);
    for line in rest.split_inclusive('\n') {
        match RawFrame::parse(line) {
            Some(frame) => modules.write_frame(&frame, &mut out),
            None => out.push_str(&line.replace(
                " (raw frames: the pc, then words on the stack that point into code)",
                " (symbolised offline: the pc, then words on the stack that point into code, some of them stale)",
            )),
        }
    }
    Ok((out, modules.warnings))
}

fn header_value<'a>(report: &'a str, key: &str) -> Option<&'a str> {
    report.lines().find_map(|line| line.strip_prefix(key))
}

/// The build id of each module, from the `modules:` section.
fn build_ids(report: &str) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    let mut in_modules = false;
    for line in report.lines() {
        if line == "modules:" {
            in_modules = true;
            continue;
        }
        if !in_modules || !line.starts_with("  ") {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(_base), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        if let ["build", "id", id] = rest.as_slice() {
            ids.insert(path.to_owned(), (*id).to_owned());
        }
    }
    ids
}

/// `  #3 0x5612a0b1c2d3 /path/to/module+0x1c2d3`
struct RawFrame {
    index: usize,
    address: u64,
    module: String,
    offset: u64,
}

impl RawFrame {
    fn parse(line: &str) -> Option<RawFrame> {
        let line = line.trim_end();
        let rest = line.strip_prefix("  #")?;
        let (index, rest) = rest.split_once(' ')?;
        let (address, place) = rest.split_once(' ')?;
        let (module, offset) = place.rsplit_once("+0x")?;
        Some(RawFrame {
            index: index.parse().ok()?,
            address: u64::from_str_radix(address.strip_prefix("0x")?, 16).ok()?,
            module: module.to_owned(),
            offset: u64::from_str_radix(offset, 16).ok()?,
        })
    }
}

struct Modules {
    /// Each module's debug info, or why it has none.
    loaded: HashMap<String, Result<addr2line::Loader, String>>,
    exe: Option<PathBuf>,
    executable: Option<String>,
    build_ids: HashMap<String, String>,
    warnings: Vec<String>,
}

impl Modules {
    fn loader(&mut self, module: &str) -> Result<&addr2line::Loader, &str> {
        if !self.loaded.contains_key(module) {
            let file = match (&self.exe, &self.executable) {
                (Some(exe), Some(executable)) if executable == module => exe.clone(),
                _ => PathBuf::from(module),
            };
            // A report names the files to open: a FIFO or a device planted
            // under one of those names must not hang or feed the reader.
            let loaded = regular_file(&file)
                .map_err(|err| format!("{}: {err}", file.display()))
                .and_then(|_| {
                    addr2line::Loader::new(&file)
                        .map_err(|err| format!("{}: {err}", file.display()))
                });
            if let (Ok(_), Some(expected)) = (&loaded, self.build_ids.get(module)) {
                match build_id_of(&file) {
                    Some(found) if &found == expected => {}
                    Some(found) => self.warnings.push(format!(
                        "{} has build id {found}, the crashed process had {expected}: its lines may be wrong",
                        file.display()
                    )),
                    None => {}
                }
            }
            // The vDSO and other modules with no file behind them have no
            // debug info to read; only a missing file is worth a warning.
            if let (Err(why), true) = (&loaded, module.starts_with('/')) {
                self.warnings.push(format!("no symbols for {why}"));
            }
            self.loaded.insert(module.to_owned(), loaded);
        }
        self.loaded[module].as_ref().map_err(String::as_str)
    }

    fn write_frame(&mut self, frame: &RawFrame, out: &mut String) {
        // A return address points after its call; the call is one byte
        // before. The first frame is the exact program counter.
        let probe = if frame.index == 0 {
            frame.offset
        } else {
            frame.offset.saturating_sub(1)
        };
        let mut lines = Vec::new();
        if let Ok(loader) = self.loader(&frame.module) {
            if let Ok(mut frames) = loader.find_frames(probe) {
                while let Ok(Some(found)) = frames.next() {
                    let function = found
                        .function
                        .as_ref()
                        .and_then(|name| name.demangle().ok().map(|name| name.into_owned()));
                    let place = found.location.as_ref().and_then(|location| {
                        Some(format!("{}:{}", location.file?, location.line?))
                    });
                    lines.push((function, place));
                }
            }
            if lines.is_empty() {
                if let Some(symbol) = loader.find_symbol(probe) {
                    let name = addr2line::demangle_auto(symbol.into(), None).into_owned();
                    lines.push((Some(name), None));
                }
            }
        }
        if lines.is_empty() {
            let _ = writeln!(
                out,
                "  {:>3}: <unknown> at {:#x} ({}+{:#x})",
                frame.index, frame.address, frame.module, frame.offset
            );
            return;
        }
        for (function, place) in lines {
            let _ = writeln!(
                out,
                "  {:>3}: {}",
                frame.index,
                function.as_deref().unwrap_or("<unknown>")
            );
            if let Some(place) = place {
                let _ = writeln!(out, "           at {place}");
            }
        }
    }
}

/// `path` opened for reading if it is a regular file: opened without
/// blocking (a FIFO would wait for a writer) and checked on the open file.
fn regular_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The GNU build id of an ELF file, in hex.
fn build_id_of(path: &Path) -> Option<String> {
    use object::Object as _;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut regular_file(path).ok()?, &mut data).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_and_build_ids_are_read() {
        let frame = RawFrame::parse("  #3 0x5612a0b1c2d3 /srv/app+bin+0x1c2d3\n").unwrap();
        assert_eq!(frame.index, 3);
        assert_eq!(frame.address, 0x5612_a0b1_c2d3);
        assert_eq!(frame.module, "/srv/app+bin");
        assert_eq!(frame.offset, 0x1c2d3);
        assert!(RawFrame::parse("  thread 12 \"x\" (sleeping)").is_none());
        let ids =
            build_ids("modules:\n  0x55 /srv/app build id abc\n  0x7f linux-vdso.so.1\nend\n");
        assert_eq!(ids.get("/srv/app").map(String::as_str), Some("abc"));
        assert_eq!(ids.len(), 1);
    }
}
