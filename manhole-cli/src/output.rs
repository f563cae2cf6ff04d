//! `-o FILE`: a command whose answer is a file, written by the client.
//!
//! `mem --heap-profile` and `profile --format pprof` answer with gzipped
//! pprof in base64 (JSON carries no bytes); the client decodes it and
//! writes the file, so that the file lands where the person typing is, even
//! when the process is on another host behind `--ssh`. A `profile` in
//! another format (`svg`, `folded`, `top`) is written as its text; without
//! `--format`, the file's name chooses it.

use crate::error::Error;
use crate::rpc::{Client, Reply};
use base64::Engine as _;
use manhole_wire::{Builtin, Failure, ProfileFormat, Reason, Request};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The words of a command, with `-o FILE` (or `--output FILE`) taken out
/// when the command is one whose answer can be a file (`mem`, `profile`);
/// the words of any other command are its own, `-o` included.
///
/// # Errors
///
/// A `bad_params` failure when `-o` has no file after it, or comes twice.
pub fn split(words: &[String]) -> Result<(Vec<String>, Option<PathBuf>), Failure> {
    let first = words.first().map(String::as_str);
    if first != Some(Builtin::Mem.name()) && first != Some(Builtin::Profile.name()) {
        return Ok((words.to_vec(), None));
    }
    let mut kept = Vec::with_capacity(words.len());
    let mut output = None;
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        // The command's own first word is never the flag.
        if kept.is_empty() || !matches!(word.as_str(), "-o" | "--output") {
            kept.push(word.clone());
            continue;
        }
        let Some(path) = rest.next() else {
            return Err(Failure::new(
                Reason::BadParams,
                "`-o` takes a file to write",
            ));
        };
        if output.replace(PathBuf::from(path)).is_some() {
            return Err(Failure::new(Reason::BadParams, "`-o` is given twice"));
        }
    }
    Ok((kept, output))
}

/// What `-o` wrote.
pub struct Written {
    /// The file's size.
    pub bytes: usize,
    /// How to open it, for people.
    pub hint: String,
}

/// The file names `-o` knows for a `profile`, and what each holds.
const PROFILE_FILE_NAMES: &str =
    ".svg (an icicle or flame graph), .folded or .txt (collapsed stacks), .pb.gz or .pprof (gzipped pprof)";

/// The format a `profile` written to `path` takes when `--format` does
/// not say: `.svg` an icicle (or flame) graph, `.folded`/`.txt` collapsed stacks,
/// `.pb.gz`/`.pprof` gzipped pprof.
///
/// # Errors
///
/// A `bad_params` failure for any other name, which lists the known ones.
fn profile_format_for(path: &Path) -> Result<ProfileFormat, Failure> {
    let name = path.to_string_lossy();
    if name.ends_with(".svg") {
        Ok(ProfileFormat::Svg)
    } else if name.ends_with(".folded") || name.ends_with(".txt") {
        Ok(ProfileFormat::Folded)
    } else if name.ends_with(".pb.gz") || name.ends_with(".pprof") {
        Ok(ProfileFormat::Pprof)
    } else {
        Err(Failure::new(
            Reason::BadParams,
            format!(
                "cannot tell which format to write to {name} from its name; name it {PROFILE_FILE_NAMES}, or say which with --format svg|folded|pprof|top"
            ),
        ))
    }
}

/// Makes sure `path` can be written before anything is asked, so that a
/// long profile does not end in a file that cannot be made. A file that
/// was not there is not left behind.
fn check_writable(path: &Path) -> Result<(), Error> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| Error::Io {
            doing: format!("write {}", path.display()),
            source,
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Asks `request`, whose answer is a file, and writes it to `path`: what
/// was written, or the server's error.
///
/// # Errors
///
/// A connection or I/O failure; a `bad_params` failure when the command
/// has no file to write.
pub fn write(client: &mut Client, request: &Request, path: &Path) -> Result<Reply<Written>, Error> {
    let shown = path.display();
    let (request, base64, hint) = match request {
        Request::Mem { heap_profile: true } => (
            request.clone(),
            true,
            format!("gzipped pprof: `go tool pprof -http=: {shown}`"),
        ),
        Request::Profile(profile) => {
            let mut profile = profile.clone();
            let format = match profile.format {
                Some(format) => format,
                None => match profile_format_for(path) {
                    Ok(format) => *profile.format.insert(format),
                    Err(failure) => return Ok(Err(failure.into())),
                },
            };
            let hint = match format {
                ProfileFormat::Pprof => format!("gzipped pprof: `go tool pprof -http=: {shown}`"),
                ProfileFormat::Svg => format!("a graph of the stacks: open {shown} in a browser"),
                ProfileFormat::Folded => format!(
                    "collapsed stacks: `flamegraph.pl {shown} > flame.svg`, or open it in speedscope"
                ),
                ProfileFormat::Top => "the top table".to_owned(),
            };
            (Request::Profile(profile), format == ProfileFormat::Pprof, hint)
        }
        _ => {
            return Ok(Err(Failure::new(
                Reason::BadParams,
                "`-o FILE` writes the answer of `mem --heap-profile` or `profile`, which are files; other commands print theirs",
            )
            .into()))
        }
    };
    // A profile takes seconds: a file that cannot be made is said first.
    // A heap profile is at once, and the server's refusal (profiling off)
    // says more.
    if matches!(request, Request::Profile(_)) {
        check_writable(path)?;
    }
    let answer = match client.ask(&request)? {
        Ok(answer) => answer,
        Err(reply) => return Ok(Err(reply)),
    };
    if matches!(request, Request::Profile(_)) && answer.get("samples") == Some(&Value::from(0)) {
        let mode = answer.get("mode").and_then(Value::as_str).unwrap_or("cpu");
        let why = if mode == "wall" {
            "no thread could be sampled"
        } else {
            "no thread chosen ran on a CPU meanwhile (`--wall` samples blocked threads too)"
        };
        return Ok(Err(Failure::new(
            Reason::ProfileFailed,
            format!("the profile has no samples: {why}; {shown} is not written"),
        )
        .into()));
    }
    let data = answer.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|err| client.bad_reply(format!("the profile is not base64: {err}")))?
    } else {
        data.as_bytes().to_vec()
    };
    std::fs::write(path, &bytes).map_err(|source| Error::Io {
        doing: format!("write {}", path.display()),
        source,
    })?;
    Ok(Ok(Written {
        bytes: bytes.len(),
        hint,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_takes_its_format_from_its_name() {
        let format = |name: &str| profile_format_for(Path::new(name)).ok();
        assert_eq!(format("cpu.svg"), Some(ProfileFormat::Svg));
        assert_eq!(format("cpu.folded"), Some(ProfileFormat::Folded));
        assert_eq!(format("cpu.txt"), Some(ProfileFormat::Folded));
        assert_eq!(format("cpu.pb.gz"), Some(ProfileFormat::Pprof));
        assert_eq!(format("cpu.pprof"), Some(ProfileFormat::Pprof));
        let unknown = profile_format_for(Path::new("x.png")).unwrap_err();
        assert!(
            unknown.message.contains(".svg (an icicle or flame graph)"),
            "{}",
            unknown.message
        );
        assert!(unknown.message.contains("--format"), "{}", unknown.message);
    }

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn the_output_file_is_taken_out_of_the_words() {
        assert_eq!(
            split(&words(&["mem", "--heap-profile", "-o", "heap.pb.gz"])).unwrap(),
            (
                words(&["mem", "--heap-profile"]),
                Some(PathBuf::from("heap.pb.gz"))
            )
        );
        assert_eq!(
            split(&words(&["mem", "--output", "h", "--heap-profile"])).unwrap(),
            (words(&["mem", "--heap-profile"]), Some(PathBuf::from("h")))
        );
        assert_eq!(
            split(&words(&["get", "X"])).unwrap(),
            (words(&["get", "X"]), None)
        );
        // A command's own `-o` stays its own.
        assert_eq!(
            split(&words(&["call", "grep", "-o", "x"])).unwrap(),
            (words(&["call", "grep", "-o", "x"]), None)
        );
        assert_eq!(
            split(&words(&["profile", "5", "-o", "cpu.svg"])).unwrap(),
            (words(&["profile", "5"]), Some(PathBuf::from("cpu.svg")))
        );
        assert!(split(&words(&["mem", "-o"])).is_err());
        assert!(split(&words(&["mem", "-o", "a", "-o", "b"])).is_err());
    }
}
