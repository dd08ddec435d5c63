//! Rebalance: which of a topic's queues one member of a consumer group takes (protocol reference
//! §20.3), as RocketMQ's default `AllocateMessageQueueAveragely`.
//!
//! What it leaves out: the other strategies (by circle, by config, by machine room, consistent
//! hash) and the sorting itself: callers pass both lists sorted, as Java's `RebalanceImpl` does.

use crate::body::MessageQueue;

/// The queues `me` consumes: contiguous blocks of `queues`, the first `queues.len() %
/// consumer_ids.len()` members taking one extra. Both lists must be sorted (queues by topic,
/// broker name, queue id; ids lexicographically) so that every member computes the same split.
/// Empty when `me` is not in `consumer_ids` (Java logs and allocates nothing).
pub fn allocate_averagely(
    consumer_ids: &[String],
    queues: &[MessageQueue],
    me: &str,
) -> Vec<MessageQueue> {
    let Some(index) = consumer_ids.iter().position(|id| id == me) else {
        return Vec::new();
    };
    let (n, m) = (queues.len(), consumer_ids.len());
    let extra = n % m;
    let size = if n <= m {
        1
    } else if extra > 0 && index < extra {
        n / m + 1
    } else {
        n / m
    };
    let start = if extra > 0 && index < extra {
        index * size
    } else {
        index * size + extra
    };
    queues
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take(size)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queues(n: usize) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue {
                broker_name: format!("broker-{}", i / 4),
                queue_id: (i % 4) as i32,
                topic: "T".to_string(),
            })
            .collect()
    }

    fn ids(m: usize) -> Vec<String> {
        (0..m).map(|i| format!("c{i:03}")).collect()
    }

    fn positions(all: &[MessageQueue], mine: &[MessageQueue]) -> Vec<usize> {
        mine.iter()
            .map(|q| all.iter().position(|a| a == q).unwrap())
            .collect()
    }

    #[test]
    fn eight_queues_three_clients_as_the_reference_says() {
        let (all, cids) = (queues(8), ids(3));
        let got: Vec<_> = cids
            .iter()
            .map(|c| positions(&all, &allocate_averagely(&cids, &all, c)))
            .collect();
        assert_eq!(got, [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
    }

    #[test]
    fn more_clients_than_queues_leaves_some_idle() {
        let (all, cids) = (queues(2), ids(3));
        let got: Vec<_> = cids
            .iter()
            .map(|c| positions(&all, &allocate_averagely(&cids, &all, c)))
            .collect();
        assert_eq!(got, [vec![0], vec![1], vec![]]);
    }

    #[test]
    fn a_stranger_or_an_empty_group_gets_nothing() {
        assert!(allocate_averagely(&ids(2), &queues(8), "nobody").is_empty());
        assert!(allocate_averagely(&[], &queues(8), "c000").is_empty());
        assert!(allocate_averagely(&ids(2), &[], "c000").is_empty());
    }

    proptest! {
        #[test]
        fn every_queue_once_and_balanced(n in 0usize..64, m in 1usize..12) {
            let (all, cids) = (queues(n), ids(m));
            let shares: Vec<Vec<MessageQueue>> =
                cids.iter().map(|c| allocate_averagely(&cids, &all, c)).collect();
            let mut seen: Vec<MessageQueue> = shares.iter().flatten().cloned().collect();
            prop_assert_eq!(seen.len(), n);
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), n);
            let sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(max - min <= 1, "sizes {:?}", sizes);
            // Each share is a contiguous run, and members take runs in id order.
            let flat: Vec<usize> = shares.iter().flat_map(|s| positions(&all, s)).collect();
            prop_assert_eq!(flat, (0..n).collect::<Vec<_>>());
        }
    }
}
