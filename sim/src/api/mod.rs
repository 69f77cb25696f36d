//! HTTP servers: PD's API on every PD member's port and each TiKV store's status server.

pub mod metrics;
pub mod pd;
pub mod render;
pub mod status;
pub mod views;
