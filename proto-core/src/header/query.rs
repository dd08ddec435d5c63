//! Message look-up headers (§6.9, §15): QUERY_MESSAGE by key and VIEW_MESSAGE_BY_ID by
//! commit-log offset. The records themselves travel in the response body.

/// QUERY_MESSAGE extFields key: `"true"` asks for an exact UNIQ_KEY match rather than a key
/// search (Java's `MixAll.UNIQUE_MSG_QUERY_FLAG`).
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

command_header! {
    /// QUERY_MESSAGE (12) request.
    pub struct QueryMessageRequestHeader {
        topic: String = req "topic",
        key: String = req "key",
        max_num: i32 = req "maxNum",
        begin_timestamp: i64 = req "beginTimestamp",
        end_timestamp: i64 = req "endTimestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) response.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 = req "indexLastUpdateTimestamp",
        /// Java's spelling ("Phyoffset"), kept as the key.
        index_last_update_phyoffset: i64 = req "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33) request.
    pub struct ViewMessageRequestHeader {
        topic: String = opt "topic",
        /// Commit-log offset of the record.
        offset: i64 = req "offset",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_header;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn query_message_round_trips(h in QueryMessageRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn query_message_response_round_trips(h in QueryMessageResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn view_message_round_trips(h in ViewMessageRequestHeader::arbitrary()) {
            check_header(&h)?;
        }
    }
}
