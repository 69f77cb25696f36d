//! The `operator:plugin/log` capability and the forwarding of captured stdout/stderr: every
//! line a plugin emits reaches the host's log under the plugin's name, bounded per call.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::bindings::wit_log::{self, Level};

/// The longest log line kept, in bytes (longer lines are cut).
const MAX_LINE: usize = 4096;

/// The log capability of one call.
pub struct PluginLog {
    plugin: Arc<str>,
    remaining: u32,
    dropped: u32,
}

impl PluginLog {
    /// A log for `plugin` that keeps at most `max_lines` lines.
    pub fn new(plugin: Arc<str>, max_lines: u32) -> PluginLog {
        PluginLog { plugin, remaining: max_lines, dropped: 0 }
    }

    /// Lines dropped because the per-call cap was reached.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_LINE {
        return text;
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl wit_log::Host for PluginLog {
    fn emit(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.remaining == 0 {
            self.dropped += 1;
            return Ok(());
        }
        self.remaining -= 1;
        let plugin = &*self.plugin;
        let message = cut(&message);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

/// Projects a [`PluginLog`] out of a store's data.
pub trait HasLog: Send + 'static {
    /// The call's log.
    fn log(&mut self) -> &mut PluginLog;
}

struct LogData;
impl HasData for LogData {
    type Data<'a> = &'a mut PluginLog;
}

/// Links `operator:plugin/log`.
pub fn add_to_linker<T: HasLog>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit_log::add_to_linker::<T, LogData>(linker, |t| t.log())
}

/// Sends captured stdout or stderr to the log, a line at a time, under the plugin's name.
pub fn forward_output(plugin: &str, stream: &str, bytes: &[u8], total: u64) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(target: "plugin", plugin, stream, "{}", cut(line));
    }
    if total > bytes.len() as u64 {
        tracing::warn!(
            target: "plugin",
            plugin,
            stream,
            "{stream} truncated: the plugin wrote {total} bytes, {} were kept",
            bytes.len()
        );
    }
}
