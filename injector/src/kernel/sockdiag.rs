//! TCP sockets through NETLINK_SOCK_DIAG: list them with their cgroup and
//! byte counters, and destroy them (SOCK_DESTROY, what `ss -K` does).
//!
//! cgroup programs may only drop packets, so resetting the connections of
//! a cgroup target is done here: the destroyed socket sees ECONNABORTED,
//! and the kernel sends an RST that gives its peer ECONNRESET.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_CGROUP_ID: u16 = 21;
const TCP_ESTABLISHED: u8 = 1;

/// struct inet_diag_sockid, as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    ifindex: u32,
    cookie: [u32; 2],
}

/// struct inet_diag_req_v2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Req {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// A TCP socket as the kernel reports it.
#[derive(Clone, Debug)]
pub struct TcpSock {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub cgroup: u64,
    pub cookie: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    id: SockId,
    family: u8,
}

fn socket() -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn request(kind: u16, flags: u16, req: &Req) -> Vec<u8> {
    let len = 16 + size_of::<Req>();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid
    let raw =
        unsafe { std::slice::from_raw_parts(req as *const Req as *const u8, size_of::<Req>()) };
    b.extend_from_slice(raw);
    b
}

fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr() as *const _, msg.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn addr(family: u8, words: &[u32; 4]) -> IpAddr {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&bytes);
        IpAddr::V6(Ipv6Addr::from(a))
    }
}

/// Established TCP sockets of this namespace (both families), with their
/// cgroup ids and byte counters.
pub fn established() -> io::Result<Vec<TcpSock>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let fd = socket()?;
        let req = Req {
            family,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 1 << (INET_DIAG_INFO - 1),
            states: 1 << TCP_ESTABLISHED,
            ..Req::default()
        };
        send(
            &fd,
            &request(SOCK_DIAG_BY_FAMILY, libc::NLM_F_DUMP as u16, &req),
        )?;
        let mut buf = vec![0u8; 1 << 16];
        'dump: loop {
            let n = recv(&fd, &mut buf)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                if len < 16 || off + len > n {
                    break 'dump;
                }
                match kind {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                    }
                    _ => {
                        if let Some(s) = parse(&buf[off + 16..off + len]) {
                            out.push(s);
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
    Ok(out)
}

/// Parses one inet_diag_msg and its attributes.
fn parse(m: &[u8]) -> Option<TcpSock> {
    // family, state, timer, retrans (4) + sockid (48) + expires, rqueue,
    // wqueue, uid, inode (20) = 72 bytes
    if m.len() < 72 {
        return None;
    }
    let family = m[0];
    let id: SockId = unsafe { std::ptr::read_unaligned(m[4..].as_ptr() as *const SockId) };
    let mut s = TcpSock {
        local: (addr(family, &id.src), u16::from_be_bytes(id.sport)),
        remote: (addr(family, &id.dst), u16::from_be_bytes(id.dport)),
        cgroup: 0,
        cookie: id.cookie[0] as u64 | (id.cookie[1] as u64) << 32,
        bytes_acked: 0,
        bytes_received: 0,
        id,
        family,
    };
    let mut off = 72;
    while off + 4 <= m.len() {
        let len = u16::from_ne_bytes([m[off], m[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([m[off + 2], m[off + 3]]) & 0x3fff;
        if len < 4 || off + len > m.len() {
            break;
        }
        let v = &m[off + 4..off + len];
        match kind {
            INET_DIAG_CGROUP_ID if v.len() >= 8 => {
                s.cgroup = u64::from_ne_bytes(v[..8].try_into().unwrap());
            }
            // struct tcp_info: tcpi_bytes_acked at 120, tcpi_bytes_received
            // at 128 (stable since 4.1/4.2).
            INET_DIAG_INFO if v.len() >= 136 => {
                s.bytes_acked = u64::from_ne_bytes(v[120..128].try_into().unwrap());
                s.bytes_received = u64::from_ne_bytes(v[128..136].try_into().unwrap());
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some(s)
}

/// Destroys one socket: it sees ECONNABORTED, its peer gets an RST.
pub fn destroy(s: &TcpSock) -> io::Result<()> {
    let fd = socket()?;
    let req = Req {
        family: s.family,
        protocol: libc::IPPROTO_TCP as u8,
        states: 1 << TCP_ESTABLISHED,
        id: s.id,
        ..Req::default()
    };
    send(&fd, &request(SOCK_DESTROY, libc::NLM_F_ACK as u16, &req))?;
    let mut buf = [0u8; 256];
    let n = recv(&fd, &mut buf)?;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_the_kernel_structs() {
        assert_eq!(size_of::<SockId>(), 48);
        assert_eq!(size_of::<Req>(), 56);
        let r = request(SOCK_DIAG_BY_FAMILY, 0, &Req::default());
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
    }

    #[test]
    fn lists_a_loopback_connection_with_our_cgroup() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let c = std::net::TcpStream::connect(a).unwrap();
        let local = c.local_addr().unwrap();
        let socks = established().unwrap();
        let mine = socks
            .iter()
            .find(|s| s.local == (local.ip(), local.port()) && s.remote == (a.ip(), a.port()))
            .expect("our connection is listed");
        assert_ne!(mine.cookie, 0);
        if let Ok(cg) = super::super::cgroup::of_pid(std::process::id()) {
            assert_eq!(mine.cgroup, cg.id);
        }
    }
}
