//! Talking to a running daemon through its local API. redb admits one process per data
//! directory, so while a daemon runs (it writes `<data-dir>/daemon.json`) every command goes
//! through the API, with the token from `<data-dir>/api-token`.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::run_cmd::DaemonInfo;

/// A client of a running daemon's API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// The running daemon's client, if a daemon runs for this data directory (a stale
    /// `daemon.json` whose API does not answer is ignored).
    pub async fn discover(data_dir: &Path) -> Option<ApiClient> {
        let info = DaemonInfo::read(data_dir)?;
        let http = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(30)).build().ok()?;
        let healthy = http.get(format!("{}/healthz", info.api_url)).send().await.ok()?.status().is_success();
        if !healthy {
            return None;
        }
        let token = std::fs::read_to_string(crate::api::ApiToken::path(data_dir)).ok().map(|t| t.trim().to_owned());
        Some(ApiClient { base: info.api_url, token, http })
    }

    async fn reply(response: reqwest::Response) -> Result<Value> {
        let status = response.status();
        let body = response.bytes().await.context("reading the daemon's reply")?;
        let value: Value =
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        if status.is_success() {
            return Ok(value);
        }
        let mut message =
            value.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| value.to_string());
        if let Some(problems) = value.get("problems").and_then(Value::as_array) {
            for p in problems.iter().filter_map(Value::as_str) {
                if !message.contains(p) {
                    message.push_str(&format!("\n  - {p}"));
                }
            }
        }
        bail!("{message}")
    }

    /// `GET /api/v1/<path>`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let response =
            self.http.get(format!("{}/api/v1/{path}", self.base)).send().await.context("asking the daemon")?;
        Self::reply(response).await
    }

    /// `POST /api/v1/<path>` with a JSON body and the token.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let Some(token) = &self.token else {
            bail!("cannot read the daemon's API token (api-token in the data directory); changes need it");
        };
        let response = self
            .http
            .post(format!("{}/api/v1/{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .context("asking the daemon")?;
        Self::reply(response).await
    }
}
