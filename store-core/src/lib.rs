//! The message store as pure logic: RocketMQ's commit log, consume queues, index, checkpoint and
//! crash recovery, laid out on disk as RocketMQ lays them out.
//!
//! # Layout
//! - [`format`]: byte layouts it owns: stored records, properties, sys flags, batch bodies,
//!   message ids, tag hash codes.
//! - [`config`]: the JSON files under `config/`, written atomically and read back with the
//!   `.bak` fallback; the table types are the broker's.
//! - [`consume_queue`]: per (topic, queueId) arrays of 20-byte units pointing into the commit log.
//! - [`index`]: RocketMQ's index files: commit-log offsets by message key and UNIQ_KEY.
//! - [`storage`]: the `Storage` trait and an in-memory implementation with a crash model.
//! - [`store`]: [`store::MessageStore`], the top-level store (RocketMQ's `DefaultMessageStore`):
//!   put, get, flush, retention and recovery behind one sans-IO API; start there.
//! - [`commit_log`]: segments, blank markers, truncation. [`checkpoint`]: the checkpoint file.
//!   [`flush`]: ASYNC_FLUSH and SYNC_FLUSH group-commit bookkeeping. [`retention`]: which
//!   segments expire and when writes are refused. [`dispatch`]: what a record contributes to
//!   consume queue and index. [`recovery`]: the crash-recovery walk. [`status`]: RocketMQ's put
//!   and get statuses. [`epoch`]: controller mode's epoch file (which master epoch wrote which
//!   stretch of the log) and the consistent point a slave truncates to.
//!
//! What it leaves out: the files themselves. Everything goes through a small `Storage` trait;
//! `io-adapters` implements it over memory-mapped files, tests and the simulator over memory.
//! Time arrives as an argument; nothing here reads a clock.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod commit_log;
pub mod config;
pub mod consume_queue;
pub mod dispatch;
pub mod epoch;
pub mod flush;
pub mod format;
pub mod index;
pub mod recovery;
pub mod retention;
pub mod status;
pub mod storage;
pub mod store;
pub mod timer;
