//! A thin rtnetlink layer: the host's links with their 64-bit counters, and the netns id the
//! host gives to another network namespace. One route-netlink connection, on smol.

use std::os::fd::AsRawFd;

use futures_lite::StreamExt;
use rtnetlink::packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};

use crate::error::{Error, Result};

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

#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    pub fn new() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection_with_socket::<rtnetlink::sys::SmolSocket>().map_err(|e| {
                Error::Netlink {
                    what: "open route netlink socket",
                    reason: e.to_string(),
                }
            })?;
        crate::rt::spawn(conn).detach();
        Ok(Netlink { handle })
    }

    /// Every link of the host's namespace with its counters.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|e| Error::Netlink {
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
        let mut resp = handle.request(req).map_err(|e| Error::Netlink {
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
                    return Err(Error::Netlink {
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
