//! Proof that proxy mode never copies the stream through user space.
//!
//! The proxy runs alone on one thread (a current-thread runtime); the
//! client and the server run on other threads. While 256 MiB (and then
//! 64 MiB through a chain of toxics) cross the proxy, we watch that
//! thread only:
//! - per-thread I/O accounting (/proc/self/task/TID/io): `rchar`/`wchar`
//!   count every byte read(2)/write(2)/readv(2)... moved to or from user
//!   memory. splice(2) does not go through them (checked on this kernel:
//!   64 MiB spliced socket -> pipe -> /dev/null left rchar at ~100 bytes).
//! - syscall tracepoints counted with perf_event_open(2) for that thread:
//!   recv*/send* are how a socket is read or written into user memory
//!   without read/write, and splice is how the proxy moves data.
//!
//! The same instruments then watch the same thread do a small ordinary
//! copy (read/write and recv/send), to show they would catch one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use injector::faults::Attributes;
use injector::model::{Stream, Toxic};
use injector::proxy::ListenProxy;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// Syscalls that move data between a file or socket and user memory.
const COPYING: [&str; 8] = [
    "recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg", "readv", "writev",
];

#[test]
fn the_stream_never_enters_user_space() {
    let tracefs = Tracefs::find_or_mount();
    let sink = Sink::start();

    let (to_proxy, commands) = tokio::sync::mpsc::unbounded_channel::<Command>();
    let (ready_tx, ready) = mpsc::channel();
    let upstream = sink.addr.clone();
    let proxy_thread = std::thread::spawn(move || proxy_thread(upstream, ready_tx, commands));
    let (listen, tid) = ready.recv().unwrap();
    let watch = Watch::new(&tracefs, tid);

    // 256 MiB without toxics.
    let before = watch.sample();
    let sent = send_through(&listen, 256 * MIB);
    assert_eq!(sink.received(), sent);
    let plain = watch.sample().minus(&before);
    plain.assert_no_copy("no toxics", sent);

    // 64 MiB through toxics that move every chunk between pipes.
    let toxics = vec![
        toxic("latency", json!({"latency": 0})),
        toxic("limit_data", json!({"bytes": 1i64 << 40})),
        toxic("packet_loss", json!({"loss_rate": 0.0})),
    ];
    let (done_tx, done) = mpsc::channel();
    to_proxy.send(Command::SetToxics(toxics, done_tx)).unwrap();
    done.recv().unwrap();
    let before = watch.sample();
    let sent = send_through(&listen, 64 * MIB);
    assert_eq!(sink.received(), sent);
    let toxic_run = watch.sample().minus(&before);
    toxic_run.assert_no_copy("three toxics", sent);

    // The instruments see an ordinary copy on that thread.
    let (done_tx, done) = mpsc::channel();
    let before = watch.sample();
    to_proxy.send(Command::CopyInUserSpace(done_tx)).unwrap();
    done.recv().unwrap();
    let control = watch.sample().minus(&before);
    assert!(
        control.rchar >= 4 * MIB && control.wchar >= 4 * MIB,
        "{control:?}"
    );
    assert!(
        control.calls["recvfrom"] >= 64 && control.calls["sendto"] >= 64,
        "{control:?}"
    );

    to_proxy.send(Command::Stop).unwrap();
    proxy_thread.join().unwrap();
}

enum Command {
    SetToxics(Vec<Toxic>, mpsc::Sender<()>),
    CopyInUserSpace(mpsc::Sender<()>),
    Stop,
}

fn proxy_thread(
    upstream: String,
    ready: mpsc::Sender<(String, i32)>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let p = ListenProxy::start("zero-copy", "127.0.0.1:0", &upstream, &[])
            .await
            .unwrap();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        ready.send((p.listen_addr(), tid)).unwrap();
        while let Some(cmd) = commands.recv().await {
            match cmd {
                Command::SetToxics(t, done) => {
                    p.set_toxics(&t);
                    done.send(()).unwrap();
                }
                Command::CopyInUserSpace(done) => {
                    ordinary_copy();
                    done.send(()).unwrap();
                }
                Command::Stop => break,
            }
        }
        p.stop().await;
    });
}

/// 4 MiB through user buffers with read/write (a pipe) and with
/// recv/send (a TCP connection).
fn ordinary_copy() {
    let mut buf = vec![7u8; 64 * 1024];
    let (mut b, mut a) = std::io::pipe().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    for _ in 0..64 {
        a.write_all(&buf).unwrap();
        b.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
        s.read_exact(&mut buf).unwrap();
    }
}

fn toxic(kind: &str, attrs: serde_json::Value) -> Toxic {
    let mut attributes = Attributes::new(kind).unwrap();
    attributes.merge(attrs.as_object().unwrap()).unwrap();
    Toxic {
        name: kind.into(),
        stream: Stream::Upstream,
        stream_raw: "upstream".into(),
        toxicity: 1.0,
        attributes,
        ttl_ms: None,
        expires_at: None,
    }
}

/// Writes `total` bytes through the proxy from this (non-proxy) thread.
fn send_through(listen: &str, total: u64) -> u64 {
    let mut c = TcpStream::connect(listen).unwrap();
    let buf = vec![0x5au8; MIB as usize];
    for i in 0..total / MIB {
        c.write_all(&buf)
            .unwrap_or_else(|e| panic!("after {i} MiB of {}: {e}", total / MIB));
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    // The proxy closes us once the upstream side is done.
    let _ = c.read(&mut [0u8; 1]);
    total
}

/// A server on its own thread that counts what each connection sent.
struct Sink {
    addr: String,
    counts: mpsc::Receiver<u64>,
}

impl Sink {
    fn start() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, counts) = mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; MIB as usize];
                    let mut n = 0u64;
                    while let Ok(k @ 1..) = s.read(&mut buf) {
                        n += k as u64;
                    }
                    let _ = tx.send(n);
                });
            }
        });
        Sink { addr, counts }
    }

    fn received(&self) -> u64 {
        self.counts
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap()
    }
}

/// The tracing filesystem, mounted for the test if nobody has.
struct Tracefs {
    events: PathBuf,
    mounted: Option<tempfile::TempDir>,
}

impl Tracefs {
    fn find_or_mount() -> Tracefs {
        for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            let events = Path::new(dir).join("events/syscalls");
            if events.is_dir() {
                return Tracefs {
                    events,
                    mounted: None,
                };
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let target = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: valid C strings; no data argument.
        let rc = unsafe {
            libc::mount(
                c"tracefs".as_ptr(),
                target.as_ptr(),
                c"tracefs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "this test needs tracefs (syscall tracepoints) and root to mount it: {}",
            std::io::Error::last_os_error()
        );
        Tracefs {
            events: dir.path().join("events/syscalls"),
            mounted: Some(dir),
        }
    }

    fn id(&self, syscall: &str) -> u64 {
        let path = self.events.join(format!("sys_enter_{syscall}/id"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if let Some(dir) = &self.mounted {
            let target = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
            // SAFETY: a valid path we mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// perf_event_attr up to PERF_ATTR_SIZE_VER8, all zero but type/size/config:
/// a counting (not sampling) event, enabled at once, user and kernel.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    rest: [u64; 15],
}

/// Counters on one thread.
struct Watch {
    tid: i32,
    counters: Vec<(&'static str, OwnedFd)>,
}

#[derive(Debug)]
struct Sample {
    rchar: u64,
    wchar: u64,
    calls: std::collections::HashMap<&'static str, u64>,
}

impl Watch {
    fn new(tracefs: &Tracefs, tid: i32) -> Watch {
        let counters = COPYING
            .iter()
            .chain(&["splice"])
            .map(|name| {
                let attr = PerfEventAttr {
                    kind: 2, // PERF_TYPE_TRACEPOINT
                    size: std::mem::size_of::<PerfEventAttr>() as u32,
                    config: tracefs.id(name),
                    rest: [0; 15],
                };
                // SAFETY: a valid attr; pid = the thread, any cpu, no group.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_perf_event_open,
                        &attr as *const PerfEventAttr,
                        tid,
                        -1,
                        -1,
                        8u64, // PERF_FLAG_FD_CLOEXEC
                    )
                };
                assert!(
                    fd >= 0,
                    "perf_event_open({name}): {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: a new fd we own.
                (*name, unsafe { OwnedFd::from_raw_fd(fd as i32) })
            })
            .collect();
        Watch { tid, counters }
    }

    fn sample(&self) -> Sample {
        let io = std::fs::read_to_string(format!("/proc/self/task/{}/io", self.tid)).unwrap();
        let field = |k: &str| -> u64 {
            io.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
                .unwrap()
                .parse()
                .unwrap()
        };
        let calls = self
            .counters
            .iter()
            .map(|(name, fd)| {
                let mut n = [0u8; 8];
                std::fs::File::from(fd.try_clone().unwrap())
                    .read_exact(&mut n)
                    .unwrap();
                (*name, u64::from_ne_bytes(n))
            })
            .collect();
        Sample {
            rchar: field("rchar"),
            wchar: field("wchar"),
            calls,
        }
    }
}

impl Sample {
    fn minus(&self, earlier: &Sample) -> Sample {
        Sample {
            rchar: self.rchar - earlier.rchar,
            wchar: self.wchar - earlier.wchar,
            calls: self
                .calls
                .iter()
                .map(|(k, v)| (*k, v - earlier.calls[k]))
                .collect(),
        }
    }

    fn assert_no_copy(&self, what: &str, moved: u64) {
        eprintln!("{what}: {moved} bytes forwarded; proxy thread: {self:?}");
        // Timer and wake-up counters (8 bytes a read or write) only.
        assert!(
            self.rchar + self.wchar < MIB,
            "{what}: {moved} bytes forwarded, but {} read and {} written by the proxy thread",
            self.rchar,
            self.wchar
        );
        for name in COPYING {
            assert_eq!(
                self.calls[name], 0,
                "{what}: {name} on the proxy thread: {self:?}"
            );
        }
        // Every 32 KiB chunk was spliced in and out at least.
        assert!(
            self.calls["splice"] >= 2 * moved / (32 * 1024),
            "{what}: {moved} bytes forwarded in only {} splices",
            self.calls["splice"]
        );
    }
}
