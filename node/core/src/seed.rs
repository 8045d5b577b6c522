//! One seed, split into a tree: every node and every purpose gets its own stream.
//!
//! `SeedTree::new(7).child(42).child(PURPOSE_KEY)` always gives the same 32-byte seed, on
//! every machine, so a simulation can hand node 42 its key and its protocol randomness
//! without the two streams ever influencing each other.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A node in a tree of seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedTree {
    state: [u64; 4],
}

/// Purpose label: a node's identity key.
pub const PURPOSE_KEY: u64 = 1;
/// Purpose label: a node's protocol decisions (timer phases, candidate choice).
pub const PURPOSE_PROTOCOL: u64 = 2;

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SeedTree {
    /// The root of a tree.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        SeedTree {
            state: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// The child with label `label`.
    pub fn child(&self, label: u64) -> Self {
        let mut state = [0u64; 4];
        let mut x = label ^ 0xA076_1D64_78BD_642F;
        for (i, word) in state.iter_mut().enumerate() {
            let mut mix = self.state[i] ^ splitmix64(&mut x);
            *word = splitmix64(&mut mix);
        }
        SeedTree { state }
    }

    /// The 32 seed bytes of this tree node.
    pub fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.state) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A ChaCha8 generator seeded from this tree node.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::from_seed(self.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_path_same_seed_different_path_different_seed() {
        let a = SeedTree::new(7).child(3).child(PURPOSE_KEY);
        let b = SeedTree::new(7).child(3).child(PURPOSE_KEY);
        let c = SeedTree::new(7).child(3).child(PURPOSE_PROTOCOL);
        let d = SeedTree::new(8).child(3).child(PURPOSE_KEY);
        assert_eq!(a.bytes(), b.bytes());
        assert_ne!(a.bytes(), c.bytes());
        assert_ne!(a.bytes(), d.bytes());
        assert_eq!(a.rng().random::<u64>(), b.rng().random::<u64>());
    }

    #[test]
    fn fixed_values_do_not_drift() {
        // Traces depend on these bytes; a change here changes every snapshot.
        let seed = SeedTree::new(0).child(0).bytes();
        assert_eq!(&seed[..4], &SeedTree::new(0).child(0).bytes()[..4]);
        assert_ne!(seed, [0u8; 32]);
    }
}
