//! How an error reply looks: `error: MESSAGE`, as the text session writes
//! it, in red on a terminal unless `NO_COLOR` is set.

use manhole_wire::REFUSAL_PREFIX;
use std::io::IsTerminal;

/// Whether to colour what goes to `stream`: a terminal, and `NO_COLOR`
/// unset or empty (<https://no-color.org>).
pub fn colour_for(stream: &impl IsTerminal) -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()) && stream.is_terminal()
}

/// `error: MESSAGE` and a newline, red when `colour` is set. The message
/// is often another process's, so its control characters are escaped.
pub fn error_line(message: &str, colour: bool) -> String {
    let message = crate::escape::field(message);
    if colour {
        format!("\x1b[31m{REFUSAL_PREFIX}{message}\x1b[0m\n")
    } else {
        format!("{REFUSAL_PREFIX}{message}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_red_only_when_asked() {
        assert_eq!(error_line("no", false), "error: no\n");
        assert_eq!(error_line("no", true), "\x1b[31merror: no\x1b[0m\n");
    }
}
