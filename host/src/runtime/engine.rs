//! The one wasmtime engine of the host and the thread that ticks its epoch.
//!
//! - Pooling allocator: instance slots are reused, so a new instance per call costs
//!   microseconds; the pool's per-memory size is the largest memory cap configured.
//! - Epoch interruption: a guest stuck in a loop is interrupted at its deadline. The ticker
//!   advances the epoch every [`TICK`].
//! - `concurrency_support(false)`: the contract has no async WIT functions, and calls are four
//!   times cheaper without it.

use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::RuntimeLimits;

/// How often the epoch advances: the granularity of deadlines inside guest code.
pub const TICK: Duration = Duration::from_millis(10);

/// Builds the engine for the given limits; `max_memory_mib` is the largest memory cap any
/// plugin may have (the global one or a per-plugin override).
pub fn build_engine(limits: &RuntimeLimits, max_memory_mib: u64) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    let slots = limits.max_concurrent_instances;
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size((max_memory_mib * 1024 * 1024) as usize)
        .table_elements(100_000)
        // Reset a slot's dirty pages with memset instead of returning them to the kernel, so the
        // next instance does not page-fault through the same memory again; PAGEMAP_SCAN (Linux
        // 6.7+) finds the dirty pages, so only what the last call touched is reset.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(8 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(1024 * 1024)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
pub struct EpochTicker {
    _thread: JoinHandle<()>,
}

impl EpochTicker {
    /// Starts the ticker thread; it holds only a weak reference and ends with the engine.
    pub fn start(engine: &Engine) -> EpochTicker {
        let weak = engine.weak();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker { _thread: thread }
    }
}
