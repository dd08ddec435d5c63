//! Working out the address a broker advertises (`brokerIP1`) when the operator did not set it.
//! A wrong advertised address is a classic RocketMQ support problem, so the choice is printed at
//! start.

use std::net::Ipv4Addr;

/// The first non-loopback, non-link-local IPv4 address of an interface that is up, or
/// `127.0.0.1` when there is none.
pub fn first_non_loopback_ipv4() -> Ipv4Addr {
    interface_ipv4s()
        .into_iter()
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

fn interface_ipv4s() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs; we only read it.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned above, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
        if up && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it declares.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_some_ipv4() {
        let ip = super::first_non_loopback_ipv4();
        assert!(!ip.is_unspecified());
    }
}
