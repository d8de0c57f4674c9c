//! What the benchmarks share: scraping the operator's /metrics, reading a process's memory,
//! creating objects in bulk, waiting for them to be Ready, starting the operator.
#![allow(dead_code)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::support::*;

/// Kubernetes creates in flight at once.
pub const CONCURRENCY: usize = 64;

pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn sum_metric(text: &str, name: &str, label_filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// GET /metrics over plain HTTP/1.0 (empty on any failure).
pub async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub writes: f64,
    pub js: f64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            writes: self.writes - o.writes,
            js: self.js - o.js,
        }
    }
}

pub fn counts(m: &str) -> Counts {
    Counts {
        writes: sum_metric(m, "jetstream_operator_kubernetes_writes_total", ""),
        js: sum_metric(m, "jetstream_operator_jetstream_requests_total", ""),
    }
}

/// Per-op JetStream request counts, for the at-rest breakdown.
pub fn js_by_op(m: &str) -> Vec<(String, f64)> {
    let mut out: std::collections::BTreeMap<String, f64> = Default::default();
    for l in m
        .lines()
        .filter(|l| l.starts_with("jetstream_operator_jetstream_requests_total{"))
    {
        let op = l
            .split("op=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(op.to_string()).or_default() += v;
    }
    out.into_iter().collect()
}

/// The JetStream requests by operation between two scrapes, as `op count, ...`.
pub fn ops_between(before: &str, after: &str) -> String {
    let b = js_by_op(before);
    let parts: Vec<String> = js_by_op(after)
        .into_iter()
        .filter_map(|(op, v)| {
            let was = b.iter().find(|(o, _)| *o == op).map_or(0.0, |(_, v)| *v);
            (v > was).then(|| format!("{op} {}", v - was))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// "first / all" Ready times since `t0`, for a row.
pub fn first_and_all(first: Option<Instant>, last: Instant, t0: Instant) -> String {
    format!(
        "{:.2} s / {:.2} s",
        first
            .map(|f| f.duration_since(t0))
            .unwrap_or_default()
            .as_secs_f64(),
        last.duration_since(t0).as_secs_f64()
    )
}

pub async fn create_all(api: &kube::Api<DynamicObject>, objs: Vec<DynamicObject>) {
    futures::stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            async move {
                let name = o.metadata.name.clone().unwrap_or_default();
                api.create(&PostParams::default(), &o)
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

/// Watches Streams and Consumers of a namespace until `n` of each are Ready; returns the
/// instants of the first and the last Ready.
pub fn watch_ready(
    cp: &ControlPlane,
    ns: &str,
    n: usize,
) -> tokio::task::JoinHandle<(Option<Instant>, Instant)> {
    watch_ready_of(cp, ns, &["streams", "consumers"], 2 * n)
}

/// Watches the objects of `resources` in a namespace until `total` of them (all resources
/// together) are Ready; returns the instants of the first and the last Ready.
pub fn watch_ready_of(
    cp: &ControlPlane,
    ns: &str,
    resources: &[&str],
    total: usize,
) -> tokio::task::JoinHandle<(Option<Instant>, Instant)> {
    let apis: Vec<_> = resources.iter().map(|r| dyn_api(cp, ns, r)).collect();
    tokio::spawn(async move {
        let mut ready: HashSet<(usize, String)> = HashSet::new();
        let mut first: Option<Instant> = None;
        let streams = apis.into_iter().enumerate().map(|(i, api)| {
            watcher(api, watcher::Config::default())
                .applied_objects()
                .map_ok(move |o| (i, o))
                .boxed()
        });
        let mut all = futures::stream::select_all(streams);
        while let Ok(Some((i, obj))) = all.try_next().await {
            if condition(&obj, "Ready").is_some_and(|(st, _, _)| st == "True") {
                let name = obj.metadata.name.clone().unwrap_or_default();
                if ready.insert((i, name)) {
                    first.get_or_insert_with(Instant::now);
                    if ready.len() == total {
                        return (first, Instant::now());
                    }
                }
            }
        }
        (first, Instant::now())
    })
}

pub fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

pub struct Operated {
    pub op: Operator,
    pub admin: String,
}

pub async fn start_operator(cp: &ControlPlane, nats: &Nats, ns: &str, resync: &str) -> Operated {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into());
    let op = Operator::start_with_env(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns,
            "--resync-interval",
            resync,
            "--admin-address",
            &admin,
        ],
        &[("RUST_LOG", "warn"), ("JSO_CONCURRENCY", &concurrency)],
    )
    .await;
    wait_until(Duration::from_secs(60), "operator /metrics", || async {
        (!scrape(&admin).await.is_empty()).then_some(())
    })
    .await;
    Operated { op, admin }
}

/// Writes the apiserver has answered to Streams, Consumers, KeyValues, ObjectStores and Events (its own
/// `apiserver_request_total`): an oracle that counts any controller's writes alike.
pub async fn apiserver_writes(cp: &ControlPlane) -> f64 {
    let text = kubectl_ok(cp, &["get", "--raw", "/metrics"]);
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            ["POST", "PUT", "PATCH", "DELETE"]
                .iter()
                .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter(|l| {
            [
                "streams",
                "consumers",
                "keyvalues",
                "objectstores",
                "events",
            ]
            .iter()
            .any(|r| l.contains(&format!("resource=\"{r}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// JetStream API calls the account has served (`$JS.API.INFO`'s `api.total`): counts any
/// client's requests alike (this one's own INFO included, one per reading).
pub async fn account_api_calls(client: &async_nats::Client) -> f64 {
    let reply = client
        .request("$JS.API.INFO", "".into())
        .await
        .expect("account info");
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
    v["api"]["total"].as_f64().unwrap_or(0.0)
}
