//! What [`connect`](super::connect) is asked to do: [`Request`] (who, whom, through which mediators)
//! and its [`Config`] (deadlines in embassy-time's `Duration`, like the rest of the async API).

use embassy_time::Duration;

use crate::identity::{PublicKey, Signer};
use crate::net::{IpAddress, IpEndpoint};
use crate::proto::client::ConnectConfig;

/// A mediator both peers register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mediator {
    /// Its address and TCP port.
    pub endpoint: IpEndpoint,
}

impl Mediator {
    /// The mediator at `addr`:`port`.
    pub fn new(addr: impl Into<IpAddress>, port: u16) -> Mediator {
        Mediator {
            endpoint: IpEndpoint::new(addr.into(), port),
        }
    }
}

/// One mediator is a list of one: what a [`Request`] or a [`Connector`](super::Connector) of one
/// mediator holds, at no cost.
impl AsRef<[Mediator]> for Mediator {
    fn as_ref(&self) -> &[Mediator] {
        core::slice::from_ref(self)
    }
}

/// How [`connect`](super::connect) goes about it: the deadlines and the local port.
///
/// Durations are embassy-time's, as everywhere in the async API (`TcpSocket::set_timeout`,
/// `with_timeout`, the DHCP configuration). The sans-IO layer underneath — the
/// [`Connector`](super::Connector) poll API and [`proto`](crate::proto) — counts in smoltcp's time
/// instead (what `Interface::poll` takes, in microseconds whatever the firmware's tick rate): this
/// converts into its [`ConnectConfig`], whose other settings (the retry schedule both peers share)
/// keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Overall deadline, from the call to the authenticated connection (default 120 s).
    pub timeout: Duration,
    /// Longest wait for the peer once registered with a mediator (default 60 s).
    pub wait_timeout: Duration,
    /// Longest wait for the TCP connection to a mediator (default 10 s).
    pub mediator_timeout: Duration,
    /// How long the punch keeps trying once the pair is matched (default 15 s).
    pub punch_timeout: Duration,
    /// Local port of the mediator connection and the punch; random in 49152..=65535 if `None`.
    pub local_port: Option<u16>,
}

/// The protocol's defaults ([`ConnectConfig::default`]; a test checks that they agree).
impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(120),
            wait_timeout: Duration::from_secs(60),
            mediator_timeout: Duration::from_secs(10),
            punch_timeout: Duration::from_secs(15),
            local_port: None,
        }
    }
}

impl From<Config> for ConnectConfig {
    fn from(config: Config) -> ConnectConfig {
        let smoltcp = crate::net::duration_to_smoltcp;
        let mut protocol = ConnectConfig {
            timeout: smoltcp(config.timeout),
            mediator_timeout: smoltcp(config.mediator_timeout),
            local_port: config.local_port,
            ..ConnectConfig::default()
        };
        protocol.register.wait_timeout = smoltcp(config.wait_timeout);
        protocol.punch.punch_timeout = smoltcp(config.punch_timeout);
        protocol
    }
}

/// One connection to make: who we are, whom we want, where we meet, and how.
///
/// `M` holds the mediators: one [`Mediator`] ([`Request::new`]), or several — an array or a slice of
/// them ([`Request::with_mediators`]). With several, both peers rank them the same way (by the pair's
/// keys, protocol §13) and meet on the first that works; a mediator that cannot serve them before
/// the Match (unreachable, closed, shutting down: [`Error::moves_on`](crate::Error::moves_on)) is left
/// for the next, within the one overall deadline. Both peers should list the same mediators, by the
/// addresses they reach them at (`doc/mediator.md` says what differing lists cost).
///
/// ```
/// use p2psc::connector::{Config, Mediator, Request};
/// use p2psc::identity::{Keypair, PublicKey};
/// use p2psc::net::Ipv4Address;
///
/// let me = Keypair::from_seed(&[0xA1; 32]); // yours: from protected storage
/// let peer: PublicKey = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394".parse().unwrap();
/// let mediator = Mediator::new(Ipv4Address::new(203, 0, 113, 10), 7777);
/// let request = Request {
///     config: Config { timeout: embassy_time::Duration::from_secs(60), ..Config::default() },
///     ..Request::new(&me, peer, mediator)
/// };
/// assert_eq!(request.peer, peer);
///
/// // Three mediators; the pair meets on the first of its ranking that works.
/// let mediators = [
///     mediator,
///     Mediator::new(Ipv4Address::new(198, 51, 100, 20), 7777),
///     Mediator::new(Ipv4Address::new(192, 0, 2, 30), 7777),
/// ];
/// let request = Request::with_mediators(&me, peer, &mediators[..]);
/// assert_eq!(request.mediators.len(), 3);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<S, M = Mediator> {
    /// Our identity: it signs the registration and the peer handshake (a [`Keypair`](crate::identity::Keypair),
    /// a reference to one, or a secure element's [`Signer`]).
    pub signer: S,
    /// The peer's public key: only a peer that proves it is accepted.
    pub peer: PublicKey,
    /// Where both peers register: one [`Mediator`], or a list of them.
    pub mediators: M,
    /// Deadlines and the local port.
    pub config: Config,
}

impl<S: Signer> Request<S> {
    /// Connect as `signer` to `peer` through `mediator`, with the default [`Config`].
    pub fn new(signer: S, peer: PublicKey, mediator: Mediator) -> Request<S> {
        Request {
            signer,
            peer,
            mediators: mediator,
            config: Config::default(),
        }
    }
}

impl<S: Signer, M: AsRef<[Mediator]>> Request<S, M> {
    /// Connect as `signer` to `peer` through the first of `mediators`, in the pair's ranking, that
    /// works; with the default [`Config`].
    pub fn with_mediators(signer: S, peer: PublicKey, mediators: M) -> Request<S, M> {
        Request {
            signer,
            peer,
            mediators,
            config: Config::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_protocols() {
        assert_eq!(
            ConnectConfig::from(Config::default()),
            ConnectConfig::default()
        );
    }

    #[test]
    fn every_setting_reaches_the_protocol_config() {
        let config = Config {
            timeout: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(20),
            mediator_timeout: Duration::from_millis(2500),
            punch_timeout: Duration::from_secs(7),
            local_port: Some(50000),
        };
        let p = ConnectConfig::from(config);
        let secs = crate::time::Duration::from_secs;
        assert_eq!(p.timeout, secs(30));
        assert_eq!(p.register.wait_timeout, secs(20));
        assert_eq!(p.mediator_timeout, crate::time::Duration::from_millis(2500));
        assert_eq!(p.punch.punch_timeout, secs(7));
        assert_eq!(p.local_port, Some(50000));
    }
}
