//! The name server's KV config store (Java `KVConfigManager`): namespace -> key -> value.
//!
//! Tools keep free-form settings here, and one namespace has a meaning to the name server
//! itself: [`NAMESPACE_ORDER_TOPIC_CONFIG`] maps an ordered topic to its
//! `brokerName:queueNum;...` layout, which routes and broker registrations carry.
//!
//! What it leaves out: persistence. Java rewrites `kvConfig.json` (`{"configTable":{...}}`)
//! after every change; this store lives in memory only, so a restarted name server starts
//! empty.

use std::collections::BTreeMap;

/// Namespace of the ordered-topic layouts (Java `NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Namespace -> key -> value, in key order so every listing is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvConfig {
    table: BTreeMap<String, BTreeMap<String, String>>,
}

impl KvConfig {
    pub fn new() -> KvConfig {
        KvConfig::default()
    }

    /// Sets `key` in `namespace`, creating the namespace if needed; an existing value is
    /// replaced.
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) {
        let previous = self
            .table
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        tracing::info!(
            namespace,
            key,
            value,
            replaced = previous.is_some(),
            "kv config put"
        );
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.table.get(namespace)?.get(key).map(String::as_str)
    }

    /// Removes `key` from `namespace`. The namespace itself stays, even when empty, as in Java:
    /// listing it afterwards gives an empty table rather than "not found".
    pub fn delete(&mut self, namespace: &str, key: &str) {
        let removed = self
            .table
            .get_mut(namespace)
            .and_then(|entries| entries.remove(key));
        tracing::info!(
            namespace,
            key,
            removed = removed.is_some(),
            "kv config delete"
        );
    }

    /// Every pair of `namespace`, or `None` if it was never created.
    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.table.get(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_and_get_reads_back() {
        let mut kv = KvConfig::new();
        assert_eq!(kv.get("ns", "k"), None);
        kv.put("ns", "k", "v1");
        kv.put("ns", "k", "v2");
        kv.put("other", "k", "x");
        assert_eq!(kv.get("ns", "k"), Some("v2"));
        assert_eq!(kv.get("other", "k"), Some("x"));
        assert_eq!(kv.get("ns", "missing"), None);
    }

    #[test]
    fn delete_keeps_the_namespace_like_java() {
        let mut kv = KvConfig::new();
        kv.put("ns", "a", "1");
        kv.put("ns", "b", "2");
        kv.delete("ns", "a");
        kv.delete("ns", "never");
        kv.delete("no-such-namespace", "a");
        assert_eq!(kv.get("ns", "a"), None);
        let left: Vec<_> = kv
            .namespace("ns")
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(left, vec!["b".to_owned()]);
        kv.delete("ns", "b");
        assert_eq!(kv.namespace("ns").map(BTreeMap::len), Some(0));
        assert_eq!(kv.namespace("no-such-namespace"), None);
    }
}
