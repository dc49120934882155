//! Firmware without an executor: a super-loop that runs smoltcp itself and advances p2psc's poll API
//! ([`Connector`]) after each `Interface::poll`, then echoes what the peer sends on the secure channel
//! ([`Opener`] and [`Sealer`] over the winning socket). The same shape fits RTIC or an RTOS thread.
//!
//! ```sh
//! cargo build --example superloop_echo --target thumbv7em-none-eabihf
//! ```
//!
//! The board's parts (smoltcp device, clock, random seed) are stand-ins in `firmware/mod.rs`; see
//! `embassy_echo.rs` for what to replace. On a host this file builds to a `main` that only says how
//! to build it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod firmware;

#[cfg(target_os = "none")]
mod app {
    use core::task::Poll;

    use cortex_m_rt::entry;
    use p2psc::connector::{ConnectConfig, Connected, Connector, Error, Sockets};
    use p2psc::identity::{Keypair, PublicKey, SaltyVerifier};
    use p2psc::net::{Interface, SocketSet};
    use p2psc::proto::channel::{ChannelError, ChannelKeys, Opener, Sealer, MAX_RECORD_LEN};
    use rand_core::{CryptoRng, RngCore};
    use smoltcp::iface::{Config, SocketStorage};
    use smoltcp::socket::tcp;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

    use crate::firmware::{self, NoPhy};

    /// This device's key: the seed of a PKCS#8 file, or from a secure element (`doc/keys.md`).
    const KEY_SEED: [u8; 32] = [0xA1; 32];
    /// The peer's public key (`p2psc pubkey KEY` prints it).
    const PEER_KEY: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
    /// The mediator.
    const MEDIATOR: (Ipv4Address, u16) = (Ipv4Address::new(203, 0, 113, 10), 7777);

    /// The interface, its device and its sockets: what the loop polls.
    struct Net<'a> {
        device: NoPhy,
        iface: Interface,
        sockets: SocketSet<'a>,
    }

    impl Net<'_> {
        /// Let smoltcp move frames and run its timers, and return the time it ran at.
        fn poll(&mut self) -> smoltcp::time::Instant {
            let now = firmware::now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            now
        }
    }

    /// Sleep until the next interrupt: SysTick every millisecond, or the Ethernet controller's.
    /// (A tickless design programs a timer for the earlier of `Interface::poll_at` and
    /// `Connector::poll_at` instead.)
    fn idle() {
        cortex_m::asm::wfi();
    }

    #[entry]
    fn main() -> ! {
        let core = cortex_m::Peripherals::take().unwrap();
        firmware::start_clock(core.SYST);

        let mut device = NoPhy;
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(firmware::MAC)));
        let mut rng = firmware::trng();
        config.random_seed = rng.next_u64();
        let mut iface = Interface::new(config, &mut device, firmware::now());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(Ipv4Address::new(192, 168, 1, 2).into(), 24));
        });
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(192, 168, 1, 1));

        // Two TCP sockets: the mediator connection (a frame is at most 132 bytes) and the peer's,
        // which becomes the application's connection. `main` never returns, so its locals serve.
        let mut storage = [SocketStorage::EMPTY; 2];
        let (mut mediator_rx, mut mediator_tx) = ([0u8; 256], [0u8; 256]);
        let (mut peer_rx, mut peer_tx) = ([0u8; 1024], [0u8; 1024]);
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handles = Sockets {
            mediator: sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new(&mut mediator_rx[..]),
                tcp::SocketBuffer::new(&mut mediator_tx[..]),
            )),
            candidates: [
                Some(sockets.add(tcp::Socket::new(
                    tcp::SocketBuffer::new(&mut peer_rx[..]),
                    tcp::SocketBuffer::new(&mut peer_tx[..]),
                ))),
                None,
            ],
        };
        let mut net = Net {
            device,
            iface,
            sockets,
        };
        let mut record_rx = [0u8; MAX_RECORD_LEN];
        let mut record_tx = [0u8; 512];
        loop {
            // Each attempt closes every socket it used but the winner; echo closes that one.
            if let Ok(connected) = connect(&mut net, handles, &mut rng) {
                let _ = echo(&mut net, connected, &mut record_rx, &mut record_tx);
            }
            let pause_until = firmware::now() + smoltcp::time::Duration::from_secs(10);
            while net.poll() < pause_until {
                idle();
            }
        }
    }

    /// Register with the mediator, punch, authenticate: poll the connector after every interface
    /// poll until it returns the connection or the error.
    fn connect(
        net: &mut Net<'_>,
        handles: Sockets,
        rng: &mut impl CryptoRng,
    ) -> Result<Connected, Error> {
        let peer = PublicKey::from_hex(PEER_KEY).expect("a 64-digit hex key");
        let me = Keypair::from_seed(&KEY_SEED);
        let now = firmware::now();
        let config = ConnectConfig::default();
        let mut connector = Connector::new(
            config,
            me,
            SaltyVerifier,
            peer,
            MEDIATOR,
            handles,
            rng, // draws a fresh seed: nonce, ephemeral key, port, jitter
            now,
        );
        loop {
            let now = net.poll();
            if let Poll::Ready(result) = connector.poll(now, &mut net.iface, &mut net.sockets) {
                return result;
            }
            idle();
        }
    }

    /// Echo every byte the peer sends until it ends its stream, then end ours and close. Records are
    /// opened as they arrive and the plaintext sealed straight back.
    fn echo(
        net: &mut Net<'_>,
        connected: Connected,
        record_rx: &mut [u8],
        record_tx: &mut [u8],
    ) -> Result<(), ChannelError> {
        let keys = ChannelKeys::derive(&connected.session_key, connected.role);
        let mut opener = Opener::new(keys.receive, record_rx);
        let mut sealer = Sealer::new(keys.send);
        // The record being sent: `record_tx[sent..len]` is still to go.
        let (mut sent, mut len) = (0, 0);
        let mut ending = false;
        loop {
            net.poll();
            let socket = net.sockets.get_mut::<tcp::Socket>(connected.socket);
            if sent < len {
                sent += socket.send_slice(&record_tx[sent..len]).unwrap_or(0);
            } else if ending {
                socket.close(); // our end record is out: FIN
                return Ok(());
            } else if !opener.plaintext().is_empty() {
                let sealed = sealer.seal(opener.plaintext(), record_tx)?;
                opener.consume(sealed.consumed);
                (sent, len) = (0, sealed.len);
                continue;
            } else if opener.is_ended() {
                (sent, len) = (0, sealer.seal_end(record_tx)?);
                ending = true;
                continue;
            } else if socket.can_recv() {
                let fed = socket.recv(|data| match opener.feed(data) {
                    Ok(n) => (n, Ok(())),
                    Err(e) => (0, Err(e)),
                });
                fed.unwrap_or(Ok(()))?;
                continue;
            } else if !socket.may_recv() {
                // The TCP stream ended: fine only after the peer's end record.
                opener.finish()?;
            }
            if !socket.is_active() {
                return Err(ChannelError::Truncated);
            }
            idle();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("firmware: cargo build --example superloop_echo --target thumbv7em-none-eabihf");
}
