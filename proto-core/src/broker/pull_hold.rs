//! [`PullHold`]: parked long polls (Java `PullRequestHoldService`), keyed by topic and queue.
//!
//! A PULL_MESSAGE that finds nothing new and has the suspend flag is parked here instead of
//! answered. It leaves when a message that passes its filter arrives on its queue (the broker
//! re-runs it and answers), when its hold time passes (the broker re-runs it once more and
//! answers whatever that gives, normally PULL_NOT_FOUND), or when its connection closes
//! (dropped). The number parked is bounded (style S8); the broker answers at once when full.
//!
//! What it leaves out: executing requests, which is the broker's (`pull.rs`).

use std::collections::BTreeMap;

use super::pull::PullFilter;
use crate::header::PullMessageRequestHeader;
use crate::role::ConnId;
use crate::RemotingCommand;

/// One parked pull.
#[derive(Debug, Clone)]
pub(super) struct HeldPull {
    pub conn: ConnId,
    pub request: RemotingCommand,
    pub header: PullMessageRequestHeader,
    pub filter: PullFilter,
    /// When the hold time ends and the request is answered regardless.
    pub deadline_ms: u64,
}

/// Parked pulls by `(topic, queueId)`, each list in arrival order.
#[derive(Debug, Default)]
pub(super) struct PullHold {
    queues: BTreeMap<(String, i32), Vec<HeldPull>>,
    len: usize,
    max: usize,
}

impl PullHold {
    pub fn new(max: usize) -> PullHold {
        PullHold {
            queues: BTreeMap::new(),
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Parks `held`; gives it back when the bound is reached.
    pub fn park(&mut self, held: HeldPull) -> Result<(), Box<HeldPull>> {
        if self.len >= self.max {
            return Err(Box::new(held));
        }
        let key = (held.header.topic.clone(), held.header.queue_id);
        self.queues.entry(key).or_default().push(held);
        self.len += 1;
        Ok(())
    }

    /// A message arrived on `topic`/`queue_id`, whose max offset is now `max_offset`; its tag
    /// code is `tags_code` (`None`: unknown, e.g. a batch, which wakes every waiter). Takes the
    /// pulls waiting below `max_offset` whose filter accepts the code.
    pub fn take_woken(
        &mut self,
        topic: &str,
        queue_id: i32,
        max_offset: u64,
        tags_code: Option<i64>,
    ) -> Vec<HeldPull> {
        // Every put lands here; with nothing parked, skip building the owned key.
        if self.len == 0 {
            return Vec::new();
        }
        let key = (topic.to_string(), queue_id);
        let Some(list) = self.queues.get_mut(&key) else {
            return Vec::new();
        };
        let (woken, kept): (Vec<HeldPull>, Vec<HeldPull>) =
            std::mem::take(list).into_iter().partition(|held| {
                let below =
                    u64::try_from(held.header.queue_offset).map_or(true, |o| o < max_offset);
                below && tags_code.is_none_or(|code| held.filter.matches_code(code))
            });
        *list = kept;
        if list.is_empty() {
            self.queues.remove(&key);
        }
        self.len -= woken.len();
        woken
    }

    /// Takes every pull whose deadline is at or before `now_ms`.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<HeldPull> {
        let mut expired = Vec::new();
        self.queues.retain(|_, list| {
            let (gone, kept): (Vec<HeldPull>, Vec<HeldPull>) = std::mem::take(list)
                .into_iter()
                .partition(|held| held.deadline_ms <= now_ms);
            expired.extend(gone);
            *list = kept;
            !list.is_empty()
        });
        self.len -= expired.len();
        expired
    }

    /// Drops the pulls of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let mut removed = 0;
        self.queues.retain(|_, list| {
            let before = list.len();
            list.retain(|held| held.conn != conn);
            removed += before - list.len();
            !list.is_empty()
        });
        self.len -= removed;
    }

    /// The earliest deadline, if anything is parked.
    pub fn next_deadline(&self) -> Option<u64> {
        self.queues
            .values()
            .flat_map(|list| list.iter().map(|held| held.deadline_ms))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestCode;

    fn held(conn: u64, topic: &str, queue_id: i32, offset: i64, deadline_ms: u64) -> HeldPull {
        HeldPull {
            conn: ConnId(conn),
            request: RemotingCommand::request(RequestCode::PullMessage.value(), 1),
            header: PullMessageRequestHeader {
                consumer_group: "g".into(),
                topic: topic.into(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: 2,
                commit_offset: 0,
                suspend_timeout_millis: 15_000,
                subscription: None,
                sub_version: 0,
                expression_type: None,
                max_msg_bytes: None,
                request_source: None,
                proxy_froward_client_id: None,
            },
            filter: PullFilter::from_expression("TagA"),
            deadline_ms,
        }
    }

    #[test]
    fn arrivals_wake_matching_waiters_below_the_new_max() {
        let mut hold = PullHold::new(10);
        hold.park(held(1, "T", 0, 0, 100)).unwrap();
        hold.park(held(2, "T", 0, 5, 100)).unwrap();
        hold.park(held(3, "T", 1, 0, 100)).unwrap();
        let other_tag = store_core::format::tag::tag_hash_code("TagB");
        assert!(hold.take_woken("T", 0, 1, Some(other_tag)).is_empty());
        let tag_a = store_core::format::tag::tag_hash_code("TagA");
        let woken = hold.take_woken("T", 0, 1, Some(tag_a));
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].conn, ConnId(1));
        assert_eq!(hold.len(), 2);
        assert_eq!(hold.take_woken("T", 0, 6, None).len(), 1);
        assert_eq!(hold.len(), 1);
    }

    #[test]
    fn bound_expiry_and_closed_connections() {
        let mut hold = PullHold::new(2);
        hold.park(held(1, "T", 0, 0, 100)).unwrap();
        hold.park(held(2, "T", 0, 0, 50)).unwrap();
        assert!(hold.park(held(3, "T", 0, 0, 10)).is_err());
        assert_eq!(hold.next_deadline(), Some(50));
        let expired = hold.take_expired(60);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].conn, ConnId(2));
        hold.remove_conn(ConnId(1));
        assert_eq!(hold.len(), 0);
        assert_eq!(hold.next_deadline(), None);
    }
}
