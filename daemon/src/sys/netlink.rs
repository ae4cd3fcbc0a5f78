//! A thin rtnetlink layer: the host's links with their 64-bit counters, and the netns id the
//! host gives to another network namespace. One route-netlink connection, on smol.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use futures_lite::StreamExt;
use rtnetlink::packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::NetlinkError;

type Result<T> = std::result::Result<T, NetlinkError>;

/// One interface of the host's namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, ...
    pub kind: Option<String>,
    /// For a veth: the netns id (as seen from the host) of the namespace its peer lives in.
    pub peer_netnsid: Option<i32>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// An IPv4 route of the main table: destination and prefix length, and its device.
#[derive(Debug, Clone, PartialEq)]
pub struct Route4 {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub oif: Option<u32>,
}

#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

/// A netlink failure; a refusal (EPERM) names the capability that changing links needs.
fn nl(what: &'static str) -> impl Fn(rtnetlink::Error) -> NetlinkError {
    move |e| {
        let mut reason = e.to_string();
        if reason.contains("Operation not permitted") {
            reason.push_str(" (needs CAP_NET_ADMIN)");
        }
        NetlinkError { what, reason }
    }
}

impl Netlink {
    /// A connection in the daemon's own network namespace.
    pub fn new() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection_with_socket::<rtnetlink::sys::SmolSocket>().map_err(|e| {
                NetlinkError {
                    what: "open route netlink socket",
                    reason: e.to_string(),
                }
            })?;
        crate::rt::spawn(conn).detach();
        Ok(Netlink { handle })
    }

    /// A connection over a netlink socket created elsewhere (in another network namespace:
    /// the socket keeps speaking for the namespace it was created in).
    pub fn from_socket(fd: OwnedFd) -> Result<Netlink> {
        use std::os::fd::IntoRawFd;
        // SAFETY: we own `fd`, a NETLINK_ROUTE socket.
        let sock = unsafe { rtnetlink::sys::SmolSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(sock);
        crate::rt::spawn(conn).detach();
        Ok(Netlink { handle })
    }

    /// Index of the link called `name`, if there is one.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.next().await {
            Some(Ok(m)) => Ok(Some(m.header.index)),
            Some(Err(rtnetlink::Error::NetlinkError(e)))
                if e.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
            {
                Ok(None)
            }
            Some(Err(e)) => Err(nl("look up a link")(e)),
            None => Ok(None),
        }
    }

    pub async fn delete_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(nl("delete a link"))
    }

    /// Create a veth pair `name` <-> `peer` in this namespace.
    pub async fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(nl("create a veth pair"))
    }

    /// Move link `index` into the network namespace open at `ns`.
    pub async fn move_to_namespace(&self, index: u32, ns: &std::fs::File) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("move a link into the sink namespace"))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl("bring a link up"))
    }

    pub async fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr), prefix)
            .execute()
            .await
            .map_err(nl("add an address"))
    }

    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        self.handle
            .route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("add the default route"))
    }

    /// IPv4 routes of the main table.
    pub async fn routes_v4(&self) -> Result<Vec<Route4>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(m) = s.next().await {
            let m = m.map_err(nl("dump routes"))?;
            if m.header.table != 254 {
                continue;
            }
            let mut r = Route4 {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix: m.header.destination_prefix_length,
                oif: None,
            };
            for a in m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => r.destination = d,
                    RouteAttribute::Oif(i) => r.oif = Some(i),
                    _ => {}
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Every link of the host's namespace with its counters.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|e| NetlinkError {
                what: "dump links",
                reason: e.to_string(),
            })?;
            let mut link = Link {
                index: msg.header.index,
                ..Link::default()
            };
            for attr in msg.attributes {
                match attr {
                    LinkAttribute::IfName(n) => link.name = n,
                    LinkAttribute::LinkNetNsId(id) => link.peer_netnsid = Some(id),
                    LinkAttribute::Stats64(s) => {
                        link.rx_bytes = s.rx_bytes;
                        link.tx_bytes = s.tx_bytes;
                        link.rx_packets = s.rx_packets;
                        link.tx_packets = s.tx_packets;
                    }
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            if let LinkInfo::Kind(k) = i {
                                link.kind = Some(kind_name(&k));
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(link);
        }
        Ok(out)
    }

    /// The netns id the host's namespace uses for the namespace open at `ns` (e.g.
    /// `/proc/PID/ns/net`); `None` when the kernel has not assigned one (no link of ours
    /// points there).
    pub async fn netnsid(&self, ns: &std::fs::File) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes = vec![NsidAttribute::Fd(ns.as_raw_fd() as u32)];
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(|e| NetlinkError {
            what: "get netns id",
            reason: e.to_string(),
        })?;
        while let Some(m) = resp.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    for a in m.attributes {
                        if let NsidAttribute::Id(id) = a {
                            return Ok((id >= 0).then_some(id));
                        }
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(NetlinkError {
                        what: "get netns id",
                        reason: e.to_string(),
                    });
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Bridge => "bridge".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
