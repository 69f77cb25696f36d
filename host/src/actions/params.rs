//! Parameter checking against a catalogue's typed schema (pure). Every problem is reported at once:
//! unknown names, missing required parameters, wrong types, values out of range.
//!
//! | `param-type` | JSON value accepted | command-line text accepted |
//! |---|---|---|
//! | `boolean` | `true` / `false` | `true`, `false` |
//! | `integer(min, max)` | a whole number in range | `42` |
//! | `number(min, max)` | a number in range | `0.5` |
//! | `text(max-len)` | a string no longer than `max-len` bytes | anything |
//! | `choice(words)` | one of the words | one of the words |
//! | `duration-secs(min, max)` | whole seconds in range | `90`, `90s`, `15m`, `2h` |
//! | `integer-list(min, max)` | a list of whole numbers in range | `1,2,3` |

use serde_json::Value;

use super::ledger::StoredParam;
use crate::runtime::bindings::types::{ActionSpec, Param, ParamSpec, ParamType, ParamValue};

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(v: T, min: Option<T>, max: Option<T>) -> Result<(), String> {
    if let Some(min) = min
        && v < min
    {
        return Err(format!("{v} is below the minimum {min}"));
    }
    if let Some(max) = max
        && v > max
    {
        return Err(format!("{v} is above the maximum {max}"));
    }
    Ok(())
}

/// Checks one JSON value against a parameter's type and converts it.
pub fn check_value(spec: &ParamSpec, value: &Value) -> Result<ParamValue, String> {
    let kind = match &spec.kind {
        ParamType::Boolean => "true or false",
        ParamType::Integer(_) | ParamType::DurationSecs(_) => "a whole number",
        ParamType::Number(_) => "a number",
        ParamType::Text(_) | ParamType::Choice(_) => "text",
        ParamType::IntegerList(_) => "a list of whole numbers",
    };
    let wrong = || format!("must be {kind}, not {value}");
    match &spec.kind {
        ParamType::Boolean => value.as_bool().map(ParamValue::Boolean).ok_or_else(wrong),
        ParamType::Integer(r) | ParamType::DurationSecs(r) => {
            let v = value.as_i64().ok_or_else(wrong)?;
            in_range(v, r.min, r.max)?;
            Ok(ParamValue::Integer(v))
        }
        ParamType::Number(r) => {
            let v = value.as_f64().filter(|v| v.is_finite()).ok_or_else(wrong)?;
            in_range(v, r.min, r.max)?;
            Ok(ParamValue::Number(v))
        }
        ParamType::Text(rule) => {
            let v = value.as_str().ok_or_else(wrong)?;
            if let Some(max) = rule.max_len
                && v.len() > max as usize
            {
                return Err(format!("is {} bytes long, more than {max}", v.len()));
            }
            Ok(ParamValue::Text(v.to_owned()))
        }
        ParamType::Choice(words) => {
            let v = value.as_str().ok_or_else(wrong)?;
            if words.iter().any(|w| w == v) {
                Ok(ParamValue::Text(v.to_owned()))
            } else {
                Err(format!("must be one of {}, not `{v}`", words.join(", ")))
            }
        }
        ParamType::IntegerList(r) => {
            let items = value.as_array().ok_or_else(wrong)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let v = item.as_i64().ok_or_else(wrong)?;
                in_range(v, r.min, r.max)?;
                out.push(v);
            }
            Ok(ParamValue::IntegerList(out))
        }
    }
}

/// Reads command-line text (`k=v`) as the JSON value the parameter's type expects.
pub fn text_to_value(spec: &ParamSpec, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match &spec.kind {
        ParamType::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("must be true or false, not `{text}`")),
        },
        ParamType::Integer(_) => {
            text.parse::<i64>().map(Value::from).map_err(|_| format!("must be a whole number, not `{text}`"))
        }
        ParamType::Number(_) => {
            text.parse::<f64>().map(Value::from).map_err(|_| format!("must be a number, not `{text}`"))
        }
        ParamType::DurationSecs(_) => {
            if let Ok(secs) = text.parse::<i64>() {
                return Ok(Value::from(secs));
            }
            humantime::parse_duration(text)
                .map(|d| Value::from(d.as_secs() as i64))
                .map_err(|_| format!("must be seconds or a duration like `15m`, not `{text}`"))
        }
        ParamType::Text(_) | ParamType::Choice(_) => Ok(Value::String(text.to_owned())),
        ParamType::IntegerList(_) => text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| format!("must be whole numbers separated by commas, not `{text}`"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

/// Checks named JSON values against an action's parameters: fills defaults, and lists every
/// problem (unknown, missing, wrong type, out of range) when any.
pub fn validate(spec: &ActionSpec, given: &[(String, Value)]) -> Result<Vec<Param>, Vec<String>> {
    let mut problems = Vec::new();
    for (name, _) in given {
        if !spec.params.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
            problems.push(format!("`{name}` is not a parameter of {} (it takes: {})", spec.name, known.join(", ")));
        }
    }
    let mut out = Vec::new();
    for param in &spec.params {
        let mut values = given.iter().filter(|(n, _)| n == &param.name);
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => problems.push(format!("`{}` is given more than once", param.name)),
            (Some((_, value)), None) => match check_value(param, value) {
                Ok(v) => out.push(Param { name: param.name.clone(), value: v }),
                Err(e) => problems.push(format!("`{}` {e}", param.name)),
            },
            (None, _) => match &param.default {
                Some(default) => out.push(Param { name: param.name.clone(), value: default.clone() }),
                None if param.required => {
                    problems.push(format!("`{}` is required ({})", param.name, param.description))
                }
                None => {}
            },
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Parses `k=v` command-line pairs against an action's parameters and validates them.
pub fn parse_cli(spec: &ActionSpec, pairs: &[String]) -> Result<Vec<Param>, Vec<String>> {
    let mut problems = Vec::new();
    let mut given = Vec::new();
    let mut unreadable = Vec::new();
    for pair in pairs {
        let Some((name, text)) = pair.split_once('=') else {
            problems.push(format!("`{pair}` is not name=value"));
            continue;
        };
        match spec.params.iter().find(|p| p.name == name) {
            Some(param) => match text_to_value(param, text) {
                Ok(value) => given.push((name.to_owned(), value)),
                Err(e) => {
                    problems.push(format!("`{name}` {e}"));
                    unreadable.push(format!("`{name}` is required"));
                }
            },
            None => given.push((name.to_owned(), Value::String(text.to_owned()))),
        }
    }
    match validate(spec, &given) {
        Ok(params) if problems.is_empty() => Ok(params),
        Ok(_) => Err(problems),
        Err(more) => {
            // A parameter given but unreadable is not also "required".
            problems.extend(more.into_iter().filter(|p| !unreadable.iter().any(|u| p.starts_with(u.as_str()))));
            Err(problems)
        }
    }
}

/// A parameter value as JSON.
pub fn to_json(value: &ParamValue) -> Value {
    match value {
        ParamValue::Boolean(b) => Value::Bool(*b),
        ParamValue::Integer(i) => Value::from(*i),
        ParamValue::Number(n) => Value::from(*n),
        ParamValue::Text(t) => Value::String(t.clone()),
        ParamValue::IntegerList(items) => Value::Array(items.iter().map(|i| Value::from(*i)).collect()),
    }
}

/// Validated parameters as stored.
pub fn to_stored(params: &[Param]) -> Vec<StoredParam> {
    params.iter().map(|p| StoredParam { name: p.name.clone(), value: to_json(&p.value) }).collect()
}

/// Stored parameters back as WIT values, re-checked against the catalogue.
pub fn from_stored(spec: &ActionSpec, stored: &[StoredParam]) -> Result<Vec<Param>, Vec<String>> {
    let given: Vec<(String, Value)> = stored.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
    validate(spec, &given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::{IntegerRange, NumberRange, Risk, TextRule};

    fn spec() -> ActionSpec {
        let p = |name: &str, kind, required, default| ParamSpec {
            name: name.into(),
            description: format!("the {name}"),
            kind,
            required,
            default,
        };
        ActionSpec {
            name: "demo".into(),
            description: String::new(),
            risk: Risk::Low,
            params: vec![
                p("store", ParamType::Integer(IntegerRange { min: Some(1), max: None }), true, None),
                p("weight", ParamType::Number(NumberRange { min: Some(0.0), max: Some(10.0) }), false, None),
                p(
                    "mode",
                    ParamType::Choice(vec!["fast".into(), "safe".into()]),
                    false,
                    Some(ParamValue::Text("safe".into())),
                ),
                p("wait", ParamType::DurationSecs(IntegerRange { min: Some(1), max: Some(3600) }), false, None),
                p("ids", ParamType::IntegerList(IntegerRange { min: Some(1), max: None }), false, None),
                p("note", ParamType::Text(TextRule { max_len: Some(4) }), false, None),
            ],
            entity_param: Some("store".into()),
            undo: None,
            verify_window_secs: 0,
        }
    }

    #[test]
    fn command_line_values_are_typed_and_defaults_filled() {
        let params = parse_cli(&spec(), &["store=4".into(), "wait=15m".into(), "ids=1,2".into()]).unwrap();
        let by_name = |n: &str| params.iter().find(|p| p.name == n).map(|p| to_json(&p.value));
        assert_eq!(by_name("store"), Some(serde_json::json!(4)));
        assert_eq!(by_name("wait"), Some(serde_json::json!(900)));
        assert_eq!(by_name("ids"), Some(serde_json::json!([1, 2])));
        assert_eq!(by_name("mode"), Some(serde_json::json!("safe")));
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let problems = parse_cli(
            &spec(),
            &["weight=11".into(), "mode=reckless".into(), "colour=red".into(), "note=toolong".into(), "oops".into()],
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "`store` is required",
            "above the maximum 10",
            "one of fast, safe",
            "`colour` is not a parameter",
            "more than 4",
            "not name=value",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
        let wrong_type = validate(&spec(), &[("store".into(), Value::String("four".into()))]).unwrap_err();
        assert!(wrong_type[0].contains("must be a whole number"), "{wrong_type:?}");
    }
}
