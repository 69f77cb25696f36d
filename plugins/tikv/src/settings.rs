//! The plugin's thresholds, each a setting (`[plugins.tikv.settings]`) with a PD-consistent
//! default. A value that does not parse is an error naming the setting: the plugin never guesses.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `slow-score-threshold` | 80 | slow score from which a store counts as slow (PD's evict-slow-store acts at 100) |
//! | `leader-imbalance-ratio` | 0.5 | (most − fewest leaders) / mean leaders across Up stores |
//! | `leader-imbalance-min-diff` | 16 | and at least this many leaders apart |
//! | `stale-evict-max-leaders` | 5 | a store under evict-leader holding at most this many leaders is drained |
//! | `hot-write-bytes` | 8388608 | a region writing this many bytes/s is hot |
//! | `hot-read-bytes` | 16777216 | a region reading this many bytes/s is hot |
//! | `hot-region-ratio` | 4 | and this many times the median listed region below the threshold |
//! | `hot-store-ratio` | 3 | a store whose flow is this many times the mean of the others is hot |
//! | `region-heartbeat-secs` | 60 | TiKV's `pd-heartbeat-tick-interval`: PD's region flow figures cover one such interval |
//! | `pending-peer-threshold` | 16 | pending-peer regions before it is a problem |
//! | `p99-latency-ms` | 250 | gRPC p99 above this (when Prometheus is granted) |
//! | `status-probes` | true | probe each store's status port (when granted) |
//! | `regions-kept` | 200 | abnormal regions kept in an observation per check kind (counts are always exact) |
//! | `max-evicted-stores` | 1 | stores whose leaders may be evicted at once |
//! | `grace.<invariant>` | per invariant | seconds a violation must persist before a ticket opens |

use std::collections::BTreeMap;

/// Every threshold.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See the module table.
    pub slow_score_threshold: u64,
    /// See the module table.
    pub leader_imbalance_ratio: f64,
    /// See the module table.
    pub leader_imbalance_min_diff: u64,
    /// See the module table.
    pub stale_evict_max_leaders: u64,
    /// See the module table.
    pub hot_write_bytes: f64,
    /// See the module table.
    pub hot_read_bytes: f64,
    /// See the module table.
    pub hot_region_ratio: f64,
    /// See the module table.
    pub hot_store_ratio: f64,
    /// See the module table.
    pub region_heartbeat_secs: f64,
    /// See the module table.
    pub pending_peer_threshold: u64,
    /// See the module table.
    pub p99_latency_ms: f64,
    /// See the module table.
    pub status_probes: bool,
    /// See the module table.
    pub regions_kept: usize,
    /// See the module table.
    pub max_evicted_stores: usize,
    /// Grace overrides by invariant name.
    pub grace: BTreeMap<String, u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            slow_score_threshold: 80,
            leader_imbalance_ratio: 0.5,
            leader_imbalance_min_diff: 16,
            stale_evict_max_leaders: 5,
            hot_write_bytes: 8.0 * 1024.0 * 1024.0,
            hot_read_bytes: 16.0 * 1024.0 * 1024.0,
            hot_region_ratio: 4.0,
            hot_store_ratio: 3.0,
            region_heartbeat_secs: 60.0,
            pending_peer_threshold: 16,
            p99_latency_ms: 250.0,
            status_probes: true,
            regions_kept: 200,
            max_evicted_stores: 1,
            grace: BTreeMap::new(),
        }
    }
}

/// The settings this plugin reads (for the grace overrides, `grace.` + an invariant name).
pub const KNOWN: &[&str] = &[
    "slow-score-threshold",
    "leader-imbalance-ratio",
    "leader-imbalance-min-diff",
    "stale-evict-max-leaders",
    "hot-write-bytes",
    "hot-read-bytes",
    "hot-region-ratio",
    "hot-store-ratio",
    "region-heartbeat-secs",
    "pending-peer-threshold",
    "p99-latency-ms",
    "status-probes",
    "regions-kept",
    "max-evicted-stores",
];

impl Settings {
    /// Reads every setting through `lookup`; every bad value is reported at once.
    pub fn load(lookup: impl Fn(&str) -> Option<String>, invariants: &[&str]) -> Result<Settings, String> {
        let mut settings = Settings::default();
        let mut problems = Vec::new();
        fn number<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            key: &str,
            target: &mut T,
            ok: impl Fn(&T) -> bool,
            rule: &str,
            problems: &mut Vec<String>,
        ) {
            if let Some(text) = lookup(key) {
                match text.trim().parse::<T>() {
                    Ok(value) if ok(&value) => *target = value,
                    _ => problems.push(format!("setting `{key}` = `{text}` must be {rule}")),
                }
            }
        }
        let s = &mut settings;
        let p = &mut problems;
        let l = &lookup;
        number(l, "slow-score-threshold", &mut s.slow_score_threshold, |v| (1..=100).contains(v), "1–100", p);
        number(l, "leader-imbalance-ratio", &mut s.leader_imbalance_ratio, |v| *v > 0.0, "a number above 0", p);
        number(l, "leader-imbalance-min-diff", &mut s.leader_imbalance_min_diff, |_| true, "a whole number", p);
        number(l, "stale-evict-max-leaders", &mut s.stale_evict_max_leaders, |_| true, "a whole number", p);
        number(l, "hot-write-bytes", &mut s.hot_write_bytes, |v| *v > 0.0, "bytes per second above 0", p);
        number(l, "hot-read-bytes", &mut s.hot_read_bytes, |v| *v > 0.0, "bytes per second above 0", p);
        number(l, "hot-region-ratio", &mut s.hot_region_ratio, |v| *v >= 1.0, "a number of at least 1", p);
        number(l, "hot-store-ratio", &mut s.hot_store_ratio, |v| *v >= 1.0, "a number of at least 1", p);
        number(l, "region-heartbeat-secs", &mut s.region_heartbeat_secs, |v| *v >= 1.0, "seconds, at least 1", p);
        number(l, "pending-peer-threshold", &mut s.pending_peer_threshold, |_| true, "a whole number", p);
        number(l, "p99-latency-ms", &mut s.p99_latency_ms, |v| *v > 0.0, "milliseconds above 0", p);
        number(l, "status-probes", &mut s.status_probes, |_| true, "true or false", p);
        number(l, "regions-kept", &mut s.regions_kept, |v| (1..=100_000).contains(v), "1–100000", p);
        number(l, "max-evicted-stores", &mut s.max_evicted_stores, |v| *v >= 1, "at least 1", p);
        for invariant in invariants {
            let key = format!("grace.{invariant}");
            if let Some(text) = l(&key) {
                match text.trim().parse::<u32>() {
                    Ok(secs) => {
                        s.grace.insert((*invariant).to_owned(), secs);
                    }
                    Err(_) => p.push(format!("setting `{key}` = `{text}` must be whole seconds")),
                }
            }
        }
        if problems.is_empty() { Ok(settings) } else { Err(problems.join("; ")) }
    }

    /// Reads the settings from the host's configuration.
    pub fn from_host(invariants: &[&str]) -> Result<Settings, String> {
        Settings::load(crate::operator::plugin::config::get, invariants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = Settings::load(|_| None, &["store-down"]).unwrap();
        assert_eq!(s.slow_score_threshold, 80);
        assert!(s.grace.is_empty());
    }

    #[test]
    fn values_and_grace_overrides_are_read() {
        let s = Settings::load(
            lookup(&[("slow-score-threshold", "90"), ("grace.store-down", "5"), ("status-probes", "false")]),
            &["store-down"],
        )
        .unwrap();
        assert_eq!(s.slow_score_threshold, 90);
        assert_eq!(s.grace["store-down"], 5);
        assert!(!s.status_probes);
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = Settings::load(
            lookup(&[("slow-score-threshold", "400"), ("hot-region-ratio", "lots"), ("grace.store-down", "-1")]),
            &["store-down"],
        )
        .unwrap_err();
        assert!(err.contains("slow-score-threshold"), "{err}");
        assert!(err.contains("hot-region-ratio"), "{err}");
        assert!(err.contains("grace.store-down"), "{err}");
    }
}
