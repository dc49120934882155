//! IPv4 packets as the simulated network carries them: decode, rewrite with correct checksums, and build
//! the RST and ICMP replies a NAT sends; and the ARP packets of the home LANs. Built on smoltcp's
//! `wire` views.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, TcpOption,
    TcpPacket, TcpSeqNumber,
};

/// Length of the IPv4 header this module writes (no options).
const IP_HEADER: usize = 20;
/// Length of the TCP header this module writes (no options).
const TCP_HEADER: usize = 20;

/// The TCP fields a NAT and a timeline care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    /// Source endpoint.
    pub src: SocketAddrV4,
    /// Destination endpoint.
    pub dst: SocketAddrV4,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
    /// RST flag.
    pub rst: bool,
    /// FIN flag.
    pub fin: bool,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Payload bytes.
    pub payload_len: usize,
    /// Window field (unscaled, as on the wire).
    pub window: u16,
    /// The window-scale option's shift, if the segment carries one (SYNs only).
    pub window_scale: Option<u8>,
}

impl Tcp {
    /// SYN without ACK: the start of a connection.
    pub fn is_bare_syn(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }

    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn segment_len(&self) -> u32 {
        self.payload_len as u32 + u32::from(self.syn) + u32::from(self.fin)
    }

    /// `S`, `SA`, `R`, `RA`, `A`, `FA`, `PA`… like tcpdump.
    pub fn flags(&self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.syn, 'S'),
            (self.fin, 'F'),
            (self.rst, 'R'),
            (self.payload_len > 0, 'P'),
            (self.ack, '.'),
        ] {
            if on {
                s.push(c);
            }
        }
        s
    }
}

impl fmt::Display for Tcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {} [{}]", self.src, self.dst, self.flags())?;
        if self.payload_len > 0 {
            write!(f, " len {}", self.payload_len)?;
        }
        Ok(())
    }
}

/// What a packet is, as far as the simulator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP segment.
    Tcp(Tcp),
    /// An ICMP destination-unreachable error about a TCP segment (`about` is that segment's header).
    IcmpUnreachable {
        /// Sender of the error.
        from: Ipv4Addr,
        /// Addressee of the error.
        to: Ipv4Addr,
        /// The segment the error is about (as it was sent, so `about.src` is the addressee's side).
        about: Tcp,
    },
    /// An ARP request or reply (on a home LAN).
    Arp {
        /// A request (`who-has`), not a reply.
        request: bool,
        /// The sender's protocol address.
        sender: Ipv4Addr,
        /// The address asked about (request) or the requester's (reply).
        target: Ipv4Addr,
    },
    /// Anything else (the simulated hosts send nothing else).
    Other,
}

/// The IPv4 source and destination of a packet.
pub fn addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    Some((ip.src_addr(), ip.dst_addr()))
}

/// Decode a packet: an IPv4 packet, or an ARP packet (what an Ethernet frame of a home LAN carries).
pub fn decode(packet: &[u8]) -> Kind {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return decode_arp(packet);
    };
    match ip.next_header() {
        IpProtocol::Tcp => match tcp_fields(ip.src_addr(), ip.dst_addr(), ip.payload(), false) {
            Some(t) => Kind::Tcp(t),
            None => Kind::Other,
        },
        IpProtocol::Icmp => {
            let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
                return Kind::Other;
            };
            if icmp.msg_type() != smoltcp::wire::Icmpv4Message::DstUnreachable {
                return Kind::Other;
            }
            // The quoted packet is truncated (header + 8 bytes): its length field cannot be checked.
            let data = icmp.data();
            if data.len() < IP_HEADER {
                return Kind::Other;
            }
            let inner = Ipv4Packet::new_unchecked(data);
            let hl = usize::from(inner.header_len());
            if inner.next_header() != IpProtocol::Tcp || hl < IP_HEADER || data.len() < hl + 8 {
                return Kind::Other;
            }
            match tcp_fields(inner.src_addr(), inner.dst_addr(), &data[hl..], true) {
                Some(about) => Kind::IcmpUnreachable {
                    from: ip.src_addr(),
                    to: ip.dst_addr(),
                    about,
                },
                None => Kind::Other,
            }
        }
        _ => Kind::Other,
    }
}

/// An ARP packet's fields, or [`Kind::Other`].
fn decode_arp(packet: &[u8]) -> Kind {
    let Ok(arp) = ArpPacket::new_checked(packet) else {
        return Kind::Other;
    };
    match ArpRepr::parse(&arp) {
        Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) => Kind::Arp {
            request: operation == ArpOperation::Request,
            sender: source_protocol_addr,
            target: target_protocol_addr,
        },
        _ => Kind::Other,
    }
}

/// The window-scale option of a TCP header's `options`, if present (RFC 7323 §2).
fn window_scale(mut options: &[u8]) -> Option<u8> {
    while !options.is_empty() {
        match TcpOption::parse(options) {
            Ok((_, TcpOption::EndOfList)) | Err(_) => return None,
            Ok((_, TcpOption::WindowScale(shift))) => return Some(shift),
            Ok((rest, _)) => options = rest,
        }
    }
    None
}

/// The TCP fields of `segment`; `truncated` accepts the first 8 bytes only (inside ICMP errors).
fn tcp_fields(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8], truncated: bool) -> Option<Tcp> {
    if truncated {
        if segment.len() < 8 {
            return None;
        }
        let port = |i: usize| u16::from_be_bytes([segment[i], segment[i + 1]]);
        let seq = u32::from_be_bytes([segment[4], segment[5], segment[6], segment[7]]);
        return Some(Tcp {
            src: SocketAddrV4::new(src, port(0)),
            dst: SocketAddrV4::new(dst, port(2)),
            syn: false,
            ack: false,
            rst: false,
            fin: false,
            seq,
            ack_number: 0,
            payload_len: 0,
            window: 0,
            window_scale: None,
        });
    }
    let tcp = TcpPacket::new_checked(segment).ok()?;
    Some(Tcp {
        src: SocketAddrV4::new(src, tcp.src_port()),
        dst: SocketAddrV4::new(dst, tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        fin: tcp.fin(),
        seq: tcp.seq_number().0 as u32,
        ack_number: tcp.ack_number().0 as u32,
        payload_len: tcp.payload().len(),
        window: tcp.window_len(),
        window_scale: window_scale(tcp.options()),
    })
}

/// Whether the IPv4 header checksum and (for TCP) the TCP checksum are right.
pub fn checksums_ok(packet: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    if !ip.verify_checksum() {
        return false;
    }
    match ip.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload()).is_ok_and(|t| {
            t.verify_checksum(
                &IpAddress::Ipv4(ip.src_addr()),
                &IpAddress::Ipv4(ip.dst_addr()),
            )
        }),
        IpProtocol::Icmp => {
            Icmpv4Packet::new_checked(ip.payload()).is_ok_and(|i| i.verify_checksum())
        }
        _ => true,
    }
}

/// Rewrite a TCP packet's source and/or destination endpoint and recompute both checksums.
///
/// # Panics
/// If `packet` is not an IPv4 TCP packet (the caller decoded it first).
pub fn rewrite_tcp(packet: &mut [u8], src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) {
    let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
    if let Some(s) = src {
        ip.set_src_addr(*s.ip());
    }
    if let Some(d) = dst {
        ip.set_dst_addr(*d.ip());
    }
    // A router decrements the TTL (RFC 1812 §5.3.1); our paths are short.
    ip.set_hop_limit(ip.hop_limit().saturating_sub(1));
    ip.fill_checksum();
    let (s_addr, d_addr) = (ip.src_addr(), ip.dst_addr());
    let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
    if let Some(s) = src {
        tcp.set_src_port(s.port());
    }
    if let Some(d) = dst {
        tcp.set_dst_port(d.port());
    }
    tcp.fill_checksum(&IpAddress::Ipv4(s_addr), &IpAddress::Ipv4(d_addr));
}

/// Rewrite an ICMP error about a TCP segment for the inside host (RFC 5508 §4.2): the outer destination
/// becomes `inside.ip()`, the embedded segment's source becomes `inside`. Checksums are recomputed (the
/// embedded TCP checksum cannot be, from 8 bytes; receivers do not check it).
pub fn rewrite_icmp_for_inside(packet: &mut [u8], inside: SocketAddrV4) {
    let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
    ip.set_dst_addr(*inside.ip());
    ip.set_hop_limit(ip.hop_limit().saturating_sub(1));
    ip.fill_checksum();
    let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
    {
        let mut inner = Ipv4Packet::new_unchecked(icmp.data_mut());
        inner.set_src_addr(*inside.ip());
        inner.fill_checksum();
        let hl = usize::from(inner.header_len());
        let data = inner.into_inner();
        data[hl..hl + 2].copy_from_slice(&inside.port().to_be_bytes());
    }
    icmp.fill_checksum();
}

fn ipv4_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol) {
    let total = buf.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(buf);
    ip.set_version(4);
    ip.set_header_len(IP_HEADER as u8);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_len(total);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_dont_frag(true);
    ip.set_frag_offset(0);
    ip.set_hop_limit(64);
    ip.set_next_header(protocol);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
}

/// The RST a host (or a NAT standing in for one) sends in answer to `segment` (RFC 9293 §3.10.7.1):
/// with the segment's ACK as its sequence number if it had one, else sequence 0 and an ACK of
/// everything the segment occupied.
pub fn rst_for(segment: &Tcp) -> Vec<u8> {
    let mut buf = vec![0u8; IP_HEADER + TCP_HEADER];
    ipv4_header(
        &mut buf,
        *segment.dst.ip(),
        *segment.src.ip(),
        IpProtocol::Tcp,
    );
    let mut tcp = TcpPacket::new_unchecked(&mut buf[IP_HEADER..]);
    tcp.set_src_port(segment.dst.port());
    tcp.set_dst_port(segment.src.port());
    tcp.set_header_len(TCP_HEADER as u8);
    tcp.clear_flags();
    tcp.set_rst(true);
    if segment.ack {
        tcp.set_seq_number(TcpSeqNumber(segment.ack_number as i32));
        tcp.set_ack_number(TcpSeqNumber(0));
    } else {
        tcp.set_seq_number(TcpSeqNumber(0));
        tcp.set_ack(true);
        tcp.set_ack_number(TcpSeqNumber(
            segment.seq.wrapping_add(segment.segment_len()) as i32,
        ));
    }
    tcp.set_window_len(0);
    tcp.set_urgent_at(0);
    tcp.fill_checksum(
        &IpAddress::Ipv4(*segment.dst.ip()),
        &IpAddress::Ipv4(*segment.src.ip()),
    );
    buf
}

/// An ICMP port-unreachable from `from` about `packet` (RFC 792; RFC 5382 REQ-4 suggests this code for
/// a refused SYN): the original IP header and the first 8 bytes of its payload.
pub fn icmp_unreachable(from: Ipv4Addr, packet: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let quoted = (usize::from(ip.header_len()) + 8).min(packet.len());
    let icmp_len = 8 + quoted;
    let mut buf = vec![0u8; IP_HEADER + icmp_len];
    ipv4_header(&mut buf, from, ip.src_addr(), IpProtocol::Icmp);
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[IP_HEADER..]);
    icmp.set_msg_type(smoltcp::wire::Icmpv4Message::DstUnreachable);
    icmp.set_msg_code(smoltcp::wire::Icmpv4DstUnreachable::PortUnreachable.into());
    icmp.data_mut()[..quoted].copy_from_slice(&packet[..quoted]);
    icmp.fill_checksum();
    Some(buf)
}

/// One line describing a packet, for traces.
pub fn summary(packet: &[u8]) -> String {
    match decode(packet) {
        Kind::Tcp(t) => t.to_string(),
        Kind::IcmpUnreachable { from, to, about } => {
            format!(
                "ICMP {} > {} unreachable (about {} > {})",
                from, to, about.src, about.dst
            )
        }
        Kind::Arp {
            request: true,
            sender,
            target,
        } => format!("ARP who-has {target} tell {sender}"),
        Kind::Arp { sender, target, .. } => format!("ARP reply to {target}: {sender} is here"),
        Kind::Other => format!("{} bytes, not TCP", packet.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// A SYN as smoltcp would send it, built with smoltcp's Repr types.
    fn syn(src: SocketAddrV4, dst: SocketAddrV4, seq: i32) -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{Ipv4Repr, TcpControl, TcpRepr};
        let tcp = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 1024,
            window_scale: None,
            max_seg_size: Some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: *src.ip(),
            dst_addr: *dst.ip(),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &IpAddress::Ipv4(*src.ip()),
            &IpAddress::Ipv4(*dst.ip()),
            &caps,
        );
        buf
    }

    #[test]
    fn rewrite_keeps_checksums_right() {
        let mut p = syn(ep("192.168.1.2:50000"), ep("203.0.113.10:7777"), 1000);
        assert!(checksums_ok(&p));
        rewrite_tcp(&mut p, Some(ep("198.51.100.1:61000")), None);
        assert!(checksums_ok(&p));
        let Kind::Tcp(t) = decode(&p) else { panic!() };
        assert_eq!(t.src, ep("198.51.100.1:61000"));
        assert_eq!(t.dst, ep("203.0.113.10:7777"));
        assert!(t.is_bare_syn());
        assert_eq!(t.seq, 1000);
        rewrite_tcp(&mut p, None, Some(ep("192.168.1.3:7")));
        assert!(checksums_ok(&p));
    }

    #[test]
    fn rst_answers_a_syn_with_rst_ack_of_its_sequence() {
        let p = syn(ep("192.0.2.1:4000"), ep("198.51.100.1:5000"), -5);
        let Kind::Tcp(t) = decode(&p) else { panic!() };
        let r = rst_for(&t);
        assert!(checksums_ok(&r));
        let Kind::Tcp(r) = decode(&r) else { panic!() };
        assert!(r.rst && r.ack && !r.syn);
        assert_eq!((r.src, r.dst), (t.dst, t.src));
        assert_eq!(r.ack_number, (-5i32 as u32).wrapping_add(1));
    }

    #[test]
    fn icmp_error_quotes_the_segment_and_translates_back() {
        let p = syn(ep("192.0.2.1:4000"), ep("198.51.100.1:5000"), 77);
        let e = icmp_unreachable("198.51.100.1".parse().unwrap(), &p).unwrap();
        assert!(checksums_ok(&e));
        let Kind::IcmpUnreachable { from, to, about } = decode(&e) else {
            panic!()
        };
        assert_eq!(from, "198.51.100.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(to, "192.0.2.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            (about.src, about.dst, about.seq),
            (ep("192.0.2.1:4000"), ep("198.51.100.1:5000"), 77)
        );
        let mut e = e;
        rewrite_icmp_for_inside(&mut e, ep("10.0.0.5:4001"));
        assert!(checksums_ok(&e));
        let Kind::IcmpUnreachable { to, about, .. } = decode(&e) else {
            panic!()
        };
        assert_eq!(to, "10.0.0.5".parse::<Ipv4Addr>().unwrap());
        assert_eq!(about.src, ep("10.0.0.5:4001"));
        assert!(decode(&[1, 2, 3]) == Kind::Other);
    }
}
