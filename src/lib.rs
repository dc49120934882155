//! Direct, mutually authenticated TCP connections between two devices behind NATs, from a
//! microcontroller with a few tens of kilobytes of flash as well as from a host.
//!
//! Each peer owns an Ed25519 key pair and knows the other's public key. Both connect to a *mediator*,
//! a small rendezvous server on the public internet ([`p2psc-mediator`]), prove that they own their key
//! and say whom they want. Once both are there, the mediator tells each the other's public address as it
//! observed it, and both open a TCP connection to it at the same moment from the very port the mediator
//! saw (a TCP *simultaneous open*), so that each NAT sees outbound traffic and lets the other's SYN in.
//! The peers then authenticate each other directly — the mediator is not trusted with that — and the
//! application gets a socket whose stream is encrypted and integrity-protected.
//!
//! The crate is `no_std` and allocation-free: buffers are the caller's, sizes are visible at the call
//! site, and errors are small `Copy` enums. The same protocol code runs on the device, in the mediator
//! and in a host peer ([`p2psc-tokio`]).
//!
//! # The one call
//!
//! On an embassy executor, with the stack of [`net`] brought up and its [`Runner`](net::Runner) task
//! running (the stack has embassy-net's API and takes any embassy-net driver):
//!
//! ```no_run
//! use embedded_io_async::Write;
//! use p2psc::connector::{connect, ConnectResources, Mediator, Request};
//! use p2psc::identity::{Keypair, PublicKey};
//! use p2psc::net::{Ipv4Address, Stack};
//! use rand_core::CryptoRng;
//!
//! async fn hello(stack: Stack<'_>, me: &Keypair, trng: &mut impl CryptoRng) -> Result<(), p2psc::Error> {
//!     let peer = PublicKey::from_hex(
//!         "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
//!     ).unwrap();
//!     let mediator = Mediator::new(Ipv4Address::new(203, 0, 113, 10), 7777);
//!
//!     // Every buffer of the connection, sized in the type: 2 KiB each way for the socket you get,
//!     // the mediator connection's and the secure channel's. In firmware, put it in a StaticCell.
//!     let mut resources = ConnectResources::<2048, 2048>::new();
//!     let request = Request::new(me, peer, mediator);
//!     let mut conn = connect(stack, &mut resources, &request, trng).await?;
//!     conn.socket.write_all(b"Hello").await.ok(); // authenticated, encrypted
//!     Ok(())
//! }
//! ```
//!
//! An [`Error`] says what went wrong: `MediatorUnreachable`, `PeerNeverCame`, `PunchFailed` (a NAT that
//! cannot be punched), `AuthFailed`, `Aborted(reason)` and so on.
//!
//! Without an executor (RTIC, a super-loop), the same logic is a poll API over your own smoltcp
//! `Interface` and `SocketSet`: [`connector::Connector`], advanced by
//! [`poll(now, &mut iface, &mut sockets)`](connector::Connector::poll). [`connector::connect`] is a thin
//! async layer over it.
//!
//! # Examples
//!
//! Whole programs, in the crate's `examples/` folder:
//!
//! - [`embassy_echo`]: firmware on embassy — the stack and its runner task, `connect`, an echo on the
//!   secure channel. `cargo build --example embassy_echo --target thumbv7em-none-eabihf`.
//! - [`superloop_echo`]: the same without an executor — your smoltcp interface and sockets, the
//!   [`Connector`](connector::Connector) polled in a super-loop, the channel's records opened and sealed
//!   by hand. `cargo build --example superloop_echo --target thumbv7em-none-eabihf`.
//! - The host's side of both: `echo_client` of [`p2psc-tokio`], on tokio and OS sockets.
//!
//! The firmware examples take their board parts (Ethernet driver, time base, random seed) from small
//! stand-ins so that they build for any Cortex-M4F; the repository's `boards/` has real ones.
//!
//! # Keys
//!
//! A device's identity is a 32-byte Ed25519 seed. It can come from a PKCS#8 file made by
//! `openssl genpkey -algorithm ed25519` or `p2psc keygen` — read on the device from DER (feature
//! `pkcs8`, no allocator) or turned into a constant at build time — or stay inside a secure element
//! behind the [`Signer`](identity::Signer) trait. [`doc/keys.md`] covers making keys, getting them
//! onto a device, secure elements and rotation.
//!
//! # Modules
//!
//! From the bytes up; only the last two do I/O.
//!
//! - [`wire`]: frames and messages, parsed and emitted in place (smoltcp's `wire` shape).
//! - [`identity`]: Ed25519 key pairs, public keys and signatures ([`salty`] on the device; strict
//!   verification), the [`Signer`](identity::Signer) and [`Verifier`](identity::Verifier) traits for
//!   other implementations (a secure element, a fast host crate), key files.
//! - [`proto`]: the protocol as sans-IO state machines — registration, the punch, the peer handshake,
//!   the secure channel, the mediator's sessions and table. No clock, socket or random source of their
//!   own: time, randomness and keys are arguments.
//! - [`connector`]: the peer's side driven over smoltcp sockets (the poll API), and [`connect`](connector::connect).
//! - [`net`]: an async TCP/IP stack with embassy-net's API ([`Stack`](net::Stack),
//!   [`Runner`](net::Runner), [`TcpSocket`](net::tcp::TcpSocket)) on smoltcp, plus what punching needs:
//!   connecting from a chosen local port. The module docs say why p2psc does not sit on embassy-net.
//! - [`rng`]: the per-connection random bits, derived from the 32 bytes of entropy a connection takes.
//! - [`time`]: the instants and durations the state machines see.
//!
//! # Feature flags
//!
//! Items that need a feature say so in their documentation on docs.rs.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `ipv6` | yes | IPv6 addressing in [`net`] (smoltcp's IPv6, NDISC, ICMPv6; about 17 KiB of flash) |
//! | `dhcpv4` | yes | DHCPv4 addressing in [`net`] (`net::DhcpConfig`; about 6 KiB of flash) |
//! | `medium-ip` | yes | [`net`] on drivers without a link layer (TUN, PPP) |
//! | `pkcs8` | | DER key files, `no_std` and without an allocator: PKCS#8 private keys (`Keypair::from_pkcs8_der`), SubjectPublicKeyInfo public keys (about 10 KiB of flash when used) |
//! | `std` | | PEM key files as OpenSSL writes them (`Keypair::from_pkcs8_pem`), a `HashMap` storage for the mediator's table; implies `pkcs8` |
//! | `dalek` | | fast host Ed25519 on ed25519-dalek (`identity::dalek`), for servers and simulators; implies `std` |
//! | `defmt` | | `defmt::Format` for the public types, and p2psc's log lines through defmt |
//! | `log` | | p2psc's log lines through the `log` facade (not with `defmt`) |
//!
//! A firmware build usually takes `default-features = false` and adds back what it uses: IPv4 over
//! Ethernet alone is the smallest.
//!
//! # Size
//!
//! On a Cortex-M4 (thumbv7em, opt-level "z", LTO, IPv4 only), firmware that brings the stack up,
//! connects over the secure channel and echoes takes about 71 KiB of flash and 13 KiB of static RAM.
//! What p2psc adds to a plain TCP client on the same stack — registration, punch, handshake,
//! Ed25519/X25519, the secure channel — is about 40 KiB of that flash; the secure channel alone 8 KiB
//! (the repository's `scripts/size-report.sh` measures them: 71.0, 39.6 and 7.7 KiB with rustc 1.95).
//! Reading key files (feature `pkcs8`) is not in that image: its firmware takes the seed as a constant.
//!
//! # Specification
//!
//! The wire format, the punch and the handshake are specified in [`doc/protocol.md`], the mediator's
//! behaviour in [`doc/mediator.md`]; both ship with the crate. Another implementation, of either side,
//! can be written from them.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.91, what smoltcp 0.13 requires. Raising it is a minor-version change.
//!
//! [`p2psc-mediator`]: https://docs.rs/p2psc-mediator
//! [`p2psc-tokio`]: https://docs.rs/p2psc-tokio
//! [`doc/protocol.md`]: https://docs.rs/crate/p2psc/latest/source/doc/protocol.md
//! [`doc/mediator.md`]: https://docs.rs/crate/p2psc/latest/source/doc/mediator.md
//! [`doc/keys.md`]: https://docs.rs/crate/p2psc/latest/source/doc/keys.md
//! [`embassy_echo`]: https://docs.rs/crate/p2psc/latest/source/examples/embassy_echo.rs
//! [`superloop_echo`]: https://docs.rs/crate/p2psc/latest/source/examples/superloop_echo.rs

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

// This mod MUST go first, so that the others see its macros.
pub(crate) mod fmt;

/// Time as the state machines see it: smoltcp's `Instant` and `Duration` (microsecond resolution,
/// no clock behind them). Every clock reading enters p2psc as an argument.
pub mod time {
    pub use smoltcp::time::{Duration, Instant};

    /// `a - b`, or zero if `b` is longer (smoltcp's `Sub` panics on underflow).
    pub fn saturating_sub(a: Duration, b: Duration) -> Duration {
        Duration::from_micros(a.total_micros().saturating_sub(b.total_micros()))
    }

    /// Time from `earlier` to `now`, or zero if `earlier` is in the future.
    pub fn elapsed(now: Instant, earlier: Instant) -> Duration {
        if now > earlier {
            now - earlier
        } else {
            Duration::ZERO
        }
    }
}

pub mod connector;
pub mod identity;
pub mod net;
pub mod proto;
pub mod wire;

pub mod rng;

pub use proto::client::Error;
