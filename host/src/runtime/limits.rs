//! The runtime's limits: every one a setting with a safe default (DESIGN rule 6).
//!
//! | setting (`[runtime]`)       | default  | what it bounds                                         |
//! |-----------------------------|----------|--------------------------------------------------------|
//! | `call_deadline_ms`          | 10000    | wall-clock time of one plugin call, host calls included |
//! | `memory_limit_mib`          | 128      | linear memory of one plugin instance                   |
//! | `output_limit_kib`          | 64       | stdout and stderr kept per call (the rest is counted and dropped) |
//! | `log_lines_per_call`        | 200      | `log.emit` lines kept per call                          |
//! | `http_timeout_ms`           | 5000     | one outbound request, body included                    |
//! | `http_response_limit_mib`   | 16       | one outbound response body                             |
//! | `max_concurrent_instances`  | 64       | plugin instances alive at once (pooling allocator slots) |
//!
//! A plugin may ask for a shorter HTTP timeout per request, never a longer one. Per-plugin
//! overrides of `call_deadline_ms` and `memory_limit_mib` live in `[plugins.NAME]`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The runtime's limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeLimits {
    /// Wall-clock deadline of one plugin call, in milliseconds.
    pub call_deadline_ms: u64,
    /// Linear-memory cap of one plugin instance, in MiB.
    pub memory_limit_mib: u64,
    /// Captured stdout and stderr kept per call, in KiB each.
    pub output_limit_kib: u64,
    /// Log lines a plugin may emit per call.
    pub log_lines_per_call: u32,
    /// Timeout of one outbound HTTP request, in milliseconds.
    pub http_timeout_ms: u64,
    /// Cap on one outbound HTTP response body, in MiB.
    pub http_response_limit_mib: u64,
    /// Plugin instances that may be alive at the same time.
    pub max_concurrent_instances: u32,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            call_deadline_ms: 10_000,
            memory_limit_mib: 128,
            output_limit_kib: 64,
            log_lines_per_call: 200,
            http_timeout_ms: 5_000,
            http_response_limit_mib: 16,
            max_concurrent_instances: 64,
        }
    }
}

/// The largest memory cap a plugin may be given, in MiB (the pooling allocator reserves
/// address space for it in every slot).
pub const MAX_MEMORY_LIMIT_MIB: u64 = 4096;

impl RuntimeLimits {
    /// Checks that every limit is in a sensible range; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.call_deadline_ms == 0 || self.call_deadline_ms > 3_600_000 {
            problems.push("runtime.call_deadline_ms must be between 1 and 3600000".to_owned());
        }
        if self.memory_limit_mib == 0 || self.memory_limit_mib > MAX_MEMORY_LIMIT_MIB {
            problems.push(format!("runtime.memory_limit_mib must be between 1 and {MAX_MEMORY_LIMIT_MIB}"));
        }
        if self.output_limit_kib > 64 * 1024 {
            problems.push("runtime.output_limit_kib must be at most 65536".to_owned());
        }
        if self.http_timeout_ms == 0 {
            problems.push("runtime.http_timeout_ms must be at least 1".to_owned());
        }
        if self.http_response_limit_mib == 0 || self.http_response_limit_mib > 1024 {
            problems.push("runtime.http_response_limit_mib must be between 1 and 1024".to_owned());
        }
        if self.max_concurrent_instances == 0 || self.max_concurrent_instances > 10_000 {
            problems.push("runtime.max_concurrent_instances must be between 1 and 10000".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The call deadline as a duration.
    pub fn call_deadline(&self) -> Duration {
        Duration::from_millis(self.call_deadline_ms)
    }

    /// The HTTP timeout as a duration.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }

    /// The response cap in bytes.
    pub fn http_response_limit_bytes(&self) -> u64 {
        self.http_response_limit_mib * 1024 * 1024
    }

    /// The output cap in bytes.
    pub fn output_limit_bytes(&self) -> usize {
        (self.output_limit_kib * 1024) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RuntimeLimits::default().validate().unwrap();
    }

    #[test]
    fn every_bad_limit_is_named() {
        let limits = RuntimeLimits {
            call_deadline_ms: 0,
            memory_limit_mib: 0,
            http_response_limit_mib: 0,
            ..RuntimeLimits::default()
        };
        let error = limits.validate().unwrap_err();
        assert!(error.contains("call_deadline_ms"), "{error}");
        assert!(error.contains("memory_limit_mib"), "{error}");
        assert!(error.contains("http_response_limit_mib"), "{error}");
    }
}
