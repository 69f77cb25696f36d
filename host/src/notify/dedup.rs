//! Suppressing repeats: one problem is announced once per window, not every monitor cycle.

use std::collections::HashMap;

/// Remembers when each key was last let through.
#[derive(Debug)]
pub struct Dedup {
    window_ms: u64,
    sent: HashMap<String, u64>,
    last_prune_ms: u64,
}

impl Dedup {
    /// A window of `window_ms` milliseconds (0: nothing is suppressed).
    pub fn new(window_ms: u64) -> Dedup {
        Dedup { window_ms, sent: HashMap::new(), last_prune_ms: 0 }
    }

    /// Whether a notification with `key` at `now_ms` should be sent: true unless one with the same
    /// key was let through less than the window ago. A suppressed repeat does not extend the
    /// window, so a problem that persists is announced again once the window has passed.
    pub fn admit(&mut self, key: &str, now_ms: u64) -> bool {
        if self.window_ms == 0 {
            return true;
        }
        if now_ms.saturating_sub(self.last_prune_ms) >= self.window_ms {
            let window = self.window_ms;
            self.sent.retain(|_, at| now_ms.saturating_sub(*at) < window);
            self.last_prune_ms = now_ms;
        }
        match self.sent.get(key) {
            Some(&at) if now_ms.saturating_sub(at) < self.window_ms => false,
            _ => {
                self.sent.insert(key.to_owned(), now_ms);
                true
            }
        }
    }

    /// Forgets `key`, so its next notification is sent (used when it could not be queued).
    pub fn forget(&mut self, key: &str) {
        self.sent.remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_suppressed() {
        let mut dedup = Dedup::new(600_000);
        assert!(dedup.admit("ticket-opened:T-1", 1_000_000));
        assert!(!dedup.admit("ticket-opened:T-1", 1_000_001));
        assert!(dedup.admit("ticket-opened:T-2", 1_000_002), "another key is another problem");
        assert!(!dedup.admit("ticket-opened:T-1", 1_599_999));
        assert!(dedup.admit("ticket-opened:T-1", 1_600_000), "announced again once the window has passed");
        assert!(!dedup.admit("ticket-opened:T-1", 1_600_001));
    }

    #[test]
    fn suppression_does_not_extend_the_window() {
        let mut dedup = Dedup::new(1_000);
        assert!(dedup.admit("k", 0));
        for t in (100..1_000).step_by(100) {
            assert!(!dedup.admit("k", t));
        }
        assert!(dedup.admit("k", 1_000));
    }

    #[test]
    fn a_zero_window_suppresses_nothing_and_remembers_nothing() {
        let mut dedup = Dedup::new(0);
        assert!(dedup.admit("k", 5));
        assert!(dedup.admit("k", 5));
        assert!(dedup.is_empty());
    }

    #[test]
    fn forgotten_keys_pass_and_old_keys_are_pruned() {
        let mut dedup = Dedup::new(1_000);
        assert!(dedup.admit("k", 10));
        dedup.forget("k");
        assert!(dedup.admit("k", 11));
        for i in 0..100 {
            assert!(dedup.admit(&format!("old-{i}"), 20));
        }
        assert_eq!(dedup.len(), 101);
        assert!(dedup.admit("new", 5_000));
        assert_eq!(dedup.len(), 1, "keys older than the window are dropped");
    }

    #[test]
    fn a_clock_going_back_suppresses_rather_than_repeats() {
        let mut dedup = Dedup::new(1_000);
        assert!(dedup.admit("k", 10_000));
        assert!(!dedup.admit("k", 9_000));
    }
}
