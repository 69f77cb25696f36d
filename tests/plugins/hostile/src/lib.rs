//! A hostile subject plugin: a test plugin for the host's sandbox suite.
//!
//! The plugin setting `behaviour` picks what `observe()` does, so that one component can play
//! every hostile act the host must survive: burning CPU forever, exhausting memory or the stack,
//! panicking, exiting, reaching for the file system, the environment or the network past the
//! capability gate, flooding stdout, and so on. `info()` always behaves, so the host can load
//! the plugin whatever the setting says.
//!
//! When an act "succeeds" from the plugin's point of view, `observe()` returns a complete
//! observation whose payload is JSON describing what happened; when the host refused it,
//! `observe()` returns the error the plugin saw. Acts that never return (loops, exhaustion,
//! panics, exits) end in a trap the host has to contain.
//!
//! Behaviours: `none`, `loop`, `memory`, `stack`, `shadow-stack`, `panic`, `file`, `env`,
//! `ungranted-endpoint`, `ungranted-path`, `ungranted-origin`, `traversal`, `mutate`,
//! `credential-header`, `huge-response`, `stdout-flood`, `slow-host-call`, `exit`.

wit_bindgen::generate!({ world: "subject", path: "../../../wit" });

use std::hint::black_box;
use std::io::Write;

use operator::plugin::config;
use operator::plugin::http::{self, Header, Method, Target};
use serde_json::json;

/// The exported component.
struct Hostile;

/// The plugin setting that picks the behaviour.
const BEHAVIOUR_KEY: &str = "behaviour";

/// The endpoint the host's tests grant to this plugin.
const API: &str = "api";

/// How much `stdout-flood` writes to stdout.
const STDOUT_FLOOD_BYTES: usize = 8 * 1024 * 1024;

/// How much `stdout-flood` writes to stderr.
const STDERR_FLOOD_BYTES: usize = 1024 * 1024;

/// The size of each write of `stdout-flood`.
const FLOOD_CHUNK_BYTES: usize = 64 * 1024;

/// The configured behaviour, if any.
fn behaviour() -> Option<String> {
    config::get(BEHAVIOUR_KEY)
}

/// A complete observation carrying `payload`.
fn observation(payload: serde_json::Value) -> Observation {
    Observation { taken_at_ms: 0, complete: true, errors: vec![], payload: payload.to_string() }
}

/// A request to `target` with no body, headers or timeout of its own.
fn request(target: Target, method: Method, path_and_query: &str) -> http::Request {
    http::Request {
        target,
        method,
        path_and_query: path_and_query.into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    }
}

/// A GET of `path_and_query` on the named endpoint.
fn get(endpoint: &str, path_and_query: &str) -> http::Request {
    request(Target::Endpoint(endpoint.into()), Method::Get, path_and_query)
}

/// The POST that `mutate` sends: a small body to `/ok` on the `api` endpoint.
fn mutating_post() -> http::Request {
    http::Request {
        body: Some(b"{\"hostile\":true}".to_vec()),
        headers: vec![Header { name: "content-type".into(), value: "application/json".into() }],
        ..request(Target::Endpoint(API.into()), Method::Post, "/ok")
    }
}

/// Sends `req` and reports the outcome: the status and body length when a response came
/// back (the host let the request through), or the error the host returned.
fn send_and_report(req: http::Request) -> Result<Observation, String> {
    match http::send(&req) {
        Ok(response) => Ok(observation(json!({
            "status": response.status,
            "body_len": response.body.len(),
            "body_head": String::from_utf8_lossy(&response.body[..response.body.len().min(256)]),
        }))),
        Err(error) => Err(format!("{error:?}")),
    }
}

/// Spins forever on a counter the optimiser has to keep.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks, writing to every page so that they are really backed, and keeps
/// them all until memory runs out.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1024 * 1024];
        for byte in block.iter_mut().step_by(4096) {
            *byte = 0xA5;
        }
        hoard.push(black_box(block));
        black_box(&hoard);
    }
}

/// Recurses without bound on the wasm call stack: every frame keeps a dozen values live across
/// the call (so they are spilled to the engine's native stack) and combines them with the result
/// afterwards (so the call is no tail call and no accumulator loop). Nothing is placed in linear
/// memory, so the engine's call-stack limit is what stops it.
#[inline(never)]
fn recurse_on_call_stack(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    let v: [u64; 12] = core::array::from_fn(|i| depth.rotate_left(i as u32) ^ (i as u64 + 1));
    let below = recurse_on_call_stack(depth + 1, limit);
    let mut acc = below.rotate_left((below % 63) as u32);
    for (i, x) in v.iter().enumerate() {
        acc = acc.rotate_left(i as u32 + 1).wrapping_mul(x | 1) ^ x;
    }
    acc
}

/// Recurses without bound with a 16 KiB array in every frame, passed through `black_box` so it
/// lives in linear memory: this exhausts the shadow stack that Rust keeps at the bottom of
/// linear memory, long before the engine's call stack.
#[inline(never)]
fn recurse_on_shadow_stack(depth: u64) -> u64 {
    let mut frame = [0u8; 16 * 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = black_box(frame);
    // Never true; opaque to the compiler, so the recursion stays unconditional in practice.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse_on_shadow_stack(depth + 1);
    below.wrapping_add(u64::from(black_box(&frame)[(below % 1024) as usize]))
}

/// Describes a result as text: the value on success, the error otherwise.
fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("Ok({value:?})"),
        Err(error) => format!("Err({error})"),
    }
}

/// Tries to read, list and write the file system.
fn touch_files() -> Observation {
    let read = outcome(std::fs::read_to_string("/etc/passwd").map(|text| text.len()));
    let list = outcome(std::fs::read_dir("/").map(|entries| entries.count()));
    let write = outcome(std::fs::write("/tmp/hostile-was-here", b"hostile plugin"));
    observation(json!({ "read": read, "list": list, "write": write }))
}

/// Looks at the process environment: variables, arguments, working directory and `HOME`.
fn probe_env() -> Observation {
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir.display().to_string(),
        Err(error) => format!("Err({error})"),
    };
    let home = match std::env::var("HOME") {
        Ok(home) => home,
        Err(error) => format!("Err({error})"),
    };
    observation(json!({
        "vars": std::env::vars().count(),
        "args": std::env::args().count(),
        "cwd": cwd,
        "home": home,
    }))
}

/// Writes `total` bytes to `out` in fixed-size chunks, ignoring every error.
fn flood(out: &mut dyn Write, total: usize) {
    let chunk = vec![b'x'; FLOOD_CHUNK_BYTES];
    let mut written = 0;
    while written < total {
        let n = FLOOD_CHUNK_BYTES.min(total - written);
        let _ = out.write_all(&chunk[..n]);
        written += n;
    }
    let _ = out.flush();
}

/// Runs the hostile act named `behaviour` and reports what the plugin saw.
fn act(behaviour: &str) -> Result<Observation, String> {
    match behaviour {
        "none" => Ok(observation(json!({ "ok": true }))),
        "loop" => spin_forever(),
        "memory" => exhaust_memory(),
        "stack" => Ok(observation(json!({
            "depth": recurse_on_call_stack(0, black_box(u64::MAX)),
        }))),
        "shadow-stack" => Ok(observation(json!({ "depth": recurse_on_shadow_stack(0) }))),
        "panic" => panic!("hostile plugin panicked on purpose"),
        "file" => Ok(touch_files()),
        "env" => Ok(probe_env()),
        "ungranted-endpoint" => send_and_report(get("secret", "/")),
        "ungranted-path" => send_and_report(get(API, "/admin/keys")),
        "ungranted-origin" => send_and_report(request(
            Target::Origin("http://169.254.169.254:80".into()),
            Method::Get,
            "/latest/meta-data/",
        )),
        "traversal" => send_and_report(get(API, "/ok/../admin/keys")),
        "mutate" => send_and_report(mutating_post()),
        "credential-header" => send_and_report(http::Request {
            headers: vec![Header { name: "Authorization".into(), value: "Bearer stolen".into() }],
            ..get(API, "/ok")
        }),
        "huge-response" => send_and_report(get(API, "/huge")),
        "stdout-flood" => {
            flood(&mut std::io::stdout(), STDOUT_FLOOD_BYTES);
            flood(&mut std::io::stderr(), STDERR_FLOOD_BYTES);
            Ok(observation(json!({ "printed": STDOUT_FLOOD_BYTES })))
        }
        "slow-host-call" => send_and_report(get(API, "/slow")),
        "exit" => std::process::exit(3),
        other => Err(format!("unknown behaviour `{other}`")),
    }
}

impl Guest for Hostile {
    /// Always well behaved, whatever the configured behaviour.
    fn info() -> SubjectInfo {
        SubjectInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Misbehaves on demand (setting `behaviour`) to test the host's sandbox".into(),
            invariants: vec![],
            actions: vec![],
            queries: vec![],
            conditions: vec![],
        }
    }

    /// Runs the configured hostile act.
    fn observe() -> Result<Observation, String> {
        match behaviour() {
            Some(behaviour) => act(&behaviour),
            None => Err(format!("unknown behaviour: `{BEHAVIOUR_KEY}` is not set")),
        }
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

    /// With behaviour `mutate`, sends the mutating POST (which the host may allow here);
    /// otherwise there are no actions.
    fn execute(_action: String, _params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        if behaviour().as_deref() != Some("mutate") {
            return Err(ActionError::InvalidParams("no actions".into()));
        }
        match http::send(&mutating_post()) {
            Ok(response) => Ok(ActionOutcome { message: format!("status {}", response.status), details: vec![] }),
            Err(error) => Err(ActionError::Failed(format!("{error:?}"))),
        }
    }

    fn verify(_action: String, _params: Vec<Param>, _observation: Observation) -> Verdict {
        Verdict::NotYet("the hostile plugin verifies nothing".into())
    }

    fn reconcile(_action: String, _params: Vec<Param>, _started_at_ms: u64) -> Reconciliation {
        Reconciliation::NotApplied("the hostile plugin has no actions".into())
    }

    fn query(name: String, _params: Vec<Param>) -> Result<String, String> {
        Err(format!("unknown query `{name}`"))
    }

    fn condition(name: String, _params: Vec<Param>, _observation: Observation) -> Result<bool, String> {
        Err(format!("unknown condition `{name}`"))
    }
}

export!(Hostile);
