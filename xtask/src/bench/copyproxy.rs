//! The userland baseline when no ToxiProxy binary is given: a proxy that
//! does what ToxiProxy's data path does without toxics, each direction
//! read into a 32 KiB buffer and written out again (io.Copy), one thread
//! per direction.

use anyhow::Result;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::net::enter;

pub struct CopyProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl CopyProxy {
    /// Listens on `listen` in namespace `netns` and forwards to `upstream`.
    pub fn start(netns: &File, listen: &str, upstream: &str) -> Result<CopyProxy> {
        let ns = netns.try_clone()?;
        let listen = listen.to_string();
        let l = std::thread::spawn(move || -> Result<TcpListener> {
            enter(&ns)?;
            Ok(TcpListener::bind((listen.as_str(), 0))?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("bind thread panicked"))??;
        let port = l.local_addr()?.port();
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let upstream = upstream.to_string();
        let ns = netns.try_clone()?;
        let handle = std::thread::spawn(move || {
            // Upstream connections are made from M too.
            enter(&ns).expect("setns");
            while !st.load(Ordering::SeqCst) {
                let Ok((down, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = down.set_nonblocking(false);
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                for s in [&down, &up] {
                    let _ = s.set_nodelay(true);
                }
                let (d2, u2) = match (down.try_clone(), up.try_clone()) {
                    (Ok(d), Ok(u)) => (d, u),
                    _ => continue,
                };
                std::thread::spawn(move || pump(down, up));
                std::thread::spawn(move || pump(u2, d2));
            }
        });
        Ok(CopyProxy {
            port,
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for CopyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
