//! Talking to PD (and to the stores' status ports and Prometheus) through the host's `http`
//! capability, and telling PD's replies apart: success, PD's own error strings, no leader,
//! transport failures and malformed bodies.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::operator::plugin::http::{self, Method, Target};
use crate::operator::plugin::types::ActionError;

/// PD's error when no member leads (every proxied route answers it with `503`).
pub const NO_LEADER: &str = "ErrRedirectNoLeader";

/// Why a request to PD produced no usable reply.
#[derive(Debug, Clone)]
pub enum PdError {
    /// The host refused or could not carry out the request.
    Transport { what: String, error: http::Error },
    /// PD answered with a non-success status.
    Status { what: String, status: u16, body: String },
    /// PD answered 2xx with a body this plugin cannot read.
    Malformed { what: String, error: String },
}

impl PdError {
    /// Whether the capability gate refused the request (the grant is missing).
    pub fn is_denied(&self) -> bool {
        matches!(self, PdError::Transport { error: http::Error::Denied(_), .. })
    }

    /// Whether PD said it has no leader.
    pub fn is_no_leader(&self) -> bool {
        matches!(self, PdError::Status { status: 503, body, .. } if body.contains(NO_LEADER))
    }

    /// Whether PD said the thing asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            PdError::Status { status: 404, .. } => true,
            PdError::Status { body, .. } => body.contains("NotFound") || body.contains("not found"),
            _ => false,
        }
    }

    /// Whether trying again later may succeed: timeouts, unreachable members, 5xx from a
    /// proxy or a leader change, and PD's "maybe already have one" operator clash.
    pub fn is_retryable(&self) -> bool {
        match self {
            PdError::Transport { error, .. } => {
                matches!(error, http::Error::Timeout(_) | http::Error::Unreachable(_))
            }
            PdError::Status { status, body, .. } => {
                matches!(status, 502..=504) || body.contains("maybe already have one") || body.contains(NO_LEADER)
            }
            PdError::Malformed { .. } => false,
        }
    }

    /// The matching action error: retryable or a definite failure.
    pub fn into_action_error(self) -> ActionError {
        if self.is_retryable() {
            ActionError::Retryable(self.to_string())
        } else {
            ActionError::Failed(self.to_string())
        }
    }
}

impl fmt::Display for PdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PdError::Transport { what, error } => {
                let reason = match error {
                    http::Error::Denied(text) => format!("denied by the capability gate: {text}"),
                    http::Error::Invalid(text) => format!("invalid request: {text}"),
                    http::Error::Timeout(text) => format!("timed out: {text}"),
                    http::Error::Unreachable(text) => format!("unreachable: {text}"),
                    http::Error::TooLarge(limit) => format!("reply larger than the host's cap of {limit} bytes"),
                };
                write!(f, "{what}: {reason}")
            }
            PdError::Status { what, status, body } => write!(f, "{what}: PD answered {status}: {}", short(body)),
            PdError::Malformed { what, error } => write!(f, "{what}: unreadable reply: {error}"),
        }
    }
}

/// The first 300 characters of a body, trimmed, for messages.
fn short(body: &str) -> String {
    let body = body.trim();
    if body.len() <= 300 {
        body.to_owned()
    } else {
        let cut = (0..=300).rev().find(|&i| body.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &body[..cut])
    }
}

/// A successful reply's body.
pub struct Reply {
    /// The raw body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text (PD's success messages are JSON string literals).
    pub fn text(&self) -> String {
        let raw = String::from_utf8_lossy(&self.body);
        serde_json::from_str::<String>(&raw).unwrap_or_else(|_| raw.trim().to_owned())
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

/// Sends one request; a non-2xx status is an error carrying PD's body.
pub fn send(target: Target, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply, PdError> {
    let what = match &target {
        Target::Endpoint(name) if name == "pd" => format!("{} {path}", method_name(method)),
        Target::Endpoint(name) => format!("{} {name}{path}", method_name(method)),
        Target::Origin(origin) => format!("{} {origin}{path}", method_name(method)),
    };
    let headers = if body.is_some() {
        vec![http::Header { name: "content-type".into(), value: "application/json".into() }]
    } else {
        vec![]
    };
    let request = http::Request { target, method, path_and_query: path.into(), headers, body, timeout_ms: None };
    match http::send(&request) {
        Ok(response) if (200..300).contains(&response.status) => Ok(Reply { body: response.body }),
        Ok(response) => Err(PdError::Status {
            what,
            status: response.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        }),
        Err(error) => Err(PdError::Transport { what, error }),
    }
}

/// `GET` a PD path and decode the JSON reply into `T`.
pub fn get<T: DeserializeOwned>(path: &str) -> Result<T, PdError> {
    let reply = send(Target::Endpoint("pd".into()), Method::Get, path, None)?;
    decode(&format!("GET {path}"), &reply.body)
}

/// Decodes a JSON body, naming the request in the error.
pub fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, PdError> {
    // Tracking the path costs about as much again as the parse itself (a region list can be
    // megabytes), so a reply is parsed plainly and only a bad one again, for its path.
    let plain = match serde_json::from_slice::<T>(body) {
        Ok(value) => return Ok(value),
        Err(plain) => plain,
    };
    // The path to the offending field (`stores[0].status.leader_count`) makes the error actionable.
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => format!("at `{}`: {}", e.path(), e.inner()),
        // Both parsers read the same JSON; should they ever disagree, the first error stands.
        Ok(_) => plain.to_string(),
    };
    Err(PdError::Malformed { what: what.to_owned(), error })
}

/// A mutating PD request with an optional JSON body; returns PD's message.
pub fn mutate(method: Method, path: &str, body: Option<serde_json::Value>) -> Result<String, PdError> {
    let body = body.map(|b| b.to_string().into_bytes());
    send(Target::Endpoint("pd".into()), method, path, body).map(|r| r.text())
}
