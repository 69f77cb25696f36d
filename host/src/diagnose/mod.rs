//! Diagnosis: explaining a ticket and recommending actions from the plugin's catalogue.
//!
//! Three diagnosers, one outcome ([`DiagnosisRecord`]):
//! - [`claude`]: the Anthropic Messages API, investigating with the plugin's read-only queries
//!   as tools and answering in the diagnosis schema;
//! - [`openai`]: the same over an OpenAI-compatible chat-completions endpoint (local models);
//! - [`rules`]: the subject plugin's own `diagnose` export.
//!
//! [`DiagnosisEngine::diagnose`] runs the configured diagnoser, validates its answer against
//! the action catalogue ([`validate`]: bad recommendations are dropped with their reasons), and
//! when an LLM fails for any reason (unreachable, refused, truncated, invalid twice, out of
//! turns) falls back to the rules and records why. The prompt is built by [`context`] with its
//! stable part first so that it can be cached; transient API failures are retried per
//! [`retry`].
//!
//! Configuration (`[diagnosis]` in the host configuration), every key optional:
//!
//! ```toml
//! [diagnosis]
//! diagnoser = "auto"              # auto | claude | openai | rules (auto: claude when an Anthropic key is set)
//! max_turns = 8                   # model calls per diagnosis
//! max_total_tokens = 200000       # tokens per diagnosis; once spent, the model must conclude
//! request_timeout_ms = 120000     # one API request
//! snapshot_limit_bytes = 32768    # each observation payload (and the entity list) in the prompt
//! tool_output_limit_bytes = 16384 # each query answer given to the model
//! max_related_tickets = 10
//! max_recent_actions = 10
//!
//! [diagnosis.retry]
//! max_attempts = 4                # per request, the first included
//! base_delay_ms = 500
//! max_delay_ms = 30000
//! max_retry_after_secs = 60       # a longer retry-after gives up
//!
//! [diagnosis.claude]
//! model = "claude-sonnet-4-6"
//! max_tokens = 8192
//! base_url = "https://api.anthropic.com"   # else $ANTHROPIC_BASE_URL, else this
//! api_key = "..."                          # else $ANTHROPIC_API_KEY
//!
//! [diagnosis.openai]
//! model = "llama3.1:8b"           # required for diagnoser = "openai"
//! base_url = "http://127.0.0.1:11434"      # else $OPENAI_BASE_URL, else https://api.openai.com
//! api_key = "..."                          # else $OPENAI_API_KEY; optional for local servers
//! max_tokens = 4096               # optional
//!
//! [diagnosis.prices."claude-sonnet-4-6"]   # US dollars per million tokens, for cost estimates
//! input_per_mtok = 3.0
//! output_per_mtok = 15.0
//! cache_write_per_mtok = 3.75
//! cache_read_per_mtok = 0.30
//! ```

pub mod claude;
pub mod context;
pub mod model;
pub mod openai;
pub mod retry;
pub mod rules;
pub mod ticket;
mod transport;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runtime::bindings::types;
use crate::runtime::{CallContext, SubjectPlugin};
pub use claude::ClaudeClient;
pub use context::{ContextLimits, Prompt, QueryTool};
pub use model::{
    Alternative, DiagnoserKind, Diagnosis, DiagnosisRecord, DroppedRecommendation, ModelPrice, QueryCall,
    Recommendation, Urgency, Usage,
};
pub use openai::OpenAiClient;
pub use rules::RuleDiagnoser;
pub use transport::LlmError;
pub use validate::Validated;

/// Everything a diagnoser is told about a ticket.
#[derive(Clone, Debug)]
pub struct DiagnosisRequest {
    /// The subject plugin's name.
    pub subject: String,
    /// What the subject is (the plugin's description).
    pub subject_description: String,
    /// The ticket.
    pub ticket: types::Ticket,
    /// The observation when the ticket opened, if it is still kept.
    pub observation_at_open: Option<types::Observation>,
    /// The latest observation (the rules diagnose from it).
    pub observation: types::Observation,
    /// The plugin's summary of the entities, from the latest observation.
    pub entities: Vec<types::EntitySummary>,
    /// Recent tickets on the same invariant or entity.
    pub related_tickets: Vec<RelatedTicket>,
    /// Recent actions and their outcomes.
    pub recent_actions: Vec<RecentAction>,
    /// The action catalogue: the only actions a diagnosis may recommend.
    pub actions: Vec<types::ActionSpec>,
    /// The read-only queries a model may run.
    pub queries: Vec<types::QuerySpec>,
}

impl DiagnosisRequest {
    /// A request for `ticket` with the plugin's catalogue and queries from `info`, and nothing
    /// else around it yet (fill in the other fields as they are known).
    pub fn new(info: &types::SubjectInfo, ticket: types::Ticket, observation: types::Observation) -> DiagnosisRequest {
        DiagnosisRequest {
            subject: info.name.clone(),
            subject_description: info.description.clone(),
            ticket,
            observation_at_open: None,
            observation,
            entities: Vec::new(),
            related_tickets: Vec::new(),
            recent_actions: Vec::new(),
            actions: info.actions.clone(),
            queries: info.queries.clone(),
        }
    }
}

/// Another ticket that may bear on this one.
#[derive(Clone, Debug)]
pub struct RelatedTicket {
    /// The ticket.
    pub ticket: types::Ticket,
    /// Its state, e.g. `open` or `resolved`.
    pub state: String,
    /// The summary of its diagnosis, if it had one.
    pub diagnosis_summary: Option<String>,
}

/// An action taken recently, and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentAction {
    /// The action's name.
    pub action: String,
    /// Its parameters.
    pub params: BTreeMap<String, Value>,
    /// Its state, e.g. `succeeded`, `failed`, `pending-approval`.
    pub state: String,
    /// What happened, in a line.
    pub outcome: String,
    /// The ticket it served, if any.
    pub ticket: Option<String>,
    /// When it last changed state, Unix milliseconds.
    pub at_ms: u64,
}

/// Runs the subject's read-only queries for a model. [`PluginSubject`] asks the plugin; tests
/// and other callers may supply their own.
pub trait QueryRunner: Sync {
    /// The JSON answer of query `name`, or why there is none. `params` are already validated
    /// against the query's declarations.
    fn query(&self, name: &str, params: Vec<types::Param>) -> impl Future<Output = Result<String, String>> + Send;
}

/// A subject plugin as a diagnosis sees it: its queries and its rules, with the call context
/// (the ticket) every call is audited under.
#[derive(Clone)]
pub struct PluginSubject<'p> {
    plugin: SubjectPlugin<'p>,
    context: CallContext,
}

impl<'p> PluginSubject<'p> {
    /// The plugin's queries and rules, each call linked to `context` in the audit log.
    pub fn new(plugin: SubjectPlugin<'p>, context: CallContext) -> PluginSubject<'p> {
        PluginSubject { plugin, context }
    }

    /// The plugin.
    pub fn plugin(&self) -> SubjectPlugin<'p> {
        self.plugin
    }

    /// The call context.
    pub fn context(&self) -> &CallContext {
        &self.context
    }
}

impl QueryRunner for PluginSubject<'_> {
    async fn query(&self, name: &str, params: Vec<types::Param>) -> Result<String, String> {
        match self.plugin.query(&self.context, name, &params).await {
            Ok(answer) => answer,
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Which diagnoser to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiagnoserChoice {
    /// Claude when an Anthropic API key is configured, else the rules.
    #[default]
    Auto,
    /// The Anthropic Messages API.
    Claude,
    /// An OpenAI-compatible endpoint.
    #[serde(rename = "openai")]
    OpenAi,
    /// The plugin's built-in rules only.
    Rules,
}

impl FromStr for DiagnoserChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DiagnoserChoice::Auto),
            "claude" => Ok(DiagnoserChoice::Claude),
            "openai" => Ok(DiagnoserChoice::OpenAi),
            "rules" => Ok(DiagnoserChoice::Rules),
            other => Err(format!("unknown diagnoser `{other}`: expected auto, claude, openai or rules")),
        }
    }
}

impl fmt::Display for DiagnoserChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiagnoserChoice::Auto => "auto",
            DiagnoserChoice::Claude => "claude",
            DiagnoserChoice::OpenAi => "openai",
            DiagnoserChoice::Rules => "rules",
        })
    }
}

/// The diagnosis settings (`[diagnosis]`). Every one has a default; see the module docs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnoseConfig {
    /// Which diagnoser.
    pub diagnoser: DiagnoserChoice,
    /// Model calls per diagnosis.
    pub max_turns: u32,
    /// Tokens per diagnosis (all kinds); once spent, the model must conclude.
    pub max_total_tokens: u64,
    /// Timeout of one API request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Bytes of each observation payload (and of the entity list) in the prompt.
    pub snapshot_limit_bytes: usize,
    /// Bytes of each query answer given to the model.
    pub tool_output_limit_bytes: usize,
    /// Related tickets in the prompt at most.
    pub max_related_tickets: usize,
    /// Recent actions in the prompt at most.
    pub max_recent_actions: usize,
    /// Retries of transient API failures.
    pub retry: RetryConfig,
    /// The Anthropic API.
    pub claude: ClaudeConfig,
    /// The OpenAI-compatible API.
    pub openai: OpenAiConfig,
    /// Prices per model, for cost estimates; a model's longest matching name prefix applies.
    pub prices: BTreeMap<String, ModelPrice>,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        DiagnoseConfig {
            diagnoser: DiagnoserChoice::Auto,
            max_turns: 8,
            max_total_tokens: 200_000,
            request_timeout_ms: 120_000,
            snapshot_limit_bytes: 32 * 1024,
            tool_output_limit_bytes: 16 * 1024,
            max_related_tickets: 10,
            max_recent_actions: 10,
            retry: RetryConfig::default(),
            claude: ClaudeConfig::default(),
            openai: OpenAiConfig::default(),
            prices: default_prices(),
        }
    }
}

/// Published list prices at the time of writing (estimates only; override in the configuration).
fn default_prices() -> BTreeMap<String, ModelPrice> {
    let price = |input: f64, output: f64| ModelPrice {
        input_per_mtok: input,
        output_per_mtok: output,
        cache_write_per_mtok: Some(input * 1.25),
        cache_read_per_mtok: Some(input * 0.1),
    };
    BTreeMap::from([
        ("claude-sonnet-4-5".to_owned(), price(3.0, 15.0)),
        ("claude-sonnet-4-6".to_owned(), price(3.0, 15.0)),
        ("claude-haiku-4-5".to_owned(), price(1.0, 5.0)),
    ])
}

/// Retries of transient API failures (`[diagnosis.retry]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The backoff before the first retry (before jitter), in milliseconds.
    pub base_delay_ms: u64,
    /// The ceiling of one backoff, in milliseconds.
    pub max_delay_ms: u64,
    /// The longest `retry-after` honoured, in seconds; a longer one gives up.
    pub max_retry_after_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 4, base_delay_ms: 500, max_delay_ms: 30_000, max_retry_after_secs: 60 }
    }
}

impl RetryConfig {
    /// The policy these settings describe.
    pub fn policy(&self) -> retry::Policy {
        retry::Policy {
            max_attempts: self.max_attempts,
            base_delay: Duration::from_millis(self.base_delay_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
        }
    }
}

/// The Anthropic API (`[diagnosis.claude]`).
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeConfig {
    /// The model.
    pub model: String,
    /// `max_tokens` of each request.
    pub max_tokens: u32,
    /// The API's base URL; else `$ANTHROPIC_BASE_URL`, else `https://api.anthropic.com`.
    pub base_url: Option<String>,
    /// The API key; else `$ANTHROPIC_API_KEY`. Never written back out.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig { model: claude::DEFAULT_MODEL.to_owned(), max_tokens: 8192, base_url: None, api_key: None }
    }
}

impl fmt::Debug for ClaudeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeConfig")
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An OpenAI-compatible API (`[diagnosis.openai]`).
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The model (required to use this diagnoser: local servers have no sensible default).
    pub model: Option<String>,
    /// `max_tokens` of each request, when set.
    pub max_tokens: Option<u32>,
    /// The API's base URL; else `$OPENAI_BASE_URL`, else `https://api.openai.com`.
    pub base_url: Option<String>,
    /// The API key; else `$OPENAI_API_KEY`; local servers often need none. Never written back out.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn check_url(key: &str, url: &Option<String>, problems: &mut Vec<String>) {
    if let Some(url) = url {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
            Ok(_) => problems.push(format!("{key} must be an http:// or https:// URL, not `{url}`")),
            Err(e) => problems.push(format!("{key} is not a URL (`{url}`: {e})")),
        }
    }
}

impl DiagnoseConfig {
    /// Checks every setting; the error names each bad one (`diagnosis.…`) at once.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut range = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!("diagnosis.{key} must be between {min} and {max}, not {value}"));
            }
        };
        range("max_turns", self.max_turns.into(), 1, 50);
        range("max_total_tokens", self.max_total_tokens, 1_000, 100_000_000);
        range("request_timeout_ms", self.request_timeout_ms, 1, 3_600_000);
        range("snapshot_limit_bytes", self.snapshot_limit_bytes as u64, 256, 16 * 1024 * 1024);
        range("tool_output_limit_bytes", self.tool_output_limit_bytes as u64, 256, 16 * 1024 * 1024);
        range("max_related_tickets", self.max_related_tickets as u64, 0, 1_000);
        range("max_recent_actions", self.max_recent_actions as u64, 0, 1_000);
        range("retry.max_attempts", self.retry.max_attempts.into(), 1, 20);
        range("retry.max_delay_ms", self.retry.max_delay_ms, 0, 600_000);
        range("retry.max_retry_after_secs", self.retry.max_retry_after_secs, 0, 3_600);
        range("claude.max_tokens", self.claude.max_tokens.into(), 1, 1_000_000);
        if let Some(max_tokens) = self.openai.max_tokens {
            range("openai.max_tokens", max_tokens.into(), 1, 1_000_000);
        }
        if self.retry.base_delay_ms > self.retry.max_delay_ms {
            problems.push(format!(
                "diagnosis.retry.base_delay_ms ({}) must not exceed diagnosis.retry.max_delay_ms ({})",
                self.retry.base_delay_ms, self.retry.max_delay_ms
            ));
        }
        if self.claude.model.trim().is_empty() || self.claude.model.contains(char::is_whitespace) {
            problems.push(format!("diagnosis.claude.model must be a model name, not `{}`", self.claude.model));
        }
        match &self.openai.model {
            Some(model) if model.trim().is_empty() => problems.push("diagnosis.openai.model is empty".to_owned()),
            None if self.diagnoser == DiagnoserChoice::OpenAi => {
                problems.push("diagnosis.openai.model must be set when diagnosis.diagnoser = \"openai\"".to_owned())
            }
            _ => {}
        }
        check_url("diagnosis.claude.base_url", &self.claude.base_url, &mut problems);
        check_url("diagnosis.openai.base_url", &self.openai.base_url, &mut problems);
        for (model, price) in &self.prices {
            let figures = [
                Some(price.input_per_mtok),
                Some(price.output_per_mtok),
                price.cache_write_per_mtok,
                price.cache_read_per_mtok,
            ];
            if figures.into_iter().flatten().any(|p| !p.is_finite() || p < 0.0) {
                problems.push(format!("diagnosis.prices.\"{model}\" must have prices of 0 or more"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    fn context_limits(&self) -> ContextLimits {
        ContextLimits {
            snapshot_bytes: self.snapshot_limit_bytes,
            tool_output_bytes: self.tool_output_limit_bytes,
            related_tickets: self.max_related_tickets,
            recent_actions: self.max_recent_actions,
        }
    }

    fn loop_limits(&self) -> LoopLimits {
        LoopLimits {
            max_turns: self.max_turns,
            max_total_tokens: self.max_total_tokens,
            tool_output_bytes: self.tool_output_limit_bytes,
        }
    }
}

/// The bounds of one investigation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoopLimits {
    /// Model calls at most.
    pub max_turns: u32,
    /// Tokens (all kinds) after which the next turn is the last.
    pub max_total_tokens: u64,
    /// Bytes of each query answer given to the model.
    pub tool_output_bytes: usize,
}

/// What an LLM investigation spent, kept whether it succeeds or not.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spend {
    /// Request ids of every attempt that had one.
    pub request_ids: Vec<String>,
    /// Tokens, summed over turns.
    pub usage: Usage,
    /// Successful model calls.
    pub turns: u32,
    /// Queries the model ran.
    pub queries: Vec<QueryCall>,
    /// The model the API says answered (it may name a dated version of the one asked for).
    pub model: Option<String>,
}

/// Told to the model on its last turn.
pub(crate) const FINAL_TURN_NOTE: &str =
    "The investigation budget is spent: no more queries. Give your diagnosis now from what you have.";

/// Told to the model when its answer was not a valid diagnosis.
pub(crate) fn invalid_answer_note(problems: &[String]) -> String {
    format!(
        "That answer is not a valid diagnosis: {}. Answer again with the complete diagnosis in the required JSON form.",
        problems.join("; ")
    )
}

/// `{base}/v1/{path}`, whether or not the base already ends with `/v1` (gateways and
/// `OPENAI_BASE_URL` values often do).
pub(crate) fn endpoint_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") { format!("{base}/{path}") } else { format!("{base}/v1/{path}") }
}

/// The JSON object in a model's final text. Fenced code blocks and prose around the object
/// are tolerated (local models add them); anything else is a problem to send back.
pub(crate) fn parse_json_text(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the answer is empty".to_owned());
    }
    let direct = serde_json::from_str::<Value>(trimmed);
    if let Ok(value) = direct {
        return Ok(value);
    }
    if let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}'))
        && start < end
        && let Ok(value) = serde_json::from_str::<Value>(&trimmed[start..=end])
    {
        return Ok(value);
    }
    let error = direct.expect_err("the direct parse failed");
    Err(format!("the answer is not valid JSON ({error}): {}", context::cut(trimmed, 200)))
}

/// Runs one tool call of a model: finds the query, validates the arguments against its
/// declarations (nothing runs on bad arguments), runs it and cuts the answer to size. Errors
/// are texts for the model.
pub(crate) async fn run_tool<Q: QueryRunner>(
    tools: &[QueryTool],
    name: &str,
    arguments: &Value,
    runner: &Q,
    limits: &LoopLimits,
    spend: &mut Spend,
) -> Result<String, String> {
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        let known: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        return Err(format!("there is no query `{name}`; the queries are: {}", known.join(", ")));
    };
    let mut call = QueryCall { query: tool.query.clone(), arguments: arguments.clone(), ok: false, bytes: 0 };
    let result = match arguments {
        Value::Object(given) => match validate::params_object(&tool.params, given) {
            Ok(params) => runner.query(&tool.query, params).await,
            Err(problems) => Err(format!("invalid arguments, the query did not run: {}", problems.join("; "))),
        },
        _ => Err("the arguments must be a JSON object".to_owned()),
    };
    call.ok = result.is_ok();
    call.bytes = match &result {
        Ok(text) | Err(text) => text.len(),
    };
    spend.queries.push(call);
    let cut = |text: String| context::cut(&text, limits.tool_output_bytes).into_owned();
    result.map(cut).map_err(cut)
}

/// A configured diagnoser.
#[derive(Debug)]
pub enum Diagnoser {
    /// The Anthropic Messages API.
    Claude(ClaudeClient),
    /// An OpenAI-compatible API.
    OpenAi(OpenAiClient),
    /// The plugin's rules only.
    Rules,
}

impl Diagnoser {
    /// Which kind it is.
    pub fn kind(&self) -> DiagnoserKind {
        match self {
            Diagnoser::Claude(_) => DiagnoserKind::Claude,
            Diagnoser::OpenAi(_) => DiagnoserKind::OpenAi,
            Diagnoser::Rules => DiagnoserKind::Rules,
        }
    }

    /// The model asked for, for the LLMs.
    pub fn model(&self) -> Option<&str> {
        match self {
            Diagnoser::Claude(client) => Some(client.model()),
            Diagnoser::OpenAi(client) => Some(client.model()),
            Diagnoser::Rules => None,
        }
    }
}

/// Why there is no diagnosis at all: the rules failed too (or were the only diagnoser).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiagnoseError {
    /// The rules failed; when they were the fallback, the LLM's failure is kept as well.
    #[error("no diagnosis: the rules failed ({reason}){}", llm_failure.as_ref().map(|f| format!(" after the LLM failed: {f}")).unwrap_or_default())]
    RulesFailed {
        /// Why the rules gave no diagnosis.
        reason: String,
        /// Why the configured LLM gave none first, if one was configured.
        llm_failure: Option<String>,
    },
}

/// The diagnosis engine: the configured diagnoser and its settings.
#[derive(Debug)]
pub struct DiagnosisEngine {
    config: DiagnoseConfig,
    diagnoser: Diagnoser,
}

impl DiagnosisEngine {
    /// Builds the engine from validated settings, reading `ANTHROPIC_*` / `OPENAI_*` from the
    /// environment where the configuration leaves them unset.
    pub fn new(config: DiagnoseConfig) -> Result<DiagnosisEngine, String> {
        DiagnosisEngine::with_env(config, |name| std::env::var(name).ok())
    }

    /// Like [`DiagnosisEngine::new`], with `env` standing in for the environment.
    pub fn with_env(config: DiagnoseConfig, env: impl Fn(&str) -> Option<String>) -> Result<DiagnosisEngine, String> {
        config.validate()?;
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let policy = config.retry.policy();
        let anthropic_key =
            config.claude.api_key.clone().filter(|k| !k.trim().is_empty()).or_else(|| env("ANTHROPIC_API_KEY"));
        let choice = match config.diagnoser {
            DiagnoserChoice::Auto if anthropic_key.is_some() => DiagnoserChoice::Claude,
            DiagnoserChoice::Auto => DiagnoserChoice::Rules,
            other => other,
        };
        let diagnoser = match choice {
            DiagnoserChoice::Claude => {
                let api_key = anthropic_key.ok_or(
                    "diagnosis.diagnoser = \"claude\" needs an API key: set diagnosis.claude.api_key or ANTHROPIC_API_KEY",
                )?;
                let base_url = config
                    .claude
                    .base_url
                    .clone()
                    .or_else(|| env("ANTHROPIC_BASE_URL"))
                    .unwrap_or_else(|| claude::DEFAULT_BASE_URL.to_owned());
                check_env_url("ANTHROPIC_BASE_URL", &base_url)?;
                let transport = transport::Transport::new(DiagnoserKind::Claude, timeout, policy, "request-id")?;
                Diagnoser::Claude(ClaudeClient::new(
                    transport,
                    &base_url,
                    api_key,
                    config.claude.model.clone(),
                    config.claude.max_tokens,
                    config.loop_limits(),
                ))
            }
            DiagnoserChoice::OpenAi => {
                let model = config.openai.model.clone().expect("validate() requires the model");
                let base_url = config
                    .openai
                    .base_url
                    .clone()
                    .or_else(|| env("OPENAI_BASE_URL"))
                    .unwrap_or_else(|| openai::DEFAULT_BASE_URL.to_owned());
                check_env_url("OPENAI_BASE_URL", &base_url)?;
                let api_key =
                    config.openai.api_key.clone().filter(|k| !k.trim().is_empty()).or_else(|| env("OPENAI_API_KEY"));
                let transport = transport::Transport::new(DiagnoserKind::OpenAi, timeout, policy, "x-request-id")?;
                Diagnoser::OpenAi(OpenAiClient::new(
                    transport,
                    &base_url,
                    api_key,
                    model,
                    config.openai.max_tokens,
                    config.loop_limits(),
                ))
            }
            DiagnoserChoice::Rules | DiagnoserChoice::Auto => Diagnoser::Rules,
        };
        Ok(DiagnosisEngine { config, diagnoser })
    }

    /// The diagnoser in use.
    pub fn diagnoser(&self) -> &Diagnoser {
        &self.diagnoser
    }

    /// The settings.
    pub fn config(&self) -> &DiagnoseConfig {
        &self.config
    }

    /// The prompt a model would be given for `request` (for inspection and tests).
    pub fn prompt(&self, request: &DiagnosisRequest) -> Prompt {
        context::build(request, &self.config.context_limits())
    }

    /// Diagnoses a ticket: the configured diagnoser, its answer validated against the
    /// catalogue; on any LLM failure the rules answer instead and the record says why. Fails
    /// only when the rules fail too.
    pub async fn diagnose<Q: QueryRunner, R: RuleDiagnoser>(
        &self,
        request: &DiagnosisRequest,
        queries: &Q,
        rules: &R,
    ) -> Result<DiagnosisRecord, DiagnoseError> {
        let mut spend = Spend::default();
        let llm = match &self.diagnoser {
            Diagnoser::Claude(client) => {
                Some(client.diagnose(&self.prompt(request), &request.actions, queries, &mut spend).await)
            }
            Diagnoser::OpenAi(client) => {
                Some(client.diagnose(&self.prompt(request), &request.actions, queries, &mut spend).await)
            }
            Diagnoser::Rules => None,
        };
        let kind = self.diagnoser.kind();
        let model = spend.model.clone().or_else(|| self.diagnoser.model().map(str::to_owned));
        let cost_usd = match &model {
            Some(model) => model::price_for(&self.config.prices, model).map(|price| price.cost(&spend.usage)),
            None => Some(0.0),
        };
        let record = |validated: Validated, diagnoser, model, fallback| DiagnosisRecord {
            diagnosis: validated.diagnosis,
            diagnoser,
            model,
            request_ids: spend.request_ids.clone(),
            usage: spend.usage,
            cost_usd,
            turns: spend.turns,
            queries: spend.queries.clone(),
            dropped_recommendations: validated.dropped,
            fallback,
        };
        let llm_failure = match llm {
            Some(Ok(validated)) => {
                tracing::info!(
                    ticket = %request.ticket.id, diagnoser = %kind, turns = spend.turns,
                    tokens = spend.usage.total(), cost_usd, dropped = validated.dropped.len(), "diagnosed"
                );
                return Ok(record(validated, kind, model, None));
            }
            Some(Err(error)) => {
                tracing::warn!(ticket = %request.ticket.id, diagnoser = %kind, "falling back to the rules: {error}");
                Some(error.to_string())
            }
            None => None,
        };
        match rules::diagnose(rules, request).await {
            Ok(validated) => Ok(record(validated, DiagnoserKind::Rules, None, llm_failure)),
            Err(reason) => Err(DiagnoseError::RulesFailed { reason, llm_failure }),
        }
    }
}

fn check_env_url(name: &str, url: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    check_url(name, &Some(url.to_owned()), &mut problems);
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    pub(crate) fn ticket(id: &str, at_ms: u64) -> types::Ticket {
        types::Ticket {
            id: id.into(),
            invariant: "node-up".into(),
            entity: "node/4".into(),
            severity: types::Severity::Critical,
            message: "node 4 has been down for 34 s".into(),
            evidence: vec![types::Evidence { label: "state".into(), value: "down".into() }],
            opened_at_ms: at_ms,
            last_seen_ms: at_ms + 30_000,
            occurrences: 3,
        }
    }

    pub(crate) fn request(id: &str, at_ms: u64) -> DiagnosisRequest {
        let info = types::SubjectInfo {
            name: "kv".into(),
            version: "0.1.0".into(),
            description: "a replicated key-value store".into(),
            invariants: vec![],
            actions: vec![types::ActionSpec {
                name: "drain".into(),
                description: "Move everything off a node.".into(),
                risk: types::Risk::Medium,
                params: vec![types::ParamSpec {
                    name: "node".into(),
                    description: "Node id".into(),
                    kind: types::ParamType::Integer(types::IntegerRange { min: Some(1), max: None }),
                    required: true,
                    default: None,
                }],
                entity_param: Some("node".into()),
                undo: Some("undrain".into()),
                verify_window_secs: 120,
            }],
            queries: vec![types::QuerySpec { name: "node".into(), description: "One node".into(), params: vec![] }],
            conditions: vec![],
        };
        let observation =
            types::Observation { taken_at_ms: at_ms, complete: true, errors: vec![], payload: "{\"nodes\":[]}".into() };
        let mut request = DiagnosisRequest::new(&info, ticket(id, at_ms), observation);
        request.related_tickets.push(RelatedTicket {
            ticket: ticket("T-0", at_ms - 3_600_000),
            state: "resolved".into(),
            diagnosis_summary: Some("a restart".into()),
        });
        request.recent_actions.push(RecentAction {
            action: "drain".into(),
            params: BTreeMap::from([("node".into(), serde_json::json!(3))]),
            state: "succeeded".into(),
            outcome: "node 3 drained".into(),
            ticket: Some("T-0".into()),
            at_ms: at_ms - 1_800_000,
        });
        request
    }

    #[test]
    fn defaults_are_valid() {
        DiagnoseConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bad_setting_is_named() {
        let config: DiagnoseConfig = toml::from_str(
            r#"
diagnoser = "openai"
max_turns = 0
snapshot_limit_bytes = 10
[retry]
base_delay_ms = 5000
max_delay_ms = 100
[claude]
model = ""
base_url = "ftp://example.com"
[prices.m]
input_per_mtok = -1.0
output_per_mtok = 1.0
"#,
        )
        .unwrap();
        let error = config.validate().unwrap_err();
        for expected in [
            "diagnosis.max_turns must be between 1 and 50, not 0",
            "diagnosis.snapshot_limit_bytes",
            "diagnosis.retry.base_delay_ms (5000) must not exceed",
            "diagnosis.claude.model must be a model name",
            "diagnosis.openai.model must be set when diagnosis.diagnoser = \"openai\"",
            "diagnosis.claude.base_url must be an http:// or https:// URL",
            "diagnosis.prices.\"m\"",
        ] {
            assert!(error.contains(expected), "`{expected}` missing from: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = toml::from_str::<DiagnoseConfig>("max_turn = 3\n").unwrap_err().to_string();
        assert!(error.contains("max_turn"), "{error}");
        let error = toml::from_str::<DiagnoseConfig>("[claude]\nkey = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("key"), "{error}");
    }

    #[test]
    fn the_choice_parses() {
        for word in ["auto", "claude", "openai", "rules"] {
            assert_eq!(word.parse::<DiagnoserChoice>().unwrap().to_string(), word);
            let config: DiagnoseConfig =
                toml::from_str(&format!("diagnoser = \"{word}\"\n[openai]\nmodel = \"m\"\n")).unwrap();
            assert_eq!(config.diagnoser.to_string(), word);
        }
        assert!("gpt".parse::<DiagnoserChoice>().unwrap_err().contains("expected auto, claude, openai or rules"));
    }

    #[test]
    fn auto_means_claude_only_with_a_key() {
        let engine = DiagnosisEngine::with_env(DiagnoseConfig::default(), env(&[])).unwrap();
        assert_eq!(engine.diagnoser().kind(), DiagnoserKind::Rules);

        let engine = DiagnosisEngine::with_env(DiagnoseConfig::default(), env(&[("ANTHROPIC_API_KEY", "k")])).unwrap();
        assert_eq!(engine.diagnoser().kind(), DiagnoserKind::Claude);
        let Diagnoser::Claude(client) = engine.diagnoser() else { unreachable!() };
        assert_eq!(client.url(), "https://api.anthropic.com/v1/messages");
        assert_eq!(client.model(), claude::DEFAULT_MODEL);
        assert!(!format!("{engine:?}").contains("\"k\""), "the key stays out of Debug");

        let mut config = DiagnoseConfig::default();
        config.claude.api_key = Some("from-config".into());
        config.claude.base_url = Some("http://gateway:8080/".into());
        let engine = DiagnosisEngine::with_env(config, env(&[("ANTHROPIC_BASE_URL", "http://ignored")])).unwrap();
        let Diagnoser::Claude(client) = engine.diagnoser() else { panic!("claude expected") };
        assert_eq!(client.url(), "http://gateway:8080/v1/messages");
    }

    #[test]
    fn explicit_choices_need_what_they_use() {
        let config = DiagnoseConfig { diagnoser: DiagnoserChoice::Claude, ..DiagnoseConfig::default() };
        assert!(DiagnosisEngine::with_env(config, env(&[])).unwrap_err().contains("ANTHROPIC_API_KEY"));

        let mut config = DiagnoseConfig { diagnoser: DiagnoserChoice::OpenAi, ..DiagnoseConfig::default() };
        config.openai.model = Some("local".into());
        let engine =
            DiagnosisEngine::with_env(config, env(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")])).unwrap();
        let Diagnoser::OpenAi(client) = engine.diagnoser() else { panic!("openai expected") };
        assert_eq!(client.url(), "http://127.0.0.1:11434/v1/chat/completions");

        let config = DiagnoseConfig { diagnoser: DiagnoserChoice::Rules, ..DiagnoseConfig::default() };
        let engine = DiagnosisEngine::with_env(config, env(&[("ANTHROPIC_API_KEY", "k")])).unwrap();
        assert_eq!(engine.diagnoser().kind(), DiagnoserKind::Rules);
    }

    #[test]
    fn the_prompt_prefix_is_the_same_for_every_ticket() {
        let engine = DiagnosisEngine::with_env(DiagnoseConfig::default(), env(&[])).unwrap();
        let a = engine.prompt(&request("T-1", 1_700_000_000_000));
        let b = engine.prompt(&request("T-2", 1_800_000_000_000));
        assert_eq!(a.system, b.system);
        assert_eq!(a.catalogue, b.catalogue);
        assert_ne!(a.user, b.user);
        for stable in [&a.system, &a.catalogue] {
            assert!(!stable.contains("2023-11-14") && !stable.contains("T-1") && !stable.contains("node 4 has been"));
        }
        assert!(a.user.contains("2023-11-14T22:13:20Z"), "{}", a.user);
        assert!(a.user.contains("# Related tickets (1 most recent of 1)"));
        assert!(a.user.contains("drain {\"node\":3} [succeeded]: node 3 drained (for ticket T-0)"), "{}", a.user);
        assert!(a.catalogue.contains("## `drain` (risk: medium)"), "{}", a.catalogue);
        assert!(a.catalogue.contains("- `node` (required): whole number of at least 1. Node id"), "{}", a.catalogue);
    }

    #[test]
    fn big_snapshots_are_cut() {
        let config = DiagnoseConfig { snapshot_limit_bytes: 1024, ..DiagnoseConfig::default() };
        let engine = DiagnosisEngine::with_env(config, env(&[])).unwrap();
        let mut request = request("T-1", 1_700_000_000_000);
        request.observation.payload = format!("[{}]", "1,".repeat(5000));
        let prompt = engine.prompt(&request);
        assert!(prompt.user.contains("[cut: 8978 bytes omitted]"), "{}", &prompt.user[..200]);
        assert!(prompt.user.len() < 4096);
    }

    #[test]
    fn json_in_prose_or_fences_is_found() {
        assert_eq!(parse_json_text("```json\n{\"a\": 1}\n```").unwrap(), serde_json::json!({ "a": 1 }));
        assert_eq!(parse_json_text("Here it is: {\"a\": 1} done").unwrap(), serde_json::json!({ "a": 1 }));
        assert!(parse_json_text("{\"a\": ").unwrap_err().starts_with("the answer is not valid JSON"));
        assert_eq!(parse_json_text("  ").unwrap_err(), "the answer is empty");
    }

    struct BigAnswers;

    impl QueryRunner for BigAnswers {
        async fn query(&self, name: &str, _params: Vec<types::Param>) -> Result<String, String> {
            if name == "node" { Ok("x".repeat(100_000)) } else { Err("no".into()) }
        }
    }

    #[tokio::test]
    async fn tool_answers_are_cut_and_bad_calls_never_run() {
        let tools = context::query_tools(&request("T-1", 1_700_000_000_000).queries);
        let limits = LoopLimits { max_turns: 2, max_total_tokens: 10_000, tool_output_bytes: 1000 };
        let mut spend = Spend::default();
        let answer = run_tool(&tools, "node", &serde_json::json!({}), &BigAnswers, &limits, &mut spend).await.unwrap();
        assert!(answer.ends_with("\n[cut: 99000 bytes omitted]"));
        let unknown = run_tool(&tools, "nodes", &serde_json::json!({}), &BigAnswers, &limits, &mut spend).await;
        assert_eq!(unknown.unwrap_err(), "there is no query `nodes`; the queries are: node");
        let invented =
            run_tool(&tools, "node", &serde_json::json!({ "id": 1 }), &BigAnswers, &limits, &mut spend).await;
        assert_eq!(
            invented.unwrap_err(),
            "invalid arguments, the query did not run: unknown parameter `id` (it takes: no parameters)"
        );
        assert_eq!(spend.queries.len(), 2, "an unknown query is not a query call");
        assert_eq!(spend.queries[0].bytes, 100_000);
        assert!(spend.queries[0].ok && !spend.queries[1].ok);
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("https://api.anthropic.com", "messages"), "https://api.anthropic.com/v1/messages");
        assert_eq!(endpoint_url("http://h/v1/", "chat/completions"), "http://h/v1/chat/completions");
    }
}
