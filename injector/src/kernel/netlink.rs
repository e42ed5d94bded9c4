//! rtnetlink, spoken directly: links, addresses, qdiscs and classes. No
//! `ip` or `tc` binary is ever run; their output formats and versions are
//! not our problem.

use std::{fs::File, io, net::IpAddr};

use futures::StreamExt;
use rtnetlink::{
    Handle, LinkIfb, LinkUnspec,
    packet_core::{
        DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
        NetlinkMessage, NetlinkPayload,
    },
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        address::{AddressAttribute, AddressMessage},
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        tc::{TcAttribute, TcHandle, TcMessage},
    },
};

/// A netlink failure with the kernel's errno kept, so callers can tell
/// "does not exist" from "not supported".
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NlError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

impl NlError {
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

pub type NlResult<T> = Result<T, NlError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: set when the peer lives in another namespace.
    pub peer_netnsid: Option<i32>,
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
}

/// A connection to the kernel's routing netlink in one namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A socket in the calling thread's namespace (the host's, for the
    /// daemon's runtime threads).
    pub fn current() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A socket inside namespace `ns`: a socket keeps the namespace it was
    /// created in. It must also be registered with this runtime's reactor,
    /// so the calling thread joins `ns` just for the socket() call and
    /// returns to its own namespace before anything else runs on it.
    pub fn in_namespace(ns: &File) -> io::Result<Netlink> {
        let (conn, handle, _) = super::netns::with_thread_in(ns, rtnetlink::new_connection)??;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> NlResult<Vec<RouteNetlinkMessage>> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        let mut stream = handle.request(req).map_err(|e| NlError {
            what: what(),
            source: io::Error::other(e.to_string()),
        })?;
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(NlError {
                        what: what(),
                        source: e.to_io(),
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }

    pub async fn links(&self) -> NlResult<Vec<Link>> {
        let msgs = self
            .request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
                || "list links".into(),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })
            .collect())
    }

    pub async fn link_by_name(&self, name: &str) -> NlResult<Option<Link>> {
        Ok(self.links().await?.into_iter().find(|l| l.name == name))
    }

    pub async fn link_by_index(&self, index: u32) -> NlResult<Option<Link>> {
        Ok(self.links().await?.into_iter().find(|l| l.index == index))
    }

    /// The name of interface `index`, "" if it is gone: for journal
    /// entries, which a later run matches by index and name together.
    pub async fn name_of(&self, index: u32) -> NlResult<String> {
        Ok(self
            .link_by_index(index)
            .await?
            .map(|l| l.name)
            .unwrap_or_default())
    }

    /// Every address of every interface in this namespace.
    pub async fn addresses(&self) -> NlResult<Vec<(u32, IpAddr)>> {
        let msgs = self
            .request(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
                || "list addresses".into(),
            )
            .await?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                for attr in &a.attributes {
                    if let AddressAttribute::Address(ip) = attr {
                        out.push((a.header.index, *ip));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Interfaces that carry a default route (IPv4 or IPv6, main table).
    pub async fn default_route_ifindexes(&self) -> NlResult<Vec<u32>> {
        use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let msgs = self
                .request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP, || {
                    "list routes".into()
                })
                .await?;
            for m in msgs {
                if let RouteNetlinkMessage::NewRoute(r) = m
                    && r.header.destination_prefix_length == 0
                    && r.header.table == 254
                {
                    for a in &r.attributes {
                        if let RouteAttribute::Oif(i) = a {
                            out.push(*i);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn add_ifb(&self, name: &str) -> NlResult<u32> {
        let msg = LinkIfb::new(name).up().build();
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            || format!("create ifb {name}"),
        )
        .await?;
        let link = self.link_by_name(name).await?.ok_or_else(|| NlError {
            what: format!("create ifb {name}"),
            source: io::Error::new(io::ErrorKind::NotFound, "created but not listed"),
        })?;
        Ok(link.index)
    }

    /// Creates a veth pair (used by tests and by the namespace lab).
    pub async fn add_veth(&self, name: &str, peer: &str) -> NlResult<()> {
        let msg = rtnetlink::LinkVeth::new(name, peer).build();
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            || format!("create veth {name}/{peer}"),
        )
        .await
        .map(drop)
    }

    /// Moves interface `name` into the namespace open as `ns`.
    pub async fn move_to_namespace(&self, name: &str, ns: &File) -> NlResult<()> {
        use std::os::fd::AsRawFd;
        let msg = LinkUnspec::new_with_name(name)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK, || {
            format!("move {name} to another namespace")
        })
        .await
        .map(drop)
    }

    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> NlResult<()> {
        self.handle
            .address()
            .add(index, ip, prefix)
            .execute()
            .await
            .map_err(|e| NlError {
                what: format!("add address {ip}/{prefix} to link {index}"),
                source: match e {
                    rtnetlink::Error::NetlinkError(m) => m.to_io(),
                    other => io::Error::other(other.to_string()),
                },
            })
    }

    pub async fn set_up(&self, index: u32) -> NlResult<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK, || {
            format!("set link {index} up")
        })
        .await
        .map(drop)
    }

    pub async fn del_link(&self, index: u32) -> NlResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK, || {
            format!("delete link {index}")
        })
        .await
        .map(drop)
    }

    pub async fn qdiscs(&self, index: u32) -> NlResult<Vec<Qdisc>> {
        let msgs = self
            .request(
                RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
                NLM_F_DUMP,
                || "list qdiscs".into(),
            )
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(q) if q.header.index == index as i32 => {
                    Some(Qdisc {
                        handle: q.header.handle.into(),
                        parent: q.header.parent.into(),
                        kind: q
                            .attributes
                            .iter()
                            .find_map(|a| match a {
                                TcAttribute::Kind(k) => Some(k.clone()),
                                _ => None,
                            })
                            .unwrap_or_default(),
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds (or with `replace`, replaces) a qdisc; `options` is the raw
    /// TCA_OPTIONS payload (netem's is a struct followed by attributes, which
    /// no typed builder models).
    pub async fn qdisc_add(
        &self,
        index: u32,
        parent: u32,
        handle: u32,
        kind: &str,
        options: Vec<u8>,
        replace: bool,
    ) -> NlResult<()> {
        let msg = tc_message(index, parent, handle, kind, options);
        let flags = NLM_F_ACK | NLM_F_CREATE | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), flags, || {
            format!("add {kind} qdisc {handle:#x} on link {index}")
        })
        .await
        .map(drop)
    }

    pub async fn qdisc_del(&self, index: u32, parent: u32, handle: u32) -> NlResult<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(parent);
        msg.header.handle = TcHandle::from(handle);
        self.request(
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            NLM_F_ACK,
            || format!("delete qdisc {handle:#x} on link {index}"),
        )
        .await
        .map(drop)
    }

    /// A matchall filter on `parent` (clsact ingress) that redirects every
    /// packet to `to` (mirred egress redirect), at priority `prio`. Used
    /// where bpf_redirect does not mark packets as redirected (kernels
    /// before 6.4), which IFB devices require.
    pub async fn filter_add_redirect(
        &self,
        index: u32,
        parent: u32,
        prio: u16,
        to: u32,
    ) -> NlResult<()> {
        use rtnetlink::packet_route::tc::{
            TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
            TcActionType, TcFilterMatchAllOption, TcMirror, TcMirrorActionType, TcOption,
        };
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(parent);
        // tcm_info: priority in the high half, protocol (ETH_P_ALL, network
        // order) in the low half.
        msg.header.info = ((prio as u32) << 16) | 0x0300;
        msg.attributes.push(TcAttribute::Kind("matchall".into()));
        let mut generic = TcActionGeneric::default();
        generic.action = TcActionType::Stolen;
        let mut mirror = TcMirror::default();
        mirror.generic = generic;
        mirror.eaction = TcMirrorActionType::EgressRedir;
        mirror.ifindex = to;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        msg.attributes
            .push(TcAttribute::Options(vec![TcOption::MatchAll(
                TcFilterMatchAllOption::Action(vec![action]),
            )]));
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            || format!("add a redirect filter on link {index}"),
        )
        .await
        .map(drop)
    }

    pub async fn filter_del(&self, index: u32, parent: u32, prio: u16) -> NlResult<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(parent);
        msg.header.info = ((prio as u32) << 16) | 0x0300;
        self.request(
            RouteNetlinkMessage::DelTrafficFilter(msg),
            NLM_F_ACK,
            || format!("delete the filter at priority {prio} on link {index}"),
        )
        .await
        .map(drop)
    }

    pub async fn class_add(
        &self,
        index: u32,
        parent: u32,
        classid: u32,
        kind: &str,
        options: Vec<u8>,
    ) -> NlResult<()> {
        let msg = tc_message(index, parent, classid, kind, options);
        self.request(
            RouteNetlinkMessage::NewTrafficClass(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            || format!("add {kind} class {classid:#x} on link {index}"),
        )
        .await
        .map(drop)
    }

    pub async fn class_del(&self, index: u32, classid: u32) -> NlResult<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle::from(classid);
        self.request(RouteNetlinkMessage::DelTrafficClass(msg), NLM_F_ACK, || {
            format!("delete class {classid:#x} on link {index}")
        })
        .await
        .map(drop)
    }
}

fn tc_message(index: u32, parent: u32, handle: u32, kind: &str, options: Vec<u8>) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.family = AddressFamily::Unspec;
    msg.header.parent = TcHandle::from(parent);
    msg.header.handle = TcHandle::from(handle);
    msg.attributes.push(TcAttribute::Kind(kind.to_string()));
    if !options.is_empty() {
        // TCA_OPTIONS = 2
        msg.attributes
            .push(TcAttribute::Other(DefaultNla::new(2, options)));
    }
    msg
}

fn link_of(l: LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        name: String::new(),
        kind: None,
        peer_index: None,
        peer_netnsid: None,
        up: l
            .header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up),
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Link(i) => out.peer_index = Some(i),
            LinkAttribute::LinkNetNsId(n) => out.peer_netnsid = Some(n),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        out.kind = Some(kind_name(&k));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Ifb => "ifb".into(),
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Dummy => "dummy".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Appends one netlink attribute (type, payload) to `buf`, padded to 4.
pub fn push_nla(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// A nested attribute (NLA_F_NESTED set).
pub fn push_nested(buf: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    push_nla(buf, kind | 0x8000, inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_length_prefixed_and_padded() {
        let mut b = Vec::new();
        push_nla(&mut b, 7, &[1, 2, 3]);
        assert_eq!(b.len(), 8);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 7);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 7);
        assert_eq!(&b[4..7], &[1, 2, 3]);
        let mut n = Vec::new();
        push_nested(&mut n, 1, &b);
        assert_eq!(u16::from_ne_bytes([n[2], n[3]]), 0x8001);
        assert_eq!(n.len(), 12);
    }
}
