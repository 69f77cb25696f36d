//! The host's model of a diagnosis, its JSON schema, and what one diagnosis cost.
//!
//! A [`Diagnosis`] is what every diagnoser produces, whatever its source: an LLM's JSON answer
//! or the plugin's built-in rules (converted from the WIT [`types::Diagnosis`]). Parameters are
//! kept as JSON values by name, because their types are only known against the action catalogue;
//! [`Diagnosis::to_wit`] types them (see [`super::validate`]).
//!
//! The schema the LLMs are held to ([`diagnosis_schema`]) is written once, here, next to the
//! structs it describes; a test checks that the two agree field for field.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::runtime::bindings::types;

/// An explained ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// One or two sentences: what is wrong and why.
    pub summary: String,
    /// What happened, in order, one event per line.
    #[serde(default)]
    pub timeline: Vec<String>,
    /// The entities affected.
    #[serde(default)]
    pub affected: Vec<String>,
    /// The cause the diagnoser settled on.
    pub root_cause: String,
    /// How sure the diagnoser is, 0.0 to 1.0.
    pub confidence: f64,
    /// The facts the conclusion rests on.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The hypotheses weighed, the rejected ones included.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    /// Actions from the catalogue, with concrete parameters.
    #[serde(default)]
    pub recommendations: Vec<Recommendation>,
    /// When no action is wise yet: why waiting and observing is the recommendation.
    #[serde(default)]
    pub wait_reason: Option<String>,
}

/// A hypothesis the diagnoser weighed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// The hypothesis.
    pub hypothesis: String,
    /// Evidence for it.
    #[serde(default)]
    pub supporting: Vec<String>,
    /// Evidence against it.
    #[serde(default)]
    pub contradicting: Vec<String>,
    /// Kept, rejected, or open, and why.
    #[serde(default)]
    pub conclusion: String,
}

/// How soon a recommended action should run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    /// Now.
    Immediate,
    /// Within the hour or so.
    Soon,
    /// Whenever it suits the operator.
    WhenConvenient,
}

impl Urgency {
    /// Every urgency, in its JSON spelling, for the schema.
    pub const ALL: [&'static str; 3] = ["immediate", "soon", "when-convenient"];
}

impl From<types::Urgency> for Urgency {
    fn from(urgency: types::Urgency) -> Self {
        match urgency {
            types::Urgency::Immediate => Urgency::Immediate,
            types::Urgency::Soon => Urgency::Soon,
            types::Urgency::WhenConvenient => Urgency::WhenConvenient,
        }
    }
}

impl From<Urgency> for types::Urgency {
    fn from(urgency: Urgency) -> Self {
        match urgency {
            Urgency::Immediate => types::Urgency::Immediate,
            Urgency::Soon => types::Urgency::Soon,
            Urgency::WhenConvenient => types::Urgency::WhenConvenient,
        }
    }
}

/// An action the diagnoser recommends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The action's name in the catalogue.
    pub action: String,
    /// Parameter values by name. Read from a JSON object or from the schema's list of
    /// `{name, value}` pairs (strict schemas cannot describe a free-form object).
    #[serde(default, deserialize_with = "params_from_map_or_list")]
    pub params: BTreeMap<String, Value>,
    /// Why this action.
    pub reason: String,
    /// How soon.
    pub urgency: Urgency,
    /// What should be seen once it has run.
    #[serde(default)]
    pub expected_outcome: String,
    /// What could go wrong.
    #[serde(default)]
    pub risks: String,
}

/// Accepts `{"a": 1}` or `[{"name": "a", "value": 1}]`; a name given twice is an error, never
/// silently one of the two.
fn params_from_map_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Value>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        name: String,
        value: Value,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Map(BTreeMap<String, Value>),
        List(Vec<Pair>),
        Null(()),
    }
    match Form::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("params must be a list of {name, value} or an object"))?
    {
        Form::Map(map) => Ok(map),
        Form::Null(()) => Ok(BTreeMap::new()),
        Form::List(pairs) => {
            let mut map = BTreeMap::new();
            for pair in pairs {
                if map.insert(pair.name.clone(), pair.value).is_some() {
                    return Err(serde::de::Error::custom(format!("parameter `{}` is given twice", pair.name)));
                }
            }
            Ok(map)
        }
    }
}

impl Diagnosis {
    /// The host model of a diagnosis the plugin's rules produced.
    pub fn from_wit(diagnosis: &types::Diagnosis) -> Diagnosis {
        Diagnosis {
            summary: diagnosis.summary.clone(),
            timeline: diagnosis.timeline.clone(),
            affected: diagnosis.affected.clone(),
            root_cause: diagnosis.root_cause.clone(),
            confidence: diagnosis.confidence,
            evidence: diagnosis.evidence.clone(),
            alternatives: diagnosis
                .alternatives
                .iter()
                .map(|a| Alternative {
                    hypothesis: a.hypothesis.clone(),
                    supporting: a.supporting.clone(),
                    contradicting: a.contradicting.clone(),
                    conclusion: a.conclusion.clone(),
                })
                .collect(),
            recommendations: diagnosis.recommendations.iter().map(Recommendation::from_wit).collect(),
            wait_reason: diagnosis.wait_reason.clone(),
        }
    }

    /// The WIT form, with every recommendation's parameters typed against `catalogue`. Fails,
    /// listing every problem, if a recommendation does not fit the catalogue (a validated
    /// diagnosis always fits).
    pub fn to_wit(&self, catalogue: &[types::ActionSpec]) -> Result<types::Diagnosis, Vec<String>> {
        let mut problems = Vec::new();
        let mut recommendations = Vec::new();
        for (index, recommendation) in self.recommendations.iter().enumerate() {
            match super::validate::recommendation_params(recommendation, catalogue) {
                Ok(params) => recommendations.push(recommendation.to_wit(params)),
                Err(errors) => problems.extend(errors.into_iter().map(|e| format!("recommendations[{index}]: {e}"))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(types::Diagnosis {
            summary: self.summary.clone(),
            timeline: self.timeline.clone(),
            affected: self.affected.clone(),
            root_cause: self.root_cause.clone(),
            confidence: self.confidence,
            evidence: self.evidence.clone(),
            alternatives: self
                .alternatives
                .iter()
                .map(|a| types::Alternative {
                    hypothesis: a.hypothesis.clone(),
                    supporting: a.supporting.clone(),
                    contradicting: a.contradicting.clone(),
                    conclusion: a.conclusion.clone(),
                })
                .collect(),
            recommendations,
            wait_reason: self.wait_reason.clone(),
        })
    }
}

impl Recommendation {
    /// The host model of a WIT recommendation.
    pub fn from_wit(recommendation: &types::Recommendation) -> Recommendation {
        Recommendation {
            action: recommendation.action.clone(),
            params: params_to_json(&recommendation.params),
            reason: recommendation.reason.clone(),
            urgency: recommendation.urgency.into(),
            expected_outcome: recommendation.expected_outcome.clone(),
            risks: recommendation.risks.clone(),
        }
    }

    /// The WIT form, with parameters already typed (see [`super::validate::recommendation_params`]).
    pub fn to_wit(&self, params: Vec<types::Param>) -> types::Recommendation {
        types::Recommendation {
            action: self.action.clone(),
            params,
            reason: self.reason.clone(),
            urgency: self.urgency.into(),
            expected_outcome: self.expected_outcome.clone(),
            risks: self.risks.clone(),
        }
    }
}

/// A parameter value as JSON. A non-finite number becomes `null` (JSON has no NaN), which
/// validation then refuses.
pub fn param_value_to_json(value: &types::ParamValue) -> Value {
    match value {
        types::ParamValue::Boolean(b) => Value::Bool(*b),
        types::ParamValue::Integer(i) => Value::from(*i),
        types::ParamValue::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        types::ParamValue::Text(t) => Value::String(t.clone()),
        types::ParamValue::IntegerList(list) => Value::Array(list.iter().map(|i| Value::from(*i)).collect()),
    }
}

/// WIT parameters as JSON values by name (a name given twice keeps the last value).
pub fn params_to_json(params: &[types::Param]) -> BTreeMap<String, Value> {
    params.iter().map(|p| (p.name.clone(), param_value_to_json(&p.value))).collect()
}

/// Which diagnoser answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiagnoserKind {
    /// The Anthropic Messages API.
    Claude,
    /// An OpenAI-compatible chat-completions endpoint.
    #[serde(rename = "openai")]
    OpenAi,
    /// The subject plugin's built-in rules.
    Rules,
}

impl DiagnoserKind {
    /// The name used in records, logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnoserKind::Claude => "claude",
            DiagnoserKind::OpenAi => "openai",
            DiagnoserKind::Rules => "rules",
        }
    }
}

impl fmt::Display for DiagnoserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens spent, summed over every turn of a diagnosis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens billed at the full rate (cache reads and writes excluded).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Adds another turn's usage.
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }

    /// Every token, whatever its rate (what the token budget counts).
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

/// The price of one model, in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Uncached input.
    pub input_per_mtok: f64,
    /// Output.
    pub output_per_mtok: f64,
    /// Input written to the cache; the input price when not given.
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
    /// Input read from the cache; the input price when not given.
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
}

impl ModelPrice {
    /// The estimated cost of `usage`, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per_token = |price: f64, tokens: u64| price * tokens as f64 / 1_000_000.0;
        per_token(self.input_per_mtok, usage.input_tokens)
            + per_token(self.output_per_mtok, usage.output_tokens)
            + per_token(self.cache_write_per_mtok.unwrap_or(self.input_per_mtok), usage.cache_creation_input_tokens)
            + per_token(self.cache_read_per_mtok.unwrap_or(self.input_per_mtok), usage.cache_read_input_tokens)
    }
}

/// The price of `model` in `prices`: an exact entry, else the longest entry the model's name
/// starts with (so `claude-haiku-4-5` prices `claude-haiku-4-5-20251001`), else none.
pub fn price_for<'a>(prices: &'a BTreeMap<String, ModelPrice>, model: &str) -> Option<&'a ModelPrice> {
    prices.get(model).or_else(|| {
        prices
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| p)
    })
}

/// A recommendation refused by validation, kept for the record with every problem found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedRecommendation {
    /// The recommendation as the diagnoser gave it.
    pub recommendation: Value,
    /// Every problem, separated by `; `.
    pub reason: String,
}

/// One read-only query a model ran while it investigated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryCall {
    /// The plugin's query name.
    pub query: String,
    /// The arguments as the model sent them.
    pub arguments: Value,
    /// Whether the query answered (a refusal of bad arguments counts as not).
    pub ok: bool,
    /// Bytes of the answer or error before any cut.
    pub bytes: usize,
}

/// A diagnosis with everything needed to judge and account for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisRecord {
    /// The validated diagnosis: only recommendations that fit the catalogue remain.
    pub diagnosis: Diagnosis,
    /// Who answered (`rules` when an LLM failed and the rules answered instead).
    pub diagnoser: DiagnoserKind,
    /// The model that answered; none for the rules.
    pub model: Option<String>,
    /// The API's request ids, failed attempts included, for support requests.
    pub request_ids: Vec<String>,
    /// Tokens spent, a failed LLM attempt included.
    pub usage: Usage,
    /// The estimated cost, none when the model has no price in the table.
    pub cost_usd: Option<f64>,
    /// Model turns (successful API calls).
    pub turns: u32,
    /// Queries run during the investigation.
    #[serde(default)]
    pub queries: Vec<QueryCall>,
    /// Recommendations refused by validation, with why.
    pub dropped_recommendations: Vec<DroppedRecommendation>,
    /// Why the configured LLM did not answer, when the rules answered instead.
    pub fallback: Option<String>,
}

/// The JSON schema of a diagnosis, as given to `output_config` (Anthropic), `response_format`
/// (OpenAI-compatible) and the `submit_diagnosis` tool. It keeps to what strict structured
/// outputs accept: every property required, no extra properties, no numeric bounds (bounds are
/// checked on the host), optional values as `null`. Parameters are a list of `{name, value}`
/// because a strict schema cannot describe an object with free keys.
pub fn diagnosis_schema() -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    let lines =
        |description: &str| json!({ "type": "array", "items": { "type": "string" }, "description": description });
    let alternative = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["hypothesis", "supporting", "contradicting", "conclusion"],
        "properties": {
            "hypothesis": text("A possible cause."),
            "supporting": lines("Observed facts for it."),
            "contradicting": lines("Observed facts against it."),
            "conclusion": text("Kept, rejected or still open, and why."),
        },
    });
    let param = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "value"],
        "properties": {
            "name": text("The parameter's name in the catalogue."),
            "value": {
                "description": "The value, of the parameter's type.",
                "anyOf": [
                    { "type": "string" },
                    { "type": "number" },
                    { "type": "boolean" },
                    { "type": "array", "items": { "type": "integer" } },
                ],
            },
        },
    });
    let recommendation = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["action", "params", "reason", "urgency", "expected_outcome", "risks"],
        "properties": {
            "action": text("An action name from the catalogue, exactly."),
            "params": { "type": "array", "items": param, "description": "Every required parameter of the action, and only its parameters." },
            "reason": text("Why this action, citing the evidence."),
            "urgency": { "type": "string", "enum": Urgency::ALL },
            "expected_outcome": text("What should be observed once it has run."),
            "risks": text("What could go wrong."),
        },
    });
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "timeline", "affected", "root_cause", "confidence", "evidence", "alternatives", "recommendations", "wait_reason"],
        "properties": {
            "summary": text("One or two sentences: what is wrong and why."),
            "timeline": lines("What happened, in order."),
            "affected": lines("The entities affected."),
            "root_cause": text("The cause you settled on."),
            "confidence": { "type": "number", "description": "How sure you are, from 0.0 to 1.0." },
            "evidence": lines("The observed facts the conclusion rests on, with figures."),
            "alternatives": { "type": "array", "items": alternative, "description": "Every hypothesis weighed, the rejected ones included." },
            "recommendations": { "type": "array", "items": recommendation, "description": "Actions from the catalogue; empty when waiting is wiser." },
            "wait_reason": {
                "description": "When no action is wise yet, why waiting and observing is the recommendation; otherwise null.",
                "anyOf": [{ "type": "string" }, { "type": "null" }],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Diagnosis {
        Diagnosis {
            summary: "node 4 is down".into(),
            timeline: vec!["10:00 node 4 stopped answering".into()],
            affected: vec!["node 4".into()],
            root_cause: "disk full".into(),
            confidence: 0.7,
            evidence: vec!["disk 100%".into()],
            alternatives: vec![Alternative {
                hypothesis: "network partition".into(),
                supporting: vec!["no heartbeats".into()],
                contradicting: vec!["peers reach it".into()],
                conclusion: "rejected".into(),
            }],
            recommendations: vec![Recommendation {
                action: "drain".into(),
                params: BTreeMap::from([("node".into(), json!(4))]),
                reason: "move load away".into(),
                urgency: Urgency::Soon,
                expected_outcome: "no leaders on node 4".into(),
                risks: "more load elsewhere".into(),
            }],
            wait_reason: Some("let it settle".into()),
        }
    }

    /// Every key of `value` (recursively, objects and arrays of objects) is a property of
    /// `schema`, and every property of `schema` is a key; parameters are the one place where
    /// the stored form (an object) and the schema's form (a list of pairs) differ.
    fn assert_same_shape(value: &Value, schema: &Value, path: &str) {
        match value {
            Value::Object(map) if path.ends_with(".params") => {
                assert_eq!(schema["type"], "array", "{path}");
                assert!(!map.is_empty(), "{path}: the sample should have parameters");
            }
            Value::Object(map) => {
                let properties =
                    schema["properties"].as_object().unwrap_or_else(|| panic!("{path}: not an object schema"));
                let keys: Vec<&String> = map.keys().collect();
                let mut schema_keys: Vec<&String> = properties.keys().collect();
                schema_keys.sort();
                let mut required: Vec<&str> =
                    schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
                required.sort();
                assert_eq!(keys, schema_keys, "{path}: the struct and the schema disagree");
                assert_eq!(
                    required,
                    schema_keys.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "{path}: every property must be required"
                );
                assert_eq!(schema["additionalProperties"], false, "{path}");
                for (key, child) in map {
                    assert_same_shape(child, &properties[key], &format!("{path}.{key}"));
                }
            }
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    assert_same_shape(first, &schema["items"], &format!("{path}[]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_schema_describes_the_struct() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_same_shape(&value, &diagnosis_schema(), "diagnosis");
    }

    #[test]
    fn urgencies_in_the_schema_are_the_enum() {
        for word in Urgency::ALL {
            let urgency: Urgency = serde_json::from_value(json!(word)).unwrap();
            assert_eq!(serde_json::to_value(urgency).unwrap(), json!(word));
        }
    }

    #[test]
    fn params_read_from_a_list_or_an_object() {
        let list: Recommendation = serde_json::from_value(json!({
            "action": "drain", "reason": "r", "urgency": "soon", "expected_outcome": "", "risks": "",
            "params": [{ "name": "node", "value": 4 }, { "name": "fast", "value": true }],
        }))
        .unwrap();
        assert_eq!(list.params, BTreeMap::from([("node".into(), json!(4)), ("fast".into(), json!(true))]));
        let object: Recommendation = serde_json::from_value(json!({
            "action": "drain", "reason": "r", "urgency": "soon", "params": { "node": 4, "fast": true },
        }))
        .unwrap();
        assert_eq!(object.params, list.params);
        let twice = serde_json::from_value::<Recommendation>(json!({
            "action": "drain", "reason": "r", "urgency": "soon",
            "params": [{ "name": "node", "value": 4 }, { "name": "node", "value": 5 }],
        }));
        assert!(twice.unwrap_err().to_string().contains("given twice"));
    }

    #[test]
    fn wit_round_trip() {
        let catalogue = vec![types::ActionSpec {
            name: "drain".into(),
            description: String::new(),
            risk: types::Risk::Low,
            params: vec![types::ParamSpec {
                name: "node".into(),
                description: String::new(),
                kind: types::ParamType::Integer(types::IntegerRange { min: Some(1), max: None }),
                required: true,
                default: None,
            }],
            entity_param: Some("node".into()),
            undo: None,
            verify_window_secs: 60,
        }];
        let wit = sample().to_wit(&catalogue).unwrap();
        assert!(matches!(wit.recommendations[0].params[0].value, types::ParamValue::Integer(4)));
        assert_eq!(wit.recommendations[0].urgency, types::Urgency::Soon);
        assert_eq!(Diagnosis::from_wit(&wit), sample());

        let error = sample().to_wit(&[]).unwrap_err();
        assert!(error[0].contains("recommendations[0]: unknown action `drain`"), "{error:?}");
    }

    #[test]
    fn cost_from_the_price_table() {
        let prices = BTreeMap::from([(
            "model-a".to_owned(),
            ModelPrice {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
                cache_write_per_mtok: Some(3.75),
                cache_read_per_mtok: None,
            },
        )]);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
        };
        let price = price_for(&prices, "model-a-20260101").unwrap();
        assert!((price.cost(&usage) - (3.0 + 1.5 + 3.75 + 3.0)).abs() < 1e-9);
        assert!(price_for(&prices, "model-b").is_none());
    }
}
