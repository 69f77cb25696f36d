//! Value formats PD uses on the wire: byte sizes in binary units (`typeutil.ByteSize`, which renders
//! through `docker/go-units` `BytesSize`, i.e. `%.4g` plus a unit), Go `time.Duration` strings
//! (`"30m0s"`), RFC 3339 timestamps as Go's `time.Time` marshals them, and Go-compatible float output.

use serde::{Serialize, Serializer};

/// Binary unit suffixes in the order `go-units` walks them.
const BINARY_UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Formats a byte count the way PD's `typeutil.ByteSize` marshals it: `"0B"`, `"1KiB"`, `"1.819TiB"`.
pub fn format_bytes(bytes: u64) -> String {
    let mut size = bytes as f64;
    let mut unit = 0;
    // go-units divides while the value is at least one base unit.
    while size >= 1024.0 && unit < BINARY_UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{}{}", format_g4(size), BINARY_UNITS[unit])
}

/// Go's `%.4g` for a non-negative value below 10000: four significant digits, trailing zeros removed.
fn format_g4(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    // Round to four significant digits first, so that the exponent reflects the rounded value.
    let sci = format!("{value:.3e}");
    let (_, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..4).contains(&exp) {
        // Go switches to exponent form here; sizes never reach it, but keep the output valid.
        return sci;
    }
    let decimals = (3 - exp).max(0) as usize;
    let fixed = format!("{value:.decimals$}");
    if fixed.contains('.') { fixed.trim_end_matches('0').trim_end_matches('.').to_string() } else { fixed }
}

/// Formats milliseconds as Go's `time.Duration.String()` does: `"30m0s"`, `"1h0m0s"`, `"10ms"`, `"0s"`.
pub fn format_duration_ms(ms: u64) -> String {
    format_duration_ns(u128::from(ms) * 1_000_000)
}

/// Formats nanoseconds as Go's `time.Duration.String()` does, e.g. `"2m3.456789s"`.
pub fn format_duration_ns(ns: u128) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        // Below one second Go picks the largest unit that keeps the integer part non-zero.
        let (div, unit) = if ns < 1_000 {
            (1, "ns")
        } else if ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{}", fraction(ns, div), unit);
    }
    let total_secs = ns / 1_000_000_000;
    let frac_ns = ns % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let secs = fraction(u128::from(secs as u64) * 1_000_000_000 + frac_ns, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / div` with the remainder as a decimal fraction without trailing zeros.
fn fraction(value: u128, div: u128) -> String {
    let int = value / div;
    let rem = value % div;
    if rem == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string (`"30m"`, `"1h30m"`, `"1.5s"`, `"100ms"`) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total.round() as u64)
}

/// Formats unix nanoseconds as Go's `time.Time` JSON (RFC 3339 with trimmed nanoseconds), in UTC.
pub fn format_rfc3339_ns(unix_ns: u128) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    let nanos = (unix_ns % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        day_secs / 3600,
        (day_secs % 3600) / 60,
        day_secs % 60
    );
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// Upper-case hex, the way PD prints region keys.
pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}

/// A float that serialises like Go's `encoding/json`: integral values carry no `.0` (`1`, not `1.0`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
            serializer.serialize_i64(v as i64)
        } else {
            serializer.serialize_f64(v)
        }
    }
}

impl<'de> serde::Deserialize<'de> for GoFloat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(GoFloat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_match_go_units() {
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_bytes(1024), "1KiB");
        assert_eq!(format_bytes(2_000_000_000_000), "1.819TiB");
        assert_eq!(format_bytes(1_649_267_441_664), "1.5TiB");
        assert_eq!(format_bytes(129_385_472_000), "120.5GiB");
        assert_eq!(format_bytes(1000), "1000B");
        assert_eq!(format_bytes(1 << 40), "1TiB");
    }

    #[test]
    fn durations_match_go() {
        assert_eq!(format_duration_ms(30 * 60_000), "30m0s");
        assert_eq!(format_duration_ms(3_600_000), "1h0m0s");
        assert_eq!(format_duration_ms(48 * 3_600_000), "48h0m0s");
        assert_eq!(format_duration_ms(10), "10ms");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ns(123_456_789_000), "2m3.456789s");
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("30m0s"), Some(1_800_000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1_500));
        assert_eq!(parse_duration_ms("abc"), None);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(format_rfc3339_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_ns(1_717_000_000_500_000_000), "2024-05-29T16:26:40.5Z");
    }

    #[test]
    fn floats_render_like_go() {
        assert_eq!(serde_json::to_string(&GoFloat(1.0)).unwrap(), "1");
        assert_eq!(serde_json::to_string(&GoFloat(28800.5)).unwrap(), "28800.5");
    }
}
