//! The HTTP layer of ToxiProxy's API, byte for byte: routing quirks,
//! middleware, /version, error forms, and bodies that must not hurt the
//! daemon (../shared/toxiproxy-api.md §1).

mod conformance_support;

use conformance_support::Daemon;

#[test]
fn version_is_toxiproxys_exact_bytes() {
    let d = Daemon::start();
    let r = d.get("/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"version\": \"2.12.0\"}\n");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(
        r.header("x-injector-version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unmatched_paths_get_gos_text_404_without_request_id() {
    let d = Daemon::start();
    for path in [
        "/nope",
        "/proxies/",
        "/proxies/a%2Fb",
        "/proxies/x/toxics/",
        "/proxies/x/toxics/t/more",
        "/",
    ] {
        let r = d.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, b"404 page not found\n", "{path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-toxiproxy-request-id"), None, "{path}");
    }
}

#[test]
fn encoded_names_and_query_strings() {
    let d = Daemon::start();
    let r = d.post(
        "/proxies",
        r#"{"name":"a b","upstream":"127.0.0.1:9","enabled":false}"#,
    );
    assert_eq!(r.status, 201);
    assert_eq!(d.get("/proxies/a%20b?x=1&y").json()["name"], "a b");
    // A `/` in a name can be created but never addressed again.
    assert_eq!(
        d.post(
            "/proxies",
            r#"{"name":"a/b","upstream":"x","enabled":false}"#
        )
        .status,
        201
    );
    assert_eq!(d.get("/proxies/a%2Fb").status, 404);
    assert_eq!(d.get("/proxies").json().as_object().unwrap().len(), 2);
    // Malformed escapes are a bad request line for Go's server.
    assert_eq!(d.get("/proxies/%zz").status, 400);
}

#[test]
fn unclean_paths_are_redirected_like_gorilla() {
    let d = Daemon::start();
    let r = d.get("//proxies?a=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/proxies?a=1"));
    let r = d.get("/proxies/../version");
    assert_eq!((r.status, r.header("location")), (301, Some("/version")));
}

#[test]
fn wrong_methods_are_bare_405s() {
    let d = Daemon::start();
    d.disabled_proxy("x");
    let cases = [
        ("GET", "/reset"),
        ("POST", "/version"),
        ("DELETE", "/proxies"),
        ("DELETE", "/proxies/x/toxics"),
        ("PUT", "/proxies/x"),
        ("HEAD", "/version"),
        ("OPTIONS", "/proxies"),
        ("GET", "/populate"),
        ("PUT", "/proxies/x/toxics/t"),
    ];
    for (method, path) in cases {
        let r = d.request(method, path, None, &[]);
        assert_eq!(r.status, 405, "{method} {path}");
        assert!(r.body.is_empty(), "{method} {path}");
        assert_eq!(r.header("content-length"), Some("0"), "{method} {path}");
        assert_eq!(r.header("content-type"), None, "{method} {path}");
        assert_eq!(r.header("x-toxiproxy-request-id"), None, "{method} {path}");
    }
}

#[test]
fn matched_routes_carry_a_fresh_xid_request_id() {
    let d = Daemon::start();
    let mut seen = std::collections::HashSet::new();
    for path in ["/version", "/proxies", "/proxies/missing", "/metrics"] {
        let r = d.request(
            "GET",
            path,
            None,
            &[("X-Toxiproxy-Request-Id", "client-chosen")],
        );
        let id = r
            .header("x-toxiproxy-request-id")
            .expect("request id")
            .to_string();
        assert_eq!(id.len(), 20, "{id}");
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(&c)),
            "{id}"
        );
        assert!(seen.insert(id), "ids must be fresh");
    }
}

#[test]
fn browsers_are_refused_with_403() {
    let d = Daemon::start();
    let r = d.request(
        "GET",
        "/proxies",
        None,
        &[("User-Agent", "Mozilla/5.0 (X11)")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"User agent not allowed\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-toxiproxy-request-id").map(str::len), Some(20));
    // Not a prefix match on "Mozilla" alone, and unmatched paths stay 404.
    assert_eq!(
        d.request("GET", "/proxies", None, &[("User-Agent", "Mozillax")])
            .status,
        200
    );
    assert_eq!(
        d.request("GET", "/nope", None, &[("User-Agent", "Mozilla/5.0")])
            .status,
        404
    );
}

#[test]
fn errors_are_text_plain_json_plus_newline() {
    let d = Daemon::start();
    let r = d.get("/proxies/missing");
    r.assert_error(404, "proxy not found");
    assert_eq!(r.body, b"{\"error\":\"proxy not found\",\"status\":404}\n");
    d.get("/proxies/missing/toxics")
        .assert_error(404, "proxy not found");
    d.delete("/proxies/missing")
        .assert_error(404, "proxy not found");
}

#[test]
fn success_bodies_are_compact_json_without_newline() {
    let d = Daemon::start();
    d.get("/proxies").assert_json(200, "{}");
    d.disabled_proxy("b");
    d.disabled_proxy("a");
    let r = d.get("/proxies");
    let text = r.text();
    assert!(
        text.starts_with(r#"{"a":{"name":"a","listen":"127.0.0.1:0","#),
        "{text}"
    );
    assert!(
        text.find(r#""b":"#).unwrap() > text.find(r#""a":"#).unwrap(),
        "keys sorted"
    );
    assert!(!text.ends_with('\n'));
}

#[test]
fn html_characters_in_names_are_escaped_as_go_does() {
    let d = Daemon::start();
    let r = d.post(
        "/proxies",
        r#"{"name":"<a&b>","upstream":"x","enabled":false}"#,
    );
    assert_eq!(r.status, 201);
    assert!(
        r.text().starts_with(r#"{"name":"\u003ca\u0026b\u003e""#),
        "{}",
        r.text()
    );
}

#[test]
fn bodies_decode_like_gos_decoder() {
    let d = Daemon::start();
    let cases: [(&[u8], &str); 8] = [
        (b"", "bad request body: EOF"),
        (b"   ", "bad request body: EOF"),
        (
            br#"{"name":"x","upstream""#,
            "bad request body: unexpected EOF",
        ),
        (
            b"nope",
            "bad request body: invalid character 'o' in literal null (expecting 'u')",
        ),
        (
            b"{'name':1}",
            "bad request body: invalid character '\\'' looking for beginning of object key string",
        ),
        (
            br#"{"name":"x","upstream":"y","enabled":"yes"}"#,
            "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool",
        ),
        (
            br#"{"name":5}"#,
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.name of type string",
        ),
        (
            b"[1]",
            "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy",
        ),
    ];
    for (body, want) in cases {
        d.request("POST", "/proxies", Some(body), &[])
            .assert_error(400, want);
    }
    // Content-Type is not looked at; keys fold; trailing bytes are ignored.
    let r = d.request(
        "POST",
        "/proxies",
        Some(br#"{"NAME":"folded","Upstream":"127.0.0.1:9","ENABLED":false,"unknown":[1]} trailing garbage"#),
        &[("Content-Type", "text/html")],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["name"], "folded");
    assert_eq!(d.get("/proxies").json().as_object().unwrap().len(), 1);
}

#[test]
fn huge_and_hostile_bodies_get_a_clear_4xx_and_the_daemon_lives() {
    let mut d = Daemon::start();
    let big = vec![b' '; 2 << 20];
    d.request("POST", "/proxies", Some(&big), &[])
        .assert_error(413, "request body too large (limit 1048576 bytes)");
    let deep = "[".repeat(200_000);
    d.request("POST", "/populate", Some(deep.as_bytes()), &[]);
    let r = d.request("POST", "/proxies", Some(deep.as_bytes()), &[]);
    r.assert_error(400, "bad request body: exceeded max depth");
    for body in [
        &b"\xff\xfe\x00garbage"[..],
        b"{\"name\":\"\\ud800\",\"upstream\":\"x\"}",
        b"{\"name\":\"a\",\"upstream\":\"b\",\"enabled\":false,\"toxics\":[{\"type\":\"latency\"}]}",
        b"{\"name\":1e999}",
        b"\"\\u0000\"",
    ] {
        let r = d.request("POST", "/proxies", Some(body), &[]);
        assert!((200..500).contains(&r.status), "{body:?}: {} {}", r.status, r.text());
        let r = d.request("POST", "/populate", Some(body), &[]);
        assert!((200..500).contains(&r.status), "{body:?}: {} {}", r.status, r.text());
        d.disabled_proxy("t");
        let r = d.request("POST", "/proxies/t/toxics", Some(body), &[]);
        assert!((200..500).contains(&r.status), "{body:?}: {} {}", r.status, r.text());
        assert_eq!(d.delete("/proxies/t").status, 204);
    }
    // Broken HTTP itself.
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /proxies HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
        b"POST /proxies HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        use std::io::{Read, Write};
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok();
        let _ = s.write_all(raw);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    assert!(d.alive(), "the daemon must survive hostile input");
    assert_eq!(d.get("/proxies").json().as_object().unwrap().len(), 1);
}

#[test]
fn metrics_are_prometheus_text_on_any_method() {
    let d = Daemon::start();
    d.disabled_proxy("m");
    assert_eq!(
        d.post("/proxies/m/toxics", r#"{"type":"latency"}"#).status,
        200
    );
    for method in ["GET", "POST", "DELETE"] {
        let r = d.request(method, "/metrics", None, &[]);
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.text();
        assert!(text.contains("\ninjector_proxies 1\n"), "{text}");
        assert!(text.contains("\ninjector_toxics 1\n"), "{text}");
    }
}

#[test]
fn metrics_count_the_bytes_of_ended_connections_as_toxiproxy_does() {
    use conformance_support::{Echo, echo_through};
    let d = Daemon::start();
    let echo = Echo::start();
    let up = echo.addr.to_string();
    let r = d.post(
        "/proxies",
        &serde_json::json!({"name": "m", "listen": "127.0.0.1:0", "upstream": up}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();
    // No link has ended: ToxiProxy prints no series at all.
    assert!(!d.get("/metrics").text().contains("toxiproxy_proxy"));
    assert_eq!(echo_through(&listen, b"hello").unwrap(), b"hello");
    assert_eq!(echo_through(&listen, b"world!").unwrap(), b"world!");
    let labels = format!(r#"listener="{listen}",proxy="m",upstream="{up}""#);
    let want = [
        format!("toxiproxy_proxy_received_bytes_total{{direction=\"downstream\",{labels}}} 11\n"),
        format!("toxiproxy_proxy_received_bytes_total{{direction=\"upstream\",{labels}}} 11\n"),
        format!("toxiproxy_proxy_sent_bytes_total{{direction=\"downstream\",{labels}}} 11\n"),
        format!("toxiproxy_proxy_sent_bytes_total{{direction=\"upstream\",{labels}}} 11\n"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = d.get("/metrics").text();
        if want.iter().all(|w| text.contains(w.as_str())) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for w in &want {
        assert!(text.contains(w.as_str()), "missing {w:?} in\n{text}");
    }
    assert!(text.contains("# HELP toxiproxy_proxy_sent_bytes_total \n# TYPE toxiproxy_proxy_sent_bytes_total counter\n"), "{text}");
    // Counters only grow: a stopped proxy keeps its series.
    assert_eq!(d.patch("/proxies/m", r#"{"enabled":false}"#).status, 200);
    let text = d.get("/metrics").text();
    for w in &want {
        assert!(
            text.contains(w.as_str()),
            "after disable, missing {w:?} in\n{text}"
        );
    }
}

#[test]
fn the_openapi_document_is_served_and_matches_the_repository() {
    let d = Daemon::start();
    let r = d.get("/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r.json(), kept);
    assert_eq!(d.post("/openapi.json", "").status, 405);
}
