//! The REGISTER_BROKER body, [`RegisterBrokerBody`], in its two forms (protocol reference
//! §13.6, §18.2).
//!
//! The JSON form is the usual body. The compressed form (broker `compressedRegister=true`) is
//! a zlib stream, best compression, of this big-endian layout:
//!
//! | section | encoding |
//! |---|---|
//! | dataVersion | i32 length + DataVersion JSON |
//! | topic count | i32 |
//! | each topic | i32 length + topic text |
//! | filterServerList | i32 length + JSON array of strings |
//! | mapping count | i32 (only from senders ≥ 5.0; absent from 4.x bodies) |
//! | each mapping | i32 length + TopicQueueMappingInfo JSON |
//!
//! A topic text is Java's `TopicConfig.encode()`: `topicName readQueueNums writeQueueNums perm
//! topicFilterType attributesJSON`, separated by single spaces.
//!
//! The compressed form carries less than the JSON one: no `topicSysFlag` or `order` per topic
//! (they read back as 0 and false), no `mappingDataVersion`, no mapping details, and the topic
//! table is keyed by each config's own name. Writing keeps every section Java writes, the
//! mapping section included, even when it is empty.
//!
//! What it leaves out: the header (`compressed`, `bodyCrc32`) and the choice between this body
//! and a bare `TopicConfigSerializeWrapper` for very old brokers (the name server's job).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::java_enum::JavaEnum;
use super::lenient::or_default;
use super::static_topic::TopicQueueMappingInfo;
use super::topic_config::{TopicConfig, TopicConfigAndMappingSerializeWrapper, TopicFilterType};
use super::{decode_json, encode_json, BodyError};
use crate::message::compress::{compress_zlib, decompress_body};
use crate::message::sys_flag::{COMPRESSED_FLAG, COMPRESSION_ZLIB_TYPE};

/// What a broker registers with each name server: its topic table and filter servers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// Addresses of the broker's filter servers (legacy; normally empty).
    #[serde(deserialize_with = "or_default")]
    pub filter_server_list: Vec<String>,
    #[serde(deserialize_with = "or_default")]
    pub topic_config_serialize_wrapper: TopicConfigAndMappingSerializeWrapper,
}

/// The largest inflated compressed body accepted (a 16 MiB frame could otherwise inflate to
/// about 16 GiB); a broker with 100,000 topics needs about 10 MiB.
pub const INFLATED_LEN_MAX: usize = 64 << 20;

impl RegisterBrokerBody {
    /// Decodes either form. `compressed` is the header flag, but it only decides when the first
    /// byte does not: a JSON body starts with `{` and a zlib stream with `0x78`, and 5.x brokers
    /// send `compressed=false` even with a compressed body (§18.2).
    pub fn decode(body: &[u8], compressed: bool) -> Result<RegisterBrokerBody, BodyError> {
        let compressed = match body.first() {
            Some(b'{') => false,
            Some(&ZLIB_CMF_DEFLATE_32K) => true,
            _ => compressed,
        };
        if compressed {
            decode_compressed(body)
        } else {
            decode_json(body, "RegisterBrokerBody")
        }
    }

    /// Encodes the JSON form, or the compressed form when `compressed`.
    pub fn encode(&self, compressed: bool) -> Vec<u8> {
        if compressed {
            encode_compressed(self)
        } else {
            encode_json(self)
        }
    }
}

fn decode_compressed(body: &[u8]) -> Result<RegisterBrokerBody, BodyError> {
    let raw = inflate(body)?;
    let mut sections = Sections { rest: &raw };
    let mut result = RegisterBrokerBody::default();
    let wrapper = &mut result.topic_config_serialize_wrapper;

    wrapper.data_version = decode_json(sections.bytes("dataVersion")?, "DataVersion")?;
    for _ in 0..sections.len("topic count")? {
        let line = String::from_utf8_lossy(sections.bytes("topic config")?);
        let config = topic_from_line(&line)?;
        wrapper
            .topic_config_table
            .insert(config.topic_name.clone(), config);
    }
    result.filter_server_list =
        decode_json(sections.bytes("filterServerList")?, "filterServerList")?;
    // 4.x brokers end here; 5.x ones add the mapping section.
    if !sections.rest.is_empty() {
        for _ in 0..sections.len("mapping count")? {
            let info: TopicQueueMappingInfo =
                decode_json(sections.bytes("mapping")?, "TopicQueueMappingInfo")?;
            wrapper
                .topic_queue_mapping_info_map
                .insert(info.topic.clone(), info);
        }
    }
    if !sections.rest.is_empty() {
        return Err(BodyError::CompressedTrailing {
            count: sections.rest.len(),
        });
    }
    Ok(result)
}

fn encode_compressed(body: &RegisterBrokerBody) -> Vec<u8> {
    let wrapper = &body.topic_config_serialize_wrapper;
    let mut raw = Vec::new();
    put_bytes(&mut raw, &encode_json(&wrapper.data_version));
    put_len(&mut raw, wrapper.topic_config_table.len());
    for config in wrapper.topic_config_table.values() {
        put_bytes(&mut raw, topic_to_line(config).as_bytes());
    }
    put_bytes(&mut raw, &encode_json(&body.filter_server_list));
    put_len(&mut raw, wrapper.topic_queue_mapping_info_map.len());
    for info in wrapper.topic_queue_mapping_info_map.values() {
        put_bytes(&mut raw, &info.encode());
    }
    compress_zlib(&raw, ZLIB_LEVEL_BEST)
}

/// Inflates at most [`INFLATED_LEN_MAX`] bytes. The stream is the same zlib as a compressed
/// message body's, so the message codec does it.
fn inflate(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    decompress_body(ZLIB_SYS_FLAG, body, INFLATED_LEN_MAX).map_err(BodyError::Inflate)
}

/// Java `TopicConfig.encode()`: the fields the compressed form carries, space-separated.
fn topic_to_line(config: &TopicConfig) -> String {
    let mut attributes = Vec::new();
    super::write_json(&mut attributes, &config.attributes);
    format!(
        "{} {} {} {} {} {}",
        config.topic_name,
        config.read_queue_nums,
        config.write_queue_nums,
        config.perm,
        config.topic_filter_type.name(),
        String::from_utf8_lossy(&attributes),
    )
}

/// Java `TopicConfig.decode()`. The attributes are the rest of the line after the fifth space,
/// so, unlike Java, attribute text holding spaces reads back whole; a line without them (a Java
/// config with null attributes ends in a space) gets none.
fn topic_from_line(line: &str) -> Result<TopicConfig, BodyError> {
    let bad = |field| BodyError::TopicConfigLine {
        field,
        line: line.to_string(),
    };
    let mut fields = line.splitn(6, ' ');
    // `splitn` always yields a first item: the topic name, empty if the line starts with a space
    // (as Java's split gives).
    let topic_name = fields.next().unwrap_or_default().to_string();
    let mut int = |field| {
        fields
            .next()
            .and_then(|f| f.parse::<i32>().ok())
            .ok_or_else(|| bad(field))
    };
    let read_queue_nums = int("readQueueNums")?;
    let write_queue_nums = int("writeQueueNums")?;
    let perm = int("perm")?;
    let topic_filter_type = fields
        .next()
        .and_then(TopicFilterType::from_name)
        .ok_or_else(|| bad("topicFilterType"))?;
    let attributes = match fields.next() {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str(text).map_err(|_| bad("attributes"))?
        }
        _ => BTreeMap::new(),
    };
    Ok(TopicConfig {
        attributes,
        perm,
        read_queue_nums,
        topic_filter_type,
        topic_name,
        write_queue_nums,
        ..TopicConfig::default()
    })
}

/// Reads the length-prefixed sections of the inflated body.
struct Sections<'a> {
    rest: &'a [u8],
}

impl<'a> Sections<'a> {
    /// A non-negative i32 length or count.
    fn len(&mut self, section: &'static str) -> Result<usize, BodyError> {
        let (word, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(BodyError::CompressedTruncated { section })?;
        self.rest = rest;
        let len = i32::from_be_bytes(*word);
        usize::try_from(len).map_err(|_| BodyError::NegativeLength { section, len })
    }

    /// A length-prefixed run of bytes.
    fn bytes(&mut self, section: &'static str) -> Result<&'a [u8], BodyError> {
        let len = self.len(section)?;
        if len > self.rest.len() {
            return Err(BodyError::CompressedTruncated { section });
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Sections are built from in-memory tables far below 2 GiB; a larger one is a bug.
    let len = i32::try_from(len).expect("register body section exceeds i32::MAX");
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// The message sys flag naming zlib, for [`decompress_body`].
const ZLIB_SYS_FLAG: i32 = COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE;

/// Java's `Deflater.BEST_COMPRESSION`.
const ZLIB_LEVEL_BEST: u32 = 9;

/// The first byte of a zlib stream with deflate and a 32 KiB window, which is what Java's
/// `Deflater` writes.
const ZLIB_CMF_DEFLATE_32K: u8 = 0x78;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{register_broker_body, register_broker_body_compressible};
    use crate::body::DataVersion;
    use crate::message::compress::CompressError;
    use proptest::prelude::*;

    fn sample() -> RegisterBrokerBody {
        let config = TopicConfig {
            topic_name: "TopicTest".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            attributes: BTreeMap::from([("+message.type".into(), "NORMAL".into())]),
            ..TopicConfig::default()
        };
        let mut body = RegisterBrokerBody::default();
        let wrapper = &mut body.topic_config_serialize_wrapper;
        wrapper.data_version = DataVersion {
            counter: 3,
            state_version: 0,
            timestamp: 1_700_000_000_000,
        };
        wrapper
            .topic_config_table
            .insert("TopicTest".into(), config);
        body
    }

    /// Builds a compressed body section by section, as a Java broker would.
    fn java_compressed(lines: &[&str], mapping: Option<&[&str]>, extra: &[u8]) -> Vec<u8> {
        let mut raw = Vec::new();
        put_bytes(
            &mut raw,
            br#"{"counter":3,"stateVersion":0,"timestamp":1700000000000}"#,
        );
        put_len(&mut raw, lines.len());
        for line in lines {
            put_bytes(&mut raw, line.as_bytes());
        }
        put_bytes(&mut raw, b"[]");
        if let Some(mapping) = mapping {
            put_len(&mut raw, mapping.len());
            for m in mapping {
                put_bytes(&mut raw, m.as_bytes());
            }
        }
        raw.extend_from_slice(extra);
        compress_zlib(&raw, 9)
    }

    #[test]
    fn reads_the_documented_json_form() {
        // Protocol reference §13.6.
        let json = br#"{"filterServerList":[],
 "topicConfigSerializeWrapper":{
   "dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},
   "mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1700000000000},
   "topicConfigTable":{"TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,
     "topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}},
   "topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;
        let body = RegisterBrokerBody::decode(json, false).unwrap();
        let wrapper = &body.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 3);
        assert_eq!(wrapper.topic_config_table["TopicTest"].read_queue_nums, 4);
        // The flag is only a hint: the first byte says JSON.
        assert_eq!(RegisterBrokerBody::decode(json, true).unwrap(), body);
    }

    #[test]
    fn reads_java_compressed_bodies_of_4x_and_5x() {
        let v4 = java_compressed(
            &["TopicTest 4 4 6 SINGLE_TAG {\"+message.type\":\"NORMAL\"}"],
            None,
            b"",
        );
        let body = RegisterBrokerBody::decode(&v4, true).unwrap();
        assert_eq!(body, sample());
        // 5.x brokers add the mapping section and send `compressed=false`.
        let info = r#"{"bname":"broker-a","currIdMap":{0:0},"epoch":1,"scope":"__global__",
            "topic":"S","totalQueues":1}"#;
        let v5 = java_compressed(
            &["TopicTest 4 4 6 SINGLE_TAG {\"+message.type\":\"NORMAL\"}"],
            Some(&[info]),
            b"",
        );
        let body = RegisterBrokerBody::decode(&v5, false).unwrap();
        let infos = &body
            .topic_config_serialize_wrapper
            .topic_queue_mapping_info_map;
        assert_eq!(infos["S"].curr_id_map, BTreeMap::from([(0, 0)]));
        assert_eq!(
            body.topic_config_serialize_wrapper.topic_config_table,
            sample().topic_config_serialize_wrapper.topic_config_table
        );
    }

    #[test]
    fn topic_lines_follow_java_split_rules() {
        // Null attributes in Java leave a trailing space; five fields are enough.
        let config = topic_from_line("T 1 2 7 MULTI_TAG ").unwrap();
        assert_eq!(
            (config.read_queue_nums, config.write_queue_nums, config.perm),
            (1, 2, 7)
        );
        assert_eq!(config.topic_filter_type, TopicFilterType::MultiTag);
        assert!(topic_from_line("T 1 2 7 MULTI_TAG")
            .unwrap()
            .attributes
            .is_empty());
        // Attributes holding a space read back whole.
        let config = topic_from_line(r#"T 1 1 6 SINGLE_TAG {"a b":"c d"}"#).unwrap();
        assert_eq!(config.attributes["a b"], "c d");
        for (line, field) in [
            ("T", "readQueueNums"),
            ("T x 1 6 SINGLE_TAG", "readQueueNums"),
            ("T 1  6 SINGLE_TAG", "writeQueueNums"),
            ("T 1 1 6", "topicFilterType"),
            ("T 1 1 6 NO_TAG", "topicFilterType"),
            ("T 1 1 6 SINGLE_TAG {", "attributes"),
        ] {
            match topic_from_line(line) {
                Err(BodyError::TopicConfigLine { field: f, .. }) => assert_eq!(f, field, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn compressed_errors_are_named() {
        let body = java_compressed(&["T 1 1 6 SINGLE_TAG {}"], Some(&[]), b"xy");
        assert!(matches!(
            RegisterBrokerBody::decode(&body, true),
            Err(BodyError::CompressedTrailing { count: 2 })
        ));
        let mut raw = Vec::new();
        put_bytes(&mut raw, b"{}");
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        let body = compress_zlib(&raw, 9);
        assert!(matches!(
            RegisterBrokerBody::decode(&body, true),
            Err(BodyError::NegativeLength {
                section: "topic count",
                len: -1
            })
        ));
        assert!(matches!(
            RegisterBrokerBody::decode(&body[..body.len() / 2], true),
            Err(BodyError::Inflate(CompressError::Truncated))
        ));
        assert!(matches!(
            RegisterBrokerBody::decode(b"\x78garbage", false),
            Err(BodyError::Inflate(_))
        ));
    }

    #[test]
    fn inflation_is_bounded() {
        let bomb = compress_zlib(&vec![0u8; INFLATED_LEN_MAX + 1], 9);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            RegisterBrokerBody::decode(&bomb, true),
            Err(BodyError::Inflate(CompressError::TooLarge { .. }))
        ));
    }

    #[test]
    fn compressed_form_is_zlib_best_compression() {
        let bytes = sample().encode(true);
        // CMF 0x78, FLG 0xDA: deflate, 32 KiB window, level "best", as Java's Deflater writes.
        assert_eq!(&bytes[..2], &[0x78, 0xDA]);
        assert_eq!(RegisterBrokerBody::decode(&bytes, false).unwrap(), sample());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn json_round_trip(body in register_broker_body()) {
            prop_assert_eq!(RegisterBrokerBody::decode(&body.encode(false), false).unwrap(), body);
        }

        #[test]
        fn compressed_round_trip(body in register_broker_body_compressible()) {
            prop_assert_eq!(RegisterBrokerBody::decode(&body.encode(true), true).unwrap(), body);
        }
    }
}
