//! /proxies and /proxies/{proxy}: creation checks and their order, the
//! listen address rules, updates, enable/disable, delete
//! (../shared/toxiproxy-api.md §2, §3.1, §3.2).

mod conformance_support;

use std::{
    io::{ErrorKind, Read},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use conformance_support::{Daemon, Echo, echo_through};
use serde_json::{Value, json};

fn create(d: &Daemon, body: Value) -> conformance_support::Resp {
    d.post("/proxies", &body.to_string())
}

fn listen_of(d: &Daemon, name: &str) -> String {
    d.get(&format!("/proxies/{name}")).json()["listen"]
        .as_str()
        .unwrap()
        .to_string()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn create_answers_201_with_the_proxy_object_in_toxiproxys_key_order() {
    let d = Daemon::start();
    let r = create(
        &d,
        json!({"name": "p1", "listen": "127.0.0.1:0", "upstream": "x", "enabled": false}),
    );
    r.assert_json(
        201,
        r#"{"name":"p1","listen":"127.0.0.1:0","upstream":"x","enabled":false,"Logger":{},"toxics":[]}"#,
    );
    d.get("/proxies/p1").assert_json(
        200,
        r#"{"name":"p1","listen":"127.0.0.1:0","upstream":"x","enabled":false,"Logger":{},"toxics":[]}"#,
    );
}

#[test]
fn create_checks_come_in_toxiproxys_order() {
    let d = Daemon::start();
    create(&d, json!({"upstream": "x"})).assert_error(400, "missing required field: name");
    create(&d, json!({"name": "", "upstream": ""}))
        .assert_error(400, "missing required field: name");
    create(&d, json!({"name": "a"})).assert_error(400, "missing required field: upstream");
    create(&d, json!({"name": "a", "upstream": null}))
        .assert_error(400, "missing required field: upstream");
    // The upstream is not resolved or validated at creation.
    assert_eq!(
        create(&d, json!({"name": "a", "upstream": "x", "enabled": false})).status,
        201
    );
    // 409 comes before the bind: a duplicate never opens a port.
    create(&d, json!({"name": "a", "upstream": "x", "listen": "nope"}))
        .assert_error(409, "proxy already exists");
    // Bad JSON before everything else.
    d.post("/proxies", r#"{"name":"a","#)
        .assert_error(400, "bad request body: unexpected EOF");
}

#[test]
fn disabled_proxies_keep_the_raw_listen_address() {
    let d = Daemon::start();
    for listen in ["localhost:0", "nope", ""] {
        let name = format!("raw{}", listen.len());
        let r = create(
            &d,
            json!({"name": name, "listen": listen, "upstream": "x", "enabled": false}),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["listen"], listen);
    }
}

#[test]
fn listen_addresses_are_rewritten_as_go_does() {
    let d = Daemon::start();
    let cases = [
        ("127.0.0.1:0", "127.0.0.1:"),
        ("localhost:0", "127.0.0.1:"),
        ("", "[::]:"),
        (":0", "[::]:"),
        ("0.0.0.0:0", "[::]:"),
        ("[::1]:0", "[::1]:"),
    ];
    for (i, (listen, prefix)) in cases.iter().enumerate() {
        let name = format!("l{i}");
        let mut body = json!({"name": name, "upstream": "127.0.0.1:9"});
        if !listen.is_empty() {
            body["listen"] = json!(listen);
        }
        let r = create(&d, body);
        assert_eq!(r.status, 201, "{listen:?}: {}", r.text());
        let got = r.json()["listen"].as_str().unwrap().to_string();
        assert!(got.starts_with(prefix), "{listen:?} became {got:?}");
        assert_ne!(port_of(&got), 0, "{listen:?} became {got:?}");
        assert_eq!(
            d.get(&format!("/proxies/{name}")).json()["listen"],
            got.as_str()
        );
        assert_eq!(d.delete(&format!("/proxies/{name}")).status, 204);
    }
}

#[test]
fn bind_failures_are_raw_500s_and_create_nothing() {
    let d = Daemon::start();
    create(&d, json!({"name": "a", "listen": "nope", "upstream": "x"}))
        .assert_error(500, "listen tcp: address nope: missing port in address");
    create(
        &d,
        json!({"name": "a", "listen": "127.0.0.1:99999", "upstream": "x"}),
    )
    .assert_error(500, "listen tcp: address 99999: invalid port");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    create(&d, json!({"name": "a", "listen": addr, "upstream": "x"})).assert_error(
        500,
        &format!("listen tcp {addr}: bind: address already in use"),
    );
    d.get("/proxies").assert_json(200, "{}");
}

#[test]
fn a_listen_proxy_forwards_to_its_upstream() {
    let d = Daemon::start();
    let echo = Echo::start();
    let r = create(
        &d,
        json!({"name": "e", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();
    assert_eq!(echo_through(&listen, b"hello").unwrap(), b"hello");
}

#[test]
fn disable_refuses_and_closes_and_enable_rebinds_the_same_port() {
    let d = Daemon::start();
    let echo = Echo::start();
    let r = create(
        &d,
        json!({"name": "t", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();
    let mut open = TcpStream::connect(&listen).unwrap();
    assert_eq!(echo_through(&listen, b"x").unwrap(), b"x");

    let r = d.patch("/proxies/t", r#"{"enabled":false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(r.json()["listen"], listen.as_str());
    let err = TcpStream::connect(&listen).expect_err("a disabled proxy must refuse");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    match open.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("open connection must be closed, got {other:?}"),
    }

    // POST is the deprecated spelling of PATCH and behaves the same.
    let r = d.post("/proxies/t", r#"{"enabled":true,"name":"renamed"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["name"].clone(), r.json()["enabled"].clone()),
        (json!("t"), json!(true))
    );
    assert_eq!(listen_of(&d, "t"), listen, "re-enable binds the same port");
    assert_eq!(echo_through(&listen, b"again").unwrap(), b"again");
}

#[test]
fn update_follows_toxiproxys_differs_rules() {
    let d = Daemon::start();
    let echo = Echo::start();
    let up = echo.addr.to_string();
    let r = create(
        &d,
        json!({"name": "u", "listen": "127.0.0.1:0", "upstream": up}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json()["listen"].as_str().unwrap().to_string();
    // `{}` changes nothing.
    let r = d.patch("/proxies/u", "{}");
    assert_eq!((r.status, r.json()["listen"].clone()), (200, json!(first)));
    // Port 0 always differs: a new ephemeral port.
    let r = d.patch("/proxies/u", r#"{"listen":"127.0.0.1:0"}"#);
    let second = r.json()["listen"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(r.json()["enabled"].as_bool().unwrap());
    assert_eq!(echo_through(&second, b"moved").unwrap(), b"moved");
    // An upstream-only change restarts the listener: open connections drop.
    let mut open = TcpStream::connect(&second).unwrap();
    let r = d.patch(
        "/proxies/u",
        &json!({"upstream": "localhost:".to_string() + &echo.addr.port().to_string()}).to_string(),
    );
    assert_eq!(r.status, 200);
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(open.read(&mut buf), Ok(0) | Err(_)),
        "dropped by the restart"
    );
    assert_eq!(listen_of(&d, "u"), second);
    // An address that does not resolve: raw 500, nothing changed.
    d.patch("/proxies/u", r#"{"listen":"bad"}"#)
        .assert_error(500, "address bad: missing port in address");
    assert_eq!(listen_of(&d, "u"), second);
    // A start failure leaves the proxy disabled with the new address.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    d.patch("/proxies/u", &json!({"listen": taken}).to_string())
        .assert_error(
            500,
            &format!("listen tcp {taken}: bind: address already in use"),
        );
    let p = d.get("/proxies/u").json();
    assert_eq!(
        (p["listen"].clone(), p["enabled"].clone()),
        (json!(taken), json!(false))
    );
}

#[test]
fn update_and_delete_of_disabled_proxies() {
    let d = Daemon::start();
    d.disabled_proxy("d");
    d.patch("/proxies/missing", "{}")
        .assert_error(404, "proxy not found");
    // 404 before the body is even read.
    d.patch("/proxies/missing", "garbage")
        .assert_error(404, "proxy not found");
    d.patch("/proxies/d", r#"{"enabled":1}"#).assert_error(
        400,
        "bad request body: json: cannot unmarshal number into Go struct field Proxy.enabled of type bool",
    );
    let r = d.patch("/proxies/d", r#"{"upstream":"elsewhere:1"}"#);
    assert_eq!(
        (r.status, r.json()["upstream"].clone()),
        (200, json!("elsewhere:1"))
    );
    assert_eq!(r.json()["enabled"], false);
    let r = d.delete("/proxies/d");
    assert_eq!((r.status, r.body.len()), (204, 0));
    d.delete("/proxies/d").assert_error(404, "proxy not found");
}

#[test]
fn delete_closes_the_listener() {
    let d = Daemon::start();
    let echo = Echo::start();
    let r = create(
        &d,
        json!({"name": "gone", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();
    assert_eq!(d.delete("/proxies/gone").status, 204);
    let err = TcpStream::connect(&listen).expect_err("deleted proxies stop listening");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
