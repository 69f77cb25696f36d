//! Workflows: ordered steps of catalogue actions, with dependencies, conditions to wait for between
//! steps, a compensation per step, and either one approval for the whole workflow or the normal
//! approval policy per step.
//!
//! # Definitions
//!
//! A plugin ships its workflows in its `plugin.toml`, so that knowledge of a subject stays with
//! the plugin:
//!
//! ```toml
//! [[workflows]]
//! name = "drain-store"
//! description = "Moves leaders off a store, then removes it"
//! params = [{ name = "store", description = "The store to drain" }]
//! approval = "workflow"            # one approval for every step; or "per-step" (the approval policy)
//!
//! [[workflows.steps]]
//! name = "evict-leaders"
//! action = "evict-leaders"
//! params = { store = "{store}" }   # `{name}` is replaced by the workflow parameter, then typed by the action's schema
//! wait_for = { condition = "store-leaders-at-most", params = { store = "{store}", max = 0 }, timeout_secs = 600 }
//! # compensation = { action = "restore-leaders" }   # default: the catalogue's `undo`, with the step's parameters
//!
//! [[workflows.steps]]
//! name = "offline-store"
//! action = "offline-store"
//! after = ["evict-leaders"]        # default: the previous step (`after = []`: no dependency)
//! params = { store = "{store}" }
//! ```
//!
//! The manifest's shape (names, placeholders, dependencies, cycles, timeouts) is checked when the
//! manifest is parsed ([`check_structure`]); actions, conditions and parameter types are checked
//! against the catalogue when the engine loads the definitions ([`check_against`]). Every problem
//! is named; a definition with any problem cannot be started.
//!
//! # Runs
//!
//! ```text
//!  awaiting-approval ──approve──▶ running ──every step done──▶ completed
//!        │ reject                  │  ▲ resume                    
//!        ▼                         │  └───────── stopped ◀── kill switch (running or compensating)
//!    cancelled ◀── cancel ─────────┤
//!                                  ▼ a step fails
//!                             compensating ──compensations done──▶ failed ──resume──▶ running
//! ```
//!
//! A step is `pending`, `running` (its action, proposed through the executor), `waiting` (its
//! action completed; its condition is checked on each fresh, complete observation taken after the
//! action completed, until it holds or the timeout passes), `done` or `failed`. A step fails when
//! its action is refused, fails, is cancelled, rejected or expires, when its condition cannot be
//! evaluated, or at the timeout. A failed step stops the workflow: steps still running have their
//! pending actions cancelled, then every step whose action took effect is compensated in the
//! reverse order of its effect, one at a time (each compensation is an action proposed through the
//! executor, pre-approved, linked to the step with `compensation: true`).
//!
//! **Resume** after a fix (a failed workflow):
//! - a step whose action took effect and was not undone (no compensation, or the compensation
//!   failed) is not run again: it is `done` if its condition had held, else it waits for its
//!   condition again with a fresh timeout;
//! - every other step (the failed one, steps that were compensated, steps that never ran) is
//!   `pending` again and runs in dependency order, so compensated steps run again before the
//!   step that failed.
//!
//! **Kill switch**: the executor's kill cancels every action that has not started; at its next
//! tick the engine notices, marks each running or compensating workflow `stopped` (a step whose
//! action was cancelled is `pending` again; an action already executing finishes and is taken
//! into account on resume) and starts nothing. A stopped workflow resumes, once the switch is
//! released, where it stopped (a waiting step's timeout starts over).
//!
//! **Approval**: with `approval = "workflow"` a run waits for one human approval when any of its
//! actions or compensations needs approval under the approval policy; each step's action is then
//! proposed with a copy of that decision. With `per-step`, each action follows the policy.
//!
//! Every change of a run or a step is audited (`state-change`, subject `workflow`, id `W-000001`
//! or `W-000001/<step>`) before it is written. The state machine ([`advance`], [`proposed`],
//! [`approve`], [`reject`], [`cancel`], [`resume`]) is pure; [`WorkflowEngine`] does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::executor::{Executor, Proposal, ProposalParams, ProposeError};
use super::ledger::{ActionStatus, Decision, StoredParam, WorkflowLink};
use super::params;
use super::policy::{ApprovalPolicy, Risk};
use super::workflow_store::WorkflowStore;
use crate::audit::{AuditEvent, AuditSink};
use crate::monitor::SharedObservation;
use crate::runtime::bindings::types::{self, ActionSpec, ConditionSpec, ParamSpec};
use crate::runtime::{CallContext, Plugin};

/// The longest a step may wait for its condition: a week.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

/// Who the engine's own changes are recorded as.
pub const ENGINE: &str = "workflow-engine";

// ───────────────────────────── definitions ─────────────────────────────

/// How a workflow is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// One human approval for the whole workflow (when any step needs one by policy).
    #[default]
    Workflow,
    /// Each step's action follows the approval policy.
    PerStep,
}

impl ApprovalMode {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Workflow => "workflow",
            ApprovalMode::PerStep => "per-step",
        }
    }
}

/// One parameter of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowParam {
    /// Name, used as `{name}` in step parameters.
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
}

/// A condition to wait for after a step's action completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitDef {
    /// A condition of the subject plugin.
    pub condition: String,
    /// Its parameters (string values may hold `{name}` placeholders).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// The step fails when the condition has not held within this many seconds.
    pub timeout_secs: u64,
}

/// The action that undoes a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensationDef {
    /// The action.
    pub action: String,
    /// Its parameters; the step's own parameters when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, Value>>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Name, unique in the workflow.
    pub name: String,
    /// The catalogue action it runs.
    pub action: String,
    /// The action's parameters (string values may hold `{name}` placeholders).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// The steps that must be done first; the previous step when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// A condition that must hold before the step is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitDef>,
    /// The undo; the catalogue's `undo` of the action (same parameters) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<CompensationDef>,
}

/// A workflow definition (`[[workflows]]` in `plugin.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    /// Name (lower-case letters, digits, dashes).
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Vec<WorkflowParam>,
    /// How it is approved.
    #[serde(default)]
    pub approval: ApprovalMode,
    /// Its steps, in order.
    #[serde(default)]
    pub steps: Vec<StepDef>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `{name}` placeholders of a text, in order.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if is_placeholder_name(name) {
            out.push(name.to_owned());
            rest = &after[close + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Replaces the `{name}` placeholders of a text with the values given; others stay as written.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_placeholder_name(&after[..close]) && values.contains_key(&after[..close]) => {
                out.push_str(&values[&after[..close]]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The steps each step depends on, by index (unknown names left out).
pub fn dependencies(def: &WorkflowDef) -> Vec<Vec<usize>> {
    let index: BTreeMap<&str, usize> = def.steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    def.steps
        .iter()
        .enumerate()
        .map(|(i, step)| match &step.after {
            None if i == 0 => vec![],
            None => vec![i - 1],
            Some(names) => names.iter().filter_map(|n| index.get(n.as_str()).copied()).collect(),
        })
        .collect()
}

/// A cycle among the steps' dependencies, as step names (the first repeated at the end).
fn find_cycle(def: &WorkflowDef) -> Option<Vec<String>> {
    let deps = dependencies(def);
    // 0: unseen, 1: on the path, 2: finished.
    let mut mark = vec![0u8; deps.len()];
    fn visit(i: usize, deps: &[Vec<usize>], mark: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        mark[i] = 1;
        path.push(i);
        for &j in &deps[i] {
            if mark[j] == 1 {
                let start = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if mark[j] == 0
                && let Some(cycle) = visit(j, deps, mark, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    for i in 0..deps.len() {
        if mark[i] == 0
            && let Some(cycle) = visit(i, &deps, &mut mark, &mut Vec::new())
        {
            // Dependencies point backwards in time: show the cycle in the order the steps would run.
            return Some(cycle.into_iter().rev().map(|i| def.steps[i].name.clone()).collect());
        }
    }
    None
}

fn check_placeholders(
    what: &str,
    values: &BTreeMap<String, Value>,
    declared: &BTreeSet<&str>,
    problems: &mut Vec<String>,
) {
    for (key, value) in values {
        let Value::String(text) = value else { continue };
        for name in placeholders(text) {
            if !declared.contains(name.as_str()) {
                let known = if declared.is_empty() {
                    "it declares none".to_owned()
                } else {
                    format!("it declares: {}", declared.iter().copied().collect::<Vec<_>>().join(", "))
                };
                problems.push(format!(
                    "{what}: `{key}` uses `{{{name}}}`, which is not a parameter of the workflow ({known})"
                ));
            }
        }
    }
}

/// Checks a definition's shape, without the catalogue: names, parameters, placeholders,
/// dependencies and cycles, timeouts. Every problem, one line each.
pub fn check_structure(def: &WorkflowDef) -> Vec<String> {
    let w = format!("workflow `{}`", def.name);
    let mut problems = Vec::new();
    if !valid_name(&def.name) {
        problems.push(format!(
            "{w}: the name must be 1 to 64 lower-case letters, digits or dashes, starting with a letter"
        ));
    }
    let mut declared = BTreeSet::new();
    for p in &def.params {
        if !is_placeholder_name(&p.name) {
            problems.push(format!("{w}: parameter name `{}` must be letters, digits, `-` or `_`", p.name));
        }
        if !declared.insert(p.name.as_str()) {
            problems.push(format!("{w}: parameter `{}` is declared more than once", p.name));
        }
    }
    if def.steps.is_empty() {
        problems.push(format!("{w} has no steps (add [[workflows.steps]])"));
    }
    let mut names = BTreeSet::new();
    for step in &def.steps {
        if !valid_name(&step.name) {
            problems.push(format!(
                "{w}: step name `{}` must be 1 to 64 lower-case letters, digits or dashes, starting with a letter",
                step.name
            ));
        }
        if !names.insert(step.name.as_str()) {
            problems.push(format!("{w}: step `{}` is named more than once", step.name));
        }
    }
    for step in &def.steps {
        let s = format!("{w} step `{}`", step.name);
        if step.action.trim().is_empty() {
            problems.push(format!("{s}: `action` is empty"));
        }
        for dep in step.after.iter().flatten() {
            if dep == &step.name {
                problems.push(format!("{s} is after itself"));
            } else if !names.contains(dep.as_str()) {
                problems.push(format!("{s} is after `{dep}`, which is not a step of the workflow"));
            }
        }
        check_placeholders(&format!("{s} params"), &step.params, &declared, &mut problems);
        if let Some(wait) = &step.wait_for {
            if wait.condition.trim().is_empty() {
                problems.push(format!("{s}: wait_for.condition is empty"));
            }
            if wait.timeout_secs == 0 || wait.timeout_secs > MAX_TIMEOUT_SECS {
                problems
                    .push(format!("{s}: wait_for.timeout_secs = {} must be 1–{MAX_TIMEOUT_SECS}", wait.timeout_secs));
            }
            check_placeholders(&format!("{s} wait_for.params"), &wait.params, &declared, &mut problems);
        }
        if let Some(comp) = &step.compensation {
            if comp.action.trim().is_empty() {
                problems.push(format!("{s}: compensation.action is empty"));
            }
            if let Some(p) = &comp.params {
                check_placeholders(&format!("{s} compensation.params"), p, &declared, &mut problems);
            }
        }
    }
    if let Some(cycle) = find_cycle(def) {
        problems.push(format!("{w}: steps depend on each other in a cycle: {}", cycle.join(" → ")));
    }
    problems
}

/// What definitions are checked against: the actions (subject and tools) and the subject's
/// conditions.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// Actions by name.
    pub actions: BTreeMap<String, ActionSpec>,
    /// Conditions by name.
    pub conditions: BTreeMap<String, ConditionSpec>,
}

/// A condition's parameters as an action spec, so the same checks apply.
fn condition_as_action(c: &ConditionSpec) -> ActionSpec {
    ActionSpec {
        name: c.name.clone(),
        description: c.description.clone(),
        risk: types::Risk::Low,
        params: c.params.clone(),
        entity_param: None,
        undo: None,
        verify_window_secs: 0,
    }
}

/// The compensation of a step: explicit, else the catalogue's undo with the step's parameters.
fn compensation_of<'d>(step: &'d StepDef, catalogue: &Catalogue) -> Option<(String, &'d BTreeMap<String, Value>)> {
    match &step.compensation {
        Some(c) => Some((c.action.clone(), c.params.as_ref().unwrap_or(&step.params))),
        None => catalogue.actions.get(&step.action).and_then(|a| a.undo.clone()).map(|undo| (undo, &step.params)),
    }
}

/// Checks literal values (no placeholders) against a schema, and that every name is known and
/// every required parameter given.
fn check_params(what: &str, spec: &[ParamSpec], values: &BTreeMap<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in values {
        let Some(param) = spec.iter().find(|p| &p.name == name) else {
            let known: Vec<&str> = spec.iter().map(|p| p.name.as_str()).collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            problems.push(format!("{what}: `{name}` is not one of its parameters (it takes: {known})"));
            continue;
        };
        let typed = match value {
            Value::String(text) if !placeholders(text).is_empty() => continue,
            Value::String(text) => params::text_to_value(param, text),
            other => Ok(other.clone()),
        };
        if let Err(e) = typed.and_then(|v| params::check_value(param, &v)) {
            problems.push(format!("{what}: `{name}` {e}"));
        }
    }
    for param in spec {
        if param.required && param.default.is_none() && !values.contains_key(&param.name) {
            problems.push(format!("{what}: `{}` is required ({})", param.name, param.description));
        }
    }
    problems
}

/// Checks a definition against the catalogue: its actions, conditions and compensations exist,
/// and their literal parameters fit their schemas. Includes [`check_structure`].
pub fn check_against(def: &WorkflowDef, catalogue: &Catalogue) -> Vec<String> {
    let mut problems = check_structure(def);
    let w = format!("workflow `{}`", def.name);
    for step in &def.steps {
        let s = format!("{w} step `{}`", step.name);
        match catalogue.actions.get(&step.action) {
            None => problems.push(format!("{s}: no action `{}` in the catalogue", step.action)),
            Some(spec) => {
                problems.extend(check_params(&format!("{s}: action `{}`", spec.name), &spec.params, &step.params))
            }
        }
        if let Some(wait) = &step.wait_for {
            match catalogue.conditions.get(&wait.condition) {
                None => {
                    let known: Vec<&str> = catalogue.conditions.keys().map(String::as_str).collect();
                    problems.push(format!(
                        "{s}: no condition `{}` (the subject offers: {})",
                        wait.condition,
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ));
                }
                Some(c) => {
                    problems.extend(check_params(&format!("{s}: condition `{}`", c.name), &c.params, &wait.params))
                }
            }
        }
        if let Some((action, values)) = compensation_of(step, catalogue) {
            match catalogue.actions.get(&action) {
                None if step.compensation.is_some() => {
                    problems.push(format!("{s}: no compensation action `{action}` in the catalogue"))
                }
                None => problems.push(format!(
                    "{s}: the catalogue's undo of `{}` is `{action}`, which is not in the catalogue",
                    step.action
                )),
                Some(spec) => {
                    problems.extend(check_params(&format!("{s}: compensation `{action}`"), &spec.params, values))
                }
            }
        }
    }
    problems
}

/// Substitutes the workflow parameters into values and types them by the schema.
fn resolve_params(
    what: &str,
    spec: &ActionSpec,
    values: &BTreeMap<String, Value>,
    given: &BTreeMap<String, String>,
) -> Result<Vec<StoredParam>, Vec<String>> {
    let mut problems = Vec::new();
    let mut list = Vec::new();
    for (name, value) in values {
        let value = match (value, spec.params.iter().find(|p| &p.name == name)) {
            (Value::String(text), Some(param)) => match params::text_to_value(param, &substitute(text, given)) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{what}: `{name}` {e}"));
                    continue;
                }
            },
            (Value::String(text), None) => Value::String(substitute(text, given)),
            (other, _) => other.clone(),
        };
        list.push((name.clone(), value));
    }
    match params::validate(spec, &list) {
        Ok(typed) if problems.is_empty() => Ok(params::to_stored(&typed)),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more.into_iter().map(|p| format!("{what}: {p}")));
            Err(problems)
        }
    }
}

/// Builds the steps of a new run: the workflow parameters substituted and every value typed.
/// Every problem at once; nothing is stored on error.
pub fn resolve(
    def: &WorkflowDef,
    given: &BTreeMap<String, String>,
    catalogue: &Catalogue,
) -> Result<Vec<StepRun>, Vec<String>> {
    let mut problems = Vec::new();
    let declared: BTreeSet<&str> = def.params.iter().map(|p| p.name.as_str()).collect();
    for name in given.keys() {
        if !declared.contains(name.as_str()) {
            let known = declared.iter().copied().collect::<Vec<_>>().join(", ");
            problems.push(format!("`{name}` is not a parameter of workflow `{}` (it takes: {known})", def.name));
        }
    }
    for p in &def.params {
        if !given.contains_key(&p.name) {
            problems.push(format!("parameter `{}` is required ({})", p.name, p.description));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let deps = dependencies(def);
    let mut steps = Vec::new();
    for (i, step) in def.steps.iter().enumerate() {
        let s = format!("step `{}`", step.name);
        let action = match catalogue.actions.get(&step.action) {
            None => {
                problems.push(format!("{s}: no action `{}` in the catalogue", step.action));
                None
            }
            Some(spec) => match resolve_params(&s, spec, &step.params, given) {
                Ok(p) => Some(ResolvedAction { action: spec.name.clone(), params: p }),
                Err(e) => {
                    problems.extend(e);
                    None
                }
            },
        };
        let wait_for = match &step.wait_for {
            None => None,
            Some(wait) => match catalogue.conditions.get(&wait.condition) {
                None => {
                    problems.push(format!("{s}: no condition `{}`", wait.condition));
                    None
                }
                Some(c) => match resolve_params(
                    &format!("{s} condition `{}`", c.name),
                    &condition_as_action(c),
                    &wait.params,
                    given,
                ) {
                    Ok(p) => {
                        Some(ResolvedWait { condition: c.name.clone(), params: p, timeout_secs: wait.timeout_secs })
                    }
                    Err(e) => {
                        problems.extend(e);
                        None
                    }
                },
            },
        };
        let compensation = match compensation_of(step, catalogue) {
            None => None,
            Some((name, values)) => match catalogue.actions.get(&name) {
                None => {
                    problems.push(format!("{s}: no compensation action `{name}` in the catalogue"));
                    None
                }
                Some(spec) => match resolve_params(&format!("{s} compensation `{name}`"), spec, values, given) {
                    Ok(p) => Some(ResolvedAction { action: name, params: p }),
                    Err(e) => {
                        problems.extend(e);
                        None
                    }
                },
            },
        };
        if let Some(action) = action {
            steps.push(StepRun {
                name: step.name.clone(),
                action,
                after: deps[i].clone(),
                wait_for,
                compensation,
                state: StepState::Pending,
                applied: false,
                satisfied: false,
                applied_seq: 0,
                actions: vec![],
                started_ms: None,
                finished_ms: None,
                note: None,
            });
        }
    }
    if problems.is_empty() { Ok(steps) } else { Err(problems) }
}

// ───────────────────────────── runs ─────────────────────────────

/// Where a workflow run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkflowStatus {
    /// Waits for one human approval.
    AwaitingApproval,
    /// Steps run.
    Running,
    /// A step failed; the steps that took effect are being undone.
    Compensating,
    /// Every step done.
    Completed,
    /// A step failed and compensation is over; may be resumed.
    Failed,
    /// Stopped by the kill switch; may be resumed once it is released.
    Stopped,
    /// Cancelled or rejected; final.
    Cancelled,
}

/// Every status.
pub const ALL_WORKFLOW_STATUSES: [WorkflowStatus; 7] = [
    WorkflowStatus::AwaitingApproval,
    WorkflowStatus::Running,
    WorkflowStatus::Compensating,
    WorkflowStatus::Completed,
    WorkflowStatus::Failed,
    WorkflowStatus::Stopped,
    WorkflowStatus::Cancelled,
];

impl WorkflowStatus {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::AwaitingApproval => "awaiting-approval",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Compensating => "compensating",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Stopped => "stopped",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(text: &str) -> Result<WorkflowStatus, String> {
        ALL_WORKFLOW_STATUSES.iter().copied().find(|s| s.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = ALL_WORKFLOW_STATUSES.iter().map(|s| s.as_str()).collect();
            format!("unknown workflow status `{text}` (one of {})", names.join(", "))
        })
    }

    /// Whether nothing more happens to the run without a human (final, failed or stopped).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Stopped | WorkflowStatus::Cancelled
        )
    }
}

impl std::fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Its action was proposed and has not finished.
    Running {
        /// The action.
        action: String,
    },
    /// Its action completed; waits for its condition.
    Waiting {
        /// Since when, unix ms (the timeout counts from here).
        since_ms: u64,
    },
    /// Done.
    Done,
    /// Failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Its compensation was proposed and has not finished.
    Compensating {
        /// The compensation action.
        action: String,
    },
    /// Undone.
    Compensated,
    /// The compensation was refused or failed: the step's effect is still in place.
    CompensationFailed {
        /// Why.
        reason: String,
    },
}

impl StepState {
    /// The kebab-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running { .. } => "running",
            StepState::Waiting { .. } => "waiting",
            StepState::Done => "done",
            StepState::Failed { .. } => "failed",
            StepState::Compensating { .. } => "compensating",
            StepState::Compensated => "compensated",
            StepState::CompensationFailed { .. } => "compensation-failed",
        }
    }

    /// The name with the action it watches.
    pub fn describe(&self) -> String {
        match self {
            StepState::Running { action } | StepState::Compensating { action } => {
                format!("{} ({action})", self.as_str())
            }
            other => other.as_str().to_owned(),
        }
    }
}

/// An action with its typed parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedAction {
    /// The action name.
    pub action: String,
    /// Its parameters, typed.
    pub params: Vec<StoredParam>,
}

impl ResolvedAction {
    /// `action k=v …`.
    pub fn text(&self) -> String {
        format!("{} {}", self.action, params_text(&self.params)).trim_end().to_owned()
    }
}

/// A condition with its typed parameters and timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedWait {
    /// The condition name.
    pub condition: String,
    /// Its parameters, typed.
    pub params: Vec<StoredParam>,
    /// Seconds.
    pub timeout_secs: u64,
}

impl ResolvedWait {
    /// `condition k=v …`.
    pub fn text(&self) -> String {
        format!("{} {}", self.condition, params_text(&self.params)).trim_end().to_owned()
    }
}

fn params_text(params: &[StoredParam]) -> String {
    params
        .iter()
        .map(|p| match &p.value {
            Value::String(s) => format!("{}={s}", p.name),
            v => format!("{}={v}", p.name),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One step of a run: what it does (resolved when the run started, so a plugin upgrade does not
/// change a run) and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    /// Name.
    pub name: String,
    /// Its action.
    pub action: ResolvedAction,
    /// The steps that must be done first, by index.
    pub after: Vec<usize>,
    /// The condition to wait for.
    pub wait_for: Option<ResolvedWait>,
    /// Its undo.
    pub compensation: Option<ResolvedAction>,
    /// Where it stands.
    pub state: StepState,
    /// Whether its action took effect and was not undone.
    pub applied: bool,
    /// Whether it was done (action completed and condition held) and not undone since.
    pub satisfied: bool,
    /// The order in which steps took effect (compensation runs in reverse).
    pub applied_seq: u32,
    /// Every action proposed for it (forward and compensation), oldest first.
    pub actions: Vec<String>,
    /// When it first started, unix ms.
    pub started_ms: Option<u64>,
    /// When it was last done or failed, unix ms.
    pub finished_ms: Option<u64>,
    /// The latest word on it that is not a change (what the wait waits for, a deferred proposal).
    pub note: Option<String>,
}

/// One entry of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowEvent {
    /// Unix ms.
    pub at_ms: u64,
    /// The step, or none for the run itself.
    pub step: Option<String>,
    /// State before (none when created).
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
}

/// A run of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// `W-000007`.
    pub id: String,
    /// The definition's name.
    pub definition: String,
    /// The plugin whose manifest defines it.
    pub plugin: String,
    /// The parameters given.
    pub params: BTreeMap<String, String>,
    /// How it is approved.
    pub approval_mode: ApprovalMode,
    /// Whether it needs (or needed) one human approval.
    pub needs_approval: bool,
    /// The human decision on the whole workflow.
    pub approval: Option<Decision>,
    /// The ticket it serves.
    pub ticket: Option<String>,
    /// Who started it.
    pub started_by: String,
    /// Where it stands.
    pub status: WorkflowStatus,
    /// What it was doing when the kill switch stopped it.
    pub stopped_from: Option<WorkflowStatus>,
    /// The step whose failure is being (or was) compensated.
    pub failed_step: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Unix ms.
    pub created_ms: u64,
    /// Last change, unix ms.
    pub updated_ms: u64,
    /// When it completed, failed or was cancelled, unix ms.
    pub finished_ms: Option<u64>,
    /// Its steps.
    pub steps: Vec<StepRun>,
    /// The last `applied_seq` handed out.
    pub seq: u32,
    /// Every change.
    pub history: Vec<WorkflowEvent>,
}

impl WorkflowRun {
    /// `k=v …` of the parameters.
    pub fn params_text(&self) -> String {
        self.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }

    /// Every action id referenced by a step that is running or compensating.
    pub fn watched_actions(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match &s.state {
                StepState::Running { action } | StepState::Compensating { action } => Some(action.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What the engine saw of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionFact {
    /// Its status.
    pub status: ActionStatus,
    /// Its last error, outcome or history reason.
    pub detail: String,
}

/// Whether a waiting step's condition holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionFact {
    /// It holds on a fresh, complete observation taken after the step began to wait.
    Holds,
    /// Not yet, or not known yet (no such observation, a call that failed): why.
    NotYet(String),
    /// It cannot be evaluated (unknown condition, bad parameters): the step fails.
    Error(String),
}

/// What [`advance`] needs to know of the world.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The kill switch is on.
    pub kill_switch: bool,
    /// The actions the run watches, by id (a missing one is gone).
    pub actions: BTreeMap<String, ActionFact>,
    /// The conditions of waiting steps, by step index.
    pub conditions: BTreeMap<usize, ConditionFact>,
}

/// Something the engine must do for a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Propose the step's action (or its compensation) through the executor, then report with
    /// [`proposed`].
    Propose {
        /// Step index.
        step: usize,
        /// The compensation rather than the action.
        compensation: bool,
    },
    /// Cancel an action that has not started.
    Cancel {
        /// Action id.
        action: String,
        /// Why.
        reason: String,
    },
}

/// The result of proposing a step's action.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposed {
    /// Stored as this action.
    Action(String),
    /// Refused for good (unknown action, invalid parameters, a precondition): the step fails.
    Refused(String),
    /// Not now (no complete observation, a storage error): tried again at the next tick.
    Deferred(String),
}

/// A run's next state, the changes to audit, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    /// The run after the change.
    pub run: WorkflowRun,
    /// The changes, in order (already appended to the run's history).
    pub events: Vec<WorkflowEvent>,
    /// What the engine must do next.
    pub commands: Vec<Command>,
}

struct Draft {
    run: WorkflowRun,
    events: Vec<WorkflowEvent>,
    commands: Vec<Command>,
    now_ms: u64,
    actor: String,
}

impl Draft {
    fn new(run: &WorkflowRun, now_ms: u64, actor: &str) -> Draft {
        Draft { run: run.clone(), events: vec![], commands: vec![], now_ms, actor: actor.into() }
    }

    fn status(&mut self, to: WorkflowStatus, reason: String) {
        let from = self.run.status;
        if from == to {
            return;
        }
        self.run.status = to;
        if matches!(to, WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled) {
            self.run.finished_ms = Some(self.now_ms);
        } else {
            self.run.finished_ms = None;
        }
        self.events.push(WorkflowEvent {
            at_ms: self.now_ms,
            step: None,
            from: Some(from.as_str().into()),
            to: to.as_str().into(),
            reason,
            actor: self.actor.clone(),
        });
    }

    fn step(&mut self, index: usize, to: StepState, reason: String) {
        let step = &mut self.run.steps[index];
        let from = std::mem::replace(&mut step.state, to.clone());
        match &to {
            StepState::Running { .. } if step.started_ms.is_none() => step.started_ms = Some(self.now_ms),
            StepState::Done | StepState::Failed { .. } => step.finished_ms = Some(self.now_ms),
            _ => {}
        }
        step.note = None;
        let reason = match &to {
            StepState::Failed { reason: why } | StepState::CompensationFailed { reason: why } if reason.is_empty() => {
                why.clone()
            }
            _ => reason,
        };
        self.events.push(WorkflowEvent {
            at_ms: self.now_ms,
            step: Some(step.name.clone()),
            from: Some(from.describe()),
            to: to.describe(),
            reason,
            actor: self.actor.clone(),
        });
    }

    fn note(&mut self, index: usize, note: String) {
        self.run.steps[index].note = Some(note);
    }

    fn finish(mut self) -> Advance {
        if !self.events.is_empty() {
            self.run.updated_ms = self.now_ms;
            self.run.history.extend(self.events.iter().cloned());
        }
        Advance { run: self.run, events: self.events, commands: self.commands }
    }
}

/// A new run. With `needs_approval` (and `approval = "workflow"`) it waits for one approval;
/// otherwise it runs at the next tick.
#[allow(clippy::too_many_arguments)]
pub fn new_run(
    id: &str,
    def: &WorkflowDef,
    plugin: &str,
    params: BTreeMap<String, String>,
    steps: Vec<StepRun>,
    needs_approval: bool,
    ticket: Option<String>,
    by: &str,
    now_ms: u64,
) -> Advance {
    let needs_approval = needs_approval && def.approval == ApprovalMode::Workflow;
    let status = if needs_approval { WorkflowStatus::AwaitingApproval } else { WorkflowStatus::Running };
    let reason = match (def.approval, needs_approval) {
        (ApprovalMode::Workflow, true) => "started; one approval covers every step".to_owned(),
        (ApprovalMode::Workflow, false) => "started; no step needs approval".to_owned(),
        (ApprovalMode::PerStep, _) => "started; each step follows the approval policy".to_owned(),
    };
    let event =
        WorkflowEvent { at_ms: now_ms, step: None, from: None, to: status.as_str().into(), reason, actor: by.into() };
    let run = WorkflowRun {
        id: id.into(),
        definition: def.name.clone(),
        plugin: plugin.into(),
        params,
        approval_mode: def.approval,
        needs_approval,
        approval: None,
        ticket,
        started_by: by.into(),
        status,
        stopped_from: None,
        failed_step: None,
        failure: None,
        created_ms: now_ms,
        updated_ms: now_ms,
        finished_ms: None,
        steps,
        seq: 0,
        history: vec![event.clone()],
    };
    Advance { run, events: vec![event], commands: vec![] }
}

fn failed(status: ActionStatus) -> bool {
    matches!(status, ActionStatus::Failed | ActionStatus::Cancelled | ActionStatus::Rejected | ActionStatus::Expired)
}

/// Looks at the actions of running and compensating steps.
fn settle_actions(d: &mut Draft, facts: &Facts) {
    let compensating_run = d.run.status == WorkflowStatus::Compensating;
    for i in 0..d.run.steps.len() {
        match d.run.steps[i].state.clone() {
            StepState::Running { action } => {
                let Some(fact) = facts.actions.get(&action) else {
                    d.step(i, StepState::Failed { reason: format!("action {action} is gone") }, String::new());
                    continue;
                };
                match fact.status {
                    ActionStatus::Completed => {
                        d.run.seq += 1;
                        let step = &mut d.run.steps[i];
                        step.applied = true;
                        step.applied_seq = d.run.seq;
                        match (&step.wait_for, compensating_run) {
                            (None, _) => {
                                step.satisfied = true;
                                d.step(i, StepState::Done, format!("action {action} completed: {}", fact.detail));
                            }
                            (Some(wait), false) => {
                                let reason = format!(
                                    "action {action} completed; waiting up to {} s for {}",
                                    wait.timeout_secs,
                                    wait.text()
                                );
                                d.step(i, StepState::Waiting { since_ms: d.now_ms }, reason);
                            }
                            (Some(_), true) => d.step(
                                i,
                                StepState::Failed {
                                    reason: format!(
                                        "interrupted: action {action} completed after the workflow began to fail"
                                    ),
                                },
                                String::new(),
                            ),
                        }
                    }
                    ActionStatus::Cancelled if facts.kill_switch => {
                        d.step(i, StepState::Pending, format!("action {action} cancelled by the kill switch"))
                    }
                    status if failed(status) && compensating_run => {
                        d.step(i, StepState::Pending, format!("action {action} {status}; not run"))
                    }
                    status if failed(status) => d.step(
                        i,
                        StepState::Failed { reason: format!("action {action} {status}: {}", fact.detail) },
                        String::new(),
                    ),
                    _ => {}
                }
            }
            StepState::Compensating { action } => {
                let fact = facts.actions.get(&action);
                match fact.map(|f| f.status) {
                    Some(ActionStatus::Completed) => {
                        let step = &mut d.run.steps[i];
                        step.applied = false;
                        step.satisfied = false;
                        let detail = fact.map(|f| f.detail.clone()).unwrap_or_default();
                        d.step(i, StepState::Compensated, format!("compensation {action} completed: {detail}"));
                    }
                    Some(ActionStatus::Cancelled) if facts.kill_switch => {
                        let back = if d.run.steps[i].satisfied {
                            StepState::Done
                        } else {
                            StepState::Failed { reason: "its condition had not held".into() }
                        };
                        d.step(i, back, format!("compensation {action} cancelled by the kill switch"));
                    }
                    Some(status) if failed(status) => {
                        let detail = fact.map(|f| f.detail.clone()).unwrap_or_default();
                        d.step(
                            i,
                            StepState::CompensationFailed {
                                reason: format!("compensation {action} {status}: {detail}"),
                            },
                            String::new(),
                        );
                    }
                    None => d.step(
                        i,
                        StepState::CompensationFailed { reason: format!("compensation {action} is gone") },
                        String::new(),
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Looks at the conditions of waiting steps (running workflows only).
fn settle_waits(d: &mut Draft, facts: &Facts) {
    for i in 0..d.run.steps.len() {
        let StepState::Waiting { since_ms } = d.run.steps[i].state else { continue };
        let Some(wait) = d.run.steps[i].wait_for.clone() else {
            d.run.steps[i].satisfied = true;
            d.step(i, StepState::Done, "nothing to wait for".into());
            continue;
        };
        let fact = facts.conditions.get(&i).cloned().unwrap_or(ConditionFact::NotYet("not evaluated".into()));
        match fact {
            ConditionFact::Holds => {
                d.run.steps[i].satisfied = true;
                d.step(i, StepState::Done, format!("{} holds", wait.text()));
            }
            ConditionFact::Error(e) => d.step(
                i,
                StepState::Failed { reason: format!("{} cannot be evaluated: {e}", wait.text()) },
                String::new(),
            ),
            ConditionFact::NotYet(why) if d.now_ms >= since_ms + wait.timeout_secs * 1000 => d.step(
                i,
                StepState::Failed {
                    reason: format!("timed out after {} s waiting for {}: {why}", wait.timeout_secs, wait.text()),
                },
                String::new(),
            ),
            ConditionFact::NotYet(why) => d.note(i, format!("waiting for {}: {why}", wait.text())),
        }
    }
}

/// Cancels the not-yet-started actions of running steps; whether any step still runs.
fn cancel_running(d: &mut Draft, facts: &Facts, reason: &str, back_to_pending: bool) -> bool {
    let mut still = false;
    for i in 0..d.run.steps.len() {
        let StepState::Running { action } = d.run.steps[i].state.clone() else { continue };
        match facts.actions.get(&action).map(|f| f.status) {
            Some(ActionStatus::Executing) => still = true,
            Some(status) if !status.is_final() => {
                d.commands.push(Command::Cancel { action: action.clone(), reason: reason.into() });
                if back_to_pending {
                    d.step(i, StepState::Pending, format!("action {action} cancelled: {reason}"));
                } else {
                    still = true;
                }
            }
            _ => {}
        }
    }
    still
}

fn stop(d: &mut Draft, facts: &Facts) {
    cancel_running(d, facts, "kill switch", true);
    for i in 0..d.run.steps.len() {
        let StepState::Compensating { action } = d.run.steps[i].state.clone() else { continue };
        if let Some(status) = facts.actions.get(&action).map(|f| f.status)
            && !status.is_final()
            && status != ActionStatus::Executing
        {
            d.commands.push(Command::Cancel { action: action.clone(), reason: "kill switch".into() });
            let back = if d.run.steps[i].satisfied {
                StepState::Done
            } else {
                StepState::Failed { reason: "its condition had not held".into() }
            };
            d.step(i, back, format!("compensation {action} cancelled by the kill switch"));
        }
    }
    d.run.stopped_from = Some(d.run.status);
    d.status(WorkflowStatus::Stopped, "the kill switch is on: no further step runs".into());
}

fn compensate(d: &mut Draft, facts: &Facts) {
    let failed_step = d.run.failed_step.clone().unwrap_or_default();
    for i in 0..d.run.steps.len() {
        if matches!(d.run.steps[i].state, StepState::Waiting { .. }) {
            d.step(i, StepState::Failed { reason: format!("interrupted: step `{failed_step}` failed") }, String::new());
        }
    }
    if cancel_running(d, facts, &format!("step `{failed_step}` of workflow {} failed", d.run.id), false) {
        return;
    }
    if d.run.steps.iter().any(|s| matches!(s.state, StepState::Running { .. } | StepState::Compensating { .. })) {
        return;
    }
    let next = d
        .run
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.applied && s.compensation.is_some() && matches!(s.state, StepState::Done | StepState::Failed { .. })
        })
        .max_by_key(|(_, s)| s.applied_seq)
        .map(|(i, _)| i);
    if let Some(step) = next {
        d.commands.push(Command::Propose { step, compensation: true });
        return;
    }
    let names = |f: &dyn Fn(&StepRun) -> bool| -> String {
        d.run.steps.iter().filter(|s| f(s)).map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let compensated = names(&|s| s.state == StepState::Compensated);
    let left = names(&|s| s.applied && s.compensation.is_none());
    let broken = names(&|s| matches!(s.state, StepState::CompensationFailed { .. }));
    let mut reason = d.run.failure.clone().unwrap_or_else(|| format!("step `{failed_step}` failed"));
    for (label, list) in
        [("compensated", compensated), ("left in place (no compensation)", left), ("compensation failed", broken)]
    {
        if !list.is_empty() {
            reason.push_str(&format!("; {label}: {list}"));
        }
    }
    d.status(WorkflowStatus::Failed, reason);
}

/// One step of the state machine for a running or compensating run: looks at its actions and
/// conditions, stops it under the kill switch, fails it when a step failed, compensates, completes
/// it, or asks for the next ready steps' actions. Other runs are returned unchanged.
pub fn advance(run: &WorkflowRun, facts: &Facts, now_ms: u64) -> Advance {
    let mut d = Draft::new(run, now_ms, ENGINE);
    if !matches!(run.status, WorkflowStatus::Running | WorkflowStatus::Compensating) {
        return d.finish();
    }
    settle_actions(&mut d, facts);
    if facts.kill_switch {
        stop(&mut d, facts);
        return d.finish();
    }
    if d.run.status == WorkflowStatus::Running {
        settle_waits(&mut d, facts);
        let first_failed = d.run.steps.iter().find_map(|s| match &s.state {
            StepState::Failed { reason } => Some((s.name.clone(), reason.clone())),
            _ => None,
        });
        if let Some((name, reason)) = first_failed {
            let failure = format!("step `{name}` failed: {reason}");
            d.run.failed_step = Some(name);
            d.run.failure = Some(failure.clone());
            d.status(WorkflowStatus::Compensating, format!("{failure}; undoing the steps that took effect"));
        }
    }
    if d.run.status == WorkflowStatus::Compensating {
        compensate(&mut d, facts);
        return d.finish();
    }
    if d.run.steps.iter().all(|s| s.state == StepState::Done) {
        d.status(WorkflowStatus::Completed, "every step is done".into());
        return d.finish();
    }
    for i in 0..d.run.steps.len() {
        let step = &d.run.steps[i];
        if step.state == StepState::Pending && step.after.iter().all(|&j| d.run.steps[j].state == StepState::Done) {
            d.commands.push(Command::Propose { step: i, compensation: false });
        }
    }
    d.finish()
}

/// Records the result of proposing a step's action (or compensation).
pub fn proposed(run: &WorkflowRun, step: usize, compensation: bool, result: Proposed, now_ms: u64) -> Advance {
    let mut d = Draft::new(run, now_ms, ENGINE);
    if step >= d.run.steps.len() {
        return d.finish();
    }
    let what = if compensation { "compensation" } else { "action" };
    match result {
        Proposed::Action(id) => {
            d.run.steps[step].actions.push(id.clone());
            let resolved = if compensation { d.run.steps[step].compensation.clone() } else { None };
            let text = resolved.unwrap_or_else(|| d.run.steps[step].action.clone()).text();
            if compensation {
                d.step(step, StepState::Compensating { action: id.clone() }, format!("{what} {id} proposed: {text}"));
            } else {
                d.step(step, StepState::Running { action: id.clone() }, format!("{what} {id} proposed: {text}"));
            }
        }
        Proposed::Refused(reason) if compensation => d.step(
            step,
            StepState::CompensationFailed { reason: format!("compensation refused: {reason}") },
            String::new(),
        ),
        Proposed::Refused(reason) => {
            d.step(step, StepState::Failed { reason: format!("action refused: {reason}") }, String::new())
        }
        Proposed::Deferred(reason) => d.note(step, format!("{what} not proposed yet: {reason}")),
    }
    d.finish()
}

/// A human approves a run awaiting approval.
pub fn approve(run: &WorkflowRun, by: &str, reason: &str, now_ms: u64) -> Result<Advance, String> {
    if run.status != WorkflowStatus::AwaitingApproval {
        return Err(format!("workflow {} is {}; only one awaiting approval can be approved", run.id, run.status));
    }
    let mut d = Draft::new(run, now_ms, by);
    d.run.approval = Some(Decision { approved: true, by: by.into(), reason: reason.into(), at_ms: now_ms });
    d.status(WorkflowStatus::Running, format!("approved: {reason}"));
    Ok(d.finish())
}

/// A human rejects a run awaiting approval; it is cancelled.
pub fn reject(run: &WorkflowRun, by: &str, reason: &str, now_ms: u64) -> Result<Advance, String> {
    if run.status != WorkflowStatus::AwaitingApproval {
        return Err(format!("workflow {} is {}; only one awaiting approval can be rejected", run.id, run.status));
    }
    let mut d = Draft::new(run, now_ms, by);
    d.run.approval = Some(Decision { approved: false, by: by.into(), reason: reason.into(), at_ms: now_ms });
    d.status(WorkflowStatus::Cancelled, format!("rejected: {reason}"));
    Ok(d.finish())
}

/// Cancels a run: no further step or compensation runs; the not-yet-started actions of its
/// steps are cancelled (an executing one finishes). Nothing is undone.
pub fn cancel(run: &WorkflowRun, by: &str, reason: &str, now_ms: u64) -> Result<Advance, String> {
    if matches!(run.status, WorkflowStatus::Completed | WorkflowStatus::Cancelled) {
        return Err(format!("workflow {} is already {}", run.id, run.status));
    }
    let mut d = Draft::new(run, now_ms, by);
    for action in run.watched_actions() {
        d.commands.push(Command::Cancel { action, reason: format!("workflow {} cancelled: {reason}", run.id) });
    }
    d.status(WorkflowStatus::Cancelled, format!("cancelled: {reason}"));
    Ok(d.finish())
}

/// Resumes a failed run after a fix, or a run the kill switch stopped (see the module docs).
pub fn resume(run: &WorkflowRun, by: &str, kill_switch: bool, now_ms: u64) -> Result<Advance, String> {
    if kill_switch {
        return Err("the kill switch is on: release it first (`operator-host safety release`)".into());
    }
    let mut d = Draft::new(run, now_ms, by);
    match run.status {
        WorkflowStatus::Stopped => {
            for i in 0..d.run.steps.len() {
                if matches!(d.run.steps[i].state, StepState::Waiting { .. }) {
                    d.step(i, StepState::Waiting { since_ms: now_ms }, "resumed: the timeout starts over".into());
                }
            }
            let to = run.stopped_from.unwrap_or(WorkflowStatus::Running);
            d.run.stopped_from = None;
            d.status(to, format!("resumed by {by}"));
        }
        WorkflowStatus::Failed => {
            let failed_step = run.failed_step.clone().unwrap_or_default();
            for i in 0..d.run.steps.len() {
                let step = &d.run.steps[i];
                let (applied, satisfied, has_wait) = (step.applied, step.satisfied, step.wait_for.is_some());
                if applied && satisfied {
                    if step.state != StepState::Done {
                        d.step(i, StepState::Done, "resumed: its effect is still in place".into());
                    }
                } else if applied && has_wait {
                    d.step(
                        i,
                        StepState::Waiting { since_ms: now_ms },
                        "resumed: its action took effect; waiting for its condition again".into(),
                    );
                } else if applied {
                    d.run.steps[i].satisfied = true;
                    d.step(i, StepState::Done, "resumed: its action took effect".into());
                } else if step.state != StepState::Pending {
                    d.step(i, StepState::Pending, format!("resumed: runs again (step `{failed_step}` had failed)"));
                }
            }
            d.run.failed_step = None;
            d.run.failure = None;
            d.status(WorkflowStatus::Running, format!("resumed by {by}"));
        }
        other => return Err(format!("workflow {} is {other}; only a failed or stopped workflow resumes", run.id)),
    }
    Ok(d.finish())
}

// ───────────────────────────── the engine ─────────────────────────────

/// Why a workflow did not start; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No loaded plugin defines a workflow of that name.
    #[error("no workflow named `{name}` (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that can be started, comma-separated.
        known: String,
    },
    /// The definition exists but was kept out when it was loaded.
    #[error("workflow `{name}` was refused when it was loaded:\n  - {}", problems.join("\n  - "))]
    Refused {
        /// The workflow.
        name: String,
        /// Its problems.
        problems: Vec<String>,
    },
    /// The kill switch is on.
    #[error("the kill switch is on: no workflow starts until it is released (`operator-host safety release`)")]
    KillSwitch,
    /// The parameters are missing, unknown or do not fit the steps' schemas.
    #[error("invalid parameters for workflow `{name}`:\n  - {}", problems.join("\n  - "))]
    InvalidParams {
        /// The workflow.
        name: String,
        /// Every problem.
        problems: Vec<String>,
    },
    /// Storage or audit failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A definition the engine can start, with the plugin that ships it.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The plugin whose manifest holds it.
    pub plugin: String,
    /// The definition.
    pub def: WorkflowDef,
}

/// What the engine needs besides the executor.
#[derive(Clone)]
pub struct EngineSettings {
    /// The approval policy (`[actions.approval]`), to know whether a workflow needs approval.
    pub approval: ApprovalPolicy,
    /// An observation older than this is stale (`monitor.stale_after_ms`).
    pub stale_after_ms: u64,
    /// The latest observation, shared with the monitor and the executor.
    pub latest: SharedObservation,
}

/// Runs workflows through the [`Executor`]: call [`WorkflowEngine::tick`] after each
/// [`Executor::tick`].
pub struct WorkflowEngine {
    executor: Arc<Executor>,
    subject: Arc<Plugin>,
    store: WorkflowStore,
    sink: AuditSink,
    settings: EngineSettings,
    catalogue: Catalogue,
    definitions: BTreeMap<String, Definition>,
    refused: BTreeMap<String, Vec<String>>,
    lock: tokio::sync::Mutex<()>,
}

fn policy_risk(risk: types::Risk) -> Risk {
    match risk {
        types::Risk::Low => Risk::Low,
        types::Risk::Medium => Risk::Medium,
        types::Risk::High => Risk::High,
    }
}

fn audit_event(run: &WorkflowRun, event: &WorkflowEvent) -> AuditEvent {
    let id = match &event.step {
        Some(step) => format!("{}/{step}", run.id),
        None => run.id.clone(),
    };
    let reason = if event.reason.is_empty() { String::new() } else { format!(": {}", event.reason) };
    AuditEvent::StateChange {
        subject: "workflow".into(),
        id,
        from: event.from.clone(),
        to: event.to.clone(),
        reason: format!("{} {}{reason}", run.definition, run.params_text()),
        actor: event.actor.clone(),
    }
}

impl WorkflowEngine {
    /// An engine over the executor, with the workflows of the subject's and the tools' manifests
    /// checked against the catalogue. Definitions with problems are kept out and listed by
    /// [`WorkflowEngine::refused`]. Actions left waiting by cancelled runs are cancelled (see
    /// [`WorkflowEngine::tick`]).
    pub async fn new(
        executor: Arc<Executor>,
        subject: Arc<Plugin>,
        tools: Option<Arc<Plugin>>,
        store: WorkflowStore,
        sink: AuditSink,
        settings: EngineSettings,
    ) -> Result<WorkflowEngine> {
        let s = subject.as_subject().ok_or_else(|| anyhow!("plugin {} is not a subject plugin", subject.name()))?;
        let info = s.info(&CallContext::default()).await?;
        let catalogue = Catalogue {
            actions: BTreeMap::new(),
            conditions: info.conditions.into_iter().map(|c| (c.name.clone(), c)).collect(),
        };
        let mut engine = WorkflowEngine {
            executor,
            subject: subject.clone(),
            store,
            sink,
            settings,
            catalogue,
            definitions: BTreeMap::new(),
            refused: BTreeMap::new(),
            lock: tokio::sync::Mutex::new(()),
        };
        for plugin in std::iter::once(&subject).chain(tools.iter()) {
            let problems = engine.add_definitions(plugin.name(), plugin.manifest().workflows.clone());
            for problem in problems {
                tracing::warn!(plugin = %plugin.name(), "workflow refused: {problem}");
            }
        }
        // Before anything else runs (the daemon starts its executor after this): a previous
        // process may have died between cancelling a run and cancelling its actions.
        let cancelled =
            engine.store.all()?.into_iter().filter(|r| r.status == WorkflowStatus::Cancelled).map(|r| r.id).collect();
        engine.cancel_leftovers(&cancelled).await;
        Ok(engine)
    }

    /// Adds definitions (checked against the catalogue); returns every problem of the ones kept
    /// out. A name already known is refused.
    pub fn add_definitions(&mut self, plugin: &str, defs: Vec<WorkflowDef>) -> Vec<String> {
        let mut out = Vec::new();
        for def in defs {
            for step in &def.steps {
                for name in std::iter::once(&step.action).chain(step.compensation.as_ref().map(|c| &c.action)) {
                    if let Some(spec) = self.executor.spec(name) {
                        if let Some(undo) = &spec.undo
                            && let Some(undo_spec) = self.executor.spec(undo)
                        {
                            self.catalogue.actions.insert(undo.clone(), undo_spec.clone());
                        }
                        self.catalogue.actions.insert(name.clone(), spec.clone());
                    }
                }
            }
            let mut problems = check_against(&def, &self.catalogue);
            if let Some(known) = self.definitions.get(&def.name) {
                problems.push(format!("workflow `{}` is already defined by plugin {}", def.name, known.plugin));
            }
            if problems.is_empty() {
                self.definitions.insert(def.name.clone(), Definition { plugin: plugin.into(), def });
            } else {
                out.extend(problems.iter().cloned());
                self.refused.insert(def.name.clone(), problems);
            }
        }
        out
    }

    /// The definitions that can be started.
    pub fn definitions(&self) -> Vec<&Definition> {
        self.definitions.values().collect()
    }

    /// The definitions kept out, with their problems.
    pub fn refused(&self) -> &BTreeMap<String, Vec<String>> {
        &self.refused
    }

    /// The store of runs.
    pub fn store(&self) -> &WorkflowStore {
        &self.store
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<Option<WorkflowRun>> {
        self.store.get(id)
    }

    /// Audits every change, then writes the run.
    async fn commit(&self, before: &WorkflowRun, advance: Advance) -> Result<(WorkflowRun, Vec<Command>)> {
        for event in &advance.events {
            self.sink.record_durable(audit_event(&advance.run, event)).await?;
        }
        if advance.run != *before {
            self.store.save(&advance.run)?;
        }
        Ok((advance.run, advance.commands))
    }

    fn needs_approval(&self, steps: &[StepRun]) -> bool {
        steps.iter().flat_map(|s| std::iter::once(&s.action).chain(s.compensation.iter())).any(|a| {
            self.executor
                .spec(&a.action)
                .is_none_or(|spec| self.settings.approval.needs_approval(&a.action, policy_risk(spec.risk)))
        })
    }

    /// Starts a workflow: checks and types every parameter of every step (nothing is stored on a
    /// problem), then stores the run awaiting approval or running. Its first steps are proposed
    /// at the next [`WorkflowEngine::tick`].
    ///
    /// # Errors
    /// The kinds of [`StartError`], so that a caller (the API) can tell a bad request from a
    /// failure of the host.
    pub async fn start(
        &self,
        name: &str,
        params: BTreeMap<String, String>,
        ticket: Option<String>,
        by: &str,
        now_ms: u64,
    ) -> Result<WorkflowRun, StartError> {
        let Some(definition) = self.definitions.get(name) else {
            if let Some(problems) = self.refused.get(name) {
                return Err(StartError::Refused { name: name.into(), problems: problems.clone() });
            }
            let known: Vec<&str> = self.definitions.keys().map(String::as_str).collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            return Err(StartError::Unknown { name: name.into(), known });
        };
        if self.executor.safety().kill_switch {
            return Err(StartError::KillSwitch);
        }
        let steps = resolve(&definition.def, &params, &self.catalogue)
            .map_err(|problems| StartError::InvalidParams { name: name.into(), problems })?;
        let needs_approval = self.needs_approval(&steps);
        let _guard = self.lock.lock().await;
        let id = self.store.next_id()?;
        let advance =
            new_run(&id, &definition.def, &definition.plugin, params, steps, needs_approval, ticket, by, now_ms);
        for event in &advance.events {
            self.sink.record_durable(audit_event(&advance.run, event)).await.map_err(anyhow::Error::from)?;
        }
        self.store.save(&advance.run)?;
        Ok(advance.run)
    }

    async fn change(&self, id: &str, f: impl FnOnce(&WorkflowRun) -> Result<Advance, String>) -> Result<WorkflowRun> {
        let _guard = self.lock.lock().await;
        let run = self.store.require(id)?;
        let advance = f(&run).map_err(anyhow::Error::msg)?;
        let (run, commands) = self.commit(&run, advance).await?;
        self.run_cancels(&commands, &run.started_by).await;
        Ok(run)
    }

    async fn run_cancels(&self, commands: &[Command], by: &str) {
        for command in commands {
            if let Command::Cancel { action, reason } = command {
                let by = if by.is_empty() { ENGINE } else { by };
                if let Err(e) = self.executor.cancel(action, by, reason, crate::audit::now_ms()).await {
                    tracing::debug!(%action, "not cancelled: {e:#}");
                }
            }
        }
    }

    /// A human approves a workflow awaiting approval: every step's action runs with this decision.
    pub async fn approve(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<WorkflowRun> {
        self.change(id, |run| approve(run, by, reason, now_ms)).await
    }

    /// A human rejects a workflow awaiting approval.
    pub async fn reject(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<WorkflowRun> {
        self.change(id, |run| reject(run, by, reason, now_ms)).await
    }

    /// Cancels a workflow (its pending actions too); nothing is undone.
    pub async fn cancel(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<WorkflowRun> {
        let guard = self.lock.lock().await;
        let run = self.store.require(id)?;
        let advance = cancel(&run, by, reason, now_ms).map_err(anyhow::Error::msg)?;
        let (run, commands) = self.commit(&run, advance).await?;
        drop(guard);
        self.run_cancels(&commands, by).await;
        Ok(run)
    }

    /// Resumes a failed workflow after a fix, or one the kill switch stopped once it is released.
    pub async fn resume(&self, id: &str, by: &str, now_ms: u64) -> Result<WorkflowRun> {
        let kill = self.executor.safety().kill_switch;
        self.change(id, |run| resume(run, by, kill, now_ms)).await
    }

    /// One round over the running and compensating workflows: each moves as far as it can now.
    /// Actions of cancelled runs that have not started are cancelled too: a cancellation is
    /// written before its actions are cancelled, so a crash in between would leave them to run.
    pub async fn tick(&self, now_ms: u64) -> Result<()> {
        let _guard = self.lock.lock().await;
        let kill = self.executor.safety().kill_switch;
        let mut cancelled = BTreeSet::new();
        for run in self.store.all()? {
            match run.status {
                WorkflowStatus::Running | WorkflowStatus::Compensating => {
                    self.advance_run(run, kill, now_ms).await?;
                }
                WorkflowStatus::Cancelled => {
                    cancelled.insert(run.id);
                }
                _ => {}
            }
        }
        self.cancel_leftovers(&cancelled).await;
        Ok(())
    }

    /// Cancels the actions of cancelled runs that have not started. A cancellation is written
    /// before its actions are cancelled, and an action may be stored before the run records it;
    /// after a crash in either gap, such an action would otherwise run for a workflow that no
    /// longer exists. An executing action finishes (it cannot be called back).
    async fn cancel_leftovers(&self, cancelled: &BTreeSet<String>) {
        if cancelled.is_empty() {
            return;
        }
        let commands: Vec<Command> = self
            .executor
            .actions()
            .into_iter()
            .filter(|a| !a.status.is_final() && a.status != ActionStatus::Executing)
            .filter_map(|a| {
                let run = &a.workflow.as_ref()?.workflow;
                cancelled
                    .contains(run)
                    .then(|| Command::Cancel { action: a.id, reason: format!("workflow {run} was cancelled") })
            })
            .collect();
        self.run_cancels(&commands, ENGINE).await;
    }

    async fn advance_run(&self, mut run: WorkflowRun, kill: bool, now_ms: u64) -> Result<WorkflowRun> {
        // Each round settles what the previous one proposed; a few rounds let a step that is done
        // start the next one in the same tick.
        for _ in 0..run.steps.len() + 3 {
            let facts = self.facts(&run, kill, now_ms).await;
            let advance = advance(&run, &facts, now_ms);
            let (next, commands) = self.commit(&run, advance).await?;
            run = next;
            if commands.is_empty() {
                break;
            }
            let mut deferred = false;
            for command in &commands {
                match command {
                    Command::Propose { step, compensation } => {
                        let result = self.propose_step(&run, *step, *compensation, now_ms).await;
                        deferred |= matches!(result, Proposed::Deferred(_));
                        let advance = proposed(&run, *step, *compensation, result, now_ms);
                        run = self.commit(&run, advance).await?.0;
                    }
                    Command::Cancel { .. } => {}
                }
            }
            self.run_cancels(&commands, ENGINE).await;
            if deferred {
                break;
            }
        }
        Ok(run)
    }

    async fn facts(&self, run: &WorkflowRun, kill: bool, now_ms: u64) -> Facts {
        let mut facts = Facts { kill_switch: kill, ..Facts::default() };
        for id in run.watched_actions() {
            if let Some(a) = self.executor.action(&id) {
                let detail = a
                    .last_error
                    .clone()
                    .or_else(|| (a.status == ActionStatus::Completed).then(|| a.outcome.clone()).flatten())
                    .or_else(|| a.history.last().map(|e| e.reason.clone()))
                    .unwrap_or_default();
                facts.actions.insert(id, ActionFact { status: a.status, detail });
            }
        }
        if kill || run.status != WorkflowStatus::Running {
            return facts;
        }
        let waiting: Vec<(usize, u64)> = run
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                StepState::Waiting { since_ms } => Some((i, since_ms)),
                _ => None,
            })
            .collect();
        if waiting.is_empty() {
            return facts;
        }
        let latest = self.settings.latest.read().ok().and_then(|l| l.clone());
        for (i, since_ms) in waiting {
            let Some(wait) = &run.steps[i].wait_for else { continue };
            let fact = match &latest {
                None => ConditionFact::NotYet("no observation yet".into()),
                Some(l) if !l.observation.complete => {
                    ConditionFact::NotYet(format!("the observation is partial: {}", l.observation.errors.join("; ")))
                }
                Some(l) if l.at_ms <= since_ms => {
                    ConditionFact::NotYet("waiting for an observation taken after the action completed".into())
                }
                Some(l) if now_ms.saturating_sub(l.at_ms) > self.settings.stale_after_ms => {
                    ConditionFact::NotYet("the latest observation is stale".into())
                }
                Some(l) => self.condition(run, wait, &l.observation).await,
            };
            facts.conditions.insert(i, fact);
        }
        facts
    }

    async fn condition(
        &self,
        run: &WorkflowRun,
        wait: &ResolvedWait,
        observation: &types::Observation,
    ) -> ConditionFact {
        let Some(spec) = self.catalogue.conditions.get(&wait.condition) else {
            return ConditionFact::Error(format!("the subject no longer offers condition `{}`", wait.condition));
        };
        let typed = match params::from_stored(&condition_as_action(spec), &wait.params) {
            Ok(p) => p,
            Err(problems) => return ConditionFact::Error(problems.join("; ")),
        };
        let Some(s) = self.subject.as_subject() else { return ConditionFact::Error("no subject plugin".into()) };
        let context = CallContext { ticket: run.ticket.clone() };
        match s.condition(&context, &wait.condition, &typed, observation).await {
            Ok(Ok(true)) => ConditionFact::Holds,
            Ok(Ok(false)) => ConditionFact::NotYet("it does not hold yet".into()),
            Ok(Err(e)) => ConditionFact::Error(e),
            // A trap or a deadline may pass: the timeout decides.
            Err(call) => ConditionFact::NotYet(format!("the condition call failed: {call}")),
        }
    }

    async fn propose_step(&self, run: &WorkflowRun, index: usize, compensation: bool, now_ms: u64) -> Proposed {
        let step = &run.steps[index];
        let link = WorkflowLink { workflow: run.id.clone(), step: index, compensation };
        // An action proposed for this step whose record here was lost (a crash between the two
        // writes) is taken up, not proposed twice.
        if let Some(existing) = self
            .executor
            .actions()
            .into_iter()
            .rev()
            .find(|a| a.workflow.as_ref() == Some(&link) && !step.actions.contains(&a.id))
        {
            return Proposed::Action(existing.id);
        }
        let resolved = if compensation {
            match &step.compensation {
                Some(c) => c,
                None => return Proposed::Refused("the step has no compensation".into()),
            }
        } else {
            &step.action
        };
        let params = resolved.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
        let mut proposal = Proposal::new(&resolved.action, ProposalParams::Json(params), "workflow", &run.started_by);
        proposal.ticket = run.ticket.clone();
        proposal.workflow = Some(link);
        let workflow_approval = run.approval.clone().filter(|d| d.approved);
        proposal.approval = if compensation {
            Some(workflow_approval.unwrap_or_else(|| Decision {
                approved: true,
                by: ENGINE.into(),
                reason: format!("compensation of step `{}` of workflow {}", step.name, run.id),
                at_ms: now_ms,
            }))
        } else if run.approval_mode == ApprovalMode::Workflow {
            workflow_approval
        } else {
            None
        };
        match self.executor.propose(proposal, now_ms).await {
            Ok(action) => Proposed::Action(action.id),
            Err(ProposeError::Other(e)) => Proposed::Deferred(format!("{e:#}")),
            Err(e) => Proposed::Refused(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::{IntegerRange, ParamType, ParamValue};

    fn int_param(name: &str, default: Option<i64>) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: format!("the {name}"),
            kind: ParamType::Integer(IntegerRange { min: Some(0), max: Some(1_000_000) }),
            required: default.is_none(),
            default: default.map(ParamValue::Integer),
        }
    }

    fn action(name: &str, undo: Option<&str>) -> ActionSpec {
        ActionSpec {
            name: name.into(),
            description: String::new(),
            risk: types::Risk::Medium,
            params: vec![int_param("store", None)],
            entity_param: Some("store".into()),
            undo: undo.map(Into::into),
            verify_window_secs: 60,
        }
    }

    fn catalogue() -> Catalogue {
        let actions = [
            action("evict", Some("restore")),
            action("restore", None),
            action("offline", Some("cancel-offline")),
            action("cancel-offline", None),
            action("notify", None),
        ];
        let condition = ConditionSpec {
            name: "leaders-at-most".into(),
            description: String::new(),
            params: vec![int_param("store", None), int_param("max", Some(0))],
        };
        Catalogue {
            actions: actions.into_iter().map(|a| (a.name.clone(), a)).collect(),
            conditions: [(condition.name.clone(), condition)].into_iter().collect(),
        }
    }

    #[derive(Deserialize)]
    struct Defs {
        workflows: Vec<WorkflowDef>,
    }

    fn parse(text: &str) -> WorkflowDef {
        toml::from_str::<Defs>(text).unwrap().workflows.remove(0)
    }

    const DRAIN: &str = r#"
[[workflows]]
name = "drain"
params = [{ name = "store", description = "the store" }]
[[workflows.steps]]
name = "evict"
action = "evict"
params = { store = "{store}" }
wait_for = { condition = "leaders-at-most", params = { store = "{store}" }, timeout_secs = 60 }
[[workflows.steps]]
name = "offline"
action = "offline"
params = { store = "{store}" }
"#;

    fn given(store: &str) -> BTreeMap<String, String> {
        [("store".to_owned(), store.to_owned())].into_iter().collect()
    }

    fn start(def: &WorkflowDef, needs_approval: bool) -> WorkflowRun {
        let steps = resolve(def, &given("4"), &catalogue()).unwrap();
        new_run("W-000001", def, "p", given("4"), steps, needs_approval, None, "alice", 1_000).run
    }

    fn fact(status: ActionStatus) -> ActionFact {
        ActionFact { status, detail: "said so".into() }
    }

    fn facts(actions: &[(&str, ActionStatus)], conditions: &[(usize, ConditionFact)]) -> Facts {
        Facts {
            kill_switch: false,
            actions: actions.iter().map(|(id, s)| ((*id).to_owned(), fact(*s))).collect(),
            conditions: conditions.iter().cloned().collect(),
        }
    }

    fn states(run: &WorkflowRun) -> Vec<&'static str> {
        run.steps.iter().map(|s| s.state.as_str()).collect()
    }

    /// Proposes the step as `id`, checking that it was asked for.
    fn propose(
        run: &WorkflowRun,
        advance: &Advance,
        step: usize,
        compensation: bool,
        id: &str,
        now: u64,
    ) -> WorkflowRun {
        assert!(advance.commands.contains(&Command::Propose { step, compensation }), "{:?}", advance.commands);
        proposed(run, step, compensation, Proposed::Action(id.into()), now).run
    }

    #[test]
    fn a_good_definition_passes_and_resolves_typed_parameters() {
        let def = parse(DRAIN);
        assert_eq!(check_against(&def, &catalogue()), Vec::<String>::new());
        let steps = resolve(&def, &given("4"), &catalogue()).unwrap();
        assert_eq!(steps[0].action.params[0].value, serde_json::json!(4));
        assert_eq!(steps[0].after, Vec::<usize>::new());
        assert_eq!(steps[1].after, vec![0]);
        // The default maximum of the condition is filled in; the undo is the catalogue's.
        let wait = steps[0].wait_for.as_ref().unwrap();
        assert_eq!(wait.text(), "leaders-at-most store=4 max=0");
        assert_eq!(steps[0].compensation.as_ref().unwrap().text(), "restore store=4");
        assert_eq!(steps[1].compensation.as_ref().unwrap().text(), "cancel-offline store=4");
    }

    #[test]
    fn every_problem_of_a_definition_is_named() {
        let def = parse(
            r#"
[[workflows]]
name = "Bad Name"
params = [{ name = "store" }, { name = "store" }]
[[workflows.steps]]
name = "a"
action = "teleport"
params = { store = "{stor}" }
after = ["c"]
wait_for = { condition = "moon-is-full", params = {}, timeout_secs = 0 }
[[workflows.steps]]
name = "b"
action = "evict"
params = { store = "many", colour = "red" }
after = ["a", "ghost"]
[[workflows.steps]]
name = "c"
action = "offline"
after = ["b"]
compensation = { action = "unplug" }
[[workflows.steps]]
name = "c"
action = "notify"
params = { store = 1 }
"#,
        );
        let problems = check_against(&def, &catalogue()).join("\n");
        for expected in [
            "the name must be 1 to 64 lower-case letters",
            "parameter `store` is declared more than once",
            "step `c` is named more than once",
            "step `b` is after `ghost`, which is not a step",
            "uses `{stor}`, which is not a parameter of the workflow (it declares: store)",
            "timeout_secs = 0 must be 1–604800",
            "cycle: ",
            "no action `teleport` in the catalogue",
            "no condition `moon-is-full` (the subject offers: leaders-at-most)",
            "`store` must be a whole number, not `many`",
            "`colour` is not one of its parameters (it takes: store)",
            "action `offline`: `store` is required",
            "no compensation action `unplug` in the catalogue",
        ] {
            assert!(problems.contains(expected), "missing `{expected}` in:\n{problems}");
        }
        assert!(check_structure(&parse("[[workflows]]\nname = \"empty\"")).join("").contains("has no steps"));
    }

    #[test]
    fn a_cycle_is_shown_in_running_order() {
        let def = parse(
            r#"
[[workflows]]
name = "loop"
[[workflows.steps]]
name = "a"
action = "notify"
after = ["b"]
[[workflows.steps]]
name = "b"
action = "notify"
"#,
        );
        let problems = check_structure(&def);
        assert!(problems.iter().any(|p| p.contains("a → b → a") || p.contains("b → a → b")), "{problems:?}");
    }

    #[test]
    fn parameters_are_checked_when_a_run_starts() {
        let def = parse(DRAIN);
        let problems = resolve(&def, &BTreeMap::new(), &catalogue()).unwrap_err();
        assert!(problems[0].contains("parameter `store` is required (the store)"), "{problems:?}");
        let problems = resolve(&def, &given("four"), &catalogue()).unwrap_err().join("\n");
        assert!(problems.contains("step `evict`: `store` must be a whole number, not `four`"), "{problems}");
        let mut extra = given("4");
        extra.insert("colour".into(), "red".into());
        let problems = resolve(&def, &extra, &catalogue()).unwrap_err();
        assert!(problems[0].contains("`colour` is not a parameter of workflow `drain`"), "{problems:?}");
        assert_eq!(substitute("{a}-{b}-{c", &[("a".into(), "1".into())].into_iter().collect()), "1-{b}-{c");
        assert_eq!(placeholders("x{a}{ b }{c_d}"), vec!["a", "c_d"]);
    }

    #[test]
    fn steps_run_in_order_with_their_waits_and_the_run_completes() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        assert_eq!(run.status, WorkflowStatus::Running);
        let a = advance(&run, &Facts::default(), 2_000);
        assert_eq!(a.commands, vec![Command::Propose { step: 0, compensation: false }]);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        assert_eq!(states(&run), ["running", "pending"]);
        // Nothing moves while the action waits.
        let a = advance(&run, &facts(&[("A-1", ActionStatus::Ready)], &[]), 3_000);
        assert!(a.commands.is_empty() && a.events.is_empty());
        let run = advance(&run, &facts(&[("A-1", ActionStatus::Completed)], &[]), 4_000).run;
        assert_eq!(run.steps[0].state, StepState::Waiting { since_ms: 4_000 });
        let a = advance(&run, &facts(&[], &[(0, ConditionFact::NotYet("12 leaders".into()))]), 30_000);
        assert!(a.commands.is_empty());
        assert!(a.run.steps[0].note.as_deref().unwrap().contains("12 leaders"));
        let a = advance(&run, &facts(&[], &[(0, ConditionFact::Holds)]), 40_000);
        assert_eq!(states(&a.run), ["done", "pending"]);
        let run = propose(&a.run, &a, 1, false, "A-2", 40_000);
        let a = advance(&run, &facts(&[("A-2", ActionStatus::Completed)], &[]), 50_000);
        assert_eq!(a.run.status, WorkflowStatus::Completed);
        assert_eq!(a.run.finished_ms, Some(50_000));
        assert_eq!(a.run.steps[1].actions, vec!["A-2"]);
        // Every change is in the history, in order.
        let last = a.run.history.last().unwrap();
        assert_eq!((last.from.as_deref(), last.to.as_str()), (Some("running"), "completed"));
    }

    #[test]
    fn a_timed_out_wait_fails_the_step_and_compensates_in_reverse_then_resume_runs_it_again() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let a = advance(&run, &Facts::default(), 2_000);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        let run = advance(&run, &facts(&[("A-1", ActionStatus::Completed)], &[]), 4_000).run;
        // Not yet at 63.999 s; failed at 64 s (60 s after it began to wait).
        let not_yet = [(0, ConditionFact::NotYet("3 leaders".into()))];
        assert_eq!(advance(&run, &facts(&[], &not_yet), 63_999).run.status, WorkflowStatus::Running);
        let a = advance(&run, &facts(&[], &not_yet), 64_000);
        assert_eq!(a.run.status, WorkflowStatus::Compensating);
        assert!(a.run.failure.as_deref().unwrap().contains("timed out after 60 s"), "{:?}", a.run.failure);
        assert_eq!(a.commands, vec![Command::Propose { step: 0, compensation: true }]);
        let run = propose(&a.run, &a, 0, true, "A-2", 64_000);
        assert_eq!(run.steps[0].state, StepState::Compensating { action: "A-2".into() });
        let a = advance(&run, &facts(&[("A-2", ActionStatus::Completed)], &[]), 70_000);
        assert_eq!(states(&a.run), ["compensated", "pending"]);
        assert_eq!(a.run.status, WorkflowStatus::Failed);
        let reason = &a.run.history.last().unwrap().reason;
        assert!(reason.contains("compensated: evict"), "{reason}");

        // Resume: the compensated step runs again.
        let resumed = resume(&a.run, "bob", false, 80_000).unwrap().run;
        assert_eq!(resumed.status, WorkflowStatus::Running);
        assert_eq!(states(&resumed), ["pending", "pending"]);
        let a = advance(&resumed, &Facts::default(), 80_000);
        assert_eq!(a.commands, vec![Command::Propose { step: 0, compensation: false }]);
        assert!(resume(&resumed, "bob", false, 80_000).unwrap_err().contains("only a failed or stopped"));
    }

    #[test]
    fn compensation_covers_every_step_that_took_effect_latest_first() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let a = advance(&run, &Facts::default(), 2_000);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        let run = advance(&run, &facts(&[("A-1", ActionStatus::Completed)], &[]), 3_000).run;
        let a = advance(&run, &facts(&[], &[(0, ConditionFact::Holds)]), 4_000);
        let run = propose(&a.run, &a, 1, false, "A-2", 4_000);
        // The second step's action fails: it took no effect, so only the first is undone.
        let a = advance(&run, &facts(&[("A-2", ActionStatus::Failed)], &[]), 5_000);
        assert_eq!(a.run.status, WorkflowStatus::Compensating);
        assert_eq!(a.commands, vec![Command::Propose { step: 0, compensation: true }]);
        // A refused compensation leaves the effect in place and is reported.
        let run = proposed(&a.run, 0, true, Proposed::Refused("nothing to restore".into()), 5_000).run;
        let a = advance(&run, &Facts::default(), 6_000);
        assert_eq!(a.run.status, WorkflowStatus::Failed);
        assert!(a.run.history.last().unwrap().reason.contains("compensation failed: evict"));
        // On resume the step whose effect is still in place is not run again.
        let resumed = resume(&a.run, "bob", false, 7_000).unwrap().run;
        assert_eq!(states(&resumed), ["done", "pending"]);
        let a = advance(&resumed, &Facts::default(), 7_000);
        assert_eq!(a.commands, vec![Command::Propose { step: 1, compensation: false }]);
    }

    #[test]
    fn the_kill_switch_stops_a_run_and_it_resumes_where_it_stopped() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let a = advance(&run, &Facts::default(), 2_000);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        let mut killed = facts(&[("A-1", ActionStatus::Cancelled)], &[]);
        killed.kill_switch = true;
        let a = advance(&run, &killed, 3_000);
        assert_eq!(a.run.status, WorkflowStatus::Stopped);
        assert_eq!(states(&a.run), ["pending", "pending"]);
        assert!(a.commands.is_empty(), "nothing proposed under the kill switch: {:?}", a.commands);
        // A stopped run does not move, whatever happens.
        assert!(advance(&a.run, &Facts::default(), 4_000).events.is_empty());
        assert!(resume(&a.run, "bob", true, 5_000).unwrap_err().contains("kill switch is on"));
        let resumed = resume(&a.run, "bob", false, 5_000).unwrap().run;
        assert_eq!(resumed.status, WorkflowStatus::Running);
        let a = advance(&resumed, &Facts::default(), 5_000);
        assert_eq!(a.commands, vec![Command::Propose { step: 0, compensation: false }]);

        // A waiting step keeps its effect; its timeout starts over on resume.
        let run = propose(&resumed, &a, 0, false, "A-2", 5_000);
        let run = advance(&run, &facts(&[("A-2", ActionStatus::Completed)], &[]), 6_000).run;
        let kill = Facts { kill_switch: true, ..Facts::default() };
        let stopped = advance(&run, &kill, 7_000).run;
        assert_eq!(stopped.status, WorkflowStatus::Stopped);
        let resumed = resume(&stopped, "bob", false, 500_000).unwrap().run;
        assert_eq!(resumed.steps[0].state, StepState::Waiting { since_ms: 500_000 });
    }

    #[test]
    fn an_action_not_yet_started_is_cancelled_when_the_kill_switch_is_seen() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let a = advance(&run, &Facts::default(), 2_000);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        let mut f = facts(&[("A-1", ActionStatus::Ready)], &[]);
        f.kill_switch = true;
        let a = advance(&run, &f, 3_000);
        assert_eq!(a.run.status, WorkflowStatus::Stopped);
        assert_eq!(a.commands, vec![Command::Cancel { action: "A-1".into(), reason: "kill switch".into() }]);
        // An executing action finishes; the step keeps watching it.
        let mut f = facts(&[("A-1", ActionStatus::Executing)], &[]);
        f.kill_switch = true;
        let a = advance(&run, &f, 3_000);
        assert_eq!(a.run.steps[0].state, StepState::Running { action: "A-1".into() });
        assert!(a.commands.is_empty());
    }

    #[test]
    fn parallel_steps_start_together_and_a_failure_cancels_the_other() {
        let def = parse(
            r#"
[[workflows]]
name = "both"
[[workflows.steps]]
name = "one"
action = "evict"
params = { store = 1 }
[[workflows.steps]]
name = "two"
action = "evict"
params = { store = 2 }
after = []
[[workflows.steps]]
name = "three"
action = "notify"
params = { store = 3 }
after = ["one", "two"]
"#,
        );
        assert!(check_against(&def, &catalogue()).is_empty());
        let steps = resolve(&def, &BTreeMap::new(), &catalogue()).unwrap();
        let run = new_run("W-1", &def, "p", BTreeMap::new(), steps, false, None, "alice", 0).run;
        let a = advance(&run, &Facts::default(), 1);
        assert_eq!(
            a.commands,
            vec![Command::Propose { step: 0, compensation: false }, Command::Propose { step: 1, compensation: false }]
        );
        let run = proposed(&run, 0, false, Proposed::Action("A-1".into()), 1).run;
        let run = proposed(&run, 1, false, Proposed::Action("A-2".into()), 1).run;
        let a = advance(&run, &facts(&[("A-1", ActionStatus::Rejected), ("A-2", ActionStatus::Ready)], &[]), 2);
        assert_eq!(a.run.status, WorkflowStatus::Compensating);
        assert!(a.commands.iter().any(|c| matches!(c, Command::Cancel { action, .. } if action == "A-2")));
        // Once the other is cancelled, nothing took effect: failed without compensation.
        let a = advance(&a.run, &facts(&[("A-2", ActionStatus::Cancelled)], &[]), 3);
        assert_eq!(a.run.status, WorkflowStatus::Failed);
        assert_eq!(states(&a.run), ["failed", "pending", "pending"]);
    }

    #[test]
    fn one_approval_covers_the_run_and_a_rejection_cancels_it() {
        let def = parse(DRAIN);
        let run = start(&def, true);
        assert_eq!(run.status, WorkflowStatus::AwaitingApproval);
        assert!(advance(&run, &Facts::default(), 2_000).commands.is_empty());
        let approved = approve(&run, "carol", "planned maintenance", 3_000).unwrap().run;
        assert_eq!(approved.status, WorkflowStatus::Running);
        assert_eq!(approved.approval.as_ref().unwrap().by, "carol");
        assert!(approve(&approved, "carol", "again", 3_000).is_err());
        let rejected = reject(&run, "dave", "not today", 3_000).unwrap().run;
        assert_eq!(rejected.status, WorkflowStatus::Cancelled);
        assert!(!rejected.approval.unwrap().approved);
        // Per-step approval never waits as a whole.
        let mut per_step = parse(DRAIN);
        per_step.approval = ApprovalMode::PerStep;
        assert_eq!(start(&per_step, true).status, WorkflowStatus::Running);
    }

    #[test]
    fn cancel_cancels_the_pending_actions_and_is_final() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let a = advance(&run, &Facts::default(), 2_000);
        let run = propose(&run, &a, 0, false, "A-1", 2_000);
        let a = cancel(&run, "erin", "wrong store", 3_000).unwrap();
        assert_eq!(a.run.status, WorkflowStatus::Cancelled);
        assert!(matches!(&a.commands[..], [Command::Cancel { action, .. }] if action == "A-1"));
        assert!(cancel(&a.run, "erin", "again", 3_000).is_err());
        assert!(resume(&a.run, "erin", false, 3_000).is_err());
    }

    #[test]
    fn runs_survive_a_round_trip_through_json() {
        let def = parse(DRAIN);
        let run = start(&def, false);
        let text = serde_json::to_string(&run).unwrap();
        assert_eq!(serde_json::from_str::<WorkflowRun>(&text).unwrap(), run);
    }

    #[test]
    fn the_built_in_manifests_hold_valid_workflows() {
        for builtin in crate::runtime::builtin::BUILTINS {
            let manifest = builtin.manifest().unwrap();
            for def in &manifest.workflows {
                assert!(check_structure(def).is_empty(), "{}: {:?}", def.name, check_structure(def));
            }
        }
        let text = "name = \"x\"\nversion = \"1\"\nworld = \"subject\"\n".to_owned()
            + DRAIN
                .replace(
                    "leaders-at-most\", params = { store = \"{store}\" }",
                    "leaders-at-most\", params = { store = \"{node}\" }",
                )
                .as_str();
        let error = crate::runtime::manifest::Manifest::parse(&text, "m/plugin.toml").unwrap_err().to_string();
        assert!(error.contains("m/plugin.toml: invalid workflows") && error.contains("`{node}`"), "{error}");
    }
}
