//! The `operator-host` binary.

/// mimalloc instead of glibc's allocator. A plugin call allocates and frees on whichever tokio
/// worker runs it, and the audit writer frees on its own thread what the callers allocated;
/// glibc's per-arena locks made that cross-thread traffic a tenth of a call's time, and
/// mimalloc's per-thread heaps cut instantiate + call by about a quarter (see the runtime
/// benchmark, which uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    operator_host::cli::main()
}
