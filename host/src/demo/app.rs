//! The demo's state: which chapter it is in, the fault run under way, and what each key does.
//! Pure: the terminal loop feeds it keys, the clock and snapshots of the pipeline ([`World`]),
//! and carries out the [`Effect`]s it returns.

use std::collections::BTreeMap;

use crate::actions::ledger::{Action, ActionStatus, Verification};
use crate::monitor::tickets::{Ticket, TicketStatus};

use super::scenarios::{self, Scenario};

/// How long the countdown before an injection lasts, ms.
pub const COUNTDOWN_MS: u64 = 3_000;

/// The chapters, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chapter {
    /// The cluster runs normally.
    Healthy,
    /// A scenario is picked from the menu and injected after a countdown.
    Inject,
    /// The monitor notices and opens a ticket.
    Detection,
    /// The diagnoser explains the ticket.
    Diagnosis,
    /// The diagnosis' recommendation becomes a proposed action.
    Proposal,
    /// A human approves or rejects it.
    Approval,
    /// The executor runs it against the cluster.
    Execution,
    /// The plugin checks that it had its effect.
    Verification,
    /// The violation is gone and the ticket resolves.
    Recovery,
}

impl Chapter {
    /// Every chapter, in order.
    pub const ALL: [Chapter; 9] = [
        Chapter::Healthy,
        Chapter::Inject,
        Chapter::Detection,
        Chapter::Diagnosis,
        Chapter::Proposal,
        Chapter::Approval,
        Chapter::Execution,
        Chapter::Verification,
        Chapter::Recovery,
    ];

    /// 1-based position.
    pub fn number(self) -> usize {
        Chapter::ALL.iter().position(|c| *c == self).unwrap_or(0) + 1
    }

    /// The chapter's title.
    pub fn title(self) -> &'static str {
        match self {
            Chapter::Healthy => "Healthy cluster",
            Chapter::Inject => "Fault injection",
            Chapter::Detection => "Detection",
            Chapter::Diagnosis => "Diagnosis",
            Chapter::Proposal => "Proposal",
            Chapter::Approval => "Approval",
            Chapter::Execution => "Execution",
            Chapter::Verification => "Verification",
            Chapter::Recovery => "Recovery",
        }
    }

    fn next(self) -> Chapter {
        Chapter::ALL.get(self.number()).copied().unwrap_or(Chapter::Healthy)
    }
}

/// A key, as far as the demo cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Arrow right.
    Right,
    /// Ctrl-C.
    Interrupt,
}

/// Something the terminal loop must do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Inject the scenario with this index into the simulator, then call [`App::injected`].
    Inject(usize),
    /// Clear every active fault of the simulator (what a human fixing the cluster would do).
    ClearFaults,
    /// Approve this action.
    Approve(String),
    /// Reject this action.
    Reject(String),
    /// Stop the pipeline and leave.
    Quit,
}

/// How a summarised entity is doing (the subject plugin's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Fine.
    Healthy,
    /// Working, but something is off.
    Degraded,
    /// Not working.
    Down,
    /// Not known.
    Unknown,
}

/// One entity of the subject plugin's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its kind, as the plugin names it (e.g. `node`).
    pub kind: String,
    /// Its id.
    pub id: String,
    /// Its health.
    pub health: Health,
    /// Named figures: name, value, unit.
    pub figures: Vec<(String, f64, String)>,
    /// A short note.
    pub note: String,
}

/// One record of the audit stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    /// Unix ms.
    pub at_ms: u64,
    /// The event's kind (`state-change`, `capability`, …).
    pub kind: String,
    /// One line on it.
    pub text: String,
}

/// What the pipeline and the simulator look like now.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// The subject plugin's summary of the latest observation.
    pub entities: Vec<Entity>,
    /// When that observation was taken, unix ms.
    pub observed_at_ms: Option<u64>,
    /// The simulated workload, requests per simulated second, oldest sample first.
    pub ops: Vec<u64>,
    /// Every ticket, newest first.
    pub tickets: Vec<Ticket>,
    /// Every action, newest first.
    pub actions: Vec<Action>,
    /// The latest audit records worth reading (routine reads left out), oldest first.
    pub audit: Vec<AuditLine>,
    /// Audit records since the demo started, routine ones included.
    pub audit_total: u64,
    /// The safety mode.
    pub mode: String,
    /// Whether the kill switch is on.
    pub kill_switch: bool,
    /// Simulated seconds since the cluster started.
    pub sim_secs: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// The simulator's active faults (ground truth the operator does not see).
    pub faults: Vec<String>,
}

impl World {
    /// A ticket by id.
    pub fn ticket(&self, id: &str) -> Option<&Ticket> {
        self.tickets.iter().find(|t| t.id == id)
    }

    /// An action by id.
    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }

    /// Tickets not resolved.
    pub fn active_tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.iter().filter(|t| t.status != TicketStatus::Resolved)
    }
}

/// A countdown to an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Countdown {
    /// The scenario.
    pub scenario: usize,
    /// When it ends, unix ms.
    pub ends_ms: u64,
}

/// One fault, from its injection to the recovery.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// The scenario.
    pub scenario: usize,
    /// When the simulator took the fault (none while the injection is in flight), unix ms.
    pub injected_at_ms: Option<u64>,
    /// The first ticket opened (or re-opened) after the injection.
    pub ticket: Option<String>,
    /// The first action proposed for that ticket.
    pub action: Option<String>,
    /// Whether the human in front of the demo decided on the action: approved (true) or rejected.
    pub decided: Option<bool>,
    /// Whether the faults were cleared by hand.
    pub cleared_by_hand: bool,
    /// When the demo first saw each chapter's milestone, unix ms.
    pub reached_at: BTreeMap<Chapter, u64>,
}

/// The demo's state.
#[derive(Debug, Clone)]
pub struct App {
    /// The current chapter.
    pub chapter: Chapter,
    /// The menu entry under the cursor.
    pub selected: usize,
    /// The countdown running, if any.
    pub countdown: Option<Countdown>,
    /// The fault run under way, if any.
    pub run: Option<Run>,
    /// A line for the user (a refusal, what is awaited), with when it was set.
    pub notice: Option<(String, u64)>,
    /// The fault menu.
    pub scenarios: Vec<Scenario>,
    /// Set once `q` was pressed.
    pub quitting: bool,
}

impl App {
    /// A demo starting at the healthy cluster.
    pub fn new(scenarios: Vec<Scenario>) -> App {
        App {
            chapter: Chapter::Healthy,
            selected: 0,
            countdown: None,
            run: None,
            notice: None,
            scenarios,
            quitting: false,
        }
    }

    /// The scenario of the current run.
    pub fn scenario(&self) -> Option<&Scenario> {
        self.run.as_ref().and_then(|r| self.scenarios.get(r.scenario))
    }

    /// The ticket of the current run, as the world shows it.
    pub fn ticket<'w>(&self, world: &'w World) -> Option<&'w Ticket> {
        world.ticket(self.run.as_ref()?.ticket.as_deref()?)
    }

    /// The action of the current run, as the world shows it.
    pub fn action<'w>(&self, world: &'w World) -> Option<&'w Action> {
        world.action(self.run.as_ref()?.action.as_deref()?)
    }

    /// Whether the diagnosis proposed nothing (it recommends waiting, or its proposals were refused).
    pub fn nothing_proposed(&self, world: &World) -> bool {
        let Some(ticket) = self.ticket(world) else { return false };
        let Some(last) = ticket.diagnoses.last() else { return false };
        // `proposed_actions` is written once the proposals were made; before that, wait.
        last.get("proposed_actions").and_then(|p| p.as_array()).is_some_and(|p| p.is_empty())
            && self.run.as_ref().is_some_and(|r| r.action.is_none())
    }

    /// Whether what `chapter` waits for has happened.
    pub fn reached(&self, chapter: Chapter, world: &World) -> bool {
        let run = self.run.as_ref();
        let ticket = self.ticket(world);
        let action = self.action(world);
        match chapter {
            Chapter::Healthy => true,
            Chapter::Inject => run.is_some_and(|r| r.injected_at_ms.is_some()),
            Chapter::Detection => ticket.is_some(),
            Chapter::Diagnosis => ticket.is_some_and(|t| !t.diagnoses.is_empty()),
            Chapter::Proposal => action.is_some() || self.nothing_proposed(world),
            Chapter::Approval => action.is_some_and(|a| !a.awaits_approval()) || self.nothing_proposed(world),
            Chapter::Execution => action.is_some_and(|a| a.status.is_final()) || self.nothing_proposed(world),
            Chapter::Verification => match action {
                Some(a) if a.status == ActionStatus::Completed => {
                    matches!(a.verification, Some(Verification::Verified(_) | Verification::NotEffective(_)))
                }
                Some(a) => a.status.is_final(),
                None => self.nothing_proposed(world),
            },
            Chapter::Recovery => ticket.is_some_and(|t| t.status == TicketStatus::Resolved),
        }
    }

    /// Follows the pipeline: adopts the ticket opened after the injection and the action
    /// proposed for it, and notes when each milestone was first seen.
    pub fn observe(&mut self, world: &World, now_ms: u64) {
        let Some(run) = self.run.as_mut() else { return };
        let Some(injected) = run.injected_at_ms else { return };
        if run.ticket.is_none() {
            // Oldest first: the first problem the fault caused is the one the story follows.
            run.ticket = world
                .tickets
                .iter()
                .rev()
                .find(|t| t.history.iter().any(|e| e.at_ms >= injected && e.to == TicketStatus::Open))
                .map(|t| t.id.clone());
        }
        if run.action.is_none()
            && let Some(ticket) = &run.ticket
        {
            run.action = world
                .actions
                .iter()
                .rev()
                .find(|a| a.ticket.as_deref() == Some(ticket.as_str()) && a.created_ms >= injected)
                .map(|a| a.id.clone());
        }
        for chapter in Chapter::ALL {
            let seen = self.run.as_ref().is_some_and(|r| r.reached_at.contains_key(&chapter));
            if !seen
                && self.reached(chapter, world)
                && let Some(run) = self.run.as_mut()
            {
                run.reached_at.insert(chapter, now_ms);
            }
        }
    }

    /// Advances the clock: a finished countdown injects its scenario.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        match self.countdown {
            Some(c) if now_ms >= c.ends_ms => {
                self.countdown = None;
                self.run = Some(Run { scenario: c.scenario, ..Run::default() });
                vec![Effect::Inject(c.scenario)]
            }
            _ => vec![],
        }
    }

    /// The simulator's answer to [`Effect::Inject`].
    pub fn injected(&mut self, result: Result<(), String>, now_ms: u64) {
        match result {
            Ok(()) => {
                if let Some(run) = self.run.as_mut() {
                    run.injected_at_ms = Some(now_ms);
                    run.reached_at.insert(Chapter::Inject, now_ms);
                }
                self.chapter = Chapter::Detection;
            }
            Err(message) => {
                self.run = None;
                self.chapter = Chapter::Inject;
                self.notice = Some((format!("the simulator refused the fault: {message}"), now_ms));
            }
        }
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: Key, world: &World, now_ms: u64) -> Vec<Effect> {
        self.notice = None;
        if matches!(key, Key::Char('q') | Key::Interrupt) {
            self.quitting = true;
            return vec![Effect::Quit];
        }
        let next = matches!(key, Key::Char(' ' | 'n') | Key::Enter | Key::Right);
        match self.chapter {
            Chapter::Healthy => {
                if let Key::Char(c) = key
                    && let Some(i) = scenarios::by_key(c)
                {
                    return self.start_countdown(i, now_ms);
                }
                if next {
                    self.chapter = Chapter::Inject;
                }
                vec![]
            }
            Chapter::Inject => self.menu_key(key, now_ms),
            _ => self.story_key(key, next, world, now_ms),
        }
    }

    fn start_countdown(&mut self, scenario: usize, now_ms: u64) -> Vec<Effect> {
        if scenario >= self.scenarios.len() {
            return vec![];
        }
        self.chapter = Chapter::Inject;
        self.selected = scenario;
        self.countdown = Some(Countdown { scenario, ends_ms: now_ms + COUNTDOWN_MS });
        vec![]
    }

    fn menu_key(&mut self, key: Key, now_ms: u64) -> Vec<Effect> {
        if self.countdown.is_some() || self.run.is_some() {
            // Counting down (or injecting): only Esc, to call it off before it happens.
            if key == Key::Esc && self.countdown.is_some() {
                self.countdown = None;
            }
            return vec![];
        }
        let count = self.scenarios.len().max(1);
        match key {
            Key::Up | Key::Char('k') => self.selected = (self.selected + count - 1) % count,
            Key::Down | Key::Char('j') => self.selected = (self.selected + 1) % count,
            Key::Enter | Key::Char(' ') => return self.start_countdown(self.selected, now_ms),
            Key::Esc => self.chapter = Chapter::Healthy,
            Key::Char(c) => {
                if let Some(i) = scenarios::by_key(c) {
                    return self.start_countdown(i, now_ms);
                }
            }
            _ => {}
        }
        vec![]
    }

    fn story_key(&mut self, key: Key, next: bool, world: &World, now_ms: u64) -> Vec<Effect> {
        let awaiting = self.action(world).filter(|a| a.awaits_approval()).map(|a| a.id.clone());
        match key {
            Key::Char('a' | 'r') => {
                let Some(id) = awaiting else {
                    self.notice = Some(("no action awaits approval".into(), now_ms));
                    return vec![];
                };
                let approve = key == Key::Char('a');
                if let Some(run) = self.run.as_mut() {
                    run.decided = Some(approve);
                }
                if approve {
                    self.chapter = Chapter::Execution;
                    return vec![Effect::Approve(id)];
                }
                self.chapter = Chapter::Recovery;
                self.notice = Some(("rejected: nothing runs; press c to fix the cluster by hand".into(), now_ms));
                return vec![Effect::Reject(id)];
            }
            Key::Char('c') => {
                if let Some(run) = self.run.as_mut() {
                    run.cleared_by_hand = true;
                }
                self.chapter = Chapter::Recovery;
                return vec![Effect::ClearFaults];
            }
            _ => {}
        }
        if !next {
            return vec![];
        }
        if !self.reached(self.chapter, world) {
            self.notice = Some((format!("{} is still under way", self.chapter.title()), now_ms));
            return vec![];
        }
        if self.chapter == Chapter::Recovery {
            // A new round starts from a clean cluster.
            self.chapter = Chapter::Healthy;
            self.run = None;
            return vec![Effect::ClearFaults];
        }
        self.chapter = self.chapter.next();
        // Without a proposal there is nothing to approve, run or verify: a human fixes it.
        if self.chapter > Chapter::Proposal && self.nothing_proposed(world) {
            self.chapter = Chapter::Recovery;
        }
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ticket(id: &str, opened_ms: u64, status: &str, diagnoses: serde_json::Value) -> Ticket {
        serde_json::from_value(json!({
            "id": id, "plugin": "p", "invariant": "inv", "entity": "e-1", "severity": "warning",
            "status": status, "message": "broken", "evidence": [], "first_seen_ms": opened_ms,
            "opened_at_ms": opened_ms, "last_seen_ms": opened_ms, "occurrences": 1, "absent_since_ms": null,
            "resolved_at_ms": null, "resolution": null, "reopened": 0, "diagnoses": diagnoses, "actions": [],
            "history": [{"at_ms": opened_ms, "from": null, "to": "open", "reason": "seen", "actor": "monitor"}],
        }))
        .unwrap()
    }

    fn action(id: &str, ticket: &str, created_ms: u64, status: &str, verification: serde_json::Value) -> Action {
        serde_json::from_value(json!({
            "id": id, "plugin": "p", "name": "fix", "params": [], "risk": "low", "entity": null,
            "ticket": ticket, "workflow": null, "source": "diagnosis", "proposed_by": "diagnoser:rules",
            "status": status, "needs_approval": true, "decision": null, "created_ms": created_ms,
            "approval_expires_ms": null, "not_before_ms": 0, "attempts": 0, "next_attempt_ms": null,
            "started_ms": [], "last_error": null, "outcome": null, "verify_window_secs": 60,
            "verification": verification, "history": [],
        }))
        .unwrap()
    }

    fn app() -> App {
        App::new(scenarios::menu(&[1, 2, 3]))
    }

    fn press(app: &mut App, world: &World, keys: &str, now: u64) -> Vec<Effect> {
        keys.chars().flat_map(|c| app.on_key(Key::Char(c), world, now)).collect()
    }

    #[test]
    fn a_fault_run_walks_every_chapter_as_the_pipeline_gets_there() {
        let mut app = app();
        let mut world = World::default();
        assert_eq!(app.chapter, Chapter::Healthy);
        assert!(press(&mut app, &world, " ", 0).is_empty());
        assert_eq!(app.chapter, Chapter::Inject);
        // The menu: down three times is S4; Enter starts the countdown, which injects when it ends.
        for _ in 0..3 {
            app.on_key(Key::Down, &world, 0);
        }
        assert!(app.on_key(Key::Enter, &world, 1_000).is_empty());
        assert_eq!(app.countdown, Some(Countdown { scenario: 3, ends_ms: 1_000 + COUNTDOWN_MS }));
        assert!(app.tick(2_000).is_empty());
        assert_eq!(app.tick(4_000), vec![Effect::Inject(3)]);
        assert_eq!(app.scenario().unwrap().id, "S4");
        app.injected(Ok(()), 4_100);
        assert_eq!(app.chapter, Chapter::Detection);

        // Nothing detected yet: space does not move on.
        app.observe(&world, 4_200);
        assert!(!app.reached(Chapter::Detection, &world));
        press(&mut app, &world, " ", 4_300);
        assert_eq!(app.chapter, Chapter::Detection);
        assert!(app.notice.as_ref().unwrap().0.contains("under way"));

        // An older ticket (opened before the injection) is not this run's.
        world.tickets = vec![ticket("T-000002", 9_000, "open", json!([])), ticket("T-000001", 100, "open", json!([]))];
        app.observe(&world, 9_100);
        assert_eq!(app.run.as_ref().unwrap().ticket.as_deref(), Some("T-000002"));
        press(&mut app, &world, " ", 9_200);
        assert_eq!(app.chapter, Chapter::Diagnosis);

        world.tickets[0] = ticket("T-000002", 9_000, "open", json!([{"diagnosis": {"summary": "x"}}]));
        app.observe(&world, 9_300);
        press(&mut app, &world, "n", 9_400);
        assert_eq!(app.chapter, Chapter::Proposal);
        // `a` with nothing awaiting approval does nothing but say so.
        assert!(press(&mut app, &world, "a", 9_450).is_empty());
        assert!(app.notice.is_some());

        world.actions = vec![action("A-000001", "T-000002", 9_350, "awaiting-approval", json!(null))];
        app.observe(&world, 9_500);
        assert_eq!(app.run.as_ref().unwrap().action.as_deref(), Some("A-000001"));
        assert!(app.reached(Chapter::Proposal, &world) && !app.reached(Chapter::Approval, &world));
        press(&mut app, &world, " ", 9_600);
        assert_eq!(app.chapter, Chapter::Approval);
        assert_eq!(press(&mut app, &world, "a", 9_700), vec![Effect::Approve("A-000001".into())]);
        assert_eq!(app.chapter, Chapter::Execution);
        assert_eq!(app.run.as_ref().unwrap().decided, Some(true));

        world.actions[0] = action("A-000001", "T-000002", 9_350, "executing", json!(null));
        press(&mut app, &world, " ", 9_800);
        assert_eq!(app.chapter, Chapter::Execution, "still executing");
        world.actions[0] = action("A-000001", "T-000002", 9_350, "completed", json!({"state": "pending", "detail": 1}));
        press(&mut app, &world, " ", 9_900);
        assert_eq!(app.chapter, Chapter::Verification);
        press(&mut app, &world, " ", 9_950);
        assert_eq!(app.chapter, Chapter::Verification, "verification pending");
        world.actions[0] =
            action("A-000001", "T-000002", 9_350, "completed", json!({"state": "verified", "detail": "ok"}));
        press(&mut app, &world, " ", 10_000);
        assert_eq!(app.chapter, Chapter::Recovery);
        press(&mut app, &world, " ", 10_100);
        assert_eq!(app.chapter, Chapter::Recovery, "the ticket is still open");
        world.tickets[0].status = TicketStatus::Resolved;
        app.observe(&world, 10_200);
        let reached = &app.run.as_ref().unwrap().reached_at;
        assert_eq!(reached.len(), 9, "{reached:?}");
        assert_eq!(reached[&Chapter::Recovery], 10_200);
        // A new round starts from a clean cluster.
        assert_eq!(press(&mut app, &world, " ", 10_300), vec![Effect::ClearFaults]);
        assert_eq!(app.chapter, Chapter::Healthy);
        assert!(app.run.is_none());
    }

    #[test]
    fn scenario_keys_start_a_countdown_that_esc_calls_off() {
        let mut app = app();
        let world = World::default();
        press(&mut app, &world, "=", 0);
        assert_eq!(app.chapter, Chapter::Inject);
        assert_eq!(app.countdown.unwrap().scenario, 11);
        // Other keys wait while it counts down; Esc calls it off, and nothing is injected.
        press(&mut app, &world, "1", 10);
        assert_eq!(app.countdown.unwrap().scenario, 11);
        app.on_key(Key::Esc, &world, 20);
        assert!(app.countdown.is_none());
        assert!(app.tick(COUNTDOWN_MS * 2).is_empty());
        // The cursor stays on the scenario picked last; down from the last entry wraps to the first.
        assert_eq!(app.selected, 11);
        app.on_key(Key::Down, &world, 25);
        assert_eq!(app.selected, 0);
        app.on_key(Key::Up, &world, 30);
        assert_eq!(app.selected, 11);
        app.on_key(Key::Esc, &world, 40);
        assert_eq!(app.chapter, Chapter::Healthy);
    }

    #[test]
    fn a_refused_injection_returns_to_the_menu_with_the_reason() {
        let mut app = app();
        let world = World::default();
        press(&mut app, &world, "1", 0);
        assert_eq!(app.tick(COUNTDOWN_MS), vec![Effect::Inject(0)]);
        app.injected(Err("store 3 is already dead".into()), COUNTDOWN_MS);
        assert_eq!(app.chapter, Chapter::Inject);
        assert!(app.run.is_none());
        assert!(app.notice.as_ref().unwrap().0.contains("already dead"));
    }

    #[test]
    fn rejecting_or_a_diagnosis_without_proposal_leads_to_a_fix_by_hand() {
        let mut app = app();
        let mut world = World::default();
        press(&mut app, &world, "4", 0);
        app.tick(COUNTDOWN_MS);
        app.injected(Ok(()), COUNTDOWN_MS);
        world.tickets = vec![ticket("T-000001", 5_000, "open", json!([{"proposed_actions": ["A-000001"]}]))];
        world.actions = vec![action("A-000001", "T-000001", 5_001, "awaiting-approval", json!(null))];
        app.observe(&world, 5_100);
        press(&mut app, &world, "  ", 5_200);
        assert_eq!(app.chapter, Chapter::Proposal);
        assert_eq!(press(&mut app, &world, "r", 5_300), vec![Effect::Reject("A-000001".into())]);
        assert_eq!(app.chapter, Chapter::Recovery);
        assert_eq!(app.run.as_ref().unwrap().decided, Some(false));
        assert_eq!(press(&mut app, &world, "c", 5_400), vec![Effect::ClearFaults]);
        assert!(app.run.as_ref().unwrap().cleared_by_hand);

        // A diagnosis that recommends waiting: after it, the story goes straight to recovery.
        let mut app = self::app();
        let mut world = World::default();
        press(&mut app, &world, "1", 0);
        app.tick(COUNTDOWN_MS);
        app.injected(Ok(()), COUNTDOWN_MS);
        world.tickets = vec![ticket("T-000001", 5_000, "open", json!([{"proposed_actions": []}]))];
        app.observe(&world, 5_100);
        assert!(app.nothing_proposed(&world));
        press(&mut app, &world, "  ", 5_200);
        assert_eq!(app.chapter, Chapter::Proposal);
        press(&mut app, &world, " ", 5_300);
        assert_eq!(app.chapter, Chapter::Recovery);
    }

    #[test]
    fn q_quits_from_any_chapter() {
        let mut app = app();
        let world = World::default();
        press(&mut app, &world, "1", 0);
        assert_eq!(press(&mut app, &world, "q", 1), vec![Effect::Quit]);
        assert!(app.quitting);
        let mut app = self::app();
        assert_eq!(app.on_key(Key::Interrupt, &world, 0), vec![Effect::Quit]);
    }
}
