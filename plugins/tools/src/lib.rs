//! General tools for workflows and diagnoses: `wait`, `log` and `notify`.
//!
//! `notify` posts a JSON message to the endpoint the operator configured (`notify` unless the
//! plugin setting `endpoint` names another); the host grants it and adds any credentials.

wit_bindgen::generate!({ world: "tools", path: "../../wit" });

use operator::plugin::http::{self, Method, Target};
use operator::plugin::log::{self as host_log, Level};
use operator::plugin::types::{ActionSpec, Evidence, IntegerRange, ParamSpec, ParamType, ParamValue, Risk, TextRule};

struct Tools;

fn text_param(name: &str, description: &str, required: bool) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: ParamType::Text(TextRule { max_len: Some(4096) }),
        required,
        default: None,
    }
}

fn find<'a>(params: &'a [Param], name: &str) -> Option<&'a ParamValue> {
    params.iter().find(|p| p.name == name).map(|p| &p.value)
}

fn required_text(params: &[Param], name: &str) -> Result<String, ActionError> {
    match find(params, name) {
        Some(ParamValue::Text(text)) => Ok(text.clone()),
        Some(_) => Err(ActionError::InvalidParams(format!("`{name}` must be text"))),
        None => Err(ActionError::InvalidParams(format!("`{name}` is required"))),
    }
}

impl Guest for Tools {
    fn info() -> ToolsInfo {
        ToolsInfo {
            name: "tools".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "General tools: wait, log, notify".into(),
            tools: vec![
                ActionSpec {
                    name: "wait".into(),
                    description: "Pauses for a number of seconds (for example between workflow steps)".into(),
                    risk: Risk::Low,
                    params: vec![ParamSpec {
                        name: "seconds".into(),
                        description: "How long to wait".into(),
                        kind: ParamType::DurationSecs(IntegerRange { min: Some(1), max: Some(60) }),
                        required: true,
                        default: None,
                    }],
                    entity_param: None,
                    undo: None,
                    verify_window_secs: 0,
                },
                ActionSpec {
                    name: "log".into(),
                    description: "Writes a line to the operator's log".into(),
                    risk: Risk::Low,
                    params: vec![
                        text_param("message", "The line to write", true),
                        ParamSpec {
                            name: "level".into(),
                            description: "Log level".into(),
                            kind: ParamType::Choice(vec!["info".into(), "warn".into(), "error".into()]),
                            required: false,
                            default: Some(ParamValue::Text("info".into())),
                        },
                    ],
                    entity_param: None,
                    undo: None,
                    verify_window_secs: 0,
                },
                ActionSpec {
                    name: "notify".into(),
                    description: "Posts a message as JSON ({\"text\": ...}) to the notification endpoint".into(),
                    risk: Risk::Low,
                    params: vec![text_param("message", "The message to send", true)],
                    entity_param: None,
                    undo: None,
                    verify_window_secs: 0,
                },
            ],
        }
    }

    fn invoke(tool: String, params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        match tool.as_str() {
            "wait" => {
                let seconds = match find(&params, "seconds") {
                    Some(ParamValue::Integer(s)) if (1..=60).contains(s) => *s as u64,
                    _ => return Err(ActionError::InvalidParams("`seconds` must be 1 to 60".into())),
                };
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                Ok(ActionOutcome { message: format!("waited {seconds} s"), details: vec![] })
            }
            "log" => {
                let message = required_text(&params, "message")?;
                let level = match find(&params, "level") {
                    Some(ParamValue::Text(l)) if l == "warn" => Level::Warn,
                    Some(ParamValue::Text(l)) if l == "error" => Level::Error,
                    _ => Level::Info,
                };
                host_log::emit(level, &message);
                Ok(ActionOutcome { message: "logged".into(), details: vec![] })
            }
            "notify" => {
                let message = required_text(&params, "message")?;
                let endpoint = operator::plugin::config::get("endpoint").unwrap_or_else(|| "notify".into());
                let body = serde_json::to_vec(&serde_json::json!({ "text": message }))
                    .map_err(|e| ActionError::Failed(e.to_string()))?;
                let response = http::send(&http::Request {
                    target: Target::Endpoint(endpoint.clone()),
                    method: Method::Post,
                    path_and_query: "/".into(),
                    headers: vec![http::Header { name: "content-type".into(), value: "application/json".into() }],
                    body: Some(body),
                    timeout_ms: None,
                })
                .map_err(|e| match e {
                    http::Error::Timeout(m) | http::Error::Unreachable(m) => ActionError::Retryable(m),
                    http::Error::Denied(m) | http::Error::Invalid(m) => ActionError::Failed(m),
                    http::Error::TooLarge(n) => ActionError::Failed(format!("reply larger than {n} bytes")),
                })?;
                match response.status {
                    200..=299 => Ok(ActionOutcome {
                        message: format!("notified `{endpoint}`"),
                        details: vec![Evidence { label: "status".into(), value: response.status.to_string() }],
                    }),
                    500..=599 | 429 => {
                        Err(ActionError::Retryable(format!("`{endpoint}` answered {}", response.status)))
                    }
                    status => Err(ActionError::Failed(format!("`{endpoint}` answered {status}"))),
                }
            }
            other => Err(ActionError::InvalidParams(format!("unknown tool `{other}`"))),
        }
    }
}

export!(Tools);
