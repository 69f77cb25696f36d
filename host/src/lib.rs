//! Operator: operates distributed systems through sandboxed WebAssembly plugins.
//!
//! The host is subject-agnostic: everything it knows about a kind of system comes from a
//! plugin behind the WIT contract in `wit/`. One module per pipeline stage:
//!
//! - [`runtime`]: engine, plugin loading and caching, limits, the capability gate;
//! - [`actions`]: the action lifecycle, its safety rules and the executor;
//! - [`diagnose`]: explaining tickets (Claude, OpenAI-compatible models, the plugin's rules);
//! - [`audit`]: the hash-chained log of every plugin call and capability decision;
//! - [`monitor`]: the observe/check loop and tickets;
//! - [`store`]: redb tables and migrations;
//! - [`api`]: the daemon's local HTTP API and its Prometheus metrics;
//! - [`notify`]: webhook notifications of tickets, diagnoses, approvals and action outcomes;
//! - [`daemon`]: the whole pipeline assembled, shared by `operator-host run` and `operator-host demo`;
//! - [`demo`]: the terminal UI over the pipeline and the simulated cluster (`operator-host demo`);
//! - [`cli`]: the `operator-host` command line.

pub mod actions;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diagnose;
pub mod digest;
pub mod monitor;
pub mod notify;
pub mod runtime;
pub mod store;
