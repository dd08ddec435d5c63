//! [`ProducerTable`]: producer groups announced by HEART_BEAT (Java `ProducerManager`): each
//! group's live connections, used for GET_PRODUCER_CONNECTION_LIST and to pick a connection for
//! transaction checks.
//!
//! What it leaves out: producer change listeners and the `enableRegisterProducer` switch.

use std::collections::BTreeMap;

use super::consumer_manager::{ClientChannelInfo, CHANNEL_EXPIRY_MS};
use crate::body::ProducerConnection;
use crate::role::ConnId;

/// Producer group -> connection -> channel, plus client id -> connection.
#[derive(Clone, Debug)]
pub struct ProducerTable {
    groups: BTreeMap<String, BTreeMap<ConnId, ClientChannelInfo>>,
    /// The latest connection each client id registered on.
    clients: BTreeMap<String, ConnId>,
    channel_expiry_ms: u64,
}

/// A producer channel dropped by the idle scan; the broker closes its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredProducer {
    pub group: String,
    pub channel: ClientChannelInfo,
}

impl Default for ProducerTable {
    fn default() -> ProducerTable {
        ProducerTable::new(CHANNEL_EXPIRY_MS)
    }
}

impl ProducerTable {
    /// `channel_expiry_ms`: Java's fixed 120 s.
    pub fn new(channel_expiry_ms: u64) -> ProducerTable {
        ProducerTable {
            groups: BTreeMap::new(),
            clients: BTreeMap::new(),
            channel_expiry_ms,
        }
    }

    /// One ProducerData of a HEART_BEAT: adds the connection to the group or refreshes it.
    pub fn register(&mut self, group: &str, channel: ClientChannelInfo, now_ms: u64) {
        let table = self.groups.entry(group.to_string()).or_default();
        match table.get_mut(&channel.conn) {
            Some(existing) => existing.last_update_ms = now_ms,
            None => {
                self.clients.insert(channel.client_id.clone(), channel.conn);
                table.insert(
                    channel.conn,
                    ClientChannelInfo {
                        last_update_ms: now_ms,
                        ..channel
                    },
                );
            }
        }
    }

    /// UNREGISTER_CLIENT for a producer group, on the connection it arrived on.
    pub fn unregister(&mut self, group: &str, conn: ConnId, client_id: &str) {
        let Some(table) = self.groups.get_mut(group) else {
            return;
        };
        table.remove(&conn);
        self.clients.remove(client_id);
        if table.is_empty() {
            self.groups.remove(group);
        }
    }

    /// The connection closed: it leaves every group. Returns the groups it left.
    pub fn on_conn_closed(&mut self, conn: ConnId) -> Vec<String> {
        self.remove_channels(|c| c.conn == conn)
            .into_iter()
            .map(|e| e.group)
            .collect()
    }

    /// Removes channels without a heartbeat for more than the expiry.
    pub fn scan_expired(&mut self, now_ms: u64) -> Vec<ExpiredProducer> {
        let expiry = self.channel_expiry_ms;
        self.remove_channels(|c| now_ms.saturating_sub(c.last_update_ms) > expiry)
    }

    /// The connection a client id last registered on.
    pub fn find_channel(&self, client_id: &str) -> Option<ConnId> {
        self.clients.get(client_id).copied()
    }

    pub fn group_online(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|t| !t.is_empty())
    }

    /// A connection of `group` for a transaction check, rotating by `seq` (Java keeps a
    /// counter; the broker passes its own).
    pub fn pick_channel(&self, group: &str, seq: usize) -> Option<ConnId> {
        let table = self.groups.get(group)?;
        let n = table.len();
        if n == 0 {
            return None;
        }
        table.keys().nth(seq % n).copied()
    }

    /// The ProducerConnection body; `addr_of` gives each connection's peer `ip:port`.
    pub fn producer_connection(
        &self,
        group: &str,
        addr_of: impl Fn(ConnId) -> String,
    ) -> ProducerConnection {
        let connection_set = self
            .groups
            .get(group)
            .map(|t| {
                t.values()
                    .map(|c| c.to_connection(addr_of(c.conn)))
                    .collect()
            })
            .unwrap_or_default();
        ProducerConnection { connection_set }
    }

    /// All groups with their channels.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &BTreeMap<ConnId, ClientChannelInfo>)> {
        self.groups.iter()
    }

    fn remove_channels(
        &mut self,
        mut doomed: impl FnMut(&ClientChannelInfo) -> bool,
    ) -> Vec<ExpiredProducer> {
        let mut removed = Vec::new();
        for (group, table) in &mut self.groups {
            table.retain(|_, c| {
                if !doomed(c) {
                    return true;
                }
                removed.push(ExpiredProducer {
                    group: group.clone(),
                    channel: c.clone(),
                });
                false
            });
        }
        for e in &removed {
            // Only forget the client id if it still points at the removed connection.
            if self.clients.get(&e.channel.client_id) == Some(&e.channel.conn) {
                self.clients.remove(&e.channel.client_id);
            }
        }
        self.groups.retain(|_, t| !t.is_empty());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LanguageCode;

    fn channel(conn: u64, client: &str) -> ClientChannelInfo {
        ClientChannelInfo::new(ConnId(conn), client, LanguageCode::Cpp, 1, 0)
    }

    #[test]
    fn register_refresh_and_expire() {
        let mut t = ProducerTable::default();
        t.register("pg", channel(1, "c1"), 0);
        t.register("pg", channel(2, "c2"), 0);
        t.register("pg", channel(1, "c1"), 100_000);
        assert_eq!(t.find_channel("c1"), Some(ConnId(1)));
        let expired = t.scan_expired(CHANNEL_EXPIRY_MS + 1);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].channel.conn, ConnId(2));
        assert_eq!(t.find_channel("c2"), None);
        assert!(t.group_online("pg"));
        assert_eq!(t.pick_channel("pg", 7), Some(ConnId(1)));
        let body = t.producer_connection("pg", |c| format!("h:{}", c.0));
        assert_eq!(body.connection_set[0].client_addr, "h:1");
    }

    #[test]
    fn close_and_unregister() {
        let mut t = ProducerTable::default();
        t.register("a", channel(1, "c1"), 0);
        t.register("b", channel(1, "c1"), 0);
        t.register("b", channel(2, "c2"), 0);
        assert_eq!(
            t.on_conn_closed(ConnId(1)),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(!t.group_online("a"));
        assert_eq!(t.find_channel("c1"), None);
        t.unregister("b", ConnId(2), "c2");
        assert!(!t.group_online("b"));
        assert_eq!(t.pick_channel("b", 0), None);
        assert_eq!(t.groups().count(), 0);
    }
}
