//! The UDP side: which interfaces to use, the sockets, and sending a Probe
//! on every interface.
//!
//! ```text
//!   probe socket  (0.0.0.0:0, [::]:0)     ── Probe ──► 239.255.255.250:3702 / [ff02::c%if]:3702
//!                                          ◄── ProbeMatches (unicast)
//!   listen socket (0.0.0.0:3702, [::]:3702, groups joined per interface)
//!                                          ◄── Hello / Bye (multicast)
//! ```
//!
//! Interfaces are those up, multicast-capable and not loopback (or those
//! whose names match `interfaces`), re-read at every probe so an interface
//! that comes up later is used. IPv6 is used where the host has it; a
//! listen socket that cannot be bound (the port taken without SO_REUSEPORT)
//! leaves discovery to probes alone, with a warning.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::{InterfaceFlags, if_nametoindex};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::details::Config;
use crate::wsd::{MULTICAST_V4, MULTICAST_V6, PORT};

/// An interface discovery runs on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Interface {
    pub name: String,
    pub index: u32,
    pub v4: Vec<Ipv4Addr>,
    pub v6: bool,
}

/// The interfaces to use now.
pub(crate) fn interfaces(config: &Config) -> Vec<Interface> {
    let Ok(addresses) = getifaddrs() else {
        warn!("cannot list the network interfaces");
        return Vec::new();
    };
    let mut found: Vec<Interface> = Vec::new();
    for address in addresses {
        let flags = address.flags;
        let wanted = if config.interfaces.is_empty() {
            flags.contains(InterfaceFlags::IFF_MULTICAST)
                && !flags.contains(InterfaceFlags::IFF_LOOPBACK)
        } else {
            config
                .interfaces
                .iter()
                .any(|p| p.matches(&address.interface_name))
        };
        if !wanted || !flags.contains(InterfaceFlags::IFF_UP) {
            continue;
        }
        let position = match found.iter().position(|i| i.name == address.interface_name) {
            Some(position) => position,
            None => {
                let Ok(index) = if_nametoindex(address.interface_name.as_str()) else {
                    continue;
                };
                found.push(Interface {
                    name: address.interface_name.clone(),
                    index,
                    v4: Vec::new(),
                    v6: false,
                });
                found.len() - 1
            }
        };
        let Some(sockaddr) = address.address else {
            continue;
        };
        if let Some(v4) = sockaddr.as_sockaddr_in() {
            found[position].v4.push(v4.ip());
        } else if sockaddr.as_sockaddr_in6().is_some() {
            found[position].v6 = true;
        }
    }
    found.sort();
    found
}

/// The sockets of one discovery.
#[derive(Debug)]
pub(crate) struct Sockets {
    pub probe_v4: UdpSocket,
    pub listen_v4: Option<UdpSocket>,
    pub probe_v6: Option<UdpSocket>,
    pub listen_v6: Option<UdpSocket>,
    joined_v4: BTreeSet<Ipv4Addr>,
    joined_v6: BTreeSet<u32>,
}

impl Sockets {
    /// Opens the sockets. Only the IPv4 probe socket is required.
    pub(crate) fn open(config: &Config) -> io::Result<Self> {
        let probe_v4 = bind(
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            false,
        )?;
        let listen_v4 = bind(Domain::IPV4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)), true)
            .inspect_err(|error| warn!(%error, "cannot listen for Hello and Bye on 0.0.0.0:3702; cameras are found by probes only"))
            .ok();
        let (probe_v6, listen_v6) = if config.ipv6 {
            let probe = bind(
                Domain::IPV6,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
                false,
            )
            .inspect_err(|error| debug!(%error, "no IPv6"))
            .ok();
            let listen = probe.as_ref().and_then(|_| {
                bind(
                    Domain::IPV6,
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT)),
                    true,
                )
                .inspect_err(|error| debug!(%error, "cannot listen on [::]:3702"))
                .ok()
            });
            (probe, listen)
        } else {
            (None, None)
        };
        Ok(Self {
            probe_v4,
            listen_v4,
            probe_v6,
            listen_v6,
            joined_v4: BTreeSet::new(),
            joined_v6: BTreeSet::new(),
        })
    }

    /// Joins the multicast groups on interfaces not joined yet.
    pub(crate) fn join(&mut self, interfaces: &[Interface]) {
        if let Some(listen) = &self.listen_v4 {
            for address in interfaces.iter().flat_map(|i| &i.v4) {
                if self.joined_v4.contains(address) {
                    continue;
                }
                match listen.join_multicast_v4(MULTICAST_V4, *address) {
                    Ok(()) => {
                        self.joined_v4.insert(*address);
                    }
                    Err(error) => debug!(%error, %address, "cannot join the WS-Discovery group"),
                }
            }
        }
        if let Some(listen) = &self.listen_v6 {
            for interface in interfaces.iter().filter(|i| i.v6) {
                if self.joined_v6.contains(&interface.index) {
                    continue;
                }
                match listen.join_multicast_v6(&MULTICAST_V6, interface.index) {
                    Ok(()) => {
                        self.joined_v6.insert(interface.index);
                    }
                    Err(error) => {
                        debug!(%error, interface = %interface.name, "cannot join the IPv6 WS-Discovery group");
                    }
                }
            }
        }
    }

    /// Sends `datagram` to the WS-Discovery groups on every interface.
    /// Whether it went out at least once.
    pub(crate) async fn multicast(&self, datagram: &[u8], interfaces: &[Interface]) -> bool {
        let mut sent = false;
        let v4 = SockRef::from(&self.probe_v4);
        for address in interfaces.iter().flat_map(|i| &i.v4) {
            if let Err(error) = v4.set_multicast_if_v4(address) {
                debug!(%error, %address, "cannot choose the interface");
                continue;
            }
            let target = SocketAddrV4::new(MULTICAST_V4, PORT);
            match self.probe_v4.send_to(datagram, target).await {
                Ok(_) => sent = true,
                Err(error) => debug!(%error, %address, "cannot send the Probe"),
            }
        }
        if let Some(probe) = &self.probe_v6 {
            for interface in interfaces.iter().filter(|i| i.v6) {
                let target = SocketAddrV6::new(MULTICAST_V6, PORT, 0, interface.index);
                match probe.send_to(datagram, target).await {
                    Ok(_) => sent = true,
                    Err(error) => {
                        debug!(%error, interface = %interface.name, "cannot send the IPv6 Probe");
                    }
                }
            }
        }
        sent
    }
}

fn bind(domain: Domain, address: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(true)?;
    }
    if shared {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
    }
    if domain == Domain::IPV4 {
        socket.set_multicast_ttl_v4(1)?;
        socket.set_multicast_loop_v4(true)?;
    } else {
        socket.set_multicast_hops_v6(1)?;
        socket.set_multicast_loop_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}
