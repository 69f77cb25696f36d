//! A strict reader of Prometheus' text exposition format 0.0.4, enough to check what the simulator
//! serves: every sample belongs to a family with `# HELP` and `# TYPE` lines, names and labels are
//! well formed, and histograms are cumulative with `+Inf` equal to `_count`.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: the declared family types and the samples in order.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels).map(|s| s.value)
    }

    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }

    /// Cumulative buckets `(le, count)` of histogram `name` for the samples matching `labels`.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        self.samples
            .iter()
            .filter(|s| {
                s.name == bucket && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| (parse_value(&s.labels["le"]).unwrap(), s.value))
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses `text`, panicking with the offending line on any format error.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    assert!(text.is_empty() || text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "bad HELP name: {line}");
            assert!(out.helps.insert(name.to_string(), help.to_string()).is_none(), "duplicate HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE: {line}"));
            assert!(valid_name(name), "bad TYPE name: {line}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type: {line}");
            assert!(!out.samples.iter().any(|s| family(&s.name, &out.types) == name), "TYPE after samples: {line}");
            assert!(out.types.insert(name.to_string(), kind.to_string()).is_none(), "duplicate TYPE: {line}");
            continue;
        }
        assert!(!line.starts_with('#') || line.starts_with("# "), "bad comment: {line}");
        if line.starts_with('#') {
            continue;
        }
        out.samples.push(parse_sample(line));
    }
    for s in &out.samples {
        let fam = family(&s.name, &out.types);
        let kind = out.types.get(fam).unwrap_or_else(|| panic!("sample without TYPE: {}", s.name));
        assert!(out.helps.contains_key(fam), "family without HELP: {fam}");
        if kind == "counter" {
            assert!(s.value >= 0.0, "negative counter {s:?}");
        }
    }
    check_histograms(&out);
    out
}

/// The family a sample belongs to: histogram samples carry a `_bucket`, `_sum` or `_count` suffix.
fn family<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram" || t == "summary")
        {
            return base;
        }
    }
    name
}

fn parse_sample(line: &str) -> Sample {
    let (name_end, rest) = match line.find(['{', ' ']) {
        Some(i) => (i, &line[i..]),
        None => panic!("no value: {line}"),
    };
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name: {line}");
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            let Some(&(i, c)) = chars.peek() else { panic!("unterminated labels: {line}") };
            if c == '}' {
                break i;
            }
            let start = i;
            while chars.peek().is_some_and(|&(_, c)| c != '=') {
                chars.next();
            }
            let (eq, _) = chars.next().unwrap_or_else(|| panic!("label without '=': {line}"));
            let key = &body[start..eq];
            assert!(valid_name(key) && !key.contains(':'), "bad label name {key:?}: {line}");
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "unquoted label value: {line}");
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            }
            assert!(labels.insert(key.to_string(), value).is_none(), "duplicate label: {line}");
            match chars.peek() {
                Some(&(_, ',')) => {
                    chars.next();
                }
                Some(&(_, '}')) => {}
                _ => panic!("bad label separator: {line}"),
            }
        };
        &body[end + 1..]
    } else {
        rest
    };
    let mut parts = rest.split_whitespace();
    assert!(rest.starts_with(' '), "no space before value: {line}");
    let value = parts.next().and_then(parse_value).unwrap_or_else(|| panic!("bad value: {line}"));
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp: {line}"));
    }
    assert!(parts.next().is_none(), "trailing text: {line}");
    Sample { name: name.to_string(), labels, value }
}

/// A series' labels without `le`, in name order.
type Labels = Vec<(String, String)>;

fn check_histograms(exp: &Exposition) {
    for (name, kind) in &exp.types {
        if kind != "histogram" {
            continue;
        }
        // Group the series by their labels without `le`.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in exp.samples.iter().filter(|s| s.name == format!("{name}_bucket")) {
            let le = parse_value(s.labels.get("le").unwrap_or_else(|| panic!("bucket without le: {s:?}"))).unwrap();
            let key: Vec<(String, String)> =
                s.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
            series.entry(key).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "histogram {name} has no buckets");
        for (key, buckets) in series {
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{name}{key:?}: le not increasing");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{key:?}: buckets not cumulative");
            let (last_le, last) = *buckets.last().unwrap();
            assert!(last_le.is_infinite(), "{name}{key:?}: no +Inf bucket");
            let labels: Vec<(&str, &str)> = key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count =
                exp.value(&format!("{name}_count"), &labels).unwrap_or_else(|| panic!("{name}{key:?}: no _count"));
            assert_eq!(last, count, "{name}{key:?}: +Inf bucket differs from _count");
            assert!(exp.value(&format!("{name}_sum"), &labels).is_some(), "{name}{key:?}: no _sum");
        }
    }
}

/// The q-quantile of a cumulative histogram's increase between two scrapes: the smallest `le` whose
/// bucket grew by at least q of the count's growth.
pub fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let deltas: Vec<(f64, f64)> = after.iter().zip(before).map(|(a, b)| (a.0, a.1 - b.1)).collect();
    let total = deltas.last().map(|d| d.1).unwrap_or(0.0);
    assert!(total > 0.0, "no observations between the scrapes");
    deltas.iter().find(|d| d.1 >= q * total).map(|d| d.0).unwrap()
}
