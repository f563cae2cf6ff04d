//! Durations as people write them in options and flags.

use std::time::Duration;

/// `500ms`, `2s`, `1.5s`, `10m`, or a plain number of seconds. Zero is a
/// duration; a negative, infinite or unrepresentable one is not.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(manhole_wire::parse_duration("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(manhole_wire::parse_duration("soon"), None);
/// ```
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(millis) = text.strip_suffix("ms") {
        (millis, 1e-3)
    } else if let Some(minutes) = text.strip_suffix('m') {
        (minutes, 60.0)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let seconds = number.trim().parse::<f64>().ok()? * scale;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 1.5s "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1e300"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
