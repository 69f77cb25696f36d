//! The capability gate: the host side of `operator:plugin/http`, the only way out of a plugin.
//!
//! Every request goes through [`HttpGate::send`]:
//! 1. the origin is parsed and the request is decided by the plugin's [`Grants`] (pure policy,
//!    `grants.rs`): path, headers, mutating-outside-execution and the grants themselves;
//! 2. a denial is answered to the plugin with the reason, logged for the operator with the exact
//!    grant line that would allow it, and audited;
//! 3. an allowed request is sent by the host's own client (no redirects followed, no proxy from
//!    the environment), with the endpoint's credentials added, failing over between the
//!    endpoint's URLs, under the host's timeout, reading at most the response-size cap;
//! 4. the outcome (status, bytes, latency or error) is audited. A mutating request is audited
//!    durably *before* it is sent.
//!
//! The owned per-call context is [`HttpGate`]; [`add_to_linker`] links it with a projection out
//! of the store's data, in the manner of wasmtime-wasi's capability modules.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;
use wasmtime::component::{HasData, Linker};

use super::bindings::wit_http::{self, Error as HttpError, Header, Method, Request, Response, Target};
use super::grants::{self, Grants, HttpMethod, RequestFacts, RequestTarget};
use crate::audit::{self, AuditEvent, AuditSink, Link};

/// An endpoint as the operator configures it (`[endpoints.NAME]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URLs, tried in order; the host sticks to the last one that answered.
    pub urls: Vec<String>,
    /// Name of an environment variable holding a bearer token the host adds to every request.
    pub bearer_token_env: Option<String>,
    /// Extra headers the host adds (the plugin never sees them).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A configured endpoint, resolved and ready to use.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    urls: Vec<Url>,
    headers: HeaderMap,
    current: AtomicUsize,
}

impl Endpoint {
    /// Resolves an endpoint's configuration; the error names the setting.
    pub fn from_config(name: &str, config: &EndpointConfig) -> Result<Endpoint, String> {
        let place = format!("endpoints.{name}");
        if config.urls.is_empty() {
            return Err(format!("{place}.urls must list at least one URL"));
        }
        let mut urls = Vec::new();
        for (index, raw) in config.urls.iter().enumerate() {
            let url = Url::parse(raw).map_err(|e| format!("{place}.urls[{}] `{raw}`: {e}", index + 1))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!("{place}.urls[{}] `{raw}` must be an http or https URL with a host", index + 1));
            }
            if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(format!(
                    "{place}.urls[{}] `{raw}` must not carry a query, fragment or user info (use bearer_token_env or headers)",
                    index + 1
                ));
            }
            urls.push(url);
        }
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let name = HeaderName::try_from(key.as_str()).map_err(|e| format!("{place}.headers `{key}`: {e}"))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| format!("{place}.headers `{key}`: {e}"))?;
            headers.insert(name, value);
        }
        if let Some(variable) = &config.bearer_token_env {
            let token = std::env::var(variable)
                .map_err(|_| format!("{place}.bearer_token_env names `{variable}`, which is not set"))?;
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| format!("{place}: the token in `{variable}` is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(Endpoint { name: name.to_owned(), urls, headers, current: AtomicUsize::new(0) })
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its base URLs.
    pub fn urls(&self) -> &[Url] {
        &self.urls
    }
}

/// What every call's gate shares: the client, the endpoints and the limits.
#[derive(Debug)]
pub struct GateShared {
    client: reqwest::Client,
    endpoints: BTreeMap<String, Arc<Endpoint>>,
    timeout: Duration,
    response_limit: u64,
}

impl GateShared {
    /// Builds the shared client: no redirects (a redirect could lead outside the grants), no
    /// proxy taken from the environment, the host's timeout.
    pub fn new(
        endpoints: BTreeMap<String, Arc<Endpoint>>,
        timeout: Duration,
        response_limit: u64,
    ) -> anyhow::Result<GateShared> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(EgressResolver))
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("operator-host/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(GateShared { client, endpoints, timeout, response_limit })
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &BTreeMap<String, Arc<Endpoint>> {
        &self.endpoints
    }
}

/// The gate of one plugin call (owned by the call's store).
pub struct HttpGate {
    plugin: Arc<str>,
    export: &'static str,
    grants: Arc<Grants>,
    shared: Arc<GateShared>,
    mutations_allowed: bool,
    link: Option<Link>,
    audit: AuditSink,
}

impl HttpGate {
    /// A gate for one call of `export` of `plugin`. Only an action execution may pass
    /// `mutations_allowed`.
    pub fn new(
        plugin: Arc<str>,
        export: &'static str,
        grants: Arc<Grants>,
        shared: Arc<GateShared>,
        mutations_allowed: bool,
        link: Option<Link>,
        audit: AuditSink,
    ) -> HttpGate {
        HttpGate { plugin, export, grants, shared, mutations_allowed, link, audit }
    }

    fn event(&self, target: &str, method: &str, path: &str) -> CapabilityRecord {
        CapabilityRecord {
            plugin: self.plugin.to_string(),
            export: self.export.to_owned(),
            target: target.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            link: self.link.clone(),
        }
    }

    /// Decides and, when allowed, sends one request.
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let method = method_of(request.method);
        let (target_text, target) = match &request.target {
            Target::Endpoint(name) => (name.clone(), Resolved::Endpoint(name.clone())),
            Target::Origin(origin) => match grants::parse_origin(origin) {
                Ok((scheme, host, port)) => {
                    (origin_text(&scheme, &host, port), Resolved::Origin { scheme, host, port })
                }
                Err(reason) => {
                    let record = self.event(origin, method.as_str(), &request.path_and_query);
                    let reason = format!("invalid origin `{origin}`: {reason}");
                    self.audit.record(record.denied(&reason, None));
                    return Err(HttpError::Invalid(reason));
                }
            },
        };
        let record = self.event(&target_text, method.as_str(), &request.path_and_query);
        let headers: Vec<(String, String)> =
            request.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
        let facts = RequestFacts {
            target: match &target {
                Resolved::Endpoint(name) => RequestTarget::Endpoint(name),
                Resolved::Origin { scheme, host, port } => RequestTarget::Origin { scheme, host, port: *port },
            },
            method,
            path_and_query: &request.path_and_query,
            headers: &headers,
            mutations_allowed: self.mutations_allowed,
        };
        let rule = match self.grants.decide(&facts) {
            grants::Decision::Allowed { rule } => rule,
            grants::Decision::Denied { reason, grant_line } => {
                match &grant_line {
                    Some(line) => tracing::warn!(
                        plugin = %self.plugin,
                        export = self.export,
                        "denied {} {} {}: {reason}; to allow it, add to [plugins.{}] grants: {line}",
                        method.as_str(), target_text, request.path_and_query, self.plugin
                    ),
                    None => tracing::warn!(
                        plugin = %self.plugin,
                        export = self.export,
                        "denied {} {} {}: {reason}",
                        method.as_str(), target_text, request.path_and_query
                    ),
                }
                self.audit.record(record.denied(&reason, grant_line.as_deref()));
                return Err(HttpError::Denied(reason));
            }
        };

        if let Resolved::Origin { host, .. } = &target
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
            && is_forbidden_address(ip)
            && !rule.contains(host.as_str())
        {
            // A wildcard matched a link-local literal; only a grant naming it may reach it.
            let reason =
                format!("{host} is a link-local or unspecified address; only a grant naming it literally allows it");
            self.audit.record(record.denied(&reason, None));
            return Err(HttpError::Denied(reason));
        }

        let endpoint = match &target {
            Resolved::Endpoint(name) => match self.shared.endpoints.get(name) {
                Some(endpoint) => Some(endpoint),
                None => {
                    let reason =
                        format!("endpoint `{name}` is granted but not configured ([endpoints.{name}] is missing)");
                    self.audit.record(record.failed(&rule, None, &reason, 0));
                    return Err(HttpError::Unreachable(reason));
                }
            },
            Resolved::Origin { .. } => None,
        };
        // The URLs to try, in order, with the endpoint URL index each came from.
        let urls: Vec<(Option<usize>, String)> = match (&target, endpoint) {
            (Resolved::Origin { scheme, host, port }, _) => {
                vec![(None, format!("{}{}", origin_text(scheme, host, *port), request.path_and_query))]
            }
            (Resolved::Endpoint(_), Some(endpoint)) => failover_order(endpoint)
                .map(|index| (Some(index), join(&endpoint.urls[index], &request.path_and_query)))
                .collect(),
            (Resolved::Endpoint(_), None) => unreachable!("an unconfigured endpoint returned above"),
        };
        let extra_headers = endpoint.map(|e| &e.headers);
        let timeout = match request.timeout_ms {
            Some(ms) => self.shared.timeout.min(Duration::from_millis(u64::from(ms))),
            None => self.shared.timeout,
        };

        if method.is_mutating() {
            // Audit before effect: the intent is durable before anything leaves the host.
            let intent = record.intent(&rule, &urls[0].1);
            if let Err(error) = self.audit.record_durable(intent).await {
                let reason = format!("the audit log could not record the request, so it was not sent: {error}");
                return Err(HttpError::Unreachable(reason));
            }
        }

        let started = Instant::now();
        let mut last_error = None;
        for (attempt, (index, url)) in urls.iter().enumerate() {
            let outcome = self.attempt(url, &request, method, extra_headers, timeout).await;
            let latency = started.elapsed();
            match outcome {
                Ok(response) => {
                    if let (Some(endpoint), Some(index), true) = (endpoint, index, attempt > 0) {
                        endpoint.current.store(*index, Ordering::Relaxed);
                    }
                    self.audit.record(record.completed(
                        &rule,
                        url,
                        response.status,
                        response.body.len() as u64,
                        latency,
                    ));
                    return Ok(response);
                }
                Err(Failure::Connect(message)) => {
                    // Only a connection failure moves on to the endpoint's next URL: a reply,
                    // even an error status, came from the service.
                    last_error = Some(HttpError::Unreachable(format!("{url}: {message}")));
                }
                Err(Failure::Final(error)) => {
                    self.audit.record(record.failed(&rule, Some(url), &describe(&error), latency.as_micros() as u64));
                    return Err(error);
                }
            }
        }
        let error = last_error.unwrap_or_else(|| HttpError::Unreachable("no URL to try".into()));
        self.audit.record(record.failed(&rule, None, &describe(&error), started.elapsed().as_micros() as u64));
        Err(error)
    }

    async fn attempt(
        &self,
        url: &str,
        request: &Request,
        method: HttpMethod,
        extra_headers: Option<&HeaderMap>,
        timeout: Duration,
    ) -> Result<Response, Failure> {
        let mut builder = self
            .shared
            .client
            .request(reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a valid method"), url);
        for header in &request.headers {
            builder = builder.header(header.name.as_str(), header.value.as_str());
        }
        // Configured credentials come last so that nothing the plugin set can replace them.
        for (name, value) in extra_headers.into_iter().flatten() {
            builder = builder.header(name, value.clone());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let limit = self.shared.response_limit;
        let exchange = async {
            let mut response = builder.send().await.map_err(|e| {
                if e.is_connect() {
                    Failure::Connect(error_chain(&e))
                } else {
                    Failure::Final(HttpError::Unreachable(format!("{url}: {}", error_chain(&e))))
                }
            })?;
            if response.content_length().is_some_and(|length| length > limit) {
                return Err(Failure::Final(HttpError::TooLarge(limit)));
            }
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(name, value)| {
                    Some(Header { name: name.as_str().to_owned(), value: value.to_str().ok()?.to_owned() })
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                Failure::Final(HttpError::Unreachable(format!("{url}: reading the body: {}", error_chain(&e))))
            })? {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(Failure::Final(HttpError::TooLarge(limit)));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response { status, headers, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Final(HttpError::Timeout(format!(
                "{url}: no complete reply within {} ms",
                timeout.as_millis()
            )))),
        }
    }
}

/// Link-local addresses (cloud metadata services live at 169.254.169.254) and unspecified ones
/// are never reached through a name or a wildcard: a grant must name such an address literally.
fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.is_unspecified(),
    }
}

/// Name resolution for the gate's client: drops forbidden addresses, so a granted name that
/// resolves to a metadata service (DNS rebinding, a hostile record) leads nowhere.
struct EgressResolver;

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved.into_iter().filter(|a| !is_forbidden_address(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!(
                    "`{host}` resolves only to link-local or unspecified addresses, which plugins may not reach"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

enum Resolved {
    Endpoint(String),
    Origin { scheme: String, host: String, port: u16 },
}

enum Failure {
    Connect(String),
    Final(HttpError),
}

/// The parts of a capability audit record fixed before the request is decided.
struct CapabilityRecord {
    plugin: String,
    export: String,
    target: String,
    method: String,
    path: String,
    link: Option<Link>,
}

impl CapabilityRecord {
    fn base(&self, decision: audit::Decision) -> AuditEvent {
        AuditEvent::Capability {
            plugin: self.plugin.clone(),
            export: self.export.clone(),
            target: self.target.clone(),
            url: None,
            method: self.method.clone(),
            path: self.path.clone(),
            decision,
            status: None,
            bytes: 0,
            latency_us: 0,
            error: None,
            link: self.link.clone(),
        }
    }

    fn denied(&self, reason: &str, grant_line: Option<&str>) -> AuditEvent {
        self.base(audit::Decision::Denied {
            reason: reason.to_owned(),
            rule: grant_line.map(|line| format!("would be allowed by: {line}")),
        })
    }

    fn intent(&self, rule: &str, url: &str) -> AuditEvent {
        let mut event = self.base(audit::Decision::Allowed { rule: rule.to_owned() });
        // No status and no error: the request is about to leave; its outcome is the next record.
        if let AuditEvent::Capability { url: u, .. } = &mut event {
            *u = Some(url.to_owned());
        }
        event
    }

    fn completed(&self, rule: &str, url: &str, status: u16, bytes: u64, latency: Duration) -> AuditEvent {
        let mut event = self.base(audit::Decision::Allowed { rule: rule.to_owned() });
        if let AuditEvent::Capability { url: u, status: s, bytes: b, latency_us, .. } = &mut event {
            *u = Some(url.to_owned());
            *s = Some(status);
            *b = bytes;
            *latency_us = latency.as_micros() as u64;
        }
        event
    }

    fn failed(&self, rule: &str, url: Option<&str>, message: &str, latency_us: u64) -> AuditEvent {
        let mut event = self.base(audit::Decision::Allowed { rule: rule.to_owned() });
        if let AuditEvent::Capability { url: u, error, latency_us: l, .. } = &mut event {
            *u = url.map(str::to_owned);
            *error = Some(message.to_owned());
            *l = latency_us;
        }
        event
    }
}

fn method_of(method: Method) -> HttpMethod {
    match method {
        Method::Get => HttpMethod::Get,
        Method::Head => HttpMethod::Head,
        Method::Post => HttpMethod::Post,
        Method::Put => HttpMethod::Put,
        Method::Patch => HttpMethod::Patch,
        Method::Delete => HttpMethod::Delete,
    }
}

fn origin_text(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Indices of the endpoint's URLs, starting with the one that answered last.
fn failover_order(endpoint: &Endpoint) -> impl Iterator<Item = usize> + '_ {
    let count = endpoint.urls.len();
    let start = endpoint.current.load(Ordering::Relaxed) % count;
    (0..count).map(move |offset| (start + offset) % count)
}

/// The request URL: the base's path (without its trailing slash) followed by the plugin's path.
/// A plugin path of `/` addresses the base itself (e.g. a webhook URL).
fn join(base: &Url, path_and_query: &str) -> String {
    let base_text = base.as_str().trim_end_matches('/');
    if path_and_query == "/" && base.path() != "/" {
        base_text.to_owned()
    } else {
        format!("{base_text}{path_and_query}")
    }
}

fn describe(error: &HttpError) -> String {
    match error {
        HttpError::Denied(m) => format!("denied: {m}"),
        HttpError::Invalid(m) => format!("invalid: {m}"),
        HttpError::Timeout(m) => format!("timeout: {m}"),
        HttpError::Unreachable(m) => format!("unreachable: {m}"),
        HttpError::TooLarge(limit) => format!("response larger than the {limit}-byte cap"),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Projects an [`HttpGate`] out of a store's data.
pub trait HasGate: Send + 'static {
    /// The call's gate.
    fn gate(&mut self) -> &mut HttpGate;
}

struct GateData;
impl HasData for GateData {
    type Data<'a> = &'a mut HttpGate;
}

impl wit_http::Host for HttpGate {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        Ok(HttpGate::send(self, request).await)
    }
}

/// Links `operator:plugin/http` to the gate of each call.
pub fn add_to_linker<T: HasGate>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit_http::add_to_linker::<T, GateData>(linker, |t| t.gate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_and_path() {
        let base = Url::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!(join(&base, "/api/v1/items?state=1"), "http://127.0.0.1:2379/api/v1/items?state=1");
        let hook = Url::parse("https://hooks.example.com/services/T/B/X").unwrap();
        assert_eq!(join(&hook, "/"), "https://hooks.example.com/services/T/B/X");
        assert_eq!(join(&hook, "/extra"), "https://hooks.example.com/services/T/B/X/extra");
    }

    #[test]
    fn endpoint_config_errors_name_the_setting() {
        let bad = EndpointConfig { urls: vec!["ftp://x".into()], bearer_token_env: None, headers: BTreeMap::new() };
        assert!(Endpoint::from_config("control", &bad).unwrap_err().contains("endpoints.control.urls[1]"));
        let empty = EndpointConfig { urls: vec![], bearer_token_env: None, headers: BTreeMap::new() };
        assert!(Endpoint::from_config("control", &empty).unwrap_err().contains("at least one URL"));
        let missing_env = EndpointConfig {
            urls: vec!["http://127.0.0.1:1".into()],
            bearer_token_env: Some("OPERATOR_TEST_SURELY_UNSET".into()),
            headers: BTreeMap::new(),
        };
        assert!(Endpoint::from_config("control", &missing_env).unwrap_err().contains("not set"));
    }

    #[test]
    fn link_local_and_unspecified_addresses_are_forbidden() {
        for ip in ["169.254.169.254", "0.0.0.0", "fe80::1", "::"] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.5", "::1", "2001:db8::1"] {
            assert!(!is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn failover_starts_from_the_last_good_url() {
        let config = EndpointConfig {
            urls: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into(), "http://127.0.0.1:3".into()],
            bearer_token_env: None,
            headers: BTreeMap::new(),
        };
        let endpoint = Endpoint::from_config("control", &config).unwrap();
        endpoint.current.store(1, Ordering::Relaxed);
        let order: Vec<u16> = failover_order(&endpoint).map(|i| endpoint.urls[i].port().unwrap()).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
