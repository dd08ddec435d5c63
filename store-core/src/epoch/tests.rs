//! Tests of the epoch file: format, atomic writes, ordering rules and the consistent point,
//! the last against a model of brokers replicating under changing masters.

use super::*;
use crate::storage::MemStorage;
use proptest::prelude::*;

fn entry(epoch: u32, start_offset: u64) -> EpochEntry {
    EpochEntry {
        epoch,
        start_offset,
    }
}

fn file_text(s: &MemStorage, name: &str) -> String {
    let len = s.len(name).unwrap().unwrap();
    String::from_utf8(s.read_at(name, 0, len).unwrap().to_vec()).unwrap()
}

#[test]
fn the_text_is_rocketmqs_including_its_crc() {
    let text = encode(&[entry(7, 7000), entry(8, 8000)]);
    // The example in RocketMQ's CheckpointFile documentation.
    assert_eq!(text, "2\n773307083\n7-7000\n8-8000\n");
    assert_eq!(
        decode(text.as_bytes()).unwrap(),
        Some(vec![entry(7, 7000), entry(8, 8000)])
    );
    // CRC 0 means unchecked; CRLF line ends read the same.
    assert_eq!(
        decode(b"1\r\n0\r\n3-10\r\n").unwrap(),
        Some(vec![entry(3, 10)])
    );
    assert_eq!(decode(b"").unwrap(), None);
    assert_eq!(decode(b"0\n0\n").unwrap(), Some(vec![]));
}

#[test]
fn damaged_text_is_refused() {
    // Wrong count, wrong crc, a bad number, entries out of order, garbage.
    assert!(decode(b"3\n0\n1-0\n2-5\n").is_err());
    assert!(decode(b"1\n12345\n1-0\n").is_err());
    assert!(decode(b"1\n0\n1-x\n").is_err());
    assert!(decode(b"2\n0\n2-0\n1-5\n").is_err());
    assert!(decode(b"2\n0\n1-5\n2-4\n").is_err());
    assert!(decode(b"2\n0\n1-5\n1-6\n").is_err());
    assert!(decode(b"\xff\xfe").is_err());
    assert!(decode(b"x\n").is_err());
    // A line that is not two fields is skipped, as RocketMQ does, and then fails the count.
    assert!(decode(b"2\n0\n1-0\njunk\n").is_err());
    assert_eq!(
        decode(b"1\n0\n1-0\njunk\n").unwrap(),
        Some(vec![entry(1, 0)])
    );
}

#[test]
fn appends_persist_and_reload() {
    let s = MemStorage::new();
    let mut f = EpochFile::load(&s).unwrap();
    assert!(f.entries().is_empty());
    assert_eq!(f.last_epoch(), None);
    assert!(f.append(&s, 1, 0).unwrap());
    assert!(f.append(&s, 3, 100).unwrap());
    // An epoch that wrote nothing stays; the next one starts at the same offset.
    assert!(f.append(&s, 4, 100).unwrap());
    assert_eq!(file_text(&s, EPOCH_FILE), encode(f.entries()));
    let back = EpochFile::load(&s).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.last_epoch(), Some(4));
    assert_eq!(back.last(), Some(entry(4, 100)));
    assert_eq!(back.entry(3), Some(entry(3, 100)));
    assert_eq!(back.entry(2), None);
    // The previous version is the backup.
    assert_eq!(
        decode(file_text(&s, &format!("{EPOCH_FILE}.bak")).as_bytes()).unwrap(),
        Some(vec![entry(1, 0), entry(3, 100)])
    );
}

#[test]
fn stale_epochs_and_backward_starts_are_typed_errors() {
    let s = MemStorage::new();
    let mut f = EpochFile::new();
    f.append(&s, 5, 100).unwrap();
    assert_eq!(
        f.append(&s, 4, 200),
        Err(EpochError::Stale { epoch: 4, last: 5 })
    );
    assert_eq!(
        f.append(&s, 6, 99),
        Err(EpochError::StartBehind {
            epoch: 6,
            start_offset: 99,
            last: 5,
            last_start: 100
        })
    );
    assert!(matches!(
        f.append(&s, 5, 50),
        Err(EpochError::StartBehind { .. })
    ));
    // Re-recording the newest epoch is a no-op, and writes nothing.
    let before = file_text(&s, EPOCH_FILE);
    assert_eq!(f.append(&s, 5, 150), Ok(false));
    assert_eq!(f.entries(), &[entry(5, 100)]);
    assert_eq!(file_text(&s, EPOCH_FILE), before);
    assert!(EpochFile::from_entries(vec![entry(1, 0), entry(1, 5)]).is_err());
    assert!(EpochFile::from_entries(vec![entry(2, 0), entry(1, 5)]).is_err());
    assert!(EpochFile::from_entries(vec![entry(1, 9), entry(2, 5)]).is_err());
    assert!(EpochFile::from_entries(vec![entry(1, 0), entry(2, 0), entry(4, 7)]).is_ok());
}

#[test]
fn a_damaged_file_falls_back_to_its_backup_and_both_damaged_names_the_file() {
    let s = MemStorage::new();
    let mut f = EpochFile::new();
    f.append(&s, 1, 0).unwrap();
    f.append(&s, 2, 40).unwrap();
    // Damage the newest entry's digits: the CRC catches it, the backup has epoch 1 only.
    let len = s.len(EPOCH_FILE).unwrap().unwrap();
    s.corrupt_byte(EPOCH_FILE, len - 2).unwrap();
    assert_eq!(EpochFile::load(&s).unwrap().entries(), &[entry(1, 0)]);
    s.corrupt_byte(&format!("{EPOCH_FILE}.bak"), 0).unwrap();
    match EpochFile::load(&s) {
        Err(EpochError::Corrupt { name, .. }) => assert_eq!(name, EPOCH_FILE),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_crash_at_any_write_leaves_the_old_or_the_new_entries() {
    // Fail the n-th storage write of an append, crash, reload: old or new, never a mix.
    for n in 1..=4 {
        let s = MemStorage::new();
        let mut f = EpochFile::new();
        f.append(&s, 1, 0).unwrap();
        f.append(&s, 2, 10).unwrap();
        let old = f.clone();
        s.fail_write_after(n);
        let result = f.append(&s, 3, 20);
        s.crash(Some(n * 7));
        let back = EpochFile::load(&s).unwrap();
        if result.is_err() {
            assert_eq!(f, old, "a failed append changes nothing in memory");
        }
        assert!(
            back == old || back.entries() == [entry(1, 0), entry(2, 10), entry(3, 20)],
            "write {n}: {back:?}"
        );
    }
}

#[test]
fn truncation_by_suffix_and_prefix() {
    let s = MemStorage::new();
    let mut f = EpochFile::new();
    for (e, start) in [(1, 0), (2, 100), (3, 100), (5, 300)] {
        f.append(&s, e, start).unwrap();
    }
    assert_eq!(f.end_offset(1, 400), Some(100));
    assert_eq!(f.end_offset(2, 400), Some(100));
    assert_eq!(f.end_offset(5, 400), Some(400));
    assert_eq!(f.end_offset(5, 250), Some(250), "never past the log's end");
    assert_eq!(f.end_offset(4, 400), None);
    assert_eq!(f.entry_at(0), Some(entry(1, 0)));
    assert_eq!(f.entry_at(99), Some(entry(1, 0)));
    assert_eq!(
        f.entry_at(100),
        Some(entry(3, 100)),
        "the empty epoch 2 wrote nothing"
    );
    assert_eq!(f.entry_at(1000), Some(entry(5, 300)));

    assert_eq!(f.truncate_prefix_below(&s, 99).unwrap(), 0);
    assert_eq!(f.truncate_prefix_below(&s, 100).unwrap(), 2);
    assert_eq!(f.entries(), &[entry(3, 100), entry(5, 300)]);
    assert_eq!(
        f.truncate_prefix_below(&s, u64::MAX).unwrap(),
        1,
        "the newest stays"
    );
    assert_eq!(f.entries(), &[entry(5, 300)]);

    let mut f = EpochFile::new();
    for (e, start) in [(1, 0), (2, 100), (3, 100), (5, 300)] {
        f.append(&s, e, start).unwrap();
    }
    assert_eq!(f.truncate_suffix_from(&s, 301).unwrap(), 0);
    assert_eq!(f.truncate_suffix_from(&s, 300).unwrap(), 1);
    assert_eq!(f.truncate_suffix_from(&s, 100).unwrap(), 2);
    assert_eq!(f.entries(), &[entry(1, 0)]);
    assert_eq!(EpochFile::load(&s).unwrap(), f);
    assert_eq!(f.truncate_suffix_from(&s, 0).unwrap(), 1);
    // Empty is written as empty, not read back from the backup.
    assert!(EpochFile::load(&s).unwrap().entries().is_empty());
    assert_eq!(file_text(&s, EPOCH_FILE), "0\n0\n");
}

#[test]
fn consistent_point_follows_rocketmq() {
    let f = |entries: &[(u32, u64)]| {
        EpochFile::from_entries(entries.iter().map(|&(e, s)| entry(e, s)).collect()).unwrap()
    };
    let master = [entry(1, 0), entry(2, 100), entry(3, 250)];
    // Same history, the slave behind: its own end.
    assert_eq!(
        f(&[(1, 0), (2, 100)]).consistent_point(&master, 300, 180),
        Some(180)
    );
    // Same history, the slave's copy of epoch 3 ahead of the master's end (it cannot be, but
    // the answer still never passes the master's end).
    assert_eq!(
        f(&[(1, 0), (2, 100), (3, 250)]).consistent_point(&master, 300, 320),
        Some(300)
    );
    // The slave was master of epoch 2' after 1 and wrote past where epoch 2 began.
    assert_eq!(
        f(&[(1, 0), (4, 120)]).consistent_point(&master, 300, 200),
        Some(100)
    );
    // An epoch starting elsewhere is a different epoch.
    assert_eq!(
        f(&[(1, 0), (2, 90)]).consistent_point(&master, 300, 200),
        Some(90)
    );
    // Nothing shared.
    assert_eq!(f(&[(7, 0)]).consistent_point(&master, 300, 200), None);
    assert_eq!(f(&[(1, 0)]).consistent_point(&[], 0, 200), None);
    // No epochs of our own: keep the log, up to the master's end.
    assert_eq!(
        EpochFile::new().consistent_point(&master, 300, 200),
        Some(200)
    );
    assert_eq!(
        EpochFile::new().consistent_point(&master, 300, 500),
        Some(300)
    );
}

/// One broker of the model: its log as one epoch label per byte, and its epoch file.
#[derive(Debug, Clone, Default)]
struct Broker {
    log: Vec<u32>,
    file: EpochFile,
}

/// One epoch of the model: who is master, what it writes, how much the other copies after.
#[derive(Debug, Clone)]
struct Turn {
    master: usize,
    writes: usize,
    /// `None`: the other broker is cut off this epoch; else the share of the master's data
    /// past the consistent point it copies, in percent.
    copy_percent: Option<usize>,
}

fn turn() -> impl Strategy<Value = Turn> {
    (0..3usize, 0..6usize, proptest::option::of(0..=100usize)).prop_map(
        |(master, writes, copy_percent)| Turn {
            master,
            writes,
            copy_percent,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Three brokers, masters changing each epoch (clean or not), slaves copying part of the
    /// master's log after cutting back to the consistent point. Whatever the history, the
    /// consistent point lies within both logs and the logs agree below it; the epoch files
    /// accept every append the protocol makes.
    #[test]
    fn logs_agree_below_the_consistent_point(turns in proptest::collection::vec(turn(), 1..12)) {
        let disk = MemStorage::new();
        let mut brokers = [Broker::default(), Broker::default(), Broker::default()];
        for (epoch, t) in (1u32..).zip(&turns) {
            let m = t.master;
            let start = brokers[m].log.len() as u64;
            prop_assert!(brokers[m].file.append(&disk, epoch, start).unwrap());
            brokers[m].log.extend(std::iter::repeat_n(epoch, t.writes));
            let Some(percent) = t.copy_percent else { continue };
            let master = brokers[m].clone();
            for (i, slave) in brokers.iter_mut().enumerate() {
                if i == m {
                    continue;
                }
                let Some(point) = slave.file.consistent_point(
                    master.file.entries(), master.log.len() as u64, slave.log.len() as u64)
                else {
                    continue;
                };
                let c = usize::try_from(point).unwrap();
                prop_assert!(c <= master.log.len() && c <= slave.log.len());
                prop_assert_eq!(&slave.log[..c], &master.log[..c], "epochs {:?} vs {:?}",
                    slave.file.entries(), master.file.entries());
                slave.log.truncate(c);
                slave.file.truncate_suffix_from(&disk, point).unwrap();
                let copy = (master.log.len() - c) * percent / 100;
                for &label in &master.log[c..c + copy] {
                    if slave.file.last_epoch() != Some(label) {
                        let their = master.file.entry(label).unwrap();
                        slave.file.append(&disk, label, their.start_offset).unwrap();
                    }
                    slave.log.push(label);
                }
            }
        }
    }

    #[test]
    fn encode_decode_round_trip(mut starts in proptest::collection::vec(0u64..1 << 40, 0..8)) {
        starts.sort_unstable();
        let entries: Vec<EpochEntry> =
            (1u32..).step_by(2).zip(starts).map(|(e, s)| entry(e, s)).collect();
        prop_assert_eq!(decode(encode(&entries).as_bytes()).unwrap(), Some(entries));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }
}
