//! The broker's config files (protocol reference §16.6): `config/topics.json`,
//! `config/consumerOffset.json`, `config/subscriptionGroup.json` and `config/delayOffset.json`,
//! in RocketMQ's JSON shapes, written through the store's [`Storage`] so they live under the
//! store root as in Java.
//!
//! The atomic write and the `.bak` fallback on read are `store_core::config`'s; this file only
//! names which body type goes in which file and decides when to write (topics and groups after
//! every change, consumer and delay offsets on the broker's timer and at shutdown).

use store_core::config::{self, ConfigFile};
use store_core::storage::Storage;

use super::consumer_offset::ConsumerOffsetTable;
use super::schedule::DelayOffsetSerializeWrapper;
use super::subscription_group::{SubscriptionGroupTable, SubscriptionGroupWrapper};
use super::topic_config::TopicConfigTable;
use super::{Broker, BrokerOpenError};
use crate::body::{ConsumerOffsetSerializeWrapper, TopicConfigSerializeWrapper};

impl ConfigFile for TopicConfigSerializeWrapper {
    const FILE_NAME: &'static str = "topics.json";
}

impl ConfigFile for ConsumerOffsetSerializeWrapper {
    const FILE_NAME: &'static str = "consumerOffset.json";
}

impl ConfigFile for SubscriptionGroupWrapper {
    const FILE_NAME: &'static str = "subscriptionGroup.json";
}

impl ConfigFile for DelayOffsetSerializeWrapper {
    const FILE_NAME: &'static str = "delayOffset.json";
}

/// Reads `config/delayOffset.json`, if present.
pub(super) fn load_delay_offsets<S: Storage>(
    storage: &S,
) -> Result<Option<DelayOffsetSerializeWrapper>, BrokerOpenError> {
    Ok(config::load::<DelayOffsetSerializeWrapper, S>(storage)?)
}

/// Reads the three files into the fresh tables; absent files are skipped.
pub(super) fn load_all<S: Storage>(
    storage: &S,
    topics: &mut TopicConfigTable,
    groups: &mut SubscriptionGroupTable,
    offsets: &mut ConsumerOffsetTable,
) -> Result<(), BrokerOpenError> {
    if let Some(wrapper) = config::load::<TopicConfigSerializeWrapper, S>(storage)? {
        topics.load(wrapper);
    }
    if let Some(wrapper) = config::load::<SubscriptionGroupWrapper, S>(storage)? {
        groups.load(wrapper);
    }
    if let Some(wrapper) = config::load::<ConsumerOffsetSerializeWrapper, S>(storage)? {
        offsets.load(wrapper);
    }
    Ok(())
}

impl<S: Storage + Clone> Broker<S> {
    /// Writes each table that changed since it was last written (all of them with `force`).
    /// A failed write is logged and retried at the next period; the table stays dirty.
    pub(super) fn persist_config(&mut self, force: bool) {
        self.persist_tables(force);
        if (force || self.offsets.is_dirty()) && self.write_logged(&self.offsets.to_persist()) {
            self.offsets.mark_persisted();
        }
        // Only deliveries inside the flushed commit log count (see `schedule.rs`).
        self.schedule.note_flushed(self.store.flushed_offset());
        if (force || self.schedule.is_dirty()) && self.write_logged(&self.schedule.to_persist()) {
            self.schedule.mark_persisted();
        }
    }

    /// Writes the topic and subscription-group tables if changed. Called after every request,
    /// as Java persists a topic the moment a send auto-creates it: a crash must not leave
    /// acknowledged messages in a topic the restarted broker does not know.
    pub(super) fn persist_tables(&mut self, force: bool) {
        if (force || self.topics.is_dirty()) && self.write_logged(&self.topics.to_persist()) {
            self.topics.mark_persisted();
        }
        if (force || self.groups.is_dirty()) && self.write_logged(&self.groups.to_persist()) {
            self.groups.mark_persisted();
        }
    }

    fn write_logged<T: ConfigFile>(&self, value: &T) -> bool {
        match config::persist(self.store.storage(), value) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(file = T::FILE_NAME, error = %e, "cannot write config file");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::DataVersion;
    use store_core::storage::MemStorage;

    #[test]
    fn tables_survive_a_crash_in_their_files() {
        let disk = MemStorage::new();
        let mut wrapper = ConsumerOffsetSerializeWrapper {
            data_version: Some(DataVersion::default()),
            ..ConsumerOffsetSerializeWrapper::default()
        };
        wrapper
            .offset_table
            .entry("T@g".to_string())
            .or_default()
            .insert(3, 42);
        config::persist(&disk, &wrapper).unwrap();
        disk.crash(None);
        let back = config::load::<ConsumerOffsetSerializeWrapper, _>(&disk)
            .unwrap()
            .unwrap();
        assert_eq!(back, wrapper);
    }
}
