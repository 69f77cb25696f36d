//! Audit records and the events they carry, and their canonical encoding and hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry of the audit log.
///
/// `hash` is `hex(sha256(canonical))`, where `canonical` is the JSON encoding of
/// `{seq, at_ms, prev_hash, event}` in that order (see [`AuditRecord::compute_hash`]). The
/// stored form is the JSON encoding of the whole record, fields in declaration order
/// ([`AuditRecord::to_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When the event happened, in milliseconds since the Unix epoch (as the host's clock saw
    /// it; not checked by verification).
    pub at_ms: u64,
    /// The previous record's `hash`, or [`GENESIS_HASH`] for record 1.
    pub prev_hash: String,
    /// What happened.
    pub event: AuditEvent,
    /// This record's hash, in lowercase hex.
    pub hash: String,
}

/// The hashed part of a record, in its fixed field order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at_ms: u64,
    prev_hash: &'a str,
    event: &'a AuditEvent,
}

impl AuditRecord {
    /// Builds record `seq` following a record whose hash is `prev_hash`, and computes its hash.
    pub fn new(seq: u64, at_ms: u64, prev_hash: String, event: AuditEvent) -> AuditRecord {
        let hash = Self::compute_hash(seq, at_ms, &prev_hash, &event);
        AuditRecord { seq, at_ms, prev_hash, event, hash }
    }

    /// `hex(sha256(json({seq, at_ms, prev_hash, event})))`: the hash a record with these fields
    /// must carry.
    pub fn compute_hash(seq: u64, at_ms: u64, prev_hash: &str, event: &AuditEvent) -> String {
        let bytes = Self::canonical(seq, at_ms, prev_hash, event);
        hex::encode(Sha256::digest(&bytes))
    }

    fn canonical(seq: u64, at_ms: u64, prev_hash: &str, event: &AuditEvent) -> Vec<u8> {
        // Most records encode in under half a KiB: one allocation instead of a few regrowths.
        let mut bytes = Vec::with_capacity(512);
        // Structs, strings, integers and string-keyed maps always encode.
        serde_json::to_writer(&mut bytes, &Canonical { seq, at_ms, prev_hash, event })
            .expect("audit records always encode as JSON");
        bytes
    }

    /// Builds record `seq` like [`AuditRecord::new`] and returns it with its stored form (what
    /// [`AuditRecord::to_bytes`] gives), encoding the event once: the stored form is the
    /// canonical form with `,"hash":"…"` before its closing brace, since `hash` is the last field.
    pub fn new_encoded(seq: u64, at_ms: u64, prev_hash: String, event: AuditEvent) -> (AuditRecord, Vec<u8>) {
        let mut bytes = Self::canonical(seq, at_ms, &prev_hash, &event);
        let hash = hex::encode(Sha256::digest(&bytes));
        debug_assert_eq!(bytes.last(), Some(&b'}'));
        bytes.pop();
        bytes.extend_from_slice(b",\"hash\":\"");
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(b"\"}");
        (AuditRecord { seq, at_ms, prev_hash, event, hash }, bytes)
    }

    /// The hash this record's content calls for (compare with [`AuditRecord::hash`]).
    pub fn recompute_hash(&self) -> String {
        Self::compute_hash(self.seq, self.at_ms, &self.prev_hash, &self.event)
    }

    /// The record's canonical stored form: its JSON encoding, fields in declaration order, no
    /// whitespace. Also one line of the JSON Lines export.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("audit records always encode as JSON")
    }

    /// Parses a stored record.
    ///
    /// # Errors
    /// The bytes are not the JSON of an audit record.
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The ticket and action an event belongs to, when it belongs to one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The ticket's id.
    pub ticket: Option<String>,
    /// The action's id.
    pub action: Option<String>,
}

/// Whether a plugin was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LoadOutcome {
    /// The plugin was loaded and may be called.
    Loaded,
    /// The plugin was not loaded.
    Refused {
        /// Why (checksum mismatch, malformed component, missing grant, ...).
        reason: String,
    },
}

/// How a plugin call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallOutcome {
    /// The export returned normally.
    Ok,
    /// The export returned an error value.
    Error {
        /// The error the plugin returned.
        message: String,
    },
    /// The plugin trapped (a Wasm trap, an exhausted limit, a host-side failure during the call).
    Trap {
        /// The trap's description.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    Timeout {
        /// The deadline that was exceeded, in milliseconds.
        after_ms: u64,
    },
}

/// What the capability gate decided about one outbound request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decision {
    /// The request was allowed.
    Allowed {
        /// The grant that allowed it.
        rule: String,
    },
    /// The request was refused and not sent.
    Denied {
        /// Why it was refused.
        reason: String,
        /// The rule that refused it, when one did (none when nothing granted it).
        rule: Option<String>,
    },
}

/// Something that happened and must be on record.
///
/// Encoded as a JSON object with a `kind` field naming the variant in kebab-case
/// (`plugin-load`, `plugin-call`, `capability`, `sandbox`, `note`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// A plugin component was loaded, or refused.
    PluginLoad {
        /// The plugin's name.
        plugin: String,
        /// The plugin's version.
        version: String,
        /// sha256 of the component, hex.
        component_sha256: String,
        /// Where it came from: `"built-in"` or the component's path.
        source: String,
        /// Whether it was loaded.
        outcome: LoadOutcome,
    },
    /// One call of a plugin export.
    PluginCall {
        /// The plugin's name.
        plugin: String,
        /// The plugin's version.
        version: String,
        /// sha256 of the component, hex.
        component_sha256: String,
        /// The export that was called.
        export: String,
        /// sha256 of the encoded arguments, hex.
        args_sha256: String,
        /// Wall-clock duration of the call, in microseconds.
        duration_us: u64,
        /// How the call ended.
        outcome: CallOutcome,
        /// Bytes the plugin wrote to stdout.
        stdout_bytes: u64,
        /// Bytes the plugin wrote to stderr.
        stderr_bytes: u64,
        /// Whether captured output was cut at its limit.
        output_truncated: bool,
        /// The ticket / action the call served.
        link: Option<Link>,
    },
    /// One use (or refused use) of an HTTP capability.
    Capability {
        /// The plugin's name.
        plugin: String,
        /// The export during which the request was made.
        export: String,
        /// The endpoint name or origin the plugin asked for.
        target: String,
        /// The resolved URL, when the request was sent.
        url: Option<String>,
        /// The HTTP method.
        method: String,
        /// The request path.
        path: String,
        /// What the gate decided.
        decision: Decision,
        /// The response status, when there was a response.
        status: Option<u16>,
        /// Response body bytes received.
        bytes: u64,
        /// Time to the response, in microseconds.
        latency_us: u64,
        /// A transport error, when the request failed.
        error: Option<String>,
        /// The ticket / action the request served.
        link: Option<Link>,
    },
    /// A plugin asked the sandbox for something it is never given.
    Sandbox {
        /// The plugin's name.
        plugin: String,
        /// The export during which it asked.
        export: String,
        /// What it asked for, e.g. `"environment"`, `"filesystem"`.
        what: String,
        /// The details of the request.
        detail: String,
    },
    /// A change of state of something the operator manages (a ticket, an action, a workflow, the
    /// safety switches), recorded before the change takes effect.
    StateChange {
        /// What changed: `ticket`, `action`, `workflow`, `safety`.
        subject: String,
        /// Its id, e.g. `T-000012`.
        id: String,
        /// The state before, if it existed.
        from: Option<String>,
        /// The state after.
        to: String,
        /// Why, in one line.
        reason: String,
        /// Who: `monitor`, `cli`, `api:<user>`, ...
        actor: String,
    },
    /// A free-form record from the host (start, stop, configuration change, ...).
    Note {
        /// The text.
        message: String,
    },
}

impl AuditEvent {
    /// Every value [`AuditEvent::kind`] can return.
    pub const KINDS: &'static [&'static str] =
        &["plugin-load", "plugin-call", "capability", "sandbox", "state-change", "note"];

    /// A [`AuditEvent::Note`].
    pub fn note(message: impl Into<String>) -> AuditEvent {
        AuditEvent::Note { message: message.into() }
    }

    /// The variant's name as encoded in the `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::PluginLoad { .. } => "plugin-load",
            AuditEvent::PluginCall { .. } => "plugin-call",
            AuditEvent::Capability { .. } => "capability",
            AuditEvent::Sandbox { .. } => "sandbox",
            AuditEvent::StateChange { .. } => "state-change",
            AuditEvent::Note { .. } => "note",
        }
    }

    /// The plugin the event is about, if any.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            AuditEvent::PluginLoad { plugin, .. }
            | AuditEvent::PluginCall { plugin, .. }
            | AuditEvent::Capability { plugin, .. }
            | AuditEvent::Sandbox { plugin, .. } => Some(plugin),
            AuditEvent::StateChange { .. } | AuditEvent::Note { .. } => None,
        }
    }

    /// Whether the event records something a plugin tried and was refused: a denied capability
    /// request, or a sandbox request for something plugins are never given.
    pub fn is_denied(&self) -> bool {
        match self {
            AuditEvent::Capability { decision, .. } => {
                matches!(decision, Decision::Denied { .. })
            }
            AuditEvent::Sandbox { .. } => true,
            AuditEvent::PluginLoad { .. }
            | AuditEvent::PluginCall { .. }
            | AuditEvent::StateChange { .. }
            | AuditEvent::Note { .. } => false,
        }
    }

    /// The ticket / action the event is linked to, if any.
    pub fn link(&self) -> Option<&Link> {
        match self {
            AuditEvent::PluginCall { link, .. } | AuditEvent::Capability { link, .. } => link.as_ref(),
            _ => None,
        }
    }
}
