//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `operator_tickets` | gauge | `status` | the ticket store, at scrape |
//! | `operator_actions` | gauge | `status`, `outcome` | the executor, at scrape |
//! | `operator_safety_execute_mode` | gauge | | 1 in execute mode, at scrape |
//! | `operator_safety_kill_switch` | gauge | | 1 while the kill switch is on, at scrape |
//! | `operator_diagnosis_duration_seconds` | histogram | `diagnoser` | [`Metrics::observe_diagnosis`] |
//! | `operator_diagnosis_tokens_total` | counter | `diagnoser`, `direction` (`input`/`output`) | [`Metrics::observe_diagnosis`] |
//! | `operator_plugin_call_duration_seconds` | histogram | `plugin`, `export` | `plugin-call` audit events |
//! | `operator_plugin_calls_total` | counter | `plugin`, `export`, `outcome` (`ok`/`error`/`trap`/`timeout`) | `plugin-call` audit events |
//! | `operator_capability_decisions_total` | counter | `plugin`, `target`, `decision` (`allowed`/`denied`) | `capability` audit events |
//! | `operator_monitor_cycle_duration_seconds` | histogram | | [`Metrics::observe_cycle`] |
//! | `operator_observation_failures_total` | counter | | [`Metrics::observe_observation_failure`] |
//! | `operator_api_unauthorized_total` | counter | | API requests refused for a missing or wrong token |
//!
//! The audit-driven figures are fed by an observer on the [`AuditSink`] ([`Metrics::attach`]).
//! The `target` label takes the endpoint name or origin a plugin asked for; past
//! [`MAX_TARGETS`] distinct values (a plugin asking for ever new URLs) further ones are counted
//! under `target="other"`, so a plugin cannot grow the series without bound.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::actions::executor::Executor;
use crate::actions::ledger::{ALL_STATUSES, Action, ActionStatus, Verification};
use crate::audit::{AuditEvent, AuditSink, CallOutcome, Decision};
use crate::monitor::tickets::{Ticket, TicketStatus};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The most distinct capability targets given their own series.
pub const MAX_TARGETS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    status: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiagnoserLabels {
    diagnoser: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    diagnoser: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    export: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallOutcomeLabels {
    plugin: String,
    export: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    plugin: String,
    target: String,
    decision: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds: 1 ms to about 65 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new((0..17).map(|i| 0.001 * f64::from(1u32 << i)))
}

/// Seconds: 100 ms to about 410 s, doubling (model calls are slow).
fn diagnosis_histogram() -> Histogram {
    Histogram::new((0..13).map(|i| 0.1 * f64::from(1u32 << i)))
}

/// The operator's metrics. Share it as an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    tickets: Family<StatusLabels, Gauge>,
    actions: Family<ActionLabels, Gauge>,
    execute_mode: Gauge,
    kill_switch: Gauge,
    diagnosis_seconds: HistogramFamily<DiagnoserLabels>,
    diagnosis_tokens: Family<TokenLabels, Counter>,
    plugin_call_seconds: HistogramFamily<CallLabels>,
    plugin_calls: Family<CallOutcomeLabels, Counter>,
    capability_decisions: Family<CapabilityLabels, Counter>,
    cycle_seconds: Histogram,
    observation_failures: Counter,
    api_unauthorized: Counter,
    /// Capability targets given their own series so far, with their plugin.
    targets: Mutex<HashSet<(String, String)>>,
    /// Serialises scrapes, whose refresh clears and refills the gauges.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric family, registered under the prefix `operator`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("operator");
        let tickets = Family::<StatusLabels, Gauge>::default();
        registry.register("tickets", "Tickets by status", tickets.clone());
        let actions = Family::<ActionLabels, Gauge>::default();
        registry.register(
            "actions",
            "Actions by status and outcome (verification of completed actions; none otherwise)",
            actions.clone(),
        );
        let execute_mode = Gauge::default();
        registry.register("safety_execute_mode", "1 when actions may execute (execute mode)", execute_mode.clone());
        let kill_switch = Gauge::default();
        registry.register("safety_kill_switch", "1 while the kill switch is on", kill_switch.clone());
        let diagnosis_seconds: HistogramFamily<DiagnoserLabels> = Family::new_with_constructor(diagnosis_histogram);
        registry.register_with_unit(
            "diagnosis_duration",
            "Time to diagnose a ticket, by diagnoser",
            Unit::Seconds,
            diagnosis_seconds.clone(),
        );
        let diagnosis_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "diagnosis_tokens",
            "Model tokens used by diagnoses, by diagnoser and direction",
            diagnosis_tokens.clone(),
        );
        let plugin_call_seconds: HistogramFamily<CallLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "plugin_call_duration",
            "Wall-clock time of plugin calls, by plugin and export",
            Unit::Seconds,
            plugin_call_seconds.clone(),
        );
        let plugin_calls = Family::<CallOutcomeLabels, Counter>::default();
        registry.register("plugin_calls", "Plugin calls, by plugin, export and outcome", plugin_calls.clone());
        let capability_decisions = Family::<CapabilityLabels, Counter>::default();
        registry.register(
            "capability_decisions",
            "Capability gate decisions, by plugin, endpoint or origin, and decision",
            capability_decisions.clone(),
        );
        let cycle_seconds = latency_histogram();
        registry.register_with_unit(
            "monitor_cycle_duration",
            "Time of one monitor cycle (observe, check, tickets)",
            Unit::Seconds,
            cycle_seconds.clone(),
        );
        let observation_failures = Counter::default();
        registry.register(
            "observation_failures",
            "Monitor cycles whose observation failed or was incomplete",
            observation_failures.clone(),
        );
        let api_unauthorized = Counter::default();
        registry.register(
            "api_unauthorized",
            "API requests refused for a missing or wrong bearer token",
            api_unauthorized.clone(),
        );
        Metrics {
            registry,
            tickets,
            actions,
            execute_mode,
            kill_switch,
            diagnosis_seconds,
            diagnosis_tokens,
            plugin_call_seconds,
            plugin_calls,
            capability_decisions,
            cycle_seconds,
            observation_failures,
            api_unauthorized,
            targets: Mutex::new(HashSet::new()),
            scrape: Mutex::new(()),
        }
    }

    /// Feeds the plugin-call and capability figures from every event `sink` (and its clones)
    /// records from now on. Attach before the runtime loads plugins to count every call.
    pub fn attach(self: &Arc<Self>, sink: &AuditSink) {
        let metrics = Arc::clone(self);
        sink.observe(Arc::new(move |event| metrics.record_event(event)));
    }

    /// Updates the figures an audit event carries (plugin calls and capability decisions; other
    /// events are ignored).
    pub fn record_event(&self, event: &AuditEvent) {
        match event {
            AuditEvent::PluginCall { plugin, export, duration_us, outcome, .. } => {
                let labels = CallLabels { plugin: plugin.clone(), export: export.clone() };
                self.plugin_call_seconds.get_or_create(&labels).observe(*duration_us as f64 / 1e6);
                let outcome = match outcome {
                    CallOutcome::Ok => "ok",
                    CallOutcome::Error { .. } => "error",
                    CallOutcome::Trap { .. } => "trap",
                    CallOutcome::Timeout { .. } => "timeout",
                };
                let labels =
                    CallOutcomeLabels { plugin: labels.plugin, export: labels.export, outcome: outcome.into() };
                self.plugin_calls.get_or_create(&labels).inc();
            }
            AuditEvent::Capability { plugin, target, decision, .. } => {
                let decision = match decision {
                    Decision::Allowed { .. } => "allowed",
                    Decision::Denied { .. } => "denied",
                };
                let target = self.bounded_target(plugin, target);
                let labels = CapabilityLabels { plugin: plugin.clone(), target, decision: decision.into() };
                self.capability_decisions.get_or_create(&labels).inc();
            }
            _ => {}
        }
    }

    fn bounded_target(&self, plugin: &str, target: &str) -> String {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (plugin.to_owned(), target.to_owned());
        if targets.contains(&key) {
            return key.1;
        }
        if targets.len() < MAX_TARGETS {
            targets.insert(key.clone());
            return key.1;
        }
        "other".into()
    }

    /// Records one diagnosis: how long it took and the model tokens it used (0 for rules).
    pub fn observe_diagnosis(&self, diagnoser: &str, seconds: f64, input_tokens: u64, output_tokens: u64) {
        let labels = DiagnoserLabels { diagnoser: diagnoser.to_owned() };
        self.diagnosis_seconds.get_or_create(&labels).observe(seconds);
        for (direction, count) in [("input", input_tokens), ("output", output_tokens)] {
            let labels = TokenLabels { diagnoser: diagnoser.to_owned(), direction: direction.into() };
            self.diagnosis_tokens.get_or_create(&labels).inc_by(count);
        }
    }

    /// Records the duration of one monitor cycle.
    pub fn observe_cycle(&self, seconds: f64) {
        self.cycle_seconds.observe(seconds);
    }

    /// Counts one failed or incomplete observation.
    pub fn observe_observation_failure(&self) {
        self.observation_failures.inc();
    }

    /// Counts one API request refused for a missing or wrong token.
    pub fn observe_unauthorized(&self) {
        self.api_unauthorized.inc();
    }

    /// Refreshes the gauges from the tickets and the executor's actions and safety switches.
    fn refresh(&self, tickets: &[Ticket], executor: &Executor) {
        self.tickets.clear();
        for status in [TicketStatus::Open, TicketStatus::Held, TicketStatus::Resolved] {
            let count = tickets.iter().filter(|t| t.status == status).count();
            self.tickets.get_or_create(&StatusLabels { status: status.as_str().into() }).set(to_i64(count));
        }
        self.actions.clear();
        for status in ALL_STATUSES {
            self.actions.get_or_create(&ActionLabels { status: status.as_str().into(), outcome: "none".into() }).set(0);
        }
        for action in executor.actions() {
            let labels = ActionLabels { status: action.status.as_str().into(), outcome: outcome(&action).into() };
            self.actions.get_or_create(&labels).inc();
        }
        let safety = executor.safety();
        self.execute_mode.set(i64::from(safety.allows_execution()));
        self.kill_switch.set(i64::from(safety.kill_switch));
    }

    /// The exposition: the gauges refreshed from `tickets` and `executor`, then every family.
    pub fn render(&self, tickets: &[Ticket], executor: &Executor) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(tickets, executor);
        self.encode()
    }

    /// The exposition of the figures as they stand, without refreshing the gauges.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `outcome` label of an action: its verification once completed, `none` otherwise.
fn outcome(action: &Action) -> &'static str {
    match (action.status, &action.verification) {
        (ActionStatus::Completed, Some(Verification::Verified(_))) => "verified",
        (ActionStatus::Completed, Some(Verification::NotEffective(_))) => "not-effective",
        (ActionStatus::Completed, Some(Verification::Pending(_))) => "verifying",
        (ActionStatus::Completed, None) => "unverified",
        _ => "none",
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Link;

    fn call(plugin: &str, export: &str, outcome: CallOutcome) -> AuditEvent {
        AuditEvent::PluginCall {
            plugin: plugin.into(),
            version: "0.1.0".into(),
            component_sha256: String::new(),
            export: export.into(),
            args_sha256: String::new(),
            duration_us: 2_500,
            outcome,
            stdout_bytes: 0,
            stderr_bytes: 0,
            output_truncated: false,
            link: None,
        }
    }

    fn capability(target: &str, decision: Decision) -> AuditEvent {
        AuditEvent::Capability {
            plugin: "subject".into(),
            export: "observe".into(),
            target: target.into(),
            url: None,
            method: "GET".into(),
            path: "/v1/items".into(),
            decision,
            status: Some(200),
            bytes: 10,
            latency_us: 100,
            error: None,
            link: Some(Link::default()),
        }
    }

    #[test]
    fn audit_events_feed_the_call_and_capability_figures() {
        let metrics = Metrics::new();
        metrics.record_event(&call("subject", "observe", CallOutcome::Ok));
        metrics.record_event(&call("subject", "observe", CallOutcome::Timeout { after_ms: 5 }));
        metrics.record_event(&capability("api", Decision::Allowed { rule: "r".into() }));
        metrics.record_event(&capability("api", Decision::Denied { reason: "no".into(), rule: None }));
        metrics.record_event(&AuditEvent::note("ignored"));
        metrics.observe_diagnosis("claude", 3.5, 1200, 300);
        metrics.observe_cycle(0.05);
        metrics.observe_observation_failure();
        let text = metrics.encode();
        assert!(
            text.contains(r#"operator_plugin_calls_total{plugin="subject",export="observe",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"operator_plugin_calls_total{plugin="subject",export="observe",outcome="timeout"} 1"#));
        assert!(text.contains(r#"operator_plugin_call_duration_seconds_count{plugin="subject",export="observe"} 2"#));
        assert!(
            text.contains(r#"operator_capability_decisions_total{plugin="subject",target="api",decision="allowed"} 1"#)
        );
        assert!(
            text.contains(r#"operator_capability_decisions_total{plugin="subject",target="api",decision="denied"} 1"#)
        );
        assert!(text.contains(r#"operator_diagnosis_tokens_total{diagnoser="claude",direction="input"} 1200"#));
        assert!(text.contains(r#"operator_diagnosis_duration_seconds_sum{diagnoser="claude"} 3.5"#));
        assert!(text.contains("operator_monitor_cycle_duration_seconds_count 1"));
        assert!(text.contains("operator_observation_failures_total 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn capability_targets_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_TARGETS + 10 {
            metrics.record_event(&capability(&format!("http://host-{i}"), Decision::Allowed { rule: "r".into() }));
        }
        metrics.record_event(&capability("http://host-0", Decision::Allowed { rule: "r".into() }));
        let text = metrics.encode();
        let series = text.lines().filter(|l| l.starts_with("operator_capability_decisions_total{")).count();
        assert_eq!(series, MAX_TARGETS + 1);
        assert!(text.contains(r#"target="other",decision="allowed"} 10"#), "{text}");
        assert!(text.contains(r#"target="http://host-0",decision="allowed"} 2"#));
    }
}
