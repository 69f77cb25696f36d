//! Faults injected at run time, each reproducing one failure scenario of the TiKV scenario catalogue
//! (S1–S12) the way PD's HTTP API shows it.
//!
//! A fault changes the cluster's ground truth (a process killed, a store cut off from the network, a
//! slow or full disk, a scheduler left behind, ...) and the simulation derives what PD sees from that
//! truth. Clearing a fault undoes what it changed and leaves the healing to PD (balance-leader, the
//! replica checker), as in a real cluster. Every injection and clearing is kept in a [`FaultBook`] with
//! its simulated and wall-clock time, so a run's ground truth can be compared with what an operator
//! concluded. Nothing here draws from a random generator: the same seed and the same fault script,
//! stepped identically, give the same history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::balance::BALANCE_HOT_REGION;
use crate::model::{PeerRole, Region, Scheduler, Store, StoreState};
use crate::scheduler::{BALANCE_LEADER, EVICT_LEADER};
use crate::sim::{ELECTION_TIMEOUT_MS, MIB, SimError, Simulation};
use crate::workload::mix;

/// Disk slowdown of `slow-disk` without a `factor`.
pub const DEFAULT_SLOWDOWN: f64 = 10.0;
/// Used share of capacity after `fill-disk` without a `ratio`: 10 % stays available.
pub const DEFAULT_FILL_RATIO: f64 = 0.9;
/// Rate of `hot-region` without `bytes_per_sec`: 32 MiB/s, a hundred times a busy region's.
pub const DEFAULT_HOT_BYTES_PER_SEC: u64 = 32 << 20;
/// How long `leader-skew` keeps balance-leader and balance-hot-region paused without `hold_secs`.
pub const DEFAULT_SKEW_HOLD_SECS: u64 = 3_600;
/// Regions that lose a peer with `under-replicate` without `regions`.
pub const DEFAULT_UNDER_REPLICATED_REGIONS: u64 = 64;
/// `replica-schedule-limit` set by `under-replicate` without `replica_schedule_limit`.
pub const DEFAULT_UNDER_REPLICATE_LIMIT: u64 = 0;

/// Multiplier of the slow score per store heartbeat while the disk is slow (TiKV raises it
/// multiplicatively while requests time out).
const SLOW_SCORE_GROWTH: f64 = 1.25;
/// Slow-score drop per store heartbeat on a healthy disk: TiKV brings 100 back to 1 over its 5-minute
/// `min-ttr`, i.e. about 3.3 per 10-second heartbeat.
const SLOW_SCORE_RECOVERY: u64 = 4;
/// Share of a slow store's followers lagging at the maximum slow score.
const MAX_LAGGING_SHARE: f64 = 0.3;
/// Events kept in the history; older ones are dropped.
const HISTORY_LIMIT: usize = 10_000;

/// Identifier of an injected fault, unique within a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultId(pub u64);

impl fmt::Display for FaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The flow a hot region carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotFlow {
    /// Writes, replicated to every peer.
    Write,
    /// Reads, served by the leader.
    Read,
}

/// A fault to inject. As JSON it is tagged by `kind`, e.g. `{"kind":"kill-store","store":1}` or
/// `{"kind":"hot-region","flow":"write"}`; optional parameters may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// S1/S2: kill a TiKV process.
    KillStore {
        /// Store id.
        store: u64,
    },
    /// Restart a killed TiKV process, ending its `kill-store` fault.
    RestartStore {
        /// Store id.
        store: u64,
    },
    /// S9: cut a store off the network while its process keeps running.
    PartitionStore {
        /// Store id.
        store: u64,
    },
    /// S8/S11: make a store's disk slower.
    SlowDisk {
        /// Store id.
        store: u64,
        /// How many times slower (above 1); default [`DEFAULT_SLOWDOWN`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        factor: Option<f64>,
    },
    /// S7: fill a store's disk with data that is not region data.
    FillDisk {
        /// Store id.
        store: u64,
        /// Share of the capacity in use afterwards, in (0, 1]; default [`DEFAULT_FILL_RATIO`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ratio: Option<f64>,
    },
    /// S5: give one region a large write or read rate.
    HotRegion {
        /// Region id; default the region in the middle of the key space.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<u64>,
        /// `write` or `read`.
        flow: HotFlow,
        /// Bytes per second; default [`DEFAULT_HOT_BYTES_PER_SEC`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes_per_sec: Option<u64>,
    },
    /// S3: pile leaders onto one store and pause balance-leader and balance-hot-region so the skew stays.
    LeaderSkew {
        /// Store that receives the leaders.
        store: u64,
        /// How long the schedulers stay paused; default [`DEFAULT_SKEW_HOLD_SECS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold_secs: Option<u64>,
    },
    /// S4: an evict-leader scheduler left behind for a healthy store.
    StaleEvictLeader {
        /// Store id.
        store: u64,
    },
    /// S10: kill whichever PD member leads.
    KillPdLeader,
    /// S10: kill one PD member.
    KillPdMember {
        /// Member name, e.g. `pd-1`.
        name: String,
    },
    /// Restart a killed PD member, ending its kill fault.
    RestartPdMember {
        /// Member name.
        name: String,
    },
    /// S6: regions lose a peer while the replica checker is throttled.
    UnderReplicate {
        /// How many regions lose a peer; default [`DEFAULT_UNDER_REPLICATED_REGIONS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        regions: Option<u64>,
        /// `replica-schedule-limit` while the fault lasts; default [`DEFAULT_UNDER_REPLICATE_LIMIT`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica_schedule_limit: Option<u64>,
    },
    /// S12: a store set Offline whose remaining regions have nowhere to go.
    StuckOffline {
        /// Store id.
        store: u64,
    },
}

/// One parameter of a fault kind, as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// JSON field name.
    pub name: String,
    /// JSON type: `integer`, `number`, `string`, or the allowed words separated by `|`.
    pub value_type: String,
    /// Whether the field must be given.
    pub required: bool,
    /// The value used when the field is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What the parameter means.
    pub description: String,
}

/// One fault kind of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The `kind` tag.
    pub kind: String,
    /// The scenario id (S1..S12) the fault produces.
    pub scenario: String,
    /// One line on what the fault does.
    pub description: String,
    /// Its parameters.
    pub params: Vec<ParamSpec>,
}

fn param(name: &str, value_type: &str, default: Option<&str>, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        value_type: value_type.into(),
        required: default.is_none(),
        default: default.map(Into::into),
        description: description.into(),
    }
}

fn store_param() -> ParamSpec {
    param("store", "integer", None, "store id")
}

impl Fault {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillStore { .. } => "kill-store",
            Fault::RestartStore { .. } => "restart-store",
            Fault::PartitionStore { .. } => "partition-store",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::FillDisk { .. } => "fill-disk",
            Fault::HotRegion { .. } => "hot-region",
            Fault::LeaderSkew { .. } => "leader-skew",
            Fault::StaleEvictLeader { .. } => "stale-evict-leader",
            Fault::KillPdLeader => "kill-pd-leader",
            Fault::KillPdMember { .. } => "kill-pd-member",
            Fault::RestartPdMember { .. } => "restart-pd-member",
            Fault::UnderReplicate { .. } => "under-replicate",
            Fault::StuckOffline { .. } => "stuck-offline",
        }
    }

    /// Every fault kind with its scenario, a one-line description and its parameters.
    pub fn catalogue() -> Vec<CatalogueEntry> {
        let entry = |kind: &str, scenario: &str, description: &str, params: Vec<ParamSpec>| CatalogueEntry {
            kind: kind.into(),
            scenario: scenario.into(),
            description: description.into(),
            params,
        };
        vec![
            entry(
                "kill-store",
                "S1",
                "Kills the TiKV process: status port closed, Disconnected after 20 s, leaders re-elected after \
                 10 s, down peers after 10 min; left dead past max-store-down-time it is Down and PD rebuilds its \
                 replicas (S2).",
                vec![store_param()],
            ),
            entry(
                "restart-store",
                "S1",
                "Restarts a killed TiKV process on the same status port and ends its kill-store fault.",
                vec![store_param()],
            ),
            entry(
                "partition-store",
                "S9",
                "Cuts the store off the network: its status port still answers, but PD gets no heartbeats \
                 (Disconnected after 20 s), its leaders are re-elected elsewhere after 10 s and its peers are \
                 reported down after 10 min.",
                vec![store_param()],
            ),
            entry(
                "slow-disk",
                "S8",
                "Slows the store's disk: slow_score climbs over minutes toward 100 - 100/factor, snapshots to \
                 the store take factor times longer and a share of its followers lag as pending peers (S11).",
                vec![
                    store_param(),
                    param("factor", "number", Some("10"), "how many times slower the disk is (above 1)"),
                ],
            ),
            entry(
                "fill-disk",
                "S7",
                "Fills the store's disk with non-region data so that available space drops below 20 % of \
                 capacity; PD stops moving data onto it.",
                vec![
                    store_param(),
                    param("ratio", "number", Some("0.9"), "share of the capacity in use afterwards, in (0, 1]"),
                ],
            ),
            entry(
                "hot-region",
                "S5",
                "Gives one region a large write or read rate; it tops /regions/{writeflow|readflow} at its next \
                 region heartbeat and /hotspot/regions/{write|read} after three. Writes grow the region, which splits past 96 MiB as in TiKV; its parts \
                 share the flow and stay on the same stores.",
                vec![
                    param("region", "integer", Some("the region in the middle of the key space"), "region id"),
                    param("flow", "write|read", None, "which flow is hot"),
                    param("bytes_per_sec", "integer", Some("33554432"), "the region's rate in bytes per second"),
                ],
            ),
            entry(
                "leader-skew",
                "S3",
                "Moves every leader it can onto the store and pauses balance-leader-scheduler and \
                 balance-hot-region-scheduler for hold_secs (no evict-leader scheduler involved); leader counts \
                 and scores stay spread until the pauses end or the fault is cleared.",
                vec![
                    store_param(),
                    param("hold_secs", "integer", Some("3600"), "how long the two schedulers stay paused"),
                ],
            ),
            entry(
                "stale-evict-leader",
                "S4",
                "Leaves an evict-leader-scheduler for a healthy Up store, as after a finished maintenance: the \
                 store drains to 0 leaders and stays there.",
                vec![store_param()],
            ),
            entry(
                "kill-pd-leader",
                "S10",
                "Kills the PD leader's process (its port closes); the others elect a new leader after about \
                 3 s if a majority runs.",
                vec![],
            ),
            entry(
                "kill-pd-member",
                "S10",
                "Kills one PD member's process; without a running majority PD has no leader and answers 503.",
                vec![param("name", "string", None, "member name, e.g. pd-1")],
            ),
            entry(
                "restart-pd-member",
                "S10",
                "Restarts a killed PD member on the same port and ends its kill fault.",
                vec![param("name", "string", None, "member name")],
            ),
            entry(
                "under-replicate",
                "S6",
                "Drops one follower from each of N regions (miss-peer) and sets replica-schedule-limit low so \
                 the replica checker does not repair them until the limit is raised or the fault is cleared.",
                vec![
                    param("regions", "integer", Some("64"), "how many regions lose a peer"),
                    param(
                        "replica_schedule_limit",
                        "integer",
                        Some("0"),
                        "replica-schedule-limit while the fault lasts",
                    ),
                ],
            ),
            entry(
                "stuck-offline",
                "S12",
                "Sets the store Offline and fills the other stores its regions could move to past \
                 low-space-ratio, so it drains only partly and stays Offline with regions.",
                vec![store_param()],
            ),
        ]
    }
}

/// Whether a fault was injected or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// The fault was injected.
    Injected,
    /// The fault was cleared (or ended by a restart).
    Cleared,
}

/// One entry of the fault history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// The fault.
    pub id: FaultId,
    /// Its kind.
    pub kind: String,
    /// Its parameters, defaults filled in.
    pub params: Value,
    /// What happened.
    pub action: FaultAction,
    /// Simulated time (ms).
    pub at_sim_ms: u64,
    /// Unix time (ms) of that simulated time.
    pub at_unix_ms: u64,
    /// Why, when it was not a plain injection or clearing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What clearing a fault must restore.
#[derive(Debug, Clone, PartialEq, Serialize)]
enum Undo {
    /// An action with nothing lasting (a restart).
    Nothing,
    RestartStore(u64),
    HealPartition(u64),
    RestoreDisk(u64),
    /// Stores and the `base_used` they had before.
    RestoreUsed(Vec<(u64, u64)>),
    /// A hot region's rate before the fault, the rate the fault set, and the region's key range then:
    /// the region may split while it is hot, and its parts share the flow.
    RestoreRate {
        region: u64,
        flow: HotFlow,
        rate: u64,
        injected: u64,
        start_key: Vec<u8>,
        end_key: Vec<u8>,
    },
    /// Schedulers the fault paused, to resume when it is cleared.
    ResumeSchedulers(Vec<Pause>),
    RemoveEvictLeader(u64),
    RestartMember(String),
    RestoreReplicaLimit {
        set: u64,
        previous: u64,
    },
    CancelOffline {
        store: u64,
        filled: Vec<(u64, u64)>,
    },
}

/// A scheduler pause set by a fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Pause {
    name: &'static str,
    /// The pause the fault set.
    paused_until_ms: u64,
    /// The pause the scheduler had before, if any.
    previous: Option<u64>,
}

impl Undo {
    /// Stores whose used space the fault raised.
    fn filled_stores(&self) -> impl Iterator<Item = u64> + '_ {
        let filled: &[(u64, u64)] = match self {
            Undo::RestoreUsed(filled) | Undo::CancelOffline { filled, .. } => filled,
            _ => &[],
        };
        filled.iter().map(|(id, _)| *id)
    }
}

/// A fault in effect.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    /// Its id.
    pub id: FaultId,
    /// The fault, defaults filled in.
    pub fault: Fault,
    /// Its parameters as JSON, plus what was resolved at injection (the killed PD leader's `name`).
    pub params: Value,
    /// Simulated time (ms) of the injection.
    pub since_sim_ms: u64,
    /// Unix time (ms) of the injection.
    pub since_unix_ms: u64,
    undo: Undo,
}

impl ActiveFault {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        self.fault.kind()
    }
}

/// Active faults and the history of injections and clearings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultBook {
    last_id: u64,
    active: Vec<ActiveFault>,
    history: Vec<FaultEvent>,
}

impl Store {
    /// Whether the store's messages reach PD and the other stores: running and not partitioned.
    pub fn reachable(&self) -> bool {
        self.alive && !self.partitioned
    }
}

fn params_json(fault: &Fault) -> Value {
    let mut value = serde_json::to_value(fault).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("kind");
    }
    value
}

/// A uniform number in [0, 1) from a hash.
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The slow score a disk `factor` times slower settles at: the share of requests that time out,
/// scaled to TiKV's 1–100 range. It stays below 100, where PD's evict-slow-store would step in.
fn slow_score_target(factor: f64) -> u64 {
    (100.0 * (1.0 - 1.0 / factor)).round().clamp(1.0, 99.0) as u64
}

/// Marks the followers of a heartbeating region that lag behind their leader as pending: on a store
/// with a slow disk, each follower lags with the store's chance, drawn afresh every heartbeat.
/// Pending learners are left alone: they wait for a snapshot of a running operator.
pub(crate) fn report_lagging_followers(region: &mut Region, chances: &HashMap<u64, f64>, now_ms: u64) {
    if chances.is_empty() && region.pending_peers.iter().all(|p| p.role == PeerRole::Learner) {
        return;
    }
    region.pending_peers.retain(|p| p.role == PeerRole::Learner);
    let leader = region.leader;
    for peer in region.peers.iter().filter(|p| p.role == PeerRole::Voter && Some(p.id) != leader) {
        if let Some(&chance) = chances.get(&peer.store_id)
            && unit(mix(peer.id ^ now_ms.rotate_left(29))) < chance
        {
            region.pending_peers.push(*peer);
        }
    }
}

impl Simulation {
    /// The faults in effect, in injection order.
    pub fn active_faults(&self) -> &[ActiveFault] {
        &self.faults.active
    }

    /// Every injection and clearing, oldest first.
    pub fn fault_history(&self) -> &[FaultEvent] {
        &self.faults.history
    }

    /// Unix time (ms) of a simulated time.
    pub fn unix_ms(&self, sim_ms: u64) -> u64 {
        self.start_unix_ms + sim_ms
    }

    /// Injects a fault. Nothing changes when it is refused: an unknown store, region or member, a
    /// parameter out of range, or a clash with the cluster's state or another fault.
    pub fn inject(&mut self, fault: Fault) -> Result<FaultId, SimError> {
        let fault = self.resolve(fault)?;
        let (undo, resolved_name) = self.apply(&fault)?;
        self.faults.last_id += 1;
        let id = FaultId(self.faults.last_id);
        let mut params = params_json(&fault);
        if let (Some(name), Some(map)) = (resolved_name, params.as_object_mut()) {
            map.insert("name".into(), Value::String(name));
        }
        self.record(id, fault.kind(), params.clone(), FaultAction::Injected, None);
        match &undo {
            Undo::Nothing => {
                // A restart ends the kill faults of its process.
                let ended = match &fault {
                    Fault::RestartStore { store } => Undo::RestartStore(*store),
                    Fault::RestartPdMember { name } => Undo::RestartMember(name.clone()),
                    _ => Undo::Nothing,
                };
                let (gone, kept) = std::mem::take(&mut self.faults.active).into_iter().partition(|f| f.undo == ended);
                self.faults.active = kept;
                for f in gone {
                    let note = format!("ended by {} (fault {id})", fault.kind());
                    self.record(f.id, f.kind(), f.params, FaultAction::Cleared, Some(note));
                }
            }
            _ => {
                let since_sim_ms = self.now_ms;
                self.faults.active.push(ActiveFault {
                    id,
                    fault,
                    params,
                    since_sim_ms,
                    since_unix_ms: self.unix_ms(since_sim_ms),
                    undo,
                });
            }
        }
        self.wake_patrol();
        Ok(id)
    }

    /// Clears an active fault, undoing what it changed.
    pub fn clear(&mut self, id: FaultId) -> Result<(), SimError> {
        let pos = self.faults.active.iter().position(|f| f.id == id).ok_or(SimError::FaultNotFound(id.0))?;
        let fault = self.faults.active.remove(pos);
        self.undo(&fault.undo);
        self.record(fault.id, fault.kind(), fault.params, FaultAction::Cleared, None);
        self.wake_patrol();
        Ok(())
    }

    /// Clears every active fault, latest first so that stacked changes unwind in order; returns their ids.
    pub fn clear_all(&mut self) -> Vec<FaultId> {
        let ids: Vec<FaultId> = self.faults.active.iter().rev().map(|f| f.id).collect();
        for &id in &ids {
            let _ = self.clear(id);
        }
        ids
    }

    /// Runs ticks until simulated time reaches `at_ms`.
    pub fn advance_to(&mut self, at_ms: u64) {
        while self.now_ms < at_ms {
            self.tick();
        }
    }

    /// Runs a fault script: each fault is injected once simulated time reaches its time (in time
    /// order, ties in script order), then the simulation runs on until `until_ms`. Stops at the
    /// first refused fault.
    pub fn run_script(&mut self, script: &[(u64, Fault)], until_ms: u64) -> Result<Vec<FaultId>, SimError> {
        let mut steps: Vec<&(u64, Fault)> = script.iter().collect();
        steps.sort_by_key(|(at, _)| *at);
        let mut ids = Vec::with_capacity(steps.len());
        for (at, fault) in steps {
            self.advance_to(*at);
            ids.push(self.inject(fault.clone())?);
        }
        self.advance_to(until_ms);
        Ok(ids)
    }

    fn record(&mut self, id: FaultId, kind: &str, params: Value, action: FaultAction, note: Option<String>) {
        let at_sim_ms = self.now_ms;
        self.faults.history.push(FaultEvent {
            id,
            kind: kind.into(),
            params,
            action,
            at_sim_ms,
            at_unix_ms: self.unix_ms(at_sim_ms),
            note,
        });
        if self.faults.history.len() > HISTORY_LIMIT {
            let excess = self.faults.history.len() - HISTORY_LIMIT;
            self.faults.history.drain(..excess);
        }
    }

    fn existing_store(&self, id: u64) -> Result<&Store, SimError> {
        self.store(id).ok_or(SimError::StoreNotFound(id))
    }

    fn member_alive(&self, name: &str) -> Result<bool, SimError> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.alive)
            .ok_or_else(|| SimError::MemberNotFound(name.into()))
    }

    /// The active fault whose undo matches, if any.
    fn active_with(&self, matches: impl Fn(&Undo) -> bool) -> Option<FaultId> {
        self.faults.active.iter().find(|f| matches(&f.undo)).map(|f| f.id)
    }

    /// Fills in defaults and checks the targets exist and the parameters are in range.
    fn resolve(&self, fault: Fault) -> Result<Fault, SimError> {
        let invalid = |msg: String| Err(SimError::InvalidFault(msg));
        Ok(match fault {
            Fault::KillStore { store }
            | Fault::RestartStore { store }
            | Fault::PartitionStore { store }
            | Fault::StaleEvictLeader { store }
            | Fault::StuckOffline { store } => {
                self.existing_store(store)?;
                fault
            }
            Fault::SlowDisk { store, factor } => {
                self.existing_store(store)?;
                let factor = factor.unwrap_or(DEFAULT_SLOWDOWN);
                if !(factor.is_finite() && factor > 1.0) {
                    return invalid(format!("slow-disk factor must be a number above 1, got {factor}"));
                }
                Fault::SlowDisk { store, factor: Some(factor) }
            }
            Fault::FillDisk { store, ratio } => {
                self.existing_store(store)?;
                let ratio = ratio.unwrap_or(DEFAULT_FILL_RATIO);
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return invalid(format!("fill-disk ratio must be in (0, 1], got {ratio}"));
                }
                Fault::FillDisk { store, ratio: Some(ratio) }
            }
            Fault::HotRegion { region, flow, bytes_per_sec } => {
                let region = match region {
                    Some(id) => self.region(id).ok_or(SimError::RegionNotFound(id))?.id,
                    None => {
                        let middle = self.regions.get(self.regions.len() / 2);
                        middle.ok_or_else(|| SimError::InvalidFault("the cluster has no region".into()))?.id
                    }
                };
                let bytes_per_sec = bytes_per_sec.unwrap_or(DEFAULT_HOT_BYTES_PER_SEC);
                if bytes_per_sec == 0 {
                    return invalid("hot-region bytes_per_sec must be above 0".into());
                }
                Fault::HotRegion { region: Some(region), flow, bytes_per_sec: Some(bytes_per_sec) }
            }
            Fault::LeaderSkew { store, hold_secs } => {
                self.existing_store(store)?;
                Fault::LeaderSkew { store, hold_secs: Some(hold_secs.unwrap_or(DEFAULT_SKEW_HOLD_SECS)) }
            }
            Fault::KillPdLeader => fault,
            Fault::KillPdMember { ref name } | Fault::RestartPdMember { ref name } => {
                self.member_alive(name)?;
                fault
            }
            Fault::UnderReplicate { regions, replica_schedule_limit } => {
                let regions = regions.unwrap_or(DEFAULT_UNDER_REPLICATED_REGIONS);
                if regions == 0 || regions > self.regions.len() as u64 {
                    return invalid(format!(
                        "under-replicate regions must be between 1 and the {} regions of the cluster, got {regions}",
                        self.regions.len()
                    ));
                }
                Fault::UnderReplicate {
                    regions: Some(regions),
                    replica_schedule_limit: Some(replica_schedule_limit.unwrap_or(DEFAULT_UNDER_REPLICATE_LIMIT)),
                }
            }
        })
    }

    /// Checks the fault against the cluster's state, then applies it. Returns what clearing must
    /// restore and, for `kill-pd-leader`, the member it killed.
    fn apply(&mut self, fault: &Fault) -> Result<(Undo, Option<String>), SimError> {
        let conflict = |msg: String| Err(SimError::FaultConflict(msg));
        let undo = match fault {
            &Fault::KillStore { store } => {
                if !self.existing_store(store)?.alive {
                    return conflict(format!("store {store} is already killed"));
                }
                self.kill_store(store)?;
                Undo::RestartStore(store)
            }
            &Fault::RestartStore { store } => {
                if self.existing_store(store)?.alive {
                    return conflict(format!("store {store} is running; only a killed store can be restarted"));
                }
                self.restart_store(store)?;
                Undo::Nothing
            }
            &Fault::PartitionStore { store } => {
                if self.existing_store(store)?.partitioned {
                    return conflict(format!("store {store} is already partitioned"));
                }
                let due = self.now_ms + ELECTION_TIMEOUT_MS;
                if let Some(s) = self.store_mut(store) {
                    // Its Raft groups stop hearing from it: leaders move after an election timeout.
                    if s.reachable() {
                        s.election_due_ms = Some(due);
                    }
                    s.partitioned = true;
                }
                Undo::HealPartition(store)
            }
            &Fault::SlowDisk { store, factor } => {
                let current = self.existing_store(store)?.disk_slowdown;
                if current > 1.0 {
                    return conflict(format!("store {store}'s disk is already slow ({current}x)"));
                }
                if let Some(s) = self.store_mut(store) {
                    s.disk_slowdown = factor.unwrap_or(DEFAULT_SLOWDOWN);
                }
                Undo::RestoreDisk(store)
            }
            &Fault::FillDisk { store, ratio } => {
                if let Some(other) = self.active_with(|u| u.filled_stores().any(|s| s == store)) {
                    return conflict(format!("store {store}'s disk is already filled by fault {other}"));
                }
                let before = self.existing_store(store)?.base_used;
                self.fill_store(store, ratio.unwrap_or(DEFAULT_FILL_RATIO));
                Undo::RestoreUsed(vec![(store, before)])
            }
            &Fault::HotRegion { region, flow, bytes_per_sec } => {
                let region = region.unwrap_or_default();
                let same =
                    |u: &Undo| matches!(u, Undo::RestoreRate { region: r, flow: f, .. } if *r == region && *f == flow);
                if let Some(other) = self.active_with(same) {
                    return conflict(format!("region {region} is already hot (fault {other})"));
                }
                let r = self.region(region).ok_or(SimError::RegionNotFound(region))?;
                let rate = match flow {
                    HotFlow::Write => r.write_rate,
                    HotFlow::Read => r.read_rate,
                };
                let (start_key, end_key) = (r.start_key.to_vec(), r.end_key.to_vec());
                let injected = bytes_per_sec.unwrap_or(DEFAULT_HOT_BYTES_PER_SEC);
                match flow {
                    HotFlow::Write => self.set_write_rate(region, injected)?,
                    HotFlow::Read => self.set_read_rate(region, injected)?,
                }
                Undo::RestoreRate { region, flow, rate, injected, start_key, end_key }
            }
            &Fault::LeaderSkew { store, hold_secs } => self.skew_leaders(store, hold_secs.unwrap_or_default())?,
            &Fault::StaleEvictLeader { store } => {
                let s = self.existing_store(store)?;
                if s.state != StoreState::Up {
                    return conflict(format!(
                        "store {store} is {}; a stale evict-leader scheduler is one left on an Up store",
                        self.state_name(s)
                    ));
                }
                let evict = self.schedulers.iter_mut().find(|s| s.name == EVICT_LEADER);
                match evict {
                    Some(sched) if sched.store_ids.contains(&store) => {
                        return conflict(format!("evict-leader-scheduler already covers store {store}"));
                    }
                    Some(sched) => sched.store_ids.push(store),
                    None => self.schedulers.push(Scheduler {
                        name: EVICT_LEADER.into(),
                        store_ids: vec![store],
                        paused_until_ms: None,
                    }),
                }
                Undo::RemoveEvictLeader(store)
            }
            Fault::KillPdLeader => {
                let leader = self.pd_leader.and_then(|i| self.members.get(i));
                let Some(name) = leader.map(|m| m.name.clone()) else {
                    return conflict("PD has no leader to kill".into());
                };
                self.kill_pd_member(&name)?;
                return Ok((Undo::RestartMember(name.clone()), Some(name)));
            }
            Fault::KillPdMember { name } => {
                if !self.member_alive(name)? {
                    return conflict(format!("pd member {name} is already killed"));
                }
                self.kill_pd_member(name)?;
                Undo::RestartMember(name.clone())
            }
            Fault::RestartPdMember { name } => {
                if self.member_alive(name)? {
                    return conflict(format!("pd member {name} is running; only a killed member can be restarted"));
                }
                self.restart_pd_member(name)?;
                Undo::Nothing
            }
            &Fault::UnderReplicate { regions, replica_schedule_limit } => {
                self.under_replicate(regions.unwrap_or_default(), replica_schedule_limit.unwrap_or_default())?
            }
            &Fault::StuckOffline { store } => self.stuck_offline(store)?,
        };
        Ok((undo, None))
    }

    fn undo(&mut self, undo: &Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::RestartStore(id) => {
                if self.store(*id).is_some_and(|s| !s.alive) {
                    let _ = self.restart_store(*id);
                }
            }
            Undo::HealPartition(id) => {
                let now = self.now_ms;
                if let Some(s) = self.store_mut(*id) {
                    s.partitioned = false;
                    if s.alive {
                        // Back in touch: it heartbeats at once and its peers catch up.
                        s.next_heartbeat_ms = now;
                        s.election_due_ms = None;
                    }
                }
            }
            Undo::RestoreDisk(id) => {
                if let Some(s) = self.store_mut(*id) {
                    s.disk_slowdown = 1.0;
                }
            }
            Undo::RestoreUsed(filled) => self.restore_used(filled),
            Undo::RestoreRate { region, flow, rate, injected, start_key, end_key } => {
                self.restore_rate(*region, *flow, *rate, *injected, (start_key, end_key));
            }
            Undo::ResumeSchedulers(pauses) => {
                let now = self.now_ms;
                for pause in pauses {
                    // Leave a pause someone changed since alone.
                    if let Some(sched) = self.schedulers.iter_mut().find(|s| s.name == pause.name)
                        && sched.paused_until_ms == Some(pause.paused_until_ms)
                    {
                        sched.paused_until_ms = pause.previous.filter(|&t| t > now);
                    }
                }
            }
            Undo::RemoveEvictLeader(store) => {
                if let Some(pos) = self.schedulers.iter().position(|s| s.name == EVICT_LEADER) {
                    self.schedulers[pos].store_ids.retain(|s| s != store);
                    if self.schedulers[pos].store_ids.is_empty() {
                        self.schedulers.remove(pos);
                    }
                }
            }
            Undo::RestartMember(name) => {
                if self.member_alive(name) == Ok(false) {
                    let _ = self.restart_pd_member(name);
                }
            }
            Undo::RestoreReplicaLimit { set, previous } => {
                // Leave a limit someone changed since alone.
                if self.schedule.replica_schedule_limit == *set {
                    self.schedule.replica_schedule_limit = *previous;
                }
            }
            Undo::CancelOffline { store, filled } => {
                self.restore_used(filled);
                if self.store(*store).is_some_and(|s| s.state == StoreState::Offline) {
                    let _ = self.up_store(*store);
                }
            }
        }
    }

    /// Raises a store's non-region data so that `ratio` of its capacity is in use.
    fn fill_store(&mut self, store: u64, ratio: f64) {
        let region_bytes = self.store_stats().get(&store).map_or(0, |s| s.region_size * MIB);
        if let Some(s) = self.store_mut(store) {
            let target = (s.capacity as f64 * ratio) as u64;
            s.base_used = s.base_used.max(target.saturating_sub(region_bytes));
        }
    }

    fn restore_used(&mut self, filled: &[(u64, u64)]) {
        for &(id, before) in filled {
            if let Some(s) = self.store_mut(id) {
                s.base_used = before;
            }
        }
    }

    /// Ends a hot flow. The hot region may have split since the fault began; writes were spread over
    /// its keys, so each part of the original key range carries its share of the injected rate, and
    /// each is scaled back by the same factor. Parts merged with outside regions are left alone.
    fn restore_rate(&mut self, region: u64, flow: HotFlow, rate: u64, injected: u64, range: (&[u8], &[u8])) {
        let (start, end) = range;
        let scale = |v: u64| (u128::from(v) * u128::from(rate) / u128::from(injected.max(1))) as u64;
        let first = self.regions.partition_point(|r| !r.end_key.is_empty() && r.end_key.as_slice() <= start);
        let mut restored = false;
        for i in first..self.regions.len() {
            let r = &self.regions[i];
            if !end.is_empty() && r.start_key.as_slice() >= end {
                break;
            }
            let inside = r.start_key.as_slice() >= start
                && (end.is_empty() || (!r.end_key.is_empty() && r.end_key.as_slice() <= end));
            if !inside {
                continue;
            }
            let r = &mut self.regions[i];
            restored |= r.id == region;
            match flow {
                HotFlow::Write => r.write_rate = scale(r.write_rate),
                HotFlow::Read => r.read_rate = scale(r.read_rate),
            }
        }
        if !restored {
            let _ = match flow {
                HotFlow::Write => self.set_write_rate(region, rate),
                HotFlow::Read => self.set_read_rate(region, rate),
            };
        }
    }

    /// `leader-skew`: every region with a voter on `store` that can move at once makes it the leader,
    /// and balance-leader and balance-hot-region are paused for `hold_secs` so the skew is not undone
    /// in a few minutes: with the leaders piled on one store, that store also serves most of the
    /// read-hot leaders, which the hot-region scheduler would otherwise move off it.
    fn skew_leaders(&mut self, store: u64, hold_secs: u64) -> Result<Undo, SimError> {
        let s = self.existing_store(store)?;
        if s.state != StoreState::Up || !s.reachable() {
            return Err(SimError::FaultConflict(format!(
                "store {store} cannot take leaders: it is {}{}",
                self.state_name(s),
                if s.reachable() { "" } else { " and unreachable" }
            )));
        }
        if let Some(other) = self.active_with(|u| matches!(u, Undo::ResumeSchedulers(_))) {
            return Err(SimError::FaultConflict(format!("leader-skew fault {other} is already active")));
        }
        let busy: HashSet<u64> = self.operators.iter().map(|o| o.region_id).collect();
        let moves: Vec<(usize, u64)> = self
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| !busy.contains(&r.id) && r.leader_store() != Some(store))
            .filter_map(|(i, r)| {
                let peer = r.peers.iter().find(|p| p.store_id == store && p.role == PeerRole::Voter)?;
                (!r.pending_peers.iter().any(|p| p.id == peer.id)).then_some((i, peer.id))
            })
            .collect();
        for (i, peer) in moves {
            self.regions[i].leader = Some(peer);
        }
        let mut pauses = Vec::new();
        if hold_secs > 0 {
            let until = self.now_ms + hold_secs * 1000;
            for name in [BALANCE_LEADER, BALANCE_HOT_REGION] {
                if let Some(sched) = self.schedulers.iter_mut().find(|s| s.name == name) {
                    let previous = sched.paused_until_ms;
                    let paused_until_ms = until.max(previous.unwrap_or(0));
                    sched.paused_until_ms = Some(paused_until_ms);
                    pauses.push(Pause { name, paused_until_ms, previous });
                }
            }
        }
        Ok(Undo::ResumeSchedulers(pauses))
    }

    /// `under-replicate`: `count` regions spread over the key space each lose a follower, and
    /// replica-schedule-limit drops to `limit` so the replica checker stays (almost) idle.
    fn under_replicate(&mut self, count: u64, limit: u64) -> Result<Undo, SimError> {
        if let Some(other) = self.active_with(|u| matches!(u, Undo::RestoreReplicaLimit { .. })) {
            return Err(SimError::FaultConflict(format!("under-replicate fault {other} is already active")));
        }
        let max_replicas = self.replication.max_replicas as usize;
        let busy: HashSet<u64> = self.operators.iter().map(|o| o.region_id).collect();
        let eligible: Vec<usize> = self
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| !busy.contains(&r.id) && r.voter_count() == max_replicas && max_replicas > 1)
            .map(|(i, _)| i)
            .collect();
        let count = count as usize;
        if count > eligible.len() {
            return Err(SimError::InvalidFault(format!(
                "under-replicate regions: only {} regions have all their replicas and no operator, asked for {count}",
                eligible.len()
            )));
        }
        for k in 0..count {
            let region = &mut self.regions[eligible[k * eligible.len() / count]];
            let followers: Vec<u64> = region
                .peers
                .iter()
                .filter(|p| p.role == PeerRole::Voter && Some(p.id) != region.leader)
                .map(|p| p.id)
                .collect();
            let Some(&victim) = followers.get(k % followers.len().max(1)) else { continue };
            region.peers.retain(|p| p.id != victim);
            region.pending_peers.retain(|p| p.id != victim);
            region.down_peers.retain(|d| d.peer.id != victim);
            region.conf_ver += 1;
        }
        let previous = self.schedule.replica_schedule_limit;
        self.schedule.replica_schedule_limit = limit;
        Ok(Undo::RestoreReplicaLimit { set: limit, previous })
    }

    /// `stuck-offline`: the store goes Offline (as a forced `store delete`), and every other Up store
    /// is filled past low-space-ratio except the `max-replicas - 1` stores that share the most regions
    /// with it. The regions whose other peers sit exactly on those stores have no store left to move
    /// to, so the store drains only partly and stays Offline.
    fn stuck_offline(&mut self, store: u64) -> Result<Undo, SimError> {
        let s = self.existing_store(store)?;
        if s.state != StoreState::Up {
            return Err(SimError::FaultConflict(format!("store {store} is {}, not Up", self.state_name(s))));
        }
        let others: Vec<u64> =
            self.stores.iter().filter(|s| s.id != store && s.state == StoreState::Up).map(|s| s.id).collect();
        let keep_count = (self.replication.max_replicas as usize).saturating_sub(1);
        let mut to_fill = Vec::new();
        if others.len() > keep_count {
            let mut sharing: BTreeMap<Vec<u64>, usize> = BTreeMap::new();
            for region in self.regions.iter().filter(|r| r.peers.iter().any(|p| p.store_id == store)) {
                let mut rest: Vec<u64> =
                    region.peers.iter().map(|p| p.store_id).filter(|&id| id != store && others.contains(&id)).collect();
                rest.sort_unstable();
                if rest.len() == keep_count {
                    *sharing.entry(rest).or_default() += 1;
                }
            }
            // The most common set of companions; ties go to the lowest ids (BTreeMap order).
            let keep = sharing.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(k, _)| k.clone());
            let keep = keep.unwrap_or_else(|| others[..keep_count].to_vec());
            to_fill = others.into_iter().filter(|id| !keep.contains(id)).collect();
        }
        for &id in &to_fill {
            if let Some(other) = self.active_with(|u| u.filled_stores().any(|s| s == id)) {
                return Err(SimError::FaultConflict(format!("store {id}'s disk is already filled by fault {other}")));
            }
        }
        let filled: Vec<(u64, u64)> =
            to_fill.iter().filter_map(|&id| self.store(id).map(|s| (id, s.base_used))).collect();
        for &id in &to_fill {
            self.fill_store(id, DEFAULT_FILL_RATIO);
        }
        if let Some(s) = self.store_mut(store) {
            s.state = StoreState::Offline;
        }
        Ok(Undo::CancelOffline { store, filled })
    }

    /// Killed and partitioned stores, with the simulated time their peers went silent.
    pub(crate) fn cut_off_stores(&self) -> HashMap<u64, u64> {
        let mut out = HashMap::new();
        for s in &self.stores {
            let killed = (!s.alive).then(|| s.killed_at_ms.unwrap_or(0));
            let partitioned = s.partitioned.then(|| {
                self.active_with(|u| *u == Undo::HealPartition(s.id))
                    .and_then(|id| self.faults.active.iter().find(|f| f.id == id))
                    .map_or(s.last_heartbeat_ms.unwrap_or(0), |f| f.since_sim_ms)
            });
            if let Some(since) = killed.into_iter().chain(partitioned).min() {
                out.insert(s.id, since);
            }
        }
        out
    }

    /// Each slow store's chance that a follower lags, growing with its slow score.
    pub(crate) fn follower_lag_chances(&self) -> HashMap<u64, f64> {
        self.stores
            .iter()
            .filter(|s| s.disk_slowdown > 1.0 && s.reachable())
            .map(|s| (s.id, MAX_LAGGING_SHARE * s.slow_score as f64 / 100.0))
            .collect()
    }

    /// TiKV reports its slow score in each store heartbeat: it climbs while the disk is slow and
    /// falls back once it is healthy.
    pub(crate) fn update_slow_scores(&mut self) {
        let now = self.now_ms;
        for s in &mut self.stores {
            if s.last_heartbeat_ms != Some(now) {
                continue;
            }
            if s.disk_slowdown > 1.0 {
                let target = slow_score_target(s.disk_slowdown);
                let grown = (s.slow_score as f64 * SLOW_SCORE_GROWTH + 1.0) as u64;
                s.slow_score = grown.min(target);
            } else if s.slow_score > 1 {
                s.slow_score = s.slow_score.saturating_sub(SLOW_SCORE_RECOVERY).max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_is_tagged_by_kebab_case_kind() {
        let f: Fault = serde_json::from_str(r#"{"kind":"kill-store","store":1}"#).unwrap();
        assert_eq!(f, Fault::KillStore { store: 1 });
        assert_eq!(serde_json::to_value(&f).unwrap(), serde_json::json!({"kind":"kill-store","store":1}));
        let f: Fault = serde_json::from_str(r#"{"kind":"kill-pd-leader"}"#).unwrap();
        assert_eq!(f, Fault::KillPdLeader);
        let f: Fault = serde_json::from_str(r#"{"kind":"hot-region","flow":"read"}"#).unwrap();
        assert_eq!(f, Fault::HotRegion { region: None, flow: HotFlow::Read, bytes_per_sec: None });
        let err = serde_json::from_str::<Fault>(r#"{"kind":"melt-store","store":1}"#).unwrap_err();
        assert!(err.to_string().contains("melt-store"), "{err}");
        let err = serde_json::from_str::<Fault>(r#"{"kind":"kill-store","store":1,"when":3}"#).unwrap_err();
        assert!(err.to_string().contains("when"), "{err}");
    }

    #[test]
    fn catalogue_covers_every_kind_once() {
        let catalogue = Fault::catalogue();
        let kinds: HashSet<&str> = catalogue.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.len(), catalogue.len());
        assert_eq!(catalogue.len(), 13);
        for e in &catalogue {
            assert!(e.scenario.starts_with('S'), "{e:?}");
        }
    }

    #[test]
    fn slow_score_settles_below_eviction() {
        assert_eq!(slow_score_target(10.0), 90);
        assert_eq!(slow_score_target(2.0), 50);
        assert_eq!(slow_score_target(1e9), 99);
    }
}
