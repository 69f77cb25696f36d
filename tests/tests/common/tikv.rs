//! The built-in TiKV plugin over a simulated cluster, through the real host runtime: one place
//! for the grants, the calls and the stepping that the TiKV suites share.

use std::collections::BTreeMap;
use std::sync::Arc;

use operator_host::audit::AuditEvent;
use operator_host::config::{Config, PluginConfig};
use operator_host::runtime::bindings::types::{
    ActionError, Diagnosis, Observation, Param, ParamValue, Ticket, Verdict, Violation,
};
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use operator_host::runtime::{CallContext, ExecutionPermit, Plugin};
use tikv_sim::{ClusterSpec, SimCluster};

use super::Harness;

/// The TiKV plugin over a simulated cluster stepped by hand (speed 0).
pub struct Tikv {
    pub sim: Arc<SimCluster>,
    pub h: Harness,
    pub plugin: Arc<Plugin>,
    pub context: CallContext,
}

pub fn grant(endpoint: Option<&str>, url: Option<&str>, methods: &[&str], paths: &[&str]) -> GrantSpec {
    GrantSpec {
        endpoint: endpoint.map(Into::into),
        url: url.map(Into::into),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// A configuration granting the TiKV plugin PD (read and write) and the stores' status ports.
pub fn config_for(pd_urls: Vec<String>, settings: &[(&str, &str)]) -> Config {
    let mut config = Config::default();
    config
        .endpoints
        .insert("pd".into(), EndpointConfig { urls: pd_urls, bearer_token_env: None, headers: BTreeMap::new() });
    let grants = vec![
        grant(Some("pd"), None, &["GET", "POST", "DELETE"], &["/pd/api/v1/**"]),
        grant(None, Some("http://127.0.0.1:*"), &["GET"], &["/status"]),
    ];
    let settings = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    config.plugins.insert("tikv".into(), PluginConfig { grants, settings, ..PluginConfig::default() });
    config
}

impl Tikv {
    pub async fn start(spec: ClusterSpec) -> Tikv {
        Tikv::with_settings(spec, &[]).await
    }

    pub async fn with_settings(spec: ClusterSpec, settings: &[(&str, &str)]) -> Tikv {
        let sim = SimCluster::start(spec, 0.0).await.unwrap();
        let h = Harness::new(config_for(sim.pd_urls(), settings));
        let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
        let plugin = plugins.get("tikv").expect("the built-in TiKV plugin loads").clone();
        // Let the first heartbeats arrive so PD's clock is known.
        sim.step(11_000);
        Tikv { sim, h, plugin, context: CallContext::default() }
    }

    pub async fn observe(&self) -> Observation {
        self.plugin.as_subject().unwrap().observe(&self.context).await.unwrap().expect("observe succeeds")
    }

    pub async fn check(&self) -> (Observation, Vec<Violation>) {
        let observation = self.observe().await;
        let violations = self.plugin.as_subject().unwrap().check(&self.context, &observation).await.unwrap();
        (observation, violations)
    }

    /// Violations as `invariant@entity`.
    pub async fn violation_keys(&self) -> Vec<String> {
        let (observation, violations) = self.check().await;
        assert!(observation.complete, "observation errors: {:?}", observation.errors);
        violations.iter().map(|v| format!("{}@{}", v.invariant, v.entity)).collect()
    }

    pub async fn violation(&self, invariant: &str, entity: &str) -> (Observation, Violation) {
        let (observation, violations) = self.check().await;
        let found = violations.iter().find(|v| v.invariant == invariant && v.entity == entity).cloned();
        let found = found.unwrap_or_else(|| panic!("no {invariant}@{entity} among {violations:?}"));
        (observation, found)
    }

    pub async fn diagnose(&self, violation: &Violation, observation: &Observation) -> Diagnosis {
        let ticket = Ticket {
            id: "T-1".into(),
            invariant: violation.invariant.clone(),
            entity: violation.entity.clone(),
            severity: violation.severity,
            message: violation.message.clone(),
            evidence: violation.evidence.clone(),
            opened_at_ms: observation.taken_at_ms,
            last_seen_ms: observation.taken_at_ms,
            occurrences: 1,
        };
        self.plugin
            .as_subject()
            .unwrap()
            .diagnose(&self.context, &ticket, observation)
            .await
            .unwrap()
            .expect("diagnosis")
    }

    pub async fn precheck(&self, action: &str, params: &[Param]) -> Result<(), ActionError> {
        let observation = self.observe().await;
        self.plugin.as_subject().unwrap().precheck(&self.context, action, params, &observation).await.unwrap()
    }

    pub async fn execute(&self, action: &str, params: &[Param]) {
        self.precheck(action, params).await.unwrap_or_else(|e| panic!("{action} precheck: {e:?}"));
        let permit = ExecutionPermit::for_approved_action(format!("A-{action}"));
        let outcome = self.plugin.as_subject().unwrap().execute(&self.context, &permit, action, params).await.unwrap();
        outcome.unwrap_or_else(|e| panic!("{action} failed: {e:?}"));
    }

    pub async fn verify(&self, action: &str, params: &[Param]) -> Verdict {
        let observation = self.observe().await;
        self.plugin.as_subject().unwrap().verify(&self.context, action, params, &observation).await.unwrap()
    }

    /// Steps simulated time (`step_ms` at a time) until `verify` holds, at most `max_ms`.
    pub async fn verify_within(&self, action: &str, params: &[Param], step_ms: u64, max_ms: u64) -> Verdict {
        let mut waited = 0;
        loop {
            let verdict = self.verify(action, params).await;
            if matches!(verdict, Verdict::Holds(_)) || waited >= max_ms {
                return verdict;
            }
            self.sim.step(step_ms);
            waited += step_ms;
        }
    }

    pub async fn mutating_requests(&self) -> usize {
        self.h
            .records()
            .await
            .iter()
            .filter(
                |r| matches!(&r.event, AuditEvent::Capability { method, .. } if method != "GET" && method != "HEAD"),
            )
            .count()
    }
}

pub fn int(name: &str, value: u64) -> Param {
    Param { name: name.into(), value: ParamValue::Integer(value as i64) }
}

pub fn text(name: &str, value: &str) -> Param {
    Param { name: name.into(), value: ParamValue::Text(value.into()) }
}

pub fn num(name: &str, value: f64) -> Param {
    Param { name: name.into(), value: ParamValue::Number(value) }
}

pub fn param_int(params: &[Param], name: &str) -> u64 {
    match params.iter().find(|p| p.name == name).map(|p| &p.value) {
        Some(ParamValue::Integer(v)) => *v as u64,
        other => panic!("{name}: {other:?}"),
    }
}
