//! Workflows against the simulated cluster (speed 0, stepped by hand): the built-in `drain-store`
//! through the real executor, with its approval, a failing wait and its compensation, resume
//! after the fix, and the kill switch.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use common::tikv::Tikv;
use operator_host::actions::executor::Executor;
use operator_host::actions::ledger::{Action, ActionStatus};
use operator_host::actions::policy::{ActionsConfig, ApprovalPolicy, ApprovalRule, Mode};
use operator_host::actions::store::ActionStore;
use operator_host::actions::workflow::{
    EngineSettings, StepRun, StepState, WorkflowEngine, WorkflowRun, WorkflowStatus,
};
use operator_host::actions::workflow_store::WorkflowStore;
use operator_host::audit::{AuditEvent, now_ms};
use operator_host::monitor::tickets::TicketStore;
use operator_host::monitor::{LatestObservation, SharedObservation};
use tikv_sim::ClusterSpec;
use tikv_sim::model::StoreState;

const STORE: u64 = 1;

/// The plugin, the executor and the workflow engine over a simulated cluster, with a clock of
/// their own (the simulator only moves when stepped).
struct Rig {
    t: Tikv,
    executor: Arc<Executor>,
    engine: WorkflowEngine,
    latest: SharedObservation,
    now: u64,
}

/// Every action runs without a human.
fn auto() -> ActionsConfig {
    ActionsConfig {
        approval: ApprovalPolicy {
            low: ApprovalRule::Auto,
            medium: ApprovalRule::Auto,
            high: ApprovalRule::Auto,
            ..ApprovalPolicy::default()
        },
        ..ActionsConfig::default()
    }
}

impl Rig {
    async fn new(config: ActionsConfig) -> Rig {
        let t = Tikv::start(ClusterSpec { stores: 5, regions: 120, ..ClusterSpec::default() }).await;
        let store = t.h.log.store().clone();
        let latest: SharedObservation = Arc::new(RwLock::new(None));
        let executor = Arc::new(
            Executor::new(
                t.plugin.clone(),
                None,
                ActionStore::new(store.clone()),
                TicketStore::new(store.clone()),
                t.h.sink.clone(),
                config.clone(),
                30_000,
                latest.clone(),
            )
            .await
            .unwrap(),
        );
        let now = now_ms();
        executor.set_mode(Mode::Execute, "test", "workflow tests", now).await.unwrap();
        let settings =
            EngineSettings { approval: config.approval.clone(), stale_after_ms: 30_000, latest: latest.clone() };
        let engine = WorkflowEngine::new(
            executor.clone(),
            t.plugin.clone(),
            None,
            WorkflowStore::new(store),
            t.h.sink.clone(),
            settings,
        )
        .await
        .unwrap();
        assert!(engine.refused().is_empty(), "{:?}", engine.refused());
        Rig { t, executor, engine, latest, now }
    }

    /// What the monitor does each cycle: observe, and share the observation.
    async fn observe(&self) {
        let observation = self.t.observe().await;
        *self.latest.write().unwrap() = Some(LatestObservation { observation, at_ms: self.now, violations: vec![] });
    }

    /// One round of the daemon: the cluster moves `sim_ms`, the clock `clock_ms`; then observe,
    /// the executor's tick, the workflow engine's tick.
    async fn tick(&mut self, sim_ms: u64, clock_ms: u64) {
        if sim_ms > 0 {
            self.t.sim.step(sim_ms);
        }
        self.now += clock_ms;
        self.observe().await;
        self.executor.tick(self.now).await.unwrap();
        self.engine.tick(self.now).await.unwrap();
    }

    fn run(&self, id: &str) -> WorkflowRun {
        self.engine.run(id).unwrap().unwrap()
    }

    /// Ticks until `done` holds of the run (at most `max` ticks).
    async fn until(
        &mut self,
        id: &str,
        sim_ms: u64,
        clock_ms: u64,
        max: usize,
        what: &str,
        done: impl Fn(&WorkflowRun) -> bool,
    ) -> WorkflowRun {
        for _ in 0..max {
            let run = self.run(id);
            if done(&run) {
                return run;
            }
            self.tick(sim_ms, clock_ms).await;
        }
        let run = self.run(id);
        assert!(done(&run), "{what}: not within {max} ticks; run: {:#?}\nactions: {:#?}", run, self.actions(&run));
        run
    }

    async fn start(&mut self) -> WorkflowRun {
        let params: BTreeMap<String, String> = [("store".to_owned(), STORE.to_string())].into_iter().collect();
        self.engine.start("drain-store", params, None, "alice", self.now).await.unwrap()
    }

    /// The actions of a run, oldest first.
    fn actions(&self, run: &WorkflowRun) -> Vec<Action> {
        let mut out: Vec<Action> = self
            .executor
            .actions()
            .into_iter()
            .filter(|a| a.workflow.as_ref().is_some_and(|l| l.workflow == run.id))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn store_state(&self) -> StoreState {
        self.t.sim.sim().store(STORE).unwrap().state
    }

    async fn schedulers(&self) -> Vec<String> {
        let pd = self.t.sim.pd_urls()[0].clone();
        let text = reqwest::get(format!("{pd}/pd/api/v1/schedulers")).await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn leaders(&self) -> u64 {
        self.t.sim.sim().store_stats()[&STORE].leader_count
    }

    /// Workflow state changes in the audit log, as `id: from → to`.
    async fn audited(&self, run: &WorkflowRun) -> Vec<String> {
        self.t
            .h
            .records()
            .await
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::StateChange { subject, id, from, to, .. }
                    if subject == "workflow" && id.starts_with(&run.id) =>
                {
                    Some(format!("{id}: {} → {to}", from.as_deref().unwrap_or("-")))
                }
                _ => None,
            })
            .collect()
    }
}

fn step<'r>(run: &'r WorkflowRun, name: &str) -> &'r StepRun {
    run.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn one_approval_lets_drain_store_run_every_step_to_a_tombstone() {
    // The default policy: evict-leaders (medium) and offline-store (high) each need approval.
    let mut rig = Rig::new(ActionsConfig::default()).await;
    let run = rig.start().await;
    assert_eq!(run.status, WorkflowStatus::AwaitingApproval);
    for _ in 0..3 {
        rig.tick(10_000, 10_000).await;
    }
    assert!(rig.actions(&run).is_empty(), "nothing is proposed before the approval");
    rig.engine.approve(&run.id, "carol", "planned decommission", rig.now).await.unwrap();

    let run = rig
        .until(&run.id, 10_000, 10_000, 200, "leaders evicted", |r| step(r, "evict-leaders").state == StepState::Done)
        .await;
    assert_eq!(rig.leaders(), 0, "no leader is left on store {STORE}");
    assert!(rig.schedulers().await.iter().any(|s| s.starts_with("evict-leader-scheduler")));
    assert!(step(&run, "offline-store").state != StepState::Pending, "the next step starts");

    let run = rig.until(&run.id, 60_000, 30_000, 600, "the drain completes", |r| r.status.is_settled()).await;
    assert_eq!(run.status, WorkflowStatus::Completed, "{run:#?}");
    assert_eq!(rig.store_state(), StoreState::Tombstone);

    // One human decision covered both actions: neither waited for approval.
    let actions = rig.actions(&run);
    assert_eq!(actions.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["evict-leaders", "offline-store"]);
    for a in &actions {
        assert_eq!(a.status, ActionStatus::Completed);
        assert!(!a.needs_approval, "{} needed its own approval", a.id);
        assert!(a.history.iter().all(|e| e.to != ActionStatus::AwaitingApproval));
        let decision = a.decision.as_ref().unwrap();
        assert_eq!((decision.by.as_str(), decision.reason.as_str()), ("carol", "planned decommission"));
        assert_eq!(a.source, "workflow");
    }
    // Each change was audited.
    let audited = rig.audited(&run).await;
    for expected in [
        "awaiting-approval → running",
        "/evict-leaders: pending → running",
        "/evict-leaders: waiting → done",
        "/offline-store: waiting → done",
        "running → completed",
    ] {
        assert!(audited.iter().any(|a| a.contains(expected)), "`{expected}` not audited: {audited:#?}");
    }
    rig.t.sim.shutdown().await;
}

#[tokio::test]
async fn a_wait_that_times_out_restores_the_leaders_and_resume_completes_after_the_fix() {
    let mut rig = Rig::new(auto()).await;
    let run = rig.start().await;
    assert_eq!(run.status, WorkflowStatus::Running);
    let run = rig
        .until(&run.id, 0, 10_000, 20, "leaders being evicted", |r| {
            matches!(step(r, "evict-leaders").state, StepState::Waiting { .. })
        })
        .await;
    assert!(rig.schedulers().await.iter().any(|s| s.starts_with("evict-leader-scheduler")));

    // The cluster is stuck (the simulator does not move): after 600 s the wait fails.
    let run = rig.until(&run.id, 0, 60_000, 20, "the workflow fails", |r| r.status == WorkflowStatus::Failed).await;
    assert!(run.failure.as_deref().unwrap().contains("timed out after 600 s"), "{:?}", run.failure);
    assert_eq!(step(&run, "evict-leaders").state, StepState::Compensated);
    assert_eq!(step(&run, "offline-store").state, StepState::Pending, "the next step never ran");
    let actions = rig.actions(&run);
    assert_eq!(actions.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["evict-leaders", "restore-leaders"]);
    let restore = &actions[1];
    assert_eq!(restore.status, ActionStatus::Completed);
    assert!(restore.workflow.as_ref().unwrap().compensation);
    assert!(
        !rig.schedulers().await.iter().any(|s| s.starts_with("evict-leader-scheduler")),
        "the evict-leader scheduler is gone from PD"
    );
    assert_eq!(rig.store_state(), StoreState::Up);

    // The fix: the cluster moves again. Resume re-runs the compensated step, then the rest.
    let run = rig.engine.resume(&run.id, "bob", rig.now).await.unwrap();
    assert_eq!(run.status, WorkflowStatus::Running);
    let run = rig.until(&run.id, 60_000, 30_000, 600, "the resumed drain completes", |r| r.status.is_settled()).await;
    assert_eq!(run.status, WorkflowStatus::Completed, "{run:#?}");
    assert_eq!(rig.store_state(), StoreState::Tombstone);
    let names: Vec<String> = rig.actions(&run).iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, ["evict-leaders", "restore-leaders", "evict-leaders", "offline-store"]);
    let audited = rig.audited(&run).await;
    for expected in ["running → compensating", "compensating → failed", "failed → running", "running → completed"]
    {
        assert!(audited.iter().any(|a| a.ends_with(expected)), "`{expected}` not audited: {audited:#?}");
    }
    rig.t.sim.shutdown().await;
}

#[tokio::test]
async fn the_kill_switch_stops_a_workflow_at_its_next_step_and_it_resumes_after_release() {
    let mut rig = Rig::new(auto()).await;
    let run = rig.start().await;
    // Leaders leave; the offline step is proposed but held by the store's cooldown.
    let run = rig
        .until(&run.id, 10_000, 10_000, 200, "the offline step proposed", |r| {
            matches!(step(r, "offline-store").state, StepState::Running { .. })
        })
        .await;
    let StepState::Running { action: offline } = step(&run, "offline-store").state.clone() else { unreachable!() };
    assert_eq!(rig.executor.action(&offline).unwrap().status, ActionStatus::Ready, "held by the cooldown");

    rig.executor.kill("dave", "incident", rig.now).await.unwrap();
    rig.tick(10_000, 10_000).await;
    let run = rig.run(&run.id);
    assert_eq!(run.status, WorkflowStatus::Stopped);
    assert_eq!(step(&run, "offline-store").state, StepState::Pending);
    assert_eq!(rig.executor.action(&offline).unwrap().status, ActionStatus::Cancelled);
    let before = rig.actions(&run).len();
    for _ in 0..40 {
        rig.tick(10_000, 10_000).await;
    }
    let run = rig.run(&run.id);
    assert_eq!(run.status, WorkflowStatus::Stopped, "a stopped workflow stays stopped");
    assert_eq!(rig.actions(&run).len(), before, "nothing more is proposed");
    assert_eq!(rig.store_state(), StoreState::Up, "the store was not taken offline");
    assert!(rig.engine.resume(&run.id, "dave", rig.now).await.unwrap_err().to_string().contains("kill switch"));

    rig.executor.release("dave", "incident over", rig.now).await.unwrap();
    rig.executor.set_mode(Mode::Execute, "dave", "back to work", rig.now).await.unwrap();
    let run = rig.engine.resume(&run.id, "dave", rig.now).await.unwrap();
    assert_eq!(run.status, WorkflowStatus::Running);
    let run = rig.until(&run.id, 60_000, 30_000, 600, "the resumed drain completes", |r| r.status.is_settled()).await;
    assert_eq!(run.status, WorkflowStatus::Completed, "{run:#?}");
    assert_eq!(rig.store_state(), StoreState::Tombstone);
    let names: Vec<String> = rig.actions(&run).iter().map(|a| format!("{} {}", a.name, a.status)).collect();
    assert_eq!(names, ["evict-leaders completed", "offline-store cancelled", "offline-store completed"]);
    rig.t.sim.shutdown().await;
}
