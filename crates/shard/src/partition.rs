//! Which shard holds a key: hash, consistent hash or range partitioning.
//!
//! Every strategy is a pure function of the key and the group's configuration, so that any
//! node that knows the configuration routes a key to the same shard. Hashing uses 64-bit
//! FNV-1a over the key's [`Hash`] writes (not the std `DefaultHasher`, whose algorithm may
//! change between Rust releases).

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How keys are spread over the shards of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy<K> {
    /// `hash(key) mod shards`: even spread, but changing the shard count moves most keys.
    Hash,
    /// A hash ring with `vnodes` points per shard: a key belongs to the first point at or
    /// after its hash (wrapping). Adding a shard moves only about `1/shards` of the keys.
    ConsistentHash {
        /// Points per shard on the ring (at least 1; more points, more even spread).
        vnodes: usize,
    },
    /// Contiguous key ranges: `bounds` are `shards - 1` split points in strictly ascending
    /// order. Shard 0 holds keys below `bounds[0]`, shard `i` holds
    /// `bounds[i-1] <= key < bounds[i]`, the last shard holds keys at or above the last
    /// bound. A key equal to a bound belongs to the shard that bound starts.
    Range {
        /// The split points.
        bounds: Vec<K>,
    },
}

/// A strategy checked against a shard count, ready to route keys.
#[derive(Debug, Clone)]
pub struct Partitioner<K> {
    shards: usize,
    kind: Kind<K>,
}

#[derive(Debug, Clone)]
enum Kind<K> {
    Hash,
    /// Ring points `(hash, shard)`, sorted by hash.
    Ring(Vec<(u64, usize)>),
    Range(Vec<K>),
}

/// The most shards a group may have.
pub const MAX_SHARDS: usize = 4096;
/// The most ring points per shard for [`Strategy::ConsistentHash`].
pub const MAX_VNODES: usize = 1024;

impl<K: Hash + Ord + Clone> Partitioner<K> {
    /// Checks `strategy` for `shards` shards: at least one shard (at most [`MAX_SHARDS`]);
    /// 1 to [`MAX_VNODES`] ring points per shard; `shards - 1` strictly ascending bounds.
    pub fn new(strategy: &Strategy<K>, shards: usize) -> Result<Self> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(Error::InvalidArgument(format!(
                "a shard group has 1 to {MAX_SHARDS} shards, not {shards}"
            )));
        }
        let kind = match strategy {
            Strategy::Hash => Kind::Hash,
            Strategy::ConsistentHash { vnodes } => {
                if *vnodes == 0 || *vnodes > MAX_VNODES {
                    return Err(Error::InvalidArgument(format!(
                        "consistent hashing takes 1 to {MAX_VNODES} points per shard, not {vnodes}"
                    )));
                }
                let mut ring = Vec::with_capacity(shards * vnodes);
                for shard in 0..shards {
                    for point in 0..*vnodes {
                        ring.push((hash_of(&(shard as u64, point as u64)), shard));
                    }
                }
                ring.sort_unstable();
                Kind::Ring(ring)
            }
            Strategy::Range { bounds } => {
                if bounds.len() != shards - 1 {
                    return Err(Error::InvalidArgument(format!(
                        "range partitioning of {shards} shards takes {} bounds, not {}",
                        shards - 1,
                        bounds.len()
                    )));
                }
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::InvalidArgument(
                        "range bounds must be strictly ascending".into(),
                    ));
                }
                Kind::Range(bounds.clone())
            }
        };
        Ok(Partitioner { shards, kind })
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that holds `key` (always below [`Partitioner::shards`]).
    pub fn shard_of(&self, key: &K) -> usize {
        match &self.kind {
            Kind::Hash => (hash_of(key) % self.shards as u64) as usize,
            Kind::Ring(ring) => {
                let h = hash_of(key);
                let at = ring.partition_point(|(point, _)| *point < h);
                ring.get(at).unwrap_or(&ring[0]).1
            }
            // The number of bounds at or below the key is the shard index.
            Kind::Range(bounds) => bounds.partition_point(|bound| bound <= key),
        }
    }
}

/// 64-bit FNV-1a of a value's `Hash` writes.
pub fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = Fnv64::default();
    value.hash(&mut hasher);
    // FNV-1a alone mixes the last bytes weakly into the high bits; a final avalanche
    // (splitmix64's) spreads them before `mod` and the ring lookup.
    let mut x = hasher.finish();
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::{any, prop_assert, proptest};

    #[test]
    fn range_splits_at_the_bounds() {
        let p = Partitioner::new(
            &Strategy::Range {
                bounds: vec![10u32, 20, 30],
            },
            4,
        )
        .expect("valid");
        assert_eq!(p.shard_of(&0), 0);
        assert_eq!(p.shard_of(&9), 0);
        assert_eq!(
            p.shard_of(&10),
            1,
            "a key equal to a bound starts the next shard"
        );
        assert_eq!(p.shard_of(&19), 1);
        assert_eq!(p.shard_of(&20), 2);
        assert_eq!(p.shard_of(&29), 2);
        assert_eq!(p.shard_of(&30), 3);
        assert_eq!(p.shard_of(&u32::MAX), 3);
    }

    #[test]
    fn range_of_strings_is_lexicographic() {
        let p = Partitioner::new(
            &Strategy::Range {
                bounds: vec!["g".to_string(), "p".to_string()],
            },
            3,
        )
        .expect("valid");
        assert_eq!(p.shard_of(&"apple".to_string()), 0);
        assert_eq!(p.shard_of(&"g".to_string()), 1);
        assert_eq!(p.shard_of(&"oz".to_string()), 1);
        assert_eq!(p.shard_of(&"p".to_string()), 2);
        assert_eq!(p.shard_of(&"zebra".to_string()), 2);
        assert_eq!(p.shard_of(&String::new()), 0);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let bad =
            |s: Strategy<u32>, n| matches!(Partitioner::new(&s, n), Err(Error::InvalidArgument(_)));
        assert!(bad(Strategy::Hash, 0));
        assert!(bad(Strategy::Hash, MAX_SHARDS + 1));
        assert!(bad(Strategy::ConsistentHash { vnodes: 0 }, 4));
        assert!(bad(
            Strategy::ConsistentHash {
                vnodes: MAX_VNODES + 1
            },
            4
        ));
        assert!(bad(Strategy::Range { bounds: vec![1, 2] }, 4));
        assert!(bad(
            Strategy::Range {
                bounds: vec![1, 3, 3]
            },
            4
        ));
        assert!(bad(
            Strategy::Range {
                bounds: vec![5, 3, 9]
            },
            4
        ));
        assert!(Partitioner::new(&Strategy::<u32>::Range { bounds: vec![] }, 1).is_ok());
    }

    #[test]
    fn hash_spreads_keys_evenly_and_stably() {
        let p = Partitioner::new(&Strategy::<u64>::Hash, 8).expect("valid");
        let mut counts = [0usize; 8];
        for k in 0..80_000u64 {
            counts[p.shard_of(&k)] += 1;
        }
        for c in counts {
            assert!((8_000..12_000).contains(&c), "uneven spread {counts:?}");
        }
        // Stable across builds and processes: a fixed function of the key.
        assert_eq!(hash_of(&"plexspaces"), hash_of(&"plexspaces".to_string()));
        let again = Partitioner::new(&Strategy::<u64>::Hash, 8).expect("valid");
        assert!((0..1000u64).all(|k| p.shard_of(&k) == again.shard_of(&k)));
    }

    #[test]
    fn consistent_hash_moves_few_keys_when_a_shard_is_added() {
        let s = Strategy::<u64>::ConsistentHash { vnodes: 128 };
        let eight = Partitioner::new(&s, 8).expect("valid");
        let nine = Partitioner::new(&s, 9).expect("valid");
        let mut counts = [0usize; 8];
        let mut moved = 0;
        for k in 0..90_000u64 {
            let before = eight.shard_of(&k);
            counts[before] += 1;
            let after = nine.shard_of(&k);
            if before != after {
                assert_eq!(after, 8, "a key moves only to the new shard");
                moved += 1;
            }
        }
        // Ideal: 1/9 of the keys move; plain `mod` would move 8/9.
        assert!(moved < 90_000 / 5, "{moved} keys moved");
        assert!(moved > 90_000 / 20, "{moved} keys moved");
        for c in counts {
            assert!((6_000..17_000).contains(&c), "uneven spread {counts:?}");
        }
    }

    proptest! {
        #[test]
        fn range_shard_holds_its_keys(set in proptest::collection::btree_set(any::<i32>(), 0..16), key in any::<i32>()) {
            let bounds: Vec<i32> = set.into_iter().collect();
            let p = Partitioner::new(&Strategy::Range { bounds: bounds.clone() }, bounds.len() + 1).expect("valid");
            let s = p.shard_of(&key);
            prop_assert!(s <= bounds.len());
            if s > 0 { prop_assert!(bounds[s - 1] <= key); }
            if s < bounds.len() { prop_assert!(key < bounds[s]); }
        }

        #[test]
        fn every_strategy_stays_in_range(key in any::<u64>(), shards in 1usize..64) {
            for s in [Strategy::Hash, Strategy::ConsistentHash { vnodes: 16 }] {
                let p = Partitioner::new(&s, shards).expect("valid");
                prop_assert!(p.shard_of(&key) < shards);
            }
        }
    }
}
