//! A real Prometheus (Debian's `prometheus` package) scrapes every store's status port and the PD
//! leader of a simulated cluster running in real time, and its query API must return what the
//! simulator reports. Without `prometheus` on PATH the test is skipped with a message, unless
//! `OPERATOR_REQUIRE_PROMETHEUS=1` (set by `.ci/run`), which makes it fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tikv_sim::{ClusterSpec, SimCluster};

/// The Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn find_prometheus() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("prometheus")).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn start_prometheus(bin: &PathBuf, stores: &[String], pd: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let targets = |list: &[String]| list.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tikv\n    static_configs:\n      - targets: [{}]\n  - job_name: pd\n    static_configs:\n      - targets: [{}]\n",
        targets(stores),
        targets(&[pd.to_string()])
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting prometheus");
    Prometheus { child, url: format!("http://127.0.0.1:{port}"), log, _dir: dir }
}

/// Instant-query results as (instance, value) pairs, or `None` while Prometheus has no answer.
async fn query(client: &reqwest::Client, prom: &Prometheus, q: &str) -> Option<Vec<(String, f64)>> {
    let url = format!("{}/api/v1/query?query={}", prom.url, encode(q));
    let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"]
        .as_array()?
        .iter()
        .map(|r| {
            // Aggregates carry no instance label.
            let instance = r["metric"]["instance"].as_str().unwrap_or_default().to_string();
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((instance, value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_stores_and_pd() {
    let Some(bin) = find_prometheus() else {
        // CI installs Prometheus and requires this test; a newcomer's machine may lack it.
        if std::env::var("OPERATOR_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "prometheus is not installed but OPERATOR_REQUIRE_PROMETHEUS=1: install Debian's package with \
                 `apt-get install -y prometheus`"
            );
        }
        eprintln!(
            "SKIPPED prometheus_scrapes_stores_and_pd: no `prometheus` on PATH (apt-get install -y prometheus \
             to run it; CI sets OPERATOR_REQUIRE_PROMETHEUS=1)"
        );
        return;
    };
    let spec = ClusterSpec { stores: 3, regions: 60, ..ClusterSpec::default() };
    let c = SimCluster::start(spec, 1.0).await.unwrap();
    let addrs = c.status_addrs();
    let stores: Vec<String> = addrs.values().cloned().collect();
    let pd = c.pd_urls()[0].trim_start_matches("http://").to_string();
    let prom = start_prometheus(&bin, &stores, &pd);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client.get(format!("{}/-/ready", prom.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus never became ready:\n{}", prom.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Poll until Prometheus' latest samples equal what the simulator reports right now.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    let mut leaders_ok = false;
    let mut pd_ok = false;
    while !(leaders_ok && pd_ok) {
        assert!(Instant::now() < deadline, "prometheus never matched the simulator; last: {last}\n{}", prom.log_text());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (expected_leaders, expected_regions): (Vec<(String, f64)>, f64) = {
            let sim = c.sim();
            let stats = sim.store_stats();
            let leaders = addrs.iter().map(|(id, addr)| (addr.clone(), stats[id].leader_count as f64)).collect();
            (leaders, sim.regions.len() as f64)
        };
        if !leaders_ok
            && let Some(mut got) = query(&client, &prom, "tikv_raftstore_region_count{type=\"leader\"}").await
        {
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let mut want = expected_leaders.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            leaders_ok = got == want;
            last = format!("leaders got {got:?} want {want:?}");
        }
        if !pd_ok && let Some(got) = query(&client, &prom, "pd_cluster_status{type=\"leader_count\"}").await {
            pd_ok = got.len() == 1 && got[0] == (pd.clone(), expected_regions);
            last = format!("pd got {got:?} want {expected_regions}");
        }
    }
    // Counters reach Prometheus too and grow between scrapes.
    let q = "sum(rate(tikv_grpc_msg_duration_seconds_count{type=\"kv_get\"}[10s]))";
    loop {
        let rate = query(&client, &prom, q).await;
        if rate.is_some_and(|r| r.first().is_some_and(|(_, v)| *v > 0.0)) {
            break;
        }
        assert!(Instant::now() < deadline, "no kv_get rate\n{}", prom.log_text());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prom);
    c.shutdown().await;
}
