//! The operator's outbound HTTP grants for a plugin, and the decision for each request it makes.
//!
//! A plugin reaches the network only through the capability gate, and the gate sends a request only
//! if one of the grants the operator configured for that plugin allows it. **No grant, no request**:
//! a plugin without grants can make no request at all, and anything its grants do not name is denied
//! (fail-closed). A grant is only ever an allowance; there is no deny rule to get wrong.
//!
//! This module is pure policy: parsing and matching, with no I/O, so it can be tested on its own and
//! reused by anything that needs to explain a grant (`plugins inspect`, config checks).
//!
//! # Configuration
//!
//! ```toml
//! [plugins.demo]
//! grants = [
//!   { endpoint = "control", methods = ["GET", "HEAD"], paths = ["/api/v1/**"] },
//!   { url = "http://*:9100", methods = ["GET"], paths = ["/status", "/metrics"] },
//! ]
//! ```
//!
//! Each grant names exactly one target (`endpoint` or `url`), a non-empty `methods` list and a
//! non-empty `paths` list. A request is allowed when a single grant matches its target, its method
//! and its path.
//!
//! ## Targets
//!
//! | key | form | example | matches |
//! |---|---|---|---|
//! | `endpoint` | `^[a-z][a-z0-9_-]{0,62}$` | `"control"` | the endpoint of that name the operator configured; the host resolves it and adds its credentials |
//! | `url` | origin pattern, below | `"http://*:9100"` | a URL the plugin names itself, if its origin matches |
//!
//! ## Origin patterns (`url`): `scheme://host[:port]`
//!
//! | part | form | example | matches |
//! |---|---|---|---|
//! | scheme (required) | `http`, `https` | `https://…` | that scheme only |
//! | | `*` | `*://…` | `http` and `https` |
//! | host | DNS name | `api.example.com` | that name, case-insensitively |
//! | | IPv4 literal | `10.0.0.5` | that address |
//! | | bracketed IPv6 literal | `[fd00::5]` | that address, in any spelling |
//! | | `*` | `http://*:9100` | any host |
//! | | `*.` + DNS name | `*.example.com` | any subdomain at any depth (`a.example.com`, `a.b.example.com`), **not** `example.com` itself |
//! | port | number 1–65535 | `:9100` | that port |
//! | | `*` | `:*` | any port |
//! | | omitted | `https://api.example.com` | the scheme's default port (80, 443); an error with scheme `*` |
//!
//! Rejected: a missing scheme, any other scheme, a path (even a lone `/`), a query, a fragment,
//! userinfo (`user@`), percent-encoding, `*` inside a label (`a*.example.com`, `example.*`), an
//! unbracketed IPv6 address, a host whose last label is a number but which is not a dotted-quad
//! IPv4 address (`1.2.3`, `0x7f.1`), a trailing dot, and non-ASCII (write IDNs in their `xn--` form).
//! Names are compared as written: a pattern grants names, not the addresses they resolve to.
//!
//! ## Path patterns (`paths`)
//!
//! | form | example | matches |
//! |---|---|---|
//! | literal segments | `/status` | exactly `/status` (case-sensitive; not `/status/`) |
//! | `*` as a whole segment | `/api/v1/item/*` | exactly one non-empty segment: `/api/v1/item/1`, not `/api/v1/item/1/x` |
//! | `**` as the last segment | `/api/v1/**` | zero or more segments: `/api/v1`, `/api/v1/items/1` |
//! | `/**` | `/**` | every path |
//! | `*` inside a segment | `/a*b` | literally `/a*b` (there is no partial-segment glob) |
//!
//! The query string of a request is never part of matching. Rejected: a pattern not starting with
//! `/`, `**` before the last segment, `?` or `#`, empty (`//`), `.` or `..` segments, a backslash,
//! spaces or control characters, characters that must be percent-encoded in a URL path, and
//! `%2e`, `%2f`, `%5c` in either case (such requests are always denied, so the pattern could never
//! match).
//!
//! ## Methods (`methods`)
//!
//! | form | matches |
//! |---|---|
//! | `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` (any case) | that method |
//! | `*` | all six |
//!
//! Granting a mutating method (anything but `GET` and `HEAD`) is necessary but not sufficient: see
//! step 3 below.
//!
//! # Decision order
//!
//! [`Grants::decide`] checks, in order, and the first failure denies:
//!
//! 1. **Path.** It must start with `/` and contain no `.` or `..` segment (also before a `;`
//!    parameter), no empty segment, no backslash, no `%2e`/`%2f`/`%5c`, no malformed `%`, no space or
//!    control character, no `#` and only characters valid in a URL path. Servers normalise such paths
//!    differently from this matcher, so they could reach a path no grant names.
//! 2. **Headers.** A plugin may not set `authorization`, `proxy-authorization`, `cookie`, `host`,
//!    hop-by-hop or framing headers (`connection`, `keep-alive`, `transfer-encoding`,
//!    `content-length`, `upgrade`, `te`, `trailer`) or any `proxy-*` header; names must be RFC 7230
//!    tokens and values free of CR, LF and other control characters. The host adds the configured
//!    credentials itself.
//! 3. **Mutations.** A mutating request is denied unless the call is an approved action execution,
//!    whatever the grants say.
//! 4. **Grants.** Some grant must match target, method and path. The denial carries the inline table
//!    that would allow the request, so the operator can paste it into the plugin's `grants`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One grant as written in the host's configuration, before validation.
///
/// [`Grants::parse`] turns a list of these into [`Grants`]; nothing else should interpret it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Name of an endpoint the operator configured (e.g. `control`); exclusive with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Origin pattern such as `http://*:9100`; exclusive with `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Allowed methods (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, any case) or `*` for all.
    pub methods: Vec<String>,
    /// Allowed path patterns, such as `/api/v1/**`.
    pub paths: Vec<String>,
}

/// An HTTP method a plugin may use. Other methods (`OPTIONS`, `CONNECT`, `TRACE`) have no use for
/// a plugin and are not representable, so they can never be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl HttpMethod {
    /// Every method, in canonical order (the order used when grants are displayed).
    pub const ALL: [HttpMethod; 6] =
        [HttpMethod::Get, HttpMethod::Head, HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch, HttpMethod::Delete];

    /// Whether the method may change the target's state (anything but `GET` and `HEAD`); such
    /// requests are allowed only during an approved action execution.
    pub fn is_mutating(self) -> bool {
        !matches!(self, HttpMethod::Get | HttpMethod::Head)
    }

    /// The method's name in upper case, as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that is not one of the six [`HttpMethod`]s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown HTTP method {input:?}: use one of GET, HEAD, POST, PUT, PATCH, DELETE")]
pub struct ParseMethodError {
    /// The text that failed to parse.
    pub input: String,
}

impl FromStr for HttpMethod {
    type Err = ParseMethodError;

    /// Parses a method name case-insensitively (`get`, `Get` and `GET` are the same method).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HttpMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseMethodError { input: s.to_owned() })
    }
}

/// An invalid origin pattern or path pattern; the message quotes the pattern and says what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    /// A sentence naming the pattern and the fault.
    pub message: String,
}

impl PatternError {
    fn new(message: String) -> Self {
        PatternError { message }
    }
}

/// One problem found in one grant of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantProblem {
    /// The plugin whose grants were parsed.
    pub plugin: String,
    /// 1-based position of the grant in the plugin's `grants` list.
    pub index: usize,
    /// What was wrong with it.
    pub message: String,
}

impl fmt::Display for GrantProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.grants[{}]: {}", config_path(&self.plugin), self.index, self.message)
    }
}

/// Every problem found in a plugin's grants, so the operator can fix them all in one pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct GrantError {
    /// The problems, in grant order; never empty.
    pub problems: Vec<GrantProblem>,
}

fn render_problems(problems: &[GrantProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// What a grant allows requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantTarget {
    /// A configured endpoint, by name.
    Endpoint(String),
    /// URLs whose origin matches the pattern.
    Origin(OriginPattern),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A host in normal form: names lower-cased, addresses parsed so that every spelling of one address
/// compares equal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::V4(ip) => write!(f, "{ip}"),
            Host::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Exact(Scheme),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// Strict subdomains of the name (never the name itself).
    Subdomains(String),
    Exact(Host),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
}

/// A validated origin pattern `scheme://host[:port]` (see the module documentation for its forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

impl OriginPattern {
    /// Whether a request origin matches. The host is compared case-insensitively and IP literals
    /// by value; an origin that is not itself valid (bad scheme, host or port 0) never matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        match Target::origin(scheme, host, port) {
            Ok(Target::Origin { scheme, host, port }) => self.matches_parts(scheme, &host, port),
            _ => false,
        }
    }

    fn matches_parts(&self, scheme: Scheme, host: &Host, port: u16) -> bool {
        let scheme_ok = match self.scheme {
            SchemePattern::Any => true,
            SchemePattern::Exact(s) => s == scheme,
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
        };
        let host_ok = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Exact(want), have) => want == have,
            (HostPattern::Subdomains(suffix), Host::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
            (HostPattern::Subdomains(_), _) => false,
        };
        scheme_ok && host_ok && port_ok
    }
}

impl FromStr for OriginPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| PatternError::new(format!("origin pattern {s:?} {why}"));
        let (scheme, authority) = split_origin(s, false).map_err(|why| err(&why))?;
        let scheme = if scheme == "*" {
            SchemePattern::Any
        } else {
            let parsed = Scheme::parse(scheme)
                .ok_or_else(|| err(&format!("has scheme {scheme:?}: use `http`, `https` or `*` (either)")))?;
            SchemePattern::Exact(parsed)
        };
        let (host_text, port_text) = split_host_port(authority).map_err(|why| err(&why))?;
        let host = if host_text == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host_text.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(err("may use `*` only as the whole host or as the first label (`*.example.com`)"));
            }
            match parse_host(suffix).map_err(|why| err(&why))? {
                Host::Name(name) => HostPattern::Subdomains(name),
                _ => {
                    return Err(err("puts `*.` before an IP address: `*.` must be followed by a host name"));
                }
            }
        } else if host_text.contains('*') {
            return Err(err("may use `*` only as the whole host or as the first label (`*.example.com`)"));
        } else {
            HostPattern::Exact(parse_host(host_text).map_err(|why| err(&why))?)
        };
        let port = match (port_text, &scheme) {
            (Some("*"), _) => PortPattern::Any,
            (Some(p), _) => PortPattern::Exact(parse_port(p).map_err(|why| err(&why))?),
            (None, SchemePattern::Exact(s)) => PortPattern::Exact(s.default_port()),
            (None, SchemePattern::Any) => {
                return Err(err(
                    "has scheme `*` but no port: give a port number or `:*` (http and https have different default ports)",
                ));
            }
        };
        Ok(OriginPattern { scheme, host, port })
    }
}

impl fmt::Display for OriginPattern {
    /// The canonical form: lower case, IPv6 compressed, the port omitted when it is the scheme's
    /// default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            SchemePattern::Any => f.write_str("*://")?,
            SchemePattern::Exact(s) => write!(f, "{}://", s.as_str())?,
        }
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Subdomains(name) => write!(f, "*.{name}")?,
            HostPattern::Exact(host) => write!(f, "{host}")?,
        }
        match (self.port, &self.scheme) {
            (PortPattern::Any, _) => f.write_str(":*"),
            (PortPattern::Exact(p), SchemePattern::Exact(s)) if p == s.default_port() => Ok(()),
            (PortPattern::Exact(p), _) => write!(f, ":{p}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// A final `**`: zero or more segments.
    Rest,
}

/// A validated path pattern (see the module documentation for its forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Whether a request path matches. A query string, if present, is ignored. The path is matched
    /// as given: [`Grants::decide`] rejects paths with dot segments or encoded separators first, and
    /// callers matching paths themselves must do the same.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut have = rest.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => match have.next() {
                    Some(s) if !s.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(want) => match have.next() {
                    Some(s) if s == want => {}
                    _ => return false,
                },
            }
        }
        have.next().is_none()
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| PatternError::new(format!("path pattern {s:?} {why}"));
        if s.contains('?') {
            return Err(err("must not contain `?`: the query string is not part of matching"));
        }
        check_path(s).map_err(|fault| err(&fault.to_string()))?;
        let parts: Vec<&str> = s[1..].split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            segments.push(match part {
                "**" if i == last => Segment::Rest,
                "**" => {
                    return Err(err("uses `**` before its last segment: `**` may only end a pattern"));
                }
                "*" => Segment::One,
                literal => Segment::Literal(literal.to_owned()),
            });
        }
        Ok(PathPattern { segments })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            f.write_str("/")?;
            match segment {
                Segment::Literal(s) => f.write_str(s)?,
                Segment::One => f.write_str("*")?,
                Segment::Rest => f.write_str("**")?,
            }
        }
        Ok(())
    }
}

/// One validated grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    index: usize,
    target: GrantTarget,
    methods: Vec<HttpMethod>,
    paths: Vec<PathPattern>,
}

impl Grant {
    /// 1-based position in the plugin's `grants` list, as the operator counts them.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The endpoint or origin pattern the grant names.
    pub fn target(&self) -> &GrantTarget {
        &self.target
    }

    /// The allowed methods, deduplicated, in canonical order.
    pub fn methods(&self) -> &[HttpMethod] {
        &self.methods
    }

    /// The allowed path patterns, deduplicated, in configured order.
    pub fn paths(&self) -> &[PathPattern] {
        &self.paths
    }

    /// The grant in canonical form, as a spec that parses back to the same grant.
    pub fn to_spec(&self) -> GrantSpec {
        let (endpoint, url) = match &self.target {
            GrantTarget::Endpoint(name) => (Some(name.clone()), None),
            GrantTarget::Origin(pattern) => (None, Some(pattern.to_string())),
        };
        GrantSpec {
            endpoint,
            url,
            methods: method_names(&self.methods),
            paths: self.paths.iter().map(ToString::to_string).collect(),
        }
    }

    fn matches_target(&self, target: &Target<'_>) -> bool {
        match (&self.target, target) {
            (GrantTarget::Endpoint(granted), Target::Endpoint(name)) => granted == name,
            (GrantTarget::Origin(pattern), Target::Origin { scheme, host, port }) => {
                pattern.matches_parts(*scheme, host, *port)
            }
            _ => false,
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.matches(path))
    }
}

impl fmt::Display for Grant {
    /// The grant as a canonical TOML inline table, e.g.
    /// `{ endpoint = "control", methods = ["GET", "HEAD"], paths = ["/api/v1/**"] }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&inline_table(&self.to_spec()))
    }
}

/// A plugin's validated grants. Built only by [`Grants::parse`] or [`Grants::none`], so holding one
/// means every grant in it is well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    plugin: String,
    grants: Vec<Grant>,
    /// Each grant's rule text, as decisions name it (`plugins.x.grants[1] {…}`): written once
    /// here rather than formatted for every request.
    rules: Vec<String>,
    endpoints: Vec<String>,
}

/// Which target a request goes to, as the capability gate received it from the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestTarget<'a> {
    /// A configured endpoint, by name.
    Endpoint(&'a str),
    /// A URL's origin, already split by the caller (see [`parse_origin`]).
    Origin {
        /// `http` or `https` (any case).
        scheme: &'a str,
        /// A host name, an IPv4 address, or an IPv6 address with or without brackets.
        host: &'a str,
        /// The port, with the scheme's default already filled in.
        port: u16,
    },
}

/// Everything about a request that the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// Where the request goes.
    pub target: RequestTarget<'a>,
    /// The request method.
    pub method: HttpMethod,
    /// The request target's path, with the query string if any (`/api/v1/items?state=0`).
    pub path_and_query: &'a str,
    /// Headers the plugin set, as (name, value).
    pub headers: &'a [(String, String)],
    /// Whether the call is an approved action execution, the only context in which mutating
    /// requests may be sent.
    pub mutations_allowed: bool,
}

/// The outcome of [`Grants::decide`], recorded in the audit log either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may be sent.
    Allowed {
        /// The grant that allowed it, e.g. `plugins.demo.grants[1] { endpoint = "control", … }`.
        rule: String,
    },
    /// The request must not be sent.
    Denied {
        /// A sentence for the plugin's author saying why.
        reason: String,
        /// The grant that would allow the request, as a TOML inline table to add to the plugin's
        /// `grants`; `None` when no grant could allow it (malformed request, or a mutation outside an
        /// action execution).
        grant_line: Option<String>,
    },
}

impl Decision {
    /// Whether the request may be sent.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

fn deny(reason: String, grant_line: Option<String>) -> Decision {
    Decision::Denied { reason, grant_line }
}

impl Grants {
    /// No grants: every request of the plugin is denied.
    pub fn none(plugin: &str) -> Grants {
        Grants { plugin: plugin.to_owned(), grants: Vec::new(), rules: Vec::new(), endpoints: Vec::new() }
    }

    /// Validates a plugin's grants. Every problem in every grant is reported at once, each naming
    /// the plugin, the grant (1-based) and the fault, e.g.
    /// `plugins.demo.grants[2]: path pattern "api/v1" must start with "/"`.
    pub fn parse(plugin: &str, specs: &[GrantSpec]) -> Result<Grants, GrantError> {
        let mut problems = Vec::new();
        let mut grants = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let index = i + 1;
            match parse_grant(index, spec) {
                Ok(grant) => grants.push(grant),
                Err(messages) => problems.extend(messages.into_iter().map(|message| GrantProblem {
                    plugin: plugin.to_owned(),
                    index,
                    message,
                })),
            }
        }
        if !problems.is_empty() {
            return Err(GrantError { problems });
        }
        let mut endpoints: Vec<String> = Vec::new();
        for grant in &grants {
            if let GrantTarget::Endpoint(name) = &grant.target
                && !endpoints.contains(name)
            {
                endpoints.push(name.clone());
            }
        }
        let rules = grants.iter().map(|g| format!("{}.grants[{}] {g}", config_path(plugin), g.index)).collect();
        Ok(Grants { plugin: plugin.to_owned(), grants, rules, endpoints })
    }

    /// The plugin these grants belong to.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The grants in configured order; each displays as its canonical TOML inline table.
    pub fn iter(&self) -> std::slice::Iter<'_, Grant> {
        self.grants.iter()
    }

    /// Number of grants.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether there are no grants (the plugin can make no request).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Endpoint names the grants refer to, each once, so the configuration loader can check that
    /// they exist.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(String::as_str)
    }

    /// Decides whether a request may be sent (see the module documentation for the order of
    /// checks). Fail-closed: anything not explicitly granted is denied.
    pub fn decide(&self, request: &RequestFacts<'_>) -> Decision {
        let path = match check_request_path(request.path_and_query) {
            Ok(path) => path,
            Err(reason) => return deny(reason, None),
        };
        if let Err(reason) = check_headers(request.headers) {
            return deny(reason, None);
        }
        let method = request.method;
        if method.is_mutating() && !request.mutations_allowed {
            return deny(
                format!(
                    "{method} is a mutating request, and mutating requests are allowed only during an \
                     approved action execution; this call is not one, whatever the plugin is granted"
                ),
                None,
            );
        }
        let target = match request.target {
            RequestTarget::Endpoint(name) => Target::endpoint(name),
            RequestTarget::Origin { scheme, host, port } => Target::origin(scheme, host, port),
        };
        let target = match target {
            Ok(target) => target,
            Err(reason) => return deny(reason, None),
        };
        let allowing = self
            .grants
            .iter()
            .position(|g| g.matches_target(&target) && g.methods.contains(&method) && g.matches_path(path));
        if let Some(i) = allowing {
            return Decision::Allowed { rule: self.rules[i].clone() };
        }
        deny(self.explain(&target, method, path), Some(suggest(&target, method, path)))
    }

    /// Says which part of the request no grant covers, naming the closest grants when some match
    /// the target, so the author sees whether the method or the path is missing.
    fn explain(&self, target: &Target<'_>, method: HttpMethod, path: &str) -> String {
        let plugin = &self.plugin;
        if self.grants.is_empty() {
            return format!(
                "plugin `{plugin}` has no grants, so it may make no requests \
                 (no grant, no request); {method} {path} on {target} was denied"
            );
        }
        let on_target: Vec<&Grant> = self.grants.iter().filter(|g| g.matches_target(target)).collect();
        let mut methods_for_path: Vec<HttpMethod> =
            on_target.iter().filter(|g| g.matches_path(path)).flat_map(|g| g.methods.iter().copied()).collect();
        methods_for_path.sort();
        methods_for_path.dedup();
        if !methods_for_path.is_empty() {
            return format!(
                "{target} is granted to plugin `{plugin}` for {} on {path}, but not {method}",
                method_names(&methods_for_path).join(", ")
            );
        }
        let mut patterns_for_method: Vec<String> = Vec::new();
        for grant in on_target.iter().filter(|g| g.methods.contains(&method)) {
            for pattern in &grant.paths {
                let text = pattern.to_string();
                if !patterns_for_method.contains(&text) {
                    patterns_for_method.push(text);
                }
            }
        }
        if let [only] = patterns_for_method.as_slice() {
            return format!(
                "{target} is granted to plugin `{plugin}` for {method} only on {only}, which does \
                 not match {path}"
            );
        }
        if !patterns_for_method.is_empty() {
            return format!(
                "{target} is granted to plugin `{plugin}` for {method} only on {}, none of which \
                 matches {path}",
                patterns_for_method.join(", ")
            );
        }
        format!("no grant of plugin `{plugin}` allows {method} {path} on {target}")
    }
}

impl<'a> IntoIterator for &'a Grants {
    type Item = &'a Grant;
    type IntoIter = std::slice::Iter<'a, Grant>;

    fn into_iter(self) -> Self::IntoIter {
        self.grants.iter()
    }
}

/// Parses an origin a plugin supplied, `scheme://host[:port]` with an optional trailing `/`, into
/// its normalised (scheme, host, port): scheme lower case (`http` or `https`), host lower case
/// (IPv6 in brackets), port filled in from the scheme's default. A path, query, fragment, userinfo,
/// percent-encoding or wildcard is an error, so the origin the gate checks is the one it connects to.
pub fn parse_origin(s: &str) -> Result<(String, String, u16), String> {
    let err = |why: &str| format!("origin {s:?} {why}");
    let (scheme_text, authority) = split_origin(s, true).map_err(|why| err(&why))?;
    let scheme =
        Scheme::parse(scheme_text).ok_or_else(|| err(&format!("has scheme {scheme_text:?}: use `http` or `https`")))?;
    let (host_text, port_text) = split_host_port(authority).map_err(|why| err(&why))?;
    if host_text.contains('*') {
        return Err(err("contains `*`: a request names one host and port, wildcards belong in grants"));
    }
    let host = parse_host(host_text).map_err(|why| err(&why))?;
    let port = match port_text {
        None => scheme.default_port(),
        Some(p) => parse_port(p).map_err(|why| err(&why))?,
    };
    Ok((scheme.as_str().to_owned(), host.to_string(), port))
}

/// A request target in normal form, ready to be matched.
enum Target<'a> {
    Endpoint(&'a str),
    Origin { scheme: Scheme, host: Host, port: u16 },
}

impl<'a> Target<'a> {
    fn endpoint(name: &'a str) -> Result<Target<'a>, String> {
        if valid_endpoint_name(name) {
            Ok(Target::Endpoint(name))
        } else {
            Err(format!(
                "endpoint name {name:?} is not valid: endpoint names are 1 to 63 characters of \
                 a-z, 0-9, `_` and `-`, starting with a letter"
            ))
        }
    }

    fn origin(scheme: &str, host: &str, port: u16) -> Result<Target<'a>, String> {
        let scheme = Scheme::parse(scheme)
            .ok_or_else(|| format!("scheme {scheme:?} is not supported: requests use `http` or `https`"))?;
        // Accept an IPv6 literal with or without brackets; `parse_host` requires them.
        let host = if !host.starts_with('[') && host.contains(':') {
            host.parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| format!("request origin host {host:?} is not a valid IPv6 address"))?
        } else {
            parse_host(host).map_err(|why| format!("request origin {}://{host}:{port} {why}", scheme.as_str()))?
        };
        if port == 0 {
            return Err("port 0 is not a valid target port".to_owned());
        }
        Ok(Target::Origin { scheme, host, port })
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Endpoint(name) => write!(f, "endpoint `{name}`"),
            Target::Origin { scheme, host, port } => {
                write!(f, "{}://{host}", scheme.as_str())?;
                if *port != scheme.default_port() {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

/// The narrowest grant that allows the request: its exact target, method and path. A path segment
/// that is literally `*` or `**` becomes `*`, which matches it, because patterns cannot escape them.
fn suggest(target: &Target<'_>, method: HttpMethod, path: &str) -> String {
    let pattern: String = path[1..]
        .split('/')
        .map(|segment| match segment {
            "**" => "/*".to_owned(),
            other => format!("/{other}"),
        })
        .collect();
    let (endpoint, url) = match target {
        Target::Endpoint(name) => (Some((*name).to_owned()), None),
        Target::Origin { .. } => (None, Some(target.to_string())),
    };
    inline_table(&GrantSpec { endpoint, url, methods: vec![method.as_str().to_owned()], paths: vec![pattern] })
}

fn parse_grant(index: usize, spec: &GrantSpec) -> Result<Grant, Vec<String>> {
    let mut problems = Vec::new();
    let target = match (&spec.endpoint, &spec.url) {
        (Some(_), Some(_)) => {
            problems.push("names both `endpoint` and `url`: a grant names exactly one of them".to_owned());
            None
        }
        (None, None) => {
            problems.push("names neither `endpoint` nor `url`: a grant names exactly one of them".to_owned());
            None
        }
        (Some(name), None) => {
            if valid_endpoint_name(name) {
                Some(GrantTarget::Endpoint(name.clone()))
            } else {
                problems.push(format!(
                    "endpoint name {name:?} is not valid: use 1 to 63 characters of a-z, 0-9, `_` \
                     and `-`, starting with a letter"
                ));
                None
            }
        }
        (None, Some(url)) => match url.parse::<OriginPattern>() {
            Ok(pattern) => Some(GrantTarget::Origin(pattern)),
            Err(e) => {
                problems.push(e.message);
                None
            }
        },
    };

    let mut methods = Vec::new();
    if spec.methods.is_empty() {
        problems.push(
            "`methods` is empty: list at least one of GET, HEAD, POST, PUT, PATCH, DELETE, or \"*\" \
             for all"
                .to_owned(),
        );
    }
    for text in &spec.methods {
        if text == "*" {
            methods.extend(HttpMethod::ALL);
        } else {
            match text.parse::<HttpMethod>() {
                Ok(method) => methods.push(method),
                Err(_) => problems.push(format!(
                    "method {text:?} is not supported: use GET, HEAD, POST, PUT, PATCH, DELETE, or \
                     \"*\" for all"
                )),
            }
        }
    }
    methods.sort();
    methods.dedup();

    let mut paths: Vec<PathPattern> = Vec::new();
    if spec.paths.is_empty() {
        problems.push("`paths` is empty: list at least one path pattern, e.g. \"/**\" for every path".to_owned());
    }
    for text in &spec.paths {
        match text.parse::<PathPattern>() {
            Ok(pattern) if !paths.contains(&pattern) => paths.push(pattern),
            Ok(_) => {}
            Err(e) => problems.push(e.message),
        }
    }

    match target {
        Some(target) if problems.is_empty() => Ok(Grant { index, target, methods, paths }),
        _ => Err(problems),
    }
}

fn valid_endpoint_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Splits `scheme://authority`, rejecting everything an origin must not contain. With
/// `allow_slash`, a single trailing `/` (an empty path) is accepted, as URLs are often written so.
fn split_origin(s: &str, allow_slash: bool) -> Result<(&str, &str), String> {
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    if !s.is_ascii() {
        return Err("must be ASCII: write internationalised host names in their `xn--` form".to_owned());
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(if allow_slash {
            "must start with `http://` or `https://`".to_owned()
        } else {
            "must start with a scheme: `http://`, `https://` or `*://`".to_owned()
        });
    };
    if scheme.is_empty() {
        return Err("has an empty scheme before `://`".to_owned());
    }
    let mut authority = rest;
    if let Some(at) = rest.find(['/', '?', '#']) {
        let tail = &rest[at..];
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        let path = &tail[..path_end];
        let empty_path = path.is_empty() || (allow_slash && path == "/");
        if !empty_path {
            return Err(if path == "/" {
                "must not have a path, not even `/`: write only scheme://host[:port]".to_owned()
            } else {
                "must not have a path: write only scheme://host[:port]".to_owned()
            });
        }
        match tail[path_end..].chars().next() {
            Some('?') => return Err("must not have a query".to_owned()),
            Some('#') => return Err("must not have a fragment".to_owned()),
            _ => {}
        }
        authority = &rest[..at];
    }
    if authority.contains('@') {
        return Err("must not contain user information (`user@`): credentials belong to endpoints, \
             which the host configures"
            .to_owned());
    }
    if authority.contains('\\') {
        return Err("must not contain a backslash".to_owned());
    }
    if authority.contains('%') {
        return Err("must not contain percent-encoding".to_owned());
    }
    Ok((scheme, authority))
}

/// Splits `host[:port]`; IPv6 literals must be bracketed since their colons would be ambiguous.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("has an IPv6 literal without its closing `]`".to_owned());
        };
        let (host, rest) = authority.split_at(close + 1);
        if rest.is_empty() {
            Ok((host, None))
        } else if let Some(port) = rest.strip_prefix(':') {
            Ok((host, Some(port)))
        } else {
            Err(format!("has {rest:?} after the IPv6 literal"))
        }
    } else if authority.contains(['[', ']']) {
        Err("has `[` or `]` out of place: brackets enclose a whole IPv6 host, as in `[::1]`".to_owned())
    } else {
        match authority.split_once(':') {
            None => Ok((authority, None)),
            Some((_, port)) if port.contains(':') => {
                Err("has an IPv6 address without brackets: write it as `[::1]`, with the port after `]:`".to_owned())
            }
            Some((host, port)) => Ok((host, Some(port))),
        }
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("has an empty port after `:`".to_owned());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has port {port:?}, which is not a number"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("has port {port}, outside 1-65535")),
    }
}

/// Parses a host: a bracketed IPv6 literal, a dotted-quad IPv4 address or a DNS name (letters,
/// digits, `-` and `_`, labels of 1 to 63 characters, at most 253 in all).
fn parse_host(s: &str) -> Result<Host, String> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| "has an IPv6 literal without its closing `]`".to_owned())?;
        return inner
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| format!("has host [{inner}], which is not a valid IPv6 address"));
    }
    if s.is_empty() {
        return Err("has no host".to_owned());
    }
    let name = s.to_ascii_lowercase();
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(Host::V4(ip));
    }
    if name.len() > 253 {
        return Err(format!("has host {s:?}, which is longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!("has host {s:?}, which has an empty label (a leading, trailing or doubled `.`)"));
        }
        if label.len() > 63 {
            return Err(format!("has host {s:?}, which has a label longer than 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(format!("has host {s:?}: host names contain only letters, digits, `-`, `_` and `.`"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("has host {s:?}, which has a label starting or ending with `-`"));
        }
    }
    // URL parsers read a name ending in a numeric label as an IPv4 address in some other notation
    // (`1.2.3`, `0x7f.1`); refuse it rather than guess which address is meant.
    if labels.last().is_some_and(|last| looks_numeric(last)) {
        return Err(format!(
            "has host {s:?}, which is neither a dotted-quad IPv4 address nor a host name \
             (a host name's last label cannot be a number)"
        ));
    }
    Ok(Host::Name(name))
}

fn looks_numeric(label: &str) -> bool {
    label.bytes().all(|b| b.is_ascii_digit())
        || label.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why a path (a request's or a pattern's) is unacceptable; displayed as the end of a sentence that
/// starts with the quoted path.
#[derive(Debug, PartialEq, Eq)]
enum PathFault {
    NoLeadingSlash,
    Fragment,
    Backslash,
    ControlOrSpace,
    NonAscii(char),
    MustEncode(char),
    EncodedSeparator(String),
    BadPercent,
    DotSegment,
    EmptySegment,
}

impl fmt::Display for PathFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathFault::NoLeadingSlash => f.write_str("must start with \"/\""),
            PathFault::Fragment => f.write_str("must not contain `#`: a fragment is never sent to a server"),
            PathFault::Backslash => f.write_str("must not contain a backslash: some servers read it as `/`"),
            PathFault::ControlOrSpace => f.write_str("must not contain spaces or control characters"),
            PathFault::NonAscii(c) => write!(f, "must not contain {c:?}: non-ASCII characters must be percent-encoded"),
            PathFault::MustEncode(c) => {
                write!(f, "must not contain {c:?}: it is not valid in a URL path unless percent-encoded")
            }
            PathFault::EncodedSeparator(text) => write!(
                f,
                "must not contain {text:?}: a percent-encoded `.`, `/` or `\\` may be decoded by \
                 the server into a dot segment or a separator"
            ),
            PathFault::BadPercent => f.write_str("must not contain a `%` that is not followed by two hex digits"),
            PathFault::DotSegment => {
                f.write_str("must not contain `.` or `..` segments: servers resolve them to other paths")
            }
            PathFault::EmptySegment => f.write_str("must not contain empty segments (`//`)"),
        }
    }
}

/// Checks a path (no query) for anything a server could read differently from the literal
/// segment-by-segment matching done here. Patterns and requests share this check, so every valid
/// request path is also a valid literal pattern.
fn check_path(path: &str) -> Result<(), PathFault> {
    if !path.starts_with('/') {
        return Err(PathFault::NoLeadingSlash);
    }
    let bytes = path.as_bytes();
    for (i, c) in path.char_indices() {
        match c {
            '#' => return Err(PathFault::Fragment),
            '\\' => return Err(PathFault::Backslash),
            c if c.is_control() || c == ' ' => {
                return Err(PathFault::ControlOrSpace);
            }
            c if !c.is_ascii() => return Err(PathFault::NonAscii(c)),
            '%' => {
                let hex = bytes.get(i + 1..i + 3);
                let Some(hex) = hex.filter(|h| h.iter().all(u8::is_ascii_hexdigit)) else {
                    return Err(PathFault::BadPercent);
                };
                if matches!(hex.to_ascii_lowercase().as_slice(), b"2e" | b"2f" | b"5c") {
                    return Err(PathFault::EncodedSeparator(path[i..i + 3].to_owned()));
                }
            }
            c if is_path_char(c) => {}
            c => return Err(PathFault::MustEncode(c)),
        }
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        // An empty last segment is a trailing `/`, which servers treat as a distinct path.
        if segment.is_empty() && i != last {
            return Err(PathFault::EmptySegment);
        }
        // Some servers drop `;` parameters before resolving dot segments (`/..;/`).
        let bare = segment.split(';').next().unwrap_or_default();
        if bare == "." || bare == ".." {
            return Err(PathFault::DotSegment);
        }
    }
    Ok(())
}

/// RFC 3986 `pchar` without `%` (checked separately), plus `/`: what a path may hold unencoded, so
/// an HTTP client sends it unchanged and what was checked is what is sent.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c)
}

/// Validates a request's path and query; returns the path without its query, or the denial reason.
fn check_request_path(path_and_query: &str) -> Result<&str, String> {
    let quoted = format!("{path_and_query:?}");
    if path_and_query.contains('#') {
        return Err(format!("request path {quoted} {}", PathFault::Fragment));
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    check_path(path).map_err(|fault| format!("request path {quoted} {fault}"))?;
    if let Some(query) = query {
        if query.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "query string of request path {quoted} must not contain spaces or control \
                 characters"
            ));
        }
        if !query.is_ascii() {
            return Err(format!(
                "query string of request path {quoted} must not contain non-ASCII characters \
                 unless percent-encoded"
            ));
        }
    }
    Ok(path)
}

/// Headers the host alone sets: credentials (which the plugin never sees), the target's host, and
/// connection or framing headers whose misuse could smuggle a second request.
fn reserved_header(lower: &str) -> bool {
    matches!(
        lower,
        "authorization"
            | "cookie"
            | "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "te"
            | "trailer"
    ) || lower.starts_with("proxy-")
}

fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("header name {name:?} is not a valid HTTP header name (RFC 7230 token)"));
        }
        let lower = name.to_ascii_lowercase();
        if reserved_header(&lower) {
            return Err(format!(
                "plugins may not set the `{lower}` header: the host adds configured credentials \
                 itself, and sets the host, connection and framing headers"
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("value of header `{lower}` must not contain CR, LF or other control characters"));
        }
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn method_names(methods: &[HttpMethod]) -> Vec<String> {
    if methods.len() == HttpMethod::ALL.len() {
        vec!["*".to_owned()]
    } else {
        methods.iter().map(|m| m.as_str().to_owned()).collect()
    }
}

/// The TOML key path of a plugin's table, quoting the name when it is not a bare key.
fn config_path(plugin: &str) -> String {
    let bare = !plugin.is_empty() && plugin.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { format!("plugins.{plugin}") } else { format!("plugins.{}", toml_string(plugin)) }
}

fn inline_table(spec: &GrantSpec) -> String {
    let list = |items: &[String]| items.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ");
    let mut out = String::from("{ ");
    if let Some(endpoint) = &spec.endpoint {
        out.push_str(&format!("endpoint = {}, ", toml_string(endpoint)));
    }
    if let Some(url) = &spec.url {
        out.push_str(&format!("url = {}, ", toml_string(url)));
    }
    out.push_str(&format!("methods = [{}], paths = [{}] }}", list(&spec.methods), list(&spec.paths)));
    out
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NO_HEADERS: &[(String, String)] = &[];

    fn ep(name: &str, methods: &[&str], paths: &[&str]) -> GrantSpec {
        GrantSpec {
            endpoint: Some(name.to_owned()),
            url: None,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn url(pattern: &str, methods: &[&str], paths: &[&str]) -> GrantSpec {
        GrantSpec {
            endpoint: None,
            url: Some(pattern.to_owned()),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The grants of the configuration example in the module documentation.
    fn demo() -> Grants {
        Grants::parse(
            "demo",
            &[
                ep("control", &["GET", "HEAD"], &["/api/v1/**"]),
                url("http://*:9100", &["GET"], &["/status", "/metrics"]),
            ],
        )
        .unwrap()
    }

    fn facts<'a>(target: RequestTarget<'a>, method: HttpMethod, path_and_query: &'a str) -> RequestFacts<'a> {
        RequestFacts { target, method, path_and_query, headers: NO_HEADERS, mutations_allowed: false }
    }

    fn control(method: HttpMethod, path: &str) -> RequestFacts<'_> {
        facts(RequestTarget::Endpoint("control"), method, path)
    }

    fn origin<'a>(scheme: &'a str, host: &'a str, port: u16) -> RequestTarget<'a> {
        RequestTarget::Origin { scheme, host, port }
    }

    fn denied(decision: Decision) -> (String, Option<String>) {
        match decision {
            Decision::Denied { reason, grant_line } => (reason, grant_line),
            Decision::Allowed { rule } => panic!("expected a denial, allowed by {rule}"),
        }
    }

    fn allowed(decision: Decision) -> String {
        match decision {
            Decision::Allowed { rule } => rule,
            Decision::Denied { reason, .. } => panic!("expected allowed, denied: {reason}"),
        }
    }

    // ---- methods ----

    #[test]
    fn methods_parse_case_insensitively() {
        for (text, method) in [
            ("GET", HttpMethod::Get),
            ("get", HttpMethod::Get),
            ("Head", HttpMethod::Head),
            ("post", HttpMethod::Post),
            ("PuT", HttpMethod::Put),
            ("patch", HttpMethod::Patch),
            ("DELETE", HttpMethod::Delete),
        ] {
            assert_eq!(text.parse::<HttpMethod>(), Ok(method), "{text}");
        }
        for method in HttpMethod::ALL {
            assert_eq!(method.as_str().parse::<HttpMethod>(), Ok(method));
            assert_eq!(method.to_string(), method.as_str());
        }
    }

    #[test]
    fn unknown_methods_are_rejected_clearly() {
        for text in ["OPTIONS", "CONNECT", "TRACE", "", "*", "GET ", "G ET"] {
            let err = text.parse::<HttpMethod>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unknown HTTP method {text:?}: use one of GET, HEAD, POST, PUT, PATCH, DELETE")
            );
        }
    }

    #[test]
    fn only_get_and_head_are_not_mutating() {
        let mutating: Vec<&str> =
            HttpMethod::ALL.into_iter().filter(|m| m.is_mutating()).map(HttpMethod::as_str).collect();
        assert_eq!(mutating, ["POST", "PUT", "PATCH", "DELETE"]);
    }

    // ---- origin patterns ----

    #[test]
    fn accepted_origin_patterns_and_their_canonical_form() {
        for (pattern, canonical) in [
            ("http://example.com", "http://example.com"),
            ("https://example.com", "https://example.com"),
            ("HTTPS://API.Example.COM", "https://api.example.com"),
            ("http://example.com:80", "http://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:443", "http://example.com:443"),
            ("https://example.com:8443", "https://example.com:8443"),
            ("http://example.com:*", "http://example.com:*"),
            ("http://*:9100", "http://*:9100"),
            ("https://*", "https://*"),
            ("*://*:*", "*://*:*"),
            ("*://example.com:443", "*://example.com:443"),
            ("*://*.example.com:*", "*://*.example.com:*"),
            ("https://*.Example.com", "https://*.example.com"),
            ("http://10.0.0.5:9100", "http://10.0.0.5:9100"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
            ("http://[FD00::5]:2379", "http://[fd00::5]:2379"),
            ("http://localhost:9090", "http://localhost:9090"),
            ("http://node_1:8080", "http://node_1:8080"),
            ("http://node-0.peers.svc:8080", "http://node-0.peers.svc:8080"),
            ("http://xn--bcher-kva.de", "http://xn--bcher-kva.de"),
            ("http://a1.example.com", "http://a1.example.com"),
        ] {
            let parsed: OriginPattern = pattern.parse().unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(parsed.to_string(), canonical, "{pattern}");
            assert_eq!(canonical.parse::<OriginPattern>().unwrap(), parsed);
        }
    }

    #[test]
    fn rejected_origin_patterns_say_why() {
        for (pattern, why) in [
            ("example.com", "must start with a scheme: `http://`, `https://` or `*://`"),
            ("10.0.0.5:9100", "must start with a scheme: `http://`, `https://` or `*://`"),
            ("//example.com", "must start with a scheme: `http://`, `https://` or `*://`"),
            ("://example.com", "has an empty scheme before `://`"),
            ("ftp://example.com", "has scheme \"ftp\": use `http`, `https` or `*` (either)"),
            ("ws://example.com:80", "has scheme \"ws\": use `http`, `https` or `*` (either)"),
            ("http://example.com/", "must not have a path, not even `/`: write only scheme://host[:port]"),
            ("http://example.com/api", "must not have a path: write only scheme://host[:port]"),
            ("http://example.com?x=1", "must not have a query"),
            ("http://example.com#top", "must not have a fragment"),
            (
                "http://user@example.com",
                "must not contain user information (`user@`): credentials belong to endpoints, which the host configures",
            ),
            (
                "http://user:pw@example.com:80",
                "must not contain user information (`user@`): credentials belong to endpoints, which the host configures",
            ),
            ("http://exa%6dple.com", "must not contain percent-encoding"),
            ("http://example.com\\", "must not contain a backslash"),
            ("http://exa mple.com", "must not contain spaces or control characters"),
            ("http://example.com\n", "must not contain spaces or control characters"),
            ("http://bücher.de", "must be ASCII: write internationalised host names in their `xn--` form"),
            ("http://", "has no host"),
            ("http://:80", "has no host"),
            (
                "*://example.com",
                "has scheme `*` but no port: give a port number or `:*` (http and https have different default ports)",
            ),
            (
                "*://*",
                "has scheme `*` but no port: give a port number or `:*` (http and https have different default ports)",
            ),
            ("http://example.com:", "has an empty port after `:`"),
            ("http://example.com:http", "has port \"http\", which is not a number"),
            ("http://example.com:-1", "has port \"-1\", which is not a number"),
            ("http://example.com:0", "has port 0, outside 1-65535"),
            ("http://example.com:65536", "has port 65536, outside 1-65535"),
            ("http://example.com:99999999999999999999", "has port 99999999999999999999, outside 1-65535"),
            ("http://::1:8080", "has an IPv6 address without brackets: write it as `[::1]`, with the port after `]:`"),
            ("http://[::1", "has an IPv6 literal without its closing `]`"),
            ("http://[::1]x", "has \"x\" after the IPv6 literal"),
            ("http://[::g]", "has host [::g], which is not a valid IPv6 address"),
            ("http://[10.0.0.1]", "has host [10.0.0.1], which is not a valid IPv6 address"),
            ("http://a*.example.com", "may use `*` only as the whole host or as the first label (`*.example.com`)"),
            ("http://example.*", "may use `*` only as the whole host or as the first label (`*.example.com`)"),
            ("http://*.*.example.com", "may use `*` only as the whole host or as the first label (`*.example.com`)"),
            ("http://**", "may use `*` only as the whole host or as the first label (`*.example.com`)"),
            ("http://*.", "has no host"),
            ("http://*.10.0.0.5", "puts `*.` before an IP address: `*.` must be followed by a host name"),
            ("http://*.[::1]", "has `[` or `]` out of place: brackets enclose a whole IPv6 host, as in `[::1]`"),
            ("http://a]:80", "has `[` or `]` out of place: brackets enclose a whole IPv6 host, as in `[::1]`"),
            (
                "http://example.com.",
                "has host \"example.com.\", which has an empty label (a leading, trailing or doubled `.`)",
            ),
            (
                "http://.example.com",
                "has host \".example.com\", which has an empty label (a leading, trailing or doubled `.`)",
            ),
            ("http://a..b", "has host \"a..b\", which has an empty label (a leading, trailing or doubled `.`)"),
            ("http://-api.example.com", "has host \"-api.example.com\", which has a label starting or ending with `-`"),
            ("http://api-.example.com", "has host \"api-.example.com\", which has a label starting or ending with `-`"),
            (
                "http://ex!ample.com",
                "has host \"ex!ample.com\": host names contain only letters, digits, `-`, `_` and `.`",
            ),
            (
                "http://1.2.3",
                "has host \"1.2.3\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            (
                "http://256.0.0.1",
                "has host \"256.0.0.1\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            (
                "http://010.0.0.1",
                "has host \"010.0.0.1\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            (
                "http://0x7f.1",
                "has host \"0x7f.1\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            (
                "http://2130706433",
                "has host \"2130706433\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            (
                "http://*.0x10",
                "has host \"0x10\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
        ] {
            let err = pattern.parse::<OriginPattern>().unwrap_err();
            assert_eq!(err.message, format!("origin pattern {pattern:?} {why}"));
        }
        let long_label = format!("http://{}.com", "a".repeat(64));
        assert!(long_label.parse::<OriginPattern>().unwrap_err().message.contains("longer than 63"));
        let long_name = format!("http://{}com", "abcdefghi.".repeat(26));
        assert!(long_name.parse::<OriginPattern>().unwrap_err().message.contains("longer than 253"));
    }

    #[test]
    fn origin_matching() {
        for (pattern, scheme, host, port, expected) in [
            // exact host, default ports
            ("https://api.example.com", "https", "api.example.com", 443, true),
            ("https://api.example.com", "https", "api.example.com", 8443, false),
            ("https://api.example.com", "http", "api.example.com", 443, false),
            ("http://api.example.com", "http", "api.example.com", 80, true),
            ("http://api.example.com", "http", "api.example.com", 443, false),
            ("http://api.example.com:8080", "http", "api.example.com", 8080, true),
            ("http://api.example.com:8080", "http", "api.example.com", 80, false),
            // host case-insensitivity, both ways; scheme case-insensitivity
            ("https://API.example.com", "https", "api.EXAMPLE.com", 443, true),
            ("https://api.example.com", "HTTPS", "Api.Example.Com", 443, true),
            ("https://api.example.com", "https", "api.example.org", 443, false),
            ("https://api.example.com", "https", "xapi.example.com", 443, false),
            ("https://api.example.com", "https", "api.example.com.evil.net", 443, false),
            // wildcard subdomain versus apex and look-alikes
            ("https://*.example.com", "https", "a.example.com", 443, true),
            ("https://*.example.com", "https", "a.b.example.com", 443, true),
            ("https://*.example.com", "https", "example.com", 443, false),
            ("https://*.example.com", "https", "badexample.com", 443, false),
            ("https://*.example.com", "https", "example.com.evil.net", 443, false),
            ("https://*.example.com", "https", "a.example.com", 80, false),
            ("https://*.example.com", "https", "10.0.0.1", 443, false),
            // any host, any port, any scheme
            ("http://*:9100", "http", "10.0.0.5", 9100, true),
            ("http://*:9100", "http", "node-3.local", 9100, true),
            ("http://*:9100", "http", "[fd00::1]", 9100, true),
            ("http://*:9100", "http", "10.0.0.5", 9101, false),
            ("http://*:9100", "https", "10.0.0.5", 9100, false),
            ("http://example.com:*", "http", "example.com", 1, true),
            ("http://example.com:*", "http", "example.com", 65535, true),
            ("*://example.com:443", "http", "example.com", 443, true),
            ("*://example.com:443", "https", "example.com", 443, true),
            ("*://*:*", "https", "anything.at.all", 1234, true),
            ("*://*:*", "ftp", "example.com", 21, false),
            // addresses compare by value
            ("http://10.0.0.5:9100", "http", "10.0.0.5", 9100, true),
            ("http://10.0.0.5:9100", "http", "10.0.0.6", 9100, false),
            ("http://10.0.0.5:9100", "http", "010.0.0.5", 9100, false),
            ("http://[::1]:8080", "http", "[::1]", 8080, true),
            ("http://[::1]:8080", "http", "::1", 8080, true),
            ("http://[::1]:8080", "http", "[0:0:0:0:0:0:0:1]", 8080, true),
            ("http://[::1]:8080", "http", "127.0.0.1", 8080, false),
            ("http://[::ffff:10.0.0.5]:80", "http", "10.0.0.5", 80, false),
            // invalid request origins never match
            ("*://*:*", "http", "a..b", 80, false),
            ("*://*:*", "http", "", 80, false),
            ("*://*:*", "http", "example.com", 0, false),
            ("*://*:*", "http", "example.com.", 80, false),
        ] {
            let parsed: OriginPattern = pattern.parse().unwrap();
            assert_eq!(parsed.matches(scheme, host, port), expected, "{pattern} vs {scheme}://{host}:{port}");
        }
    }

    // ---- path patterns ----

    #[test]
    fn accepted_path_patterns_round_trip() {
        for pattern in [
            "/",
            "/**",
            "/status",
            "/status/",
            "/api/v1/**",
            "/api/v1/item/*",
            "/api/v1/item/*/state",
            "/*/*",
            "/a*b",
            "/a/b*/c",
            "/api/v1/query_range",
            "/with%20space",
            "/~user/a-b_c.d",
            "/a;b=c/d:e@f",
            "/!$&'()+,=",
            "/...",
            "/.hidden",
            "/..x",
        ] {
            let parsed: PathPattern = pattern.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.to_string(), pattern);
        }
    }

    #[test]
    fn rejected_path_patterns_say_why() {
        for (pattern, why) in [
            ("", "must start with \"/\""),
            ("api/v1", "must start with \"/\""),
            ("*", "must start with \"/\""),
            ("/api/**/x", "uses `**` before its last segment: `**` may only end a pattern"),
            ("/**/**", "uses `**` before its last segment: `**` may only end a pattern"),
            ("/metrics?format=json", "must not contain `?`: the query string is not part of matching"),
            ("/a?", "must not contain `?`: the query string is not part of matching"),
            ("/a#b", "must not contain `#`: a fragment is never sent to a server"),
            ("/a\\b", "must not contain a backslash: some servers read it as `/`"),
            ("/a b", "must not contain spaces or control characters"),
            ("/a\tb", "must not contain spaces or control characters"),
            ("/a\u{7f}", "must not contain spaces or control characters"),
            ("/caf\u{e9}", "must not contain '\u{e9}': non-ASCII characters must be percent-encoded"),
            ("/a\"b", "must not contain '\"': it is not valid in a URL path unless percent-encoded"),
            ("/a{b}", "must not contain '{': it is not valid in a URL path unless percent-encoded"),
            ("/a|b", "must not contain '|': it is not valid in a URL path unless percent-encoded"),
            (
                "/a%2fb",
                "must not contain \"%2f\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/a%2F",
                "must not contain \"%2F\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/%2e%2e",
                "must not contain \"%2e\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/%2E",
                "must not contain \"%2E\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/a%5cb",
                "must not contain \"%5c\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/a%5C",
                "must not contain \"%5C\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            ("/a%", "must not contain a `%` that is not followed by two hex digits"),
            ("/a%2", "must not contain a `%` that is not followed by two hex digits"),
            ("/a%zz", "must not contain a `%` that is not followed by two hex digits"),
            ("/a/../b", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/a/./b", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/..", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/a/..;x/b", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("//", "must not contain empty segments (`//`)"),
            ("/a//b", "must not contain empty segments (`//`)"),
        ] {
            let err = pattern.parse::<PathPattern>().unwrap_err();
            assert_eq!(err.message, format!("path pattern {pattern:?} {why}"));
        }
    }

    #[test]
    fn path_matching() {
        for (pattern, path, expected) in [
            ("/status", "/status", true),
            ("/status", "/status/", false),
            ("/status", "/Status", false),
            ("/status", "/status/x", false),
            ("/status", "/statusx", false),
            ("/status", "/", false),
            ("/status", "/status?x=1", true),
            ("/status/", "/status/", true),
            ("/status/", "/status", false),
            ("/", "/", true),
            ("/", "/a", false),
            ("/**", "/", true),
            ("/**", "/a", true),
            ("/**", "/a/b/c/", true),
            ("/api/v1/**", "/api/v1", true),
            ("/api/v1/**", "/api/v1/", true),
            ("/api/v1/**", "/api/v1/items", true),
            ("/api/v1/**", "/api/v1/items/1", true),
            ("/api/v1/**", "/api/v1/items?state=0", true),
            ("/api/v1/**", "/api/v10", false),
            ("/api/v1/**", "/api/v", false),
            ("/api/v1/**", "/api", false),
            ("/api/v1/**", "/api/v2/items", false),
            ("/api/v1/item/*", "/api/v1/item/1", true),
            ("/api/v1/item/*", "/api/v1/item/", false),
            ("/api/v1/item/*", "/api/v1/item", false),
            ("/api/v1/item/*", "/api/v1/item/1/state", false),
            ("/a/*/c", "/a/b/c", true),
            ("/a/*/c", "/a/b/d", false),
            ("/a/*/c", "/a//c", false),
            ("/a/*/**", "/a/b", true),
            ("/a/*/**", "/a", false),
            ("/*", "/", false),
            ("/*", "/x", true),
            ("/a*b", "/a*b", true),
            ("/a*b", "/axb", false),
            ("/with%20space", "/with%20space", true),
            ("/with%20space", "/with space", false),
            ("/status", "status", false),
            ("/status", "", false),
        ] {
            let parsed: PathPattern = pattern.parse().unwrap();
            assert_eq!(parsed.matches(path), expected, "{pattern} vs {path}");
        }
    }

    // ---- plugin-supplied origins ----

    #[test]
    fn plugin_origins_parse_to_normal_form() {
        for (input, scheme, host, port) in [
            ("http://10.0.0.5:9100", "http", "10.0.0.5", 9100),
            ("http://10.0.0.5:9100/", "http", "10.0.0.5", 9100),
            ("HTTP://API.Example.com", "http", "api.example.com", 80),
            ("https://api.example.com", "https", "api.example.com", 443),
            ("https://api.example.com/", "https", "api.example.com", 443),
            ("https://api.example.com:8443", "https", "api.example.com", 8443),
            ("http://[::1]:8080", "http", "[::1]", 8080),
            ("http://[0:0::1]", "http", "[::1]", 80),
        ] {
            assert_eq!(parse_origin(input), Ok((scheme.to_owned(), host.to_owned(), port)), "{input}");
        }
    }

    #[test]
    fn plugin_origins_are_rejected_clearly() {
        for (input, why) in [
            ("10.0.0.5:9100", "must start with `http://` or `https://`"),
            ("ftp://example.com", "has scheme \"ftp\": use `http` or `https`"),
            ("*://example.com:80", "has scheme \"*\": use `http` or `https`"),
            ("http://example.com/metrics", "must not have a path: write only scheme://host[:port]"),
            ("http://example.com//", "must not have a path: write only scheme://host[:port]"),
            ("http://example.com?a", "must not have a query"),
            ("http://example.com/?a", "must not have a query"),
            ("http://example.com/#a", "must not have a fragment"),
            (
                "http://u:p@example.com",
                "must not contain user information (`user@`): credentials belong to endpoints, which the host configures",
            ),
            ("http://%65xample.com", "must not contain percent-encoding"),
            ("http://*:9100", "contains `*`: a request names one host and port, wildcards belong in grants"),
            ("http://example.com:*", "has port \"*\", which is not a number"),
            ("http://example.com:0", "has port 0, outside 1-65535"),
            ("http://", "has no host"),
            (
                "http://example.com.",
                "has host \"example.com.\", which has an empty label (a leading, trailing or doubled `.`)",
            ),
            (
                "http://0x7f.1",
                "has host \"0x7f.1\", which is neither a dotted-quad IPv4 address nor a host name (a host name's last label cannot be a number)",
            ),
            ("http://ex ample.com", "must not contain spaces or control characters"),
        ] {
            assert_eq!(parse_origin(input), Err(format!("origin {input:?} {why}")), "{input}");
        }
    }

    // ---- parsing grants ----

    #[test]
    fn config_example_deserializes_and_parses() {
        #[derive(Deserialize)]
        struct Plugin {
            grants: Vec<GrantSpec>,
        }
        let plugin: Plugin = toml::from_str(
            r#"
            grants = [
              { endpoint = "control", methods = ["GET", "HEAD"], paths = ["/api/v1/**"] },
              { url = "http://*:9100", methods = ["GET"], paths = ["/status", "/metrics"] },
            ]
            "#,
        )
        .unwrap();
        let grants = Grants::parse("demo", &plugin.grants).unwrap();
        assert_eq!(grants, demo());
        assert_eq!(grants.plugin(), "demo");
        assert_eq!(grants.len(), 2);
        assert!(!grants.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<GrantSpec>(
            r#"endpoint = "control"
methods = ["GET"]
paths = ["/"]
hosts = ["x"]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `hosts`"), "{err}");
    }

    #[test]
    fn grants_display_in_canonical_form() {
        let grants = Grants::parse(
            "demo",
            &[
                ep("control", &["head", "GET", "get"], &["/api/v1/**", "/api/v1/**"]),
                url("HTTP://*:9100", &["GET"], &["/status", "/metrics"]),
                url("https://API.example.com:443", &["*"], &["/**"]),
                ep("prometheus", &["delete", "patch", "put", "post", "head", "get"], &["/"]),
            ],
        )
        .unwrap();
        let lines: Vec<String> = grants.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                r#"{ endpoint = "control", methods = ["GET", "HEAD"], paths = ["/api/v1/**"] }"#,
                r#"{ url = "http://*:9100", methods = ["GET"], paths = ["/status", "/metrics"] }"#,
                r#"{ url = "https://api.example.com", methods = ["*"], paths = ["/**"] }"#,
                r#"{ endpoint = "prometheus", methods = ["*"], paths = ["/"] }"#,
            ]
        );
        let indices: Vec<usize> = (&grants).into_iter().map(Grant::index).collect();
        assert_eq!(indices, [1, 2, 3, 4]);
        let first = grants.iter().next().unwrap();
        assert_eq!(first.target(), &GrantTarget::Endpoint("control".to_owned()));
        assert_eq!(first.methods(), [HttpMethod::Get, HttpMethod::Head]);
        assert_eq!(first.paths().len(), 1);
        // The canonical form parses back to the same grants.
        let specs: Vec<GrantSpec> = grants.iter().map(Grant::to_spec).collect();
        assert_eq!(Grants::parse("demo", &specs).unwrap(), grants);
    }

    #[test]
    fn endpoints_are_listed_once_in_order() {
        let grants = Grants::parse(
            "demo",
            &[
                ep("control", &["GET"], &["/a"]),
                url("http://*:9100", &["GET"], &["/status"]),
                ep("prometheus", &["GET"], &["/api/v1/**"]),
                ep("control", &["POST"], &["/b"]),
            ],
        )
        .unwrap();
        assert_eq!(grants.endpoints().collect::<Vec<_>>(), ["control", "prometheus"]);
        assert_eq!(Grants::none("demo").endpoints().count(), 0);
    }

    #[test]
    fn invalid_grants_name_plugin_index_and_fault() {
        let cases: Vec<(GrantSpec, &str)> = vec![
            (ep("control", &["GET"], &["api/v1"]), r#"path pattern "api/v1" must start with "/""#),
            (
                GrantSpec {
                    endpoint: Some("control".into()),
                    url: Some("http://*:1".into()),
                    methods: vec!["GET".into()],
                    paths: vec!["/".into()],
                },
                "names both `endpoint` and `url`: a grant names exactly one of them",
            ),
            (
                GrantSpec { endpoint: None, url: None, methods: vec!["GET".into()], paths: vec!["/".into()] },
                "names neither `endpoint` nor `url`: a grant names exactly one of them",
            ),
            (
                ep("Control", &["GET"], &["/"]),
                "endpoint name \"Control\" is not valid: use 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter",
            ),
            (
                ep("1control", &["GET"], &["/"]),
                "endpoint name \"1control\" is not valid: use 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter",
            ),
            (
                ep("", &["GET"], &["/"]),
                "endpoint name \"\" is not valid: use 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter",
            ),
            (
                ep("control", &[], &["/"]),
                "`methods` is empty: list at least one of GET, HEAD, POST, PUT, PATCH, DELETE, or \"*\" for all",
            ),
            (
                ep("control", &["GET", "OPTIONS"], &["/"]),
                "method \"OPTIONS\" is not supported: use GET, HEAD, POST, PUT, PATCH, DELETE, or \"*\" for all",
            ),
            (
                ep("control", &["GET"], &[]),
                "`paths` is empty: list at least one path pattern, e.g. \"/**\" for every path",
            ),
            (
                url("http://control:8080/api", &["GET"], &["/"]),
                "origin pattern \"http://control:8080/api\" must not have a path: write only scheme://host[:port]",
            ),
        ];
        for (spec, message) in cases {
            let err = Grants::parse("demo", &[ep("control", &["GET"], &["/"]), spec]).unwrap_err();
            assert_eq!(err.problems, [GrantProblem { plugin: "demo".into(), index: 2, message: message.into() }]);
            assert_eq!(err.to_string(), format!("plugins.demo.grants[2]: {message}"));
        }
        let name_ok = ep(&format!("a{}", "b".repeat(62)), &["GET"], &["/"]);
        assert!(Grants::parse("demo", &[name_ok]).is_ok());
        let name_long = ep(&format!("a{}", "b".repeat(63)), &["GET"], &["/"]);
        assert!(Grants::parse("demo", &[name_long]).is_err());
    }

    #[test]
    fn every_problem_of_every_grant_is_reported_at_once() {
        let err = Grants::parse(
            "demo",
            &[
                url("node:9100", &["FETCH"], &["/ok"]),
                ep("control", &["GET"], &["/fine"]),
                ep("control", &[], &["/a/**/b", "/x//y"]),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugins.demo.grants[1]: origin pattern \"node:9100\" must start with a scheme: `http://`, `https://` or `*://`\n\
             plugins.demo.grants[1]: method \"FETCH\" is not supported: use GET, HEAD, POST, PUT, PATCH, DELETE, or \"*\" for all\n\
             plugins.demo.grants[3]: `methods` is empty: list at least one of GET, HEAD, POST, PUT, PATCH, DELETE, or \"*\" for all\n\
             plugins.demo.grants[3]: path pattern \"/a/**/b\" uses `**` before its last segment: `**` may only end a pattern\n\
             plugins.demo.grants[3]: path pattern \"/x//y\" must not contain empty segments (`//`)"
        );
    }

    #[test]
    fn plugin_names_that_are_not_bare_keys_are_quoted() {
        let err = Grants::parse("my.plugin", &[ep("control", &[], &["/"])]).unwrap_err();
        assert!(err.to_string().starts_with("plugins.\"my.plugin\".grants[1]: "));
    }

    // ---- decisions ----

    #[test]
    fn a_matching_grant_allows_and_is_named() {
        let grants = demo();
        assert_eq!(
            allowed(grants.decide(&control(HttpMethod::Get, "/api/v1/items?state=0"))),
            r#"plugins.demo.grants[1] { endpoint = "control", methods = ["GET", "HEAD"], paths = ["/api/v1/**"] }"#
        );
        assert!(grants.decide(&control(HttpMethod::Head, "/api/v1")).is_allowed());
        assert_eq!(
            allowed(grants.decide(&facts(origin("http", "10.0.0.5", 9100), HttpMethod::Get, "/metrics"))),
            r#"plugins.demo.grants[2] { url = "http://*:9100", methods = ["GET"], paths = ["/status", "/metrics"] }"#
        );
        assert!(grants.decide(&facts(origin("HTTP", "Node-1.Local", 9100), HttpMethod::Get, "/status")).is_allowed());
    }

    #[test]
    fn the_first_matching_grant_is_the_rule() {
        let grants =
            Grants::parse("demo", &[ep("control", &["GET"], &["/a/*"]), ep("control", &["*"], &["/**"])]).unwrap();
        assert!(allowed(grants.decide(&control(HttpMethod::Get, "/a/b"))).starts_with("plugins.demo.grants[1] "));
        assert!(allowed(grants.decide(&control(HttpMethod::Get, "/a/b/c"))).starts_with("plugins.demo.grants[2] "));
    }

    #[test]
    fn no_grants_deny_everything() {
        let grants = Grants::none("demo");
        assert!(grants.is_empty());
        let (reason, line) = denied(grants.decide(&control(HttpMethod::Get, "/api/v1/items")));
        assert_eq!(
            reason,
            "plugin `demo` has no grants, so it may make no requests (no grant, no request); \
             GET /api/v1/items on endpoint `control` was denied"
        );
        assert_eq!(line.as_deref(), Some(r#"{ endpoint = "control", methods = ["GET"], paths = ["/api/v1/items"] }"#));
        assert_eq!(Grants::parse("demo", &[]).unwrap(), grants);
    }

    #[test]
    fn invalid_paths_are_denied_before_grants() {
        let everything =
            Grants::parse("demo", &[ep("control", &["*"], &["/**"]), url("*://*:*", &["*"], &["/**"])]).unwrap();
        for (path, why) in [
            ("", "must start with \"/\""),
            ("api/v1", "must start with \"/\""),
            ("*", "must start with \"/\""),
            ("http://evil/x", "must start with \"/\""),
            ("?a=1", "must start with \"/\""),
            ("/api/v1/../../admin", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/api/v1/..", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/api/./v1", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/api/v1/..;/admin", "must not contain `.` or `..` segments: servers resolve them to other paths"),
            ("/api//v1", "must not contain empty segments (`//`)"),
            ("//evil.example.com/x", "must not contain empty segments (`//`)"),
            ("/api\\api", "must not contain a backslash: some servers read it as `/`"),
            (
                "/api/v1/%2e%2e/admin",
                "must not contain \"%2e\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/api/v1/%2E.",
                "must not contain \"%2E\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/api/v1%2fadmin",
                "must not contain \"%2f\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/api/v1%2F",
                "must not contain \"%2F\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/api%5capi",
                "must not contain \"%5c\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            (
                "/api%5C",
                "must not contain \"%5C\": a percent-encoded `.`, `/` or `\\` may be decoded by the server into a dot segment or a separator",
            ),
            ("/api%", "must not contain a `%` that is not followed by two hex digits"),
            ("/api%g0", "must not contain a `%` that is not followed by two hex digits"),
            ("/api api", "must not contain spaces or control characters"),
            ("/api\r\nHost: evil", "must not contain spaces or control characters"),
            ("/api\0", "must not contain spaces or control characters"),
            ("/api#frag", "must not contain `#`: a fragment is never sent to a server"),
            ("/api?a=1#frag", "must not contain `#`: a fragment is never sent to a server"),
            ("/caf\u{e9}", "must not contain '\u{e9}': non-ASCII characters must be percent-encoded"),
            ("/a<b>", "must not contain '<': it is not valid in a URL path unless percent-encoded"),
        ] {
            for mutations_allowed in [false, true] {
                let mut request = control(HttpMethod::Get, path);
                request.mutations_allowed = mutations_allowed;
                let (reason, line) = denied(everything.decide(&request));
                assert_eq!(reason, format!("request path {path:?} {why}"));
                assert_eq!(line, None, "{path}");
            }
        }
        for (path_and_query, why) in [
            ("/api?a=b c", "must not contain spaces or control characters"),
            ("/api?a=\n", "must not contain spaces or control characters"),
            ("/api?a=\u{e9}", "must not contain non-ASCII characters unless percent-encoded"),
        ] {
            let (reason, line) = denied(everything.decide(&control(HttpMethod::Get, path_and_query)));
            assert_eq!(reason, format!("query string of request path {path_and_query:?} {why}"));
            assert_eq!(line, None);
        }
        // The query is not matched, so encoded separators in it are fine.
        for path_and_query in ["/api?next=%2Fa%2F..", "/api?q=up{job=\"demo\"}", "/api?"] {
            assert!(everything.decide(&control(HttpMethod::Get, path_and_query)).is_allowed());
        }
    }

    #[test]
    fn reserved_and_malformed_headers_are_denied() {
        let grants = demo();
        for name in [
            "authorization",
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "HOST",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "Content-Length",
            "upgrade",
            "te",
            "trailer",
            "proxy-connection",
            "Proxy-Anything",
        ] {
            let headers = vec![("accept".to_owned(), "application/json".to_owned()), (name.to_owned(), "x".to_owned())];
            let mut request = control(HttpMethod::Get, "/api/v1/items");
            request.headers = &headers;
            let (reason, line) = denied(grants.decide(&request));
            assert_eq!(
                reason,
                format!(
                    "plugins may not set the `{}` header: the host adds configured credentials \
                     itself, and sets the host, connection and framing headers",
                    name.to_ascii_lowercase()
                )
            );
            assert_eq!(line, None);
        }
        for name in ["", "bad name", "bad:name", "x\r\ny", "caf\u{e9}", "a(b)", "a/b"] {
            let headers = vec![(name.to_owned(), "x".to_owned())];
            let mut request = control(HttpMethod::Get, "/api/v1/items");
            request.headers = &headers;
            let (reason, line) = denied(grants.decide(&request));
            assert_eq!(reason, format!("header name {name:?} is not a valid HTTP header name (RFC 7230 token)"));
            assert_eq!(line, None);
        }
        for value in ["a\r\nHost: evil", "a\nb", "a\rb", "a\0b", "a\u{7f}"] {
            let headers = vec![("X-Trace".to_owned(), value.to_owned())];
            let mut request = control(HttpMethod::Get, "/api/v1/items");
            request.headers = &headers;
            let (reason, line) = denied(grants.decide(&request));
            assert_eq!(reason, "value of header `x-trace` must not contain CR, LF or other control characters");
            assert_eq!(line, None);
        }
        let headers = vec![
            ("Accept".to_owned(), "text/plain".to_owned()),
            ("x-request-id".to_owned(), "a\tb c".to_owned()),
            ("If-None-Match".to_owned(), "\"abc\"".to_owned()),
            ("hostname".to_owned(), "x".to_owned()),
            ("x-proxy".to_owned(), "x".to_owned()),
        ];
        let mut request = control(HttpMethod::Get, "/api/v1/items");
        request.headers = &headers;
        assert!(grants.decide(&request).is_allowed());
    }

    #[test]
    fn mutations_need_an_approved_execution_even_when_granted() {
        let grants = Grants::parse("demo", &[ep("control", &["*"], &["/api/v1/**"])]).unwrap();
        for method in [HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch, HttpMethod::Delete] {
            let mut request = control(method, "/api/v1/jobs");
            let (reason, line) = denied(grants.decide(&request));
            assert_eq!(
                reason,
                format!(
                    "{method} is a mutating request, and mutating requests are allowed only during \
                     an approved action execution; this call is not one, whatever the plugin is granted"
                )
            );
            assert_eq!(line, None);
            request.mutations_allowed = true;
            assert_eq!(
                allowed(grants.decide(&request)),
                r#"plugins.demo.grants[1] { endpoint = "control", methods = ["*"], paths = ["/api/v1/**"] }"#
            );
        }
        // Reads need no execution.
        for method in [HttpMethod::Get, HttpMethod::Head] {
            assert!(grants.decide(&control(method, "/api/v1/items")).is_allowed());
        }
        // Even with no grant at all, a mutation outside execution is refused for that reason, with
        // no grant line, because no grant could allow it.
        let (reason, line) = denied(Grants::none("demo").decide(&control(HttpMethod::Post, "/x")));
        assert!(reason.starts_with("POST is a mutating request"));
        assert_eq!(line, None);
    }

    #[test]
    fn a_denial_says_the_method_is_missing() {
        let mut request = control(HttpMethod::Post, "/api/v1/jobs");
        request.mutations_allowed = true;
        let (reason, line) = denied(demo().decide(&request));
        assert_eq!(
            reason,
            "endpoint `control` is granted to plugin `demo` for GET, HEAD on /api/v1/jobs, but not POST"
        );
        assert_eq!(line.as_deref(), Some(r#"{ endpoint = "control", methods = ["POST"], paths = ["/api/v1/jobs"] }"#));
    }

    #[test]
    fn a_denial_says_the_path_is_missing() {
        let (reason, line) = denied(demo().decide(&control(HttpMethod::Get, "/api/v2/items?x=1")));
        assert_eq!(
            reason,
            "endpoint `control` is granted to plugin `demo` for GET only on /api/v1/**, which does not match /api/v2/items"
        );
        assert_eq!(line.as_deref(), Some(r#"{ endpoint = "control", methods = ["GET"], paths = ["/api/v2/items"] }"#));
        let (reason, line) =
            denied(demo().decide(&facts(origin("http", "10.0.0.5", 9100), HttpMethod::Get, "/debug/pprof?seconds=5")));
        assert_eq!(
            reason,
            "http://10.0.0.5:9100 is granted to plugin `demo` for GET only on /status, /metrics, none of which matches /debug/pprof"
        );
        assert_eq!(
            line.as_deref(),
            Some(r#"{ url = "http://10.0.0.5:9100", methods = ["GET"], paths = ["/debug/pprof"] }"#)
        );
    }

    #[test]
    fn a_denial_for_an_ungranted_target_gives_the_line_to_add() {
        let grants = demo();
        let (reason, line) =
            denied(grants.decide(&facts(origin("http", "10.0.0.5", 9101), HttpMethod::Get, "/metrics")));
        assert_eq!(reason, "no grant of plugin `demo` allows GET /metrics on http://10.0.0.5:9101");
        assert_eq!(
            line.as_deref(),
            Some(r#"{ url = "http://10.0.0.5:9101", methods = ["GET"], paths = ["/metrics"] }"#)
        );
        let (reason, line) = denied(grants.decide(&facts(
            RequestTarget::Endpoint("prometheus"),
            HttpMethod::Get,
            "/api/v1/query?query=up",
        )));
        assert_eq!(reason, "no grant of plugin `demo` allows GET /api/v1/query on endpoint `prometheus`");
        assert_eq!(
            line.as_deref(),
            Some(r#"{ endpoint = "prometheus", methods = ["GET"], paths = ["/api/v1/query"] }"#)
        );
        // Default ports are left out, IPv6 literals keep their brackets.
        let (_, line) = denied(grants.decide(&facts(origin("HTTPS", "API.example.com", 443), HttpMethod::Head, "/")));
        assert_eq!(line.as_deref(), Some(r#"{ url = "https://api.example.com", methods = ["HEAD"], paths = ["/"] }"#));
        let (_, line) = denied(grants.decide(&facts(origin("http", "fd00::0:5", 80), HttpMethod::Get, "/a/")));
        assert_eq!(line.as_deref(), Some(r#"{ url = "http://[fd00::5]", methods = ["GET"], paths = ["/a/"] }"#));
        // A literal `*` or `**` segment becomes `*`, which matches it.
        let (_, line) = denied(grants.decide(&control(HttpMethod::Get, "/x/**/*/a*b/**")));
        assert_eq!(line.as_deref(), Some(r#"{ endpoint = "control", methods = ["GET"], paths = ["/x/*/*/a*b/*"] }"#));
    }

    #[test]
    fn wildcard_subdomains_do_not_cover_the_apex() {
        let grants = Grants::parse("x", &[url("https://*.example.com", &["GET"], &["/**"])]).unwrap();
        assert!(grants.decide(&facts(origin("https", "a.example.com", 443), HttpMethod::Get, "/")).is_allowed());
        let (reason, line) = denied(grants.decide(&facts(origin("https", "example.com", 443), HttpMethod::Get, "/")));
        assert_eq!(reason, "no grant of plugin `x` allows GET / on https://example.com");
        assert_eq!(line.as_deref(), Some(r#"{ url = "https://example.com", methods = ["GET"], paths = ["/"] }"#));
    }

    #[test]
    fn malformed_targets_are_denied_without_a_grant_line() {
        let everything = Grants::parse("demo", &[url("*://*:*", &["*"], &["/**"])]).unwrap();
        for (target, why) in [
            (
                RequestTarget::Endpoint("Control"),
                "endpoint name \"Control\" is not valid: endpoint names are 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter",
            ),
            (
                RequestTarget::Endpoint(""),
                "endpoint name \"\" is not valid: endpoint names are 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter",
            ),
            (origin("ftp", "example.com", 21), "scheme \"ftp\" is not supported: requests use `http` or `https`"),
            (origin("http", "example.com", 0), "port 0 is not a valid target port"),
            (
                origin("http", "a..b", 80),
                "request origin http://a..b:80 has host \"a..b\", which has an empty label (a leading, trailing or doubled `.`)",
            ),
            (origin("http", "", 80), "request origin http://:80 has no host"),
            (origin("http", "::g", 80), "request origin host \"::g\" is not a valid IPv6 address"),
            (
                origin("http", "evil.com/x", 80),
                "request origin http://evil.com/x:80 has host \"evil.com/x\": host names contain only letters, digits, `-`, `_` and `.`",
            ),
        ] {
            let (reason, line) = denied(everything.decide(&facts(target, HttpMethod::Get, "/")));
            assert_eq!(reason, why);
            assert_eq!(line, None);
        }
    }

    #[test]
    fn endpoint_and_origin_grants_do_not_stand_in_for_each_other() {
        let grants =
            Grants::parse("x", &[ep("control", &["GET"], &["/**"]), url("http://control:8080", &["GET"], &["/**"])])
                .unwrap();
        assert!(allowed(grants.decide(&control(HttpMethod::Get, "/a"))).contains("grants[1]"));
        assert!(
            allowed(grants.decide(&facts(origin("http", "control", 8080), HttpMethod::Get, "/a")))
                .contains("grants[2]")
        );
        assert!(!grants.decide(&facts(RequestTarget::Endpoint("controlx"), HttpMethod::Get, "/a")).is_allowed());
    }

    // ---- properties ----

    fn method_strategy() -> impl Strategy<Value = HttpMethod> {
        proptest::sample::select(HttpMethod::ALL.to_vec())
    }

    fn segment_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,6}",
            "[A-Za-z0-9._~!$&'()*+,;=:@-]{1,5}",
            Just("*".to_owned()),
            Just("**".to_owned()),
            Just("%20".to_owned()),
            Just("v1".to_owned()),
        ]
    }

    /// A valid request path (possibly with a trailing `/`) and an optional query.
    fn path_strategy() -> impl Strategy<Value = String> {
        (proptest::collection::vec(segment_strategy(), 0..5), any::<bool>(), proptest::option::of("[a-z0-9=&%]{0,8}"))
            .prop_map(|(segments, trailing, query)| {
                let mut path: String = segments.iter().map(|s| format!("/{s}")).collect();
                if trailing || path.is_empty() {
                    path.push('/');
                }
                if let Some(query) = query {
                    path.push('?');
                    path.push_str(&query);
                }
                path
            })
            .prop_filter("a valid request path", |p| check_request_path(p).is_ok())
    }

    fn host_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-zA-Z][a-z0-9]{0,4}){0,3}",
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
        ]
    }

    #[derive(Clone, Debug)]
    enum OwnedTarget {
        Endpoint(String),
        Origin(String, String, u16),
    }

    impl OwnedTarget {
        fn borrow(&self) -> RequestTarget<'_> {
            match self {
                OwnedTarget::Endpoint(name) => RequestTarget::Endpoint(name),
                OwnedTarget::Origin(scheme, host, port) => origin(scheme, host, *port),
            }
        }
    }

    fn target_strategy() -> impl Strategy<Value = OwnedTarget> {
        prop_oneof![
            prop_oneof![Just("control".to_owned()), "[a-z][a-z0-9_-]{0,8}"].prop_map(OwnedTarget::Endpoint),
            (
                prop_oneof![Just("http"), Just("https"), Just("HTTP")],
                host_strategy(),
                prop_oneof![Just(80u16), Just(443u16), Just(9100u16), 1..=u16::MAX],
            )
                .prop_map(|(s, h, p)| OwnedTarget::Origin(s.to_owned(), h, p)),
        ]
    }

    /// Grants that may or may not match: random targets, method sets and path patterns, plus
    /// broad ones.
    fn grant_spec_strategy() -> impl Strategy<Value = GrantSpec> {
        let methods = proptest::collection::vec(
            prop_oneof![Just("*"), Just("GET"), Just("head"), Just("POST"), Just("delete")],
            1..3,
        );
        let path = proptest::collection::vec(segment_strategy(), 0..4).prop_map(|segments| {
            let mut p: String = segments.iter().map(|s| format!("/{s}")).collect();
            if p.is_empty() {
                p.push('/');
            }
            p
        });
        let paths = proptest::collection::vec(prop_oneof![path, Just("/**".to_owned())], 1..3);
        let target = prop_oneof![
            prop_oneof![Just("control"), Just("prometheus")].prop_map(|e| (Some(e.to_owned()), None)),
            prop_oneof![
                Just("*://*:*"),
                Just("http://*:9100"),
                Just("https://*.example.com"),
                Just("http://10.0.0.5:*"),
            ]
            .prop_map(|u| (None, Some(u.to_owned()))),
        ];
        (target, methods, paths).prop_map(|((endpoint, url), methods, paths)| GrantSpec {
            endpoint,
            url,
            methods: methods.into_iter().map(str::to_owned).collect(),
            paths,
        })
    }

    fn valid_specs() -> impl Strategy<Value = Vec<GrantSpec>> {
        proptest::collection::vec(grant_spec_strategy(), 0..5)
            .prop_filter("grants that parse", |specs| Grants::parse("p", specs).is_ok())
    }

    proptest! {
        #[test]
        fn dot_segments_and_encoded_separators_are_never_allowed(
            specs in valid_specs(),
            target in target_strategy(),
            method in method_strategy(),
            before in proptest::collection::vec("[a-z0-9]{1,4}", 0..3),
            bad in prop_oneof![
                Just(".."), Just("."), Just("..;x"), Just("%2e%2e"), Just("%2E%2E"), Just(".%2e"),
                Just("%2e"), Just("a%2fb"), Just("%2F"), Just("a%5cb"), Just("%5C"),
            ],
            after in proptest::collection::vec("[a-z0-9]{1,4}", 0..3),
            query in proptest::option::of("[a-z=]{0,5}"),
            mutations_allowed in any::<bool>(),
        ) {
            let mut specs = specs;
            // Grants that allow everything, so only the path check can deny.
            specs.push(ep("control", &["*"], &["/**"]));
            specs.push(url("*://*:*", &["*"], &["/**"]));
            if let OwnedTarget::Endpoint(name) = &target {
                specs.push(ep(name, &["*"], &["/**"]));
            }
            let grants = Grants::parse("p", &specs).unwrap();
            let mut path: String = before.iter().map(|s| format!("/{s}")).collect();
            path.push('/');
            path.push_str(bad);
            for s in &after {
                path.push('/');
                path.push_str(s);
            }
            if let Some(q) = query {
                path.push('?');
                path.push_str(&q);
            }
            let request = RequestFacts {
                target: target.borrow(),
                method,
                path_and_query: &path,
                headers: NO_HEADERS,
                mutations_allowed,
            };
            let decision = grants.decide(&request);
            prop_assert!(!decision.is_allowed(), "{path} allowed: {decision:?}");
            let (_, line) = denied(decision);
            prop_assert_eq!(line, None);
        }

        #[test]
        fn without_grants_nothing_is_allowed(
            target in target_strategy(),
            method in method_strategy(),
            path in prop_oneof![path_strategy(), any::<String>()],
            headers in proptest::collection::vec(("[a-zA-Z-]{1,8}", "[ -~]{0,8}"), 0..3),
            mutations_allowed in any::<bool>(),
        ) {
            let request = RequestFacts {
                target: target.borrow(),
                method,
                path_and_query: &path,
                headers: &headers,
                mutations_allowed,
            };
            prop_assert!(!Grants::none("p").decide(&request).is_allowed());
        }

        #[test]
        fn the_suggested_grant_line_allows_the_request(
            specs in valid_specs(),
            target in target_strategy(),
            method in method_strategy(),
            path in path_strategy(),
        ) {
            #[derive(Deserialize)]
            struct Line {
                grant: GrantSpec,
            }
            let grants = Grants::parse("p", &specs).unwrap();
            let request = RequestFacts {
                target: target.borrow(),
                method,
                path_and_query: &path,
                headers: NO_HEADERS,
                mutations_allowed: true,
            };
            match grants.decide(&request) {
                Decision::Allowed { .. } => {}
                Decision::Denied { reason, grant_line } => {
                    let line = grant_line.unwrap_or_else(|| panic!("no grant line: {reason}"));
                    let parsed: Line = toml::from_str(&format!("grant = {line}")).unwrap();
                    let mut specs = specs;
                    specs.push(parsed.grant);
                    let extended = Grants::parse("p", &specs).unwrap();
                    let rule = allowed(extended.decide(&request));
                    prop_assert_eq!(rule, format!("plugins.p.grants[{}] {line}", specs.len()));
                }
            }
        }
    }
}
