//! The `operator-host` binary.

fn main() -> std::process::ExitCode {
    operator_host::cli::main()
}
