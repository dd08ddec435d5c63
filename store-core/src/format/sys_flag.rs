//! `MessageSysFlag`: the i32 bit set stored in every record (§7.3 of the protocol reference).
//!
//! Bits 4 and 5 say how wide the born and store host fields are, so the record encoder derives
//! them from the host address families; everything else is carried as the sender or broker set
//! it. This module only names bits and edits fields of the flag; it leaves out what they mean
//! for sending, filtering or decompressing.

/// Bit 0: the body is compressed (with the codec named by the compression type bits).
pub const COMPRESSED_FLAG: i32 = 0x1;
/// Bit 1: set by the broker when the topic's filter type is MULTI_TAG.
pub const MULTI_TAGS_FLAG: i32 = 0x1 << 1;
/// Transaction type (bits 2–3) of an ordinary message.
pub const TRANSACTION_NOT_TYPE: i32 = 0;
/// Transaction type of a half (prepared) message.
pub const TRANSACTION_PREPARED_TYPE: i32 = 0x1 << 2;
/// Transaction type of the commit record written by END_TRANSACTION.
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x2 << 2;
/// Transaction type of the rollback record; also the mask of both transaction bits.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0x3 << 2;
/// Mask of the transaction type bits (bits 2–3).
pub const TRANSACTION_TYPE_MASK: i32 = TRANSACTION_ROLLBACK_TYPE;
/// Bit 4: the born host field is 16 + 4 bytes (IPv6) instead of 4 + 4.
pub const BORNHOST_V6_FLAG: i32 = 0x1 << 4;
/// Bit 5: the store host field is 16 + 4 bytes (IPv6) instead of 4 + 4.
pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x1 << 5;
/// Bit 6: an inner batch the client must unwrap.
pub const NEED_UNWRAP_FLAG: i32 = 0x1 << 6;
/// Bit 7: the record is an inner batch (batch consume queue topics).
pub const INNER_BATCH_FLAG: i32 = 0x1 << 7;

/// Compression type bits (8–10) for LZ4 (frame format).
pub const COMPRESSION_LZ4_TYPE: i32 = 0x1 << 8;
/// Compression type bits for ZSTD.
pub const COMPRESSION_ZSTD_TYPE: i32 = 0x2 << 8;
/// Compression type bits for ZLIB. A compressed body with type 0 is ZLIB too (pre-5.x senders).
pub const COMPRESSION_ZLIB_TYPE: i32 = 0x3 << 8;
/// Mask of the compression type bits (8–10).
pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;

/// The transaction type bits of `flag`: one of the four `TRANSACTION_*_TYPE` values.
#[must_use]
pub fn transaction_type(flag: i32) -> i32 {
    flag & TRANSACTION_TYPE_MASK
}

/// `flag` with its transaction type replaced by `ty`.
///
/// # Panics
/// If `ty` has bits outside the transaction type mask: that is a bug in the caller.
#[must_use]
pub fn with_transaction_type(flag: i32, ty: i32) -> i32 {
    assert_eq!(
        ty & !TRANSACTION_TYPE_MASK,
        0,
        "not a transaction type: {ty:#x}"
    );
    (flag & !TRANSACTION_TYPE_MASK) | ty
}

/// The compression type field (0..=7) of `flag`, shifted down: 1 LZ4, 2 ZSTD, 3 ZLIB, and 0,
/// which readers treat as ZLIB.
#[must_use]
pub fn compression_type(flag: i32) -> i32 {
    (flag & COMPRESSION_TYPE_MASK) >> 8
}

/// `flag` with the compressed bit cleared, as consumers do after inflating a body.
#[must_use]
pub fn clear_compressed(flag: i32) -> i32 {
    flag & !COMPRESSED_FLAG
}

/// `flag` with bits 4 and 5 set to match the host address families.
#[must_use]
pub fn with_host_families(flag: i32, born_host_v6: bool, store_host_v6: bool) -> i32 {
    let mut out = flag & !(BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG);
    if born_host_v6 {
        out |= BORNHOST_V6_FLAG;
    }
    if store_host_v6 {
        out |= STOREHOSTADDRESS_V6_FLAG;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_values_match_rocketmq() {
        assert_eq!(COMPRESSED_FLAG, 0x001);
        assert_eq!(MULTI_TAGS_FLAG, 0x002);
        assert_eq!(TRANSACTION_PREPARED_TYPE, 0x004);
        assert_eq!(TRANSACTION_COMMIT_TYPE, 0x008);
        assert_eq!(TRANSACTION_ROLLBACK_TYPE, 0x00C);
        assert_eq!(BORNHOST_V6_FLAG, 0x010);
        assert_eq!(STOREHOSTADDRESS_V6_FLAG, 0x020);
        assert_eq!(NEED_UNWRAP_FLAG, 0x040);
        assert_eq!(INNER_BATCH_FLAG, 0x080);
        assert_eq!(COMPRESSION_LZ4_TYPE, 0x100);
        assert_eq!(COMPRESSION_ZSTD_TYPE, 0x200);
        assert_eq!(COMPRESSION_ZLIB_TYPE, 0x300);
        assert_eq!(COMPRESSION_TYPE_MASK, 0x700);
    }

    #[test]
    fn transaction_type_is_read_and_replaced_in_place() {
        let flag = COMPRESSED_FLAG | TRANSACTION_PREPARED_TYPE | BORNHOST_V6_FLAG;
        assert_eq!(transaction_type(flag), TRANSACTION_PREPARED_TYPE);
        let committed = with_transaction_type(flag, TRANSACTION_COMMIT_TYPE);
        assert_eq!(transaction_type(committed), TRANSACTION_COMMIT_TYPE);
        assert_eq!(
            committed & !TRANSACTION_TYPE_MASK,
            COMPRESSED_FLAG | BORNHOST_V6_FLAG
        );
        assert_eq!(
            transaction_type(with_transaction_type(-1, TRANSACTION_NOT_TYPE)),
            0
        );
    }

    #[test]
    #[should_panic(expected = "not a transaction type")]
    fn with_transaction_type_rejects_other_bits() {
        let _ = with_transaction_type(0, COMPRESSED_FLAG);
    }

    #[test]
    fn compression_type_and_clear() {
        assert_eq!(compression_type(COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE), 3);
        assert_eq!(compression_type(COMPRESSED_FLAG), 0);
        assert_eq!(compression_type(COMPRESSION_LZ4_TYPE | MULTI_TAGS_FLAG), 1);
        assert_eq!(
            clear_compressed(COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE),
            0x300
        );
    }

    #[test]
    fn host_family_bits_follow_arguments() {
        let flag = BORNHOST_V6_FLAG | MULTI_TAGS_FLAG;
        assert_eq!(
            with_host_families(flag, false, true),
            MULTI_TAGS_FLAG | STOREHOSTADDRESS_V6_FLAG
        );
        assert_eq!(with_host_families(flag, false, false), MULTI_TAGS_FLAG);
        assert_eq!(with_host_families(0, true, true), 0x30);
    }
}
