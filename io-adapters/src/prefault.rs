//! Page faults of [`crate::MmapStorage`]'s writer mappings taken ahead of time on a background
//! thread, off the broker's core.
//!
//! The first store into a page of a shared file mapping faults: the kernel finds (or reads, or
//! for fallocated space zero-fills) the page-cache page, lets the filesystem mark it writable
//! and maps it. For the commit log that was about a fifth of the broker's CPU, all of it on the
//! core thread inside the `memcpy` of `write_at`. RocketMQ keeps this off its write path too
//! (its allocate service warms the next mapped file); here the unit is smaller:
//!
//! - Files are cut into [`WINDOW`]-sized windows. When a write ends in window `k` (k ≥ 1) and
//!   window `k + 1` has not been asked for yet, the rest of window `k` and all of window `k + 1`
//!   go to the thread, which faults them in for writing with one `MADV_POPULATE_WRITE` per
//!   window. An appender thus always finds the window it enters already mapped. A [`Frontier`]
//!   per file remembers how far requests went, so the write path costs one load and a compare.
//! - Writes inside the first window ask for nothing, so files smaller than a window (configs)
//!   and files written sparsely never dirty pages nobody writes: a consume-queue file (under
//!   6 MB) is populated only once a window of it has been written. Files of at least
//!   [`BIG_FILE`] (commit-log segments, index files) get their first window asked for when they
//!   are created, since the store starts appending into a new segment at once.
//! - Populating changes no byte (a page already in the cache keeps its contents, a new one is
//!   read or zero-filled exactly as a fault would), so the store may write into pages the thread
//!   is populating, and readers see the same bytes either way.
//! - Populated pages are dirty zeros until written; the kernel may write those back once. Ahead
//!   of any writer there are at most two windows of them per file, which also bounds what this
//!   adds to the broker's resident set (mapped file pages count there): 2 MiB windows keep it to
//!   a few MiB per file being appended to, and 2 MiB is still ~8 ms of appends at 250 MB/s,
//!   ample for the thread to populate the next one.
//! - The thread owns what it works on: a job holds an `Arc` of the writer mapping, so a file
//!   deleted (or a storage dropped) while its job waits stays mapped until the job ends; a job
//!   whose mapping nobody else holds any more is skipped window by window.
//! - The queue is bounded and requests never wait: when it is full the request is dropped, and
//!   those pages fault on first write as before. On kernels without `MADV_POPULATE_WRITE`
//!   (before 5.14) every job fails at once and nothing changes either.
//!
//! Left out: populating reader mappings (`read_at` does that itself), and any pacing of the
//! thread beyond one window per `madvise` call.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};

use memmap2::{Advice, MmapRaw};

/// The unit of population (and of the `madvise` calls).
pub(crate) const WINDOW: u64 = 2 << 20;

/// Files at least this long get their first window populated at create.
pub(crate) const BIG_FILE: u64 = 64 << 20;

/// Requests waiting for the thread; more are dropped.
const QUEUE: usize = 16;

const PAGE: u64 = 4096;

/// How far one file's writer mapping has been asked to be populated; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Frontier(AtomicU64);

impl Frontier {
    /// The range to populate after a write that ended at `end` in a file of `len` bytes, if the
    /// write reached a window whose successor has not been asked for. Concurrent callers never
    /// get overlapping ranges.
    pub(crate) fn ahead(&self, end: u64, len: u64) -> Option<Range<u64>> {
        let want = (end / WINDOW)
            .saturating_add(2)
            .saturating_mul(WINDOW)
            .min(len);
        let asked = self.0.load(Ordering::Relaxed);
        if end < WINDOW || want <= asked {
            return None;
        }
        self.0
            .compare_exchange(asked, want, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let from = asked.max(end - end % PAGE);
        (from < want).then_some(from..want)
    }

    /// The first window of a new file of `len` bytes, if it is a [`BIG_FILE`].
    pub(crate) fn first(&self, len: u64) -> Option<Range<u64>> {
        if len < BIG_FILE {
            return None;
        }
        let asked = self.0.fetch_max(WINDOW, Ordering::Relaxed);
        (asked < WINDOW).then_some(asked..WINDOW)
    }

    /// Everything not asked for yet, up to `len` (for warming a whole file).
    pub(crate) fn rest(&self, len: u64) -> Option<Range<u64>> {
        let asked = self.0.fetch_max(len, Ordering::Relaxed);
        (asked < len).then_some(asked..len)
    }
}

/// The handle of the populating thread, started on the first request.
#[derive(Debug, Default)]
pub(crate) struct Prefaulter {
    /// `None` when the thread could not be started: requests are then dropped.
    jobs: OnceLock<Option<SyncSender<Job>>>,
}

enum Job {
    Populate {
        map: Arc<MmapRaw>,
        range: Range<usize>,
    },
    /// Answered when every job queued before it has finished (tests wait on it).
    #[cfg(test)]
    Idle(mpsc::Sender<()>),
}

impl Prefaulter {
    /// Asks for `range` of `map` to be populated for writing; never blocks.
    pub(crate) fn request(&self, map: &Arc<MmapRaw>, range: Range<u64>) {
        let (Ok(start), Ok(end)) = (usize::try_from(range.start), usize::try_from(range.end))
        else {
            return;
        };
        let end = end.min(map.len());
        if start >= end {
            return;
        }
        if let Some(jobs) = self.jobs() {
            // Full (or the thread is gone): those pages fault on first write, as without us.
            let _ = jobs.try_send(Job::Populate {
                map: map.clone(),
                range: start..end,
            });
        }
    }

    /// Waits until every request made so far has been worked off.
    #[cfg(test)]
    pub(crate) fn wait_idle(&self) {
        if let Some(jobs) = self.jobs() {
            let (done, wait) = mpsc::channel();
            if jobs.send(Job::Idle(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    fn jobs(&self) -> Option<&SyncSender<Job>> {
        self.jobs.get_or_init(spawn).as_ref()
    }
}

/// Starts the thread; it ends when the last sender (its [`Prefaulter`]) is dropped and the
/// queue is empty.
fn spawn() -> Option<SyncSender<Job>> {
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("store-prefault".into())
        .spawn(move || work(&queue))
        .ok()?;
    Some(jobs)
}

fn work(queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Populate { map, range } => populate(&map, range),
            #[cfg(test)]
            Job::Idle(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn populate(map: &Arc<MmapRaw>, range: Range<usize>) {
    let step = usize::try_from(WINDOW).unwrap_or(usize::MAX);
    let mut at = range.start;
    while at < range.end {
        // Only this job still holds the mapping: its file was deleted or its storage dropped,
        // and populating would dirty pages nobody will write.
        if Arc::strong_count(map) == 1 {
            return;
        }
        let len = step.min(range.end - at);
        // Best effort: an error (no MADV_POPULATE_WRITE on this kernel, or a fatal signal)
        // leaves the rest to fault on first write.
        if map.advise_range(Advice::PopulateWrite, at, len).is_err() {
            return;
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_asks_one_window_ahead_once_per_window() {
        let f = Frontier::default();
        let len = 10 * WINDOW + 100;
        assert_eq!(f.ahead(100, len), None, "the first window is not populated");
        assert_eq!(f.ahead(WINDOW - 1, len), None);
        // Entering window 1 asks for the rest of it and window 2.
        assert_eq!(f.ahead(WINDOW + 10, len), Some(WINDOW..3 * WINDOW));
        assert_eq!(f.ahead(2 * WINDOW - 1, len), None);
        assert_eq!(f.ahead(2 * WINDOW + 5, len), Some(3 * WINDOW..4 * WINDOW));
        // A jump (a restart in the middle of a file) starts at the written page.
        assert_eq!(
            f.ahead(7 * WINDOW + PAGE + 3, len),
            Some(7 * WINDOW + PAGE..9 * WINDOW)
        );
        assert_eq!(f.ahead(9 * WINDOW + 1, len), Some(9 * WINDOW..len));
        assert_eq!(f.ahead(len, len), None, "nothing past the end");
        assert_eq!(f.rest(len), None);
    }

    #[test]
    fn big_files_start_with_their_first_window() {
        let f = Frontier::default();
        assert_eq!(f.first(BIG_FILE - 1), None, "a small file is left alone");
        assert_eq!(f.first(BIG_FILE), Some(0..WINDOW));
        assert_eq!(f.first(BIG_FILE), None, "asked once");
        assert_eq!(f.ahead(WINDOW / 2, BIG_FILE), None);
        assert_eq!(f.ahead(WINDOW + 1, BIG_FILE), Some(WINDOW..3 * WINDOW));
    }

    #[test]
    fn rest_covers_what_was_not_asked_for() {
        let f = Frontier::default();
        assert_eq!(f.ahead(WINDOW, 8 * WINDOW), Some(WINDOW..3 * WINDOW));
        assert_eq!(f.rest(8 * WINDOW), Some(3 * WINDOW..8 * WINDOW));
        assert_eq!(f.ahead(5 * WINDOW, 8 * WINDOW), None);
    }
}
