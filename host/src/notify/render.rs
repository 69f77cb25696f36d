//! Payloads: the generic JSON object and the Slack incoming-webhook message.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::event::Notification;

/// Slack's limits on a header, a section's text and a field's text, and fields per section.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;
const SLACK_FIELD_CHARS: usize = 2000;
const SLACK_FIELDS: usize = 10;

/// The payload a webhook takes (`kind` in its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// `{"event", "key", "title", "text", "fields": {…}, "at_ms"}`.
    Json,
    /// A Slack-compatible message: `{"text", "blocks": […]}`.
    Slack,
}

impl PayloadKind {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Json => "json",
            PayloadKind::Slack => "slack",
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadKind {
    type Err = String;

    fn from_str(name: &str) -> Result<PayloadKind, String> {
        match name {
            "json" => Ok(PayloadKind::Json),
            "slack" => Ok(PayloadKind::Slack),
            other => Err(format!("unknown payload kind `{other}` (known: json, slack)")),
        }
    }
}

/// The body POSTed for `notification`, raised at `at_ms` (ms since the Unix epoch).
pub fn render(kind: PayloadKind, notification: &Notification, at_ms: u64) -> Value {
    match kind {
        PayloadKind::Json => render_json(notification, at_ms),
        PayloadKind::Slack => render_slack(notification, at_ms),
    }
}

/// The generic object: `{"event", "key", "title", "text", "fields": {name: value}, "at_ms"}`.
/// `key` is stable for one problem, so a receiver can recognise a delivery it already has.
pub fn render_json(notification: &Notification, at_ms: u64) -> Value {
    let fields: Map<String, Value> =
        notification.fields.iter().map(|(name, value)| (name.clone(), Value::String(value.clone()))).collect();
    json!({
        "event": notification.kind.as_str(),
        "key": notification.key,
        "title": notification.title,
        "text": notification.text,
        "fields": fields,
        "at_ms": at_ms,
    })
}

/// A Slack message: `text` (the fallback shown in notifications) and `blocks`: a header with the
/// title, a section with the text, a section with the fields, and a context line with the event
/// and its time. Commands are set as code; `&`, `<` and `>` are escaped as Slack requires.
pub fn render_slack(notification: &Notification, at_ms: u64) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&notification.title, SLACK_HEADER_CHARS), "emoji": true},
    })];
    if !notification.text.is_empty() {
        let text: Vec<String> = notification.text.lines().map(|l| code_commands(&escape(l))).collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&text.join("\n"), SLACK_SECTION_CHARS)},
        }));
    }
    if !notification.fields.is_empty() {
        let fields: Vec<Value> = notification
            .fields
            .iter()
            .take(SLACK_FIELDS)
            .map(|(name, value)| {
                let text = format!("*{}*\n{}", escape(name), code_commands(&escape(value)));
                json!({"type": "mrkdwn", "text": truncate(&text, SLACK_FIELD_CHARS)})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms));
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("operator-host · {} · {at}", notification.kind)}],
    }));
    let fallback = if notification.text.is_empty() {
        escape(&notification.title)
    } else {
        format!("{}: {}", escape(&notification.title), escape(notification.text.lines().next().unwrap_or("")))
    };
    json!({"text": truncate(&fallback, SLACK_SECTION_CHARS), "blocks": blocks})
}

/// Slack's mrkdwn escaping.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Sets an `operator-host …` command, from where it starts to the end of the line, as code.
fn code_commands(line: &str) -> String {
    match line.find("operator-host ") {
        Some(start) if !line.contains('`') => format!("{}`{}`", &line[..start], &line[start..]),
        _ => line.to_owned(),
    }
}

/// At most `max` characters, the last one `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{EventKind, from_audit};

    fn approval() -> Notification {
        from_audit(&crate::audit::AuditEvent::StateChange {
            subject: "action".into(),
            id: "A-000007".into(),
            from: None,
            to: "awaiting-approval".into(),
            reason: "transfer-leader region=1 to=2: leaders > 40% on store <1> & growing".into(),
            actor: "diagnoser:rules".into(),
        })
        .unwrap()
    }

    #[test]
    fn generic_json() {
        let value = render_json(&approval(), 1_700_000_000_000);
        assert_eq!(value["event"], "approval-needed");
        assert_eq!(value["key"], "approval-needed:A-000007");
        assert_eq!(value["title"], "Action A-000007 needs approval");
        assert_eq!(value["at_ms"], 1_700_000_000_000u64);
        assert_eq!(value["fields"]["action"], "A-000007");
        assert_eq!(value["fields"]["approve"], "operator-host actions approve A-000007 --reason \"…\"");
        assert_eq!(value["fields"]["reject"], "operator-host actions reject A-000007 --reason \"…\"");
        assert!(value["text"].as_str().unwrap().contains("store <1> & growing"), "JSON is not escaped");
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
    }

    #[test]
    fn slack_message() {
        let value = render_slack(&approval(), 1_700_000_000_000);
        let text = value["text"].as_str().unwrap();
        assert!(text.starts_with("Action A-000007 needs approval: transfer-leader"), "{text}");
        assert!(text.contains("store &lt;1&gt; &amp; growing"), "{text}");
        let blocks = value["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["header", "section", "section", "context"]);
        assert_eq!(blocks[0]["text"]["text"], "Action A-000007 needs approval");
        let section = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("Approve: `operator-host actions approve A-000007 --reason \"…\"`"), "{section}");
        let fields = blocks[2]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0]["text"], "*action*\nA-000007");
        assert_eq!(fields[2]["text"], "*approve*\n`operator-host actions approve A-000007 --reason \"…\"`");
        let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
        assert_eq!(context, "operator-host · approval-needed · 2023-11-14T22:13:20Z");
    }

    #[test]
    fn slack_limits_are_respected() {
        let long = Notification {
            kind: EventKind::TicketOpened,
            key: "k".into(),
            title: "t".repeat(500),
            text: "x".repeat(10_000),
            fields: (0..15).map(|i| (format!("f{i}"), "v".repeat(5_000))).collect(),
        };
        let value = render_slack(&long, 0);
        let blocks = value["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"].as_str().unwrap().chars().count(), SLACK_HEADER_CHARS);
        assert_eq!(blocks[1]["text"]["text"].as_str().unwrap().chars().count(), SLACK_SECTION_CHARS);
        let fields = blocks[2]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), SLACK_FIELDS);
        assert!(fields.iter().all(|f| f["text"].as_str().unwrap().chars().count() <= SLACK_FIELD_CHARS));
        assert!(value["text"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn payload_kinds_parse() {
        assert_eq!("json".parse::<PayloadKind>(), Ok(PayloadKind::Json));
        assert_eq!("slack".parse::<PayloadKind>(), Ok(PayloadKind::Slack));
        assert!("teams".parse::<PayloadKind>().unwrap_err().contains("unknown payload kind `teams`"));
    }
}
