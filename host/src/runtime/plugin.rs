//! A loaded plugin and its calls.
//!
//! Each call gets a fresh [`Store`] holding a [`CallState`]: the sandbox, the capability gate,
//! the log and the settings of that one call. The call runs under the plugin's deadline (epoch
//! interruption inside guest code, a tokio timeout around everything) and memory cap, and ends
//! with one audit record: plugin, version, component sha256, export, a digest of the arguments,
//! duration and outcome (ok, error, trap or timeout).
//!
//! Only [`SubjectPlugin::execute`] and [`ToolsPlugin::invoke`] can carry an
//! [`ExecutionPermit`], so only they can ever send a mutating request (DESIGN rule 3).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{ComponentExportIndex, InstancePre};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::RuntimeInner;
use super::bindings::{self, types};
use super::gate::{HasGate, HttpGate};
use super::grants::Grants;
use super::logging::{self, HasLog, PluginLog};
use super::manifest::{Manifest, PluginWorld};
use super::sandbox::{HasSandbox, SandboxCtx};
use super::settings::{HasSettings, PluginSettings};
use crate::audit::{AuditEvent, CallOutcome, Link};
use crate::config::PluginConfig;

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// Compiled into the binary.
    BuiltIn,
    /// A drop-in directory.
    Directory(PathBuf),
}

impl PluginPre {
    /// The linked component, whatever its world.
    fn instance_pre(&self) -> &InstancePre<CallState> {
        match self {
            PluginPre::Subject(pre) => pre.instance_pre(),
            PluginPre::Tools(pre) => pre.instance_pre(),
        }
    }
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::BuiltIn => f.write_str("built-in"),
            PluginSource::Directory(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// The exports of the `subject` world.
const SUBJECT_EXPORTS: &[&str] = &[
    "info",
    "observe",
    "check",
    "summarize",
    "diagnose",
    "precheck",
    "execute",
    "verify",
    "reconcile",
    "query",
    "condition",
];

/// The exports of the `tools` world.
const TOOLS_EXPORTS: &[&str] = &["info", "invoke"];

/// A pre-linked component of either world.
pub enum PluginPre {
    /// A subject adapter.
    Subject(bindings::subject::SubjectPre<CallState>),
    /// A tools plugin.
    Tools(bindings::tools::ToolsPre<CallState>),
}

/// Proof that a call is an action execution the action lifecycle allowed. Only an execution
/// carrying one may send mutating requests, and only `execute`/`invoke` accept one.
#[derive(Clone, Debug)]
pub struct ExecutionPermit {
    action_id: String,
}

impl ExecutionPermit {
    /// A permit for the execution of action `action_id`. The action engine issues these once an
    /// action is validated, approved where required, not in observe mode and the kill switch is
    /// off; nothing else should.
    pub fn for_approved_action(action_id: impl Into<String>) -> ExecutionPermit {
        ExecutionPermit { action_id: action_id.into() }
    }

    /// The action this permit is for.
    pub fn action_id(&self) -> &str {
        &self.action_id
    }
}

/// What a call is linked to in the audit log.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// The ticket the call serves, if any.
    pub ticket: Option<String>,
}

impl CallContext {
    fn link(&self, permit: Option<&ExecutionPermit>) -> Option<Link> {
        let action = permit.map(|p| p.action_id.clone());
        (self.ticket.is_some() || action.is_some()).then(|| Link { ticket: self.ticket.clone(), action })
    }
}

/// Why a plugin call produced no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was stopped.
    #[error("plugin `{plugin}` was stopped in `{export}`: it ran past its {}-ms deadline", after.as_millis())]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The export called.
        export: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The plugin crashed (trap, panic, stack overflow, memory cap, exit).
    #[error("plugin `{plugin}` crashed in `{export}`: {message}")]
    Crashed {
        /// The plugin.
        plugin: String,
        /// The export called.
        export: &'static str,
        /// What happened, with the end of the plugin's stderr when it said something.
        message: String,
    },
}

impl CallError {
    /// A short word for the audit log and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Deadline { .. } => "timeout",
            CallError::Crashed { .. } => "trap",
        }
    }
}

/// The data of one call's store.
pub struct CallState {
    sandbox: SandboxCtx,
    gate: HttpGate,
    log: PluginLog,
    settings: PluginSettings,
    limits: StoreLimits,
}

impl HasSandbox for CallState {
    fn sandbox(&mut self) -> &mut SandboxCtx {
        &mut self.sandbox
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.ctx()
    }
}

impl HasGate for CallState {
    fn gate(&mut self) -> &mut HttpGate {
        &mut self.gate
    }
}

impl HasLog for CallState {
    fn log(&mut self) -> &mut PluginLog {
        &mut self.log
    }
}

impl HasSettings for CallState {
    fn settings(&mut self) -> &mut PluginSettings {
        &mut self.settings
    }
}

/// A loaded plugin.
pub struct Plugin {
    manifest: Manifest,
    name: Arc<str>,
    sha256: String,
    source: PluginSource,
    grants: Arc<Grants>,
    settings: PluginSettings,
    deadline: Duration,
    memory_limit: usize,
    pre: PluginPre,
    /// The component's exports by name, resolved once so a call looks up only its own export.
    exports: HashMap<&'static str, ComponentExportIndex>,
    runtime: Arc<RuntimeInner>,
}

type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl Plugin {
    pub(crate) fn new(
        manifest: Manifest,
        sha256: String,
        source: PluginSource,
        config: &PluginConfig,
        grants: Arc<Grants>,
        pre: PluginPre,
        runtime: Arc<RuntimeInner>,
    ) -> Plugin {
        let limits = &runtime.limits;
        let deadline = Duration::from_millis(config.call_deadline_ms.unwrap_or(limits.call_deadline_ms));
        let memory_limit = (config.memory_limit_mib.unwrap_or(limits.memory_limit_mib) * 1024 * 1024) as usize;
        let instance_pre = pre.instance_pre();
        let names: &[&'static str] = match &pre {
            PluginPre::Subject(_) => SUBJECT_EXPORTS,
            PluginPre::Tools(_) => TOOLS_EXPORTS,
        };
        let exports = names
            .iter()
            .filter_map(|name| instance_pre.component().get_export_index(None, name).map(|index| (*name, index)))
            .collect();
        let settings = PluginSettings::new(config.settings.clone())
            .with_endpoints(grants.endpoints().map(str::to_owned).collect());
        Plugin {
            name: Arc::from(manifest.name.as_str()),
            manifest,
            sha256,
            source,
            grants,
            settings,
            deadline,
            memory_limit,
            pre,
            exports,
            runtime,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version (from the manifest).
    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its component's sha256.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where it came from.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    /// What the operator granted it.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Its settings.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Its per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Its memory cap in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// The world it implements.
    pub fn world(&self) -> PluginWorld {
        self.manifest.world
    }

    /// This plugin as a subject adapter, if it is one.
    pub fn as_subject(&self) -> Option<SubjectPlugin<'_>> {
        matches!(self.pre, PluginPre::Subject(_)).then_some(SubjectPlugin { plugin: self })
    }

    /// This plugin as a tools plugin, if it is one.
    pub fn as_tools(&self) -> Option<ToolsPlugin<'_>> {
        matches!(self.pre, PluginPre::Tools(_)).then_some(ToolsPlugin { plugin: self })
    }

    fn new_store(
        &self,
        export: &'static str,
        context: &CallContext,
        permit: Option<&ExecutionPermit>,
    ) -> Store<CallState> {
        let runtime = &self.runtime;
        let state = CallState {
            sandbox: SandboxCtx::new(runtime.limits.output_limit_bytes()),
            gate: HttpGate::new(
                self.name.clone(),
                export,
                self.grants.clone(),
                runtime.gate.clone(),
                permit.is_some(),
                context.link(permit),
                runtime.audit.clone(),
            ),
            log: PluginLog::new(self.name.clone(), runtime.limits.log_lines_per_call),
            settings: self.settings.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory_limit)
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|state| &mut state.limits);
        let deadline = Instant::now() + self.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Give the executor a turn every tick, so a busy guest cannot starve the host.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs one export on a fresh instance and audits it.
    async fn call<R: Send>(
        &self,
        export: &'static str,
        args: &impl Serialize,
        context: &CallContext,
        permit: Option<&ExecutionPermit>,
        body: impl for<'a> FnOnce(
            &'a InstancePre<CallState>,
            &'a ComponentExportIndex,
            &'a mut Store<CallState>,
        ) -> CallFuture<'a, R>
        + Send,
    ) -> Result<R, CallError> {
        let args_sha256 = crate::digest::sha256_json_hex(args);
        let index = self.exports.get(export).expect("the world's exports were checked at load");
        let mut store = self.new_store(export, context, permit);
        // The epoch (the store's deadline and periodic yield) advances only while a call runs.
        let _ticking = self.runtime.ticker.busy();
        let started = Instant::now();
        let result = tokio::time::timeout(self.deadline, body(self.pre.instance_pre(), index, &mut store)).await;
        let duration = started.elapsed();

        let state = store.data();
        let stdout = state.sandbox.stdout();
        let stderr = state.sandbox.stderr();
        logging::forward_output(&self.name, "stdout", &stdout.kept(), stdout.total());
        let stderr_kept = stderr.kept();
        logging::forward_output(&self.name, "stderr", &stderr_kept, stderr.total());
        if state.log.dropped() > 0 {
            tracing::warn!(target: "plugin", plugin = &*self.name, "{} log lines dropped past the per-call cap", state.log.dropped());
        }

        let outcome: Result<R, CallError> = match result {
            Err(_elapsed) => Err(self.deadline_error(export)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(export, &error, &stderr_kept)),
        };
        let audit_outcome = match &outcome {
            Ok(_) => CallOutcome::Ok,
            Err(CallError::Deadline { after, .. }) => CallOutcome::Timeout { after_ms: after.as_millis() as u64 },
            Err(CallError::Crashed { message, .. }) => CallOutcome::Trap { message: message.clone() },
        };
        let link = context.link(permit);
        let mut events = state.sandbox.audit_events(&self.name, export);
        events.push(AuditEvent::PluginCall {
            plugin: self.name.to_string(),
            version: self.manifest.version.clone(),
            component_sha256: self.sha256.clone(),
            export: export.to_owned(),
            args_sha256,
            duration_us: duration.as_micros() as u64,
            outcome: audit_outcome,
            stdout_bytes: stdout.total(),
            stderr_bytes: stderr.total(),
            output_truncated: stdout.truncated() || stderr.truncated(),
            link,
        });
        for event in events {
            self.runtime.audit.record(event);
        }
        outcome
    }

    fn deadline_error(&self, export: &'static str) -> CallError {
        CallError::Deadline { plugin: self.name.to_string(), export, after: self.deadline }
    }

    fn classify(&self, export: &'static str, error: &wasmtime::Error, stderr: &[u8]) -> CallError {
        let trap = error.chain().find_map(|cause| cause.downcast_ref::<wasmtime::Trap>()).copied();
        if trap == Some(wasmtime::Trap::Interrupt) {
            return self.deadline_error(export);
        }
        let mut message = if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            format!("it called exit with status {}", exit.0)
        } else if trap == Some(wasmtime::Trap::StackOverflow) {
            "stack overflow (call stack exhausted)".to_owned()
        } else if format!("{error:#}").contains("forcing trap when growing memory") {
            format!("it exceeded its memory limit of {} MiB", self.memory_limit / (1024 * 1024))
        } else {
            // wasmtime wraps the cause in a multi-line backtrace; the root cause says what happened.
            first_line(&error.root_cause().to_string())
        };
        let said = String::from_utf8_lossy(stderr);
        let tail: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        if !tail.is_empty() {
            let start = tail.len().saturating_sub(3);
            message.push_str("; its stderr ends with: ");
            message.push_str(&tail[start..].join(" | "));
        }
        CallError::Crashed { plugin: self.name.to_string(), export, message }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_owned()
}

/// Calls one export on a fresh instance: instantiate, look up that export alone (the world
/// was type-checked when the plugin was loaded), call it.
macro_rules! export_call {
    ($self:ident, $export:literal, $args:expr, $context:expr, $permit:expr, ($($pty:ty),*) = ($($pval:expr),*) -> $ret:ty) => {{
        $self
            .plugin
            .call($export, &$args, $context, $permit, move |pre, index, store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    let func = instance
                        .get_func(&mut *store, index)
                        .ok_or_else(|| wasmtime::Error::msg(format!("the component has no export `{}`", $export)))?;
                    // SAFETY: the world's bindings (`SubjectPre::new`, `ToolsPre::new`) type-checked
                    // every export against these very types when the plugin was loaded; checking
                    // again here was a tenth of a call.
                    let func = unsafe { wasmtime::component::TypedFunc::<($($pty,)*), ($ret,)>::new_unchecked(func) };
                    let (result,) = func.call_async(&mut *store, ($($pval,)*)).await?;
                    Ok(result)
                })
            })
            .await
    }};
}

/// A subject plugin's typed calls.
#[derive(Clone, Copy)]
pub struct SubjectPlugin<'p> {
    plugin: &'p Plugin,
}

impl<'p> SubjectPlugin<'p> {
    /// The plugin.
    pub fn plugin(&self) -> &'p Plugin {
        self.plugin
    }

    /// `info()`: name, version, invariants, actions, queries, conditions.
    pub async fn info(&self, context: &CallContext) -> Result<types::SubjectInfo, CallError> {
        export_call!(self, "info", (), context, None, () = () -> types::SubjectInfo)
    }

    /// `observe()`: a snapshot of the subject (reads only).
    pub async fn observe(&self, context: &CallContext) -> Result<Result<types::Observation, String>, CallError> {
        export_call!(self, "observe", (), context, None, () = () -> Result<types::Observation, String>)
    }

    /// `check(observation)`: the broken invariants.
    pub async fn check(
        &self,
        context: &CallContext,
        observation: &types::Observation,
    ) -> Result<Vec<types::Violation>, CallError> {
        let args = digestible::observation(observation);
        let observation = observation.clone();
        export_call!(self, "check", args, context, None, (&types::Observation) = (&observation) -> Vec<types::Violation>)
    }

    /// `summarize(observation)`: generic entities for user interfaces.
    pub async fn summarize(
        &self,
        context: &CallContext,
        observation: &types::Observation,
    ) -> Result<Vec<types::EntitySummary>, CallError> {
        let args = digestible::observation(observation);
        let observation = observation.clone();
        export_call!(self, "summarize", args, context, None, (&types::Observation) = (&observation) -> Vec<types::EntitySummary>)
    }

    /// `diagnose(ticket, observation)`: the built-in expert rules.
    pub async fn diagnose(
        &self,
        context: &CallContext,
        ticket: &types::Ticket,
        observation: &types::Observation,
    ) -> Result<Result<types::Diagnosis, String>, CallError> {
        let args = (digestible::ticket(ticket), digestible::observation(observation));
        let (ticket, observation) = (ticket.clone(), observation.clone());
        export_call!(self, "diagnose", args, context, None, (&types::Ticket, &types::Observation) = (&ticket, &observation) -> Result<types::Diagnosis, String>)
    }

    /// `precheck(action, params, observation)`: the action's preconditions, before anything is sent.
    pub async fn precheck(
        &self,
        context: &CallContext,
        action: &str,
        params: &[types::Param],
        observation: &types::Observation,
    ) -> Result<Result<(), types::ActionError>, CallError> {
        let args = (action, digestible::params(params), digestible::observation(observation));
        let (action, params, observation) = (action.to_owned(), params.to_vec(), observation.clone());
        export_call!(self, "precheck", args, context, None, (&str, &[types::Param], &types::Observation) = (&action, &params, &observation) -> Result<(), types::ActionError>)
    }

    /// `execute(action, params)`: the only subject export that may mutate, and only with a permit.
    pub async fn execute(
        &self,
        context: &CallContext,
        permit: &ExecutionPermit,
        action: &str,
        params: &[types::Param],
    ) -> Result<Result<types::ActionOutcome, types::ActionError>, CallError> {
        let args = (action, digestible::params(params));
        let (action, params) = (action.to_owned(), params.to_vec());
        export_call!(self, "execute", args, context, Some(permit), (&str, &[types::Param]) = (&action, &params) -> Result<types::ActionOutcome, types::ActionError>)
    }

    /// `verify(action, params, observation)`: whether the action's post-condition holds.
    pub async fn verify(
        &self,
        context: &CallContext,
        action: &str,
        params: &[types::Param],
        observation: &types::Observation,
    ) -> Result<types::Verdict, CallError> {
        let args = (action, digestible::params(params), digestible::observation(observation));
        let (action, params, observation) = (action.to_owned(), params.to_vec(), observation.clone());
        export_call!(self, "verify", args, context, None, (&str, &[types::Param], &types::Observation) = (&action, &params, &observation) -> types::Verdict)
    }

    /// `reconcile(action, params, started_at_ms)`: did an interrupted execution that started
    /// then take effect? (reads only)
    pub async fn reconcile(
        &self,
        context: &CallContext,
        action: &str,
        params: &[types::Param],
        started_at_ms: u64,
    ) -> Result<types::Reconciliation, CallError> {
        let args = (action, digestible::params(params), started_at_ms);
        let (action, params) = (action.to_owned(), params.to_vec());
        export_call!(self, "reconcile", args, context, None, (&str, &[types::Param], u64) = (&action, &params, started_at_ms) -> types::Reconciliation)
    }

    /// `query(name, params)`: a read-only question; returns JSON text.
    pub async fn query(
        &self,
        context: &CallContext,
        name: &str,
        params: &[types::Param],
    ) -> Result<Result<String, String>, CallError> {
        let args = (name, digestible::params(params));
        let (name, params) = (name.to_owned(), params.to_vec());
        export_call!(self, "query", args, context, None, (&str, &[types::Param]) = (&name, &params) -> Result<String, String>)
    }

    /// `condition(name, params, observation)`: whether a workflow condition holds.
    pub async fn condition(
        &self,
        context: &CallContext,
        name: &str,
        params: &[types::Param],
        observation: &types::Observation,
    ) -> Result<Result<bool, String>, CallError> {
        let args = (name, digestible::params(params), digestible::observation(observation));
        let (name, params, observation) = (name.to_owned(), params.to_vec(), observation.clone());
        export_call!(self, "condition", args, context, None, (&str, &[types::Param], &types::Observation) = (&name, &params, &observation) -> Result<bool, String>)
    }
}

/// A tools plugin's typed calls.
#[derive(Clone, Copy)]
pub struct ToolsPlugin<'p> {
    plugin: &'p Plugin,
}

impl<'p> ToolsPlugin<'p> {
    /// The plugin.
    pub fn plugin(&self) -> &'p Plugin {
        self.plugin
    }

    /// `info()`: the tools offered.
    pub async fn info(&self, context: &CallContext) -> Result<types::ToolsInfo, CallError> {
        export_call!(self, "info", (), context, None, () = () -> types::ToolsInfo)
    }

    /// `invoke(tool, params)`: runs a tool as an action execution (may mutate with the permit).
    pub async fn invoke(
        &self,
        context: &CallContext,
        permit: &ExecutionPermit,
        tool: &str,
        params: &[types::Param],
    ) -> Result<Result<types::ActionOutcome, types::ActionError>, CallError> {
        let args = (tool, digestible::params(params));
        let (tool, params) = (tool.to_owned(), params.to_vec());
        export_call!(self, "invoke", args, context, Some(permit), (&str, &[types::Param]) = (&tool, &params) -> Result<types::ActionOutcome, types::ActionError>)
    }
}

/// Canonical, serialisable views of call arguments, for the audit record's argument digest.
mod digestible {
    use super::types;
    use serde_json::{Value, json};

    pub fn observation(o: &types::Observation) -> Value {
        json!({ "taken_at_ms": o.taken_at_ms, "complete": o.complete, "errors": o.errors, "payload": o.payload })
    }

    pub fn ticket(t: &types::Ticket) -> Value {
        json!({ "id": t.id, "invariant": t.invariant, "entity": t.entity, "message": t.message,
                "opened_at_ms": t.opened_at_ms, "last_seen_ms": t.last_seen_ms, "occurrences": t.occurrences })
    }

    pub fn params(params: &[types::Param]) -> Value {
        Value::Array(params.iter().map(|p| json!({ "name": p.name, "value": format!("{:?}", p.value) })).collect())
    }
}
