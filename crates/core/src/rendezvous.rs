//! Rendezvous (highest random weight) hashing: each source goes to the
//! node whose score for it is highest (the shipper's routing; cblogsd
//! places each alert group on one node the same way). When a node joins, it takes from
//! each other node only the sources it now scores highest for; when one
//! leaves, only its sources move, spread over the others. Nodes are scored
//! by their id, not their address, so a node that comes back elsewhere
//! takes back the same sources.

/// A node id's seed (FNV-1a: stable across builds and machines, which
/// the standard library's hasher is not promised to be).
pub fn seed(node_id: &str) -> u64 {
    node_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The node of `nodes` (their ids) that scores highest for `key`: the
/// one it goes to. `None` when there is none.
pub fn owner<'a>(nodes: impl IntoIterator<Item = &'a str>, key: u64) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|id| score(seed(id), key))
}

/// The score of `source` (its id) on the node of `seed`.
pub fn score(seed: u64, source: u64) -> u64 {
    mix(seed ^ mix(source))
}

/// splitmix64's finalizer: every bit of the input moves every bit out.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(nodes: &[&str], source: u64) -> usize {
        (0..nodes.len())
            .max_by_key(|&i| score(seed(nodes[i]), source))
            .unwrap()
    }

    /// Sources spread evenly, and a node that leaves moves only its own
    /// sources; one that joins takes only what it now owns.
    #[test]
    fn spreads_evenly_and_moves_only_a_leavers_sources() {
        let three = ["node-a", "node-b", "node-c"];
        let sources: Vec<u64> = (0..30_000u64).map(|i| mix(i * 7 + 1)).collect();
        let mut counts = [0usize; 3];
        for &s in &sources {
            counts[owner(&three, s)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let two = ["node-a", "node-c"];
        for &s in &sources {
            let before = three[owner(&three, s)];
            let after = two[owner(&two, s)];
            if before != "node-b" {
                assert_eq!(before, after, "a source not on the node that left moved");
            }
        }
        // Order does not matter: the ids do.
        let shuffled = ["node-c", "node-a", "node-b"];
        for &s in &sources[..1000] {
            assert_eq!(three[owner(&three, s)], shuffled[owner(&shuffled, s)]);
        }
    }
}
