//! Region growth, splits and merges.
//!
//! Written bytes grow a region (only a share of them: most writes overwrite or delete existing keys,
//! and MVCC GC reclaims the old versions), at each region heartbeat. A region past TiKV's
//! `region-split-size` (96 MiB) splits in two at its middle key once its leader notices, which here is
//! at its next heartbeat. Splits are right-derived as in TiKV: the region keeps its id and the upper
//! part, the new region takes the lower part with a new id and new peer ids on the same stores; both
//! get the version epoch bumped by the number of new regions. Merges extend the target over the
//! source's range and bump its version past both.
//!
//! The regions stay sorted by start key in a [`crate::regions::RegionList`], whose chunks keep a split
//! or merge to moving and re-indexing a few hundred regions, so a tick stays at O(regions / 600)
//! whether or not regions split.

use crate::model::{DownPeer, Key, Peer, Peers, Region};
use crate::operator::SplitPolicy;
use crate::sim::{MIB, Simulation};
use crate::workload::mix;

/// TiKV's default `coprocessor.region-split-size`, MiB.
pub const REGION_SPLIT_SIZE_MIB: u64 = 96;
/// Share of written bytes that is new data and grows the region.
pub const NET_WRITE_SHARE: f64 = 0.01;
/// Keys per MiB assumed for regions that report no keys.
const DEFAULT_KEYS_PER_MIB: u64 = 10_000;

/// Grows a region by the new data of its last heartbeat interval. Sub-MiB remainders are rounded up
/// with a probability equal to the remainder, so that small writers still grow on average without
/// keeping state per region.
pub(crate) fn grow(region: &mut Region, now_ms: u64) {
    let mib = region.written_bytes as f64 * NET_WRITE_SHARE / MIB as f64;
    let whole = mib.floor();
    let chance = (mix(region.id.rotate_left(7) ^ now_ms ^ 0x5EED) % 1_000_000) as f64 / 1_000_000.0;
    let added = whole as u64 + u64::from(chance < mib - whole);
    if added == 0 {
        return;
    }
    let per_mib =
        region.approximate_keys.checked_div(region.approximate_size).map_or(DEFAULT_KEYS_PER_MIB, |k| k.max(1));
    region.approximate_size += added;
    region.approximate_keys += added * per_mib;
}

/// A key strictly between `start` and `end` (`end` empty is unbounded), near the middle of the range
/// as byte strings read as fractions; `None` if no key fits between them.
pub fn key_between(start: &[u8], end: &[u8]) -> Option<Vec<u8>> {
    let width = start.len().max(end.len()) + 2;
    let pad = |k: &[u8], fill: u8| {
        let mut v = k.to_vec();
        v.resize(width, fill);
        v
    };
    let a = pad(start, 0);
    let b = if end.is_empty() { vec![0xFF; width] } else { pad(end, 0) };
    // (a + b) / 2 over big-endian digits: add from the right, then halve from the left.
    let mut sum = vec![0u16; width + 1];
    let mut carry = 0u16;
    for i in (0..width).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        sum[i + 1] = s & 0xFF;
        carry = s >> 8;
    }
    sum[0] = carry;
    let mut mid = Vec::with_capacity(width);
    let mut rem = sum[0];
    for digit in &sum[1..] {
        let cur = (rem << 8) | digit;
        mid.push((cur / 2) as u8);
        rem = cur % 2;
    }
    // Shorter keys read better; drop trailing zero bytes while the key stays above `start`.
    while mid.len() > 1 && mid.last() == Some(&0) && mid[..mid.len() - 1] > *start {
        mid.pop();
    }
    let inside = mid.as_slice() > start && (end.is_empty() || mid.as_slice() < end);
    inside.then_some(mid)
}

impl Simulation {
    /// Splits the regions of this tick's heartbeat slot that outgrew the split size. Regions under an
    /// operator wait for their next heartbeat, so that a running move is never cut in two.
    pub(crate) fn split_oversized(&mut self) {
        let limit = self.telemetry.region_split_size_mib;
        let mut plans: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for &id in &self.heartbeat_slots[self.heartbeat_slot()] {
            let Some(region) = self.regions.by_id(id) else { continue };
            if region.approximate_size <= limit {
                continue;
            }
            let Some(i) = self.regions.position(id) else { continue };
            let leader_alive = region.leader_store().and_then(|s| self.store(s)).is_some_and(|s| s.alive);
            if !leader_alive || self.operator_of(region.id).is_some() {
                continue;
            }
            if let Some(key) = key_between(&region.start_key, &region.end_key) {
                plans.push((i, vec![key]));
            }
        }
        if !plans.is_empty() {
            self.apply_splits(plans);
        }
    }

    /// Splits regions, each at its sorted keys strictly inside it; returns the new regions' ids in
    /// key order.
    pub(crate) fn apply_splits(&mut self, mut plans: Vec<(usize, Vec<Vec<u8>>)>) -> Vec<u64> {
        plans.sort_by_key(|p| p.0);
        let mut inserts: Vec<(usize, Vec<Region>)> = Vec::with_capacity(plans.len());
        for (idx, keys) in plans {
            let parts = self.carve(idx, &keys);
            if !parts.is_empty() {
                inserts.push((idx, parts));
            }
        }
        let new_ids: Vec<u64> = inserts.iter().flat_map(|(_, p)| p.iter().map(|r| r.id)).collect();
        self.regions.insert_groups(inserts);
        // TiKV reports a new region at once, then every heartbeat interval.
        let next = (self.heartbeat_slot() + 1) % self.heartbeat_slots.len();
        self.heartbeat_slots[next].extend(&new_ids);
        new_ids
    }

    /// Cuts the region at `idx` at `keys`: it keeps the last part; the returned regions are the lower
    /// parts, in key order, not yet in the list. Keys outside the region or on its start are ignored.
    fn carve(&mut self, idx: usize, keys: &[Vec<u8>]) -> Vec<Region> {
        let region = &self.regions[idx];
        let mut cuts: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| {
                k.as_slice() > region.start_key.as_slice()
                    && (region.end_key.is_empty() || k.as_slice() < region.end_key.as_slice())
            })
            .cloned()
            .collect();
        cuts.sort();
        cuts.dedup();
        if cuts.is_empty() {
            return Vec::new();
        }
        let m = cuts.len() as u64;
        let parts = m + 1;
        let peer_count = region.peers.len() as u64;
        let mut ids = self.next_id..;
        self.next_id += m * (1 + peer_count);
        let region = &mut self.regions[idx];
        region.version += m;
        let share = |v: u64| v / parts;
        let mut lower = Vec::with_capacity(cuts.len());
        let mut start = region.start_key.clone();
        for cut in &cuts {
            let id = ids.next().unwrap_or_default();
            let cut = Key::from(cut);
            let mut map = Vec::with_capacity(region.peers.len());
            let peers: Peers = region
                .peers
                .iter()
                .map(|p| {
                    let peer = Peer { id: ids.next().unwrap_or_default(), ..*p };
                    map.push((p.id, peer));
                    peer
                })
                .collect();
            let remap = |old: &Peer| map.iter().find(|(id, _)| *id == old.id).map(|(_, p)| *p).unwrap_or(*old);
            lower.push(Region {
                id,
                start_key: std::mem::replace(&mut start, cut.clone()),
                end_key: cut.clone(),
                conf_ver: region.conf_ver,
                version: region.version,
                leader: region.leader_peer().map(remap).map(|p| p.id),
                down_peers: region
                    .down_peers
                    .iter()
                    .map(|d| DownPeer { peer: remap(&d.peer), down_seconds: d.down_seconds })
                    .collect(),
                pending_peers: region.pending_peers.iter().map(remap).collect(),
                peers,
                approximate_size: share(region.approximate_size),
                approximate_keys: share(region.approximate_keys),
                written_bytes: share(region.written_bytes),
                read_bytes: share(region.read_bytes),
                written_keys: share(region.written_keys),
                read_keys: share(region.read_keys),
                write_rate: share(region.write_rate),
                read_rate: share(region.read_rate),
                hot_write_degree: region.hot_write_degree,
                hot_read_degree: region.hot_read_degree,
                last_heartbeat_ms: region.last_heartbeat_ms,
            });
        }
        region.start_key = start;
        // The remaining part keeps what the lower parts did not take, so totals are preserved.
        let keep = |v: u64| v - share(v) * m;
        region.approximate_size = keep(region.approximate_size);
        region.approximate_keys = keep(region.approximate_keys);
        region.written_bytes = keep(region.written_bytes);
        region.read_bytes = keep(region.read_bytes);
        region.written_keys = keep(region.written_keys);
        region.read_keys = keep(region.read_keys);
        region.write_rate = keep(region.write_rate);
        region.read_rate = keep(region.read_rate);
        lower
    }

    /// Runs a split operator's step: the middle key for `scan`/`approximate`, the given keys for `usekey`.
    pub(crate) fn run_split_step(&mut self, region_id: u64, policy: SplitPolicy, keys: Vec<Vec<u8>>) {
        let Some(idx) = self.regions.position(region_id) else { return };
        let keys = match policy {
            SplitPolicy::UseKey => keys,
            SplitPolicy::Scan | SplitPolicy::Approximate => {
                let r = &self.regions[idx];
                key_between(&r.start_key, &r.end_key).into_iter().collect()
            }
        };
        self.apply_splits(vec![(idx, keys)]);
    }

    /// Merges region `source` into the adjacent region `target`; false if either is gone or they no
    /// longer touch.
    pub(crate) fn merge_regions(&mut self, source: u64, target: u64) -> bool {
        let (Some(si), Some(ti)) = (self.regions.position(source), self.regions.position(target)) else {
            return false;
        };
        let (s, t) = (&self.regions[si], &self.regions[ti]);
        let below = !s.end_key.is_empty() && s.end_key == t.start_key;
        let above = !t.end_key.is_empty() && t.end_key == s.start_key;
        if !below && !above {
            return false;
        }
        let src = self.regions.remove(si);
        let ti = if ti > si { ti - 1 } else { ti };
        let t = &mut self.regions[ti];
        if below {
            t.start_key = src.start_key;
        } else {
            t.end_key = src.end_key;
        }
        t.version = t.version.max(src.version) + 1;
        t.approximate_size += src.approximate_size;
        t.approximate_keys += src.approximate_keys;
        t.write_rate += src.write_rate;
        t.read_rate += src.read_rate;
        true
    }

    /// `POST /regions/split`: splits the regions containing `keys` at them. Keys on a region boundary
    /// are already split. Returns PD's processed percentage and the new regions' ids.
    pub fn split_at_keys(&mut self, keys: &[Vec<u8>]) -> (u64, Vec<u64>) {
        if keys.is_empty() {
            return (100, Vec::new());
        }
        let mut plans: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for key in keys {
            let idx = self.regions.partition_point(|r| r.start_key.as_slice() <= key.as_slice());
            let Some(idx) = idx.checked_sub(1) else { continue };
            if self.regions[idx].start_key == *key {
                continue;
            }
            match plans.iter_mut().find(|(i, _)| *i == idx) {
                Some((_, ks)) => ks.push(key.clone()),
                None => plans.push((idx, vec![key.clone()])),
            }
        }
        let ids = self.apply_splits(plans);
        self.wake_patrol();
        (100, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_between_bounds() {
        let a = crate::units::hex_upper(&[0x74, 0x80, 0x01]);
        assert_eq!(a, "748001");
        let mid = key_between(b"t\x80\x01", b"t\x80\x02").unwrap();
        assert!(mid.as_slice() > b"t\x80\x01".as_slice() && mid.as_slice() < b"t\x80\x02".as_slice());
        let mid = key_between(b"", b"t").unwrap();
        assert!(mid.as_slice() > b"".as_slice() && mid.as_slice() < b"t".as_slice());
        let mid = key_between(b"t", b"").unwrap();
        assert!(mid.as_slice() > b"t".as_slice());
        assert_eq!(key_between(b"t", b"t\x00"), None);
        assert_eq!(key_between(b"", b""), Some(vec![0x7F, 0xFF]));
    }
}
