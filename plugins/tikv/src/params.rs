//! Building parameter schemas and reading parameter values. The host has already validated values
//! against the schema; the plugin checks again so that a wrong call fails clearly, never silently.

use crate::operator::plugin::types::{
    ActionError, IntegerRange, NumberRange, Param, ParamSpec, ParamType, ParamValue, TextRule,
};

/// A required id (region or store).
pub fn id(name: &str, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Integer(IntegerRange { min: Some(1), max: None }),
        required: true,
        default: None,
    }
}

/// A bounded integer with an optional default.
pub fn integer(name: &str, description: &str, min: i64, max: i64, default: Option<i64>) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Integer(IntegerRange { min: Some(min), max: Some(max) }),
        required: default.is_none(),
        default: default.map(ParamValue::Integer),
    }
}

/// A bounded real number.
pub fn number(name: &str, description: &str, min: f64, max: f64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Number(NumberRange { min: Some(min), max: Some(max) }),
        required: true,
        default: None,
    }
}

/// One of a set of words, with an optional default.
pub fn choice(name: &str, description: &str, words: &[&str], default: Option<&str>) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Choice(words.iter().map(|w| (*w).to_owned()).collect()),
        required: default.is_none(),
        default: default.map(|d| ParamValue::Text(d.into())),
    }
}

/// Short text.
pub fn text(name: &str, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Text(TextRule { max_len: Some(128) }),
        required: true,
        default: None,
    }
}

/// A bounded duration in seconds.
pub fn duration(name: &str, description: &str, min: i64, max: i64) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::DurationSecs(IntegerRange { min: Some(min), max: Some(max) }),
        required: true,
        default: None,
    }
}

fn find<'a>(params: &'a [Param], name: &str) -> Option<&'a ParamValue> {
    params.iter().find(|p| p.name == name).map(|p| &p.value)
}

/// A positive id parameter.
pub fn get_id(params: &[Param], name: &str) -> Result<u64, ActionError> {
    match find(params, name) {
        Some(ParamValue::Integer(v)) if *v > 0 => Ok(*v as u64),
        Some(ParamValue::Integer(v)) => Err(ActionError::InvalidParams(format!("`{name}` must be positive, not {v}"))),
        Some(_) => Err(ActionError::InvalidParams(format!("`{name}` must be an integer"))),
        None => Err(ActionError::InvalidParams(format!("`{name}` is required"))),
    }
}

/// An integer parameter (durations included), or its default.
pub fn get_int(params: &[Param], name: &str, default: Option<i64>) -> Result<i64, ActionError> {
    match find(params, name) {
        Some(ParamValue::Integer(v)) => Ok(*v),
        Some(_) => Err(ActionError::InvalidParams(format!("`{name}` must be an integer"))),
        None => default.ok_or_else(|| ActionError::InvalidParams(format!("`{name}` is required"))),
    }
}

/// A real parameter (an integer value is accepted).
pub fn get_number(params: &[Param], name: &str) -> Result<f64, ActionError> {
    match find(params, name) {
        Some(ParamValue::Number(v)) if v.is_finite() => Ok(*v),
        Some(ParamValue::Integer(v)) => Ok(*v as f64),
        Some(_) => Err(ActionError::InvalidParams(format!("`{name}` must be a number"))),
        None => Err(ActionError::InvalidParams(format!("`{name}` is required"))),
    }
}

/// A text or choice parameter, or its default.
pub fn get_text(params: &[Param], name: &str, default: Option<&str>) -> Result<String, ActionError> {
    match find(params, name) {
        Some(ParamValue::Text(v)) => Ok(v.clone()),
        Some(_) => Err(ActionError::InvalidParams(format!("`{name}` must be text"))),
        None => default.map(str::to_owned).ok_or_else(|| ActionError::InvalidParams(format!("`{name}` is required"))),
    }
}

/// An integer parameter value, for recommendations.
pub fn int_value(name: &str, value: u64) -> Param {
    Param { name: name.into(), value: ParamValue::Integer(value as i64) }
}

/// A text parameter value, for recommendations.
pub fn text_value(name: &str, value: &str) -> Param {
    Param { name: name.into(), value: ParamValue::Text(value.into()) }
}
