//! An in-memory Ethernet LAN whose ports are `embassy_net_driver::Driver`s.
//!
//! A [`Lan`] is a switch with a fixed latency: a frame sent by one [`Port`] reaches the port that
//! owns its destination MAC (every other port, for broadcast and multicast) `latency` later on
//! the virtual clock. Every frame is logged with its send time, so tests can assert what went over
//! the wire ([`Lan::tcp_log`]).
//!
//! It is meant to grow into the network simulator: [`Lan::set_filter`] already decides per frame
//! and recipient whether it is delivered (loss, partitions, a firewall); per-link delay and
//! jitter from a seeded RNG fit in `LanInner::send`, and a NAT becomes a node with a port on each
//! of two LANs that rewrites frames in between.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_time::{Duration, Instant};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Index of a port on its [`Lan`], in the order ports were added.
pub type PortId = usize;

/// Decides whether a frame from one port is delivered to another.
pub type Filter = Box<dyn FnMut(PortId, PortId, &[u8]) -> bool>;

/// A frame as sent.
#[derive(Clone, Debug)]
pub struct FrameRecord {
    pub at: Instant,
    pub from: PortId,
    pub data: Vec<u8>,
}

/// An IPv4 TCP segment decoded from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub at: Instant,
    pub src: (Ipv4Address, u16),
    pub dst: (Ipv4Address, u16),
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
    pub payload_len: usize,
}

struct PortState {
    mac: [u8; 6],
    link_up: bool,
    /// Frames in flight or waiting, ordered by due time.
    rx: VecDeque<(Instant, Vec<u8>)>,
    waker: Option<Waker>,
}

struct LanInner {
    latency: Duration,
    ports: Vec<PortState>,
    log: Vec<FrameRecord>,
    filter: Option<Filter>,
}

/// A switched Ethernet segment. Cloning gives another handle to the same LAN.
#[derive(Clone)]
pub struct Lan {
    inner: Rc<RefCell<LanInner>>,
}

impl Lan {
    /// A LAN on which every frame takes `latency` to arrive.
    pub fn new(latency: Duration) -> Self {
        Self {
            inner: Rc::new(RefCell::new(LanInner {
                latency,
                ports: Vec::new(),
                log: Vec::new(),
                filter: None,
            })),
        }
    }

    /// Plug in a new port with MAC address `mac`; the returned driver is that port.
    pub fn port(&self, mac: [u8; 6]) -> Port {
        let mut inner = self.inner.borrow_mut();
        inner.ports.push(PortState {
            mac,
            link_up: true,
            rx: VecDeque::new(),
            waker: None,
        });
        Port {
            lan: self.inner.clone(),
            id: inner.ports.len() - 1,
        }
    }

    /// Deliver a frame from `from` to `to` only if `filter(from, to, frame)` returns true.
    pub fn set_filter(&self, filter: impl FnMut(PortId, PortId, &[u8]) -> bool + 'static) {
        self.inner.borrow_mut().filter = Some(Box::new(filter));
    }

    /// Bring a port's link up or down. A down port neither sends nor receives.
    pub fn set_link_up(&self, port: PortId, up: bool) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            let p = &mut inner.ports[port];
            p.link_up = up;
            if !up {
                p.rx.clear();
            }
            p.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Every frame sent so far, in order.
    pub fn log(&self) -> Vec<FrameRecord> {
        self.inner.borrow().log.clone()
    }

    /// The IPv4 TCP segments among the frames sent so far.
    pub fn tcp_log(&self) -> Vec<TcpSegment> {
        self.inner
            .borrow()
            .log
            .iter()
            .filter_map(|r| decode_tcp(r.at, &r.data))
            .collect()
    }

    /// Destination ports of the IPv4 UDP datagrams sent so far.
    pub fn udp_dst_ports(&self) -> Vec<u16> {
        self.inner
            .borrow()
            .log
            .iter()
            .filter_map(|r| {
                let (proto, payload) = ipv4_payload(&r.data)?;
                (proto == IpProtocol::Udp)
                    .then(|| UdpPacket::new_checked(payload).ok().map(|u| u.dst_port()))?
            })
            .collect()
    }
}

fn ipv4_payload(frame: &[u8]) -> Option<(IpProtocol, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    Some((ip.next_header(), ip.payload()))
}

fn decode_tcp(at: Instant, frame: &[u8]) -> Option<TcpSegment> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(TcpSegment {
        at,
        src: (ip.src_addr(), tcp.src_port()),
        dst: (ip.dst_addr(), tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        fin: tcp.fin(),
        payload_len: tcp.payload().len(),
    })
}

impl LanInner {
    fn send(&mut self, from: PortId, frame: Vec<u8>) {
        let now = Instant::now();
        if !self.ports[from].link_up || frame.len() < 14 {
            return;
        }
        self.log.push(FrameRecord {
            at: now,
            from,
            data: frame.clone(),
        });
        let group = frame[0] & 1 != 0;
        let due = now + self.latency;
        let mut wake = Vec::new();
        for to in 0..self.ports.len() {
            let port = &self.ports[to];
            if to == from || !port.link_up || !(group || port.mac == frame[..6]) {
                continue;
            }
            if let Some(filter) = self.filter.as_mut() {
                if !filter(from, to, &frame) {
                    continue;
                }
            }
            let port = &mut self.ports[to];
            // Keep the queue ordered by due time (stable for equal times).
            let pos = port.rx.partition_point(|(t, _)| *t <= due);
            port.rx.insert(pos, (due, frame.clone()));
            wake.extend(port.waker.take());
        }
        // Our executor's wakers only set flags, so waking under the borrow is fine.
        wake.into_iter().for_each(Waker::wake);
    }
}

/// One port of a [`Lan`]: the driver a stack runs on.
pub struct Port {
    lan: Rc<RefCell<LanInner>>,
    id: PortId,
}

impl Port {
    /// This port's index on its LAN.
    pub fn id(&self) -> PortId {
        self.id
    }
}

/// A received frame.
pub struct RxToken(Vec<u8>);

/// Room for one frame to send.
pub struct TxToken {
    lan: Rc<RefCell<LanInner>>,
    from: PortId,
}

impl embassy_net_driver::RxToken for RxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.lan.borrow_mut().send(self.from, frame);
        r
    }
}

impl embassy_net_driver::Driver for Port {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken, TxToken)> {
        let mut lan = self.lan.borrow_mut();
        let port = &mut lan.ports[self.id];
        let now = Instant::now();
        match port.rx.front() {
            Some((due, _)) if *due <= now => {
                let (_, frame) = port.rx.pop_front().expect("front exists");
                let tx = TxToken {
                    lan: self.lan.clone(),
                    from: self.id,
                };
                Some((RxToken(frame), tx))
            }
            Some((due, _)) => {
                // In flight: come back when it lands (or when an earlier one is queued).
                embassy_time_driver::schedule_wake(due.as_ticks(), cx.waker());
                port.waker = Some(cx.waker().clone());
                None
            }
            None => {
                port.waker = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<TxToken> {
        // Unbounded transmit queue: the LAN takes every frame.
        Some(TxToken {
            lan: self.lan.clone(),
            from: self.id,
        })
    }

    fn link_state(&mut self, cx: &mut Context) -> LinkState {
        let mut lan = self.lan.borrow_mut();
        let port = &mut lan.ports[self.id];
        port.waker = Some(cx.waker().clone());
        if port.link_up {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1514;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.lan.borrow().ports[self.id].mac)
    }
}
