//! `-o FILE`: a command whose answer is a file, written by the client.
//!
//! `mem --heap-profile` answers with gzipped pprof in base64 (JSON carries
//! no bytes); the client decodes it and writes the file, so that the file
//! lands where the person typing is, even when the process is on another
//! host behind `--ssh`.

use crate::error::Error;
use crate::rpc::{Client, Reply};
use base64::Engine as _;
use manhole_wire::{Builtin, Failure, Reason, Request};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The words of a command, with `-o FILE` (or `--output FILE`) taken out
/// when the command is one whose answer can be a file (`mem`); the words of
/// any other command are its own, `-o` included.
///
/// # Errors
///
/// A `bad_params` failure when `-o` has no file after it, or comes twice.
pub fn split(words: &[String]) -> Result<(Vec<String>, Option<PathBuf>), Failure> {
    if words.first().map(String::as_str) != Some(Builtin::Mem.name()) {
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

/// Asks `request`, whose answer is a file, and writes it to `path`: the
/// number of bytes written, or the server's error.
///
/// # Errors
///
/// A connection or I/O failure; a `bad_params` failure when the command
/// has no file to write.
pub fn write(client: &mut Client, request: &Request, path: &Path) -> Result<Reply<usize>, Error> {
    if !matches!(request, Request::Mem { heap_profile: true }) {
        return Ok(Err(Failure::new(
            Reason::BadParams,
            "`-o FILE` writes the answer of `mem --heap-profile`, which is a file; other commands print theirs",
        )
        .into()));
    }
    let answer = match client.ask(request)? {
        Ok(answer) => answer,
        Err(reply) => return Ok(Err(reply)),
    };
    let data = answer.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|err| client.bad_reply(format!("the profile is not base64: {err}")))?;
    std::fs::write(path, &bytes).map_err(|source| Error::Io {
        doing: format!("write {}", path.display()),
        source,
    })?;
    Ok(Ok(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(split(&words(&["mem", "-o"])).is_err());
        assert!(split(&words(&["mem", "-o", "a", "-o", "b"])).is_err());
    }
}
