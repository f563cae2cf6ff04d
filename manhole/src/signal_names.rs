//! Signals by name, as options and messages spell them. Pure functions, so
//! that errors and options can name a signal without the module that
//! installs handlers.

/// `SIGUSR1`, `SIGRTMIN+3 (37)`, `SIGRTMAX`, or the plain number.
pub(crate) fn name(signal: libc::c_int) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if let Some((name, _)) = NAMED.iter().find(|(_, number)| *number == signal) {
        format!("SIG{name}")
    } else if signal == max {
        "SIGRTMAX".to_owned()
    } else if signal == min {
        "SIGRTMIN".to_owned()
    } else if (min..max).contains(&signal) {
        format!("SIGRTMIN+{} ({signal})", signal - min)
    } else {
        format!("signal {signal}")
    }
}

/// The signals a name can give, as `kill -l` spells them without `SIG`.
const NAMED: &[(&str, libc::c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
];

/// `USR1`, `SIGUSR1`, `sigusr1`, `RTMIN+3`, `SIGRTMAX-1` or `10`.
///
/// # Errors
///
/// What was expected, when `text` names no signal.
pub(crate) fn parse(text: &str) -> Result<libc::c_int, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = if let Ok(number) = bare.parse::<libc::c_int>() {
        Some(number)
    } else if let Some(&(_, signal)) = NAMED.iter().find(|(name, _)| *name == bare) {
        Some(signal)
    } else {
        let realtime = |name: &str, base: libc::c_int| {
            let rest = bare.strip_prefix(name)?;
            if rest.is_empty() {
                return Some(base);
            }
            let offset: libc::c_int = rest.parse().ok()?;
            Some(base + offset)
        };
        realtime("RTMIN", libc::SIGRTMIN()).or_else(|| realtime("RTMAX", libc::SIGRTMAX()))
    };
    match signal {
        Some(signal) if (1..=libc::SIGRTMAX()).contains(&signal) && ![libc::SIGKILL, libc::SIGSTOP].contains(&signal) => {
            Ok(signal)
        }
        _ => Err(format!(
            "{text:?} is not a signal that can be caught; expected a name such as USR1 or SIGUSR2, RTMIN+3, or a number"
        )),
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse("USR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("sigusr2"), Ok(libc::SIGUSR2));
        assert_eq!(parse("SIGQUIT"), Ok(libc::SIGQUIT));
        assert_eq!(parse("10"), Ok(10));
        assert_eq!(parse("RTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse("SIGRTMAX-1"), Ok(libc::SIGRTMAX() - 1));
        assert!(parse("KILL").is_err());
        assert!(parse("USR3")
            .unwrap_err()
            .contains("expected a name such as USR1"));
        assert!(parse("0").is_err());
    }
}
