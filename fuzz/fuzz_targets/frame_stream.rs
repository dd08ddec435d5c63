#![no_main]
//! Fuzzes `FrameDecoder` as a socket would drive it: the input is a byte stream fed in chunks
//! whose sizes come from the input's first bytes. Checks that chunking changes nothing (same
//! commands, same final error as one whole read), that each frame consumes exactly its length,
//! and that every decoded command survives a JSON re-encode unchanged.
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto_core::{encode_frame, FrameDecoder, FrameError, RemotingCommand, SerializeType};

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(4));
    // Chunk sizes 1..=64, cycling; no size bytes means one whole read.
    let sizes: Vec<usize> = sizes.iter().map(|b| usize::from(b % 64) + 1).collect();
    // A small limit now and then, so FrameTooLarge is reachable.
    let limit = match sizes.first() {
        Some(1) => 64,
        _ => proto_core::FRAME_LEN_MAX_DEFAULT,
    };

    let (whole, whole_end) = decode_whole(stream, limit);
    let (chunked, chunked_end) = decode_chunked(stream, &sizes, limit);
    assert_eq!(whole, chunked, "chunking changed the commands");
    assert_eq!(whole_end, chunked_end, "chunking changed the outcome");

    for cmd in &whole {
        let mut frame = BytesMut::new();
        encode_frame(cmd, SerializeType::Json, &mut frame).expect("a decoded command re-encodes");
        let again = FrameDecoder::new()
            .decode(&mut frame)
            .expect("re-encoded frame decodes");
        assert_eq!(again.as_ref(), Some(cmd));
        assert!(frame.is_empty());
    }
});

fn decode_whole(stream: &[u8], limit: usize) -> (Vec<RemotingCommand>, Option<FrameError>) {
    let mut decoder = FrameDecoder::with_frame_len_max(limit);
    let mut buf = BytesMut::from(stream);
    let mut commands = Vec::new();
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(cmd)) => {
                let consumed = before - buf.len();
                // Total length word plus 4: what the frame declared is what was taken.
                let declared = stream.len() - before;
                let declared =
                    i32::from_be_bytes(stream[declared..declared + 4].try_into().expect("4 bytes"));
                assert_eq!(consumed, declared as usize + 4);
                commands.push(cmd);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumes nothing");
                return (commands, None);
            }
            Err(e) => {
                assert_eq!(buf.len(), before, "an error consumes nothing");
                return (commands, Some(e));
            }
        }
    }
}

fn decode_chunked(
    stream: &[u8],
    sizes: &[usize],
    limit: usize,
) -> (Vec<RemotingCommand>, Option<FrameError>) {
    let mut decoder = FrameDecoder::with_frame_len_max(limit);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut at = 0;
    let mut size = sizes.iter().copied().cycle();
    while at < stream.len() {
        let end = stream.len().min(at + size.next().unwrap_or(stream.len()));
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => commands.push(cmd),
                Ok(None) => break,
                Err(e) => return (commands, Some(e)),
            }
        }
    }
    (commands, None)
}
