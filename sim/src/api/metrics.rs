//! Prometheus text exposition (format 0.0.4). PD: `pd_regions_status`, `pd_cluster_status` and
//! `pd_scheduler_store_status` (`pkg/statistics/metrics.go`, `pkg/statistics/store_collection.go`),
//! derived from the state, and the `pd_schedule_operators_count` counter. TiKV: the gauges
//! `tikv_store_size_bytes`, `tikv_raftstore_region_count` and `tikv_engine_size_bytes`, and the
//! counters accumulated per tick in [`crate::stats`]: the `tikv_grpc_msg_duration_seconds` histogram,
//! `tikv_grpc_msg_fail_total`, `tikv_scheduler_too_busy_total`, `tikv_storage_command_total` and
//! `process_cpu_seconds_total`.

use std::fmt::Write;

use crate::checks::{CHECKS, check_counts};
use crate::model::StoreState;
use crate::sim::{MIB, STORE_DISCONNECT_MS, Simulation, StoreStats};
use crate::stats::{BUSY_COMMANDS, GRPC_TYPES, STORAGE_COMMANDS, StoreCounters, duration_buckets};

/// Content type of Prometheus' text format, as Go's `promhttp` and TiKV send it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A store silent this long is "unhealthy" in PD (`pkg/core/store.go`).
const STORE_UNHEALTHY_MS: u64 = 10 * 60_000;

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// PD's metrics text. Only the leader runs the cluster collectors, so a follower exports none of them.
pub fn pd_metrics(sim: &Simulation, is_leader: bool) -> String {
    let mut out = String::new();
    if !is_leader {
        return out;
    }
    header(&mut out, "pd_regions_status", "Status of the regions.", "gauge");
    for ((_, metric_type), count) in CHECKS.iter().zip(check_counts(sim)) {
        let _ = writeln!(out, "pd_regions_status{{type=\"{metric_type}\"}} {count}");
    }

    let stats = sim.store_stats();
    let max_down = sim.schedule.max_store_down_time_ms();
    let low_space = sim.schedule.low_space_ratio.0;
    let mut cluster: Vec<(&str, f64)> = [
        "store_up_count",
        "store_disconnected_count",
        "store_unhealthy_count",
        "store_down_count",
        "store_offline_count",
        "store_tombstone_count",
        "store_low_space_count",
        "store_slow_count",
        "store_preparing_count",
        "store_serving_count",
        "store_removing_count",
        "store_removed_count",
        "region_count",
        "leader_count",
        "storage_size",
        "storage_capacity",
    ]
    .iter()
    .map(|t| (*t, 0.0))
    .collect();
    let mut add = |name: &str, v: f64| {
        if let Some(entry) = cluster.iter_mut().find(|(n, _)| *n == name) {
            entry.1 += v;
        }
    };
    for store in &sim.stores {
        let st = stats.get(&store.id).copied().unwrap_or_default();
        let used = sim.used_bytes(store, &st);
        // Same precedence as PD's storeStatistics.Observe.
        match store.state {
            StoreState::Up => {
                let silent = sim.now_ms.saturating_sub(store.last_heartbeat_ms.unwrap_or(0));
                let state = if silent >= max_down {
                    "store_down_count"
                } else if silent > STORE_UNHEALTHY_MS {
                    "store_unhealthy_count"
                } else if silent > STORE_DISCONNECT_MS {
                    "store_disconnected_count"
                } else if store.slow_score >= 80 {
                    "store_slow_count"
                } else {
                    "store_up_count"
                };
                add(state, 1.0);
                add("store_serving_count", 1.0);
            }
            StoreState::Offline => {
                add("store_offline_count", 1.0);
                add("store_removing_count", 1.0);
            }
            StoreState::Tombstone => {
                add("store_tombstone_count", 1.0);
                add("store_removed_count", 1.0);
                continue;
            }
        }
        if store.capacity > 0 && used as f64 / store.capacity as f64 > low_space {
            add("store_low_space_count", 1.0);
        }
        add("region_count", st.region_count as f64);
        add("leader_count", st.leader_count as f64);
        add("storage_size", used as f64);
        add("storage_capacity", store.capacity as f64);
    }
    header(&mut out, "pd_cluster_status", "Status of the cluster.", "gauge");
    for (name, value) in &cluster {
        let _ = writeln!(out, "pd_cluster_status{{type=\"{name}\"}} {value}");
    }

    header(&mut out, "pd_scheduler_store_status", "Store status for schedule", "gauge");
    for store in sim.stores.iter().filter(|s| s.state != StoreState::Tombstone) {
        let st = stats.get(&store.id).copied().unwrap_or_default();
        let used = sim.used_bytes(store, &st);
        let values: [(&str, f64); 9] = [
            ("leader_count", st.leader_count as f64),
            ("region_count", st.region_count as f64),
            ("leader_size", st.leader_size as f64),
            ("region_size", st.region_size as f64),
            ("leader_score", st.leader_count as f64 / store.leader_weight.max(1e-6)),
            ("region_score", st.region_size as f64 / store.region_weight.max(1e-6)),
            ("store_available", (store.capacity - used) as f64),
            ("store_used", used as f64),
            ("store_capacity", store.capacity as f64),
        ];
        for (name, value) in values {
            let _ = writeln!(
                out,
                "pd_scheduler_store_status{{address=\"{}\",store=\"{}\",type=\"{name}\"}} {value}",
                store.address, store.id
            );
        }
    }

    header(&mut out, "pd_schedule_operators_count", "Counter of schedule operators.", "counter");
    for ((desc, event), count) in sim.telemetry.operator_counts() {
        let _ = writeln!(out, "pd_schedule_operators_count{{event=\"{event}\",type=\"{desc}\"}} {count}");
    }
    out
}

/// TiKV's metrics text for store `store_id`, or `None` if there is no such store.
pub fn tikv_metrics(sim: &Simulation, store_id: u64) -> Option<String> {
    let store = sim.store(store_id)?;
    let stats = store_region_stats(sim, store_id);
    let used = sim.used_bytes(store, &stats);
    let mut out = String::new();
    header(&mut out, "tikv_store_size_bytes", "Size of storage.", "gauge");
    let _ = writeln!(out, "tikv_store_size_bytes{{type=\"available\"}} {}", store.capacity - used);
    let _ = writeln!(out, "tikv_store_size_bytes{{type=\"capacity\"}} {}", store.capacity);
    let _ = writeln!(out, "tikv_store_size_bytes{{type=\"used\"}} {used}");
    header(&mut out, "tikv_raftstore_region_count", "Number of regions collected in region_collector", "gauge");
    let _ = writeln!(out, "tikv_raftstore_region_count{{type=\"leader\"}} {}", stats.leader_count);
    let _ = writeln!(out, "tikv_raftstore_region_count{{type=\"region\"}} {}", stats.region_count);
    header(&mut out, "tikv_engine_size_bytes", "Sizes of each column families", "gauge");
    // Region data lives mostly in the default and write column families; the Raft log is small.
    let data = stats.region_size * MIB;
    let _ = writeln!(out, "tikv_engine_size_bytes{{db=\"kv\",type=\"default\"}} {}", data * 7 / 10);
    let _ = writeln!(out, "tikv_engine_size_bytes{{db=\"kv\",type=\"lock\"}} {}", data / 100);
    let _ = writeln!(out, "tikv_engine_size_bytes{{db=\"kv\",type=\"write\"}} {}", data - data * 7 / 10 - data / 100);
    let _ = writeln!(out, "tikv_engine_size_bytes{{db=\"raft\",type=\"default\"}} {}", store.base_used / 4);

    let empty = StoreCounters::default();
    let c = sim.telemetry.counters(store_id).unwrap_or(&empty);
    header(&mut out, "tikv_grpc_msg_duration_seconds", "Bucketed histogram of grpc server messages", "histogram");
    let bounds = duration_buckets();
    for (t, h) in GRPC_TYPES.iter().zip(&c.grpc) {
        for (le, v) in bounds.iter().zip(h.cumulative()) {
            let _ = writeln!(out, "tikv_grpc_msg_duration_seconds_bucket{{type=\"{}\",le=\"{le}\"}} {v}", t.name);
        }
        let _ = writeln!(out, "tikv_grpc_msg_duration_seconds_bucket{{type=\"{}\",le=\"+Inf\"}} {}", t.name, h.count());
        let _ = writeln!(out, "tikv_grpc_msg_duration_seconds_sum{{type=\"{}\"}} {}", t.name, h.sum());
        let _ = writeln!(out, "tikv_grpc_msg_duration_seconds_count{{type=\"{}\"}} {}", t.name, h.count());
    }
    header(&mut out, "tikv_grpc_msg_fail_total", "Total number of handle grpc message failure", "counter");
    for (t, v) in GRPC_TYPES.iter().zip(c.grpc_fail) {
        let _ = writeln!(out, "tikv_grpc_msg_fail_total{{type=\"{}\"}} {}", t.name, v.floor());
    }
    header(&mut out, "tikv_scheduler_too_busy_total", "Total count of scheduler too busy", "counter");
    for ((name, _), v) in BUSY_COMMANDS.iter().zip(c.too_busy) {
        let _ = writeln!(out, "tikv_scheduler_too_busy_total{{type=\"{name}\"}} {}", v.floor());
    }
    header(&mut out, "tikv_storage_command_total", "Total number of commands received.", "counter");
    for ((name, _), v) in STORAGE_COMMANDS.iter().zip(c.commands) {
        let _ = writeln!(out, "tikv_storage_command_total{{type=\"{name}\"}} {}", v.floor());
    }
    header(&mut out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter");
    let _ = writeln!(out, "process_cpu_seconds_total {}", c.cpu_seconds);
    Some(out)
}

/// Region and leader counts and sizes of one store: the region list's totals when fresh, else a
/// single pass without a per-store map.
fn store_region_stats(sim: &Simulation, store_id: u64) -> StoreStats {
    if let Some(totals) = sim.regions.store_totals() {
        return totals.get(&store_id).copied().unwrap_or_default();
    }
    let mut st = StoreStats::default();
    for region in &sim.regions {
        let Some(peer) = region.peers.iter().find(|p| p.store_id == store_id) else { continue };
        st.region_count += 1;
        st.region_size += region.approximate_size;
        if region.leader == Some(peer.id) {
            st.leader_count += 1;
            st.leader_size += region.approximate_size;
        }
    }
    st
}
