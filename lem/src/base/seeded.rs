//! Small deterministic helpers for repeatable choices: a stable hash of a name (FNV-1a) to
//! seed from, and a seeded generator (SplitMix64) for start delays.

/// FNV-1a of `bytes`: stable across processes and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: each call advances the state by the golden gamma and mixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "bench", feature = "args")), allow(dead_code))]
pub struct SplitMix(pub u64);

#[cfg_attr(not(any(feature = "bench", feature = "args")), allow(dead_code))]
impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// A uniform number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FNV-1a's offset basis for no bytes; SplitMix64's first output for seed 0
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(SplitMix(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let u = SplitMix(7).uniform();
        assert!((0.0..1.0).contains(&u));
    }
}
