//! Mediators by host name (feature `dns`): [`connect_by_name`] resolves each name (its A record)
//! with [`Stack::dns_query`], then connects as [`connect`] does with addresses.
//!
//! The pair's ranking (protocol §13) is by address: a name counts as the first address it resolves
//! to, so both peers rank alike as long as their resolvers agree on that address.

use heapless::Vec;
use rand_core::CryptoRng;

use super::{connect, ConnectResources, Error, Mediator, Request, SecureConnection};
use crate::identity::{PublicKey, Signer};
use crate::net::dns::DnsQueryType;
use crate::net::Stack;

/// The most mediators [`connect_by_name`] resolves; names after these are ignored.
pub const MAX_NAMED_MEDIATORS: usize = 4;

/// A mediator both peers register with, by host name (feature `dns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MediatorName<'n> {
    /// Its host name, e.g. `"mediator.example.org"` (an IPv4 address literal also works).
    pub host: &'n str,
    /// Its TCP port.
    pub port: u16,
}

impl<'n> MediatorName<'n> {
    /// The mediator at `host`:`port`.
    pub const fn new(host: &'n str, port: u16) -> Self {
        MediatorName { host, port }
    }
}

/// One mediator is a list of one, as for [`Mediator`].
impl<'n> AsRef<[MediatorName<'n>]> for MediatorName<'n> {
    fn as_ref(&self) -> &[MediatorName<'n>] {
        core::slice::from_ref(self)
    }
}

impl<'n, S: Signer, M: AsRef<[MediatorName<'n>]>> Request<S, M> {
    /// Connect as `signer` to `peer` through mediators given by host name (one [`MediatorName`],
    /// or an array or a slice of them), with the default [`Config`](super::Config): for
    /// [`connect_by_name`].
    pub fn with_mediator_names(signer: S, peer: PublicKey, mediators: M) -> Request<S, M> {
        Request {
            signer,
            peer,
            mediators,
            config: super::Config::default(),
        }
    }
}

/// Resolve each of `names` (the first [`MAX_NAMED_MEDIATORS`]) to its first IPv4 address, in
/// order.
///
/// # Errors
/// [`Error::MediatorNameUnresolved`] if a name has no address: no such name, no A record, no DNS
/// server configured or answering in time, or no free socket slot for the query.
pub async fn resolve_mediators(
    stack: Stack<'_>,
    names: &[MediatorName<'_>],
) -> Result<Vec<Mediator, MAX_NAMED_MEDIATORS>, Error> {
    let mut mediators = Vec::new();
    for name in names.iter().take(MAX_NAMED_MEDIATORS) {
        let addresses = stack.dns_query(name.host, DnsQueryType::A).await;
        let address = addresses.ok().and_then(|a| a.first().copied());
        let Some(address) = address else {
            warn!("mediator name did not resolve");
            return Err(Error::MediatorNameUnresolved);
        };
        // Cannot fail: at most MAX_NAMED_MEDIATORS names are taken.
        let _ = mediators.push(Mediator::new(address, name.port));
    }
    Ok(mediators)
}

/// [`connect`] with the mediators given by host name: resolve them ([`resolve_mediators`]), then
/// connect through them as `request` says.
///
/// `request.mediators` is one [`MediatorName`] or a list of them (an array or a slice).
///
/// ```no_run
/// use p2psc::connector::{connect_by_name, ConnectResources, MediatorName, Request};
/// use p2psc::identity::{Keypair, PublicKey};
/// use p2psc::net::Stack;
/// use p2psc::rng::Drbg;
///
/// async fn hello(stack: Stack<'_>, seed_from_trng: [u8; 32]) -> Result<(), p2psc::Error> {
///     let me = Keypair::from_seed(&[0xA1; 32]);
///     let peer = PublicKey::from_hex("8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394").unwrap();
///     let mediator = MediatorName::new("mediator.example.org", 7777);
///     let mut resources = ConnectResources::<1024, 1024>::new();
///     let request = Request::with_mediator_names(&me, peer, mediator);
///     let _conn = connect_by_name(stack, &mut resources, &request, &mut Drbg::new(seed_from_trng)).await?;
///     Ok(())
/// }
/// ```
pub async fn connect_by_name<
    'a,
    'n,
    S: Signer,
    M: AsRef<[MediatorName<'n>]>,
    const RX: usize,
    const TX: usize,
    const CANDIDATES: usize,
    const RECORD_TX: usize,
    const RECORD_RX: usize,
>(
    stack: Stack<'a>,
    resources: &'a mut ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>,
    request: &Request<S, M>,
    rng: &mut impl CryptoRng,
) -> Result<SecureConnection<'a>, Error> {
    let mediators = resolve_mediators(stack, request.mediators.as_ref()).await?;
    let resolved = Request {
        signer: &request.signer,
        peer: request.peer,
        mediators,
        config: request.config,
    };
    connect(stack, resources, &resolved, rng).await
}
