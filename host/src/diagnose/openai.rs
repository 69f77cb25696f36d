//! The OpenAI-compatible chat-completions diagnoser (`POST {base}/v1/chat/completions`), for
//! hosted gateways and local or self-hosted models (Ollama, vLLM, llama.cpp's server).
//!
//! The same investigation as the Claude diagnoser: queries offered as `function` tools, the
//! diagnosis as a strict `json_schema` response format. Small models often send arguments that
//! are not JSON or that invent parameters, and final answers that are not valid JSON: every
//! argument is validated (a bad one goes back to the model as an error result, the query does
//! not run), and an invalid final answer is sent back with its problems, once.

use serde_json::{Value, json};

use super::context::Prompt;
use super::model::{DiagnoserKind, Usage, diagnosis_schema};
use super::transport::{LlmError, Transport};
use super::validate::{self, Validated};
use super::{FINAL_TURN_NOTE, LoopLimits, QueryRunner, Spend, invalid_answer_note, parse_json_text, run_tool};
use crate::runtime::bindings::types;

/// The API used when neither the configuration nor `OPENAI_BASE_URL` names one.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

const PROVIDER: DiagnoserKind = DiagnoserKind::OpenAi;

/// A client of a chat-completions API.
pub struct OpenAiClient {
    transport: Transport,
    url: String,
    api_key: Option<String>,
    model: String,
    max_tokens: Option<u32>,
    limits: LoopLimits,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("OpenAiClient").field("url", &self.url).field("model", &self.model).finish_non_exhaustive()
    }
}

impl OpenAiClient {
    pub(crate) fn new(
        transport: Transport,
        base_url: &str,
        api_key: Option<String>,
        model: String,
        max_tokens: Option<u32>,
        limits: LoopLimits,
    ) -> OpenAiClient {
        OpenAiClient {
            transport,
            url: super::endpoint_url(base_url, "chat/completions"),
            api_key,
            model,
            max_tokens,
            limits,
        }
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn body(&self, prompt: &Prompt, messages: &[Value], final_turn: bool) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": "diagnosis", "schema": diagnosis_schema(), "strict": true },
            },
        });
        if !prompt.tools.is_empty() {
            let tools: Vec<Value> = prompt
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": { "name": t.name, "description": t.description, "parameters": t.input_schema },
                    })
                })
                .collect();
            body["tools"] = Value::Array(tools);
            body["tool_choice"] = json!(if final_turn { "none" } else { "auto" });
        }
        if let Some(max_tokens) = self.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        body
    }

    /// Runs one investigation and returns the validated diagnosis; what it cost is added to
    /// `spend` whether it succeeds or not.
    pub(crate) async fn diagnose<Q: QueryRunner>(
        &self,
        prompt: &Prompt,
        catalogue: &[types::ActionSpec],
        queries: &Q,
        spend: &mut Spend,
    ) -> Result<Validated, LlmError> {
        // Servers that ignore response_format still see the schema this way; the prefix stays
        // the same for every ticket.
        let system = format!(
            "{}\n\nThe JSON schema of the diagnosis:\n{}\n\n{}",
            prompt.system,
            diagnosis_schema(),
            prompt.catalogue
        );
        let mut messages =
            vec![json!({ "role": "system", "content": system }), json!({ "role": "user", "content": prompt.user })];
        let headers: Vec<(&'static str, String)> =
            self.api_key.iter().map(|key| ("authorization", format!("Bearer {key}"))).collect();
        let mut asked_again = false;
        let mut final_turn = false;
        let mut turns = 0;
        loop {
            if turns >= self.limits.max_turns {
                return Err(LlmError::TurnsExhausted { provider: PROVIDER, turns });
            }
            if !final_turn
                && (turns + 1 == self.limits.max_turns || spend.usage.total() >= self.limits.max_total_tokens)
            {
                final_turn = true;
                if turns > 0 {
                    messages.push(json!({ "role": "user", "content": FINAL_TURN_NOTE }));
                }
            }
            let body = self.body(prompt, &messages, final_turn);
            let reply = self.transport.post(&self.url, &headers, &body, &mut spend.request_ids).await?;
            turns += 1;
            spend.turns += 1;
            let body = reply.body;
            let request_id = reply.request_id.or_else(|| body["id"].as_str().map(str::to_owned));
            spend.usage.add(usage(&body["usage"]));
            if let Some(model) = body["model"].as_str() {
                spend.model = Some(model.to_owned());
            }
            let choice = &body["choices"][0];
            let message = &choice["message"];
            if !message.is_object() {
                return Err(LlmError::Protocol {
                    provider: PROVIDER,
                    message: "the reply has no choices[0].message".to_owned(),
                    request_id,
                });
            }
            let finish_reason = choice["finish_reason"].as_str().unwrap_or_default();
            if let Some(refusal) = message["refusal"].as_str() {
                return Err(LlmError::Refused { provider: PROVIDER, detail: refusal.to_owned(), request_id });
            }
            match finish_reason {
                "length" => {
                    return Err(LlmError::Truncated {
                        provider: PROVIDER,
                        reason: finish_reason.to_owned(),
                        request_id,
                    });
                }
                "content_filter" => {
                    return Err(LlmError::Refused {
                        provider: PROVIDER,
                        detail: "the content filter stopped the answer".to_owned(),
                        request_id,
                    });
                }
                _ => {}
            }

            let calls = message["tool_calls"].as_array().cloned().unwrap_or_default();
            if !calls.is_empty() {
                if final_turn {
                    return Err(LlmError::TurnsExhausted { provider: PROVIDER, turns });
                }
                messages.push(assistant_echo(message));
                for call in &calls {
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    let outcome = match parse_arguments(&call["function"]["arguments"]) {
                        Ok(arguments) => run_tool(&prompt.tools, name, &arguments, queries, &self.limits, spend).await,
                        Err(problem) => Err(problem),
                    };
                    let content = outcome.unwrap_or_else(|problem| format!("error: {problem}"));
                    messages.push(json!({ "role": "tool", "tool_call_id": call["id"], "content": content }));
                }
                continue;
            }

            let text = message["content"].as_str().unwrap_or_default();
            let problems = match parse_json_text(text) {
                Ok(value) => match validate::answer(&value, catalogue) {
                    Ok(validated) => return Ok(validated),
                    Err(problems) => problems,
                },
                Err(problem) => vec![problem],
            };
            if asked_again || turns >= self.limits.max_turns {
                return Err(LlmError::InvalidAnswer { provider: PROVIDER, problems, request_id });
            }
            asked_again = true;
            messages.push(json!({ "role": "assistant", "content": text }));
            messages.push(json!({ "role": "user", "content": invalid_answer_note(&problems) }));
        }
    }
}

/// The assistant's tool-calling message as it must be sent back: its role, content and calls,
/// without server extras some servers refuse to receive.
fn assistant_echo(message: &Value) -> Value {
    json!({ "role": "assistant", "content": message["content"], "tool_calls": message["tool_calls"] })
}

/// A tool call's arguments: a JSON string holding an object (empty means no arguments). Some
/// servers send the object itself; that is accepted too.
fn parse_arguments(arguments: &Value) -> Result<Value, String> {
    match arguments {
        Value::String(text) if text.trim().is_empty() => Ok(json!({})),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err("the arguments must be a JSON object".to_owned()),
            Err(e) => Err(format!("the arguments are not valid JSON ({e}): {}", super::context::cut(text, 200))),
        },
        Value::Object(_) => Ok(arguments.clone()),
        Value::Null => Ok(json!({})),
        _ => Err("the arguments must be a JSON object".to_owned()),
    }
}

/// Usage in the Anthropic sense: cached prompt tokens are counted apart from the others.
fn usage(usage: &Value) -> Usage {
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0).min(prompt);
    Usage {
        input_tokens: prompt - cached,
        output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments(&json!("{\"a\": 1}")).unwrap(), json!({ "a": 1 }));
        assert_eq!(parse_arguments(&json!("")).unwrap(), json!({}));
        assert_eq!(parse_arguments(&json!({ "a": 1 })).unwrap(), json!({ "a": 1 }));
        assert!(parse_arguments(&json!("{a: 1}")).unwrap_err().contains("not valid JSON"));
        assert!(parse_arguments(&json!("[1]")).unwrap_err().contains("JSON object"));
    }

    #[test]
    fn cached_tokens_are_counted_apart() {
        let u = usage(
            &json!({ "prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": { "cached_tokens": 60 } }),
        );
        assert_eq!(
            u,
            Usage { input_tokens: 40, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 60 }
        );
    }
}
