//! PD's wire formats: sizes as strings in binary units (`"1.819TiB"`), Go durations (`"30m0s"`)
//! and RFC 3339 timestamps with nanoseconds and an offset.

/// Parses PD's size strings (`"0B"`, `"1KiB"`, `"1.819TiB"`, also decimal units) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'));
    let (number, unit) = match split {
        Some(i) => text.split_at(i),
        None => (text, "B"),
    };
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "PiB" => 1024f64.powi(5),
        "EiB" => 1024f64.powi(6),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        other => return Err(format!("`{text}` has an unknown size unit `{other}`")),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}` is not a size"));
    }
    Ok((value * factor).round() as u64)
}

/// Parses a Go duration (`"30m0s"`, `"1h"`, `"1.5s"`, `"300ms"`) into milliseconds.
pub fn parse_go_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration like `30m0s`");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ms = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad()),
        };
        total_ms += value * unit_ms;
        rest = &rest[unit_len..];
    }
    Ok(total_ms.round() as u64)
}

/// Formats seconds as Go does (`1800` → `"30m0s"`, `3600` → `"1h0m0s"`).
pub fn format_go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Parses an RFC 3339 timestamp (`2024-05-29T10:26:40.123456789+08:00`, `…Z`) into unix ms.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not an RFC 3339 timestamp");
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(range).and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &text[start..i];
        let first3: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = first3.parse().map_err(|_| bad())?;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z') | Some(b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let total = h * 3600 + m * 60;
            if *sign == b'+' { total } else { -total }
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).map_err(|_| bad())
}

/// Parses a time as Go prints it by default (`2024-05-29 10:26:40.123 +0800 CST`, as in PD's
/// operator strings) or as RFC 3339, into unix ms.
pub fn parse_go_time_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ms) = parse_rfc3339_ms(text) {
        return Ok(ms);
    }
    // `date time offset [zone] [m=+monotonic]` → `dateTtime±hh:mm`.
    let mut parts = text.split_whitespace();
    let (Some(date), Some(time), Some(offset)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{text}` is not a time"));
    };
    let offset = if offset.len() == 5 && (offset.starts_with('+') || offset.starts_with('-')) {
        format!("{}:{}", &offset[..3], &offset[3..])
    } else {
        return Err(format!("`{text}` is not a time"));
    };
    parse_rfc3339_ms(&format!("{date}T{time}{offset}")).map_err(|_| format!("`{text}` is not a time"))
}

/// Formats bytes in binary units for messages (`1.5 GiB`).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Formats a number of seconds for messages (`95 s`, `12 min`, `3.5 h`).
pub fn human_secs(secs: u64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 7200 {
        format!("{} min", secs / 60)
    } else {
        format!("{:.1} h", secs as f64 / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_pd_formats() {
        assert_eq!(parse_size("0B").unwrap(), 0);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("1.819TiB").unwrap(), (1.819 * 1024f64.powi(4)).round() as u64);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30m0s").unwrap(), 1_800_000);
        assert_eq!(parse_go_duration("1h0m0s").unwrap(), 3_600_000);
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1500);
        assert_eq!(parse_go_duration("300ms").unwrap(), 300);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert!(parse_go_duration("30 minutes").is_err());
        assert!(parse_go_duration("m").is_err());
        assert_eq!(format_go_duration(1800), "30m0s");
        assert_eq!(format_go_duration(3660), "1h1m0s");
        assert_eq!(format_go_duration(45), "45s");
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_rfc3339_ms("2024-05-29T10:26:40+08:00").unwrap(), 1_716_949_600_000);
        assert_eq!(parse_rfc3339_ms("2024-05-29T02:26:40.123456789Z").unwrap(), 1_716_949_600_123);
        assert!(parse_rfc3339_ms("yesterday").is_err());
        assert!(parse_rfc3339_ms("2024-13-29T02:26:40Z").is_err());
        assert_eq!(parse_go_time_ms("2024-05-29 10:26:40.123 +0800 CST").unwrap(), 1_716_949_600_123);
        assert_eq!(parse_go_time_ms("2024-05-29T10:26:40.123+08:00").unwrap(), 1_716_949_600_123);
        assert!(parse_go_time_ms("2024-05-29 10:26:40").is_err());
    }
}
