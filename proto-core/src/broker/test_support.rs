//! Shared fixtures for the broker's scenario tests (broker/tests.rs, delay_tests.rs,
//! timer_tests.rs, transaction/tests.rs, filter/broker_tests.rs): a small in-memory store
//! config, request building, picking a connection's sends out of a turn, and reading a queue
//! back. Each test file keeps its own harness; only the pieces they repeated live here.

use bytes::Bytes;
use store_core::consume_queue::ConsumeQueueConfig;
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};
use store_core::index::IndexConfig;
use store_core::storage::MemStorage;
use store_core::store::{AcceptAll, StoreConfig};

use crate::broker::{Broker, BrokerConfig};
use crate::role::{ConnId, Role, Transmit};
use crate::{RemotingCommand, RequestCode};

/// Files sized for memory: 1 MiB commit-log segments, small consume-queue and index files.
pub(crate) fn small_store() -> StoreConfig {
    StoreConfig {
        segment_size: 1024 * 1024,
        consume_queue: ConsumeQueueConfig {
            units_per_file: 10_000,
        },
        index: IndexConfig {
            max_hash_slot_num: 1024,
            max_index_num: 8192,
        },
        ..StoreConfig::default()
    }
}

/// A request with these ext fields and opaque 0 (harnesses number their own).
pub(crate) fn request(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code.value(), 0);
    for (k, v) in fields {
        cmd.ext_fields_mut().insert(*k, *v);
    }
    cmd
}

/// Every command a turn sent on `conn`, in order; a body sent in parts is joined.
pub(crate) fn sent_to(transmits: &[Transmit], conn: u64) -> Vec<RemotingCommand> {
    transmits
        .iter()
        .filter_map(sent_command)
        .filter(|(c, _)| *c == ConnId(conn))
        .map(|(_, cmd)| cmd)
        .collect()
}

/// The connection and command of a `Send` or `SendParts` transmit, the latter's parts joined
/// into the body as its peer reads it; `None` for other transmits.
pub(crate) fn sent_command(transmit: &Transmit) -> Option<(ConnId, RemotingCommand)> {
    match transmit {
        Transmit::Send { conn, cmd } => Some((*conn, cmd.clone())),
        Transmit::SendParts { conn, cmd, parts } => {
            let mut body = cmd.body.to_vec();
            for part in parts {
                body.extend_from_slice(part);
            }
            let mut cmd = cmd.clone();
            cmd.body = Bytes::from(body);
            Some((*conn, cmd))
        }
        _ => None,
    }
}

/// SEND_MESSAGE (10) with V1 keys, as the C++ client sends it.
pub(crate) fn send_message(
    topic: &str,
    queue_id: i32,
    props: &str,
    body: Bytes,
) -> RemotingCommand {
    let queue_id = queue_id.to_string();
    request(
        RequestCode::SendMessage,
        &[
            ("producerGroup", "pg"),
            ("topic", topic),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", &queue_id),
            ("sysFlag", "0"),
            ("bornTimestamp", "1700000000000"),
            ("flag", "0"),
            ("properties", props),
            ("batch", "0"),
        ],
    )
    .with_body(body)
}

/// A broker over `disk` with one client connected as conn 1.
pub(crate) fn open_with_client(
    disk: &MemStorage,
    config: &BrokerConfig,
    now_ms: u64,
) -> Broker<MemStorage> {
    let (mut broker, _) = Broker::new(config.clone(), disk.clone(), now_ms).unwrap();
    broker.handle_connected(ConnId(1), "127.0.0.1:40001".parse().unwrap(), None, now_ms);
    broker
}

/// Feeds `cmd` on conn 1 as the next opaque, runs the turn and returns the response to it
/// (everything else sent in the turn is dropped).
pub(crate) fn ask_conn1(
    broker: &mut Broker<MemStorage>,
    opaque: &mut i32,
    now_ms: u64,
    mut cmd: RemotingCommand,
) -> RemotingCommand {
    *opaque += 1;
    cmd.opaque = *opaque;
    broker.handle_command(ConnId(1), cmd, now_ms);
    broker.handle_turn_end(now_ms);
    let mut found = None;
    while let Some(t) = broker.poll_transmit() {
        if let Transmit::Send { cmd, .. } = t {
            if cmd.is_response() && cmd.opaque == *opaque {
                found = Some(cmd);
            }
        }
    }
    found.expect("a response")
}

/// Every record of a queue, in order, read straight from the store.
pub(crate) fn read_queue(
    broker: &Broker<MemStorage>,
    topic: &str,
    queue_id: i32,
) -> Vec<MessageRecord> {
    let store = broker.store();
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(topic, queue_id);
    while offset < store.max_offset_in_queue(topic, queue_id) {
        let got = store.get_messages(topic, queue_id, offset, 32, 1 << 20, &AcceptAll);
        assert!(got.next_begin_offset > offset, "{:?}", got.status);
        offset = got.next_begin_offset;
        out.extend(
            got.records
                .iter()
                .map(|b| decode_with(b, CrcCheck::Skip).unwrap().0),
        );
    }
    out
}
