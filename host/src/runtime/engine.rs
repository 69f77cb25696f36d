//! The one wasmtime engine of the host and the thread that ticks its epoch.
//!
//! - Pooling allocator: instance slots are reused, so a new instance per call costs
//!   microseconds; the pool's per-memory size is the largest memory cap configured.
//! - Epoch interruption: a guest stuck in a loop is interrupted at its deadline. The ticker
//!   advances the epoch every [`TICK`] while calls run, and parks when none has run for [`LINGER`].
//! - `concurrency_support(false)`: the contract has no async WIT functions, and calls are four
//!   times cheaper without it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// How long the idle ticker sleeps between checks that the engine still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long the ticker keeps ticking after the last call ended before it parks: calls come in
/// bursts (one monitor cycle is several), and waking a parked thread for each would cost every
/// call a system call.
pub const LINGER: Duration = Duration::from_millis(100);

/// Advances the engine's epoch every [`TICK`] while plugin calls run, until the engine is dropped.
///
/// The epoch only matters to guest code that is running: it is how a store's deadline and its
/// periodic yield are reached. Between calls (an idle daemon spends nearly all its time there)
/// ticking would only wake a thread 100 times a second for nothing, which was about half of an
/// idle daemon's CPU, so the thread parks once no call has run for [`LINGER`] and a call wakes
/// it ([`EpochTicker::busy`]). A call that starts while the thread ticks costs one atomic add;
/// only the first call after a pause pays for the wake-up. A woken ticker waits a whole tick
/// before it advances the epoch, so a call shorter than a tick never reaches its epoch deadline
/// and never pays for the deadline check and the yield that follows it.
pub struct EpochTicker {
    shared: Arc<TickerShared>,
    _thread: JoinHandle<()>,
}

/// The calls in flight, and how the parked ticker is woken.
#[derive(Default)]
struct TickerShared {
    calls: AtomicUsize,
    /// Set by the ticker (under `park`) before it waits; a call that sees it wakes the thread.
    parked: AtomicBool,
    park: Mutex<()>,
    wake: Condvar,
    /// Epoch increments so far (for tests and diagnostics).
    ticks: AtomicU64,
}

/// Keeps the epoch advancing while it lives: held for the whole of one plugin call.
#[must_use = "the epoch advances only while the guard lives"]
pub struct TickGuard {
    shared: Arc<TickerShared>,
}

impl Drop for TickGuard {
    fn drop(&mut self) {
        self.shared.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread; it holds only a weak reference and ends with the engine.
    pub fn start(engine: &Engine) -> EpochTicker {
        let weak = engine.weak();
        let shared = Arc::new(TickerShared::default());
        let thread_shared = shared.clone();
        let linger_ticks = (LINGER.as_millis() / TICK.as_millis()).max(1) as u32;
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".to_owned())
            .spawn(move || {
                let shared = thread_shared;
                loop {
                    // Parked: wait for a call, checking now and then that the engine still exists.
                    {
                        let mut guard = shared.park.lock().unwrap_or_else(|e| e.into_inner());
                        // `parked` is set before `calls` is read again, and `busy` adds to `calls`
                        // before it reads `parked`: one of the two sees the other, so no wake-up
                        // is lost. The notification is sent under `park`, so it reaches the wait.
                        shared.parked.store(true, Ordering::SeqCst);
                        while shared.calls.load(Ordering::SeqCst) == 0 {
                            if weak.upgrade().is_none() {
                                return;
                            }
                            guard = shared.wake.wait_timeout(guard, IDLE_CHECK).unwrap_or_else(|e| e.into_inner()).0;
                        }
                        shared.parked.store(false, Ordering::SeqCst);
                    }
                    // Ticking: until no call has run for `LINGER`.
                    let mut quiet = 0;
                    while quiet < linger_ticks {
                        std::thread::sleep(TICK);
                        let Some(engine) = weak.upgrade() else { return };
                        engine.increment_epoch();
                        shared.ticks.fetch_add(1, Ordering::Relaxed);
                        drop(engine);
                        quiet = if shared.calls.load(Ordering::SeqCst) == 0 { quiet + 1 } else { 0 };
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker { shared, _thread: thread }
    }

    /// Marks a plugin call as running until the guard is dropped: the epoch advances meanwhile.
    pub fn busy(&self) -> TickGuard {
        self.shared.calls.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            let _guard = self.shared.park.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
        TickGuard { shared: self.shared.clone() }
    }

    /// How many times the epoch was advanced so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_epoch_advances_only_while_a_call_runs() {
        let engine = build_engine(&RuntimeLimits::default(), 16).unwrap();
        let ticker = EpochTicker::start(&engine);
        std::thread::sleep(TICK * 10);
        assert_eq!(ticker.ticks(), 0, "no call has run yet");

        let guard = ticker.busy();
        wait_until("ticks while a call runs", || ticker.ticks() >= 3);
        // A second call overlapping the first keeps it going after the first ends.
        let second = ticker.busy();
        drop(guard);
        let before = ticker.ticks();
        wait_until("ticks while the second call runs", || ticker.ticks() >= before + 3);
        drop(second);

        // The thread lingers, then parks.
        std::thread::sleep(LINGER + TICK * 3);
        let idle = ticker.ticks();
        std::thread::sleep(TICK * 20);
        assert_eq!(ticker.ticks(), idle, "the epoch stood still with no call running");
    }
}
