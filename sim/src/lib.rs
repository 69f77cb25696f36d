//! A TiKV + PD cluster simulator that serves PD's real HTTP API.
//!
//! No real TiKV or PD is needed: [`Simulation`] models PD members, TiKV stores and regions and
//! advances them in ticks of simulated time (heartbeats, Raft elections, down peers, operators, PD's
//! replica checker and leader schedulers); [`SimCluster`] serves PD's API (with PD's exact shapes and
//! quirks) on one loopback port per PD member, and each store's status server on its own port.
//!
//! Modules: [`model`] (the cluster's facts), [`regions`] (the regions in key order, chunked so that
//! splits stay cheap at a million regions), [`sim`] (clock, heartbeats, elections, faults),
//! [`operator`] (operators and the replica checker), [`scheduler`] (leader schedulers), [`balance`]
//! (region and hot-region balancing), [`region_ops`] (split, merge, scatter and move-region
//! operators), [`split`] (region growth and splits), [`stats`] (counters behind the metrics), [`checks`]
//! (region classification), [`config`] (PD's configuration), [`api`] (HTTP servers), [`cluster`]
//! (listeners and real-time stepping), [`units`] (PD's wire formats), [`workload`] (read and write
//! flows, hot regions), [`faults`] (faults injected at run time, one per failure scenario) and
//! [`control`] (the control API on its own port, and the discovery file a client finds it by).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tikv_sim::{ClusterSpec, SimCluster};
//! let cluster = SimCluster::start(ClusterSpec::default(), 1.0).await?;
//! println!("PD at {:?}", cluster.pd_urls());
//! cluster.kill_store(1).await?;
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod balance;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod control;
pub mod faults;
pub mod model;
pub mod operator;
pub mod region_ops;
pub mod regions;
pub mod scheduler;
pub mod sim;
pub mod split;
pub mod stats;
pub mod units;
pub mod workload;

pub use cluster::{NeededAccess, PD_ENDPOINT, SUBJECT_PLUGIN, ServedEndpoint, SimCluster};
pub use faults::{Fault, FaultId};
pub use sim::{ClusterSpec, MissingRegionReply, SimError, Simulation, StoreOpError};
