//! The text protocol's words: split as a POSIX shell splits them, and
//! quoted so that the split gives them back.

use crate::{Failure, Reason};

/// Splits a line into words like a POSIX shell: whitespace separates words,
/// `'...'` quotes literally, `"..."` quotes with `\` escaping `"` and `\`,
/// and a bare `\` escapes the next character. There are no comments.
///
/// # Errors
///
/// A [`Reason::Parse`] failure for a quote left open.
///
/// # Examples
///
/// ```
/// let words = manhole_wire::split_words(r#"say 'hello world' "a \"b\"" c\ d"#).unwrap();
/// assert_eq!(words, ["say", "hello world", "a \"b\"", "c d"]);
/// ```
pub fn split_words(line: &str) -> Result<Vec<String>, Failure> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unbalanced('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unbalanced('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unbalanced('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn unbalanced(quote: char) -> Failure {
    Failure::new(
        Reason::Parse,
        format!("unbalanced {quote} quote; close it, or escape it with a backslash"),
    )
}

/// One word in POSIX single quotes, a `'` written `'\''`.
#[must_use]
pub fn quote_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The words as one line that [`split_words`] turns back into exactly these
/// words: each argument single-quoted. The command word goes bare when it
/// is a plain name, because `set` is known by the line's first characters
/// (and takes the rest of the line as the value).
///
/// # Examples
///
/// ```
/// let words = ["say".to_owned(), "it's".to_owned()];
/// let line = manhole_wire::quote_line(&words);
/// assert_eq!(line, r"say 'it'\''s'");
/// assert_eq!(manhole_wire::split_words(&line).unwrap(), words);
/// ```
#[must_use]
pub fn quote_line(words: &[String]) -> String {
    let Some((command, args)) = words.split_first() else {
        return String::new();
    };
    let plain = !command.is_empty()
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    let command = if plain {
        command.clone()
    } else {
        quote_word(command)
    };
    std::iter::once(command)
        .chain(args.iter().map(|arg| quote_word(arg)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(words("  call add 40   2 "), ["call", "add", "40", "2"]);
        assert_eq!(words("x '' #tag"), ["x", "", "#tag"]);
        assert!(words("").is_empty());
        assert!(split_words("say 'open").unwrap_err().is(Reason::Parse));
    }

    #[test]
    fn quoted_lines_split_back_into_their_words() {
        for case in [
            vec!["add", "40", "2"],
            vec!["say", "two words", "it's", "\"q\"", "back\\slash", ""],
            vec!["weird name", "x"],
        ] {
            let case: Vec<String> = case.into_iter().map(String::from).collect();
            assert_eq!(words(&quote_line(&case)), case);
        }
    }
}
