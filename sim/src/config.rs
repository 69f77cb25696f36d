//! PD's replication and schedule configuration with PD's defaults
//! (`pkg/schedule/config/config.go`, `server/config/config.go`). Booleans that PD tags with
//! `json:",string"` serialise as the strings `"true"`/`"false"`, and durations as Go duration strings.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::units::{GoFloat, format_duration_ms, parse_duration_ms};

/// `replication` section of `GET /config` and the body of `GET /config/replicate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReplicationConfig {
    /// Number of voters each region should have.
    pub max_replicas: u64,
    /// Topology labels, joined by commas as PD's `typeutil.StringSlice` marshals them.
    pub location_labels: String,
    /// Boolean rendered as a string, as PD does.
    pub strictly_match_label: String,
    /// Boolean rendered as a string, as PD does.
    pub enable_placement_rules: String,
    /// Boolean rendered as a string, as PD does.
    pub enable_placement_rules_cache: String,
    /// Isolation level label; empty by default.
    pub isolation_level: String,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            max_replicas: 3,
            location_labels: String::new(),
            strictly_match_label: "false".into(),
            enable_placement_rules: "true".into(),
            enable_placement_rules_cache: "false".into(),
            isolation_level: String::new(),
        }
    }
}

/// One store-limit entry of the schedule config (`store-limit`), per store id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoreLimitConfig {
    /// Add-peer operations per minute.
    pub add_peer: GoFloat,
    /// Remove-peer operations per minute.
    pub remove_peer: GoFloat,
}

/// `schedule` section of `GET /config`, field order as in PD's `ScheduleConfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScheduleConfig {
    /// Maximum snapshots a store may send or receive at once.
    pub max_snapshot_count: u64,
    /// Maximum pending peers on a store before PD stops adding peers to it.
    pub max_pending_peer_count: u64,
    /// Regions at most this size (MiB) may be merged.
    pub max_merge_region_size: u64,
    /// Regions with at most this many keys may be merged.
    pub max_merge_region_keys: u64,
    /// Go duration string.
    pub split_merge_interval: String,
    /// Go duration string (PD's own spelling of the key).
    pub swtich_witness_interval: String,
    /// Boolean as string.
    pub enable_one_way_merge: String,
    /// Boolean as string.
    pub enable_cross_table_merge: String,
    /// Go duration string.
    pub patrol_region_interval: String,
    /// Go duration string: how long a silent store stays Disconnected before it is Down.
    pub max_store_down_time: String,
    /// Go duration string.
    pub max_store_preparing_time: String,
    /// Concurrent leader operators.
    pub leader_schedule_limit: u64,
    /// `count` or `size`.
    pub leader_schedule_policy: String,
    /// Concurrent region operators.
    pub region_schedule_limit: u64,
    /// Concurrent witness operators.
    pub witness_schedule_limit: u64,
    /// Concurrent replica-repair operators.
    pub replica_schedule_limit: u64,
    /// Concurrent merge operators.
    pub merge_schedule_limit: u64,
    /// Concurrent hot-region operators.
    pub hot_region_schedule_limit: u64,
    /// Hits before a region counts as hot.
    pub hot_region_cache_hits_threshold: u64,
    /// Per-store limits, keyed by store id.
    pub store_limit: std::collections::BTreeMap<String, StoreLimitConfig>,
    /// Tolerated size difference when balancing.
    pub tolerant_size_ratio: GoFloat,
    /// Above this used ratio a store is low on space.
    pub low_space_ratio: GoFloat,
    /// Below this used ratio a store has plenty of space.
    pub high_space_ratio: GoFloat,
    /// Region score formula.
    pub region_score_formula_version: String,
    /// Waiting operators per scheduler.
    pub scheduler_max_waiting_operator: u64,
    /// Boolean as string.
    pub enable_remove_down_replica: String,
    /// Boolean as string.
    pub enable_replace_offline_replica: String,
    /// Boolean as string.
    pub enable_make_up_replica: String,
    /// Boolean as string.
    pub enable_remove_extra_replica: String,
    /// Boolean as string.
    pub enable_location_replacement: String,
    /// Boolean as string.
    pub enable_debug_metrics: String,
    /// Boolean as string.
    pub enable_joint_consensus: String,
    /// Boolean as string.
    pub enable_tikv_split_region: String,
    /// Go duration string.
    pub hot_regions_write_interval: String,
    /// Days of hot-region history kept.
    pub hot_regions_reserved_days: u64,
    /// MiB.
    pub max_movable_hot_peer_size: u64,
    /// Boolean as string.
    pub enable_diagnostic: String,
    /// Boolean as string.
    pub enable_witness: String,
    /// Ratio of affected stores above which evict-slow-store stops.
    pub slow_store_evicting_affected_store_ratio_threshold: GoFloat,
    /// `v1` or `v2`.
    pub store_limit_version: String,
    /// Boolean as string: stops all scheduling when true.
    pub halt_scheduling: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            max_snapshot_count: 64,
            max_pending_peer_count: 64,
            max_merge_region_size: 54,
            max_merge_region_keys: 540_000,
            split_merge_interval: format_duration_ms(3_600_000),
            swtich_witness_interval: format_duration_ms(3_600_000),
            enable_one_way_merge: "false".into(),
            enable_cross_table_merge: "true".into(),
            patrol_region_interval: format_duration_ms(10),
            max_store_down_time: format_duration_ms(30 * 60_000),
            max_store_preparing_time: format_duration_ms(48 * 3_600_000),
            leader_schedule_limit: 4,
            leader_schedule_policy: "count".into(),
            region_schedule_limit: 2048,
            witness_schedule_limit: 4,
            replica_schedule_limit: 64,
            merge_schedule_limit: 8,
            hot_region_schedule_limit: 4,
            hot_region_cache_hits_threshold: 3,
            store_limit: Default::default(),
            tolerant_size_ratio: GoFloat(0.0),
            low_space_ratio: GoFloat(0.8),
            high_space_ratio: GoFloat(0.7),
            region_score_formula_version: "v2".into(),
            scheduler_max_waiting_operator: 5,
            enable_remove_down_replica: "true".into(),
            enable_replace_offline_replica: "true".into(),
            enable_make_up_replica: "true".into(),
            enable_remove_extra_replica: "true".into(),
            enable_location_replacement: "true".into(),
            enable_debug_metrics: "false".into(),
            enable_joint_consensus: "true".into(),
            enable_tikv_split_region: "true".into(),
            hot_regions_write_interval: format_duration_ms(10 * 60_000),
            hot_regions_reserved_days: 7,
            max_movable_hot_peer_size: 512,
            enable_diagnostic: "true".into(),
            enable_witness: "false".into(),
            slow_store_evicting_affected_store_ratio_threshold: GoFloat(0.3),
            store_limit_version: "v1".into(),
            halt_scheduling: "false".into(),
        }
    }
}

impl ScheduleConfig {
    /// `max-store-down-time` in milliseconds; falls back to PD's 30m default if unparsable.
    pub fn max_store_down_time_ms(&self) -> u64 {
        parse_duration_ms(&self.max_store_down_time).unwrap_or(30 * 60_000)
    }
}

/// `pd-server` section of `GET /config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PdServerConfig {
    /// Boolean as string.
    pub use_region_storage: String,
    /// Go duration string.
    pub max_gap_reset_ts: String,
    /// `table` or `raw`.
    pub key_type: String,
    /// Comma-joined list.
    pub runtime_services: String,
    /// Address of the metric storage (Prometheus), empty when unset.
    pub metric_storage: String,
    /// Dashboard address.
    pub dashboard_address: String,
    /// Digits kept when rounding flow statistics.
    pub flow_round_by_digit: u64,
    /// Go duration string.
    pub min_resolved_ts_persistence_interval: String,
    /// Memory limit ratio (0 = off).
    pub server_memory_limit: GoFloat,
    /// GC trigger ratio.
    pub server_memory_limit_gc_trigger: GoFloat,
    /// Boolean as string.
    pub enable_gogc_tuner: String,
    /// GOGC tuner threshold.
    pub gc_tuner_threshold: GoFloat,
    /// Boolean as string.
    pub block_safe_point_v1: String,
}

impl Default for PdServerConfig {
    fn default() -> Self {
        Self {
            use_region_storage: "true".into(),
            max_gap_reset_ts: format_duration_ms(24 * 3_600_000),
            key_type: "table".into(),
            runtime_services: String::new(),
            metric_storage: String::new(),
            dashboard_address: "auto".into(),
            flow_round_by_digit: 3,
            min_resolved_ts_persistence_interval: format_duration_ms(1_000),
            server_memory_limit: GoFloat(0.0),
            server_memory_limit_gc_trigger: GoFloat(0.7),
            enable_gogc_tuner: "false".into(),
            gc_tuner_threshold: GoFloat(0.6),
            block_safe_point_v1: "false".into(),
        }
    }
}

/// Why `POST /config` refused an item.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No section has the key (`400 "config item X not found"`).
    #[error("config item {0} not found")]
    NotFound(String),
    /// The value does not fit the item.
    #[error("{0}")]
    Invalid(String),
}

/// Sets `key` in one config section the way PD's `POST /config` does (PD marshals `{key: value}` into a
/// copy of the section): returns `Ok(false)` if the section has no such key. Duration items accept any
/// Go duration and are stored normalised (`"1h"` becomes `"1h0m0s"`); boolean items take `"true"`/`"false"`.
pub fn set_item<T: Serialize + DeserializeOwned>(
    section: &mut T,
    key: &str,
    value: &serde_json::Value,
) -> Result<bool, ConfigError> {
    use serde_json::Value;
    let mut map = match serde_json::to_value(&*section) {
        Ok(Value::Object(map)) => map,
        _ => return Ok(false),
    };
    let Some(current) = map.get(key) else { return Ok(false) };
    let invalid = || ConfigError::Invalid(format!("invalid value {value} for config item {key}"));
    let new = match (current, value) {
        (Value::String(cur), Value::String(v)) if parse_duration_ms(cur).is_some() => {
            Value::String(format_duration_ms(parse_duration_ms(v).ok_or_else(invalid)?))
        }
        (Value::String(cur), Value::String(v)) if cur == "true" || cur == "false" => {
            if v != "true" && v != "false" {
                return Err(invalid());
            }
            Value::String(v.clone())
        }
        (Value::String(cur), Value::Bool(b)) if cur == "true" || cur == "false" => Value::String(b.to_string()),
        (Value::String(_), Value::String(v)) => Value::String(v.clone()),
        (Value::Number(_), Value::Number(n)) => Value::Number(n.clone()),
        _ => return Err(invalid()),
    };
    map.insert(key.to_string(), new);
    *section = serde_json::from_value(Value::Object(map)).map_err(|_| invalid())?;
    Ok(true)
}
