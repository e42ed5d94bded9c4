//! `listen` rewriting and bind errors, as ToxiProxy (Go's net.Listen)
//! produces them (toxiproxy-api.md §3.1).

mod proxy_support;

use injector::proxy::ListenProxy;
use proxy_support::*;

async fn start(listen: &str) -> Result<ListenProxy, injector::ApiError> {
    ListenProxy::start("listen-test", listen, "127.0.0.1:9", &[]).await
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn addresses_are_rewritten_like_go() {
    let cases = [
        ("127.0.0.1:0", "127.0.0.1:"),
        ("localhost:0", "127.0.0.1:"),
        ("", "[::]:"),
        (":0", "[::]:"),
        ("0.0.0.0:0", "[::]:"),
        ("[::]:0", "[::]:"),
        ("[::1]:0", "[::1]:"),
        ("127.0.0.1:", "127.0.0.1:"),
    ];
    for (listen, prefix) in cases {
        let p = start(listen)
            .await
            .unwrap_or_else(|e| panic!("{listen:?}: {e}"));
        let got = p.listen_addr();
        assert!(
            got.starts_with(prefix),
            "{listen:?} -> {got:?}, want {prefix}<port>"
        );
        assert_ne!(port_of(&got), 0, "{listen:?} -> {got:?}");
        p.stop().await;
    }
}

#[tokio::test]
async fn a_given_port_is_kept_and_the_wildcard_is_dual_stack() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = echo().await;
    let p = ListenProxy::start(
        "w",
        &format!("0.0.0.0:{free}"),
        &server.addr.to_string(),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(p.listen_addr(), format!("[::]:{free}"));
    // One IPv6 socket serves IPv4 clients too.
    let mut v4 = tokio::net::TcpStream::connect(("127.0.0.1", free))
        .await
        .unwrap();
    rtt(&mut v4).await;
    let mut v6 = tokio::net::TcpStream::connect(("::1", free)).await.unwrap();
    rtt(&mut v6).await;
    p.stop().await;
}

#[tokio::test]
async fn errors_are_gos_raw_texts() {
    let err = |listen: &'static str| async move {
        let e = start(listen)
            .await
            .err()
            .unwrap_or_else(|| panic!("{listen:?} must fail"));
        assert_eq!(e.status, 500, "{listen:?}");
        e.message
    };
    assert_eq!(
        err("nope").await,
        "listen tcp: address nope: missing port in address"
    );
    assert_eq!(
        err("127.0.0.1:99999").await,
        "listen tcp: address 99999: invalid port"
    );
    assert_eq!(
        err("::1").await,
        "listen tcp: address ::1: too many colons in address"
    );
    assert_eq!(
        err("127.0.0.1:-5").await,
        "listen tcp: address -5: invalid port"
    );
}

#[tokio::test]
async fn a_busy_port_reports_the_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for listen in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let e = start(&listen).await.err().expect("port is taken");
        assert_eq!(e.status, 500);
        assert_eq!(
            e.message,
            format!("listen tcp 127.0.0.1:{port}: bind: address already in use")
        );
    }
    // The wildcard collides with it as well, and Go names it by the host
    // it was given.
    let e = start(&format!(":{port}"))
        .await
        .err()
        .expect("port is taken");
    assert_eq!(
        e.message,
        format!("listen tcp :{port}: bind: address already in use")
    );
}
