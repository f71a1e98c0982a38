//! Which partition a key of a limiter slot belongs to.
//!
//! A limiter slot's keys are split into partitions, each with its own owner
//! and standby in the routing table; the table lists them per slot, so its
//! length is the slot's partition count. A key's partition is FNV-1a 64
//! of the key's UTF-8 bytes, modulo that count: a fixed, documented
//! function, the same in every client and every version (the Go and Python
//! clients compute it too).

/// Most partitions a limiter slot is split into (fewer when its `maxKeys`
/// is smaller, so each partition holds at least one key).
pub const MAX_PARTITIONS: u16 = 16;

/// How many partitions a slot whose keys are bounded by `max_keys` is split
/// into: up to [`MAX_PARTITIONS`], each holding at least one key; one for a
/// slot without keys to split.
pub fn partitions_for(max_keys: Option<u64>) -> u16 {
    match max_keys {
        Some(max_keys) => u16::try_from(max_keys.clamp(1, u64::from(MAX_PARTITIONS))).unwrap_or(1),
        None => 1,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition of `key` among `partitions` (0 when there is at most one).
pub fn partition_of(key: &str, partitions: u16) -> u16 {
    if partitions <= 1 {
        return 0;
    }
    u16::try_from(fnv1a64(key.as_bytes()) % u64::from(partitions)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        // From the FNV reference test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// The vectors every client tests its own implementation against.
    #[test]
    fn the_shared_vectors_hold() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../client/conformance/partitions.json"
        );
        let text = std::fs::read_to_string(path).expect("client/conformance/partitions.json");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let vectors = doc["vectors"].as_array().expect("vectors");
        assert!(vectors.len() >= 9);
        for v in vectors {
            let key = v["key"].as_str().expect("key");
            let hash = v["fnv1a64"].as_str().expect("fnv1a64");
            assert_eq!(format!("{:016x}", fnv1a64(key.as_bytes())), hash, "{key:?}");
            for (count, partition) in v["partition"].as_object().expect("partition") {
                let count: u16 = count.parse().expect("a count");
                assert_eq!(
                    Some(u64::from(partition_of(key, count))),
                    partition.as_u64(),
                    "{key:?} among {count}"
                );
            }
        }
    }

    #[test]
    fn keys_spread_over_every_partition_and_stay_put() {
        let mut counts = [0u32; MAX_PARTITIONS as usize];
        for i in 0..16_000 {
            counts[usize::from(partition_of(&format!("user-{i}"), MAX_PARTITIONS))] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(partition_of("alice", 16), partition_of("alice", 16));
        assert_eq!(partition_of("anything", 1), 0);
    }
}
