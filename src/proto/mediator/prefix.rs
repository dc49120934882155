//! Source prefixes: what the mediator's fair-sharing limits count, since one host or one network can
//! hold many addresses (`doc/mediator.md` §11).

use core::net::{IpAddr, Ipv6Addr};

/// A source address truncated to a prefix: the unit a limit counts.
///
/// Two sizes: a **host** (an IPv4 address, an IPv6 /64 — one machine usually holds a whole /64) and a
/// **network** (an IPv4 /24, an IPv6 /48 — what one customer or one rented server range usually holds).
/// IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prefix {
    /// The address with the bits beyond the prefix cleared (IPv4 in the low 4 bytes of an IPv4-mapped
    /// address, so both families share one ordering).
    bits: [u8; 16],
    /// Prefix length in bits of the address's own family.
    len: u8,
}

impl Prefix {
    /// The host of `ip`: an IPv4 address, or an IPv6 /64.
    pub fn host(ip: IpAddr) -> Prefix {
        Prefix::of(ip, 32, 64)
    }

    /// The network of `ip`: an IPv4 /24, or an IPv6 /48.
    pub fn network(ip: IpAddr) -> Prefix {
        Prefix::of(ip, 24, 48)
    }

    fn of(ip: IpAddr, v4_len: u8, v6_len: u8) -> Prefix {
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let (bits, len, offset) = match (v4, ip) {
            (Some(v4), _) => (v4.to_ipv6_mapped().octets(), v4_len, 96),
            (None, IpAddr::V6(v6)) => (v6.octets(), v6_len, 0),
            (None, IpAddr::V4(_)) => unreachable!("an IPv4 address is always IPv4"),
        };
        Prefix {
            bits: mask(bits, offset + len as usize),
            len,
        }
    }

    /// The prefix's first address (the source address with the host bits cleared).
    pub fn addr(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.bits);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.len <= 32 && is_v4(&self.bits) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        }
    }

    /// The prefix length, in bits of its family.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
}

fn is_v4(bits: &[u8; 16]) -> bool {
    bits[..10] == [0; 10] && bits[10..12] == [0xff, 0xff]
}

/// `bits` with every bit from `keep` on cleared.
fn mask(mut bits: [u8; 16], keep: usize) -> [u8; 16] {
    for (i, byte) in bits.iter_mut().enumerate() {
        let start = i * 8;
        if start >= keep {
            *byte = 0;
        } else if keep - start < 8 {
            *byte &= 0xffu8 << (8 - (keep - start));
        }
    }
    bits
}

impl core::fmt::Display for Prefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_hosts_are_addresses_and_networks_are_24s() {
        assert_eq!(
            Prefix::host(ip("198.51.100.7")).to_string(),
            "198.51.100.7/32"
        );
        assert_ne!(
            Prefix::host(ip("198.51.100.7")),
            Prefix::host(ip("198.51.100.8"))
        );
        assert_eq!(
            Prefix::network(ip("198.51.100.7")).to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            Prefix::network(ip("198.51.100.7")),
            Prefix::network(ip("198.51.100.200"))
        );
        assert_ne!(
            Prefix::network(ip("198.51.100.7")),
            Prefix::network(ip("198.51.101.7"))
        );
    }

    #[test]
    fn ipv6_hosts_are_64s_and_networks_are_48s() {
        let a = ip("2001:db8:1:2:aaaa::1");
        assert_eq!(Prefix::host(a), Prefix::host(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(Prefix::host(a), Prefix::host(ip("2001:db8:1:3::1")));
        assert_eq!(Prefix::host(a).to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            Prefix::network(a),
            Prefix::network(ip("2001:db8:1:ffff::9"))
        );
        assert_ne!(Prefix::network(a), Prefix::network(ip("2001:db8:2::1")));
        assert_eq!(Prefix::network(a).to_string(), "2001:db8:1::/48");
        assert_eq!(Prefix::network(a).prefix_len(), 48);
    }

    #[test]
    fn ipv4_mapped_is_ipv4_and_families_never_collide() {
        assert_eq!(
            Prefix::network(ip("::ffff:198.51.100.7")),
            Prefix::network(ip("198.51.100.9"))
        );
        assert_ne!(Prefix::host(ip("0.0.0.0")), Prefix::host(ip("::")));
    }

    #[test]
    fn masks_inside_a_byte() {
        assert_eq!(mask([0xff; 16], 12)[..3], [0xff, 0xf0, 0]);
        assert_eq!(mask([0xff; 16], 128), [0xff; 16]);
        assert_eq!(mask([0xff; 16], 0), [0; 16]);
    }
}
