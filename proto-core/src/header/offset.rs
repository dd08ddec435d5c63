//! Offset headers (§6.4, §6.5, §10.3): consumer offsets, and a queue's max, min, by-time and
//! earliest-store-time look-ups.

use super::field::FieldValue;
use super::{FieldType, HeaderError};

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) request.
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String = req "consumerGroup",
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
        /// When false and no offset is stored, answer QUERY_NOT_FOUND without consulting the
        /// queue's min offset.
        set_zero_if_not_found: bool = opt "setZeroIfNotFound",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) response.
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 = req "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request; the response has no fields.
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String = req "consumerGroup",
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
        commit_offset: i64 = req "commitOffset",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30) request.
    pub struct GetMaxOffsetRequestHeader {
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
        /// Java's primitive default: only committed (replicated) messages count.
        committed: bool = or(true) "committed",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30) response.
    pub struct GetMaxOffsetResponseHeader {
        offset: i64 = req "offset",
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) request.
    pub struct GetMinOffsetRequestHeader {
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) response.
    pub struct GetMinOffsetResponseHeader {
        offset: i64 = req "offset",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request.
    pub struct SearchOffsetRequestHeader {
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
        /// Store time in ms.
        timestamp: i64 = req "timestamp",
        boundary_type: BoundaryType = or(BoundaryType::Lower) "boundaryType",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) response.
    pub struct SearchOffsetResponseHeader {
        offset: i64 = req "offset",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) request.
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: String = req "topic",
        queue_id: i32 = req "queueId",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) response.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        /// Store time of the queue's first message, ms.
        timestamp: i64 = req "timestamp",
    }
}

/// Which message a time search lands on when several share the timestamp, or none matches
/// exactly (RocketMQ's `BoundaryType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BoundaryType {
    /// The first message stored at or after the time.
    Lower,
    /// The last message stored at or before the time.
    Upper,
}

impl FieldValue for BoundaryType {
    const TYPE: FieldType = FieldType::Boundary;

    /// Java's `BoundaryType.getType`: `"upper"` in any case is upper, anything else lower.
    fn parse(_key: &'static str, text: &str) -> Result<BoundaryType, HeaderError> {
        if text.eq_ignore_ascii_case("upper") {
            Ok(BoundaryType::Upper)
        } else {
            Ok(BoundaryType::Lower)
        }
    }

    /// Java sends the enum constant's name.
    fn render_with<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        use_text(match self {
            BoundaryType::Lower => "LOWER",
            BoundaryType::Upper => "UPPER",
        })
    }

    #[cfg(test)]
    fn strategy() -> proptest::strategy::BoxedStrategy<BoundaryType> {
        use proptest::prelude::*;
        prop_oneof![Just(BoundaryType::Lower), Just(BoundaryType::Upper)].boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_header, request_ext_fields, CPP_PUSH_CONSUMER};
    use super::super::CommandHeader;
    use super::*;
    use crate::codec::code::RequestCode;
    use crate::codec::command::ExtFields;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn query_consumer_offset_round_trips(h in QueryConsumerOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn query_consumer_offset_response_round_trips(
            h in QueryConsumerOffsetResponseHeader::arbitrary()
        ) {
            check_header(&h)?;
        }

        #[test]
        fn update_consumer_offset_round_trips(h in UpdateConsumerOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_max_offset_round_trips(h in GetMaxOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_max_offset_response_round_trips(h in GetMaxOffsetResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_min_offset_round_trips(h in GetMinOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_min_offset_response_round_trips(h in GetMinOffsetResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn search_offset_round_trips(h in SearchOffsetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn search_offset_response_round_trips(h in SearchOffsetResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn earliest_store_time_round_trips(h in GetEarliestMsgStoretimeRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn earliest_store_time_response_round_trips(
            h in GetEarliestMsgStoretimeResponseHeader::arbitrary()
        ) {
            check_header(&h)?;
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> ExtFields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let max = GetMaxOffsetRequestHeader::decode(&fields(&[("topic", "T"), ("queueId", "1")]));
        assert_eq!(max.map(|h| h.committed), Ok(true));
        let search = SearchOffsetRequestHeader::decode(&fields(&[
            ("topic", "T"),
            ("queueId", "1"),
            ("timestamp", "5"),
        ]));
        assert_eq!(search.map(|h| h.boundary_type), Ok(BoundaryType::Lower));
    }

    #[test]
    fn boundary_type_reads_like_java() {
        for (text, expected) in [
            ("upper", BoundaryType::Upper),
            ("UPPER", BoundaryType::Upper),
            ("lower", BoundaryType::Lower),
            ("sideways", BoundaryType::Lower),
        ] {
            assert_eq!(BoundaryType::parse("boundaryType", text), Ok(expected));
        }
    }

    #[test]
    fn cpp_consumer_offset_requests_decode() {
        let queries =
            request_ext_fields(CPP_PUSH_CONSUMER, RequestCode::QueryConsumerOffset.value());
        assert_eq!(queries.len(), 13);
        let first = QueryConsumerOffsetRequestHeader::decode(&queries[0]).expect("query decodes");
        assert_eq!(
            first,
            QueryConsumerOffsetRequestHeader {
                consumer_group: "compat_cg_all_1795274782837".to_owned(),
                topic: "GoldenPush".to_owned(),
                queue_id: 0,
                set_zero_if_not_found: None,
            }
        );
        for q in &queries {
            QueryConsumerOffsetRequestHeader::decode(q).expect("every query decodes");
        }
        let updates =
            request_ext_fields(CPP_PUSH_CONSUMER, RequestCode::UpdateConsumerOffset.value());
        assert_eq!(updates.len(), 48);
        for u in &updates {
            let header = UpdateConsumerOffsetRequestHeader::decode(u).expect("update decodes");
            assert!(header.commit_offset >= 0);
        }
        let maxes = request_ext_fields(CPP_PUSH_CONSUMER, RequestCode::GetMaxOffset.value());
        assert_eq!(maxes.len(), 3);
        for m in &maxes {
            GetMaxOffsetRequestHeader::decode(m).expect("get max offset decodes");
        }
    }
}
