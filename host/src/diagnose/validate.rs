//! Validation of a diagnosis against the action catalogue (pure; no I/O).
//!
//! Whatever the diagnoser, its answer is checked before anyone sees it:
//! - the diagnosis itself: a summary and a root cause that say something, a confidence in 0–1
//!   (float slop is clamped, anything else refused), well-formed lists. These problems refuse
//!   the whole answer, so an LLM can be asked once more.
//! - each recommendation: a known action, every required parameter, no unknown parameter, each
//!   value of its declared type and within its bounds. A recommendation with any problem is
//!   dropped, never kept or repaired, and every problem is recorded with it.
//!
//! The same parameter checks guard the arguments a model passes to a query.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::model::{Alternative, Diagnosis, DroppedRecommendation, Recommendation};
use crate::runtime::bindings::types;

/// A diagnosis that passed validation, and the recommendations it lost on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The diagnosis, with only the recommendations that fit the catalogue.
    pub diagnosis: Diagnosis,
    /// The recommendations refused, with every problem found.
    pub dropped: Vec<DroppedRecommendation>,
}

/// How far outside 0–1 a confidence may stray and still be clamped (rounding, not intent).
const CONFIDENCE_SLOP: f64 = 1e-6;

/// Validates a diagnosis given as JSON (an LLM's answer): its shape, its own fields, and each
/// recommendation against `catalogue`. A recommendation that does not even parse is dropped
/// like any other bad one. Fails with every problem of the diagnosis itself.
pub fn answer(value: &Value, catalogue: &[types::ActionSpec]) -> Result<Validated, Vec<String>> {
    let Value::Object(object) = value else {
        return Err(vec![format!("the diagnosis must be a JSON object, not {}", kind_of(value))]);
    };
    let mut problems = Vec::new();
    let summary = required_text(object, "summary", &mut problems);
    let root_cause = required_text(object, "root_cause", &mut problems);
    let confidence = match object.get("confidence") {
        Some(value) => match value.as_f64() {
            Some(c) => clamp_confidence(c).unwrap_or_else(|e| {
                problems.push(e);
                c
            }),
            None => {
                problems.push(format!("confidence must be a number from 0 to 1, not {}", shown(value)));
                f64::NAN
            }
        },
        None => {
            problems.push("confidence is missing".to_owned());
            f64::NAN
        }
    };
    let timeline = text_list(object, "timeline", &mut problems);
    let affected = text_list(object, "affected", &mut problems);
    let evidence = text_list(object, "evidence", &mut problems);
    let alternatives = match object.get("alternatives") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match serde_json::from_value::<Alternative>(item.clone()) {
                Ok(alternative) => Some(alternative),
                Err(e) => {
                    problems.push(format!("alternatives[{i}]: {e}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(format!("alternatives must be a list, not {}", kind_of(other)));
            Vec::new()
        }
    };
    let wait_reason = match object.get("wait_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(format!("wait_reason must be text or null, not {}", kind_of(other)));
            None
        }
    };
    let mut recommendations = Vec::new();
    let mut dropped = Vec::new();
    match object.get("recommendations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match serde_json::from_value::<Recommendation>(item.clone()) {
                    Ok(recommendation) => recommendations.push(recommendation),
                    Err(e) => dropped.push(DroppedRecommendation {
                        recommendation: item.clone(),
                        reason: format!("malformed recommendation: {e}"),
                    }),
                }
            }
        }
        Some(other) => problems.push(format!("recommendations must be a list, not {}", kind_of(other))),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let diagnosis = Diagnosis {
        summary,
        timeline,
        affected,
        root_cause,
        confidence,
        evidence,
        alternatives,
        recommendations,
        wait_reason,
    };
    let mut validated = diagnosis_against(diagnosis, catalogue)?;
    dropped.append(&mut validated.dropped);
    validated.dropped = dropped;
    Ok(validated)
}

/// Validates a diagnosis already in the host model (the rules' answer, converted): its own
/// fields, then each recommendation against `catalogue`.
pub fn diagnosis_against(mut diagnosis: Diagnosis, catalogue: &[types::ActionSpec]) -> Result<Validated, Vec<String>> {
    let mut problems = Vec::new();
    if diagnosis.summary.trim().is_empty() {
        problems.push("summary is empty".to_owned());
    }
    if diagnosis.root_cause.trim().is_empty() {
        problems.push("root_cause is empty".to_owned());
    }
    match clamp_confidence(diagnosis.confidence) {
        Ok(c) => diagnosis.confidence = c,
        Err(e) => problems.push(e),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for recommendation in std::mem::take(&mut diagnosis.recommendations) {
        match recommendation_params(&recommendation, catalogue) {
            Ok(_) => kept.push(recommendation),
            Err(problems) => dropped.push(DroppedRecommendation {
                recommendation: serde_json::to_value(&recommendation).unwrap_or(Value::Null),
                reason: problems.join("; "),
            }),
        }
    }
    diagnosis.recommendations = kept;
    Ok(Validated { diagnosis, dropped })
}

/// A confidence in 0–1; a value a rounding error outside is clamped, anything else refused.
pub fn clamp_confidence(confidence: f64) -> Result<f64, String> {
    if !confidence.is_finite() {
        return Err(format!("confidence must be a number from 0 to 1, not {confidence}"));
    }
    if (-CONFIDENCE_SLOP..=1.0 + CONFIDENCE_SLOP).contains(&confidence) {
        Ok(confidence.clamp(0.0, 1.0))
    } else {
        Err(format!("confidence must be from 0 to 1, not {confidence}"))
    }
}

/// The typed parameters of a recommendation, or every problem with it.
pub fn recommendation_params(
    recommendation: &Recommendation,
    catalogue: &[types::ActionSpec],
) -> Result<Vec<types::Param>, Vec<String>> {
    let Some(spec) = catalogue.iter().find(|a| a.name == recommendation.action) else {
        let known: Vec<&str> = catalogue.iter().map(|a| a.name.as_str()).collect();
        return Err(vec![format!(
            "unknown action `{}` (the catalogue has: {})",
            recommendation.action,
            if known.is_empty() { "nothing".to_owned() } else { known.join(", ") }
        )]);
    };
    params(&spec.params, &recommendation.params)
        .map_err(|problems| problems.into_iter().map(|p| format!("action `{}`: {p}", recommendation.action)).collect())
}

/// Checks values by name against parameter declarations and types them, in declaration order.
/// A `null` value counts as absent. Absent optional parameters stay absent (the plugin applies
/// its defaults). Fails with every problem: unknown names, missing required ones, bad values.
pub fn params(specs: &[types::ParamSpec], given: &BTreeMap<String, Value>) -> Result<Vec<types::Param>, Vec<String>> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if !specs.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            problems.push(format!(
                "unknown parameter `{name}` (it takes: {})",
                if known.is_empty() { "no parameters".to_owned() } else { known.join(", ") }
            ));
        }
    }
    let mut typed = Vec::new();
    for spec in specs {
        match given.get(&spec.name) {
            None | Some(Value::Null) => {
                if spec.required {
                    problems.push(format!("missing required parameter `{}`", spec.name));
                }
            }
            Some(value) => match param_value(&spec.name, &spec.kind, value) {
                Ok(value) => typed.push(types::Param { name: spec.name.clone(), value }),
                Err(problem) => problems.push(problem),
            },
        }
    }
    if problems.is_empty() { Ok(typed) } else { Err(problems) }
}

/// Like [`params`], for arguments given as a JSON object (a tool call's input).
pub fn params_object(specs: &[types::ParamSpec], given: &Map<String, Value>) -> Result<Vec<types::Param>, Vec<String>> {
    let given: BTreeMap<String, Value> = given.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    params(specs, &given)
}

/// One value checked against its declared type and bounds.
pub fn param_value(name: &str, kind: &types::ParamType, value: &Value) -> Result<types::ParamValue, String> {
    use types::{ParamType, ParamValue};
    match kind {
        ParamType::Boolean => value
            .as_bool()
            .map(ParamValue::Boolean)
            .ok_or_else(|| format!("`{name}` must be true or false, not {}", shown(value))),
        ParamType::Integer(range) => {
            let Some(i) = integer(value) else {
                return Err(format!("`{name}` must be a whole number, not {}", shown(value)));
            };
            in_range(name, i, range).map(ParamValue::Integer)
        }
        ParamType::DurationSecs(range) => {
            let Some(i) = integer(value) else {
                return Err(format!("`{name}` must be a whole number of seconds, not {}", shown(value)));
            };
            if i < 0 {
                return Err(format!("`{name}` must be a duration of at least 0 s, not {i}"));
            }
            in_range(name, i, range).map(ParamValue::Integer)
        }
        ParamType::Number(range) => {
            let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
                return Err(format!("`{name}` must be a number, not {}", shown(value)));
            };
            if let Some(min) = range.min
                && n < min
            {
                return Err(format!("`{name}` must be at least {min}, not {n}"));
            }
            if let Some(max) = range.max
                && n > max
            {
                return Err(format!("`{name}` must be at most {max}, not {n}"));
            }
            Ok(ParamValue::Number(n))
        }
        ParamType::Text(rule) => {
            let Some(text) = value.as_str() else {
                return Err(format!("`{name}` must be text, not {}", shown(value)));
            };
            if let Some(max) = rule.max_len
                && text.len() > max as usize
            {
                return Err(format!("`{name}` must be at most {max} bytes long, not {}", text.len()));
            }
            Ok(ParamValue::Text(text.to_owned()))
        }
        ParamType::Choice(words) => match value.as_str() {
            Some(word) if words.iter().any(|w| w == word) => Ok(ParamValue::Text(word.to_owned())),
            _ => Err(format!("`{name}` must be one of {}, not {}", words.join("|"), shown(value))),
        },
        ParamType::IntegerList(range) => {
            let Some(items) = value.as_array() else {
                return Err(format!("`{name}` must be a list of whole numbers, not {}", shown(value)));
            };
            let mut list = Vec::with_capacity(items.len());
            let mut problems = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match integer(item) {
                    Some(v) => match in_range(&format!("{name}[{i}]"), v, range) {
                        Ok(v) => list.push(v),
                        Err(e) => problems.push(e),
                    },
                    None => problems.push(format!("`{name}[{i}]` must be a whole number, not {}", shown(item))),
                }
            }
            if problems.is_empty() { Ok(ParamValue::IntegerList(list)) } else { Err(problems.join("; ")) }
        }
    }
}

/// A whole number: a JSON integer, or a real with no fractional part that fits (some models
/// write `4.0`).
fn integer(value: &Value) -> Option<i64> {
    if let Some(i) = value.as_i64() {
        return Some(i);
    }
    let f = value.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

fn in_range(name: &str, value: i64, range: &types::IntegerRange) -> Result<i64, String> {
    if let Some(min) = range.min
        && value < min
    {
        return Err(format!("`{name}` must be at least {min}, not {value}"));
    }
    if let Some(max) = range.max
        && value > max
    {
        return Err(format!("`{name}` must be at most {max}, not {value}"));
    }
    Ok(value)
}

fn required_text(object: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> String {
    match object.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => {
            problems.push(format!("{key} is empty"));
            String::new()
        }
        None | Some(Value::Null) => {
            problems.push(format!("{key} is missing"));
            String::new()
        }
        Some(other) => {
            problems.push(format!("{key} must be text, not {}", kind_of(other)));
            String::new()
        }
    }
}

fn text_list(object: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    match object.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => list.push(s.clone()),
                    other => problems.push(format!("{key}[{i}] must be text, not {}", kind_of(other))),
                }
            }
            list
        }
        Some(other) => {
            problems.push(format!("{key} must be a list of text, not {}", kind_of(other)));
            Vec::new()
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value for an error message, shortened: a model's bad value can be arbitrarily long.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 60 {
        return text;
    }
    let mut end = 57;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use types::{IntegerRange, NumberRange, ParamSpec, ParamType, ParamValue, TextRule};

    fn spec(name: &str, kind: ParamType, required: bool) -> ParamSpec {
        ParamSpec { name: name.into(), description: String::new(), kind, required, default: None }
    }

    fn range(min: Option<i64>, max: Option<i64>) -> IntegerRange {
        IntegerRange { min, max }
    }

    fn catalogue() -> Vec<types::ActionSpec> {
        vec![types::ActionSpec {
            name: "drain".into(),
            description: "move everything off a node".into(),
            risk: types::Risk::Medium,
            params: vec![
                spec("node", ParamType::Integer(range(Some(1), None)), true),
                spec("rate", ParamType::Number(NumberRange { min: Some(0.0), max: Some(1.0) }), false),
                spec("mode", ParamType::Choice(vec!["fast".into(), "slow".into()]), false),
                spec("note", ParamType::Text(TextRule { max_len: Some(8) }), false),
                spec("for", ParamType::DurationSecs(range(Some(10), Some(3600))), false),
                spec("peers", ParamType::IntegerList(range(Some(1), Some(9))), false),
                spec("dry_run", ParamType::Boolean, false),
            ],
            entity_param: Some("node".into()),
            undo: None,
            verify_window_secs: 60,
        }]
    }

    fn answer_with(recommendations: Value) -> Value {
        json!({
            "summary": "node 4 is overloaded",
            "timeline": ["a", "b"],
            "affected": ["node 4"],
            "root_cause": "hot keys",
            "confidence": 0.8,
            "evidence": ["cpu 100%"],
            "alternatives": [{ "hypothesis": "disk", "supporting": [], "contradicting": ["disk idle"], "conclusion": "rejected" }],
            "recommendations": recommendations,
            "wait_reason": null,
        })
    }

    fn rec(action: &str, params: Value) -> Value {
        json!({ "action": action, "params": params, "reason": "r", "urgency": "soon", "expected_outcome": "e", "risks": "x" })
    }

    #[test]
    fn a_good_answer_keeps_everything() {
        let value = answer_with(json!([rec(
            "drain",
            json!([
                { "name": "node", "value": 4 }, { "name": "rate", "value": 0.5 }, { "name": "mode", "value": "fast" },
                { "name": "note", "value": "why" }, { "name": "for", "value": 60 }, { "name": "peers", "value": [1, 2] },
                { "name": "dry_run", "value": false },
            ])
        )]));
        let validated = answer(&value, &catalogue()).unwrap();
        assert!(validated.dropped.is_empty(), "{:?}", validated.dropped);
        assert_eq!(validated.diagnosis.recommendations.len(), 1);
        let params = recommendation_params(&validated.diagnosis.recommendations[0], &catalogue()).unwrap();
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["node", "rate", "mode", "note", "for", "peers", "dry_run"]);
        assert!(matches!(params[0].value, ParamValue::Integer(4)));
        assert!(matches!(params[1].value, ParamValue::Number(r) if r == 0.5));
        assert!(matches!(&params[5].value, ParamValue::IntegerList(l) if l == &[1, 2]));
    }

    #[test]
    fn an_unknown_action_is_dropped_with_its_reason() {
        let value = answer_with(json!([rec("reboot-everything", json!([])), rec("drain", json!({ "node": 4 }))]));
        let validated = answer(&value, &catalogue()).unwrap();
        assert_eq!(validated.diagnosis.recommendations.len(), 1);
        assert_eq!(validated.dropped.len(), 1);
        assert!(validated.dropped[0].reason.contains("unknown action `reboot-everything`"));
        assert!(validated.dropped[0].reason.contains("the catalogue has: drain"));
        assert_eq!(validated.dropped[0].recommendation["action"], "reboot-everything");
    }

    #[test]
    fn every_parameter_problem_is_listed() {
        let value = answer_with(json!([rec(
            "drain",
            json!({
                "rate": 2.5, "mode": "sideways", "note": "far too long", "for": 5, "peers": [1, 42, "x"],
                "dry_run": "yes", "color": "red",
            })
        )]));
        let validated = answer(&value, &catalogue()).unwrap();
        assert!(validated.diagnosis.recommendations.is_empty());
        let reason = &validated.dropped[0].reason;
        for expected in [
            "unknown parameter `color`",
            "missing required parameter `node`",
            "`rate` must be at most 1, not 2.5",
            "`mode` must be one of fast|slow, not \"sideways\"",
            "`note` must be at most 8 bytes long",
            "`for` must be at least 10, not 5",
            "`peers[1]` must be at most 9, not 42",
            "`peers[2]` must be a whole number",
            "`dry_run` must be true or false",
        ] {
            assert!(reason.contains(expected), "`{expected}` missing from: {reason}");
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        let kinds = [
            (ParamType::Integer(range(None, None)), json!("4")),
            (ParamType::Integer(range(None, None)), json!(4.5)),
            (ParamType::Number(NumberRange { min: None, max: None }), json!("0.5")),
            (ParamType::Text(TextRule { max_len: None }), json!(3)),
            (ParamType::DurationSecs(range(None, None)), json!("30s")),
            (ParamType::DurationSecs(range(None, None)), json!(-1)),
            (ParamType::IntegerList(range(None, None)), json!(3)),
            (ParamType::Boolean, json!(1)),
        ];
        for (kind, value) in kinds {
            assert!(param_value("p", &kind, &value).is_err(), "{kind:?} accepted {value}");
        }
        assert!(matches!(
            param_value("p", &ParamType::Integer(range(None, None)), &json!(4.0)),
            Ok(ParamValue::Integer(4))
        ));
    }

    #[test]
    fn a_malformed_recommendation_is_dropped_not_fatal() {
        let value =
            answer_with(json!([{ "action": "drain", "urgency": "whenever" }, rec("drain", json!({ "node": 1 }))]));
        let validated = answer(&value, &catalogue()).unwrap();
        assert_eq!(validated.diagnosis.recommendations.len(), 1);
        assert!(validated.dropped[0].reason.starts_with("malformed recommendation"), "{:?}", validated.dropped);
    }

    #[test]
    fn the_diagnosis_itself_must_say_something() {
        let mut value = answer_with(json!([]));
        value["summary"] = json!("  ");
        value["root_cause"] = json!(null);
        value["confidence"] = json!(7);
        value["timeline"] = json!("not a list");
        let problems = answer(&value, &catalogue()).unwrap_err();
        assert_eq!(
            problems,
            [
                "summary is empty",
                "root_cause is missing",
                "confidence must be from 0 to 1, not 7",
                "timeline must be a list of text, not text",
            ]
        );
        assert!(answer(&json!("just text"), &catalogue()).unwrap_err()[0].contains("must be a JSON object"));

        let mut diagnosis = answer(&answer_with(json!([])), &catalogue()).unwrap().diagnosis;
        diagnosis.root_cause = String::new();
        diagnosis.confidence = f64::NAN;
        assert_eq!(
            diagnosis_against(diagnosis, &catalogue()).unwrap_err(),
            ["root_cause is empty", "confidence must be a number from 0 to 1, not NaN"]
        );
    }

    #[test]
    fn confidence_slop_is_clamped() {
        assert_eq!(clamp_confidence(1.0000001).unwrap(), 1.0);
        assert_eq!(clamp_confidence(-0.0000001).unwrap(), 0.0);
        assert!(clamp_confidence(1.1).is_err());
        assert!(clamp_confidence(f64::NAN).is_err());
        assert!(clamp_confidence(f64::INFINITY).is_err());
    }

    #[test]
    fn null_means_absent() {
        let specs = vec![spec("a", ParamType::Boolean, false), spec("b", ParamType::Boolean, true)];
        let given = BTreeMap::from([("a".to_owned(), Value::Null), ("b".to_owned(), Value::Null)]);
        assert_eq!(params(&specs, &given).unwrap_err(), ["missing required parameter `b`"]);
    }
}
