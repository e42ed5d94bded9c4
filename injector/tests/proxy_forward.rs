//! Plain forwarding through a listen proxy: integrity, ToxiProxy's
//! connection order, stop and restart.

mod proxy_support;

use std::time::Duration;

use injector::proxy::ListenProxy;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_a_large_stream_intact() {
    let server = echo().await;
    let p = proxy(server.addr, &[]).await;
    let mut c = client(&p).await;
    let data = pattern(8 << 20);
    let (mut r, mut w) = c.split();
    let ((), got) = within(30, async {
        tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        })
    })
    .await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream corrupted");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_reaches_the_client_and_counters_add_up() {
    let server = source(pattern(100_000)).await;
    let p = proxy(server.addr, &[]).await;
    let mut c = client(&p).await;
    let (got, end) = within(10, read_to_end(&mut c)).await;
    end.unwrap();
    assert!(got == pattern(100_000));
    drop(c);
    // A link adds its counts when it ends.
    within(5, async {
        loop {
            let counts = p.byte_counters();
            let down = counts
                .iter()
                .find(|c| c.0 == injector::model::Stream::Downstream)
                .unwrap();
            if down.1 == 100_000 && down.2 == 100_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_dial_closes_the_client() {
    // A port nobody listens on: bind one, note it, close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = proxy(dead, &[]).await;
    let mut c = client(&p).await;
    let (got, end) = within(5, read_to_end(&mut c)).await;
    assert!(got.is_empty());
    end.expect("EOF, not an error");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_connections_refuses_new_ones_and_restarts_on_the_same_port() {
    let server = echo().await;
    let p = proxy(server.addr, &[]).await;
    let addr = p.listen_addr();
    let mut c = client(&p).await;
    rtt(&mut c).await;
    within(5, p.stop()).await;
    let (_, end) = within(5, read_to_end(&mut c)).await;
    end.expect("the client sees EOF");
    let refused = TcpStream::connect(&addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let p = ListenProxy::start("test", &addr, &server.addr.to_string(), &[])
        .await
        .expect("rebinds the same port");
    assert_eq!(p.listen_addr(), addr);
    let mut c = client(&p).await;
    rtt(&mut c).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_half_close_closes_the_whole_connection_as_in_toxiproxy() {
    // ToxiProxy closes the destination when a direction ends (link.go),
    // so the server's side is closed and the client gets EOF even though
    // the server never closes by itself.
    let server = serve(|mut s| async move {
        let mut sink = vec![];
        let _ = s.read_to_end(&mut sink).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let p = proxy(server.addr, &[]).await;
    let mut c = client(&p).await;
    c.write_all(b"bye").await.unwrap();
    c.shutdown().await.unwrap();
    let (got, end) = within(5, read_to_end(&mut c)).await;
    assert!(got.is_empty());
    end.unwrap();
    p.stop().await;
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_connections_release_their_sockets_and_pipes() {
    let server = echo().await;
    let toxics = [
        down("latency", serde_json::json!({"latency": 5})),
        up(
            "slicer",
            serde_json::json!({"average_size": 100, "size_variation": 10, "delay": 10}),
        ),
    ];
    let p = proxy(server.addr, &toxics).await;
    // Warm up the runtime's own descriptors first.
    let mut c = client(&p).await;
    rtt(&mut c).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = open_fds();
    let conns = (0..50).map(|_| async {
        let mut c = client(&p).await;
        c.write_all(&pattern(10_000)).await.unwrap();
        let mut back = vec![0u8; 10_000];
        c.read_exact(&mut back).await.unwrap();
        assert!(back == pattern(10_000));
    });
    within(20, futures::future::join_all(conns)).await;
    within(5, async {
        while open_fds() > before + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    p.stop().await;
}
