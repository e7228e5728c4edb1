//! The embedded engine's prefix cache: which 16-token prompt blocks have
//! been computed before, as vLLM's automatic prefix caching keeps them.
//! A block is known by a hash of every token up to its end, so a block
//! matches only after the same whole prefix. Least recently used blocks
//! leave first once `capacity` blocks are kept.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Tokens per block, vLLM's default.
pub const BLOCK_TOKENS: usize = 16;

pub struct PrefixCache {
    capacity: usize,
    /// Block hash → when it was last used.
    used: HashMap<u64, u64>,
    /// When → block hash, oldest first.
    order: BTreeMap<u64, u64>,
    clock: u64,
}

/// The chained hashes of a prompt's full blocks.
pub fn block_hashes(ids: &[u32]) -> Vec<u64> {
    let mut hashes = Vec::with_capacity(ids.len() / BLOCK_TOKENS);
    let mut previous = 0u64;
    for block in ids.chunks_exact(BLOCK_TOKENS) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        previous.hash(&mut h);
        block.hash(&mut h);
        previous = h.finish();
        hashes.push(previous);
    }
    hashes
}

impl PrefixCache {
    pub fn new(capacity_blocks: usize) -> Self {
        Self {
            capacity: capacity_blocks.max(1),
            used: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    /// How many of a prompt's `prompt_tokens` are found computed; then
    /// keeps all its blocks. At least one token is always computed (the
    /// last one gives the first output token), as in vLLM.
    pub fn lookup_and_insert(&mut self, hashes: &[u64], prompt_tokens: usize) -> usize {
        let hit_blocks = hashes
            .iter()
            .take_while(|h| self.used.contains_key(h))
            .count();
        for &h in hashes {
            self.touch(h);
        }
        (hit_blocks * BLOCK_TOKENS).min(prompt_tokens.saturating_sub(1))
    }

    fn touch(&mut self, hash: u64) {
        self.clock += 1;
        if let Some(old) = self.used.insert(hash, self.clock) {
            self.order.remove(&old);
        } else if self.used.len() > self.capacity {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.used.remove(&oldest);
            }
        }
        self.order.insert(self.clock, hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_hit_whole_blocks_only() {
        let mut cache = PrefixCache::new(100);
        let a: Vec<u32> = (0..40).collect();
        assert_eq!(cache.lookup_and_insert(&block_hashes(&a), 40), 0);
        // Same 32-token prefix (two full blocks), different rest.
        let mut b: Vec<u32> = (0..32).collect();
        b.extend(100..120);
        assert_eq!(cache.lookup_and_insert(&block_hashes(&b), 52), 32);
        // The same prompt again: all but the last token.
        assert_eq!(cache.lookup_and_insert(&block_hashes(&a[..32]), 32), 31);
        // A block matches only after the same prefix.
        let c: Vec<u32> = (16..48).collect();
        assert_eq!(cache.lookup_and_insert(&block_hashes(&c), 32), 0);
    }

    #[test]
    fn least_recently_used_blocks_leave_first() {
        let mut cache = PrefixCache::new(2);
        let blocks = |first: u32| block_hashes(&(first..first + 16).collect::<Vec<u32>>());
        cache.lookup_and_insert(&blocks(0), 16);
        cache.lookup_and_insert(&blocks(100), 16);
        cache.lookup_and_insert(&blocks(0), 16); // used again: now the newest
        cache.lookup_and_insert(&blocks(200), 16); // evicts block 100
        assert_eq!(cache.lookup_and_insert(&blocks(0), 17), 16);
        assert_eq!(cache.lookup_and_insert(&blocks(100), 17), 0);
    }
}
