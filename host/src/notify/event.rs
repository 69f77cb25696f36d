//! From audit events to notifications: which events a human should hear about, and what to say.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;

/// What a notification announces; the names are those of `events = [...]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A ticket opened, or a resolved ticket re-opened.
    TicketOpened,
    /// A ticket was diagnosed.
    DiagnosisReady,
    /// An action waits for a human's approval.
    ApprovalNeeded,
    /// An action ran to completion.
    ActionCompleted,
    /// An action failed for good, or its verification found it not effective.
    ActionFailed,
    /// The kill switch was pulled.
    KillSwitch,
}

impl EventKind {
    /// Every event, in the order of the lifecycle.
    pub const ALL: [EventKind; 6] = [
        EventKind::TicketOpened,
        EventKind::DiagnosisReady,
        EventKind::ApprovalNeeded,
        EventKind::ActionCompleted,
        EventKind::ActionFailed,
        EventKind::KillSwitch,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TicketOpened => "ticket-opened",
            EventKind::DiagnosisReady => "diagnosis-ready",
            EventKind::ApprovalNeeded => "approval-needed",
            EventKind::ActionCompleted => "action-completed",
            EventKind::ActionFailed => "action-failed",
            EventKind::KillSwitch => "kill-switch",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(name: &str) -> Result<EventKind, String> {
        EventKind::ALL.into_iter().find(|e| e.as_str() == name).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|e| e.as_str()).collect();
            format!("unknown event `{name}` (known: {})", known.join(", "))
        })
    }
}

/// Something to tell the humans, independent of how it is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// What it announces.
    pub kind: EventKind,
    /// What it is about: notifications with the same key within the deduplication window are
    /// sent once (e.g. `ticket-opened:T-000012`).
    pub key: String,
    /// One line.
    pub title: String,
    /// The details, possibly several lines.
    pub text: String,
    /// Named values (ticket, action, who, commands), in display order.
    pub fields: Vec<(String, String)>,
}

impl Notification {
    /// The value of field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn fields<const N: usize>(pairs: [(&str, String); N]) -> Vec<(String, String)> {
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// The command that approves action `id`.
pub fn approve_command(id: &str) -> String {
    format!("operator-host actions approve {id} --reason \"…\"")
}

/// The command that rejects action `id`.
pub fn reject_command(id: &str) -> String {
    format!("operator-host actions reject {id} --reason \"…\"")
}

/// The notification an audit event calls for, if any:
///
/// - `ticket-opened`: a ticket state change to `open` from nothing (opened) or from `resolved`
///   (re-opened);
/// - `diagnosis-ready`: the note `ticket T-… diagnosed by …` the diagnosis engine records;
/// - `approval-needed`: an action state change to `awaiting-approval`, with the commands that
///   approve and reject it;
/// - `action-completed`: an action state change to `completed`;
/// - `action-failed`: an action state change to `failed`, or to `not-effective` (the verifier
///   found that the completed action did not fix the problem);
/// - `kill-switch`: the safety switches changing to `kill-switch`.
///
/// Every other event (plugin calls, capability decisions, other transitions) gives nothing.
pub fn from_audit(event: &AuditEvent) -> Option<Notification> {
    match event {
        AuditEvent::StateChange { subject, id, from, to, reason, actor } => {
            state_change(subject, id, from.as_deref(), to, reason, actor)
        }
        AuditEvent::Note { message } => diagnosis_note(message),
        _ => None,
    }
}

fn state_change(
    subject: &str,
    id: &str,
    from: Option<&str>,
    to: &str,
    reason: &str,
    actor: &str,
) -> Option<Notification> {
    match (subject, from, to) {
        ("ticket", None, "open") => Some(Notification {
            kind: EventKind::TicketOpened,
            key: format!("ticket-opened:{id}"),
            title: format!("Ticket {id} opened"),
            text: reason.to_owned(),
            fields: fields([
                ("ticket", id.to_owned()),
                ("by", actor.to_owned()),
                ("details", format!("operator-host tickets show {id}")),
            ]),
        }),
        ("ticket", Some("resolved"), "open") => Some(Notification {
            kind: EventKind::TicketOpened,
            key: format!("ticket-opened:{id}"),
            title: format!("Ticket {id} re-opened"),
            text: reason.to_owned(),
            fields: fields([
                ("ticket", id.to_owned()),
                ("by", actor.to_owned()),
                ("details", format!("operator-host tickets show {id}")),
            ]),
        }),
        ("action", _, "awaiting-approval") => Some(Notification {
            kind: EventKind::ApprovalNeeded,
            key: format!("approval-needed:{id}"),
            title: format!("Action {id} needs approval"),
            text: format!("{reason}\nApprove: {}\nReject: {}", approve_command(id), reject_command(id)),
            fields: fields([
                ("action", id.to_owned()),
                ("proposed by", actor.to_owned()),
                ("approve", approve_command(id)),
                ("reject", reject_command(id)),
            ]),
        }),
        ("action", _, "completed") => Some(Notification {
            kind: EventKind::ActionCompleted,
            key: format!("action-completed:{id}"),
            title: format!("Action {id} completed"),
            text: reason.to_owned(),
            fields: fields([
                ("action", id.to_owned()),
                ("by", actor.to_owned()),
                ("details", format!("operator-host actions show {id}")),
            ]),
        }),
        ("action", _, "failed" | "not-effective") => Some(Notification {
            kind: EventKind::ActionFailed,
            key: format!("action-failed:{id}"),
            title: if to == "failed" {
                format!("Action {id} failed")
            } else {
                format!("Action {id} completed but was not effective")
            },
            text: reason.to_owned(),
            fields: fields([
                ("action", id.to_owned()),
                ("state", to.to_owned()),
                ("by", actor.to_owned()),
                ("details", format!("operator-host actions show {id}")),
            ]),
        }),
        ("safety", from, "kill-switch") if from != Some("kill-switch") => Some(Notification {
            kind: EventKind::KillSwitch,
            key: "kill-switch".into(),
            title: "Kill switch ON: nothing will execute".into(),
            text: reason.to_owned(),
            fields: fields([
                ("by", actor.to_owned()),
                ("mode before", from.unwrap_or("unknown").to_owned()),
                ("release", "operator-host safety release --reason \"…\"".to_owned()),
            ]),
        }),
        _ => None,
    }
}

/// `ticket T-000012 diagnosed by claude (model): summary (…)`.
fn diagnosis_note(message: &str) -> Option<Notification> {
    let rest = message.strip_prefix("ticket ")?;
    let (id, rest) = rest.split_once(" diagnosed by ")?;
    if id.is_empty() || id.contains(char::is_whitespace) {
        return None;
    }
    let (diagnoser, text) = rest.split_once(": ").unwrap_or((rest, ""));
    Some(Notification {
        kind: EventKind::DiagnosisReady,
        key: format!("diagnosis-ready:{id}"),
        title: format!("Ticket {id} diagnosed by {diagnoser}"),
        text: text.to_owned(),
        fields: fields([
            ("ticket", id.to_owned()),
            ("diagnoser", diagnoser.to_owned()),
            ("details", format!("operator-host tickets show {id}")),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(subject: &str, id: &str, from: Option<&str>, to: &str, reason: &str) -> AuditEvent {
        AuditEvent::StateChange {
            subject: subject.into(),
            id: id.into(),
            from: from.map(Into::into),
            to: to.into(),
            reason: reason.into(),
            actor: "monitor".into(),
        }
    }

    fn kind(event: &AuditEvent) -> Option<EventKind> {
        from_audit(event).map(|n| n.kind)
    }

    #[test]
    fn event_names_round_trip() {
        for event in EventKind::ALL {
            assert_eq!(event.as_str().parse::<EventKind>(), Ok(event));
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str());
        }
        let error = "ticket-closed".parse::<EventKind>().unwrap_err();
        assert!(error.contains("unknown event `ticket-closed`") && error.contains("kill-switch"), "{error}");
    }

    #[test]
    fn tickets_opened_and_reopened() {
        let opened = from_audit(&change("ticket", "T-000001", None, "open", "leader skew on store 1")).unwrap();
        assert_eq!(opened.kind, EventKind::TicketOpened);
        assert_eq!(opened.key, "ticket-opened:T-000001");
        assert_eq!(opened.title, "Ticket T-000001 opened");
        assert_eq!(opened.text, "leader skew on store 1");
        assert_eq!(opened.field("ticket"), Some("T-000001"));
        let reopened =
            from_audit(&change("ticket", "T-000001", Some("resolved"), "open", "the violation returned")).unwrap();
        assert_eq!(reopened.title, "Ticket T-000001 re-opened");
        assert_eq!(reopened.key, opened.key, "a flapping ticket is one problem");
        // A human taking a ticket off hold, or resolving it, is not news.
        assert_eq!(kind(&change("ticket", "T-000001", Some("held"), "open", "")), None);
        assert_eq!(kind(&change("ticket", "T-000001", Some("open"), "resolved", "")), None);
    }

    #[test]
    fn diagnosis_notes() {
        let note = AuditEvent::note(
            "ticket T-000004 diagnosed by claude (claude-sonnet-4-5): leaders crowd store 1 (1 recommendation(s), 0 dropped)",
        );
        let n = from_audit(&note).unwrap();
        assert_eq!(n.kind, EventKind::DiagnosisReady);
        assert_eq!(n.key, "diagnosis-ready:T-000004");
        assert_eq!(n.title, "Ticket T-000004 diagnosed by claude (claude-sonnet-4-5)");
        assert_eq!(n.text, "leaders crowd store 1 (1 recommendation(s), 0 dropped)");
        assert_eq!(n.field("diagnoser"), Some("claude (claude-sonnet-4-5)"));
        assert_eq!(kind(&AuditEvent::note("operator-host 0.1.0 started (pid 1)")), None);
        assert_eq!(kind(&AuditEvent::note("ticket T-1 resolved by hand")), None);
    }

    #[test]
    fn approval_needed_carries_the_commands() {
        let event =
            change("action", "A-000007", None, "awaiting-approval", "transfer-leader region=1 to=2: proposed by rules");
        let n = from_audit(&event).unwrap();
        assert_eq!(n.kind, EventKind::ApprovalNeeded);
        assert_eq!(n.key, "approval-needed:A-000007");
        assert_eq!(n.field("approve"), Some("operator-host actions approve A-000007 --reason \"…\""));
        assert_eq!(n.field("reject"), Some("operator-host actions reject A-000007 --reason \"…\""));
        assert!(n.text.starts_with("transfer-leader region=1 to=2: proposed by rules\n"), "{}", n.text);
        assert!(n.text.contains("operator-host actions approve A-000007 --reason \"…\""));
        assert!(n.text.contains("operator-host actions reject A-000007 --reason \"…\""));
    }

    #[test]
    fn action_outcomes() {
        let done = from_audit(&change("action", "A-1", Some("executing"), "completed", "ok")).unwrap();
        assert_eq!((done.kind, done.key.as_str()), (EventKind::ActionCompleted, "action-completed:A-1"));
        let failed = from_audit(&change("action", "A-1", Some("executing"), "failed", "PD said no")).unwrap();
        assert_eq!((failed.kind, failed.title.as_str()), (EventKind::ActionFailed, "Action A-1 failed"));
        let ineffective =
            from_audit(&change("action", "A-1", Some("completed"), "not-effective", "still skewed")).unwrap();
        assert_eq!(ineffective.kind, EventKind::ActionFailed);
        assert_eq!(ineffective.field("state"), Some("not-effective"));
        for quiet in ["ready", "executing", "retry-wait", "cancelled", "verified"] {
            assert_eq!(kind(&change("action", "A-1", Some("ready"), quiet, "")), None, "{quiet}");
        }
    }

    #[test]
    fn the_kill_switch() {
        let n = from_audit(&change("safety", "switches", Some("execute"), "kill-switch", "pulled by hand")).unwrap();
        assert_eq!(n.kind, EventKind::KillSwitch);
        assert_eq!(n.key, "kill-switch");
        assert_eq!(n.field("mode before"), Some("execute"));
        assert_eq!(kind(&change("safety", "switches", Some("kill-switch"), "kill-switch", "")), None);
        assert_eq!(kind(&change("safety", "switches", Some("kill-switch"), "observe", "released")), None);
        assert_eq!(kind(&change("safety", "switches", Some("observe"), "execute", "")), None);
        assert_eq!(kind(&change("workflow", "W-1", None, "running", "")), None);
    }
}
