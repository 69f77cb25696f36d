//! The regions of the cluster in key order, as PD's region tree keeps them.
//!
//! A million regions do not fit one vector well: a split inserts a region in the middle, which
//! would move half the list and re-index every region after it. [`RegionList`] keeps them in
//! chunks of a few hundred, in key order; a split or merge moves regions within one chunk only (a
//! chunk grown past twice its size is cut in two), and the id index records a region's chunk and
//! offset, so only that chunk's regions are re-indexed. Positions (`list[i]`) are still the
//! regions' ranks in key order, found by a binary search over the chunks' first positions.
//!
//! Beside each region the list keeps its [`Facts`]: the 40 bytes that PD's region checks, top-N
//! lists and per-store counts read (peers' stores, voters, leader, size, keys, bytes written and
//! read, down/pending/learner flags), and it keeps each store's [`StoreTotals`] (PD's leader and
//! region counts and sizes, and the store's flow). Every
//! mutable access to a region marks it: its contribution to the totals is withdrawn while it is
//! still unchanged, and [`RegionList::refresh`] later reads it again. A full mutable iteration marks
//! everything, and the next refresh recounts. Once refreshed, a check over a million regions reads
//! 40 MB of facts rather than every region, and a store's counts are a lookup.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Index, IndexMut};

use serde::{Serialize, Serializer};

use crate::model::{PeerRole, Region};

/// Regions per chunk when a chunk is filled or cut.
const CHUNK: usize = 512;
/// A chunk past this many regions is cut in two.
const MAX_CHUNK: usize = 2 * CHUNK;

/// Hashes ids with SplitMix64's finaliser: cheap, deterministic, and spreading ids that come in
/// arithmetic progressions (a region and its peers take consecutive ids) over the low bits the
/// table picks buckets by.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = crate::workload::mix(self.0.rotate_left(23) ^ n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by ids, hashed with [`IdHasher`].
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Where a region is: its chunk's serial number and its offset in the chunk.
#[derive(Debug, Clone, Copy)]
struct Slot {
    serial: u32,
    offset: u32,
}

/// PD's counts over the regions with a peer on one store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Regions led by the store.
    pub leader_count: u64,
    /// Sum of the sizes (MiB) of those regions.
    pub leader_size: u64,
    /// Peers on the store.
    pub region_count: u64,
    /// Sum of the sizes (MiB) of the regions with a peer on the store.
    pub region_size: u64,
    /// Learner peers on the store.
    pub learner_count: u64,
    /// Pending peers on the store.
    pub pending_peer_count: u64,
    /// Bytes written at the last heartbeat of the regions with a peer on the store (every peer
    /// applies the writes).
    pub written_bytes: u64,
    /// Bytes read at the last heartbeat of the regions the store leads (the leader serves reads).
    pub read_bytes: u64,
}

/// Each store's totals, counted over `regions` (what [`RegionList::store_totals`] keeps up to date).
pub fn count_store_totals<'a>(regions: impl Iterator<Item = &'a Region>) -> IdMap<StoreTotals> {
    let mut stores = IdMap::default();
    for region in regions {
        contribute(&mut stores, region, true);
    }
    stores
}

/// Adds (or withdraws) a region's share of the per-store totals.
fn contribute(stores: &mut IdMap<StoreTotals>, region: &Region, add: bool) {
    let apply = |v: &mut u64, d: u64| *v = if add { v.wrapping_add(d) } else { v.wrapping_sub(d) };
    let size = region.approximate_size;
    for peer in region.peers.iter() {
        let t = stores.entry(peer.store_id).or_default();
        apply(&mut t.region_count, 1);
        apply(&mut t.region_size, size);
        apply(&mut t.written_bytes, region.written_bytes);
        if peer.role == PeerRole::Learner {
            apply(&mut t.learner_count, 1);
        }
        if region.leader == Some(peer.id) {
            apply(&mut t.leader_count, 1);
            apply(&mut t.leader_size, size);
            apply(&mut t.read_bytes, region.read_bytes);
        }
    }
    for peer in &region.pending_peers {
        apply(&mut stores.entry(peer.store_id).or_default().pending_peer_count, 1);
    }
}

const DIRTY: u8 = 1;
const DOWN: u8 = 2;
const PENDING: u8 = 4;
const LEARNER: u8 = 8;
/// More than three peers, or a store id past `u32`: the facts do not name every store.
const PARTIAL: u8 = 16;
const NO_LEADER: u8 = u8::MAX;

/// What the region checks and the store totals read of a region, kept beside it (see the module
/// documentation). Sizes and key counts saturate at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    written: u64,
    read: u64,
    stores: [u32; 3],
    size: u32,
    keys: u32,
    peers: u8,
    voters: u8,
    leader: u8,
    flags: u8,
}

impl Facts {
    /// The facts of `region`.
    pub fn of(region: &Region) -> Facts {
        let saturate = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let mut facts = Facts {
            written: region.written_bytes,
            read: region.read_bytes,
            stores: [0; 3],
            size: saturate(region.approximate_size),
            keys: saturate(region.approximate_keys),
            peers: u8::try_from(region.peers.len()).unwrap_or(u8::MAX),
            voters: u8::try_from(region.voter_count()).unwrap_or(u8::MAX),
            leader: NO_LEADER,
            flags: 0,
        };
        if region.peers.len() > facts.stores.len() {
            facts.flags |= PARTIAL;
        }
        for (i, peer) in region.peers.iter().take(facts.stores.len()).enumerate() {
            match u32::try_from(peer.store_id) {
                Ok(id) => facts.stores[i] = id,
                Err(_) => facts.flags |= PARTIAL,
            }
            if region.leader == Some(peer.id) {
                facts.leader = i as u8;
            }
            if peer.role == PeerRole::Learner {
                facts.flags |= LEARNER;
            }
        }
        if region.peers.iter().skip(facts.stores.len()).any(|p| p.role == PeerRole::Learner) {
            facts.flags |= LEARNER;
        }
        if !region.down_peers.is_empty() {
            facts.flags |= DOWN;
        }
        if !region.pending_peers.is_empty() {
            facts.flags |= PENDING;
        }
        facts
    }

    fn dirty(&self) -> bool {
        self.flags & DIRTY != 0
    }

    /// Number of peers.
    pub fn peers(&self) -> usize {
        usize::from(self.peers)
    }

    /// Number of voters.
    pub fn voters(&self) -> usize {
        usize::from(self.voters)
    }

    /// Approximate size, MiB.
    pub fn size(&self) -> u64 {
        u64::from(self.size)
    }

    /// Approximate number of keys.
    pub fn keys(&self) -> u64 {
        u64::from(self.keys)
    }

    /// Bytes written at the last heartbeat.
    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    /// Bytes read at the last heartbeat.
    pub fn read_bytes(&self) -> u64 {
        self.read
    }

    /// Whether the leader reported down peers.
    pub fn has_down(&self) -> bool {
        self.flags & DOWN != 0
    }

    /// Whether the leader reported pending peers.
    pub fn has_pending(&self) -> bool {
        self.flags & PENDING != 0
    }

    /// Whether a peer is a learner.
    pub fn has_learner(&self) -> bool {
        self.flags & LEARNER != 0
    }

    /// The stores of the region's peers, or `None` when the facts do not name them all (more than
    /// three peers): then look at the region.
    pub fn stores(&self) -> Option<impl Iterator<Item = u64> + '_> {
        (self.flags & PARTIAL == 0).then(|| self.stores[..self.peers()].iter().map(|&s| u64::from(s)))
    }

    /// The leader's store, `Some(None)` without a leader, `None` when the facts cannot tell.
    pub fn leader_store(&self) -> Option<Option<u64>> {
        if self.leader == NO_LEADER {
            return (self.flags & PARTIAL == 0).then_some(None);
        }
        self.stores.get(usize::from(self.leader)).map(|&s| Some(u64::from(s)))
    }
}

/// What [`RegionList::refresh`] has to catch up on.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// Regions marked since the last refresh (their contribution already withdrawn).
    dirty: Vec<u64>,
    /// Everything is to be recounted.
    all: bool,
    stores: IdMap<StoreTotals>,
}

/// Regions in key order, in chunks, with an index by id, facts and store totals. See the module
/// documentation.
#[derive(Clone, Default)]
pub struct RegionList {
    chunks: Vec<Vec<Region>>,
    /// The facts of each region, parallel to `chunks`.
    facts: Vec<Vec<Facts>>,
    tally: Tally,
    /// Serial number of each chunk, parallel to `chunks`; serials are never reused.
    serials: Vec<u32>,
    /// Position in `chunks` of each serial (stale for removed chunks).
    positions: Vec<u32>,
    /// Rank of each chunk's first region, parallel to `chunks`.
    starts: Vec<usize>,
    len: usize,
    index: IdMap<Slot>,
}

/// Iterator over the regions in key order.
pub type Iter<'a> = std::iter::Flatten<std::slice::Iter<'a, Vec<Region>>>;
/// Mutable iterator over the regions in key order.
pub type IterMut<'a> = std::iter::Flatten<std::slice::IterMut<'a, Vec<Region>>>;

impl RegionList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `n` regions in its index.
    pub fn with_capacity(n: usize) -> Self {
        RegionList { index: IdMap::with_capacity_and_hasher(n, Default::default()), ..Self::default() }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunk position and offset of rank `i < len`.
    fn locate(&self, i: usize) -> (usize, usize) {
        let pos = self.starts.partition_point(|&s| s <= i) - 1;
        (pos, i - self.starts[pos])
    }

    /// The region at rank `i` in key order.
    pub fn get(&self, i: usize) -> Option<&Region> {
        (i < self.len).then(|| {
            let (pos, off) = self.locate(i);
            &self.chunks[pos][off]
        })
    }

    /// The region at rank `i` in key order, mutable (marked for the next refresh).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Region> {
        if i >= self.len {
            return None;
        }
        let (pos, off) = self.locate(i);
        self.mark(pos, off);
        Some(&mut self.chunks[pos][off])
    }

    /// Withdraws the contribution of the region at (`pos`, `off`), which is about to change.
    fn mark(&mut self, pos: usize, off: usize) {
        let facts = &mut self.facts[pos][off];
        if self.tally.all || facts.dirty() {
            return;
        }
        facts.flags |= DIRTY;
        let region = &self.chunks[pos][off];
        contribute(&mut self.tally.stores, region, false);
        self.tally.dirty.push(region.id);
    }

    /// Whether the facts and store totals are up to date.
    pub fn is_fresh(&self) -> bool {
        !self.tally.all && self.tally.dirty.is_empty()
    }

    /// Brings the facts and store totals up to date with the regions changed since the last refresh.
    pub fn refresh(&mut self) {
        let tally = &mut self.tally;
        if tally.all {
            tally.stores.clear();
            tally.dirty.clear();
            for (chunk, facts) in self.chunks.iter().zip(&mut self.facts) {
                for (region, f) in chunk.iter().zip(facts.iter_mut()) {
                    *f = Facts::of(region);
                    contribute(&mut tally.stores, region, true);
                }
            }
            tally.all = false;
            return;
        }
        for id in std::mem::take(&mut tally.dirty) {
            let Some(slot) = self.index.get(&id) else { continue };
            let (pos, off) = (self.positions[slot.serial as usize] as usize, slot.offset as usize);
            let facts = &mut self.facts[pos][off];
            if facts.dirty() {
                let region = &self.chunks[pos][off];
                *facts = Facts::of(region);
                contribute(&mut tally.stores, region, true);
            }
        }
    }

    /// Each store's totals, when the list is fresh (see [`RegionList::refresh`]).
    pub fn store_totals(&self) -> Option<&IdMap<StoreTotals>> {
        self.is_fresh().then_some(&self.tally.stores)
    }

    /// The regions in key order with their facts, when the list is fresh.
    pub fn with_facts(&self) -> Option<impl Iterator<Item = (&Facts, &Region)> + '_> {
        self.is_fresh().then(|| self.facts.iter().flatten().zip(self.iter()))
    }

    /// The first region in key order.
    pub fn first(&self) -> Option<&Region> {
        self.chunks.first().and_then(|c| c.first())
    }

    /// The last region in key order.
    pub fn last(&self) -> Option<&Region> {
        self.chunks.last().and_then(|c| c.last())
    }

    fn slot(&self, id: u64) -> Option<(usize, usize)> {
        let slot = self.index.get(&id)?;
        Some((self.positions[slot.serial as usize] as usize, slot.offset as usize))
    }

    /// The region with id `id`.
    pub fn by_id(&self, id: u64) -> Option<&Region> {
        let (pos, off) = self.slot(id)?;
        self.chunks.get(pos)?.get(off)
    }

    /// The region with id `id`, mutable (marked for the next refresh).
    pub fn by_id_mut(&mut self, id: u64) -> Option<&mut Region> {
        let (pos, off) = self.slot(id)?;
        self.mark(pos, off);
        self.chunks.get_mut(pos)?.get_mut(off)
    }

    /// Rank in key order of the region with id `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        let (pos, off) = self.slot(id)?;
        Some(self.starts[pos] + off)
    }

    /// Whether a region with id `id` exists.
    pub fn contains(&self, id: u64) -> bool {
        self.index.contains_key(&id)
    }

    /// The regions in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.chunks.iter().flatten()
    }

    /// The regions in key order, mutable; the next refresh recounts everything.
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        self.tally.all = true;
        self.chunks.iter_mut().flatten()
    }

    /// The regions from rank `i` on, in key order.
    pub fn iter_from(&self, i: usize) -> impl Iterator<Item = &Region> + '_ {
        let (pos, off) = if i < self.len { self.locate(i) } else { (self.chunks.len(), 0) };
        let head = self.chunks.get(pos).map_or(&[][..], |c| &c[off..]);
        head.iter().chain(self.chunks.iter().skip(pos + 1).flatten())
    }

    /// The regions from rank `i` on, in key order, mutable; the next refresh recounts everything.
    pub fn iter_mut_from(&mut self, i: usize) -> impl Iterator<Item = &mut Region> + '_ {
        self.tally.all = true;
        let (pos, off) = if i < self.len { self.locate(i) } else { (self.chunks.len(), 0) };
        let mut rest = self.chunks.iter_mut().skip(pos);
        let head = rest.next().map_or(&mut [][..], |c| &mut c[off..]);
        head.iter_mut().chain(rest.flatten())
    }

    /// The rank of the first region for which `pred` is false, `pred` being true for a prefix of the
    /// regions in key order (as [`slice::partition_point`]).
    pub fn partition_point(&self, pred: impl Fn(&Region) -> bool) -> usize {
        // The first chunk whose last region fails holds the partition point.
        let pos = self.chunks.partition_point(|c| c.last().is_some_and(&pred));
        match self.chunks.get(pos) {
            Some(chunk) => self.starts[pos] + chunk.partition_point(&pred),
            None => self.len,
        }
    }

    /// Appends a region that sorts after every region in the list.
    pub fn push(&mut self, region: Region) {
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK) {
            let serial = self.positions.len() as u32;
            self.positions.push(self.chunks.len() as u32);
            self.serials.push(serial);
            self.starts.push(self.len);
            self.chunks.push(Vec::with_capacity(CHUNK));
            self.facts.push(Vec::with_capacity(CHUNK));
        }
        let pos = self.chunks.len() - 1;
        let chunk = &mut self.chunks[pos];
        self.index.insert(region.id, Slot { serial: self.serials[pos], offset: chunk.len() as u32 });
        let mut facts = Facts::of(&region);
        if self.tally.all {
            facts.flags |= DIRTY;
        } else {
            contribute(&mut self.tally.stores, &region, true);
        }
        self.facts[pos].push(facts);
        chunk.push(region);
        self.len += 1;
    }

    /// Inserts regions: each group goes, in order, before the region at its rank (ranks as before
    /// any insertion; the list's length appends). Groups must be in ascending rank order.
    pub(crate) fn insert_groups(&mut self, groups: Vec<(usize, Vec<Region>)>) {
        for (rank, regions) in groups.into_iter().rev() {
            if regions.is_empty() {
                continue;
            }
            if self.chunks.is_empty() {
                for region in regions {
                    self.push(region);
                }
                continue;
            }
            let (pos, off) = if rank < self.len {
                self.locate(rank)
            } else {
                (self.chunks.len() - 1, self.chunks[self.chunks.len() - 1].len())
            };
            let added = regions.len();
            if !self.tally.all {
                self.tally.dirty.extend(regions.iter().map(|r| r.id));
            }
            // New regions count once refreshed.
            let facts: Vec<Facts> = regions.iter().map(|r| Facts { flags: DIRTY, ..Facts::of(r) }).collect();
            let chunk = &mut self.chunks[pos];
            if chunk.capacity() < chunk.len() + added {
                // Grow by a little, not by doubling: most chunks never see a split.
                chunk.reserve_exact(added.max(CHUNK / 8));
                self.facts[pos].reserve_exact(added.max(CHUNK / 8));
            }
            chunk.splice(off..off, regions);
            self.facts[pos].splice(off..off, facts);
            self.len += added;
            self.reindex(pos, off);
            let mut pos = pos;
            while self.chunks[pos].len() > MAX_CHUNK {
                self.cut(pos);
                pos += 1;
            }
            self.recount();
        }
    }

    /// Removes and returns the region at rank `i`.
    pub(crate) fn remove(&mut self, i: usize) -> Region {
        assert!(i < self.len, "region rank {i} out of range ({} regions)", self.len);
        let (pos, off) = self.locate(i);
        let region = self.chunks[pos].remove(off);
        let facts = self.facts[pos].remove(off);
        if !self.tally.all && !facts.dirty() {
            contribute(&mut self.tally.stores, &region, false);
        }
        self.index.remove(&region.id);
        self.len -= 1;
        if self.chunks[pos].is_empty() {
            self.chunks.remove(pos);
            self.facts.remove(pos);
            self.serials.remove(pos);
            self.starts.remove(pos);
            self.renumber(pos);
        } else {
            self.reindex(pos, off);
        }
        self.recount();
        region
    }

    /// Cuts the chunk at `pos` after its first [`CHUNK`] regions.
    fn cut(&mut self, pos: usize) {
        let mut upper = self.chunks[pos].split_off(CHUNK);
        upper.reserve_exact(CHUNK / 8);
        self.chunks[pos].shrink_to(CHUNK + CHUNK / 8);
        let mut upper_facts = self.facts[pos].split_off(CHUNK);
        upper_facts.reserve_exact(CHUNK / 8);
        self.facts[pos].shrink_to(CHUNK + CHUNK / 8);
        self.facts.insert(pos + 1, upper_facts);
        let serial = self.positions.len() as u32;
        self.positions.push(0);
        self.chunks.insert(pos + 1, upper);
        self.serials.insert(pos + 1, serial);
        self.starts.insert(pos + 1, 0);
        self.renumber(pos + 1);
        self.reindex(pos + 1, 0);
    }

    /// Records the positions of the chunks from `pos` on.
    fn renumber(&mut self, pos: usize) {
        for p in pos..self.chunks.len() {
            self.positions[self.serials[p] as usize] = p as u32;
        }
    }

    /// Re-indexes the regions of the chunk at `pos` from offset `from` on.
    fn reindex(&mut self, pos: usize, from: usize) {
        let serial = self.serials[pos];
        for (off, region) in self.chunks[pos].iter().enumerate().skip(from) {
            self.index.insert(region.id, Slot { serial, offset: off as u32 });
        }
    }

    /// Recomputes the chunks' first ranks.
    fn recount(&mut self) {
        let mut rank = 0;
        for (start, chunk) in self.starts.iter_mut().zip(&self.chunks) {
            *start = rank;
            rank += chunk.len();
        }
        debug_assert_eq!(rank, self.len);
    }
}

impl Index<usize> for RegionList {
    type Output = Region;

    fn index(&self, i: usize) -> &Region {
        match self.get(i) {
            Some(region) => region,
            None => panic!("region rank {i} out of range ({} regions)", self.len),
        }
    }
}

impl IndexMut<usize> for RegionList {
    /// The region at rank `i`, marked for the next refresh.
    fn index_mut(&mut self, i: usize) -> &mut Region {
        let len = self.len;
        match self.get_mut(i) {
            Some(region) => region,
            None => panic!("region rank {i} out of range ({len} regions)"),
        }
    }
}

impl<'a> IntoIterator for &'a RegionList {
    type Item = &'a Region;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut RegionList {
    type Item = &'a mut Region;
    type IntoIter = IterMut<'a>;

    fn into_iter(self) -> IterMut<'a> {
        self.iter_mut()
    }
}

impl fmt::Debug for RegionList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for RegionList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DownPeer, Key, Peer, Peers};

    fn region(id: u64) -> Region {
        let peers: Peers =
            (0..3).map(|k| Peer { id: id * 10 + k, store_id: (id + k) % 7 + 1, role: PeerRole::Voter }).collect();
        Region {
            id,
            leader: Some(peers[0].id),
            peers,
            approximate_size: id % 97,
            down_peers: Vec::new(),
            pending_peers: Vec::new(),
            start_key: Key::from(&id.to_be_bytes()[..]),
            end_key: Key::EMPTY,
            conf_ver: 0,
            version: 0,
            approximate_keys: 0,
            written_bytes: 0,
            read_bytes: 0,
            written_keys: 0,
            read_keys: 0,
            write_rate: 0,
            read_rate: 0,
            hot_write_degree: 0,
            hot_read_degree: 0,
            last_heartbeat_ms: 0,
        }
    }

    /// The totals and facts a full recount gives.
    fn recounted(list: &RegionList) -> (Vec<(u64, StoreTotals)>, Vec<Facts>) {
        let mut stores: Vec<(u64, StoreTotals)> =
            count_store_totals(list.iter()).into_iter().filter(|(_, t)| *t != StoreTotals::default()).collect();
        stores.sort_by_key(|s| s.0);
        (stores, list.iter().map(Facts::of).collect())
    }

    fn kept(list: &RegionList) -> (Vec<(u64, StoreTotals)>, Vec<Facts>) {
        let mut stores: Vec<(u64, StoreTotals)> = list
            .store_totals()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, *v))
            .filter(|(_, t)| *t != StoreTotals::default())
            .collect();
        stores.sort_by_key(|s| s.0);
        (stores, list.with_facts().unwrap().map(|(f, _)| *f).collect())
    }

    fn ids(list: &RegionList) -> Vec<u64> {
        list.iter().map(|r| r.id).collect()
    }

    fn check(list: &RegionList) {
        for (i, r) in list.iter().enumerate() {
            assert_eq!(list.position(r.id), Some(i));
            assert_eq!(list[i].id, r.id);
            assert_eq!(list.by_id(r.id).map(|x| x.id), Some(r.id));
        }
        assert_eq!(list.iter().count(), list.len());
    }

    #[test]
    fn inserts_and_removals_keep_order_and_index() {
        let mut list = RegionList::new();
        let mut model: Vec<u64> = Vec::new();
        for id in 0..3000u64 {
            list.push(region(id * 10));
            model.push(id * 10);
        }
        check(&list);
        // Many groups at once, one very large group, and appends.
        let groups: Vec<(usize, Vec<Region>)> = vec![
            (0, vec![region(1), region(2)]),
            (700, (0..1500).map(|k| region(1_000_000 + k)).collect()),
            (2999, vec![region(3)]),
            (3000, vec![region(4)]),
        ];
        let mut expected = model.clone();
        for (rank, regions) in groups.iter().rev() {
            let ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
            expected.splice(*rank..*rank, ids);
        }
        list.insert_groups(groups);
        assert_eq!(ids(&list), expected);
        check(&list);
        assert!(list.chunks.iter().all(|c| c.len() <= MAX_CHUNK));

        for i in [0, 100, 2500, list.len() - 4] {
            let gone = list.remove(i);
            assert_eq!(gone.id, expected.remove(i));
        }
        assert!(!list.contains(1));
        assert_eq!(ids(&list), expected);
        check(&list);
        let from: Vec<u64> = list.iter_from(1234).map(|r| r.id).collect();
        assert_eq!(from, expected[1234..]);
        assert_eq!(list.iter_from(list.len()).count(), 0);
        for r in list.iter_mut_from(4000) {
            r.version = 7;
        }
        assert!(list.iter().enumerate().all(|(i, r)| (r.version == 7) == (i >= 4000)));
        for (rank, r) in list.iter_mut().enumerate() {
            r.version = rank as u64;
        }
        for cut in [0, 1, 511, 512, 513, 2000, list.len() - 1, list.len(), list.len() + 5] {
            assert_eq!(list.partition_point(|r| r.version < cut as u64), cut.min(list.len()));
        }
    }

    #[test]
    fn id_hashes_spread_over_low_bits() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        // Ids four apart, as regions take them, fill 1024 buckets evenly by their low bits.
        let mut buckets = [0u32; 1024];
        for k in 0..65_536u64 {
            buckets[(build.hash_one(7 + 4 * k) & 1023) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min >= 32 && *max <= 100, "{min}..{max}");
    }

    #[test]
    fn emptied_chunks_are_dropped() {
        let mut list = RegionList::new();
        for id in 0..(CHUNK as u64 + 3) {
            list.push(region(id));
        }
        for _ in 0..3 {
            list.remove(CHUNK);
        }
        assert_eq!(list.chunks.len(), 1);
        while !list.is_empty() {
            list.remove(0);
        }
        list.insert_groups(vec![(0, vec![region(9)])]);
        assert_eq!(ids(&list), [9]);
        check(&list);
    }

    #[test]
    fn facts_and_store_totals_follow_every_change() {
        let mut list = RegionList::new();
        for id in 0..2000u64 {
            list.push(region(id * 10));
        }
        assert!(list.is_fresh());
        assert_eq!(kept(&list), recounted(&list));

        // Changes through every mutable path, refreshed in between or not.
        list[5].leader = Some(list[5].peers[1].id);
        list[6].approximate_size = 500;
        list.get_mut(7).unwrap().peers.push(Peer { id: 1, store_id: 9, role: PeerRole::Learner });
        let id = list[8].id;
        let r = list.by_id_mut(id).unwrap();
        r.pending_peers.push(r.peers[2]);
        let down = DownPeer { peer: r.peers[1], down_seconds: 700 };
        r.down_peers.push(down);
        assert!(!list.is_fresh());
        assert!(list.store_totals().is_none() && list.with_facts().is_none());
        list.refresh();
        assert_eq!(kept(&list), recounted(&list));
        let facts = list.with_facts().unwrap().nth(8).unwrap().0;
        assert!(facts.has_down() && facts.has_pending() && !facts.has_learner());
        assert!(list.with_facts().unwrap().nth(7).unwrap().0.has_learner());
        assert!(list.with_facts().unwrap().nth(7).unwrap().0.stores().is_none(), "four peers");

        list[9].approximate_size = 1;
        list.insert_groups(vec![(3, vec![region(7)]), (1500, (0..700).map(|k| region(100_000 + k)).collect())]);
        list[1000].leader = None;
        list.remove(4);
        list.remove(10);
        list.refresh();
        assert_eq!(kept(&list), recounted(&list));

        for r in list.iter_mut().step_by(3) {
            r.peers.retain(|p| p.store_id != 2);
        }
        list.remove(0);
        list.refresh();
        assert_eq!(kept(&list), recounted(&list));
        let leader = list.with_facts().unwrap().next().map(|(f, r)| (f.leader_store(), r.leader_store()));
        assert_eq!(leader.map(|(f, r)| f == Some(r)), Some(true));
    }
}
