//! SEND_MESSAGE headers (§6.1, §6.2, §8): the request in both its shapes, and the response.
//!
//! Code 10 names fields in full (`SendMessageRequestHeader`); codes 310, 320 and 326 use the
//! one-letter keys of `SendMessageRequestHeaderV2`. Java converts V2 to V1 on arrival, and so do
//! we: both decode into one [`SendMessageRequestHeader`]. Leaves out the reply-message and
//! recall headers (5.x only).

use super::HeaderError;
use crate::codec::code::RequestCode;
use crate::codec::command::{ExtFields, RemotingCommand};

/// Send-response extFields key: the broker's region id (`regionId`, default `DefaultRegion`).
/// Java clients read it without a null check, so every send response must carry it.
pub const MSG_REGION: &str = "MSG_REGION";
/// Send-response extFields key: `"true"`/`"false"`, whether message tracing is on (default
/// `"true"`). Read without a null check, like [`MSG_REGION`].
pub const TRACE_ON: &str = "TRACE_ON";

command_header! {
    /// SEND_MESSAGE (10, V1 keys), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
    /// SEND_REPLY_MESSAGE_V2 (326) request.
    pub struct SendMessageRequestHeader {
        producer_group: String = req "producerGroup" | "a",
        topic: String = req "topic" | "b",
        /// Template topic for auto-creation, normally `TBW102`.
        default_topic: String = req "defaultTopic" | "c",
        /// Queue count of an auto-created topic.
        default_topic_queue_nums: i32 = req "defaultTopicQueueNums" | "d",
        /// Negative: the broker picks a writable queue.
        queue_id: i32 = req "queueId" | "e",
        /// MessageSysFlag bits.
        sys_flag: i32 = req "sysFlag" | "f",
        born_timestamp: i64 = req "bornTimestamp" | "g",
        /// Application flag, stored verbatim.
        flag: i32 = req "flag" | "h",
        /// The properties string (`key\x01value\x02...`).
        properties: String = opt "properties" | "i",
        reconsume_times: i32 = opt "reconsumeTimes" | "j",
        unit_mode: bool = opt "unitMode" | "k",
        max_reconsume_times: i32 = opt "maxReconsumeTimes" | "l",
        batch: bool = opt "batch" | "m",
        /// Target broker name. V1 carries it in the generic `bname` key, as Java's V2-to-V1
        /// conversion does.
        broker_name: String = opt "bname" | "n",
    }
}

impl SendMessageRequestHeader {
    /// Decodes the shape `code` uses: V2 keys for the codes
    /// [`RequestCode::uses_send_header_v2`] names, V1 keys for every other code.
    pub fn decode_for(
        code: RequestCode,
        fields: &ExtFields,
    ) -> Result<SendMessageRequestHeader, HeaderError> {
        let mut header = SendMessageRequestHeader::default();
        header.decode_for_into(code, fields)?;
        Ok(header)
    }

    /// [`SendMessageRequestHeader::decode_for`] into `self`, reusing its strings' buffers.
    pub fn decode_for_into(
        &mut self,
        code: RequestCode,
        fields: &ExtFields,
    ) -> Result<(), HeaderError> {
        if code.uses_send_header_v2() {
            self.decode_v2_into(fields)
        } else {
            self.decode_v1_into(fields)
        }
    }

    /// Encodes the shape `code` uses, as [`SendMessageRequestHeader::decode_for`] reads it.
    pub fn encode_for(&self, code: RequestCode, fields: &mut ExtFields) {
        if code.uses_send_header_v2() {
            self.encode_v2(fields);
        } else {
            self.encode_v1(fields);
        }
    }
}

/// Decodes a send request's header in the shape its code implies; a command with no
/// `extFields` map reads as an empty one.
pub fn decode_send_header(cmd: &RemotingCommand) -> Result<SendMessageRequestHeader, HeaderError> {
    let mut header = SendMessageRequestHeader::default();
    decode_send_header_into(cmd, &mut header)?;
    Ok(header)
}

/// [`decode_send_header`] into `header`, reusing its strings' buffers (the broker keeps one
/// header for every send). After an error `header` holds a mix of old and new fields.
pub fn decode_send_header_into(
    cmd: &RemotingCommand,
    header: &mut SendMessageRequestHeader,
) -> Result<(), HeaderError> {
    let code = RequestCode::from_value(cmd.code);
    match &cmd.ext_fields {
        Some(fields) => header.decode_for_into(code, fields),
        None => header.decode_for_into(code, &ExtFields::new()),
    }
}

command_header! {
    /// Response to every send code. Also put [`MSG_REGION`] and [`TRACE_ON`] in the same map.
    pub struct SendMessageResponseHeader {
        /// Offset message id of the stored record; for a batch, the ids joined with `,`.
        msg_id: String = req "msgId",
        queue_id: i32 = req "queueId",
        /// Consume-queue offset of the (first) message.
        queue_offset: i64 = req "queueOffset",
        /// The message's UNIQ_KEY.
        transaction_id: String = opt "transactionId",
        batch_uniq_id: String = opt "batchUniqId",
        recall_handle: String = opt "recallHandle",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        check_codec, check_header, request_ext_fields, CPP_PRODUCER, RUST_CLIENT,
    };
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "pg".to_owned(),
            topic: "T".to_owned(),
            default_topic: "TBW102".to_owned(),
            default_topic_queue_nums: 4,
            queue_id: 1,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: None,
            reconsume_times: None,
            unit_mode: None,
            max_reconsume_times: None,
            batch: None,
            broker_name: None,
        }
    }

    proptest! {
        #[test]
        fn send_v1_round_trips(h in SendMessageRequestHeader::arbitrary()) {
            check_codec(&h, SendMessageRequestHeader::FIELDS_V1,
                SendMessageRequestHeader::encode_v1, SendMessageRequestHeader::decode_v1)?;
        }

        #[test]
        fn send_v2_round_trips(h in SendMessageRequestHeader::arbitrary()) {
            check_codec(&h, SendMessageRequestHeader::FIELDS_V2,
                SendMessageRequestHeader::encode_v2, SendMessageRequestHeader::decode_v2)?;
        }

        /// Decoding into a header that held another request gives what a fresh decode gives,
        /// in both shapes and for every field present or absent.
        #[test]
        fn decoding_into_a_used_header_equals_a_fresh_decode(
            h in SendMessageRequestHeader::arbitrary(),
            old in SendMessageRequestHeader::arbitrary(),
        ) {
            for code in [RequestCode::SendMessage, RequestCode::SendMessageV2] {
                let mut fields = ExtFields::new();
                h.encode_for(code, &mut fields);
                let mut reused = old.clone();
                reused.decode_for_into(code, &fields).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&reused, &h);
                prop_assert_eq!(SendMessageRequestHeader::decode_for(code, &fields), Ok(h.clone()));
            }
        }

        #[test]
        fn send_response_round_trips(h in SendMessageResponseHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn v1_and_v2_carry_the_same_fields() {
        assert_eq!(
            SendMessageRequestHeader::FIELDS_V1.len(),
            SendMessageRequestHeader::FIELDS_V2.len()
        );
        let pairs = SendMessageRequestHeader::FIELDS_V1
            .iter()
            .zip(SendMessageRequestHeader::FIELDS_V2);
        for (v1, v2) in pairs {
            assert_eq!((v1.ty, v1.required), (v2.ty, v2.required), "{}", v1.key);
            assert_eq!(v2.key.len(), 1);
        }
    }

    #[test]
    fn the_code_picks_the_shape() {
        let header = sample();
        for (code, topic_key) in [
            (RequestCode::SendMessage, "topic"),
            (RequestCode::SendMessageV2, "b"),
            (RequestCode::SendBatchMessage, "b"),
        ] {
            let mut cmd = RemotingCommand::request(code.value(), 7);
            header.encode_for(code, cmd.ext_fields_mut());
            assert_eq!(cmd.ext(topic_key), Some("T"), "{code:?}");
            assert_eq!(decode_send_header(&cmd), Ok(header.clone()));
        }
        let mut v1 = ExtFields::new();
        header.encode_v1(&mut v1);
        assert_eq!(
            SendMessageRequestHeader::decode_v2(&v1),
            Err(HeaderError::MissingField { field: "a" })
        );
        let empty = RemotingCommand::request(RequestCode::SendMessage.value(), 8);
        assert_eq!(
            decode_send_header(&empty),
            Err(HeaderError::MissingField {
                field: "producerGroup"
            })
        );
    }

    #[test]
    fn cpp_client_send_decodes() {
        let sends = request_ext_fields(CPP_PRODUCER, RequestCode::SendMessage.value());
        assert_eq!(sends.len(), 47);
        let first = SendMessageRequestHeader::decode_v1(&sends[0]).expect("first send");
        assert_eq!(first.producer_group, "compat_pg_1795274782837");
        assert_eq!(first.topic, "GoldenPush");
        assert_eq!(first.default_topic, "TBW102");
        assert_eq!(first.default_topic_queue_nums, 4);
        assert_eq!(first.queue_id, 0);
        assert_eq!(first.sys_flag, 0);
        assert_eq!(first.born_timestamp, 1_795_274_782_341);
        assert_eq!(first.flag, 0);
        assert_eq!(first.reconsume_times, Some(0));
        assert_eq!(first.unit_mode, Some(false));
        assert_eq!(first.batch, Some(false));
        assert_eq!(first.max_reconsume_times, None);
        assert_eq!(first.broker_name, None);
        let properties = first.properties.as_deref().expect("properties");
        assert!(properties.starts_with("KEYS\u{1}k-1795274782837-0\u{2}TAGS\u{1}TagA\u{2}"));

        // The C++ client writes booleans as "0"/"1": its batch send says "1".
        let batches: Vec<_> = sends
            .iter()
            .map(|f| SendMessageRequestHeader::decode_v1(f).expect("every C++ send decodes"))
            .filter(|h| h.batch == Some(true))
            .collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].topic, "GoldenExtra");
        assert_eq!(batches[0].properties.as_deref(), Some("WAIT\u{1}true\u{2}"));
    }

    #[test]
    fn rust_client_send_decodes() {
        let sends = request_ext_fields(RUST_CLIENT, RequestCode::SendMessage.value());
        assert_eq!(sends.len(), 50);
        let first = SendMessageRequestHeader::decode_v1(&sends[0]).expect("first send");
        assert_eq!(first.producer_group, "bench_pg_25235");
        assert_eq!(first.topic, "GoldenRust");
        assert_eq!(first.queue_id, 2);
        assert_eq!(first.born_timestamp, 1_795_274_794_262);
        assert_eq!(first.unit_mode, Some(false));
        assert_eq!(first.batch, Some(false));
        assert_eq!(first.broker_name.as_deref(), Some("broker-a"));
    }
}
