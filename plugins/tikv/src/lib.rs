//! The TiKV subject: everything the operator knows about TiKV, reached only through PD's HTTP API
//! (endpoint `pd`), the stores' status ports (by URL pattern) and Prometheus (endpoint
//! `prometheus`), each only when the operator grants it.
//!
//! | module | export | what it does |
//! |---|---|---|
//! | [`observe`] | `observe` | one snapshot: stores, PD, abnormal regions, top write and read regions and store flow, operators, schedulers, config, probes, metrics |
//! | [`check`] | `check`, `info` | the invariants and their violations |
//! | [`actions`] | `precheck`, `execute`, `verify`, `reconcile` | the action catalogue |
//! | [`diagnose`] | `diagnose` | expert rules for S1–S12 |
//! | [`queries`] | `query` | read-only questions for an investigator |
//! | [`conditions`] | `condition` | what workflows wait for |
//! | [`summary`] | `summarize` | stores and PD members for the host's screens |
//!
//! PD's wire formats live in [`wire`] and [`units`]; thresholds in [`settings`].

// The generated export glue flattens records into many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "subject", path: "../../wit" });

pub mod actions;
pub mod check;
pub mod conditions;
pub mod diagnose;
pub mod observe;
pub mod params;
pub mod pd;
pub mod queries;
pub mod settings;
pub mod snapshot;
pub mod summary;
pub mod units;
pub mod wire;

use operator::plugin::log::{self as host_log, Level};
use settings::Settings;
use snapshot::Snapshot;

struct Tikv;

fn settings() -> Result<Settings, String> {
    Settings::from_host(&check::invariant_names())
}

fn snapshot(observation: &Observation) -> Result<Snapshot, String> {
    serde_json::from_str(&observation.payload).map_err(|e| format!("the observation is not one this plugin wrote: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Guest for Tikv {
    fn info() -> SubjectInfo {
        let settings = settings().unwrap_or_else(|e| {
            host_log::emit(Level::Warn, &format!("using default settings: {e}"));
            Settings::default()
        });
        SubjectInfo {
            name: "tikv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "TiKV clusters, through PD's HTTP API".into(),
            invariants: check::specs(&settings),
            actions: actions::catalogue(),
            queries: queries::specs(),
            conditions: conditions::specs(),
        }
    }

    fn observe() -> Result<Observation, String> {
        let settings = settings()?;
        let taken_at_ms = now_ms();
        let mut observed = observe::observe(&settings)?;
        if observed.succeeded == 0 {
            observed.snapshot.pd.unreachable = true;
        }
        Ok(Observation {
            taken_at_ms,
            complete: observed.errors.is_empty(),
            errors: observed.errors,
            payload: serde_json::to_string(&observed.snapshot).map_err(|e| e.to_string())?,
        })
    }

    fn check(observation: Observation) -> Vec<Violation> {
        let (snap, settings) = match (snapshot(&observation), settings()) {
            (Ok(snap), Ok(settings)) => (snap, settings),
            (Err(e), _) | (_, Err(e)) => {
                host_log::emit(Level::Error, &format!("check skipped: {e}"));
                return Vec::new();
            }
        };
        check::check(&snap, &settings)
    }

    fn summarize(observation: Observation) -> Vec<EntitySummary> {
        match (snapshot(&observation), settings()) {
            (Ok(snap), Ok(settings)) => summary::summarize(&snap, &settings),
            _ => Vec::new(),
        }
    }

    fn diagnose(ticket: Ticket, observation: Observation) -> Result<Diagnosis, String> {
        diagnose::diagnose(&ticket, &snapshot(&observation)?, &settings()?)
    }

    fn precheck(action: String, params: Vec<Param>, observation: Observation) -> Result<(), ActionError> {
        let snap = snapshot(&observation).map_err(ActionError::Failed)?;
        let settings = settings().map_err(ActionError::Failed)?;
        actions::precheck(&action, &params, &snap, &settings)
    }

    fn execute(action: String, params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        actions::execute(&action, &params)
    }

    fn verify(action: String, params: Vec<Param>, observation: Observation) -> Verdict {
        match snapshot(&observation) {
            Ok(snap) => actions::verify(&action, &params, &snap),
            Err(e) => Verdict::NotYet(e),
        }
    }

    fn reconcile(action: String, params: Vec<Param>, started_at_ms: u64) -> Reconciliation {
        actions::reconcile(&action, &params, started_at_ms)
    }

    fn query(name: String, params: Vec<Param>) -> Result<String, String> {
        queries::query(&name, &params)
    }

    fn condition(name: String, params: Vec<Param>, observation: Observation) -> Result<bool, String> {
        conditions::condition(&name, &params, &snapshot(&observation)?)
    }
}

export!(Tikv);
