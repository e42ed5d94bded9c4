//! Fixtures for root tests: network namespaces joined to the host by veth
//! pairs, cgroups, and small traffic generators. Every fixture removes what
//! it created when dropped, so a failing test leaves the machine clean.
//! Traffic only ever goes to addresses inside namespaces made here.
#![allow(dead_code)]

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use injector::kernel::{cgroup, netlink::Netlink, netns};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn tag() -> (u32, u32) {
    (
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::SeqCst),
    )
}

/// A named network namespace (visible to `ip netns` as injt-PID-N).
pub struct Ns {
    pub name: String,
    pub path: PathBuf,
    pub file: File,
}

impl Ns {
    pub fn new() -> Ns {
        let (pid, n) = tag();
        let name = format!("injt-{pid}-{n}");
        let path = PathBuf::from(netns::NETNS_RUN_DIR).join(&name);
        fs::create_dir_all(netns::NETNS_RUN_DIR).expect("create /var/run/netns");
        File::create(&path).expect("create netns mount point");
        let target = path.clone();
        let made = std::thread::spawn(move || -> io::Result<()> {
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let src = c"/proc/thread-self/ns/net";
            let dst = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .join()
        .expect("netns thread");
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            panic!("creating network namespace {name}: {e}");
        }
        let file = File::open(&path).expect("open netns");
        let ns = Ns { name, path, file };
        // Loopback up, and IPv6 addresses usable at once (no DAD wait).
        ns.run(|| {
            let _ = fs::write("/proc/sys/net/ipv6/conf/all/accept_dad", "0");
            let _ = fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0");
        });
        ns
    }

    /// Runs `f` on a thread inside the namespace and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        netns::run_in(&self.file, f).expect("run in namespace")
    }

    /// Starts `f` on a thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let fd = self.file.try_clone().expect("dup netns fd");
        std::thread::spawn(move || {
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!("setns: {}", io::Error::last_os_error());
            }
            f()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let p = std::ffi::CString::new(self.path.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        let _ = fs::remove_file(&self.path);
    }
}

/// A namespace joined to the host by a veth pair, with addresses:
/// host end 10.231.N.1 / fd00:231:N::1, namespace end .2 / ::2.
pub struct Pair {
    pub ns: Ns,
    pub host_if: String,
    pub host_index: u32,
    pub host_v4: Ipv4Addr,
    pub ns_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub ns_v6: Ipv6Addr,
    /// The veth end inside the namespace.
    pub ns_if: String,
    nl: Netlink,
}

impl Pair {
    pub async fn new() -> Pair {
        let ns = Ns::new();
        let (pid, n) = tag();
        let n = n % 250 + 1;
        let host_if = format!("ij{}h{n}", pid % 10_000);
        let peer_if = format!("ij{}c{n}", pid % 10_000);
        let nl = Netlink::current().expect("netlink");
        // A leftover of a crashed earlier run with the same name goes first.
        if let Ok(Some(old)) = nl.link_by_name(&host_if).await {
            let _ = nl.del_link(old.index).await;
        }
        nl.add_veth(&host_if, &peer_if).await.expect("create veth");
        let host = nl.link_by_name(&host_if).await.unwrap().expect("host veth");
        let mut pair = Pair {
            ns,
            host_if: host_if.clone(),
            host_index: host.index,
            host_v4: Ipv4Addr::new(10, 231, n as u8, 1),
            ns_v4: Ipv4Addr::new(10, 231, n as u8, 2),
            host_v6: format!("fd00:231:{n:x}::1").parse().unwrap(),
            ns_v6: format!("fd00:231:{n:x}::2").parse().unwrap(),
            ns_if: peer_if.clone(),
            nl,
        };
        pair.configure(&peer_if).await;
        pair
    }

    async fn configure(&mut self, peer_if: &str) {
        let _ = fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/accept_dad", self.host_if),
            "0",
        );
        self.nl
            .move_to_namespace(peer_if, &self.ns.file)
            .await
            .expect("move peer");
        self.nl
            .add_address(self.host_index, self.host_v4.into(), 24)
            .await
            .expect("host v4");
        self.nl
            .add_address(self.host_index, self.host_v6.into(), 64)
            .await
            .expect("host v6");
        self.nl.set_up(self.host_index).await.expect("host up");
        let inner = Netlink::in_namespace(&self.ns.file).expect("netlink in ns");
        let lo = inner.link_by_name("lo").await.unwrap().expect("lo");
        inner.set_up(lo.index).await.expect("lo up");
        let peer = inner.link_by_name(peer_if).await.unwrap().expect("peer");
        inner
            .add_address(peer.index, self.ns_v4.into(), 24)
            .await
            .expect("ns v4");
        inner
            .add_address(peer.index, self.ns_v6.into(), 64)
            .await
            .expect("ns v6");
        inner.set_up(peer.index).await.expect("peer up");
        // Both ends must be usable before a test starts: the links running
        // and the IPv6 addresses out of their tentative state (binding to a
        // tentative address fails with EADDRNOTAVAIL).
        let (host6, ns6, host4) = (self.host_v6, self.ns_v6, self.host_v4);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let host_ok = UdpSocket::bind(SocketAddr::new(host6.into(), 0)).is_ok();
            let ns_ok = self.ns.run(move || {
                UdpSocket::bind(SocketAddr::new(ns6.into(), 0)).is_ok()
                    && UdpSocket::bind("0.0.0.0:0")
                        .and_then(|s| s.connect((host4, 9)))
                        .is_ok()
            });
            if host_ok && ns_ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "veth pair {} never became usable",
                self.host_if
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Pair {
    /// A default route (IPv4 and IPv6) from the namespace to the host end,
    /// so the namespace reaches every address of the host, e.g. the host
    /// ends of other pairs.
    pub fn route_via_host(&self) {
        for (family, via) in [
            ("-4", self.host_v4.to_string()),
            ("-6", self.host_v6.to_string()),
        ] {
            let out = std::process::Command::new("ip")
                .args([
                    "-n",
                    &self.ns.name,
                    family,
                    "route",
                    "add",
                    "default",
                    "via",
                    &via,
                ])
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "default route in {}: {}",
                self.ns.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Datagrams `sink` got of `n` sent from `src` inside `from` (after a
/// pause long enough for the last one to arrive).
pub fn delivered(from: &Ns, src: SocketAddr, sink: &UdpSink, n: u32) -> u32 {
    let before = sink.count();
    let to = sink.addr;
    from.run(move || send_udp(src, to, n));
    std::thread::sleep(Duration::from_millis(150));
    sink.count() - before
}

/// A bridge joining the host ends of pairs, so their namespaces share one
/// link (fd00:232:N::i/64 and 10.233.N.i/24, i = 1, 2, ...) and talk
/// without the host routing between them. With br_netfilter loaded, bridged
/// IPv4 goes through iptables' FORWARD chain, which Docker sets to DROP:
/// the bridge accepts its own traffic there while it lives.
pub struct Bridge {
    pub name: String,
    /// The namespaces' addresses on the bridge, in the order of the pairs.
    pub addrs: Vec<Ipv6Addr>,
    pub addrs4: Vec<Ipv4Addr>,
}

impl Bridge {
    /// The FORWARD rule letting this bridge's own IPv4 traffic through.
    fn accept_rule(&self) -> Vec<String> {
        [
            "FORWARD", "-i", &self.name, "-o", &self.name, "-j", "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn iptables(&self, op: &str) -> std::process::Output {
        std::process::Command::new("iptables")
            .arg(op)
            .args(self.accept_rule())
            .output()
            .expect("iptables (cargo xtask setup installs it)")
    }
}

impl Bridge {
    pub fn new(pairs: &[&Pair]) -> Bridge {
        let (pid, n) = tag();
        let n = n % 250 + 1;
        let name = format!("ij{}br{n}", pid % 10_000);
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .output();
        ip(&["link", "add", &name, "type", "bridge"]);
        let bridge = Bridge {
            name: name.clone(),
            addrs: Vec::new(),
            addrs4: Vec::new(),
        };
        let out = bridge.iptables("-I");
        assert!(
            out.status.success(),
            "iptables -I {}: {}",
            bridge.accept_rule().join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        ip(&["link", "set", &name, "up"]);
        let mut bridge = bridge;
        for (i, p) in pairs.iter().enumerate() {
            ip(&["link", "set", &p.host_if, "master", &name]);
            let addr: Ipv6Addr = format!("fd00:232:{n:x}::{:x}", i + 1).parse().unwrap();
            ip(&[
                "-n",
                &p.ns.name,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                &p.ns_if,
                "nodad",
            ]);
            bridge.addrs.push(addr);
            let addr4 = Ipv4Addr::new(10, 233, n as u8, i as u8 + 1);
            ip(&[
                "-n",
                &p.ns.name,
                "addr",
                "add",
                &format!("{addr4}/24"),
                "dev",
                &p.ns_if,
            ]);
            bridge.addrs4.push(addr4);
        }
        // Ports forward only once the bridge has seen them up.
        std::thread::sleep(Duration::from_millis(100));
        bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.iptables("-D");
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting one end deletes both; the namespace goes with `ns`.
        let idx = self.host_index;
        let nl = self.nl.clone();
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| {
                    rt.block_on(async {
                        let nl2 = Netlink::current().unwrap_or(nl);
                        let _ = nl2.del_link(idx).await;
                    })
                })
        });
        let _ = done.join();
    }
}

/// A child cgroup of the v2 hierarchy; processes in it go back to the
/// parent on drop, then the directory is removed.
pub struct Cgroup {
    pub path: PathBuf,
    pub rel: String,
}

impl Cgroup {
    pub fn new() -> Cgroup {
        let (pid, n) = tag();
        let mount = cgroup::v2_mount().expect("cgroup v2 mount");
        let rel = format!("injt-{pid}-{n}");
        let path = mount.join(&rel);
        fs::create_dir(&path).expect("create cgroup");
        Cgroup { path, rel }
    }

    /// A command that starts inside this cgroup.
    pub fn command(&self, program: &str) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let procs = self.path.join("cgroup.procs");
        let mut c = std::process::Command::new(program);
        unsafe {
            c.pre_exec(move || fs::write(&procs, "0").map_err(io::Error::other));
        }
        c
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().unwrap().join("cgroup.procs");
        if let Ok(pids) = fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = fs::write(&parent, pid);
            }
        }
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A UDP sink counting datagrams until stopped.
pub struct UdpSink {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU32>,
    handle: Option<JoinHandle<()>>,
}

impl UdpSink {
    pub fn start(bind: SocketAddr, in_ns: Option<&Ns>) -> UdpSink {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let body = {
            let stop = stop.clone();
            let count = count.clone();
            move || {
                let s = UdpSocket::bind(bind).expect("bind udp sink");
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                tx.send(s.local_addr().unwrap()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    if s.recv(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        };
        let handle = match in_ns {
            Some(ns) => ns.spawn(body),
            None => std::thread::spawn(body),
        };
        let addr = rx.recv_timeout(Duration::from_secs(5)).expect("sink bound");
        UdpSink {
            addr,
            stop,
            count,
            handle: Some(handle),
        }
    }

    pub fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `n` datagrams to `to`, paced so that no socket buffer overflows;
/// returns after the last one was sent.
pub fn send_udp(from: SocketAddr, to: SocketAddr, n: u32) {
    let s = UdpSocket::bind(from).expect("bind udp sender");
    for i in 0..n {
        let _ = s.send_to(&i.to_be_bytes(), to);
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A TCP server answering every connection with `reply` bytes per byte
/// received (an echo when `reply` = None), until stopped.
pub struct TcpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn echo(bind: SocketAddr, in_ns: Option<&Ns>) -> TcpServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let body = {
            let stop = stop.clone();
            move || {
                let l = TcpListener::bind(bind).expect("bind tcp server");
                l.set_nonblocking(true).unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let mut workers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((mut c, _)) => {
                            let stop = stop.clone();
                            workers.push(std::thread::spawn(move || {
                                c.set_nonblocking(false).unwrap();
                                c.set_read_timeout(Some(Duration::from_millis(100)))
                                    .unwrap();
                                let mut buf = vec![0u8; 65536];
                                while !stop.load(Ordering::SeqCst) {
                                    match c.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            if c.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                        Err(e)
                                            if e.kind() == io::ErrorKind::WouldBlock
                                                || e.kind() == io::ErrorKind::TimedOut => {}
                                        Err(_) => break,
                                    }
                                }
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for w in workers {
                    let _ = w.join();
                }
            }
        };
        let handle = match in_ns {
            Some(ns) => ns.spawn(body),
            None => std::thread::spawn(body),
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server bound");
        TcpServer {
            addr,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Connects with a timeout; the error kind tells refused from timed out.
pub fn connect(to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&to, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// One request/response round trip of `n` bytes on an echo connection.
pub fn echo_round(s: &mut TcpStream, n: usize) -> io::Result<Duration> {
    let t = Instant::now();
    let data = vec![7u8; n];
    s.write_all(&data)?;
    let mut got = 0;
    let mut buf = vec![0u8; n.max(1)];
    while got < n {
        let k = s.read(&mut buf)?;
        if k == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        got += k;
    }
    Ok(t.elapsed())
}

/// The 99 % two-sided binomial interval for `n` draws at probability `p`
/// (normal approximation; n is large in every caller).
pub fn binomial_99(n: u32, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 2.576 * sd, mean + 2.576 * sd)
}

pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "kernel tests need root (they create namespaces and load BPF programs)"
    );
}

/// The 99.9 % interval: with a handful of statistical assertions per run, a
/// 99 % interval would fail a correct build every few dozen runs.
pub fn binomial_999(n: u32, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean - 3.29 * sd, mean + 3.29 * sd)
}

/// The test image: Debian's static busybox and nothing else, imported
/// (no registry is reachable, and none is needed).
pub const BUSYBOX_IMAGE: &str = "injector-test-busybox:1";

pub fn ensure_busybox_image() {
    let have = std::process::Command::new("docker")
        .args(["image", "inspect", BUSYBOX_IMAGE])
        .output()
        .expect("the docker CLI is needed for container tests");
    if have.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static is installed (cargo xtask setup)");
    for applet in ["sh", "nc", "httpd", "sleep", "cat", "nslookup", "wget"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = std::process::Command::new("tar")
        .args(["-C", dir.path().to_str().unwrap(), "-cf", "-", "bin"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut import = std::process::Command::new("docker")
        .args(["import", "-", BUSYBOX_IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(
        import.wait().unwrap().success(),
        "docker import of the busybox image"
    );
}

/// A running container, removed (with `docker rm -f`) on drop.
pub struct Container {
    pub name: String,
    pub ip: Ipv4Addr,
}

impl Container {
    /// Runs `cmd` (busybox applets) in a new container on the default bridge.
    pub fn run(cmd: &[&str]) -> Container {
        ensure_busybox_image();
        let (pid, n) = tag();
        let name = format!("injt-{pid}-{n}");
        let mut args = vec!["run", "-d", "--name", &name, BUSYBOX_IMAGE];
        args.extend_from_slice(cmd);
        let out = std::process::Command::new("docker")
            .args(&args)
            .output()
            .unwrap();
        let mut c = Container {
            name: name.clone(),
            ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ip = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name])
            .output()
            .unwrap();
        c.ip = String::from_utf8_lossy(&ip.stdout)
            .trim()
            .parse()
            .expect("container address");
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// A toxic as the API would build it, for driving `KernelProxy` directly.
pub fn toxic(
    kind: &str,
    stream: injector::model::Stream,
    attrs: serde_json::Value,
) -> injector::model::Toxic {
    let mut attributes = injector::faults::Attributes::new(kind).expect("known type");
    attributes
        .merge(attrs.as_object().expect("attributes object"))
        .unwrap();
    attributes.validate().unwrap();
    injector::model::Toxic {
        name: format!("{kind}_{stream:?}"),
        stream,
        stream_raw: format!("{stream:?}").to_lowercase(),
        toxicity: 1.0,
        attributes,
        ttl_ms: None,
        expires_at: None,
    }
}

/// Adds a netem toxic; on a kernel without netem, asserts the refusal
/// names netem and returns None.
pub async fn netem_or_refusal(
    p: &mut injector::kernel::KernelProxy,
    t: injector::model::Toxic,
) -> Option<()> {
    let r = p.set_toxics(&[t]).await;
    if injector::kernel::features::collect().has("netem") {
        r.expect("netem fault on a kernel with netem");
        Some(())
    } else {
        let e = r.expect_err("a netem fault on a kernel without netem must fail");
        assert_eq!(e.status, 501);
        assert!(
            e.message.contains("netem"),
            "error must name netem: {}",
            e.message
        );
        None
    }
}

/// A Python client in cgroup `cg` holding one connection to `addr` open
/// (one echo round done) until told to use it again: the cgroup-side view
/// of a socket reset or destroyed under it.
pub struct HeldConnection {
    child: std::process::Child,
    out: io::BufReader<std::process::ChildStdout>,
}

impl HeldConnection {
    pub fn open(cg: &Cgroup, addr: SocketAddr) -> HeldConnection {
        use io::BufRead;
        let code = format!(
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',{}))\ns.sendall(b'hi'); s.recv(2)\n\
             print('up', flush=True)\nsys.stdin.readline()\ns.settimeout(3)\ntry:\n s.sendall(b'x'); s.recv(1)\n print('alive')\n\
             except OSError as e:\n print(type(e).__name__)",
            addr.port()
        );
        let mut child = cg
            .command("python3")
            .args(["-c", &code])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "up", "the held connection did not open");
        HeldConnection { child, out }
    }

    /// Uses the connection once more: `alive`, or the Python exception
    /// name (`ConnectionAbortedError`, `ConnectionResetError`, `TimeoutError`).
    pub fn use_again(mut self) -> String {
        use io::BufRead;
        self.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
