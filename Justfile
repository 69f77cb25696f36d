# Convenience recipes. The README's commands need only cargo.

# Build the host (and, through its build script, the plugins).
build:
    cargo build -p operator-host

# The whole test suite, as CI runs it.
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# The runtime benchmark (release build; the first run compiles wasmtime in release mode).
bench:
    cargo bench -p operator-tests --bench runtime

# Everything CI does.
ci:
    bash .ci/run
