//! The command line against a real daemon: toxiproxy-cli's verbs and
//! flags, `--json`, `-h`/TOXIPROXY_URL, and `serve`'s own options.

mod conformance_support;

use std::{
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use conformance_support::{Daemon, Echo, free_port};
use serde_json::{Value, json};

fn injector(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_injector"));
    c.args(args)
        .env_remove("TOXIPROXY_URL")
        .env_remove("INJECTOR_TOKEN")
        .env_remove("INJECTOR_TOKEN_FILE");
    c
}

/// Runs a client verb against `d` (through TOXIPROXY_URL).
fn cli(d: &Daemon, args: &[&str]) -> Output {
    injector(args)
        .env("TOXIPROXY_URL", d.url())
        .output()
        .expect("run injector")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn list_and_inspect_print_tables_or_json() {
    let d = Daemon::start();
    assert_eq!(ok(&cli(&d, &["list"])), "no proxies\n");
    d.disabled_proxy("db");
    assert_eq!(
        d.post(
            "/proxies/db/toxics",
            r#"{"type":"latency","attributes":{"latency":100}}"#
        )
        .status,
        200
    );
    for alias in ["list", "l", "li", "ls"] {
        let out = ok(&cli(&d, &[alias]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("NAME"), "{out}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["db", "127.0.0.1:0", "127.0.0.1:9", "disabled", "1"],
            "{out}"
        );
    }
    let json: Value = serde_json::from_str(&ok(&cli(&d, &["--json", "list"]))).unwrap();
    assert_eq!(json, d.get("/proxies").json());
    let out = ok(&cli(&d, &["inspect", "db"]));
    assert!(
        out.starts_with("Name: db\tListen: 127.0.0.1:0\tUpstream: 127.0.0.1:9\tdisabled\n"),
        "{out}"
    );
    assert!(
        out.contains("latency_downstream\ttype=latency\tstream=downstream\ttoxicity=1.00\tattributes=[\tjitter=0\tlatency=100\t]"),
        "{out}"
    );
    let json: Value = serde_json::from_str(&ok(&cli(&d, &["ins", "db", "--json"]))).unwrap();
    assert_eq!(json, d.get("/proxies/db").json());
    let o = cli(&d, &["i", "missing"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "Failed to retrieve proxy missing: proxy not found\n"
    );
}

#[test]
fn host_flag_and_env_pick_the_daemon() {
    let d = Daemon::start();
    d.disabled_proxy("h");
    let o = injector(&["-h", &d.url(), "ls"]).output().unwrap();
    assert!(ok(&o).contains("\nh "), "{}", stdout(&o));
    let o = injector(&["--host", &format!("127.0.0.1:{}", d.port), "ls"])
        .output()
        .unwrap();
    assert!(ok(&o).contains("\nh "));
    // Nothing listens there: a clear error, exit 1.
    let o = injector(&["-h", &format!("http://127.0.0.1:{}", free_port()), "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Failed to retrieve proxies: cannot reach the daemon"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn toxic_add_update_remove_with_toxiproxy_cli_flags() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    let out = ok(&cli(
        &d,
        &[
            "toxic",
            "add",
            "-t",
            "latency",
            "-u",
            "--tox",
            "0.5",
            "-a",
            "latency=100",
            "-a",
            "jitter=5",
            "-a",
            "bogus",
            "p",
        ],
    ));
    assert_eq!(
        out,
        "Added upstream latency toxic 'latency_upstream' on proxy 'p'\n"
    );
    d.get("/proxies/p/toxics/latency_upstream").assert_json(
        200,
        r#"{"attributes":{"latency":100,"jitter":5},"name":"latency_upstream","type":"latency","stream":"upstream","toxicity":0.5}"#,
    );
    let out = ok(&cli(
        &d,
        &[
            "t",
            "a",
            "--type",
            "timeout",
            "--toxicName",
            "cut",
            "-d",
            "--attribute",
            "timeout=2000",
            "p",
        ],
    ));
    assert_eq!(out, "Added downstream timeout toxic 'cut' on proxy 'p'\n");
    // update without --tox keeps the toxicity (toxiproxy-cli resets it to 1).
    let out = ok(&cli(
        &d,
        &[
            "toxic",
            "update",
            "-n",
            "latency_upstream",
            "-a",
            "jitter=7",
            "p",
        ],
    ));
    assert_eq!(out, "Updated toxic 'latency_upstream' on proxy 'p'\n");
    let t = d.get("/proxies/p/toxics/latency_upstream").json();
    assert_eq!(
        (t["attributes"]["jitter"].clone(), t["toxicity"].clone()),
        (json!(7), json!(0.5))
    );
    ok(&cli(
        &d,
        &[
            "toxic",
            "u",
            "-n",
            "latency_upstream",
            "--toxicity",
            "0.25",
            "p",
        ],
    ));
    assert_eq!(
        d.get("/proxies/p/toxics/latency_upstream").json()["toxicity"],
        0.25
    );
    let out = ok(&cli(&d, &["toxic", "remove", "-n", "cut", "p"]));
    assert_eq!(out, "Removed toxic 'cut' on proxy 'p'\n");
    ok(&cli(&d, &["toxic", "d", "-n", "latency_upstream", "p"]));
    assert_eq!(d.get("/proxies/p/toxics").text(), "[]");
    // The API's refusals come through as the API words them.
    let o = cli(
        &d,
        &["toxic", "add", "-t", "bandwidth", "-a", "rate=-1", "p"],
    );
    assert_eq!(
        stderr(&o),
        "Failed to add toxic: bad request body: bandwidth rate must be >= 0 KB/s, got -1\n"
    );
    let o = cli(&d, &["toxic", "add", "-t", "latency", "-u", "-d", "p"]);
    assert_eq!(
        stderr(&o),
        "Only one should be specified: upstream or downstream.\n"
    );
    let o = cli(&d, &["toxic", "add", "-t", "latency", "--tox", "2", "p"]);
    assert_eq!(stderr(&o), "toxicity should be a float between 0 and 1.\n");
    let o = cli(&d, &["toxic", "remove", "-n", "x", "nope"]);
    assert_eq!(
        stderr(&o),
        "Failed to retrieve proxy nope: proxy not found\n"
    );
    let o = cli(
        &d,
        &[
            "toxic", "add", "-t", "latency", "--ttl-ms", "60000", "--json", "p",
        ],
    );
    let t: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(t["ttl_ms"], 60000);
}

#[test]
fn create_toggle_delete() {
    let d = Daemon::start();
    let echo = Echo::start();
    let up = echo.addr.to_string();
    assert_eq!(
        ok(&cli(&d, &["create", "-l", "127.0.0.1:0", "-u", &up, "web"])),
        "Created new proxy web\n"
    );
    assert_eq!(d.get("/proxies/web").json()["enabled"], true);
    assert_eq!(
        ok(&cli(&d, &["toggle", "web"])),
        "Proxy web is now disabled\n"
    );
    assert_eq!(d.get("/proxies/web").json()["enabled"], false);
    assert_eq!(ok(&cli(&d, &["tog", "web"])), "Proxy web is now enabled\n");
    assert_eq!(ok(&cli(&d, &["delete", "web"])), "Deleted proxy web\n");
    d.get("/proxies/web").assert_error(404, "proxy not found");
    let o = cli(&d, &["d", "web"]);
    assert_eq!(
        stderr(&o),
        "Failed to retrieve proxy web: proxy not found\n"
    );
}

#[test]
fn create_argument_errors() {
    let d = Daemon::start();
    let o = cli(&d, &["create", "-l", "127.0.0.1:0", "x"]);
    assert_eq!(stderr(&o), "Required argument 'upstream' was empty.\n");
    let o = cli(&d, &["c", "-u", "127.0.0.1:9", "x"]);
    assert_eq!(stderr(&o), "Required argument 'listen' was empty.\n");
    let o = cli(&d, &["new", "-u", "*:80", "--target", "nonsense", "x"]);
    assert!(
        stderr(&o).contains("must look like kind:value"),
        "{}",
        stderr(&o)
    );
    // A kernel-native proxy on a namespace that does not exist: refused by
    // the daemon, nothing created.
    let o = cli(
        &d,
        &[
            "create",
            "-u",
            "*:80",
            "--target",
            "netns:injector-test-no-such-ns",
            "k",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Failed to create proxy: "),
        "{}",
        stderr(&o)
    );
    d.get("/proxies").assert_json(200, "{}");
}

/// A running `injector watch`, its stdout read line by line on a thread;
/// killed on drop.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    fn start(mut cmd: Command) -> Watch {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run injector watch");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    fn next(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_prints_a_line_per_event_as_it_happens() {
    let d = Daemon::start();
    // -h, as toxiproxy-cli takes it; the header comes once the daemon
    // answered, so it has subscribed before anything changes.
    let w = Watch::start(injector(&["-h", &d.url(), "watch"]));
    let header = w.next(Duration::from_secs(10)).expect("header");
    assert!(header.starts_with("TIME"), "{header}");
    d.disabled_proxy("db");
    assert_eq!(
        d.post("/proxies/db/toxics", r#"{"type":"latency","name":"slow"}"#)
            .status,
        200
    );
    assert_eq!(d.delete("/proxies/db/toxics/slow").status, 204);
    let mut rows = Vec::new();
    for _ in 0..3 {
        let line = w.next(Duration::from_secs(10)).expect("an event line");
        rows.push(
            line.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    assert_eq!(rows, ["added db -", "added db slow", "removed db slow"]);
}

#[test]
fn watch_json_prints_each_event_raw_and_filters_by_proxy() {
    let d = Daemon::start();
    let mut cmd = injector(&["watch", "--json", "b"]);
    cmd.env("TOXIPROXY_URL", d.url());
    let w = Watch::start(cmd);
    // No header in JSON: create proxies until the watch has subscribed and
    // shows one; only "b…" proxies may appear.
    let mut first = None;
    for i in 0..50 {
        d.disabled_proxy(&format!("a{i}"));
        d.disabled_proxy("b");
        if let Some(line) = w.next(Duration::from_millis(200)) {
            first = Some(line);
            break;
        }
        assert_eq!(d.delete("/proxies/b").status, 204);
    }
    let first = first.expect("an event within 50 tries");
    let ev: Value = serde_json::from_str(&first).expect("raw JSON");
    assert_eq!(ev["proxy"], "b", "{first}");
    // Subscribed now: what follows is exact.
    let _ = d.delete("/proxies/b");
    while w.next(Duration::from_millis(300)).is_some() {}
    d.disabled_proxy("b");
    d.disabled_proxy("a-last");
    let line = w.next(Duration::from_secs(10)).expect("the added event");
    let ev: Value = serde_json::from_str(&line).expect("raw JSON");
    assert_eq!(ev["kind"], "added", "{line}");
    assert_eq!(ev["proxy"], "b", "{line}");
    assert!(ev["at_ms"].as_u64().unwrap() > 0, "{line}");
    assert_eq!(
        w.next(Duration::from_millis(500)),
        None,
        "a-last is filtered out"
    );
}

#[test]
fn watch_without_a_daemon_says_so() {
    let port = free_port();
    let o = injector(&["-h", &format!("http://127.0.0.1:{port}"), "watch"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("cannot reach the daemon at 127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );
}

/// Starts `injector <args>` and waits for its API on `port`.
fn serve(args: &[&str], port: u16) -> (std::process::Child, bool) {
    let mut child = injector(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return (child, false);
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, true);
        }
        thread::sleep(Duration::from_millis(20));
    }
    (child, false)
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl_status(port: u16, extra: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}/proxies"))
        .output()
        .unwrap();
    stdout(&o)
}

#[test]
fn serve_takes_toxiproxys_single_dash_flags() {
    let port = free_port();
    let p = port.to_string();
    let (child, up) = serve(
        &[
            "serve",
            "-host",
            "127.0.0.1",
            "-port",
            &p,
            "-proxy-metrics",
            "-runtime-metrics",
            "--proxy-only",
        ],
        port,
    );
    let _k = Kill(child);
    assert!(up, "serve with single-dash flags did not come up");
    assert_eq!(curl_status(port, &[]), "200");
}

#[test]
fn serve_beyond_loopback_needs_a_token() {
    let port = free_port();
    let p = port.to_string();
    let o = injector(&["serve", "--host", "0.0.0.0", "--port", &p, "--proxy-only"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("give a token (--token-file or INJECTOR_TOKEN), or --insecure"),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let (child, up) = serve(
        &[
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            &p,
            "--proxy-only",
            "--token-file",
            file.to_str().unwrap(),
        ],
        port,
    );
    let _k = Kill(child);
    assert!(up);
    assert_eq!(curl_status(port, &[]), "401");
    assert_eq!(
        curl_status(port, &["-H", "Authorization: Bearer wrong"]),
        "401"
    );
    assert_eq!(
        curl_status(port, &["-H", "Authorization: Bearer s3cret"]),
        "200"
    );
    let o = injector(&[
        "-h",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        "s3cret",
        "list",
    ])
    .output()
    .unwrap();
    assert_eq!(ok(&o), "no proxies\n");
    let o = injector(&["-h", &format!("http://127.0.0.1:{port}"), "list"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&o),
        "Failed to retrieve proxies: missing or wrong bearer token\n"
    );
}

#[test]
fn serve_applies_a_config_file_with_toxics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"[{"name":"db","listen":"127.0.0.1:0","upstream":"127.0.0.1:5432","enabled":false,
             "toxics":[{"type":"latency","attributes":{"latency":100}},
                       {"name":"cut","type":"timeout","stream":"upstream","ttl_ms":60000}]},
            {"name":"cache","upstream":"127.0.0.1:6379","enabled":false}]"#,
    )
    .unwrap();
    let d = Daemon::start_with(&["-config", file.to_str().unwrap()]);
    let all = d.get("/proxies").json();
    assert_eq!(all.as_object().unwrap().len(), 2);
    let names: Vec<&str> = all["db"]["toxics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cut", "latency_downstream"]);
    assert_eq!(all["db"]["toxics"][0]["ttl_ms"], 60000);

    // A config that cannot be applied stops the daemon with the reason.
    std::fs::write(
        &file,
        r#"[{"name":"db","upstream":"x","enabled":false,"toxics":[{"type":"bogus"}]}]"#,
    )
    .unwrap();
    let o = injector(&[
        "serve",
        "--port",
        &free_port().to_string(),
        "--proxy-only",
        "--config",
        file.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("proxy db, toxic 1") && err.contains("invalid toxic type"),
        "{err}"
    );
    std::fs::write(&file, "[{").unwrap();
    let o = injector(&[
        "serve",
        "--port",
        &free_port().to_string(),
        "--proxy-only",
        "--config",
        file.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        stderr(&o).contains("bad request body: unexpected EOF"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sigterm_stops_the_daemon_and_every_proxy() {
    let port = free_port();
    let (child, up) = serve(&["serve", "--port", &port.to_string()], port);
    let mut k = Kill(child);
    assert!(up);
    let echo = Echo::start();
    let o = Command::new("curl")
        .args(["-s", "-X", "POST", "-d"])
        .arg(
            json!({"name": "p", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()})
                .to_string(),
        )
        .arg(format!("http://127.0.0.1:{port}/proxies"))
        .output()
        .unwrap();
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    let listen = p["listen"].as_str().unwrap().to_string();
    assert!(std::net::TcpStream::connect(&listen).is_ok());
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(k.0.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = k.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "the proxy must be gone"
    );
}
