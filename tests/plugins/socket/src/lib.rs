//! A subject plugin that reaches for raw sockets: a test plugin for the host's sandbox suite.
//!
//! Its `observe()` opens a TCP connection to `127.0.0.1:1`, so the component imports
//! `wasi:sockets`. The host must either refuse to instantiate it or deny the connection; the
//! only way out of a plugin is the `http` import.

wit_bindgen::generate!({ world: "subject", path: "../../../wit" });

use std::net::TcpStream;

/// The exported component.
struct Socket;

/// Where the plugin tries to connect.
const ADDRESS: &str = "127.0.0.1:1";

impl Guest for Socket {
    fn info() -> SubjectInfo {
        SubjectInfo {
            name: "socket".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Opens a raw TCP connection to test the host's sandbox".into(),
            invariants: vec![],
            actions: vec![],
            queries: vec![],
            conditions: vec![],
        }
    }

    /// Connects to `127.0.0.1:1` and reports the outcome as the payload.
    fn observe() -> Result<Observation, String> {
        let outcome = match TcpStream::connect(ADDRESS) {
            Ok(stream) => format!("connected to {ADDRESS}: {stream:?}"),
            Err(error) => format!("connect to {ADDRESS} failed: {error}"),
        };
        Ok(Observation {
            taken_at_ms: 0,
            complete: true,
            errors: vec![],
            payload: serde_json::json!({ "connect": outcome }).to_string(),
        })
    }

    fn check(_observation: Observation) -> Vec<Violation> {
        vec![]
    }

    fn summarize(_observation: Observation) -> Vec<EntitySummary> {
        vec![]
    }

    fn diagnose(_ticket: Ticket, _observation: Observation) -> Result<Diagnosis, String> {
        Err("no rules".into())
    }

    fn precheck(_action: String, _params: Vec<Param>, _observation: Observation) -> Result<(), ActionError> {
        Ok(())
    }

    fn execute(_action: String, _params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        Err(ActionError::InvalidParams("no actions".into()))
    }

    fn verify(_action: String, _params: Vec<Param>, _observation: Observation) -> Verdict {
        Verdict::NotYet("the socket plugin verifies nothing".into())
    }

    fn reconcile(_action: String, _params: Vec<Param>, _started_at_ms: u64) -> Reconciliation {
        Reconciliation::NotApplied("the socket plugin has no actions".into())
    }

    fn query(name: String, _params: Vec<Param>) -> Result<String, String> {
        Err(format!("unknown query `{name}`"))
    }

    fn condition(name: String, _params: Vec<Param>, _observation: Observation) -> Result<bool, String> {
        Err(format!("unknown condition `{name}`"))
    }
}

export!(Socket);
