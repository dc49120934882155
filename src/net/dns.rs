//! DNS queries (feature `dns`): [`Stack::dns_query`] over smoltcp's DNS socket, with
//! embassy-net's API, and the servers taken from the static configuration or the DHCP lease.
//!
//! Adapted from embassy-net 0.9.1 `src/dns.rs` and `Stack::dns_query` (MIT OR Apache-2.0), with
//! every wait bounded: a query that has no answer within its timeout fails with
//! [`DnsError::TimedOut`] instead of waiting on.

use core::future::poll_fn;
use core::task::{Context, Poll};

use embassy_time::{with_timeout, Duration};
use heapless::Vec;
use smoltcp::socket::dns::{self, DnsQuery, GetQueryResultError, QueryHandle, StartQueryError};
pub use smoltcp::wire::DnsQueryType;

use super::stack::Inner;
use super::{IpAddress, Stack};

/// Most addresses a query returns (smoltcp's `DNS_MAX_RESULT_COUNT`).
pub const MAX_ADDRESS_COUNT: usize = smoltcp::config::DNS_MAX_RESULT_COUNT;

/// How long [`Stack::dns_query`] waits for an answer. smoltcp retransmits after 1, 2, 4… s and
/// moves to the next server only after 10 s of silence, so within this bound a silent first server
/// ends in [`DnsError::TimedOut`]; give [`Stack::dns_query_with_timeout`] more than 10 s per
/// server to fall back to the next ones (a query whose every server stayed silent then ends in
/// [`DnsError::Failed`]).
pub const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(8);

/// Error from a DNS query.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DnsError {
    /// The name is empty or not a valid host name.
    InvalidName,
    /// The name is longer than smoltcp's `DNS_MAX_NAME_SIZE`.
    NameTooLong,
    /// The query failed: the name does not exist (NXDOMAIN), has no record of the type asked, or
    /// every server stayed silent for smoltcp's per-server timeout (10 s).
    Failed,
    /// No answer within the query's timeout.
    TimedOut,
    /// The stack has no free socket slot for the DNS socket (`SOCK` of
    /// [`StackResources`](super::StackResources)).
    SocketSetFull,
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DnsError::InvalidName => "invalid DNS name",
            DnsError::NameTooLong => "DNS name too long",
            DnsError::Failed => "DNS query failed",
            DnsError::TimedOut => "DNS query timed out",
            DnsError::SocketSetFull => "no free socket slot for DNS",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DnsError {}

impl From<StartQueryError> for DnsError {
    fn from(e: StartQueryError) -> Self {
        match e {
            StartQueryError::NameTooLong => DnsError::NameTooLong,
            // `NoFreeSlot` cannot happen: each query has a socket of its own.
            _ => DnsError::InvalidName,
        }
    }
}

impl<'d> Stack<'d> {
    /// Resolve `name` to addresses of type `qtype` (A, AAAA), with [`DNS_QUERY_TIMEOUT`].
    ///
    /// A name that is an address literal of the type asked is returned as is, without a query.
    /// Needs [`Runner::run`](super::Runner::run) to be running and a DNS server in the
    /// configuration (static, or from DHCP).
    pub async fn dns_query(
        &self,
        name: &str,
        qtype: DnsQueryType,
    ) -> Result<Vec<IpAddress, MAX_ADDRESS_COUNT>, DnsError> {
        self.dns_query_with_timeout(name, qtype, DNS_QUERY_TIMEOUT)
            .await
    }

    /// [`Stack::dns_query`] with the whole query (waiting for a free query slot included) bounded
    /// by `timeout`.
    pub async fn dns_query_with_timeout(
        &self,
        name: &str,
        qtype: DnsQueryType,
        timeout: Duration,
    ) -> Result<Vec<IpAddress, MAX_ADDRESS_COUNT>, DnsError> {
        if let Some(address) = address_literal(name, qtype) {
            let mut addresses = Vec::new();
            let _ = addresses.push(address);
            return Ok(addresses);
        }
        with_timeout(timeout, self.run_query(name, qtype))
            .await
            .unwrap_or(Err(DnsError::TimedOut))
    }

    /// Start the query (waiting until no other query runs) and wait for its result.
    async fn run_query(
        &self,
        name: &str,
        qtype: DnsQueryType,
    ) -> Result<Vec<IpAddress, MAX_ADDRESS_COUNT>, DnsError> {
        let handle =
            poll_fn(|cx| self.with_inner_mut(|i| i.start_dns_query(cx, name, qtype))).await?;
        // Removes the socket when the query ends or this future is dropped (a timeout).
        let _running = RunningQuery { stack: *self };
        poll_fn(|cx| {
            self.with_inner_mut(|i| {
                let socket = i.dns_socket_mut()?;
                match socket.get_query_result(handle) {
                    Ok(addresses) => Some(Poll::Ready(Ok(addresses))),
                    Err(GetQueryResultError::Pending) => {
                        socket.register_query_waker(handle, cx.waker());
                        Some(Poll::Pending)
                    }
                    Err(GetQueryResultError::Failed) => Some(Poll::Ready(Err(DnsError::Failed))),
                }
            })
            // Only this query removes the socket it runs on.
            .unwrap_or(Poll::Ready(Err(DnsError::Failed)))
        })
        .await
    }
}

/// The running query: dropping it removes the DNS socket (and with it the query, finished or not)
/// and wakes the tasks waiting to start theirs.
struct RunningQuery<'d> {
    stack: Stack<'d>,
}

impl Drop for RunningQuery<'_> {
    fn drop(&mut self) {
        self.stack.with_inner_mut(|i| i.remove_dns_socket());
    }
}

/// `name` as an address, if it is a literal of the type `qtype` asks for.
fn address_literal(name: &str, qtype: DnsQueryType) -> Option<IpAddress> {
    match qtype {
        DnsQueryType::A => name.parse().ok().map(IpAddress::Ipv4),
        #[cfg(feature = "ipv6")]
        DnsQueryType::Aaaa => name.parse().ok().map(IpAddress::Ipv6),
        _ => None,
    }
}

impl Inner {
    /// Start a query on a new DNS socket, or wait while another query has the socket.
    fn start_dns_query(
        &mut self,
        cx: &mut Context<'_>,
        name: &str,
        qtype: DnsQueryType,
    ) -> Poll<Result<QueryHandle, DnsError>> {
        if self.dns_socket.is_some() {
            self.dns_waker.register(cx.waker());
            return Poll::Pending;
        }
        if self.sockets.iter().count() >= self.socket_slots {
            return Poll::Ready(Err(DnsError::SocketSetFull));
        }
        // SAFETY: the query slot lives in the stack's resources, borrowed for `'d` like the socket
        // storage, and only the one DNS socket in the set (removed with the query) uses it.
        let queries: &'static mut [Option<DnsQuery>; 1] = unsafe { &mut *self.dns_queries };
        queries[0] = None;
        let handle = self.sockets.add(dns::Socket::new(&[], &mut queries[..]));
        self.dns_socket = Some(handle);
        self.update_dns_servers();
        let socket = self.sockets.get_mut::<dns::Socket>(handle);
        match socket.start_query(self.iface.context(), name, qtype) {
            Ok(query) => {
                self.waker.wake();
                Poll::Ready(Ok(query))
            }
            Err(e) => {
                self.remove_dns_socket();
                Poll::Ready(Err(DnsError::from(e)))
            }
        }
    }

    fn dns_socket_mut(&mut self) -> Option<&mut dns::Socket<'static>> {
        let handle = self.dns_socket?;
        Some(self.sockets.get_mut::<dns::Socket>(handle))
    }

    fn remove_dns_socket(&mut self) {
        if let Some(handle) = self.dns_socket.take() {
            self.sockets.remove(handle);
        }
        self.dns_waker.wake();
    }

    /// Give the DNS socket, if a query runs, the servers of the current configuration.
    pub(super) fn update_dns_servers(&mut self) {
        let mut servers: Vec<IpAddress, 6> = Vec::new();
        if let Some(c) = &self.static_v4 {
            servers.extend(c.dns_servers.iter().map(|&s| IpAddress::Ipv4(s)));
        }
        #[cfg(feature = "ipv6")]
        if let Some(c) = &self.static_v6 {
            servers.extend(c.dns_servers.iter().map(|&s| IpAddress::Ipv6(s)));
        }
        if let Some(socket) = self.dns_socket_mut() {
            socket.update_servers(&servers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Ipv4Address;

    #[test]
    fn an_address_literal_of_the_type_asked_needs_no_query() {
        assert_eq!(
            address_literal("192.0.2.7", DnsQueryType::A),
            Some(IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 7)))
        );
        assert_eq!(address_literal("mediator.example", DnsQueryType::A), None);
        assert_eq!(address_literal("192.0.2.7.example", DnsQueryType::A), None);
        #[cfg(feature = "ipv6")]
        assert_eq!(address_literal("192.0.2.7", DnsQueryType::Aaaa), None);
    }

    #[test]
    fn start_errors_map_to_typed_errors() {
        assert_eq!(
            DnsError::from(StartQueryError::NameTooLong),
            DnsError::NameTooLong
        );
        assert_eq!(
            DnsError::from(StartQueryError::InvalidName),
            DnsError::InvalidName
        );
    }
}
