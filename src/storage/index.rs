//! Index slot encoding (layout in the module doc of [`crate::storage`]) and the
//! arithmetic of index file sizes. Pure functions.

/// Bytes per index slot.
pub(crate) const SLOT_BYTES: u64 = 8;

/// Packs one slot: relative offset in the low 32 bits, store position in the high
/// 32 bits; stored little-endian, so on disk the relative offset comes first.
pub(crate) fn encode_slot(relative: u32, position: u32) -> u64 {
    (u64::from(position) << 32) | u64::from(relative)
}

/// Checks that `value` is the slot for relative offset `slot` and returns the store
/// position it holds.
pub(crate) fn decode_slot(value: u64, slot: u64) -> Result<u64, &'static str> {
    let relative = value & 0xffff_ffff;
    if relative != slot {
        return Err("index slot holds the wrong relative offset");
    }
    Ok(value >> 32)
}

/// Number of records an index of `max_index_bytes` holds (at least one).
pub(crate) fn capacity_slots(max_index_bytes: u64) -> u64 {
    (max_index_bytes / SLOT_BYTES).max(1)
}

/// Length of an active (unsealed) index file holding up to `capacity` records:
/// one spare slot more, so it can never be mistaken for a sealed index.
pub(crate) fn active_file_bytes(capacity: u64) -> u64 {
    (capacity + 1) * SLOT_BYTES
}

/// Length of the sealed index of a segment holding `count` records.
pub(crate) fn sealed_file_bytes(count: u64) -> u64 {
    count * SLOT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip_and_mismatch() {
        let v = encode_slot(7, 0xdead_beef);
        assert_eq!(&v.to_le_bytes()[..4], &7u32.to_le_bytes());
        assert_eq!(decode_slot(v, 7), Ok(0xdead_beef));
        assert!(decode_slot(v, 8).is_err());
        assert!(
            decode_slot(0, 3).is_err(),
            "a zeroed slot is only valid for slot 0"
        );
        assert_eq!(decode_slot(0, 0), Ok(0));
    }

    #[test]
    fn sizes() {
        assert_eq!(capacity_slots(10 * 1024 * 1024), 1_310_720);
        assert_eq!(capacity_slots(3), 1);
        assert!(active_file_bytes(5) > sealed_file_bytes(5));
    }
}
