//! Micro-benchmark of the stored-record codec: encode and decode (with body CRC) of records
//! with 128 B, 1 KiB and 4 KiB bodies. A plain `Instant` loop, no framework: prints ns/record
//! and MB/s of record bytes. Run with `cargo bench -p store-core --bench record`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store_core::format::record::{decode, decode_with, CrcCheck, MessageRecord};

fn main() {
    for body_len in [128usize, 1024, 4096] {
        let record = sample(body_len);
        let len = record.encoded_len();

        let mut out = Vec::with_capacity(len);
        let encode = measure(|| {
            out.clear();
            black_box(&record).encode_into(&mut out);
            black_box(&out);
        });
        report("encode", body_len, len, encode);

        let mut slot = vec![0u8; len];
        let encode_slice = measure(|| {
            black_box(&record).encode_to_slice(&mut slot);
            black_box(&slot);
        });
        report("encode_to_slice", body_len, len, encode_slice);

        let buf = Bytes::from(out.clone());
        let decode_crc = measure(|| {
            let _ = black_box(decode(black_box(&buf)));
        });
        report("decode (crc)", body_len, len, decode_crc);

        let decode_skip = measure(|| {
            let _ = black_box(decode_with(black_box(&buf), CrcCheck::Skip));
        });
        report("decode (no crc)", body_len, len, decode_skip);

        let crc = measure(|| {
            let _ = black_box(store_core::format::record::body_crc(black_box(
                &record.body,
            )));
        });
        report("body_crc alone", body_len, len, crc);
    }
}

/// Mean seconds per call over a run of at least 300 ms, after a warm-up.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        f();
    }
    let mut iterations = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        for _ in 0..1000 {
            f();
        }
        iterations += 1000;
    }
    start.elapsed().as_secs_f64() / f64::from(iterations)
}

fn report(what: &str, body_len: usize, record_len: usize, per_record_s: f64) {
    let ns = per_record_s * 1e9;
    let mb_per_s = record_len as f64 / per_record_s / 1e6;
    println!("{what:<16} body {body_len:>5} B  record {record_len:>5} B  {ns:>8.1} ns/record  {mb_per_s:>8.0} MB/s");
}

fn sample(body_len: usize) -> MessageRecord {
    let properties = "KEYS\u{1}order-42\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F00000100002A9F0000000000001234\u{2}WAIT\u{1}true\u{2}";
    MessageRecord {
        queue_id: 3,
        flag: 0,
        queue_offset: 123_456,
        physical_offset: 9_876_543_210,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.1.2.3:54321".parse().expect("literal address"),
        store_timestamp: 1_700_000_000_005,
        store_host: "10.1.2.4:10911".parse().expect("literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from((0..body_len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
        topic: Bytes::from_static(b"BenchTopic"),
        properties: Bytes::from(properties),
    }
}
