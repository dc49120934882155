//! The stack's IP configuration: the types an application passes to [`new`](super::new) and
//! [`Stack::set_config_v4`](super::Stack::set_config_v4), and how the stack puts them into the smoltcp
//! interface (addresses, default routes, the DHCP client socket).

use heapless::Vec;
#[cfg(feature = "dhcpv4")]
use smoltcp::socket::dhcpv4::{self, RetryConfig};
use smoltcp::wire::IpCidr;

use super::stack::Inner;
#[cfg(feature = "dhcpv4")]
use super::time::duration_to_smoltcp;
use super::{Ipv4Address, Ipv4Cidr};
#[cfg(feature = "ipv6")]
use super::{Ipv6Address, Ipv6Cidr};

/// Static IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaticConfigV4 {
    /// IP address and subnet mask.
    pub address: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv4Address>,
    /// DNS servers: `Stack::dns_query` asks them (feature `dns`).
    pub dns_servers: Vec<Ipv4Address, 3>,
}

/// Static IPv6 configuration.
#[cfg(feature = "ipv6")]
#[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaticConfigV6 {
    /// IP address and subnet mask.
    pub address: Ipv6Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv6Address>,
    /// DNS servers: `Stack::dns_query` asks them (feature `dns`).
    pub dns_servers: Vec<Ipv6Address, 3>,
}

/// DHCPv4 client configuration.
#[cfg(feature = "dhcpv4")]
#[cfg_attr(docsrs, doc(cfg(feature = "dhcpv4")))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct DhcpConfig {
    /// Cap on the lease duration; `None` uses what the server grants.
    pub max_lease_duration: Option<embassy_time::Duration>,
    /// Retransmission timing.
    pub retry_config: RetryConfig,
    /// Ignore DHCPNAK (not RFC 2131 compliant; helps with rogue servers).
    pub ignore_naks: bool,
    /// Server port, almost always 67.
    pub server_port: u16,
    /// Client port, almost always 68.
    pub client_port: u16,
}

#[cfg(feature = "dhcpv4")]
#[cfg_attr(docsrs, doc(cfg(feature = "dhcpv4")))]
impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            max_lease_duration: None,
            retry_config: RetryConfig::default(),
            ignore_naks: false,
            server_port: smoltcp::wire::DHCP_SERVER_PORT,
            client_port: smoltcp::wire::DHCP_CLIENT_PORT,
        }
    }
}

/// Network stack configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Config {
    /// IPv4 configuration.
    pub ipv4: ConfigV4,
    /// IPv6 configuration.
    #[cfg(feature = "ipv6")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
    pub ipv6: ConfigV6,
}

impl Config {
    /// Static IPv4 addressing, no IPv6.
    pub const fn ipv4_static(config: StaticConfigV4) -> Self {
        Self {
            ipv4: ConfigV4::Static(config),
            #[cfg(feature = "ipv6")]
            ipv6: ConfigV6::None,
        }
    }

    /// Static IPv6 addressing, no IPv4.
    #[cfg(feature = "ipv6")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
    pub const fn ipv6_static(config: StaticConfigV6) -> Self {
        Self {
            ipv4: ConfigV4::None,
            ipv6: ConfigV6::Static(config),
        }
    }

    /// IPv4 addressing from DHCP, no IPv6: `Config::dhcpv4(Default::default())`.
    #[cfg(feature = "dhcpv4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dhcpv4")))]
    pub const fn dhcpv4(config: DhcpConfig) -> Self {
        Self {
            ipv4: ConfigV4::Dhcp(config),
            #[cfg(feature = "ipv6")]
            ipv6: ConfigV6::None,
        }
    }
}

/// IPv4 configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigV4 {
    /// No IPv4.
    #[default]
    None,
    /// A static address.
    Static(StaticConfigV4),
    /// An address from DHCP.
    #[cfg(feature = "dhcpv4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dhcpv4")))]
    Dhcp(DhcpConfig),
}

/// IPv6 configuration.
#[cfg(feature = "ipv6")]
#[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigV6 {
    /// No IPv6.
    #[default]
    None,
    /// A static address.
    Static(StaticConfigV6),
}

impl Inner {
    pub(super) fn is_config_up(&self) -> bool {
        #[cfg(feature = "ipv6")]
        if self.static_v6.is_some() {
            return true;
        }
        self.static_v4.is_some()
    }

    pub(super) fn set_config_v4(&mut self, config: ConfigV4) {
        self.static_v4 = match &config {
            ConfigV4::Static(c) => Some(c.clone()),
            _ => None,
        };
        #[cfg(feature = "dhcpv4")]
        match config {
            ConfigV4::Dhcp(c) => {
                let handle = match self.dhcp_socket {
                    Some(h) => h,
                    None => {
                        let h = self.sockets.add(dhcpv4::Socket::new());
                        self.dhcp_socket = Some(h);
                        h
                    }
                };
                let socket = self.sockets.get_mut::<dhcpv4::Socket>(handle);
                socket.set_ignore_naks(c.ignore_naks);
                socket.set_max_lease_duration(c.max_lease_duration.map(duration_to_smoltcp));
                socket.set_ports(c.server_port, c.client_port);
                socket.set_retry_config(c.retry_config);
                socket.reset();
            }
            ConfigV4::None | ConfigV4::Static(_) => {
                if let Some(h) = self.dhcp_socket.take() {
                    self.sockets.remove(h);
                }
            }
        }
    }

    #[cfg(feature = "ipv6")]
    pub(super) fn set_config_v6(&mut self, config: ConfigV6) {
        self.static_v6 = match config {
            ConfigV6::None => None,
            ConfigV6::Static(c) => Some(c),
        };
    }

    /// Put the current configuration (static, or the DHCP lease) into the interface, then wake the
    /// tasks waiting for a configuration change.
    pub(super) fn apply_static_config(&mut self) {
        self.log_config();
        self.set_ip_addrs();
        self.set_default_routes();
        #[cfg(feature = "dns")]
        self.update_dns_servers();
        self.state_waker.wake();
    }

    fn log_config(&self) {
        match &self.static_v4 {
            Some(c) => {
                debug!("IPv4: up, address {:?}, gateway {:?}", c.address, c.gateway);
            }
            None => debug!("IPv4: down"),
        }
        #[cfg(feature = "ipv6")]
        match &self.static_v6 {
            Some(c) => {
                debug!("IPv6: up, address {:?}, gateway {:?}", c.address, c.gateway);
            }
            None => debug!("IPv6: down"),
        }
    }

    fn set_ip_addrs(&mut self) {
        let v4 = self.static_v4.as_ref().map(|c| IpCidr::Ipv4(c.address));
        #[cfg(feature = "ipv6")]
        let v6 = self.static_v6.as_ref().map(|c| IpCidr::Ipv6(c.address));
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // Two addresses at most; smoltcp keeps room for several.
            if let Some(address) = v4 {
                let _ = addrs.push(address);
            }
            #[cfg(feature = "ipv6")]
            if let Some(address) = v6 {
                let _ = addrs.push(address);
            }
        });
    }

    fn set_default_routes(&mut self) {
        let gateway_v4 = self.static_v4.as_ref().and_then(|c| c.gateway);
        #[cfg(feature = "ipv6")]
        let gateway_v6 = self.static_v6.as_ref().and_then(|c| c.gateway);
        let routes = self.iface.routes_mut();
        match gateway_v4 {
            Some(gw) => {
                if routes.add_default_ipv4_route(gw).is_err() {
                    warn!("route table full, no IPv4 default route");
                }
            }
            None => {
                routes.remove_default_ipv4_route();
            }
        }
        #[cfg(feature = "ipv6")]
        match gateway_v6 {
            Some(gw) => {
                if routes.add_default_ipv6_route(gw).is_err() {
                    warn!("route table full, no IPv6 default route");
                }
            }
            None => {
                routes.remove_default_ipv6_route();
            }
        }
    }
}
