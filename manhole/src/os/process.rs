//! This process at a glance, for `info`: its ids, times, memory and open
//! descriptors, as `/proc/self` tells them.
//!
//! Every figure is read when asked for; nothing is sampled in the
//! background. `started_at` is the kernel's start time (`stat` field 22,
//! in clock ticks after boot) plus the boot time (`btime` in `/proc/stat`),
//! so it needs no clock of its own and no date crate.

use crate::os::procfs::{clock_ticks_per_second, parse_stat, StatTimes};
use std::time::{SystemTime, UNIX_EPOCH};

/// What `info` reports about the process itself (its limits are
/// [`crate::os::limits`]'s).
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) pid: u32,
    pub(crate) exe: String,
    pub(crate) args: Vec<String>,
    /// Seconds since the Unix epoch.
    pub(crate) started_at: Option<f64>,
    pub(crate) uptime_s: Option<f64>,
    pub(crate) threads: Option<u64>,
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) fds: Option<u64>,
    /// User plus system time of every thread, seconds.
    pub(crate) cpu_s: Option<f64>,
}

/// Reads the facts now.
pub(crate) fn facts() -> Facts {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let times: Option<StatTimes> = stat.as_deref().and_then(parse_stat).map(|(_, times)| times);
    let hz = clock_ticks_per_second() as f64;
    let started_at = times
        .zip(boot_time())
        .map(|(times, boot)| boot as f64 + times.starttime as f64 / hz);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    Facts {
        pid: std::process::id(),
        exe: std::env::current_exe()
            .map_or_else(|_| "?".to_owned(), |path| path.display().to_string()),
        args: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        started_at,
        uptime_s: started_at.map(|started| round(now - started, 2).max(0.0)),
        threads: times.map(|times| times.num_threads),
        rss_bytes: times.map(|times| times.rss_pages.saturating_mul(page_size())),
        fds: open_descriptors(),
        cpu_s: times.map(|times| round((times.utime + times.stime) as f64 / hz, 2)),
    }
}

/// `x` rounded to `digits` decimals.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The page size, the unit of `rss` in `stat`.
pub(crate) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u64::try_from(size).ok())
        .unwrap_or(4096)
}

/// `btime` from `/proc/stat`: when the system booted, in seconds since
/// the epoch.
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The open descriptors in `/proc/self/fd`, not counting the one that
/// reads the directory.
fn open_descriptors() -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut dir = nix::dir::Dir::open(
        "/proc/self/fd",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let own = dir.as_raw_fd();
    let count = dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().ok()?.parse::<i32>().ok())
        .filter(|fd| *fd != own)
        .count();
    u64::try_from(count).ok()
}

/// Seconds since the epoch as RFC 3339 in UTC, to the hundredth:
/// `2026-12-03T08:07:40.37Z`.
pub(crate) fn rfc3339(epoch_seconds: f64) -> String {
    rfc3339_with(epoch_seconds, 2)
}

/// Seconds since the epoch as RFC 3339 in UTC, with `digits` (at most 6)
/// decimals of the second.
pub(crate) fn rfc3339_with(epoch_seconds: f64, digits: u32) -> String {
    let digits = digits.min(6);
    let scale = 10i64.pow(digits);
    let units = (epoch_seconds * scale as f64).round() as i64;
    let (seconds, fraction) = (units.div_euclid(scale), units.rem_euclid(scale));
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let fraction = if digits == 0 {
        String::new()
    } else {
        format!(".{fraction:0width$}", width = digits as usize)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). Arithmetic only, so a crash handler may call it.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.00Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.50Z");
        assert_eq!(rfc3339(1_796_285_260.371), "2026-12-03T08:07:40.37Z");
        assert_eq!(rfc3339(4_102_444_799.999), "2100-01-01T00:00:00.00Z");
        assert_eq!(rfc3339(-1.0), "1969-12-31T23:59:59.00Z");
        assert_eq!(rfc3339_with(1.2345, 3), "1970-01-01T00:00:01.235Z");
        assert_eq!(rfc3339_with(59.9, 0), "1970-01-01T00:01:00Z");
    }

    #[test]
    fn this_process_is_described() {
        let facts = facts();
        assert_eq!(facts.pid, std::process::id());
        assert!(facts.threads.unwrap() >= 1);
        assert!(facts.rss_bytes.unwrap() > 0);
        // stdin, stdout and stderr at least.
        assert!(facts.fds.unwrap() >= 3);
        let uptime = facts.uptime_s.unwrap();
        assert!((0.0..3600.0).contains(&uptime), "{uptime}");
    }
}
