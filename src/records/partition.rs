//! The key → partition hash: Kafka's murmur2 and its default partitioner's use of
//! it, written from the algorithm's description (MurmurHash2, 32-bit, by Austin
//! Appleby, with the seed and byte order of Kafka's `Utils.murmur2`).
//!
//! Why this hash: it is fixed by its bytes (the same on every platform, build and
//! release, unlike Rust's `Hash`), it mixes well enough to spread keys evenly, it
//! is cheap, and Kafka's Java client hashes keys with it (`partitionForKey` in the
//! built-in partitioner: `toPositive(murmur2(key)) % numPartitions`), so a producer
//! moved from Kafka to commitlog with the same partition count sends each key to
//! the partition it went to before.
//!
//! Test vectors (in `tests.rs`) are the values Kafka's own `UtilsTest.testMurmur2`
//! and other Kafka-compatible clients assert, as Java `int`s.

/// The multiplier of MurmurHash2.
const M: u32 = 0x5bd1_e995;
/// The shift of the block mix.
const R: u32 = 24;
/// Kafka's seed.
const SEED: u32 = 0x9747_b28c;

/// Kafka's 32-bit murmur2 of `data`, as the bits of Java's `int` result (compare
/// with `java_int as u32`).
///
/// Worked by hand for the empty key (no blocks, no tail, only the final mix):
/// h = SEED ^ 0 = 0x9747b28c; h ^= h >> 13 (0x0004ba3d) → 0x974308b1;
/// h *= M (mod 2^32) → 0x106e2805; h ^= h >> 15 (0x000020dc) → 0x106e08d9
/// (275646681). The test `murmur2_of_nothing_is_the_final_mix_of_the_seed` pins it.
pub fn murmur2(data: &[u8]) -> u32 {
    // Kafka mixes in the length as a Java int: the low 32 bits of it.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        // Blocks are read little-endian, whatever the platform.
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    // The tail bytes go in at their little-endian positions, then one multiply.
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition (0-based) a keyed record goes to, among `partitions`: Kafka's
/// `toPositive(murmur2(key)) % partitions` (`toPositive` clears the sign bit; it is
/// not `abs`). Stable across releases: changing it would move keys between
/// partitions and break per-key order, so it is pinned by tests.
///
/// A topic has at least one partition; `partitions == 0` is answered 0 rather than
/// a panic, so the function is total (callers validate the partition count).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    positive.checked_rem(partitions).unwrap_or(0)
}
