//! Anonymised IP addresses: third parties' addresses are stored truncated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Truncates an address to its network: IPv4 to /24, IPv6 to /48 (an IPv4-mapped IPv6
/// address is treated as the IPv4 address it carries). Enough to tell networks apart in
/// an abuse report, not enough to name a subscriber line.
pub fn anonymise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(truncate_v4(v4).to_ipv6_mapped()),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

fn truncate_v4(v4: Ipv4Addr) -> Ipv4Addr {
    let o = v4.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn truncates_to_slash_24_and_slash_48() {
        let a = |s: &str| anonymise_ip(s.parse().unwrap()).to_string();
        assert_eq!(a("203.0.113.77"), "203.0.113.0");
        assert_eq!(a("2001:db8:1234:5678::1"), "2001:db8:1234::");
        assert_eq!(a("::ffff:198.51.100.9"), "::ffff:198.51.100.0");
    }
}
