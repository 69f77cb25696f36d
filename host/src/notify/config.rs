//! The `[notifications]` section: webhooks, which events each receives, retries, deduplication.

use serde::{Deserialize, Serialize};
use url::Url;

use super::event::EventKind;
use super::render::PayloadKind;

/// The `[notifications]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Where notifications go (`[[notifications.webhooks]]`); none by default.
    pub webhooks: Vec<WebhookConfig>,
    /// How failed deliveries are retried.
    pub retry: RetryConfig,
    /// A notification whose key was sent less than this long ago is not sent again (0: never
    /// suppressed).
    pub dedup_secs: u64,
    /// Notifications waiting per webhook; beyond that new ones are dropped (with a warning).
    pub queue_capacity: usize,
    /// The time one delivery attempt may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            webhooks: Vec::new(),
            retry: RetryConfig::default(),
            dedup_secs: 600,
            queue_capacity: 256,
            timeout_ms: 10_000,
        }
    }
}

/// One webhook (`[[notifications.webhooks]]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The http or https URL POSTed to.
    pub url: String,
    /// The payload: `json` (the generic object) or `slack` (an incoming-webhook message).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// The events sent to it; every event when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Name of an environment variable holding a bearer token sent with every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
}

fn default_kind() -> String {
    "json".into()
}

/// Retries of a failed delivery: exponential backoff with full jitter (the wait before retry
/// `n` is uniform in `[0, min(max_ms, base_ms × 2^(n-1))]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The backoff's base, in milliseconds.
    pub base_ms: u64,
    /// The longest wait between attempts, in milliseconds.
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 5, base_ms: 1_000, max_ms: 60_000 }
    }
}

/// A webhook checked and ready to use.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    /// Its position in `notifications.webhooks`.
    pub index: usize,
    /// The URL.
    pub url: Url,
    /// The payload it takes.
    pub kind: PayloadKind,
    /// The events it receives.
    pub events: Vec<EventKind>,
    /// The bearer token, read from the environment.
    pub bearer_token: Option<String>,
}

impl WebhookTarget {
    /// Whether it receives `event`.
    pub fn wants(&self, event: EventKind) -> bool {
        self.events.contains(&event)
    }

    /// The URL without its path, query or credentials, for logs (a Slack webhook's path is its
    /// secret).
    pub fn redacted(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(port) => format!("webhook {} ({}://{host}:{port}/…)", self.index, self.url.scheme()),
            None => format!("webhook {} ({}://{host}/…)", self.index, self.url.scheme()),
        }
    }
}

impl NotificationsConfig {
    /// Every problem with the section, each naming its place.
    pub fn problems(&self) -> Vec<String> {
        match self.targets() {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// The webhooks, checked: URLs parsed, payload kinds and event names known, tokens read from
    /// the environment; or every problem found.
    pub fn targets(&self) -> Result<Vec<WebhookTarget>, Vec<String>> {
        let mut problems = Vec::new();
        let retry = &self.retry;
        if !(1..=20).contains(&retry.max_attempts) {
            problems.push(format!("notifications.retry.max_attempts = {} must be 1–20", retry.max_attempts));
        }
        if retry.base_ms == 0 {
            problems.push("notifications.retry.base_ms must be at least 1".into());
        }
        if retry.max_ms < retry.base_ms || retry.max_ms > 3_600_000 {
            problems.push(format!(
                "notifications.retry.max_ms = {} must be at least notifications.retry.base_ms ({}) and at most 3600000",
                retry.max_ms, retry.base_ms
            ));
        }
        if self.dedup_secs > 7 * 86_400 {
            problems.push(format!("notifications.dedup_secs = {} must be at most 604800", self.dedup_secs));
        }
        if !(1..=100_000).contains(&self.queue_capacity) {
            problems.push(format!("notifications.queue_capacity = {} must be 1–100000", self.queue_capacity));
        }
        if !(100..=300_000).contains(&self.timeout_ms) {
            problems.push(format!("notifications.timeout_ms = {} must be 100–300000", self.timeout_ms));
        }
        let mut targets = Vec::new();
        for (index, webhook) in self.webhooks.iter().enumerate() {
            let place = format!("notifications.webhooks[{index}]");
            let before = problems.len();
            let url = match Url::parse(&webhook.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Some(url),
                Ok(_) => {
                    problems.push(format!("{place}.url `{}` must be an http or https URL with a host", webhook.url));
                    None
                }
                Err(e) => {
                    problems.push(format!("{place}.url `{}` is not a URL: {e}", webhook.url));
                    None
                }
            };
            let kind = match webhook.kind.parse::<PayloadKind>() {
                Ok(kind) => Some(kind),
                Err(e) => {
                    problems.push(format!("{place}.kind: {e}"));
                    None
                }
            };
            let events = match &webhook.events {
                None => EventKind::ALL.to_vec(),
                Some(names) if names.is_empty() => {
                    problems.push(format!(
                        "{place}.events is empty: name at least one event, or leave it out for every event"
                    ));
                    Vec::new()
                }
                Some(names) => {
                    let mut events = Vec::new();
                    for (i, name) in names.iter().enumerate() {
                        match name.parse::<EventKind>() {
                            Ok(event) if !events.contains(&event) => events.push(event),
                            Ok(_) => {}
                            Err(e) => problems.push(format!("{place}.events[{i}]: {e}")),
                        }
                    }
                    events
                }
            };
            let bearer_token = match &webhook.bearer_token_env {
                None => None,
                Some(variable) => match std::env::var(variable) {
                    Ok(token) if !token.is_empty() && reqwest::header::HeaderValue::try_from(&token).is_ok() => {
                        Some(token)
                    }
                    Ok(_) => {
                        problems.push(format!(
                            "{place}.bearer_token_env: the token in `{variable}` is empty or not a valid header value"
                        ));
                        None
                    }
                    Err(_) => {
                        problems.push(format!("{place}.bearer_token_env names `{variable}`, which is not set"));
                        None
                    }
                },
            };
            if problems.len() == before
                && let (Some(url), Some(kind)) = (url, kind)
            {
                targets.push(WebhookTarget { index, url, kind, events, bearer_token });
            }
        }
        if problems.is_empty() { Ok(targets) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NotificationsConfig {
        #[derive(Deserialize)]
        struct File {
            notifications: NotificationsConfig,
        }
        toml::from_str::<File>(text).unwrap_or_else(|e| panic!("{e}")).notifications
    }

    #[test]
    fn defaults_send_every_event_as_json() {
        let config = parse(
            r#"
[notifications]
[[notifications.webhooks]]
url = "https://hooks.example.com/T000/B000/XXX"
"#,
        );
        assert_eq!(config.retry, RetryConfig { max_attempts: 5, base_ms: 1000, max_ms: 60000 });
        assert_eq!(config.dedup_secs, 600);
        let targets = config.targets().unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].kind, PayloadKind::Json);
        assert_eq!(targets[0].events, EventKind::ALL);
        assert_eq!(targets[0].redacted(), "webhook 0 (https://hooks.example.com/…)");
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(
            r#"
[notifications]
dedup_secs = 60
retry = { max_attempts = 3, base_ms = 10, max_ms = 100 }
[[notifications.webhooks]]
url = "http://127.0.0.1:9000/hook"
kind = "slack"
events = ["approval-needed", "kill-switch"]
"#,
        );
        let targets = config.targets().unwrap();
        assert_eq!(targets[0].kind, PayloadKind::Slack);
        assert_eq!(targets[0].events, [EventKind::ApprovalNeeded, EventKind::KillSwitch]);
        assert!(!targets[0].wants(EventKind::TicketOpened));
        assert_eq!(config.retry.max_attempts, 3);
    }

    #[test]
    fn every_problem_is_listed_with_its_place() {
        let config = parse(
            r#"
[notifications]
retry = { max_attempts = 0, base_ms = 100, max_ms = 10 }
[[notifications.webhooks]]
url = "ftp://example.com/x"
kind = "teams"
events = ["ticket-opened", "ticket-closed"]
[[notifications.webhooks]]
url = "not a url"
bearer_token_env = "OPERATOR_NOTIFY_TEST_SURELY_UNSET"
[[notifications.webhooks]]
url = "https://example.com/"
events = []
"#,
        );
        let problems = config.problems();
        let text = problems.join("\n");
        for expected in [
            "notifications.retry.max_attempts",
            "notifications.retry.max_ms",
            "notifications.webhooks[0].url `ftp://example.com/x`",
            "notifications.webhooks[0].kind",
            "notifications.webhooks[0].events[1]: unknown event `ticket-closed`",
            "notifications.webhooks[1].url `not a url` is not a URL",
            "notifications.webhooks[1].bearer_token_env names `OPERATOR_NOTIFY_TEST_SURELY_UNSET`",
            "notifications.webhooks[2].events is empty",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
        assert_eq!(problems.len(), 8, "{text}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "[notifications]\n[[notifications.webhooks]]\nurl = \"http://x/\"\nevent = [\"kill-switch\"]\n";
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            notifications: NotificationsConfig,
        }
        let error = toml::from_str::<File>(text).unwrap_err().to_string();
        assert!(error.contains("event"), "{error}");
    }
}
