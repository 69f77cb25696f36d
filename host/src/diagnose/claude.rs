//! The Anthropic Messages API diagnoser.
//!
//! One diagnosis is a short investigation: the model sees the ticket, may call the plugin's
//! read-only queries as tools (their answers go back as `tool_result` blocks, `is_error` when
//! a query failed or its arguments were refused), and ends with the diagnosis as structured
//! output (`output_config` with the diagnosis schema).
//!
//! - Bounded: at most `max_turns` calls, and once `max_total_tokens` are spent (or the last
//!   turn comes) the model is told to conclude and tools are switched off (`tool_choice: none`).
//! - `pause_turn` sends the reply back to let the model go on; `max_tokens` and
//!   `model_context_window_exceeded` are a truncated answer and `refusal` a refusal: both errors.
//! - An answer that is not a valid diagnosis is sent back with its problems, once.
//! - A model or gateway without `output_config` (a 400 that names it) gets the diagnosis
//!   schema as a strict `submit_diagnosis` tool instead, with `tool_choice: auto` (forcing a
//!   tool is refused by the newest models); the client remembers and stays on that path.
//! - Caching: the tools and the system prompt never change between tickets; the system prompt's
//!   last block carries `cache_control: {"type": "ephemeral"}`, so the API caches tools and
//!   system together.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::context::{Prompt, SUBMIT_TOOL};
use super::model::{DiagnoserKind, Usage, diagnosis_schema};
use super::transport::{LlmError, Transport};
use super::validate::{self, Validated};
use super::{FINAL_TURN_NOTE, LoopLimits, QueryRunner, Spend, invalid_answer_note, parse_json_text, run_tool};
use crate::runtime::bindings::types;

/// The model used when the configuration names none.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-6";
/// The API used when neither the configuration nor `ANTHROPIC_BASE_URL` names one.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

const PROVIDER: DiagnoserKind = DiagnoserKind::Claude;

/// What the system prompt adds when the diagnosis goes through the submit tool.
const SUBMIT_NOTE: &str =
    "\n\nWhen you are done investigating, submit the diagnosis by calling the `submit_diagnosis` tool once.";

/// How the structured diagnosis comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `output_config` with the schema: the final text is the diagnosis.
    OutputConfig,
    /// A strict `submit_diagnosis` tool whose input is the diagnosis.
    SubmitTool,
}

/// A client of the Messages API.
pub struct ClaudeClient {
    transport: Transport,
    url: String,
    api_key: String,
    model: String,
    max_tokens: u32,
    limits: LoopLimits,
    /// Set once the API refused `output_config`, so later diagnoses skip the doomed request.
    submit_tool: AtomicBool,
}

impl std::fmt::Debug for ClaudeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ClaudeClient").field("url", &self.url).field("model", &self.model).finish_non_exhaustive()
    }
}

impl ClaudeClient {
    pub(crate) fn new(
        transport: Transport,
        base_url: &str,
        api_key: String,
        model: String,
        max_tokens: u32,
        limits: LoopLimits,
    ) -> ClaudeClient {
        ClaudeClient {
            transport,
            url: super::endpoint_url(base_url, "messages"),
            api_key,
            model,
            max_tokens,
            limits,
            submit_tool: AtomicBool::new(false),
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

    fn body(&self, prompt: &Prompt, messages: &[Value], mode: Mode, final_turn: bool) -> Value {
        let schema = diagnosis_schema();
        let mut tools: Vec<Value> = prompt
            .tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
            .collect();
        let mut system = prompt.system.clone();
        if mode == Mode::SubmitTool {
            system.push_str(SUBMIT_NOTE);
            tools.push(json!({
                "name": SUBMIT_TOOL,
                "description": "Submit the final diagnosis of the ticket. Call it once, when you are done investigating.",
                "input_schema": schema,
                "strict": true,
            }));
        }
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [
                { "type": "text", "text": system },
                { "type": "text", "text": prompt.catalogue, "cache_control": { "type": "ephemeral" } },
            ],
            "messages": messages,
        });
        if !tools.is_empty() {
            // On the last turn of the output_config path, queries are over: the model must answer.
            let choice = if final_turn && mode == Mode::OutputConfig { "none" } else { "auto" };
            body["tool_choice"] = json!({ "type": choice });
            body["tools"] = Value::Array(tools);
        }
        if mode == Mode::OutputConfig {
            body["output_config"] = json!({ "format": { "type": "json_schema", "schema": schema } });
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
        let mut mode = if self.submit_tool.load(Ordering::Relaxed) { Mode::SubmitTool } else { Mode::OutputConfig };
        let mut messages = vec![json!({ "role": "user", "content": [{ "type": "text", "text": prompt.user }] })];
        let mut asked_again = false;
        let mut final_turn = false;
        let mut turns = 0;
        let headers = [("x-api-key", self.api_key.clone()), ("anthropic-version", API_VERSION.to_owned())];
        loop {
            if turns >= self.limits.max_turns {
                return Err(LlmError::TurnsExhausted { provider: PROVIDER, turns });
            }
            if !final_turn
                && (turns + 1 == self.limits.max_turns || spend.usage.total() >= self.limits.max_total_tokens)
            {
                final_turn = true;
                note_on_last_user_message(&mut messages, FINAL_TURN_NOTE);
            }
            let body = self.body(prompt, &messages, mode, final_turn);
            let reply = match self.transport.post(&self.url, &headers, &body, &mut spend.request_ids).await {
                Ok(reply) => reply,
                Err(error) if mode == Mode::OutputConfig && output_config_refused(&error) => {
                    tracing::warn!(model = %self.model, "the API refused output_config; using the submit_diagnosis tool: {error}");
                    mode = Mode::SubmitTool;
                    self.submit_tool.store(true, Ordering::Relaxed);
                    continue;
                }
                Err(error) => return Err(error),
            };
            turns += 1;
            spend.turns += 1;
            let request_id = reply.request_id.clone();
            let body = reply.body;
            spend.usage.add(usage(&body["usage"]));
            if let Some(model) = body["model"].as_str() {
                spend.model = Some(model.to_owned());
            }
            let content = body["content"].as_array().cloned().unwrap_or_default();
            let stop_reason = body["stop_reason"].as_str().unwrap_or_default().to_owned();
            match stop_reason.as_str() {
                "refusal" => {
                    return Err(LlmError::Refused { provider: PROVIDER, detail: text_of(&content), request_id });
                }
                "max_tokens" | "model_context_window_exceeded" => {
                    return Err(LlmError::Truncated { provider: PROVIDER, reason: stop_reason, request_id });
                }
                "pause_turn" => {
                    // The server paused a long turn; sending the reply back lets it go on.
                    messages.push(json!({ "role": "assistant", "content": content }));
                    continue;
                }
                "end_turn" | "tool_use" | "stop_sequence" => {}
                other => {
                    return Err(LlmError::Protocol {
                        provider: PROVIDER,
                        message: format!("unexpected stop_reason {other:?}"),
                        request_id,
                    });
                }
            }

            let tool_uses: Vec<&Value> = content.iter().filter(|b| b["type"] == "tool_use").collect();
            let submitted = tool_uses.iter().find(|b| b["name"] == SUBMIT_TOOL);
            if let Some(submit) = submitted {
                match validate::answer(&submit["input"], catalogue) {
                    Ok(validated) => return Ok(validated),
                    Err(problems) if asked_again || turns >= self.limits.max_turns => {
                        return Err(LlmError::InvalidAnswer { provider: PROVIDER, problems, request_id });
                    }
                    Err(problems) => {
                        asked_again = true;
                        let mut results = Vec::new();
                        for block in &tool_uses {
                            let (text, is_error) = if block["name"] == SUBMIT_TOOL {
                                (invalid_answer_note(&problems), true)
                            } else {
                                ("Not run: the diagnosis was submitted.".to_owned(), true)
                            };
                            results.push(tool_result(block, text, is_error));
                        }
                        messages.push(json!({ "role": "assistant", "content": content }));
                        messages.push(json!({ "role": "user", "content": results }));
                        continue;
                    }
                }
            }
            if !tool_uses.is_empty() {
                if final_turn {
                    // Tools were switched off or the budget is spent: no more queries.
                    return Err(LlmError::TurnsExhausted { provider: PROVIDER, turns });
                }
                let mut results = Vec::new();
                for block in &tool_uses {
                    let name = block["name"].as_str().unwrap_or_default();
                    let outcome = run_tool(&prompt.tools, name, &block["input"], queries, &self.limits, spend).await;
                    results.push(match outcome {
                        Ok(text) => tool_result(block, text, false),
                        Err(text) => tool_result(block, text, true),
                    });
                }
                messages.push(json!({ "role": "assistant", "content": content }));
                messages.push(json!({ "role": "user", "content": results }));
                continue;
            }

            // A final answer in text: the diagnosis itself on the output_config path; on the
            // submit-tool path a model that forgot the tool may still have written valid JSON.
            let text = text_of(&content);
            let problems = match parse_json_text(&text) {
                Ok(value) => match validate::answer(&value, catalogue) {
                    Ok(validated) => return Ok(validated),
                    Err(problems) => problems,
                },
                Err(problem) if mode == Mode::SubmitTool => {
                    vec![format!("the diagnosis was not submitted with the `{SUBMIT_TOOL}` tool ({problem})")]
                }
                Err(problem) => vec![problem],
            };
            if asked_again || turns >= self.limits.max_turns {
                return Err(LlmError::InvalidAnswer { provider: PROVIDER, problems, request_id });
            }
            asked_again = true;
            if !content.is_empty() {
                messages.push(json!({ "role": "assistant", "content": content }));
            }
            messages.push(
                json!({ "role": "user", "content": [{ "type": "text", "text": invalid_answer_note(&problems) }] }),
            );
        }
    }
}

/// Whether an error is the API refusing `output_config` itself (an older model or a gateway
/// that does not know it), as opposed to any other bad request.
fn output_config_refused(error: &LlmError) -> bool {
    matches!(error.root(), LlmError::Api { status: 400, message, .. } if message.contains("output_config"))
}

fn tool_result(tool_use: &Value, content: String, is_error: bool) -> Value {
    let mut block = json!({ "type": "tool_result", "tool_use_id": tool_use["id"], "content": content });
    if is_error {
        block["is_error"] = Value::Bool(true);
    }
    block
}

/// The text blocks of a reply, joined.
fn text_of(content: &[Value]) -> String {
    content.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("")
}

/// Adds a text block to the last message when it is the user's (after its tool results, as
/// the API requires).
fn note_on_last_user_message(messages: &mut [Value], note: &str) {
    if let Some(last) = messages.last_mut()
        && last["role"] == "user"
        && let Some(content) = last["content"].as_array_mut()
    {
        content.push(json!({ "type": "text", "text": note }));
    }
}

fn usage(usage: &Value) -> Usage {
    let n = |key: &str| usage[key].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_creation_input_tokens: n("cache_creation_input_tokens"),
        cache_read_input_tokens: n("cache_read_input_tokens"),
    }
}
