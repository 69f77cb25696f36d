//! When and how long to wait before trying an LLM request again (pure; no I/O, no clock).
//!
//! - Only transient failures are retried: 429, 500, 502, 503, 504, 529, timeouts and failed
//!   connections. A request the API judged wrong (400, 401, 403, 404, 413), a billing refusal
//!   (402) or an exhausted spend limit (`error.details.error_code ==
//!   "enforced_spend_limit_reached"`, whatever the status) fails at once: trying again cannot
//!   help and may cost.
//! - The wait is exponential backoff with full jitter (a uniform draw below the capped
//!   exponential), so many hosts retrying at once spread out.
//! - A `retry-after` from the server (seconds or an HTTP date) is honoured as given; a wait
//!   longer than the configured ceiling gives up instead of blocking a diagnosis for that long.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The error code an exhausted spend limit carries in `error.details.error_code`.
pub const SPEND_LIMIT_CODE: &str = "enforced_spend_limit_reached";

/// How one attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The server answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// `error.details.error_code` of the body, if any.
        error_code: Option<&'a str>,
    },
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// Anything else (a malformed request, a body that could not be read, ...).
    Other,
}

/// Whether a failure is worth another attempt.
pub fn is_retryable(failure: Failure<'_>) -> bool {
    match failure {
        Failure::Status { error_code: Some(SPEND_LIMIT_CODE), .. } => false,
        Failure::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504 | 529),
        Failure::Timeout | Failure::Connect => true,
        Failure::Other => false,
    }
}

/// The retry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The backoff before the first retry's jitter.
    pub base_delay: Duration,
    /// The ceiling of one backoff.
    pub max_delay: Duration,
    /// The longest `retry-after` honoured; a longer one gives up.
    pub max_retry_after: Duration,
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop; the text says why.
    GiveUp(String),
}

impl Policy {
    /// The full-jitter backoff before retry number `retry` (1 for the first retry), given a
    /// uniform draw `unit` in `[0, 1)`: `unit × min(max_delay, base_delay × 2^(retry-1))`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let ceiling = self.base_delay.saturating_mul(1u32 << exponent).min(self.max_delay);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether and how long to wait after attempt number `attempt` (1-based) failed with
    /// `failure`, given the server's `retry_after` and a uniform draw `unit` in `[0, 1)`.
    pub fn decide(&self, attempt: u32, failure: Failure<'_>, retry_after: Option<Duration>, unit: f64) -> Decision {
        if !is_retryable(failure) {
            return Decision::GiveUp("the failure is not transient".to_owned());
        }
        if attempt >= self.max_attempts {
            return Decision::GiveUp(format!("{} attempt(s) failed", attempt));
        }
        match retry_after {
            Some(wait) if wait > self.max_retry_after => Decision::GiveUp(format!(
                "the server asked to wait {} s, longer than the {} s allowed (diagnosis.retry.max_retry_after_secs)",
                wait.as_secs(),
                self.max_retry_after.as_secs()
            )),
            Some(wait) => Decision::RetryAfter(wait),
            None => Decision::RetryAfter(self.backoff(attempt, unit)),
        }
    }
}

/// The wait a `retry-after` header asks for: whole (or fractional) seconds, or an HTTP date
/// (a date in the past means now). None when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait a `retry-after-ms` header asks for (sent by some OpenAI-compatible servers).
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let ms = value.trim().parse::<f64>().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms.min(1e12) / 1000.0))
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parses an HTTP date in the preferred format (RFC 9110 IMF-fixdate), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`. The obsolete formats are not accepted; no server of the
/// APIs used here sends them.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let rest = value.trim().split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// The inverse of `days_from_civil`, to format dates for the round trip.
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
    }

    fn http_date(secs: u64) -> String {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        let days = (secs / 86_400) as i64;
        let (year, month, day) = civil_from_days(days);
        let rem = secs % 86_400;
        format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            WEEKDAYS[(days % 7) as usize],
            day,
            MONTHS[month as usize - 1],
            year,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    #[test]
    fn classification() {
        for status in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable(Failure::Status { status, error_code: None }), "{status}");
        }
        for status in [400, 401, 402, 403, 404, 413, 422] {
            assert!(!is_retryable(Failure::Status { status, error_code: None }), "{status}");
        }
        assert!(!is_retryable(Failure::Status { status: 429, error_code: Some(SPEND_LIMIT_CODE) }));
        assert!(!is_retryable(Failure::Status { status: 529, error_code: Some(SPEND_LIMIT_CODE) }));
        assert!(is_retryable(Failure::Timeout));
        assert!(is_retryable(Failure::Connect));
        assert!(!is_retryable(Failure::Other));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(now));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_retry_after_ms("250"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn decisions() {
        let p = policy();
        let overloaded = Failure::Status { status: 529, error_code: None };
        assert_eq!(p.decide(1, overloaded, None, 0.5), Decision::RetryAfter(Duration::from_millis(50)));
        assert_eq!(p.decide(3, overloaded, None, 0.5), Decision::RetryAfter(Duration::from_millis(200)));
        assert!(matches!(p.decide(4, overloaded, None, 0.5), Decision::GiveUp(why) if why.contains("4 attempt")));
        assert_eq!(
            p.decide(1, overloaded, Some(Duration::from_secs(3)), 0.5),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        assert!(matches!(
            p.decide(1, overloaded, Some(Duration::from_secs(600)), 0.5),
            Decision::GiveUp(why) if why.contains("600 s")
        ));
        assert!(matches!(
            p.decide(1, Failure::Status { status: 400, error_code: None }, None, 0.5),
            Decision::GiveUp(_)
        ));
    }

    proptest! {
        #[test]
        fn backoff_stays_under_its_ceilings(retry in 0u32..100, unit in 0.0f64..1.0, base_ms in 0u64..10_000, max_ms in 0u64..100_000) {
            let p = Policy { base_delay: Duration::from_millis(base_ms), max_delay: Duration::from_millis(max_ms), ..policy() };
            let delay = p.backoff(retry, unit);
            prop_assert!(delay <= p.max_delay);
            let exponential = Duration::from_millis(base_ms).saturating_mul(1u32 << retry.saturating_sub(1).min(30));
            prop_assert!(delay <= exponential);
        }

        #[test]
        fn attempts_are_bounded(max_attempts in 1u32..10, status in 100u16..600, unit in 0.0f64..1.0) {
            let p = Policy { max_attempts, ..policy() };
            let failure = Failure::Status { status, error_code: None };
            let mut attempt = 1;
            while let Decision::RetryAfter(_) = p.decide(attempt, failure, None, unit) {
                attempt += 1;
                prop_assert!(attempt <= max_attempts);
            }
        }

        #[test]
        fn client_errors_and_spend_limits_are_never_retried(status in 100u16..600, attempt in 1u32..3) {
            let p = policy();
            if (400..500).contains(&status) && status != 429 {
                let decision = p.decide(attempt, Failure::Status { status, error_code: None }, None, 0.1);
                prop_assert!(matches!(decision, Decision::GiveUp(_)), "{status} was retried");
            }
            let spent = Failure::Status { status, error_code: Some(SPEND_LIMIT_CODE) };
            let decision = p.decide(attempt, spent, Some(Duration::ZERO), 0.1);
            prop_assert!(matches!(decision, Decision::GiveUp(_)), "a spend limit was retried");
        }

        #[test]
        fn http_dates_round_trip(secs in 0u64..8_000_000_000, later in 0u64..100_000) {
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            prop_assert_eq!(parse_http_date(&http_date(secs)), Some(at));
            prop_assert_eq!(parse_retry_after(&http_date(secs + later), at), Some(Duration::from_secs(later)));
        }
    }
}
