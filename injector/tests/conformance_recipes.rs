//! The ToxiProxy recipes of ../shared/seed-recipes.md §1, run with curl as
//! users type them. Only host:port is rewritten: the API address, and the
//! proxies' addresses to loopback services this test starts.

mod conformance_support;

use std::process::Command;

use conformance_support::{Daemon, Echo, free_port};
use serde_json::{Value, json};

/// §1, copied verbatim.
const RECIPES: &str = r#"
# 2000 ms latency on responses
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics \
  -H 'Content-Type: application/json' \
  -d '{"name": "latency", "type": "latency", "attributes": {"latency": 2000}}'

# list, inspect, delete
curl http://localhost:8474/proxies/chaos-proxy/toxics
curl http://localhost:8474/proxies/chaos-proxy
curl -X DELETE http://localhost:8474/proxies/chaos-proxy/toxics/latency
curl http://localhost:8474/proxies

# latency with jitter
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "slow-response", "type": "latency", "attributes": {"latency": 2000, "jitter": 500}}'
# close the connection after 3 s, passing no data
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "connection-timeout", "type": "timeout", "attributes": {"timeout": 3000}}'
# 1 KB/s
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "slow-network", "type": "bandwidth", "attributes": {"rate": 1024}}'
# slice data into small pieces with delays
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "packet-loss", "type": "slicer", "attributes": {"average_size": 64, "size_variation": 32, "delay": 10}}'
# only 30 % of connections affected
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "intermittent-timeout", "type": "timeout", "attributes": {"timeout": 5000}, "toxicity": 0.3}'

# the "peak load" and "Black Friday" experiments
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "peak-load-latency", "type": "latency", "attributes": {"latency": 1500}}'
curl -X POST http://localhost:8474/proxies/chaos-proxy/toxics -H 'Content-Type: application/json' \
  -d '{"name": "black-friday-latency", "type": "latency", "attributes": {"latency": 3000, "jitter": 500}}'

curl -X POST http://localhost:8474/proxies \
  -d '{"name":"database","listen":"0.0.0.0:5433","upstream":"postgres:5432"}'
curl -X POST http://localhost:8474/proxies/database/toxics \
  -d '{"name":"latency","type":"latency","attributes":{"latency":500}}'
# "packet loss" written as a zero-rate bandwidth toxic
curl -X POST http://localhost:8474/proxies/database/toxics \
  -d '{"name":"loss","type":"bandwidth","attributes":{"rate":0}}'
"#;

/// The command lines of a shell snippet (comments dropped, `\` joined).
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if cur.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

struct Curl {
    home: tempfile::TempDir,
}

impl Curl {
    /// The command lines stay verbatim: a curlrc adds the status code and
    /// silences progress output.
    fn new() -> Curl {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".curlrc"),
            "silent\nshow-error\nwrite-out = \"\\n%{http_code}\"\n",
        )
        .unwrap();
        Curl { home }
    }

    fn run(&self, line: &str) -> (u16, String) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line)
            .env("CURL_HOME", self.home.path())
            .output()
            .expect("run sh -c curl");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

#[test]
fn toxiproxy_recipes_work_verbatim() {
    let d = Daemon::start();
    let orders = Echo::start();
    let postgres = Echo::start();
    let db_port = free_port();
    let api = format!("http://127.0.0.1:{}", d.port);
    let rewrite = |line: &str| {
        line.replace("http://localhost:8474", &api)
            .replace("0.0.0.0:5433", &format!("0.0.0.0:{db_port}"))
            .replace("postgres:5432", &postgres.addr.to_string())
    };
    // The proxy the recipes work on: web app -> chaos-proxy -> orders.
    let r = d.post(
        "/proxies",
        &json!({"name": "chaos-proxy", "listen": "127.0.0.1:0", "upstream": orders.addr.to_string()}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let curl = Curl::new();
    let lines = commands(RECIPES);
    assert_eq!(lines.len(), 15, "{lines:#?}");
    let results: Vec<(u16, Value)> = lines
        .iter()
        .map(|l| {
            let (code, body) = curl.run(&rewrite(l));
            (code, serde_json::from_str(&body).unwrap_or(Value::Null))
        })
        .collect();
    let toxic = |i: usize| &results[i].1;

    assert_eq!(results[0].0, 200);
    assert_eq!(
        toxic(0),
        &json!({"attributes": {"latency": 2000, "jitter": 0}, "name": "latency", "type": "latency", "stream": "downstream", "toxicity": 1})
    );
    assert_eq!(results[1], (200, json!([toxic(0)])));
    assert_eq!(results[2].0, 200);
    assert_eq!(results[2].1["toxics"], json!([toxic(0)]));
    assert_eq!(results[3], (204, Value::Null));
    assert_eq!(results[4].0, 200);
    assert_eq!(results[4].1["chaos-proxy"]["toxics"], json!([]));
    for (i, name, kind) in [
        (5, "slow-response", "latency"),
        (6, "connection-timeout", "timeout"),
        (7, "slow-network", "bandwidth"),
        (8, "packet-loss", "slicer"),
        (9, "intermittent-timeout", "timeout"),
        (10, "peak-load-latency", "latency"),
        (11, "black-friday-latency", "latency"),
    ] {
        assert_eq!(results[i].0, 200, "{}", lines[i]);
        assert_eq!(
            (toxic(i)["name"].as_str(), toxic(i)["type"].as_str()),
            (Some(name), Some(kind))
        );
    }
    assert_eq!(
        toxic(5)["attributes"],
        json!({"latency": 2000, "jitter": 500})
    );
    assert_eq!(toxic(7)["attributes"], json!({"rate": 1024}));
    assert_eq!(
        toxic(8)["attributes"],
        json!({"average_size": 64, "size_variation": 32, "delay": 10})
    );
    assert_eq!(toxic(9)["toxicity"], json!(0.3));
    assert_eq!(
        d.get("/proxies/chaos-proxy/toxics")
            .json()
            .as_array()
            .unwrap()
            .len(),
        7
    );

    assert_eq!(results[12].0, 201, "{}", lines[12]);
    assert_eq!(results[12].1["listen"], format!("[::]:{db_port}"));
    assert_eq!(results[12].1["upstream"], postgres.addr.to_string());
    assert_eq!(
        (results[13].0, toxic(13)["attributes"].clone()),
        (200, json!({"latency": 500, "jitter": 0}))
    );
    assert_eq!(
        (results[14].0, toxic(14)["attributes"].clone()),
        (200, json!({"rate": 0}))
    );

    // The payment API slowed to 8 s ± 2 s (a JSON body users post as is).
    let payment = r#"{"name": "payment-latency", "type": "latency", "attributes": {"latency": 8000, "jitter": 2000}}"#;
    let r = d.post("/proxies/chaos-proxy/toxics", payment);
    r.assert_json(
        200,
        r#"{"attributes":{"latency":8000,"jitter":2000},"name":"payment-latency","type":"latency","stream":"downstream","toxicity":1}"#,
    );
}
