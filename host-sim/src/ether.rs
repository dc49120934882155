//! Ethernet on the home LANs: frames, ARP, and the router's LAN interface.
//!
//! Hosts on a home LAN run smoltcp with `Medium::Ethernet`, so they resolve every next hop with ARP
//! (smoltcp's own: a packet to a neighbour whose address is not in the cache is not sent; the socket
//! waits for the reply, and sends on its next poll after it). Real devices do this, and it matters:
//! a peer that already has the other's MAC address in its cache sends its first SYN at once, while
//! the other's first SYN waits a LAN round trip for ARP — the race that made smoltcp 0.13.1 panic
//! ("attempt to subtract sequence numbers with underflow" in `last_scaled_window`) when the peer's
//! SYN reached a socket whose own SYN had never left.
//!
//! The router's side of the LAN is [`LanIface`]: it answers ARP for its address, learns hosts from
//! the ARP packets addressed to it (as Linux does from a request for its own address), and resolves
//! a host before forwarding to it, holding the packets meanwhile. Its cache never expires (Linux
//! keeps a stale entry usable and re-checks it in the background; our runs are short).

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

/// A MAC address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// Length of an Ethernet II header.
const HEADER: usize = 14;

/// A locally administered unicast address for node `n` of the network.
pub fn mac_for(n: usize) -> Mac {
    let [.., hi, lo] = (n as u32).to_be_bytes();
    [0x02, 0, 0, 0, hi, lo]
}

/// An Ethernet II frame carrying `payload`.
pub fn frame(dst: Mac, src: Mac, ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER + payload.len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    }
    .emit(&mut f);
    f.payload_mut().copy_from_slice(payload);
    buf
}

/// A frame carrying an IPv4 packet.
pub fn ipv4_frame(dst: Mac, src: Mac, packet: &[u8]) -> Vec<u8> {
    frame(dst, src, EthernetProtocol::Ipv4, packet)
}

/// An ARP frame: a request from `sender` (broadcast, asking for `target.1`), or a reply to
/// `target` (unicast).
pub fn arp_frame(request: bool, sender: (Mac, Ipv4Addr), target: (Mac, Ipv4Addr)) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: if request {
            ArpOperation::Request
        } else {
            ArpOperation::Reply
        },
        source_hardware_addr: EthernetAddress(sender.0),
        source_protocol_addr: sender.1,
        target_hardware_addr: EthernetAddress(if request { [0; 6] } else { target.0 }),
        target_protocol_addr: target.1,
    };
    let mut payload = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
    let dst = if request { BROADCAST } else { target.0 };
    frame(dst, sender.0, EthernetProtocol::Arp, &payload)
}

/// A frame's destination, source and payload, if it is one.
pub fn parse(frame: &[u8]) -> Option<(Mac, Mac, EthernetProtocol, &[u8])> {
    let f = EthernetFrame::new_checked(frame).ok()?;
    Some((
        f.dst_addr().0,
        f.src_addr().0,
        f.ethertype(),
        &frame[HEADER..],
    ))
}

/// What a frame carries (the IPv4 or ARP packet), for traces and fault injection.
pub fn payload(frame: &[u8]) -> &[u8] {
    frame.get(HEADER..).unwrap_or(&[])
}

/// Whether a frame carries ARP.
pub fn is_arp(frame: &[u8]) -> bool {
    matches!(parse(frame), Some((_, _, EthernetProtocol::Arp, _)))
}

/// An ARP packet's (request?, sender, target address).
fn arp_fields(payload: &[u8]) -> Option<(bool, (Mac, Ipv4Addr), Ipv4Addr)> {
    let packet = ArpPacket::new_checked(payload).ok()?;
    match ArpRepr::parse(&packet).ok()? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => Some((
            operation == ArpOperation::Request,
            (source_hardware_addr.0, source_protocol_addr),
            target_protocol_addr,
        )),
        _ => None,
    }
}

/// The router's interface on its LAN.
#[derive(Debug)]
pub struct LanIface {
    mac: Mac,
    ip: Ipv4Addr,
    neighbours: Vec<(Ipv4Addr, Mac)>,
    /// Packets waiting for their destination's ARP reply.
    pending: Vec<(Ipv4Addr, Vec<u8>)>,
}

/// What the interface made of a frame from the LAN.
#[derive(Debug, Default)]
pub struct Received {
    /// An IPv4 packet addressed to the router (to route or translate).
    pub packet: Option<Vec<u8>>,
    /// Frames to send onto the LAN (an ARP reply, packets that waited for a resolution).
    pub frames: Vec<Vec<u8>>,
}

impl LanIface {
    /// The interface with address `mac` and `ip`.
    pub fn new(mac: Mac, ip: Ipv4Addr) -> LanIface {
        LanIface {
            mac,
            ip,
            neighbours: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Its MAC address.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Take in a frame from the LAN.
    pub fn receive(&mut self, frame: &[u8]) -> Received {
        let mut out = Received::default();
        let Some((dst, _, ethertype, payload)) = parse(frame) else {
            return out;
        };
        match ethertype {
            EthernetProtocol::Ipv4 if dst == self.mac => out.packet = Some(payload.to_vec()),
            EthernetProtocol::Arp => {
                let Some((request, sender, target)) = arp_fields(payload) else {
                    return out;
                };
                if target != self.ip {
                    return out;
                }
                self.learn(sender, &mut out.frames);
                if request {
                    out.frames
                        .push(arp_frame(false, (self.mac, self.ip), sender));
                }
            }
            _ => {}
        }
        out
    }

    /// Frames that carry `packet` to its destination on the LAN: the frame itself, or (the address
    /// not yet resolved) an ARP request, while the packet waits.
    pub fn send(&mut self, packet: Vec<u8>) -> Vec<Vec<u8>> {
        let Some((_, dst)) = crate::packet::addresses(&packet) else {
            return Vec::new();
        };
        if let Some(&(_, mac)) = self.neighbours.iter().find(|(ip, _)| *ip == dst) {
            return vec![ipv4_frame(mac, self.mac, &packet)];
        }
        let asked = self.pending.iter().any(|(ip, _)| *ip == dst);
        self.pending.push((dst, packet));
        if asked {
            Vec::new()
        } else {
            vec![arp_frame(true, (self.mac, self.ip), ([0; 6], dst))]
        }
    }

    /// Remember `who`, and release the packets that waited for it.
    fn learn(&mut self, who: (Mac, Ipv4Addr), frames: &mut Vec<Vec<u8>>) {
        let (mac, ip) = who;
        match self.neighbours.iter_mut().find(|(a, _)| *a == ip) {
            Some(entry) => entry.1 = mac,
            None => self.neighbours.push((ip, mac)),
        }
        let (ready, waiting) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(dst, _)| *dst == ip);
        self.pending = waiting;
        frames.extend(
            ready
                .into_iter()
                .map(|(_, p): (Ipv4Addr, Vec<u8>)| ipv4_frame(mac, self.mac, &p)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{self, Kind};

    const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    fn ip_packet(dst: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(20);
        ip.set_dst_addr(dst);
        ip.set_src_addr(Ipv4Addr::new(203, 0, 113, 10));
        ip.fill_checksum();
        p
    }

    #[test]
    fn the_router_resolves_a_host_holds_its_packets_and_answers_for_itself() {
        let mut gw = LanIface::new(mac_for(1), GW);
        let host = mac_for(2);
        // A packet for an unknown host: an ARP request, the packet waits; a second one just waits.
        let out = gw.send(ip_packet(HOST));
        assert_eq!(out.len(), 1);
        let (dst, _, _, arp) = parse(&out[0]).unwrap();
        assert_eq!(dst, BROADCAST);
        assert!(
            matches!(packet::decode(arp), Kind::Arp { request: true, target, .. } if target == HOST)
        );
        assert!(gw.send(ip_packet(HOST)).is_empty());
        // The host's reply releases both.
        let got = gw.receive(&arp_frame(false, (host, HOST), (mac_for(1), GW)));
        assert_eq!(got.frames.len(), 2);
        assert!(got.frames.iter().all(|f| parse(f).unwrap().0 == host));
        // Known now: straight out.
        assert_eq!(parse(&gw.send(ip_packet(HOST))[0]).unwrap().0, host);
        // A request for the gateway is answered (and teaches it the asker).
        let got = gw.receive(&arp_frame(
            true,
            (mac_for(3), Ipv4Addr::new(192, 168, 1, 3)),
            ([0; 6], GW),
        ));
        assert_eq!(got.frames.len(), 1);
        assert!(
            matches!(packet::decode(payload(&got.frames[0])), Kind::Arp { request: false, sender, .. } if sender == GW)
        );
        // IPv4 to its MAC is for it; to another MAC is not.
        assert!(gw
            .receive(&ipv4_frame(mac_for(1), host, &ip_packet(GW)))
            .packet
            .is_some());
        assert!(gw
            .receive(&ipv4_frame(host, host, &ip_packet(GW)))
            .packet
            .is_none());
    }
}
