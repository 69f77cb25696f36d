//! The WASI a plugin is given: deny by default, link only what is granted.
//!
//! | interface                              | linked? | what the plugin gets                              |
//! |----------------------------------------|---------|---------------------------------------------------|
//! | `wasi:io/*`                            | yes     | streams and polling (needed by everything else)   |
//! | `wasi:clocks/*`                        | yes     | wall and monotonic clocks                         |
//! | `wasi:random/*`                        | yes     | random bytes                                      |
//! | `wasi:cli/stdout`, `stderr`            | yes     | captured, capped, logged under the plugin's name  |
//! | `wasi:cli/stdin`                       | yes     | closed (end of stream)                            |
//! | `wasi:cli/environment`                 | yes     | no variables, no arguments, no cwd; asking is audited |
//! | `wasi:cli/exit`, `terminal-*`          | yes     | exit ends the call with an error; not a terminal  |
//! | `wasi:filesystem/*`                    | yes     | no preopened directory, so no file at all; asking is audited |
//! | `wasi:sockets/*`, `wasi:http/*`        | **no**  | a component importing them is refused at load     |
//!
//! The only way out is `operator:plugin/http`, through the capability gate.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

use crate::audit::AuditEvent;

/// The WASI version whose interfaces are linked under their names; guests importing any
/// compatible 0.2.x version resolve to them.
const WASI_VERSION: &str = "0.2.12";

/// Something a plugin asked the sandbox for and was not given, kept per call and audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxRequest {
    /// `environment`, `arguments`, `cwd` or `filesystem`.
    pub what: &'static str,
    /// What the plugin got instead.
    pub detail: &'static str,
}

/// The per-call sandbox state: the WASI context and what the plugin asked for.
pub struct SandboxCtx {
    /// Built on the plugin's first use of WASI: many calls never touch it, and building one
    /// (random generators, clocks, streams) was about a twentieth of a short call.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    requests: Vec<SandboxRequest>,
    stdout: CappedOutput,
    stderr: CappedOutput,
}

impl SandboxCtx {
    /// A context with nothing granted; stdout and stderr kept up to `output_limit` bytes each.
    pub fn new(output_limit: usize) -> SandboxCtx {
        let stdout = CappedOutput::new(output_limit);
        let stderr = CappedOutput::new(output_limit);
        SandboxCtx { wasi: None, table: ResourceTable::new(), requests: Vec::new(), stdout, stderr }
    }

    fn note(&mut self, what: &'static str, detail: &'static str) {
        let request = SandboxRequest { what, detail };
        if !self.requests.contains(&request) {
            self.requests.push(request);
        }
    }

    /// What the plugin asked for during the call.
    pub fn requests(&self) -> &[SandboxRequest] {
        &self.requests
    }

    /// Captured stdout.
    pub fn stdout(&self) -> &CappedOutput {
        &self.stdout
    }

    /// Captured stderr.
    pub fn stderr(&self) -> &CappedOutput {
        &self.stderr
    }

    /// Audit events for the sandbox requests of a call.
    pub fn audit_events(&self, plugin: &str, export: &str) -> Vec<AuditEvent> {
        self.requests
            .iter()
            .map(|r| AuditEvent::Sandbox {
                plugin: plugin.to_owned(),
                export: export.to_owned(),
                what: r.what.to_owned(),
                detail: r.detail.to_owned(),
            })
            .collect()
    }
}

impl WasiView for SandboxCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| denying_wasi(&self.stdout, &self.stderr));
        WasiCtxView { ctx, table: &mut self.table }
    }
}

/// A WASI context that grants nothing but clocks and random, writing to the capped outputs.
fn denying_wasi(stdout: &CappedOutput, stderr: &CappedOutput) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    // The builder's defaults already deny env, args, preopens, sockets and name lookup; say so
    // explicitly where a setting exists, so a change of defaults cannot open them.
    builder.stdout(stdout.clone()).stderr(stderr.clone()).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    builder.build()
}

/// Projects the sandbox out of a store's data.
pub trait HasSandbox: Send + 'static {
    /// The call's sandbox.
    fn sandbox(&mut self) -> &mut SandboxCtx;
}

struct IoTable;
impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links the granted WASI interfaces (see the module table) into `linker`.
pub fn add_to_linker<T: HasSandbox + WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    use wasmtime_wasi_io::bindings::wasi::io;

    let l = linker;
    io::error::add_to_linker::<T, IoTable>(l, |t| &mut t.sandbox().table)?;
    io::poll::add_to_linker::<T, IoTable>(l, |t| &mut t.sandbox().table)?;
    io::streams::add_to_linker::<T, IoTable>(l, |t| &mut t.sandbox().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;

    // The environment and the preopened directories are ours: empty, and every request audited.
    let mut environment = l.instance(&format!("wasi:cli/environment@{WASI_VERSION}"))?;
    environment.func_wrap("get-environment", |mut store, (): ()| {
        store.data_mut().sandbox().note("environment", "no variables are given to plugins");
        Ok((Vec::<(String, String)>::new(),))
    })?;
    environment.func_wrap("get-arguments", |mut store, (): ()| {
        store.data_mut().sandbox().note("arguments", "no arguments are given to plugins");
        Ok((Vec::<String>::new(),))
    })?;
    environment.func_wrap("initial-cwd", |mut store, (): ()| {
        store.data_mut().sandbox().note("cwd", "plugins have no working directory");
        Ok((None::<String>,))
    })?;
    let mut preopens = l.instance(&format!("wasi:filesystem/preopens@{WASI_VERSION}"))?;
    preopens.func_wrap("get-directories", |mut store, (): ()| {
        store.data_mut().sandbox().note("filesystem", "no directory is preopened for plugins");
        Ok((Vec::<(Resource<wasmtime_wasi::filesystem::Descriptor>, String)>::new(),))
    })?;
    Ok(())
}

/// A stdout/stderr sink that keeps the first `limit` bytes, counts the rest and never fails,
/// so a plugin that floods its output is bounded without being broken.
#[derive(Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
    limit: usize,
}

impl CappedOutput {
    /// A sink keeping at most `limit` bytes.
    pub fn new(limit: usize) -> CappedOutput {
        CappedOutput { inner: Arc::new(Mutex::new(Captured { limit, ..Captured::default() })) }
    }

    fn push(&self, bytes: &[u8]) {
        let mut captured = self.inner.lock().expect("output lock");
        captured.total += bytes.len() as u64;
        let room = captured.limit.saturating_sub(captured.kept.len());
        let take = room.min(bytes.len());
        captured.kept.extend_from_slice(&bytes[..take]);
    }

    /// The bytes kept.
    pub fn kept(&self) -> Vec<u8> {
        self.inner.lock().expect("output lock").kept.clone()
    }

    /// All bytes written, kept or not.
    pub fn total(&self) -> u64 {
        self.inner.lock().expect("output lock").total
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        let captured = self.inner.lock().expect("output lock");
        captured.total > captured.kept.len() as u64
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_counted() {
        let out = CappedOutput::new(4);
        out.push(b"abcdef");
        out.push(b"gh");
        assert_eq!(out.kept(), b"abcd");
        assert_eq!(out.total(), 8);
        assert!(out.truncated());
    }
}
