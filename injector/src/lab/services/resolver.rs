//! The services' stub resolver: every lookup is a real DNS query over UDP
//! port 53 to the lab's DNS server (TCP when the answer is truncated), with
//! no cache, so a DNS fault on a service bites on its next request.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use super::dnswire::{self, RCODE_OK};

/// As glibc's resolver, shortened: 1 s per try, 2 tries.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(1);
pub const TRIES: usize = 2;

#[derive(Clone, Debug)]
pub struct Resolver {
    pub server: SocketAddr,
}

impl Resolver {
    pub fn new(server: Ipv4Addr) -> Resolver {
        Resolver {
            server: SocketAddr::from((server, 53)),
        }
    }

    /// The A records of `name`, or why there are none (said the way a
    /// user reads it in a 502: "orders.shop.lab: SERVFAIL").
    pub async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, String> {
        let mut last = String::new();
        for _ in 0..TRIES {
            match self.try_udp(name).await {
                Ok(r) if r.truncated => return self.tcp(name).await,
                Ok(r) => return outcome(name, r),
                Err(e) => last = e,
            }
        }
        Err(format!("cannot resolve {name}: {last}"))
    }

    async fn try_udp(&self, name: &str) -> Result<dnswire::Response, String> {
        let sock = UdpSocket::bind(("0.0.0.0", 0))
            .await
            .map_err(|e| e.to_string())?;
        sock.connect(self.server).await.map_err(|e| e.to_string())?;
        let id: u16 = rand::random();
        sock.send(&dnswire::query(id, name))
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let wait = async {
            loop {
                let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
                if let Some(r) = dnswire::parse_response(&buf[..n])
                    && r.id == id
                {
                    return Ok(r);
                }
            }
        };
        timeout(TRY_TIMEOUT, wait)
            .await
            .map_err(|_| format!("no answer from {} within {TRY_TIMEOUT:?}", self.server))?
    }

    async fn tcp(&self, name: &str) -> Result<Vec<Ipv4Addr>, String> {
        let work = async {
            let mut s = TcpStream::connect(self.server).await?;
            let id: u16 = rand::random();
            let q = dnswire::query(id, name);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            s.write_all(&framed).await?;
            let len = s.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = timeout(TRY_TIMEOUT * TRIES as u32, work)
            .await
            .map_err(|_| format!("cannot resolve {name}: no answer over TCP"))?
            .map_err(|e| format!("cannot resolve {name} over TCP: {e}"))?;
        let r = dnswire::parse_response(&buf)
            .ok_or_else(|| format!("cannot resolve {name}: malformed answer"))?;
        outcome(name, r)
    }
}

fn outcome(name: &str, r: dnswire::Response) -> Result<Vec<Ipv4Addr>, String> {
    if r.rcode != RCODE_OK {
        return Err(format!(
            "cannot resolve {name}: {}",
            dnswire::rcode_name(r.rcode)
        ));
    }
    if r.addrs.is_empty() {
        return Err(format!("cannot resolve {name}: no address"));
    }
    Ok(r.addrs)
}
