//! The action engine: proposals from diagnoses, the CLI and workflows become actions that run
//! only through the safety switches, approval, blast-radius limits and a fresh observation; each
//! state change is audited and persisted before it takes effect.
//!
//! - [`policy`]: the pure rules (mode, kill switch, approval by risk, limits, retry schedule);
//! - [`ledger`]: the pure lifecycle state machine;
//! - [`params`]: parameter checking against the catalogue's typed schema;
//! - [`store`]: actions and the safety switches in redb;
//! - [`executor`]: the I/O around the ledger (validate, run, verify, recover);
//! - [`workflow`]: workflows of steps with conditions and compensations, over the executor
//!   ([`workflow_store`] keeps their runs).

pub mod executor;
pub mod ledger;
pub mod params;
pub mod policy;
pub mod store;
pub mod workflow;
pub mod workflow_store;
