//! The broker's JSON config files under `config/` (§16.6 of the protocol reference): written
//! atomically and read back with RocketMQ's `.bak` fallback.
//!
//! Writing `config/<name>` ([`persist`]):
//! 1. write the new text to `config/<name>.tmp`, created at its exact length, and sync it;
//! 2. rename the current `config/<name>` (if any) to `config/<name>.bak`, RocketMQ's backup of
//!    the previous version;
//! 3. rename `config/<name>.tmp` to `config/<name>`.
//!
//! Renames are durable when they return, so a crash at any point leaves either the old text in
//! `<name>`, or no `<name>` and the old text in `<name>.bak`, or the new text in `<name>`.
//! Reading ([`load`]) takes `<name>` and falls back to `<name>.bak` when `<name>` is missing,
//! empty or unparsable, as RocketMQ's `ConfigManager.load` does; unlike RocketMQ, an
//! unreadable file with no usable backup is an error rather than an empty table, so a broker
//! never starts with its topics silently gone.
//!
//! Files written by Java brokers use fastjson's bare integer map keys (`{0:12}`, §13.1); they
//! are rewritten to standard JSON before parsing. We write quoted keys (`{"0":12}`), which
//! fastjson reads back as integers.
//!
//! The file types are the caller's: anything serde reads and writes that names its file
//! ([`ConfigFile`]); the broker persists its wire bodies (topic table, consumer offsets,
//! subscription groups) directly. [`write_atomically`] and [`load_with_backup`] are the same
//! steps for any small file, parsed by the caller (the epoch file). What this leaves out: the table types themselves, deciding
//! when to persist (the broker's timer), and the other files RocketMQ keeps in `config/`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::storage::{Storage, StorageError};

/// Directory of the config files, relative to the store root.
pub const CONFIG_DIR: &str = "config";

/// A typed config file: its name under `config/` and its JSON shape.
pub trait ConfigFile: Serialize + DeserializeOwned {
    /// File name under `config/`, e.g. `topics.json`.
    const FILE_NAME: &'static str;
}

/// Why reading or writing a config file failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Neither the file nor its backup could be parsed.
    #[error("{name}: unreadable and no usable backup: {reason}")]
    Corrupt { name: String, reason: String },
    /// The value could not be turned into JSON (a bug in a table type).
    #[error("{name}: cannot encode: {reason}")]
    Encode { name: String, reason: String },
}

/// Reads `config/<T::FILE_NAME>`, falling back to its `.bak`; `None` if neither exists (or
/// both are empty).
pub fn load<T: ConfigFile, S: Storage>(storage: &S) -> Result<Option<T>, ConfigError> {
    let path = format!("{CONFIG_DIR}/{}", T::FILE_NAME);
    load_with_backup(storage, &path, parse_json::<T>)
}

/// Reads `path` with `parse`, falling back to `<path>.bak` when `path` is missing, empty
/// (`parse` answers `Ok(None)`) or unparsable; `None` if neither holds anything. For any file
/// written with [`write_atomically`].
///
/// # Errors
/// `Corrupt` naming `path` when the file is unparsable and the backup unusable; storage errors.
pub fn load_with_backup<T, S: Storage>(
    storage: &S,
    path: &str,
    parse: impl Fn(&[u8]) -> Result<Option<T>, String>,
) -> Result<Option<T>, ConfigError> {
    let main_error = match read_parsed(storage, path, &parse)? {
        Ok(Some(value)) => return Ok(Some(value)),
        Ok(None) => None,
        Err(reason) => {
            tracing::warn!(file = %path, %reason, "file unreadable, trying its backup");
            Some(reason)
        }
    };
    let bak = format!("{path}.bak");
    match (read_parsed(storage, &bak, &parse)?, main_error) {
        (Ok(Some(value)), _) => {
            tracing::info!(file = %bak, "loaded from the backup");
            Ok(Some(value))
        }
        (Ok(None), None) => Ok(None),
        (Ok(None), Some(reason)) | (Err(reason), _) => Err(ConfigError::Corrupt {
            name: path.to_string(),
            reason,
        }),
    }
}

/// Replaces `path` with `bytes` atomically, keeping the previous version as `<path>.bak`
/// (the three steps in the module docs).
///
/// # Errors
/// The storage's; `path` (or its backup) then still holds the old content.
pub fn write_atomically<S: Storage>(
    storage: &S,
    path: &str,
    bytes: &[u8],
) -> Result<(), ConfigError> {
    stage(storage, path, bytes)?;
    publish(storage, path)
}

/// Writes `value` to `config/<T::FILE_NAME>` atomically (see the module docs), pretty-printed
/// as RocketMQ writes it.
pub fn persist<T: ConfigFile, S: Storage>(storage: &S, value: &T) -> Result<(), ConfigError> {
    let path = format!("{CONFIG_DIR}/{}", T::FILE_NAME);
    let text = serde_json::to_string_pretty(value).map_err(|e| ConfigError::Encode {
        name: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomically(storage, &path, text.as_bytes())
}

/// Step 1: the new text, durable, in `<path>.tmp`.
fn stage<S: Storage>(storage: &S, path: &str, bytes: &[u8]) -> Result<(), ConfigError> {
    let tmp = format!("{path}.tmp");
    // A leftover from a crash mid-write; its content is of no use.
    storage.delete(&tmp)?;
    let len = bytes.len() as u64;
    storage.create(&tmp, len)?;
    storage.write_at(&tmp, 0, bytes)?;
    storage.sync(&tmp, 0, len)?;
    Ok(())
}

/// Steps 2 and 3: keep the old version as `.bak`, move the new one in.
fn publish<S: Storage>(storage: &S, path: &str) -> Result<(), ConfigError> {
    if storage.len(path)?.is_some() {
        storage.rename(path, &format!("{path}.bak"))?;
    }
    storage.rename(&format!("{path}.tmp"), path)?;
    Ok(())
}

/// The parsed file: `Ok(Ok(None))` if missing or empty, `Ok(Err(reason))` if unparsable,
/// `Err` on a storage failure.
fn read_parsed<T, S: Storage>(
    storage: &S,
    path: &str,
    parse: impl Fn(&[u8]) -> Result<Option<T>, String>,
) -> Result<Result<Option<T>, String>, ConfigError> {
    let Some(len) = storage.len(path)? else {
        return Ok(Ok(None));
    };
    let bytes = storage.read_at(path, 0, len)?;
    Ok(parse(&bytes))
}

/// Parses a config file's bytes, accepting fastjson's quirks (a byte-order mark, bare map keys).
/// Blank text is `None`, as RocketMQ treats an empty file as missing.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let standard = quote_bare_keys(text)?;
    serde_json::from_str(&standard)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The deepest nesting [`quote_bare_keys`] accepts (serde_json's own limit).
pub const NESTING_MAX: usize = 128;

/// Rewrites object keys that are bare tokens (`{0:12,-1:3}`) as JSON strings (`{"0":12,"-1":3}`);
/// everything else is copied as is. Errors name the first structural problem; scalars are left
/// for serde to judge.
pub fn quote_bare_keys(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    // Text before `copied` is in `out` already.
    let mut copied = 0;
    // Open containers: true for an object.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_end(bytes, i).ok_or_else(|| format!("unterminated string at {i}"))?;
                expect_key = false;
                continue;
            }
            b'{' | b'[' => {
                if stack.len() >= NESTING_MAX {
                    return Err(format!("nesting deeper than {NESTING_MAX} at {i}"));
                }
                stack.push(b == b'{');
                expect_key = b == b'{';
            }
            b'}' | b']' => {
                if stack.pop() != Some(b == b'}') {
                    return Err(format!("unbalanced {:?} at {i}", char::from(b)));
                }
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&true),
            _ if b.is_ascii_whitespace() || !expect_key => {}
            _ => {
                let len = bytes
                    .get(i..)
                    .and_then(|rest| {
                        rest.iter()
                            .position(|&c| c == b':' || c.is_ascii_whitespace())
                    })
                    .ok_or_else(|| format!("bare key at {i} has no ':'"))?;
                let token = bytes.get(i..i + len).unwrap_or_default();
                let plain = token
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.' | b'_'));
                if !plain {
                    return Err(format!("bare key at {i} is not a plain token"));
                }
                // Every boundary here sits on an ASCII byte, so the slices are whole chars.
                out.push_str(text.get(copied..i).unwrap_or_default());
                out.push('"');
                out.push_str(text.get(i..i + len).unwrap_or_default());
                out.push('"');
                copied = i + len;
                expect_key = false;
                i += len;
                continue;
            }
        }
        i += 1;
    }
    if !stack.is_empty() {
        return Err("unclosed object or array".into());
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Ok(out)
}

/// Index just past the string starting at `start` (a `"`), or `None` if it does not end.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    /// The shape of `consumerOffset.json` (`topic@group` -> queue id -> offset), enough to
    /// exercise the file handling with RocketMQ's integer map keys.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct ConsumerOffsetTable {
        offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    }

    impl ConfigFile for ConsumerOffsetTable {
        const FILE_NAME: &'static str = "consumerOffset.json";
    }

    impl ConsumerOffsetTable {
        fn query_offset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
            let key = format!("{topic}@{group}");
            self.offset_table.get(&key)?.get(&queue_id).copied()
        }
    }

    /// The shape of `delayOffset.json`: delay level -> offset.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct DelayOffsetTable {
        offset_table: BTreeMap<i32, i64>,
    }

    fn offsets(entries: &[(&str, &str, i32, i64)]) -> ConsumerOffsetTable {
        let mut t = ConsumerOffsetTable::default();
        for &(topic, group, queue_id, offset) in entries {
            t.offset_table
                .entry(format!("{topic}@{group}"))
                .or_default()
                .insert(queue_id, offset);
        }
        t
    }

    #[test]
    fn persist_then_load_round_trips_and_keeps_a_backup() {
        let s = MemStorage::new();
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), None);
        let v1 = offsets(&[("T", "g", 0, 5)]);
        persist(&s, &v1).unwrap();
        assert_eq!(
            load::<ConsumerOffsetTable, _>(&s).unwrap(),
            Some(v1.clone())
        );
        let v2 = offsets(&[("T", "g", 0, 9)]);
        persist(&s, &v2).unwrap();
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(v2));
        assert_eq!(
            s.list("config").unwrap(),
            vec!["consumerOffset.json", "consumerOffset.json.bak"]
        );
        let bak = s
            .read_at(
                "config/consumerOffset.json.bak",
                0,
                s.len("config/consumerOffset.json.bak").unwrap().unwrap(),
            )
            .unwrap();
        assert_eq!(parse_json::<ConsumerOffsetTable>(&bak).unwrap(), Some(v1));
    }

    #[test]
    fn a_crash_before_the_rename_keeps_the_old_content() {
        let s = MemStorage::new();
        let v1 = offsets(&[("T", "g", 0, 5)]);
        persist(&s, &v1).unwrap();
        let v2 = offsets(&[("T", "g", 0, 9)]);
        let text = serde_json::to_string_pretty(&v2).unwrap();
        stage(&s, "config/consumerOffset.json", text.as_bytes()).unwrap();
        s.crash(None);
        assert_eq!(
            load::<ConsumerOffsetTable, _>(&s).unwrap(),
            Some(v1.clone())
        );
        // Between the two renames: the main file is gone, the backup holds the old text.
        stage(&s, "config/consumerOffset.json", text.as_bytes()).unwrap();
        s.rename(
            "config/consumerOffset.json",
            "config/consumerOffset.json.bak",
        )
        .unwrap();
        s.crash(Some(7));
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(v1));
        // The next persist cleans up the leftover temp file.
        persist(&s, &v2).unwrap();
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(v2));
        assert!(!s
            .list("config")
            .unwrap()
            .iter()
            .any(|n| n.ends_with(".tmp")));
    }

    #[test]
    fn a_failed_write_leaves_the_old_content() {
        let s = MemStorage::new();
        let v1 = offsets(&[("T", "g", 0, 5)]);
        persist(&s, &v1).unwrap();
        s.fail_write_after(1);
        let v2 = offsets(&[("T", "g", 0, 9)]);
        assert!(matches!(persist(&s, &v2), Err(ConfigError::Storage(_))));
        assert_eq!(
            load::<ConsumerOffsetTable, _>(&s).unwrap(),
            Some(v1.clone())
        );
        // The failed attempt left a temp file; the next one deletes it first and then finds
        // one byte too few.
        s.set_capacity(Some(s.used_bytes() - 1));
        assert!(matches!(
            persist(&s, &v2),
            Err(ConfigError::Storage(StorageError::NoSpace { .. }))
        ));
        s.set_capacity(None);
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(v1));
    }

    #[test]
    fn a_corrupt_file_falls_back_to_its_backup_and_both_corrupt_is_an_error() {
        let s = MemStorage::new();
        let v1 = offsets(&[("T", "g", 0, 5)]);
        persist(&s, &v1).unwrap();
        persist(&s, &offsets(&[("T", "g", 0, 9)])).unwrap();
        s.corrupt_byte("config/consumerOffset.json", 0).unwrap();
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(v1));
        s.corrupt_byte("config/consumerOffset.json.bak", 0).unwrap();
        assert!(matches!(
            load::<ConsumerOffsetTable, _>(&s),
            Err(ConfigError::Corrupt { .. })
        ));
        // An empty file counts as missing.
        let s = MemStorage::new();
        s.create("config/consumerOffset.json", 0).unwrap();
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), None);
    }

    #[test]
    fn bare_integer_keys_are_quoted_and_nothing_else_changes() {
        assert_eq!(
            quote_bare_keys(r#"{"offsetTable":{"T@g":{0:12, -1 :3}},"s":"{0:1}"}"#).unwrap(),
            r#"{"offsetTable":{"T@g":{"0":12, "-1" :3}},"s":"{0:1}"}"#
        );
        assert_eq!(
            quote_bare_keys(r#"[{}, {"a":[1,{2:"é"}]}]"#).unwrap(),
            r#"[{}, {"a":[1,{"2":"é"}]}]"#
        );
        // Structure only: a key without ':' is left for serde to reject.
        assert!(parse_json::<std::collections::BTreeMap<i32, i64>>(b"{0 12}").is_err());
        assert!(quote_bare_keys("{\"a\":[}").is_err());
        assert!(quote_bare_keys("{\"a").is_err());
        assert!(quote_bare_keys(&"[".repeat(200)).is_err());
        assert!(quote_bare_keys("{a\"b:1}").is_err());
    }

    #[test]
    fn java_files_with_bare_keys_and_a_bom_load() {
        let java = "\u{feff}{\"offsetTable\":{\"TopicTest@cg1\":{0:1190,1:1201},\"%RETRY%cg1@cg1\":{0:0}},\
            \"dataVersion\":{\"counter\":3,\"stateVersion\":0,\"timestamp\":1700000000000}}";
        let t: ConsumerOffsetTable = parse_json(java.as_bytes()).unwrap().unwrap();
        assert_eq!(t.query_offset("TopicTest", "cg1", 1), Some(1201));
        assert_eq!(t.query_offset("%RETRY%cg1", "cg1", 0), Some(0));
        let delay = "{\"offsetTable\":{1:0,2:37},\"dataVersion\":{\"counter\":1,\"stateVersion\":0,\"timestamp\":5}}";
        let d: DelayOffsetTable = parse_json(delay.as_bytes()).unwrap().unwrap();
        assert_eq!(d.offset_table.get(&2), Some(&37));
        // We write quoted keys.
        let text = serde_json::to_string(&d).unwrap();
        assert!(text.contains("\"2\":37"), "{text}");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn standard_json_passes_through_unchanged(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            prop_assert_eq!(quote_bare_keys(&text).unwrap(), text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,64}", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = quote_bare_keys(&text);
            let _ = parse_json::<ConsumerOffsetTable>(&bytes);
            let _ = parse_json::<DelayOffsetTable>(text.as_bytes());
        }

        #[test]
        fn integer_keyed_maps_round_trip_through_bare_keys(m in proptest::collection::btree_map(any::<i32>(), any::<i64>(), 0..8)) {
            let bare = format!("{{{}}}", m.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(","));
            let back: std::collections::BTreeMap<i32, i64> = parse_json(bare.as_bytes()).unwrap().unwrap_or_default();
            prop_assert_eq!(back, m);
        }
    }
}
