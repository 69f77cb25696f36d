//! Shared by the simulator's HTTP suites: a client, a started cluster, and PD URLs.

#![allow(dead_code)]

pub mod prom;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tikv_sim::{ClusterSpec, SimCluster};

/// A client that opens a fresh connection per request, so a closed listener is seen at once.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap()
}

/// Sends a request with an optional JSON body; returns the status and the body.
pub async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, String) {
    let mut req = client().request(method, url);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// GETs a URL and parses the reply as JSON.
pub async fn get_json(url: &str) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

/// The default cluster at a fixed start time, stepped by the test (speed 0).
pub async fn start() -> Arc<SimCluster> {
    let spec = ClusterSpec { start_unix_ms: Some(1_780_000_000_000), ..ClusterSpec::default() };
    SimCluster::start(spec, 0.0).await.unwrap()
}

/// A PD API URL on the first member.
pub fn api(c: &SimCluster, path: &str) -> String {
    format!("{}/pd/api/v1{path}", c.pd_urls()[0])
}

/// A reply with what the shape checks need.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub error_code: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends a request with a raw body (possibly malformed JSON).
pub async fn send_raw(method: reqwest::Method, url: &str, body: Option<&str>) -> Reply {
    let mut req = client().request(method, url);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap_or_default().to_string());
    let content_type = header("content-type").unwrap_or_default();
    let error_code = header("TiDB-Error-Code");
    Reply { status: resp.status().as_u16(), content_type, error_code, body: resp.text().await.unwrap() }
}

/// Content type of PD's indented JSON replies.
pub const JSON_TYPE: &str = "application/json; charset=UTF-8";
/// Content type of PD's region replies.
pub const OCTET_TYPE: &str = "application/octet-stream";

/// The JSON string literal reply PD writes for messages: `"text"` plus a newline.
pub fn msg(text: &str) -> String {
    format!("{}\n", serde_json::to_string(text).unwrap())
}
