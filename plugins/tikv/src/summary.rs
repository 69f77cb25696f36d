//! `summarize()`: stores and PD members as subject-neutral entities for the host's screens.

use crate::operator::plugin::types::{EntitySummary, Figure, Health};
use crate::settings::Settings;
use crate::snapshot::Snapshot;

fn figure(name: &str, value: f64, unit: &str) -> Figure {
    Figure { name: name.into(), value, unit: unit.into() }
}

/// The entity list.
pub fn summarize(snap: &Snapshot, settings: &Settings) -> Vec<EntitySummary> {
    let mut out = Vec::new();
    for s in &snap.stores {
        let degraded = s.slow_score >= settings.slow_score_threshold
            || snap.is_low_space(s)
            || snap.evict_leader_stores.contains(&s.id)
            || snap.probes.get(&s.id).is_some_and(|p| !p.reachable);
        let health = match s.state_name.as_str() {
            "Up" if degraded => Health::Degraded,
            "Up" => Health::Healthy,
            "Offline" | "Disconnected" => Health::Degraded,
            "Down" => Health::Down,
            _ => Health::Unknown,
        };
        let mut figures = vec![
            figure("leaders", s.leader_count as f64, ""),
            figure("regions", s.region_count as f64, ""),
            figure("available", s.available_ratio() * 100.0, "%"),
            figure("slow score", s.slow_score as f64, ""),
        ];
        if let Some(p99) = snap.metrics.get(&s.id).and_then(|m| m.p99_ms) {
            figures.push(figure("p99", p99, "ms"));
        }
        let mut note = format!("{} {}", s.address, s.state_name);
        if snap.evict_leader_stores.contains(&s.id) {
            note.push_str(", leaders evicted");
        }
        out.push(EntitySummary { kind: "store".into(), id: s.id.to_string(), health, figures, note });
    }
    for m in &snap.pd.members {
        let leader = snap.pd.leader.as_deref() == Some(m.name.as_str());
        out.push(EntitySummary {
            kind: "pd-member".into(),
            id: m.name.clone(),
            health: if m.healthy { Health::Healthy } else { Health::Down },
            figures: vec![],
            note: if leader { "leader".into() } else { String::new() },
        });
    }
    out
}
