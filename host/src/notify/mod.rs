//! Notifications: telling humans, through webhooks, what needs them.
//!
//! The notifier watches the audit events as they are recorded ([`Notifier::attach`]) and turns
//! a few of them into notifications ([`from_audit`]):
//!
//! | event              | when                                                                 |
//! |--------------------|----------------------------------------------------------------------|
//! | `ticket-opened`    | a ticket opens, or a resolved ticket re-opens                        |
//! | `diagnosis-ready`  | a ticket has been diagnosed                                          |
//! | `approval-needed`  | an action waits for approval (with the approve and reject commands)  |
//! | `action-completed` | an action completed                                                  |
//! | `action-failed`    | an action failed for good, or its verification found it not effective |
//! | `kill-switch`      | the kill switch was pulled                                           |
//!
//! A notification carries a key naming its problem (`ticket-opened:T-000012`); one with a key
//! already sent within `dedup_secs` is not sent again, so a flapping ticket is announced once per
//! window rather than every cycle.
//!
//! ```toml
//! [notifications]
//! dedup_secs = 600                                     # 0: never suppress repeats
//! retry = { max_attempts = 5, base_ms = 1000, max_ms = 60000 }
//! queue_capacity = 256                                 # per webhook; beyond it, drop and warn
//! timeout_ms = 10000                                   # per attempt
//!
//! [[notifications.webhooks]]
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! kind = "slack"                                       # or "json" (the default)
//! events = ["approval-needed", "action-failed", "kill-switch"]   # default: every event
//!
//! [[notifications.webhooks]]
//! url = "https://alerts.example.com/operator"
//! bearer_token_env = "ALERTS_TOKEN"                    # sent as `Authorization: Bearer …`
//! ```
//!
//! Payloads ([`render()`]): `json` POSTs
//! `{"event", "key", "title", "text", "fields": {name: value}, "at_ms"}`; `slack` POSTs a
//! Slack incoming-webhook message, `{"text", "blocks": [header, section, fields, context]}`.
//!
//! Delivery never holds up the pipeline: recording an event only offers the notification to a
//! bounded queue per webhook; a worker per webhook POSTs, retrying transient failures with
//! exponential backoff and full jitter (see [`Notifier`]).

mod config;
mod dedup;
mod event;
mod notifier;
mod render;

pub use config::{NotificationsConfig, RetryConfig, WebhookConfig, WebhookTarget};
pub use dedup::Dedup;
pub use event::{EventKind, Notification, approve_command, from_audit, reject_command};
pub use notifier::{Notifier, NotifierStats, backoff_ms};
pub use render::{PayloadKind, render, render_json, render_slack};
