//! Message ids (§7.7–7.8 of the protocol reference): the offset message id the broker derives
//! from a record's store host and commit-log position, and the client message id (`UNIQ_KEY`)
//! producers put in the properties.
//!
//! Both are uppercase hex of a short big-endian byte string. This module makes and reads them;
//! it leaves out looking messages up by id and finding the process's own IP or pid, which the
//! caller passes in. No clock is read: time is an argument.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Why a message id string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsgIdError {
    /// Ids are 32 hex characters (IPv4) or 56 (IPv6).
    #[error("message id has {len} characters, expected 32 (IPv4) or 56 (IPv6)")]
    BadLength {
        /// Length of the rejected string in bytes.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error("message id has a non-hex character at byte {at}")]
    BadHexDigit {
        /// Byte position of the offending character.
        at: usize,
    },
    /// The 4-byte port is outside 0..=65535 (Java's `InetSocketAddress` rejects it too).
    #[error("message id port {port} is out of range")]
    BadPort {
        /// The port as stored.
        port: i32,
    },
}

/// Offset message id: uppercase hex of store host address + i32 port + i64 commit-log offset.
/// 32 characters for an IPv4 host, 56 for IPv6.
#[must_use]
pub fn encode_offset_msg_id(store_host: SocketAddr, phys_offset: i64) -> String {
    let mut out = String::with_capacity(56);
    push_offset_msg_id(&mut out, store_host, phys_offset);
    out
}

/// Appends [`encode_offset_msg_id`]'s id to `out` (a batch's response lists 64 of them).
pub fn push_offset_msg_id(out: &mut String, store_host: SocketAddr, phys_offset: i64) {
    let mut raw = [0u8; 28];
    let ip_len = put_ip(&mut raw, store_host.ip());
    let port_end = ip_len + 4;
    raw[ip_len..port_end].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[port_end..port_end + 8].copy_from_slice(&phys_offset.to_be_bytes());
    push_hex(out, &raw[..port_end + 8]);
}

/// Reads an offset message id back into (store host, commit-log offset). Hex digits of either
/// case are accepted, as Java upper-cases before decoding.
///
/// # Errors
/// [`MsgIdError`] naming the violation: wrong length, non-hex character, port out of range.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64), MsgIdError> {
    let mut raw = [0u8; 28];
    let raw = unhex_id(id, &mut raw)?;
    let ip_len = raw.len() - 12;
    let (ip, rest) = raw.split_at(ip_len);
    let (port, offset) = rest.split_at(4);
    let port = be_i32(port);
    let addr = socket_addr(ip, port)?;
    Ok((addr, i64::from_be_bytes(array(offset))))
}

/// The fields of a client message id (`UNIQ_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqKeyParts {
    /// Client IP (or 4 bytes of time when the client found no IP).
    pub ip: IpAddr,
    /// Low 16 bits of the producer's process id.
    pub pid: u16,
    /// A per-process constant (Java: the class loader's hash code).
    pub loader: i32,
    /// Milliseconds since the start of the month the id was made in, truncated to an i32 as
    /// Java does (so it wraps negative late in a month).
    pub ms_since_month_start: i32,
    /// Low 16 bits of the per-process counter.
    pub counter: u16,
}

/// Makes client message ids the way RocketMQ's `MessageClientIDSetter` does.
///
/// The ip/pid/loader prefix is fixed per generator; each id adds the milliseconds since the
/// start of the current month and a 16-bit counter. Java uses the local time zone's month; we
/// use UTC months so the result does not depend on the host's settings. Only admin tools read
/// the time part back, as a rough "made at" hint.
#[derive(Debug, Clone)]
pub struct UniqKeyGenerator {
    /// Hex of ip + pid + loader, shared by every id.
    prefix: String,
    counter: u16,
    /// `[month_start_ms, next_month_start_ms)` is the month the last id was made in.
    month_start_ms: i64,
    next_month_start_ms: i64,
}

impl UniqKeyGenerator {
    /// A generator for the process identified by `ip`, `pid` (low 16 bits kept) and `loader`.
    #[must_use]
    pub fn new(ip: IpAddr, pid: u32, loader: i32) -> Self {
        let mut raw = [0u8; 22];
        let ip_len = put_ip(&mut raw, ip);
        // Only the low 16 bits go into the id, as Java's `(short) pid`.
        let pid_low = (pid & 0xFFFF) as u16;
        raw[ip_len..ip_len + 2].copy_from_slice(&pid_low.to_be_bytes());
        raw[ip_len + 2..ip_len + 6].copy_from_slice(&loader.to_be_bytes());
        Self {
            prefix: hex_upper(&raw[..ip_len + 6]),
            counter: 0,
            month_start_ms: 0,
            next_month_start_ms: 0,
        }
    }

    /// The next id, for wall-clock time `now_ms` (milliseconds since the Unix epoch).
    pub fn next(&mut self, now_ms: i64) -> String {
        if now_ms < self.month_start_ms || now_ms >= self.next_month_start_ms {
            (self.month_start_ms, self.next_month_start_ms) = utc_month_bounds_ms(now_ms);
        }
        // Java's `(int)` cast: after about 24.8 days the span wraps to a negative int, and ids
        // carry that wrapped value, so we truncate the same way.
        let span = (now_ms - self.month_start_ms) as i32;
        let mut id = String::with_capacity(self.prefix.len() + 12);
        id.push_str(&self.prefix);
        push_hex(&mut id, &span.to_be_bytes());
        push_hex(&mut id, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        id
    }
}

/// Reads a client message id into its parts.
///
/// # Errors
/// [`MsgIdError`] for a wrong length or a non-hex character.
pub fn decode_uniq_key(id: &str) -> Result<UniqKeyParts, MsgIdError> {
    let mut raw = [0u8; 28];
    let raw = unhex_id(id, &mut raw)?;
    let ip_len = raw.len() - 12;
    let (ip, rest) = raw.split_at(ip_len);
    let (pid, rest) = rest.split_at(2);
    let (loader, rest) = rest.split_at(4);
    let (time, counter) = rest.split_at(4);
    Ok(UniqKeyParts {
        ip: ip_addr(ip),
        pid: u16::from_be_bytes(array(pid)),
        loader: be_i32(loader),
        ms_since_month_start: be_i32(time),
        counter: u16::from_be_bytes(array(counter)),
    })
}

/// Start of the UTC calendar month containing `now_ms`, and start of the next one.
fn utc_month_bounds_ms(now_ms: i64) -> (i64, i64) {
    const DAY_MS: i64 = 86_400_000;
    let days = now_ms.div_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let start = days - (day - 1);
    let next = start + days_in_month(year, month);
    (start * DAY_MS, next * DAY_MS)
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Writes the address bytes at the start of `out`; returns 4 or 16.
fn put_ip(out: &mut [u8], ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            out[..16].copy_from_slice(&v6.octets());
            16
        }
    }
}

/// 4 or 16 address bytes as an [`IpAddr`]; callers pass exactly one of those lengths.
fn ip_addr(bytes: &[u8]) -> IpAddr {
    match (<[u8; 4]>::try_from(bytes), <[u8; 16]>::try_from(bytes)) {
        (Ok(v4), _) => IpAddr::V4(Ipv4Addr::from(v4)),
        (_, Ok(v6)) => IpAddr::V6(Ipv6Addr::from(v6)),
        _ => unreachable!("address of {} bytes", bytes.len()),
    }
}

/// A socket address from stored address bytes and an i32 port.
pub(crate) fn socket_addr(ip: &[u8], port: i32) -> Result<SocketAddr, MsgIdError> {
    let port = u16::try_from(port).map_err(|_| MsgIdError::BadPort { port })?;
    Ok(match ip_addr(ip) {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)),
    })
}

/// Decodes a 32- or 56-character id into `buf`, returning the 16 or 28 bytes used.
fn unhex_id<'a>(id: &str, buf: &'a mut [u8; 28]) -> Result<&'a [u8], MsgIdError> {
    let len = match id.len() {
        32 => 16,
        56 => 28,
        len => return Err(MsgIdError::BadLength { len }),
    };
    let out = &mut buf[..len];
    for (i, (pair, byte)) in id
        .as_bytes()
        .chunks_exact(2)
        .zip(out.iter_mut())
        .enumerate()
    {
        let hi = hex_value(pair[0]).ok_or(MsgIdError::BadHexDigit { at: 2 * i })?;
        let lo = hex_value(pair[1]).ok_or(MsgIdError::BadHexDigit { at: 2 * i + 1 })?;
        *byte = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Ids are at most 28 bytes; digits go through a stack buffer and into `out` at once
    // (a batch's response holds 64 ids).
    for chunk in bytes.chunks(28) {
        let mut hex = [0u8; 56];
        for (pair, &b) in hex.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        let digits = hex.get(..chunk.len() * 2).unwrap_or_default();
        // Hex digits are ASCII.
        out.push_str(core::str::from_utf8(digits).unwrap_or_default());
    }
}

/// The two uppercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [DIGITS[b >> 4], DIGITS[b & 0xF]];
        b += 1;
    }
    table
};

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(array(bytes))
}

/// A fixed-size array from a slice the caller has already cut to length N.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_msg_id_ipv4_known_bytes() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let id = encode_offset_msg_id(host, 0x1234);
        // 7F000001 | 00002A9F (10911) | 0000000000001234
        assert_eq!(id, "7F00000100002A9F0000000000001234");
        assert_eq!(decode_offset_msg_id(&id), Ok((host, 0x1234)));
        assert_eq!(decode_offset_msg_id(&id.to_lowercase()), Ok((host, 0x1234)));
    }

    #[test]
    fn offset_msg_id_ipv6_known_bytes() {
        let host: SocketAddr = "[::1]:10911".parse().unwrap();
        let id = encode_offset_msg_id(host, -1);
        assert_eq!(id.len(), 56);
        assert_eq!(
            id,
            "0000000000000000000000000000000100002A9FFFFFFFFFFFFFFFFF"
        );
        assert_eq!(decode_offset_msg_id(&id), Ok((host, -1)));
    }

    #[test]
    fn offset_msg_id_errors_name_the_violation() {
        assert_eq!(
            decode_offset_msg_id("ABC"),
            Err(MsgIdError::BadLength { len: 3 })
        );
        let bad_digit = "7F0000010000X A9F0000000000001234".replace(' ', "");
        assert_eq!(
            decode_offset_msg_id(&bad_digit),
            Err(MsgIdError::BadHexDigit { at: 12 })
        );
        let bad_port = "7F000001FFFFFFFF0000000000001234";
        assert_eq!(
            decode_offset_msg_id(bad_port),
            Err(MsgIdError::BadPort { port: -1 })
        );
        let multibyte = "é".repeat(16);
        assert_eq!(
            decode_offset_msg_id(&multibyte),
            Err(MsgIdError::BadHexDigit { at: 0 })
        );
    }

    #[test]
    fn uniq_key_matches_java_layout() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1));
        let mut gen = UniqKeyGenerator::new(ip, 0x0001_2345, 0x0BAD_CAFE);
        // 2024-03-05T00:00:01.5Z: 4 days + 1.5 s after 2024-03-01.
        let now_ms = 1_709_596_801_500;
        let first = gen.next(now_ms);
        let span = 4 * 86_400_000 + 1_500;
        assert_eq!(first, format!("C0A8000123450BADCAFE{span:08X}0000"));
        let second = gen.next(now_ms);
        assert!(second.ends_with("0001"));
        let parts = decode_uniq_key(&second).unwrap();
        assert_eq!(
            parts,
            UniqKeyParts {
                ip,
                pid: 0x2345,
                loader: 0x0BAD_CAFE,
                ms_since_month_start: span,
                counter: 1
            }
        );
    }

    #[test]
    fn uniq_key_counter_wraps_and_month_rolls_over() {
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut gen = UniqKeyGenerator::new(ip, 7, -1);
        gen.counter = u16::MAX;
        // 2024-02-29T23:59:59.999Z, then 2024-03-01T00:00:00.000Z.
        let feb = decode_uniq_key(&gen.next(1_709_251_199_999)).unwrap();
        assert_eq!(feb.ms_since_month_start, (29 * 86_400_000_i64 - 1) as i32);
        assert!(feb.ms_since_month_start < 0);
        assert_eq!(feb.counter, u16::MAX);
        let mar = decode_uniq_key(&gen.next(1_709_251_200_000)).unwrap();
        assert_eq!(mar.ms_since_month_start, 0);
        assert_eq!(mar.counter, 0);
        assert_eq!(mar.ip, ip);
        assert_eq!(mar.loader, -1);
    }

    #[test]
    fn month_bounds_known_dates() {
        // 1970-01-01 and a time before the epoch (1969-12-31T12:00Z).
        assert_eq!(utc_month_bounds_ms(0), (0, 31 * 86_400_000));
        assert_eq!(utc_month_bounds_ms(-43_200_000), (-31 * 86_400_000, 0));
        // 2100 is not a leap year; 2000 is.
        let feb_2100 = 4_105_123_200_000; // 2100-02-01T00:00Z
        assert_eq!(
            utc_month_bounds_ms(feb_2100 + 1).1 - feb_2100,
            28 * 86_400_000
        );
        let feb_2000 = 949_363_200_000; // 2000-02-01T00:00Z
        assert_eq!(utc_month_bounds_ms(feb_2000).1 - feb_2000, 29 * 86_400_000);
    }

    fn socket() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))),
        ]
    }

    proptest! {
        #[test]
        fn offset_msg_id_round_trips(host in socket(), offset in any::<i64>()) {
            let id = encode_offset_msg_id(host, offset);
            prop_assert_eq!(id.len(), if host.is_ipv4() { 32 } else { 56 });
            prop_assert_eq!(decode_offset_msg_id(&id), Ok((host, offset)));
        }

        #[test]
        fn uniq_key_round_trips(
            host in socket(), pid in any::<u32>(), loader in any::<i32>(),
            now_ms in 0i64..4_102_444_800_000, counter in any::<u16>(),
        ) {
            let mut gen = UniqKeyGenerator::new(host.ip(), pid, loader);
            gen.counter = counter;
            let parts = decode_uniq_key(&gen.next(now_ms)).unwrap();
            let (start, next) = utc_month_bounds_ms(now_ms);
            prop_assert!(start <= now_ms && now_ms < next);
            prop_assert_eq!(parts.ip, host.ip());
            prop_assert_eq!(parts.pid, (pid & 0xFFFF) as u16);
            prop_assert_eq!(parts.loader, loader);
            prop_assert_eq!(parts.ms_since_month_start, (now_ms - start) as i32);
            prop_assert_eq!(parts.counter, counter);
        }

        #[test]
        fn decoders_never_panic(text in "[0-9A-Fa-fé]{0,60}") {
            let _ = decode_offset_msg_id(&text);
            let _ = decode_uniq_key(&text);
        }
    }
}
