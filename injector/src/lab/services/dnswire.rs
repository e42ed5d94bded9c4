//! DNS messages as the lab's server and resolver exchange them: one
//! question, A answers, the header bits that matter (RFC 1035).

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const CLASS_IN: u16 = 1;
pub const RCODE_OK: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        RCODE_OK => "NOERROR".into(),
        1 => "FORMERR".into(),
        RCODE_SERVFAIL => "SERVFAIL".into(),
        RCODE_NXDOMAIN => "NXDOMAIN".into(),
        RCODE_NOTIMP => "NOTIMP".into(),
        RCODE_REFUSED => "REFUSED".into(),
        n => format!("rcode {n}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower case, no trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// A query for `name`'s A records, recursion desired.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// Reads a (possibly compressed) name at `at`; returns it and the offset
/// just past it in the original position.
fn read_name(m: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *m.get(at)? as usize;
        if len == 0 {
            let end = end.unwrap_or(at + 1);
            return Some((labels.join("."), end));
        }
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *m.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            at = ptr;
            continue;
        }
        let label = m.get(at + 1..at + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    None
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// The id and question of a query (None if it is not one we can answer).
pub fn parse_query(m: &[u8]) -> Option<(u16, u16, Question)> {
    let id = u16_at(m, 0)?;
    let flags = u16_at(m, 2)?;
    if flags & 0x8000 != 0 || u16_at(m, 4)? != 1 {
        return None;
    }
    let (name, at) = read_name(m, 12)?;
    Some((
        id,
        flags,
        Question {
            name,
            qtype: u16_at(m, at)?,
            qclass: u16_at(m, at + 2)?,
        },
    ))
}

/// An authoritative answer to `q` (TTL 0: clients ask again every time, so
/// a change or a fault shows at once).
pub fn answer(id: u16, query_flags: u16, q: &Question, rcode: u8, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + 16 * ips.len());
    m.extend_from_slice(&id.to_be_bytes());
    // QR, AA, RD copied, RA clear.
    let flags = 0x8400 | (query_flags & 0x0100) | rcode as u16;
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    for label in q.name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&q.qtype.to_be_bytes());
    m.extend_from_slice(&q.qclass.to_be_bytes());
    for ip in ips {
        m.extend_from_slice(&[0xC0, 0x0C]);
        m.extend_from_slice(&TYPE_A.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&ip.octets());
    }
    m
}

/// What a resolver reads in a response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub addrs: Vec<Ipv4Addr>,
}

pub fn parse_response(m: &[u8]) -> Option<Response> {
    let id = u16_at(m, 0)?;
    let flags = u16_at(m, 2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    let qd = u16_at(m, 4)?;
    let an = u16_at(m, 6)?;
    let mut at = 12;
    for _ in 0..qd {
        at = read_name(m, at)?.1 + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = read_name(m, at)?.1;
        let rtype = u16_at(m, at)?;
        let len = u16_at(m, at + 8)? as usize;
        let data = m.get(at + 10..at + 10 + len)?;
        if rtype == TYPE_A && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(Response {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & 0x0200 != 0,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_its_answer_round_trip() {
        let q = query(0xBEEF, "Orders.shop.lab.");
        let (id, flags, question) = parse_query(&q).unwrap();
        assert_eq!(id, 0xBEEF);
        assert_eq!(question.name, "orders.shop.lab");
        assert_eq!((question.qtype, question.qclass), (TYPE_A, CLASS_IN));
        let ips = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        let a = answer(id, flags, &question, RCODE_OK, &ips);
        let r = parse_response(&a).unwrap();
        assert_eq!(r.id, 0xBEEF);
        assert_eq!(r.rcode, RCODE_OK);
        assert_eq!(r.addrs, ips);
        assert!(!r.truncated);
        // A response is not a query, and garbage is neither.
        assert!(parse_query(&a).is_none());
        assert!(parse_response(&q).is_none());
        assert!(parse_response(&[1, 2, 3]).is_none());
    }

    #[test]
    fn errors_carry_their_rcode() {
        let q = query(7, "nope.shop.lab");
        let (id, flags, question) = parse_query(&q).unwrap();
        let r = parse_response(&answer(id, flags, &question, RCODE_NXDOMAIN, &[])).unwrap();
        assert_eq!(rcode_name(r.rcode), "NXDOMAIN");
        assert!(r.addrs.is_empty());
    }

    #[test]
    fn compression_loops_end() {
        // A name pointer that points at itself must not spin forever.
        let mut m = vec![0u8, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(parse_response(&m).is_none());
    }
}
