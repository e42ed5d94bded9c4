//! The database: an in-memory key-value store that speaks the Redis
//! protocol (RESP, and inline commands), so `redis-cli -h <db> -p 6379`
//! works against it. Enough commands for the shop and for poking at it:
//! PING ECHO GET SET INCR DEL EXISTS DBSIZE KEYS INFO COMMAND QUIT.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
    time::timeout,
};

use super::{
    http::{CallError, connect, io_reason},
    listen,
};
use crate::lab::plan::DB_PORT;

type Store = Arc<Mutex<BTreeMap<String, String>>>;

pub async fn serve() -> anyhow::Result<()> {
    let listener = listen(DB_PORT).await?;
    let store: Store = Arc::default();
    loop {
        let (sock, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            let _ = session(sock, store).await;
        });
    }
}

/// One command, from RESP (`*N` then `$len` bulk strings) or one line.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Vec<String>>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let line = line.trim_end();
    let Some(n) = line.strip_prefix('*') else {
        return Ok(Some(line.split_whitespace().map(str::to_string).collect()));
    };
    let n: usize = n.parse().map_err(|_| bad("bad array length"))?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let mut head = String::new();
        r.read_line(&mut head).await?;
        let len: usize = head
            .trim_end()
            .strip_prefix('$')
            .and_then(|l| l.parse().ok())
            .filter(|l| *l <= 1 << 20)
            .ok_or_else(|| bad("bad bulk length"))?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).await?;
        buf.truncate(len);
        args.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Ok(Some(args))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// The reply to one command; None closes the connection.
fn execute(store: &Store, args: &[String]) -> Option<String> {
    let Some(cmd) = args.first() else {
        return Some(String::new());
    };
    let mut db = store.lock().expect("db lock");
    let arity = |n: usize| args.len() == n;
    let wrong = || format!("-ERR wrong number of arguments for '{cmd}' command\r\n");
    Some(match cmd.to_ascii_uppercase().as_str() {
        "PING" if args.len() == 2 => bulk(&args[1]),
        "PING" => "+PONG\r\n".into(),
        "ECHO" if arity(2) => bulk(&args[1]),
        "GET" if arity(2) => match db.get(&args[1]) {
            Some(v) => bulk(v),
            None => "$-1\r\n".into(),
        },
        "SET" if arity(3) => {
            db.insert(args[1].clone(), args[2].clone());
            "+OK\r\n".into()
        }
        "INCR" if arity(2) => {
            let cur = db.get(&args[1]).map(|v| v.parse::<i64>());
            match cur {
                Some(Err(_)) => "-ERR value is not an integer or out of range\r\n".into(),
                Some(Ok(n)) => {
                    let n = n.saturating_add(1);
                    db.insert(args[1].clone(), n.to_string());
                    format!(":{n}\r\n")
                }
                None => {
                    db.insert(args[1].clone(), "1".into());
                    ":1\r\n".into()
                }
            }
        }
        "DEL" | "EXISTS" if args.len() >= 2 => {
            let del = cmd.eq_ignore_ascii_case("DEL");
            let n = args[1..]
                .iter()
                .filter(|k| {
                    if del {
                        db.remove(*k).is_some()
                    } else {
                        db.contains_key(*k)
                    }
                })
                .count();
            format!(":{n}\r\n")
        }
        "DBSIZE" => format!(":{}\r\n", db.len()),
        "KEYS" if arity(2) => {
            let pat = &args[1];
            let prefix = pat.strip_suffix('*').unwrap_or(pat);
            let keys: Vec<&String> = db
                .keys()
                .filter(|k| {
                    if pat.ends_with('*') {
                        k.starts_with(prefix)
                    } else {
                        *k == pat
                    }
                })
                .collect();
            let mut out = format!("*{}\r\n", keys.len());
            for k in keys {
                out.push_str(&bulk(k));
            }
            out
        }
        "INFO" => bulk("# Server\r\nredis_version:7.0.0\r\nserver_name:injector-lab-db\r\n"),
        "COMMAND" => "*0\r\n".into(),
        "QUIT" => return None,
        "GET" | "SET" | "INCR" | "DEL" | "EXISTS" | "ECHO" | "KEYS" => wrong(),
        _ => format!("-ERR unknown command '{cmd}'\r\n"),
    })
}

async fn session(sock: TcpStream, store: Store) -> std::io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    while let Some(args) = read_command(&mut rd).await? {
        match execute(&store, &args) {
            Some(reply) => wr.write_all(reply.as_bytes()).await?,
            None => {
                wr.write_all(b"+OK\r\n").await?;
                break;
            }
        }
    }
    Ok(())
}

/// A client call: one connection, one command, one reply line (the shop
/// only needs integer and status replies).
pub async fn command(
    addr: SocketAddr,
    args: &[&str],
    connect_timeout: Duration,
    total: Duration,
) -> Result<String, CallError> {
    let started = tokio::time::Instant::now();
    let mut sock = connect(addr, connect_timeout).await?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&bulk(a));
    }
    let exchange = async {
        sock.write_all(req.as_bytes()).await?;
        let mut rd = BufReader::new(&mut sock);
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the answer",
            ));
        }
        Ok(line.trim_end().to_string())
    };
    let line = timeout(total.saturating_sub(started.elapsed()), exchange)
        .await
        .map_err(|_| CallError::Timeout(total))?
        .map_err(|e| CallError::Broken(io_reason(&e)))?;
    if let Some(err) = line.strip_prefix('-') {
        return Err(CallError::Broken(err.to_string()));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &Store, line: &str) -> String {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        execute(store, &args).unwrap()
    }

    #[test]
    fn the_commands_the_shop_uses() {
        let s = Store::default();
        assert_eq!(run(&s, "PING"), "+PONG\r\n");
        assert_eq!(run(&s, "INCR shop:orders"), ":1\r\n");
        assert_eq!(run(&s, "INCR shop:orders"), ":2\r\n");
        assert_eq!(run(&s, "SET order:2 x"), "+OK\r\n");
        assert_eq!(run(&s, "GET order:2"), "$1\r\nx\r\n");
        assert_eq!(run(&s, "GET nope"), "$-1\r\n");
        assert_eq!(
            run(&s, "INCR order:2"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&s, "KEYS order:*"), "*1\r\n$7\r\norder:2\r\n");
        assert_eq!(run(&s, "DBSIZE"), ":2\r\n");
        assert_eq!(run(&s, "DEL order:2 nope"), ":1\r\n");
        assert!(run(&s, "SET x").starts_with("-ERR wrong number"));
        assert!(run(&s, "FLY").starts_with("-ERR unknown command"));
        assert!(execute(&s, &["quit".into()]).is_none());
    }

    #[tokio::test]
    async fn resp_arrays_and_inline_commands_parse() {
        let input: &[u8] = b"*2\r\n$4\r\nINCR\r\n$3\r\na b\r\nPING hello\r\n*1\r\n$99999999\r\n";
        let mut r = BufReader::new(input);
        assert_eq!(
            read_command(&mut r).await.unwrap().unwrap(),
            ["INCR", "a b"]
        );
        assert_eq!(
            read_command(&mut r).await.unwrap().unwrap(),
            ["PING", "hello"]
        );
        assert!(
            read_command(&mut r).await.is_err(),
            "a huge bulk is refused"
        );
    }
}
