//! The API over TLS (issue 7): `serve --tls-cert --tls-key` answers HTTPS
//! only, the token still applies, the CLI speaks https:// with
//! INJECTOR_CA_CERT, and bad certificate files stop the start with a
//! message naming them.

mod conformance_support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use conformance_support::free_port;

struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    /// A self-signed certificate for 127.0.0.1 and localhost.
    fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        Tls { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// `injector serve` over TLS, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["serve", "--proxy-only", "--port", &port.to_string()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(extra)
        .env_remove("INJECTOR_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS daemon never listened");
        thread::sleep(Duration::from_millis(20));
    }
    s
}

fn curl(tls: &Tls, args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(tls.cert())
        .args(args)
        .output()
        .expect("curl (cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn cli(tls: &Tls, port: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["-h", &format!("https://127.0.0.1:{port}")])
        .args(args)
        .env("INJECTOR_CA_CERT", tls.cert())
        .env_remove("TOXIPROXY_URL")
        .output()
        .unwrap()
}

#[test]
fn the_api_answers_https_and_refuses_clear_text() {
    let tls = Tls::new();
    let s = serve(&tls.cert(), &tls.key(), &[]);
    let url = format!("https://127.0.0.1:{}", s.port);

    let (code, body) = curl(&tls, &[&format!("{url}/version")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"version\""), "{body}");
    let (code, body) = curl(
        &tls,
        &[
            "-X",
            "POST",
            "-d",
            r#"{"name":"web","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#,
            &format!("{url}/proxies"),
        ],
    );
    assert_eq!(code, 201, "{body}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("version"),
        "clear text was answered: {:?}",
        String::from_utf8_lossy(&got)
    );

    // A client that does not trust the certificate is refused by curl.
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("{url}/version")])
        .env("CURL_CA_BUNDLE", tls.key())
        .output()
        .unwrap();
    assert!(!o.status.success(), "an untrusted certificate was accepted");

    // The daemon still answers after the failed handshakes.
    assert_eq!(curl(&tls, &[&format!("{url}/proxies")]).0, 200);
}

#[test]
fn the_cli_speaks_https_with_the_given_ca() {
    let tls = Tls::new();
    let s = serve(&tls.cert(), &tls.key(), &[]);
    let o = cli(
        &tls,
        s.port,
        &["create", "-l", "127.0.0.1:0", "-u", "127.0.0.1:9", "db"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&tls, s.port, &["list", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"db\""));

    // Without the CA the handshake fails, and the CLI says so.
    let o = Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["-h", &format!("https://127.0.0.1:{}", s.port), "list"])
        .env("INJECTOR_CA_CERT", tls.key())
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn the_token_still_applies_over_tls() {
    let tls = Tls::new();
    let s = serve(&tls.cert(), &tls.key(), &["--token", "s3cret"]);
    let url = format!("https://127.0.0.1:{}/proxies", s.port);
    let (code, body) = curl(&tls, &[&url]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"status\":401"), "{body}");
    let (code, _) = curl(&tls, &["-H", "Authorization: Bearer s3cret", &url]);
    assert_eq!(code, 200);
}

#[test]
fn bad_certificate_files_stop_the_start_naming_the_file() {
    let tls = Tls::new();
    let other = Tls::new();
    let missing = tls.dir.path().join("missing.pem");
    for (cert, key, expect) in [
        (missing.clone(), tls.key(), "missing.pem".to_string()),
        (tls.cert(), missing.clone(), "missing.pem".to_string()),
        // A key file given as the certificate holds no certificate.
        (tls.key(), tls.key(), "holds no certificate".to_string()),
        (tls.cert(), other.key(), "do not go together".to_string()),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_injector"))
            .args(["serve", "--proxy-only", "--port", &free_port().to_string()])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "started with {cert:?} {key:?}");
        assert!(err.contains(&expect), "{expect:?} not in: {err}");
    }
    // --tls-cert alone is a usage error.
    let o = Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["serve", "--proxy-only", "--tls-cert"])
        .arg(tls.cert())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tls-key"));
}
