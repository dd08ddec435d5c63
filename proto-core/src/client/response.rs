//! What a producer's and a consumer's responses mean (protocol reference §5, §6.2, §9.4, §10):
//! send results, pull results with their decoded records, offsets, consumer lists and routes.
//!
//! What it leaves out: batch send results (`msgId` lists), static-topic offset deltas, and the
//! `MIN_OFFSET`/`MAX_OFFSET` properties Java adds to pulled messages.

use crate::body::TopicRouteData;
use crate::body::{BodyError, GetConsumerListByGroupResponseBody, MessageQueue, SubscriptionData};
use crate::codec::code::ResponseCode;
use crate::codec::command::RemotingCommand;
use crate::header::{
    decode_header, GetMaxOffsetResponseHeader, HeaderError, PullMessageResponseHeader,
    QueryConsumerOffsetResponseHeader, SendMessageResponseHeader,
};
use crate::message::properties::{find_property, TAGS};
use crate::message::record::{decode_all, MessageRecord, RecordError};

/// Why a response does not carry what the request asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The peer answered with a code that is not a success for this request.
    #[error("refused with {code:?}: {}", remark.as_deref().unwrap_or(""))]
    Refused {
        code: ResponseCode,
        remark: Option<String>,
    },
    /// A success whose header lacks a field or has a bad one.
    #[error("response header: {0}")]
    Header(#[from] HeaderError),
    /// A success whose JSON body does not read.
    #[error("response body: {0}")]
    Body(#[from] BodyError),
    /// A pull whose records do not decode.
    #[error("pulled record: {0}")]
    Record(#[from] RecordError),
}

impl ResponseError {
    fn refused(resp: &RemotingCommand) -> ResponseError {
        ResponseError::Refused {
            code: ResponseCode::from_value(resp.code),
            remark: resp.remark.clone(),
        }
    }

    /// True when a Java producer would retry the send on another queue (its default
    /// `retryResponseCodes`).
    pub fn is_send_retryable(&self) -> bool {
        matches!(
            self,
            ResponseError::Refused {
                code: ResponseCode::TopicNotExist
                    | ResponseCode::ServiceNotAvailable
                    | ResponseCode::SystemError
                    | ResponseCode::SystemBusy
                    | ResponseCode::NoPermission
                    | ResponseCode::NoBuyerId
                    | ResponseCode::NotInCurrentUnit
                    | ResponseCode::GoAway,
                ..
            }
        )
    }
}

/// How a stored send went (Java `SendStatus`); every variant means the broker has the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// A stored message's whereabouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The client id (`UNIQ_KEY`) the producer gave the message.
    pub uniq_key: String,
    /// The broker's offset message id (store host + commit-log offset).
    pub offset_msg_id: String,
    /// The queue actually written (the broker may pick another id).
    pub queue: MessageQueue,
    pub queue_offset: i64,
}

/// Reads a SEND_MESSAGE_V2 response for a send of `uniq_key` to `mq`.
pub fn parse_send(
    resp: &RemotingCommand,
    mq: &MessageQueue,
    uniq_key: &str,
) -> Result<SendResult, ResponseError> {
    let status = match ResponseCode::from_value(resp.code) {
        ResponseCode::Success => SendStatus::SendOk,
        ResponseCode::FlushDiskTimeout => SendStatus::FlushDiskTimeout,
        ResponseCode::FlushSlaveTimeout => SendStatus::FlushSlaveTimeout,
        ResponseCode::SlaveNotAvailable => SendStatus::SlaveNotAvailable,
        _ => return Err(ResponseError::refused(resp)),
    };
    let header: SendMessageResponseHeader = decode_header(resp)?;
    Ok(SendResult {
        status,
        uniq_key: uniq_key.to_string(),
        offset_msg_id: header.msg_id,
        queue: MessageQueue {
            queue_id: header.queue_id,
            ..mq.clone()
        },
        queue_offset: header.queue_offset,
    })
}

/// What a pull found (Java `PullStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullStatus {
    /// SUCCESS: messages (possibly all filtered out on the client).
    Found,
    /// PULL_NOT_FOUND: nothing past the offset yet.
    NoNewMsg,
    /// PULL_RETRY_IMMEDIATELY: entries read, none matched the broker's tag filter.
    NoMatchedMsg,
    /// PULL_OFFSET_MOVED: the offset is outside the queue; continue at `next_begin_offset`.
    OffsetIllegal,
}

/// One pull's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullResult {
    pub status: PullStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub suggest_which_broker_id: i64,
    /// The records whose tag the subscription accepts, in queue order.
    pub messages: Vec<MessageRecord>,
}

/// Reads a PULL_MESSAGE response, decoding the records and re-filtering them by tag string as
/// Java does (the broker filtered by hash code only).
pub fn parse_pull(
    resp: &RemotingCommand,
    subscription: &SubscriptionData,
) -> Result<PullResult, ResponseError> {
    let status = match ResponseCode::from_value(resp.code) {
        ResponseCode::Success => PullStatus::Found,
        ResponseCode::PullNotFound => PullStatus::NoNewMsg,
        ResponseCode::PullRetryImmediately => PullStatus::NoMatchedMsg,
        ResponseCode::PullOffsetMoved => PullStatus::OffsetIllegal,
        _ => return Err(ResponseError::refused(resp)),
    };
    let header: PullMessageResponseHeader = decode_header(resp)?;
    let mut messages = Vec::new();
    if status == PullStatus::Found {
        for record in decode_all(resp.body.clone()) {
            let record = record?;
            if accepts(subscription, &record) {
                messages.push(record);
            }
        }
    }
    Ok(PullResult {
        status,
        next_begin_offset: header.next_begin_offset,
        min_offset: header.min_offset,
        max_offset: header.max_offset,
        suggest_which_broker_id: header.suggest_which_broker_id,
        messages,
    })
}

/// Java `PullAPIWrapper.processPullResult`: with tags subscribed, keep records whose `TAGS`
/// is one of them.
fn accepts(subscription: &SubscriptionData, record: &MessageRecord) -> bool {
    if subscription.tags_set.is_empty() || subscription.class_filter_mode {
        return true;
    }
    find_property(&record.properties, TAGS)
        .and_then(|t| std::str::from_utf8(t).ok())
        .is_some_and(|tag| subscription.tags_set.contains(tag))
}

/// Reads a GET_ROUTEINFO_BY_TOPIC response; TOPIC_NOT_EXIST is [`ResponseError::Refused`].
pub fn parse_route(resp: &RemotingCommand) -> Result<TopicRouteData, ResponseError> {
    success(resp)?;
    Ok(TopicRouteData::decode(&resp.body)?)
}

/// Reads a GET_CONSUMER_LIST_BY_GROUP response into the client ids, sorted as rebalancing
/// wants them.
pub fn parse_consumer_list(resp: &RemotingCommand) -> Result<Vec<String>, ResponseError> {
    success(resp)?;
    let mut ids = GetConsumerListByGroupResponseBody::decode(&resp.body)?.consumer_id_list;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Reads a QUERY_CONSUMER_OFFSET response: `None` when the group never committed this queue.
pub fn parse_query_consumer_offset(resp: &RemotingCommand) -> Result<Option<i64>, ResponseError> {
    if resp.code == ResponseCode::QueryNotFound.value() {
        return Ok(None);
    }
    success(resp)?;
    let header: QueryConsumerOffsetResponseHeader = decode_header(resp)?;
    Ok(Some(header.offset))
}

/// Reads a HEART_BEAT response.
pub fn parse_heartbeat(resp: &RemotingCommand) -> Result<(), ResponseError> {
    success(resp)
}

/// Reads an UPDATE_CONSUMER_OFFSET response.
pub fn parse_update_consumer_offset(resp: &RemotingCommand) -> Result<(), ResponseError> {
    success(resp)
}

/// Reads a GET_MAX_OFFSET response.
pub fn parse_max_offset(resp: &RemotingCommand) -> Result<i64, ResponseError> {
    success(resp)?;
    let header: GetMaxOffsetResponseHeader = decode_header(resp)?;
    Ok(header.offset)
}

fn success(resp: &RemotingCommand) -> Result<(), ResponseError> {
    if resp.code == ResponseCode::Success.value() {
        Ok(())
    } else {
        Err(ResponseError::refused(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::request::subscription;
    use crate::header::encode_header;
    use crate::message::properties::Properties;
    use bytes::Bytes;
    use core::net::SocketAddr;
    use proptest::prelude::*;

    fn mq() -> MessageQueue {
        MessageQueue {
            broker_name: "b".to_string(),
            queue_id: -1,
            topic: "T".to_string(),
        }
    }

    fn response(code: ResponseCode) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(0, 1);
        cmd.code = code.value();
        cmd.flag = 1;
        cmd
    }

    fn record(tag: &str, queue_offset: i64) -> MessageRecord {
        let mut props = Properties::new();
        props.insert(TAGS, tag);
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        MessageRecord {
            queue_id: 0,
            flag: 0,
            queue_offset,
            physical_offset: queue_offset * 100,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: host,
            store_timestamp: 2,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(format!("body-{queue_offset}")),
            topic: Bytes::from_static(b"T"),
            properties: Bytes::from(props.encode()),
        }
    }

    fn pull_response(code: ResponseCode, records: &[MessageRecord]) -> RemotingCommand {
        let mut body = Vec::new();
        for r in records {
            r.encode_into(&mut body);
        }
        let mut resp = response(code).with_body(body);
        encode_header(
            &mut resp,
            &PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: 3,
                min_offset: 0,
                max_offset: 3,
                offset_delta: None,
                topic_sys_flag: None,
                group_sys_flag: None,
                forbidden_type: None,
            },
        );
        resp
    }

    #[test]
    fn send_outcomes() {
        let mut resp = response(ResponseCode::FlushDiskTimeout);
        encode_header(
            &mut resp,
            &SendMessageResponseHeader {
                msg_id: "OFFSETID".to_string(),
                queue_id: 2,
                queue_offset: 17,
                transaction_id: None,
                batch_uniq_id: None,
                recall_handle: None,
            },
        );
        let result = parse_send(&resp, &mq(), "U").unwrap();
        assert_eq!(result.status, SendStatus::FlushDiskTimeout);
        assert_eq!((result.queue.queue_id, result.queue_offset), (2, 17));
        assert_eq!(
            (result.offset_msg_id.as_str(), result.uniq_key.as_str()),
            ("OFFSETID", "U")
        );

        let busy = parse_send(&response(ResponseCode::SystemBusy), &mq(), "U").unwrap_err();
        assert!(busy.is_send_retryable());
        let illegal = parse_send(&response(ResponseCode::MessageIllegal), &mq(), "U").unwrap_err();
        assert!(!illegal.is_send_retryable());
        let no_header = parse_send(&response(ResponseCode::Success), &mq(), "U").unwrap_err();
        assert!(matches!(no_header, ResponseError::Header(_)));
    }

    #[test]
    fn pull_decodes_and_filters_by_tag() {
        let records = [record("TagA", 0), record("TagB", 1), record("TagA", 2)];
        let resp = pull_response(ResponseCode::Success, &records);
        let all = parse_pull(&resp, &subscription("T", "*", 0)).unwrap();
        assert_eq!(all.status, PullStatus::Found);
        assert_eq!(all.messages, records);
        assert_eq!((all.next_begin_offset, all.max_offset), (3, 3));
        let only_b = parse_pull(&resp, &subscription("T", "TagB", 0)).unwrap();
        assert_eq!(only_b.messages, [records[1].clone()]);

        for (code, status) in [
            (ResponseCode::PullNotFound, PullStatus::NoNewMsg),
            (ResponseCode::PullRetryImmediately, PullStatus::NoMatchedMsg),
            (ResponseCode::PullOffsetMoved, PullStatus::OffsetIllegal),
        ] {
            let r = parse_pull(&pull_response(code, &[]), &subscription("T", "*", 0)).unwrap();
            assert_eq!((r.status, r.messages.len()), (status, 0));
        }
        let err = parse_pull(
            &response(ResponseCode::SubscriptionNotExist),
            &subscription("T", "*", 0),
        );
        assert!(matches!(
            err,
            Err(ResponseError::Refused {
                code: ResponseCode::SubscriptionNotExist,
                ..
            })
        ));
    }

    #[test]
    fn a_torn_pull_body_is_an_error() {
        let resp = pull_response(ResponseCode::Success, &[record("TagA", 0)]);
        let cut = resp.body.slice(..resp.body.len() - 1);
        let torn = RemotingCommand { body: cut, ..resp };
        assert!(matches!(
            parse_pull(&torn, &subscription("T", "*", 0)),
            Err(ResponseError::Record(_))
        ));
    }

    #[test]
    fn offsets_lists_and_routes() {
        assert_eq!(
            parse_query_consumer_offset(&response(ResponseCode::QueryNotFound)).unwrap(),
            None
        );
        let mut found = response(ResponseCode::Success);
        encode_header(&mut found, &QueryConsumerOffsetResponseHeader { offset: 9 });
        assert_eq!(parse_query_consumer_offset(&found).unwrap(), Some(9));
        assert_eq!(parse_max_offset(&found).unwrap(), 9);
        assert!(parse_update_consumer_offset(&response(ResponseCode::Success)).is_ok());
        assert!(parse_heartbeat(&response(ResponseCode::Success)).is_ok());
        assert!(parse_heartbeat(&response(ResponseCode::SystemError)).is_err());

        let list = response(ResponseCode::Success)
            .with_body(&br#"{"consumerIdList":["b@2","a@1","b@2"]}"#[..]);
        assert_eq!(parse_consumer_list(&list).unwrap(), ["a@1", "b@2"]);
        assert!(parse_consumer_list(&response(ResponseCode::SystemError)).is_err());

        let route = response(ResponseCode::Success)
            .with_body(&br#"{"queueDatas":[{"brokerName":"a","perm":6}]}"#[..]);
        assert_eq!(parse_route(&route).unwrap().queue_datas[0].broker_name, "a");
        assert!(matches!(
            parse_route(&response(ResponseCode::TopicNotExist)),
            Err(ResponseError::Refused {
                code: ResponseCode::TopicNotExist,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_pull_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut resp = pull_response(ResponseCode::Success, &[]);
            resp.body = Bytes::from(body);
            let _ = parse_pull(&resp, &subscription("T", "TagA", 0));
        }
    }
}
