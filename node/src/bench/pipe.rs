//! [`Pipe`]: one connection owned by one sync sender, request then response, with no tasks,
//! channels or pending-request table between them.
//!
//! The shared [`io_adapters::client::RemotingClient`] multiplexes many callers over one socket
//! (a writer task, a reader task, a oneshot per request); that costs the bench a few task
//! wake-ups per message on the same two cores as the broker. A sync sender has exactly one
//! request in flight, so it can write the frame and read the answer itself. It is still a plain
//! RocketMQ client on the wire: JSON headers, opaque matched on the answer.
//!
//! Sends need only the answer's code: [`Pipe::call_frame_code`] reads `code`, `opaque` and
//! `flag` from a JSON header without decoding the rest (the full decode of a send answer's
//! header was over half of the bench's instructions per message). Anything that scanner does
//! not take in stride (binary headers, escapes in member names, numbers as strings, a partial
//! frame) goes through the full [`FrameDecoder`], so the answer is read the same either way.
//!
//! Left out: server-initiated requests (a producer gets none worth acting on; they are skipped).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::{RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a call failed; counted by kind like the shared client's errors.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection closed")]
    Closed,
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

impl PipeError {
    /// The kind a failed request is counted under (the shared client's kinds).
    pub fn kind(&self) -> String {
        match self {
            PipeError::Connect { .. } => "connect",
            PipeError::Closed => "connection closed",
            PipeError::Timeout(_) => "timeout",
        }
        .to_string()
    }
}

/// One connection, one request at a time.
pub struct Pipe {
    stream: Option<TcpStream>,
    out: BytesMut,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_opaque: i32,
}

impl Pipe {
    pub async fn connect(addr: &str) -> Result<Pipe, PipeError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| PipeError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Pipe {
            stream: Some(stream),
            out: BytesMut::with_capacity(4096),
            buf: BytesMut::with_capacity(16 * 1024),
            decoder: FrameDecoder::new(),
            next_opaque: 1,
        })
    }

    /// Sends `cmd` (its opaque is assigned here) and waits for its response. After a timeout
    /// or an I/O error the connection is dropped and every later call fails with `Closed`.
    pub async fn call(
        &mut self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, PipeError> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        cmd.opaque = opaque;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let result = match encode_frame(&cmd, SerializeType::Json, &mut out) {
            Ok(()) => self.call_frame(&out, opaque, timeout).await,
            Err(_) => Err(PipeError::Closed),
        };
        self.out = out;
        result
    }

    /// Sends an already encoded request `frame` whose opaque is `opaque` and waits for its
    /// response; failures as for [`Pipe::call`].
    pub async fn call_frame(
        &mut self,
        frame: &[u8],
        opaque: i32,
        timeout: Duration,
    ) -> Result<RemotingCommand, PipeError> {
        match self.exchange(frame, opaque, timeout, Want::Command).await? {
            Reply::Command(cmd) => Ok(cmd),
            // `Want::Command` is always answered with a command.
            Reply::Code(_) => Err(PipeError::Closed),
        }
    }

    /// As [`Pipe::call_frame`], but returns only the response's code.
    pub async fn call_frame_code(
        &mut self,
        frame: &[u8],
        opaque: i32,
        timeout: Duration,
    ) -> Result<i32, PipeError> {
        match self.exchange(frame, opaque, timeout, Want::Code).await? {
            Reply::Command(cmd) => Ok(cmd.code),
            Reply::Code(code) => Ok(code),
        }
    }

    async fn exchange(
        &mut self,
        frame: &[u8],
        opaque: i32,
        timeout: Duration,
        want: Want,
    ) -> Result<Reply, PipeError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(PipeError::Closed);
        };
        let exchange = round_trip(
            stream,
            &mut self.buf,
            &mut self.decoder,
            frame,
            opaque,
            want,
        );
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => {
                self.stream = None;
                Err(PipeError::Closed)
            }
            Err(_) => {
                // A late answer would be read as the next call's: start no new call here.
                self.stream = None;
                Err(PipeError::Timeout(timeout))
            }
        }
    }
}

/// What a caller needs of the answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Command,
    Code,
}

enum Reply {
    Command(RemotingCommand),
    Code(i32),
}

async fn round_trip(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    frame: &[u8],
    opaque: i32,
    want: Want,
) -> Option<Reply> {
    stream.write_all(frame).await.ok()?;
    loop {
        loop {
            if want == Want::Code {
                if let Some(head) = peek_json_head(buf) {
                    buf.advance(head.frame_len);
                    if head.flag & RESPONSE_FLAG != 0 && head.opaque == opaque {
                        return Some(Reply::Code(head.code));
                    }
                    continue;
                }
            }
            match decoder.decode(buf).ok()? {
                Some(cmd) if cmd.is_response() && cmd.opaque == opaque => {
                    return Some(Reply::Command(cmd))
                }
                Some(_) => {}
                None => break,
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// The response bit of a command's `flag` (RocketMQ's RPC_TYPE bit).
const RESPONSE_FLAG: i32 = 1;

/// The members of a frame's header a sender acts on, and the frame's whole length.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    frame_len: usize,
    code: i32,
    opaque: i32,
    flag: i32,
}

/// `code`, `opaque` and `flag` of the whole JSON frame at the front of `buf`, if it holds one
/// whose header this plain scanner reads completely; `None` leaves the frame to the full
/// decoder (which also judges malformed frames). Members other than the three are only
/// skipped, not checked: a header the full decoder would refuse for, say, a bad escape in a
/// remark is still counted by its code here.
fn peek_json_head(buf: &[u8]) -> Option<Head> {
    let total = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let meta = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    if meta >> 24 != 0 {
        return None;
    }
    let header_len = (meta & 0x00FF_FFFF) as usize;
    let frame_len = total.checked_add(4)?;
    // The frame must be complete and the header inside it.
    buf.get(..frame_len)?;
    let header = buf.get(8..8usize.checked_add(header_len)?.min(frame_len))?;
    if header.len() != header_len {
        return None;
    }
    let (code, opaque, flag) = json_head(header)?;
    Some(Head {
        frame_len,
        code,
        opaque,
        flag,
    })
}

/// Reads `code`, `opaque` and `flag` of a JSON header, skipping everything else; `None`
/// when any of the three is missing, repeated or not a plain integer, a top-level member name
/// has an escape, the header is not UTF-8, or the text after the outer object is not blank.
///
/// Walks the few bytes between strings one by one and jumps over each string with `find`
/// (memchr): a string at depth 1 followed by `:` is a member name, so names and values nested
/// in `extFields` are never read as the command's own.
fn json_head(h: &[u8]) -> Option<(i32, i32, i32)> {
    let text = std::str::from_utf8(h).ok()?;
    let (mut code, mut opaque, mut flag) = (None, None, None);
    let mut i = ws(h, 0);
    if h.get(i) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    loop {
        match *h.get(i)? {
            b'"' => {
                let end = string_end(text, i + 1)?;
                let after = ws(h, end + 1);
                if depth == 1 && h.get(after) == Some(&b':') {
                    let name = h.get(i + 1..end)?;
                    if name.contains(&b'\\') {
                        return None;
                    }
                    let slot = match name {
                        b"code" => Some(&mut code),
                        b"opaque" => Some(&mut opaque),
                        b"flag" => Some(&mut flag),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        if slot.is_some() {
                            return None;
                        }
                        let (value, value_end) = int(h, ws(h, after + 1))?;
                        *slot = Some(value);
                        i = value_end;
                        continue;
                    }
                }
                i = end + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            _ => i += 1,
        }
    }
    (ws(h, i) == h.len()).then_some((code?, opaque?, flag?))
}

/// The index of the quote closing the string whose text starts at `from`: the first quote not
/// escaped by an odd run of backslashes before it.
fn string_end(text: &str, from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let quote = i + text.get(i..)?.find('"')?;
        let bytes = text.as_bytes().get(from..quote)?;
        let backslashes = bytes.iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        i = quote + 1;
    }
}

/// The index of the first non-whitespace byte at or after `i`.
fn ws(h: &[u8], mut i: usize) -> usize {
    while matches!(h.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A plain JSON integer at `i` that fits an i32, and the index after it.
fn int(h: &[u8], i: usize) -> Option<(i32, usize)> {
    let negative = h.get(i) == Some(&b'-');
    let start = i + usize::from(negative);
    let digits = h
        .get(start..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let end = start + digits;
    // A fraction or exponent is left to the full decoder.
    if matches!(h.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in h.get(start..end)? {
        value = value * 10 + i64::from(d - b'0');
    }
    let value = if negative { -value } else { value };
    Some((i32::try_from(value).ok()?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers every request with its opaque, after first sending a request of
    /// its own (which the pipe must skip).
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::new();
            loop {
                while let Some(req) = decoder.decode(&mut buf).expect("frame") {
                    let mut out = BytesMut::new();
                    let noise = RemotingCommand::request(40, 999);
                    encode_frame(&noise, SerializeType::Json, &mut out).expect("encode");
                    let resp = RemotingCommand::response_to(&req, 0, None).with_body(req.body);
                    encode_frame(&resp, SerializeType::Json, &mut out).expect("encode");
                    sock.write_all(&out).await.expect("write");
                }
                if sock.read_buf(&mut buf).await.expect("read") == 0 {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_call_gets_its_own_answer() {
        let addr = echo_server().await;
        let mut pipe = Pipe::connect(&addr).await.expect("connect");
        for i in 0..3u8 {
            let req = RemotingCommand::request(310, 0).with_body(vec![i; 10]);
            let resp = pipe
                .call(req, Duration::from_secs(3))
                .await
                .expect("answer");
            assert!(resp.is_response());
            assert_eq!(resp.opaque, i32::from(i) + 1);
            assert_eq!(&resp.body[..], &[i; 10][..]);
        }
    }

    /// The scanner's reading of a frame, checked against the full decoder's wherever that
    /// accepts the frame (members the scanner skips are not judged by it).
    fn head_agrees(frame: &[u8]) -> Option<Head> {
        let head = peek_json_head(frame);
        if let Some(head) = &head {
            let mut buf = BytesMut::from(frame);
            match FrameDecoder::new().decode(&mut buf) {
                Ok(Some(cmd)) => {
                    assert_eq!(
                        (head.code, head.opaque, head.flag),
                        (cmd.code, cmd.opaque, cmd.flag)
                    );
                    assert_eq!(head.frame_len, frame.len() - buf.len());
                }
                Ok(None) => panic!("the scanner took an incomplete frame"),
                Err(_) => {}
            }
        }
        head
    }

    fn raw_frame(header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let total = (4 + header.len() + body.len()) as u32;
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn the_head_scanner_reads_what_the_decoder_reads() {
        let mut resp = RemotingCommand::response_to(&RemotingCommand::request(310, 77), 0, None)
            .with_body(vec![7u8; 40]);
        resp.remark = Some("a \"code\":5, {\"opaque\":9}".to_string());
        let ext = resp.ext_fields_mut();
        ext.insert("msgId", "7F00000100002A9F0000000000001234");
        ext.insert("code", "12");
        ext.insert("opaque", "-4");
        ext.insert("queueOffset", "42");
        ext.insert("path", "C:\\dir\\");
        let mut wire = BytesMut::new();
        encode_frame(&resp, SerializeType::Json, &mut wire).expect("encode");
        assert!(matches!(
            FrameDecoder::new().decode(&mut wire.clone()),
            Ok(Some(_))
        ));
        let head = head_agrees(&wire).expect("a plain send answer is scanned");
        assert_eq!((head.code, head.opaque, head.flag & 1), (0, 77, 1));
        // Every shorter prefix is left to the decoder (which waits for the rest).
        for cut in 0..wire.len() {
            assert_eq!(peek_json_head(&wire[..cut]), None, "cut at {cut}");
        }
        // A frame followed by the next one's bytes is still read alone.
        let mut two = wire.to_vec();
        two.extend_from_slice(&wire);
        assert_eq!(peek_json_head(&two).map(|h| h.frame_len), Some(wire.len()));
        // Binary headers go to the full decoder.
        let mut binary = BytesMut::new();
        encode_frame(&resp, SerializeType::RocketMq, &mut binary).expect("encode");
        assert_eq!(peek_json_head(&binary), None);
    }

    #[test]
    fn unusual_headers_are_left_to_the_decoder() {
        let cases: [&[u8]; 9] = [
            br#"{"code":"0","flag":1,"opaque":3}"#,
            br#"{"code":0,"flag":1,"opaque":3.0}"#,
            br#"{"code":0,"flag":1,"opaque":3,"opaque":4}"#,
            br#"{"code":0,"flag":1}"#,
            br#"{"co"de":0,"code":0,"flag":1,"opaque":3}"#,
            br#"{"code":0,"flag":1,"opaque":3"#,
            br#"{"code":0,"flag":1,"opaque":3} x"#,
            br#"{"c\u006fde":0,"flag":1,"opaque":3}"#,
            br#"{"code":99999999999,"flag":1,"opaque":3}"#,
        ];
        for header in cases {
            assert_eq!(head_agrees(&raw_frame(header, b"")), None, "{header:?}");
        }
        let plain = br#" { "code" : -1 , "extFields" : { "a" : "}{\"" , "c":null },
            "flag":1, "language":"JAVA", "opaque":2147483647, "remark":null, "version":1 } "#;
        let frame = raw_frame(plain, b"body");
        assert!(matches!(
            FrameDecoder::new().decode(&mut BytesMut::from(&frame[..])),
            Ok(Some(_))
        ));
        let head = head_agrees(&frame).expect("scanned");
        assert_eq!((head.code, head.opaque), (-1, i32::MAX));
    }

    #[test]
    fn the_head_scanner_never_disagrees_on_damaged_frames() {
        let mut resp = RemotingCommand::response_to(&RemotingCommand::request(310, 5), 0, None);
        resp.ext_fields_mut().insert("queueId", "3");
        let mut wire = BytesMut::new();
        encode_frame(&resp, SerializeType::Json, &mut wire).expect("encode");
        let header_len = wire.len() - 8;
        // Each header byte replaced by each of a few JSON-significant bytes.
        for at in 8..wire.len() {
            for b in [b'"', b'{', b'}', b',', b':', b'\\', b'1', b' ', b'x'] {
                let mut damaged = wire.to_vec();
                damaged[at] = b;
                head_agrees(&damaged);
            }
        }
        assert!(header_len > 0);
    }

    #[tokio::test]
    async fn code_calls_skip_other_frames_and_read_the_answer() {
        let addr = echo_server().await;
        let mut pipe = Pipe::connect(&addr).await.expect("connect");
        for opaque in [5, 6] {
            let mut req = RemotingCommand::request(310, 0).with_body(vec![1u8; 10]);
            req.opaque = opaque;
            let mut frame = BytesMut::new();
            encode_frame(&req, SerializeType::Json, &mut frame).expect("encode");
            let code = pipe
                .call_frame_code(&frame, opaque, Duration::from_secs(3))
                .await
                .expect("answer");
            assert_eq!(code, 0);
        }
    }

    #[tokio::test]
    async fn a_closed_server_fails_the_call() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            drop(sock);
        });
        let mut pipe = Pipe::connect(&addr).await.expect("connect");
        let req = RemotingCommand::request(310, 0);
        assert!(matches!(
            pipe.call(req.clone(), Duration::from_secs(3)).await,
            Err(PipeError::Closed)
        ));
        assert!(matches!(
            pipe.call(req, Duration::from_secs(3)).await,
            Err(PipeError::Closed)
        ));
    }
}
