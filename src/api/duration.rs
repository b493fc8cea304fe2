//! Go-style durations (`30s`, `10m`, `1h30m`), as Kubernetes and Argo
//! Rollouts write them.

use std::time::Duration;

/// Why a duration string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// A number is missing or malformed.
    #[error("invalid number in duration {0:?}")]
    Number(String),
    /// A unit is missing or unknown.
    #[error("unknown or missing unit in duration {0:?} (use ns, us, ms, s, m or h)")]
    Unit(String),
    /// The duration does not fit.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a non-negative Go duration such as `1h30m` or `1.5s`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::Unit(input.to_owned()))?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(DurationError::Number(input.to_owned()));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| DurationError::Number(input.to_owned()))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DurationError::Unit(input.to_owned())),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| DurationError::Overflow(input.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-5m"),
            Err(DurationError::Number(_))
        ));
        assert!(matches!(parse_duration("10"), Err(DurationError::Unit(_))));
        assert!(matches!(parse_duration("10d"), Err(DurationError::Unit(_))));
        assert!(matches!(parse_duration("m"), Err(DurationError::Number(_))));
        assert!(matches!(
            parse_duration(".5s"),
            Err(DurationError::Number(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
