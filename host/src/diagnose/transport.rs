//! One LLM API call over HTTP: JSON in, JSON out, transient failures retried (see
//! [`super::retry`]), every failure explained with its status, API error type and message, and
//! request id.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::model::DiagnoserKind;
use super::retry::{self, Decision, Failure, Policy};

/// The largest reply body read; a diagnosis reply is bounded by `max_tokens`, so anything
/// bigger is not an answer.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Error codes that mean "stop paying", whatever the status: never retried.
const FINAL_ERROR_CODES: &[&str] = &[retry::SPEND_LIMIT_CODE, "insufficient_quota"];

/// Why an LLM diagnoser produced no diagnosis.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The API answered with an error status.
    #[error(
        "{provider} API answered HTTP {status}{}{}: {message}{}",
        error_type.as_ref().map(|t| format!(" {t}")).unwrap_or_default(),
        error_code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default(),
        rid(request_id)
    )]
    Api {
        /// Which API.
        provider: DiagnoserKind,
        /// The HTTP status.
        status: u16,
        /// `error.type`, e.g. `overloaded_error`.
        error_type: Option<String>,
        /// `error.details.error_code` (or `error.code`), e.g. `enforced_spend_limit_reached`.
        error_code: Option<String>,
        /// `error.message`, or the start of the body.
        message: String,
        /// The request id, when the API gave one.
        request_id: Option<String>,
    },
    /// No reply: the connection failed or timed out.
    #[error("{provider} API could not be reached: {message}")]
    Transport {
        /// Which API.
        provider: DiagnoserKind,
        /// What failed.
        message: String,
        /// Whether it was a timeout.
        timeout: bool,
    },
    /// Retrying stopped (attempts exhausted, or the server asked for too long a wait).
    #[error("{provider} API: gave up after {attempts} attempt(s) ({why}); last error: {last}")]
    GaveUp {
        /// Which API.
        provider: DiagnoserKind,
        /// Attempts made.
        attempts: u32,
        /// Why retrying stopped.
        why: String,
        /// The last failure.
        last: Box<LlmError>,
    },
    /// The reply is not what the protocol promises.
    #[error("{provider} API sent a reply that is not understood: {message}{}", rid(request_id))]
    Protocol {
        /// Which API.
        provider: DiagnoserKind,
        /// What was wrong.
        message: String,
        /// The request id.
        request_id: Option<String>,
    },
    /// The model refused to answer.
    #[error("{provider} model refused to diagnose{}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") }, rid(request_id))]
    Refused {
        /// What it said, if anything.
        detail: String,
        /// Which API.
        provider: DiagnoserKind,
        /// The request id.
        request_id: Option<String>,
    },
    /// The answer was cut off.
    #[error(
        "{provider} answer was truncated (stop reason `{reason}`): raise the max_tokens setting or cut the context{}",
        rid(request_id)
    )]
    Truncated {
        /// Which API.
        provider: DiagnoserKind,
        /// The stop or finish reason.
        reason: String,
        /// The request id.
        request_id: Option<String>,
    },
    /// The answer was not a valid diagnosis, twice.
    #[error("{provider} answer is not a valid diagnosis, even when asked again: {}{}", problems.join("; "), rid(request_id))]
    InvalidAnswer {
        /// Which API.
        provider: DiagnoserKind,
        /// Every problem with the last answer.
        problems: Vec<String>,
        /// The request id.
        request_id: Option<String>,
    },
    /// The investigation ran out of turns without a diagnosis.
    #[error("{provider}: no diagnosis after {turns} turn(s) (diagnosis.max_turns)")]
    TurnsExhausted {
        /// Which API.
        provider: DiagnoserKind,
        /// Turns taken.
        turns: u32,
    },
}

fn rid(request_id: &Option<String>) -> String {
    request_id.as_ref().map(|id| format!(" (request id {id})")).unwrap_or_default()
}

impl LlmError {
    /// The last error behind any retries.
    pub fn root(&self) -> &LlmError {
        match self {
            LlmError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }
}

/// A successful reply.
pub(crate) struct Reply {
    /// The JSON body.
    pub body: Value,
    /// The request id, when the API gave one.
    pub request_id: Option<String>,
}

/// An HTTP client for one API, with its retry policy.
pub(crate) struct Transport {
    client: reqwest::Client,
    policy: Policy,
    provider: DiagnoserKind,
    request_id_header: &'static str,
}

impl Transport {
    /// A client with a whole-request `timeout`. Redirects are not followed: an API does not
    /// redirect, and following one could carry the key elsewhere.
    pub fn new(
        provider: DiagnoserKind,
        timeout: Duration,
        policy: Policy,
        request_id_header: &'static str,
    ) -> Result<Transport, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("operator-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Transport { client, policy, provider, request_id_header })
    }

    /// POSTs `body` to `url` with `headers`, retrying transient failures. Every request id seen,
    /// failed attempts included, is appended to `request_ids`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &Value,
        request_ids: &mut Vec<String>,
    ) -> Result<Reply, LlmError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.attempt(url, headers, &bytes).await {
                Ok(reply) => {
                    tracing::debug!(provider = %self.provider, attempt, request_id = reply.request_id.as_deref(), "LLM reply");
                    request_ids.extend(reply.request_id.clone());
                    return Ok(reply);
                }
                Err((error, retry_after)) => (error, retry_after),
            };
            if let LlmError::Api { request_id: Some(id), .. } = &error {
                request_ids.push(id.clone());
            }
            let failure = match &error {
                LlmError::Api { status, error_code, .. } => match error_code.as_deref() {
                    Some(code) if FINAL_ERROR_CODES.contains(&code) => {
                        Failure::Status { status: *status, error_code: Some(retry::SPEND_LIMIT_CODE) }
                    }
                    code => Failure::Status { status: *status, error_code: code },
                },
                LlmError::Transport { timeout: true, .. } => Failure::Timeout,
                LlmError::Transport { timeout: false, .. } => Failure::Connect,
                _ => Failure::Other,
            };
            match self.policy.decide(attempt, failure, retry_after, rand::random::<f64>()) {
                Decision::RetryAfter(wait) => {
                    tracing::warn!(
                        provider = %self.provider, attempt, wait_ms = wait.as_millis() as u64,
                        "LLM request failed, retrying: {error}"
                    );
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp(_) if !retry::is_retryable(failure) => return Err(error),
                Decision::GiveUp(why) => {
                    return Err(LlmError::GaveUp {
                        provider: self.provider,
                        attempts: attempt,
                        why,
                        last: Box::new(error),
                    });
                }
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<Reply, (LlmError, Option<Duration>)> {
        let transport_error = |e: reqwest::Error| {
            let message = if e.is_timeout() { format!("timed out: {e}") } else { error_chain(&e) };
            (LlmError::Transport { provider: self.provider, message, timeout: e.is_timeout() }, None)
        };
        let mut request = self.client.post(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let mut response = request.body(body.to_vec()).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = header(self.request_id_header);
        let retry_after = header("retry-after-ms")
            .and_then(|v| retry::parse_retry_after_ms(&v))
            .or_else(|| header("retry-after").and_then(|v| retry::parse_retry_after(&v, SystemTime::now())));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                let message = format!("the reply is larger than {MAX_REPLY_BYTES} bytes");
                return Err((LlmError::Protocol { provider: self.provider, message, request_id }, None));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if (200..300).contains(&status) {
            return match parsed {
                Ok(body) => Ok(Reply { body, request_id }),
                Err(e) => Err((
                    LlmError::Protocol {
                        provider: self.provider,
                        message: format!("HTTP {status} with a body that is not JSON ({e}): {}", excerpt(&bytes)),
                        request_id,
                    },
                    None,
                )),
            };
        }
        let body = parsed.unwrap_or(Value::Null);
        let error = &body["error"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let message = text(&error["message"])
            .or_else(|| text(error))
            .unwrap_or_else(|| if bytes.is_empty() { "(empty body)".to_owned() } else { excerpt(&bytes) });
        Err((
            LlmError::Api {
                provider: self.provider,
                status,
                error_type: text(&error["type"]),
                error_code: text(&error["details"]["error_code"]).or_else(|| text(&error["code"])),
                message,
                request_id: request_id.or_else(|| text(&body["request_id"])),
            },
            retry_after,
        ))
    }
}

/// The start of a body, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    super::context::cut(text.trim(), 300).into_owned()
}

/// An error with its causes (reqwest's top-level message rarely says what failed).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
