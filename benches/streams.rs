//! `make bench`: applies N Streams at once to a local control plane and reports how the
//! operator converges (time to first and to all Ready), what it cost (Kubernetes writes,
//! JetStream requests, peak RSS), and what it does at rest over a few resync intervals.
//! A benchmark, not a test: it prints numbers. N from `BENCH_N` (default 1000).
//!
//! For reference it first measures the apiserver's write floor on the same machine: the
//! same N creates plus one status write each, made by this program directly.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::*;

const CONCURRENCY: usize = 64;

fn stream_obj(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": "Stream",
        "metadata": { "name": name },
        "spec": { "name": name, "subjects": [format!("{name}.>")], "storage": "memory" }
    }))
    .expect("static object")
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn sum_metric(text: &str, name: &str, label_filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// GET /metrics over plain HTTP/1.0 (empty on any failure).
async fn scrape(addr: &str) -> String {
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

struct Counts {
    writes: f64,
    status: f64,
    finalizer: f64,
    events: f64,
    js: f64,
    js_list: f64,
    js_info: f64,
}

fn counts(m: &str) -> Counts {
    Counts {
        writes: sum_metric(m, "jetstream_operator_kubernetes_writes_total", ""),
        status: sum_metric(
            m,
            "jetstream_operator_kubernetes_writes_total",
            "what=\"status\"",
        ),
        finalizer: sum_metric(
            m,
            "jetstream_operator_kubernetes_writes_total",
            "what=\"finalizer\"",
        ),
        events: sum_metric(
            m,
            "jetstream_operator_kubernetes_writes_total",
            "what=\"event\"",
        ),
        js: sum_metric(m, "jetstream_operator_jetstream_requests_total", ""),
        js_list: sum_metric(
            m,
            "jetstream_operator_jetstream_requests_total",
            "op=\"stream.list\"",
        ),
        js_info: sum_metric(
            m,
            "jetstream_operator_jetstream_requests_total",
            "op=\"stream.info\"",
        ),
    }
}

async fn create_all(api: &kube::Api<DynamicObject>, names: &[String]) {
    futures::stream::iter(names.iter().cloned())
        .map(|n| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &stream_obj(&n))
                    .await
                    .unwrap_or_else(|e| panic!("create {n}: {e}"));
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

/// N creates and N status writes, `CONCURRENCY` at a time.
async fn write_floor(floor_api: &kube::Api<DynamicObject>, names: &[String]) -> Duration {
    let t = Instant::now();
    create_all(floor_api, names).await;
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = floor_api.clone();
            async move {
                let body = json!({
                    "apiVersion": "jetstream.nats.io/v1beta2", "kind": "Stream",
                    "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True",
                        "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
                });
                api.patch_status(&name, &PatchParams::apply("bench").force(), &Patch::Apply(body))
                    .await
                    .unwrap_or_else(|e| panic!("status {name}: {e}"));
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let resync_secs: u64 = std::env::var("BENCH_RESYNC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rest_intervals: u64 = 3;
    println!(
        "== jetstream-operator benchmark: N={n} streams, resync {resync_secs}s, concurrency {}",
        std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into())
    );
    let cp = control_plane().await;
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();

    // 1. The floor: N creates + N status writes by this program, no operator. Run twice
    //    and report the second, so the apiserver is warm as it is for the operator.
    let mut floor = Duration::ZERO;
    for round in 0..2 {
        let floor_ns = TestNs::new(&format!("bench-floor{round}")).await;
        let floor_api = dyn_api(cp, floor_ns.name(), "streams");
        floor = write_floor(&floor_api, &names).await;
    }
    println!(
        "apiserver write floor: {n} creates + {n} status writes in {:.2}s",
        floor.as_secs_f64()
    );

    // 2. The operator.
    let ns = TestNs::new("bench").await;
    let nats = Nats::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let resync = format!("{resync_secs}s");
    // The operator's --concurrency (its default unless BENCH_CONCURRENCY is set).
    let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into());
    let op = Operator::start_with_env(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            &resync,
            "--admin-address",
            &admin,
        ],
        &[("RUST_LOG", "warn"), ("JSO_CONCURRENCY", &concurrency)],
    )
    .await;
    let pid = op.pid().expect("operator pid");
    wait_until(Duration::from_secs(60), "operator /metrics", || async {
        (!scrape(&admin).await.is_empty()).then_some(())
    })
    .await;
    let api = dyn_api(cp, ns.name(), "streams");
    let before = counts(&scrape(&admin).await);

    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let mut ready: HashSet<String> = HashSet::new();
        let mut first: Option<Instant> = None;
        let mut s =
            std::pin::pin!(watcher(watch_api, watcher::Config::default()).applied_objects());
        while let Ok(Some(obj)) = s.try_next().await {
            if condition(&obj, "Ready").is_some_and(|(st, _, _)| st == "True") {
                let name = obj.metadata.name.clone().unwrap_or_default();
                if ready.insert(name) {
                    first.get_or_insert_with(Instant::now);
                    if ready.len() == n {
                        return (first, Instant::now());
                    }
                }
            }
        }
        (first, Instant::now())
    });
    let t0 = Instant::now();
    create_all(&api, &names).await;
    let applied = t0.elapsed();
    let (first, all) = tokio::time::timeout(Duration::from_secs(1800), watch)
        .await
        .expect("all Ready within 30 minutes")
        .expect("watch task");
    let to_all = all.duration_since(t0);
    let to_first = first.map(|f| f.duration_since(t0)).unwrap_or_default();
    let after = counts(&scrape(&admin).await);
    let peak = rss_kib(pid, "VmHWM:");
    let js_streams = {
        let js = nats.jetstream().await;
        js.stream_names().count().await
    };

    println!(
        "applied {n} Streams in {:.2}s (kubectl-equivalent creates, {CONCURRENCY} at a time)",
        applied.as_secs_f64()
    );
    println!(
        "first Ready after {:.2}s; all {n} Ready after {:.2}s ({:.1}x the write floor)",
        to_first.as_secs_f64(),
        to_all.as_secs_f64(),
        to_all.as_secs_f64() / floor.as_secs_f64().max(0.001)
    );
    println!("JetStream holds {js_streams} streams");
    println!(
        "converging: {} Kubernetes writes ({} status, {} finalizer, {} event) = {:.2}/object; {} JetStream requests = {:.2}/object",
        after.writes - before.writes,
        after.status - before.status,
        after.finalizer - before.finalizer,
        after.events - before.events,
        (after.writes - before.writes) / n as f64,
        after.js - before.js,
        (after.js - before.js) / n as f64
    );
    println!("operator peak RSS {:.1} MiB", peak as f64 / 1024.0);

    // 3. At rest.
    let rest_start = counts(&scrape(&admin).await);
    let t = Instant::now();
    let rest = Duration::from_secs(resync_secs * rest_intervals + resync_secs / 2);
    // A benchmark observes a window of time at rest; this is the one deliberate sleep.
    tokio::time::sleep(rest.saturating_sub(t.elapsed())).await;
    let rest_end = counts(&scrape(&admin).await);
    let pages = n.div_ceil(256);
    println!(
        "at rest over {rest_intervals} resync intervals: {} Kubernetes writes; {} JetStream requests ({} stream.list, {} stream.info); expected about {} list requests per resync ({} pages of 256)",
        rest_end.writes - rest_start.writes,
        rest_end.js - rest_start.js,
        rest_end.js_list - rest_start.js_list,
        rest_end.js_info - rest_start.js_info,
        pages,
        pages
    );
    println!(
        "operator RSS at rest {:.1} MiB (peak {:.1} MiB)",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    drop(op);
    drop(nats);
}
