#![no_main]
//! Fuzzes controller mode's HA decoders (`proto_core::ha::auto_wire`) as a socket drives them:
//! the stream is fed whole and in chunks sized by the input's first bytes. Neither may panic,
//! chunking must change neither the frames nor the final outcome, and every decoded frame
//! must re-encode to bytes that decode to the same frame.
use libfuzzer_sys::fuzz_target;
use proto_core::ha::auto_wire::{
    encode_master_handshake, encode_master_transfer_header, encode_slave_handshake,
    encode_slave_report, AutoWireError, MasterFrame, MasterFrameDecoder, SlaveFrame,
    SlaveFrameDecoder,
};

/// The two decoders behind one shape.
trait Decoder: Default {
    type Frame: PartialEq + Clone + std::fmt::Debug;
    fn push(&mut self, bytes: &[u8]);
    fn next(&mut self) -> Result<Option<Self::Frame>, AutoWireError>;
    fn encode(frame: &Self::Frame) -> Vec<u8>;
}

impl Decoder for MasterFrameDecoder {
    type Frame = MasterFrame;
    fn push(&mut self, bytes: &[u8]) {
        MasterFrameDecoder::push(self, bytes);
    }
    fn next(&mut self) -> Result<Option<MasterFrame>, AutoWireError> {
        self.next_frame()
    }
    fn encode(frame: &MasterFrame) -> Vec<u8> {
        match frame {
            MasterFrame::Handshake(h) => encode_master_handshake(h),
            MasterFrame::Transfer(t) => {
                let len = u32::try_from(t.body.len()).expect("bounded by the decoder");
                let mut out =
                    encode_master_transfer_header(t.offset, t.epoch, t.confirm_offset, len)
                        .to_vec();
                out.extend_from_slice(&t.body);
                out
            }
        }
    }
}

impl Decoder for SlaveFrameDecoder {
    type Frame = SlaveFrame;
    fn push(&mut self, bytes: &[u8]) {
        SlaveFrameDecoder::push(self, bytes);
    }
    fn next(&mut self) -> Result<Option<SlaveFrame>, AutoWireError> {
        self.next_frame()
    }
    fn encode(frame: &SlaveFrame) -> Vec<u8> {
        match *frame {
            SlaveFrame::Handshake { broker_id, .. } => encode_slave_handshake(broker_id).to_vec(),
            SlaveFrame::Report(offset) => encode_slave_report(offset).to_vec(),
        }
    }
}

fn run<D: Decoder>(stream: &[u8], sizes: &[usize]) -> (Vec<D::Frame>, Option<AutoWireError>) {
    let mut d = D::default();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut size = sizes.iter().copied().cycle();
    loop {
        let end = stream.len().min(at + size.next().unwrap_or(stream.len()));
        d.push(&stream[at..end]);
        at = end;
        loop {
            match d.next() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        if at >= stream.len() {
            return (frames, None);
        }
    }
}

fn check<D: Decoder>(stream: &[u8], sizes: &[usize], reencodes: impl Fn(&D::Frame) -> bool) {
    let whole = run::<D>(stream, &[]);
    let chunked = run::<D>(stream, sizes);
    assert_eq!(whole, chunked, "chunking changed the outcome");
    for frame in whole.0.iter().filter(|f| reencodes(f)) {
        let (again, end) = run::<D>(&D::encode(frame), &[]);
        assert_eq!(end, None, "a re-encoded frame is valid");
        assert_eq!(again.as_slice(), std::slice::from_ref(frame));
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(4));
    // Chunk sizes 1..=64, cycling.
    let sizes: Vec<usize> = sizes.iter().map(|b| usize::from(b % 64) + 1).collect();
    check::<MasterFrameDecoder>(stream, &sizes, |_| true);
    // Handshake flags are not re-encoded (we always send 0), so only flagless ones compare.
    check::<SlaveFrameDecoder>(stream, &sizes, |f| {
        !matches!(
            f,
            SlaveFrame::Handshake {
                sync_from_last_file: true,
                ..
            } | SlaveFrame::Handshake {
                async_learner: true,
                ..
            }
        )
    });
});
