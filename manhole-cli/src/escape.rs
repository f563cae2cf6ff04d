//! Text from another process, made safe for the operator's terminal.
//!
//! A process name, a thread name, an executable's path, an inspected
//! string, a log line or a whole reply can hold `ESC ] 52 ;` (the
//! clipboard), `ESC [ 2 K` (erase a line) or a title change. Everything
//! another process said is printed through here, on a terminal and in a
//! pipe alike: control characters are shown escaped, as git and `ls`
//! quote names. `ESC` becomes `\e`, another C0 control or DEL `\xNN`, and a
//! C1 control (U+0080 to U+009F, which some terminals obey as escapes)
//! `\u{NN}`. Newlines and tabs are kept in multi-line text, and escaped in
//! a one-line field. `--json` output escapes the same characters the JSON
//! way, so it stays valid JSON.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Multi-line text (a reply, a report): newlines and tabs kept.
pub fn text(text: &str) -> Cow<'_, str> {
    escaped(text, true)
}

/// A one-line field (a process name, a path, a message): every control
/// character escaped, newlines and tabs too.
pub fn field(text: &str) -> Cow<'_, str> {
    escaped(text, false)
}

/// Every string in `value`, object keys included, escaped as [`field`]
/// does: what the dashboard draws.
pub fn value(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(shown) = field(text) {
                *text = shown;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(self::value),
        Value::Object(members) => {
            let taken = std::mem::take(members);
            for (key, mut member) in taken {
                self::value(&mut member);
                members.insert(field(&key).into_owned(), member);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Serialised JSON with DEL and the C1 controls written as `\u00NN`, which
/// serde_json leaves raw (it escapes only what JSON requires, below 0x20).
pub fn json(serialised: String) -> String {
    if !serialised.chars().any(is_c1_or_del) {
        return serialised;
    }
    let mut out = String::with_capacity(serialised.len() + 16);
    for character in serialised.chars() {
        if is_c1_or_del(character) {
            let _ = write!(out, "\\u{:04x}", u32::from(character));
        } else {
            out.push(character);
        }
    }
    out
}

fn is_c1_or_del(character: char) -> bool {
    matches!(character, '\u{7f}'..='\u{9f}')
}

fn needs_escape(character: char, keep_lines: bool) -> bool {
    match character {
        '\n' | '\t' => !keep_lines,
        character => character.is_control(),
    }
}

fn escaped(text: &str, keep_lines: bool) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|character| needs_escape(character, keep_lines))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        if !needs_escape(character, keep_lines) {
            out.push(character);
            continue;
        }
        match character {
            '\u{1b}' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            character if u32::from(character) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(character));
            }
            character => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(character));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_and_never_sent() {
        let hostile = "app\u{1b}]0;TITLE\u{7}\u{1b}[2K\r\u{9b}31m";
        assert_eq!(text(hostile), "app\\e]0;TITLE\\x07\\e[2K\\r\\u{9b}31m");
        assert_eq!(text("two\nlines\twith a tab\n"), "two\nlines\twith a tab\n");
        assert_eq!(field("two\nlines"), "two\\nlines");
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        assert!(!text(hostile).chars().any(char::is_control));
    }

    #[test]
    fn json_stays_json_with_nothing_raw() {
        let value = serde_json::json!({"name": "a\u{1b}b\u{9b}c\u{7f}"});
        let shown = json(serde_json::to_string(&value).unwrap());
        assert!(!shown.chars().any(char::is_control), "{shown}");
        let back: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
        let mut drawn = serde_json::json!({"k\u{1b}": ["\u{1b}[2K", 1]});
        super::value(&mut drawn);
        assert_eq!(drawn, serde_json::json!({"k\\e": ["\\e[2K", 1]}));
    }
}
