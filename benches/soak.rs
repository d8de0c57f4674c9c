//! `make soak`: an hour at rest. 2,000 objects (35% Streams, 35% Consumers, 15% KeyValues,
//! 15% ObjectStores) are created and left alone for `SOAK_SECS` (default 3600) with the
//! operator's resync at `SOAK_RESYNC` seconds (default 10). Every `SOAK_SAMPLE` seconds
//! (default 60) it prints the operator's RSS and what it sent. At the end it checks:
//! - 0 Kubernetes writes to the objects and their Events (the apiserver's own counter, and
//!   the operator's);
//! - RSS flat: the last sample within 5% of the one after `SOAK_WARMUP` seconds at rest
//!   (default 600: code and allocator pools that only periodic work touches, such as watch
//!   restarts and the consumer sweep, are in by then; the growth since the first sample is
//!   printed too);
//! - JetStream requests per resync within the budget: one stream listing page per 256
//!   streams, plus the consumer sweep's slice (the streams with consumers / 200), +10% for
//!   the resync jitter (the account's own API counter, and the operator's);
//! - no ERROR or WARN line in the operator's log after the objects are Ready.
//!
//! Not a test: not in `make test`. It exits non-zero when a check fails.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use serde_json::json;

use common::*;
use support::*;

fn object(kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("static object")
}

fn log_problems(op: &Operator) -> Vec<String> {
    std::fs::read_to_string(op.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let total = env("SOAK_OBJECTS", 2000) as usize;
    let soak = Duration::from_secs(env("SOAK_SECS", 3600));
    let resync_secs = env("SOAK_RESYNC", 10);
    let sample = Duration::from_secs(env("SOAK_SAMPLE", 60));
    let warmup = Duration::from_secs(env("SOAK_WARMUP", 600));
    let streams = total * 35 / 100;
    let consumers = streams;
    let kvs = total * 15 / 100;
    let objs = total - streams - consumers - kvs;
    println!(
        "== jetstream-operator soak: {streams} Streams, {consumers} Consumers, {kvs} KeyValues, \
         {objs} ObjectStores; {} s at rest, resync {resync_secs} s",
        soak.as_secs()
    );

    let cp = control_plane().await;
    let nats = Nats::start().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let ns = TestNs::new("soak").await;
    let run = start_operator(cp, &nats, ns.name(), &format!("{resync_secs}s")).await;
    let pid = run.op.pid().expect("operator pid");

    let watch = watch_ready_of(
        cp,
        ns.name(),
        &["streams", "consumers", "keyvalues", "objectstores"],
        total,
    );
    let t0 = Instant::now();
    let stream_objs = (0..streams)
        .map(|i| {
            let n = format!("soak-{i:05}");
            object(
                "Stream",
                &n,
                json!({ "name": n, "subjects": [format!("{n}.>")], "storage": "memory",
                        "description": "soak" }),
            )
        })
        .collect();
    let consumer_objs = (0..consumers)
        .map(|i| {
            let n = format!("soak-{i:05}");
            object(
                "Consumer",
                &n,
                json!({ "streamName": n, "durableName": n, "ackPolicy": "explicit",
                        "description": "soak" }),
            )
        })
        .collect();
    let kv_objs = (0..kvs)
        .map(|i| {
            let n = format!("soak-kv-{i:05}");
            object(
                "KeyValue",
                &n,
                json!({ "bucket": n, "history": 3, "storage": "memory" }),
            )
        })
        .collect();
    let os_objs = (0..objs)
        .map(|i| {
            let n = format!("soak-os-{i:05}");
            object(
                "ObjectStore",
                &n,
                json!({ "bucket": n, "storage": "memory" }),
            )
        })
        .collect();
    let apis =
        ["streams", "consumers", "keyvalues", "objectstores"].map(|r| dyn_api(cp, ns.name(), r));
    futures::join!(
        create_all(&apis[0], stream_objs),
        create_all(&apis[1], consumer_objs),
        create_all(&apis[2], kv_objs),
        create_all(&apis[3], os_objs),
    );
    let (_, last) = tokio::time::timeout(Duration::from_secs(1800), watch)
        .await
        .expect("all Ready within 30 minutes")
        .expect("watch task");
    println!(
        "all {total} Ready in {:.1} s",
        last.duration_since(t0).as_secs_f64()
    );
    let converging = log_problems(&run.op);
    let converge_problems = converging.len();
    for p in converging.iter().take(5) {
        println!("  while converging: {p}");
    }

    // Let the last status writes and their events land, then take the baseline.
    // A soak observes a window of time at rest: the sleeps here are the measurement.
    tokio::time::sleep(Duration::from_secs(3 * resync_secs)).await;
    let m0 = scrape(&run.admin).await;
    let c0 = counts(&m0);
    let w0 = apiserver_writes(cp).await;
    let a0 = account_api_calls(&client).await;
    let rss0 = rss_kib(pid, "VmRSS:");
    let start = Instant::now();
    let mut rss: Vec<(Duration, u64)> = vec![(Duration::ZERO, rss0)];
    let mut readings = 1.0;
    println!("   t(s)  RSS(MiB)  k8s-writes  js-requests  account-api-calls  log-problems");
    println!(
        "{:>7} {:>9.1} {:>11} {:>12} {:>18} {:>13}",
        0,
        rss0 as f64 / 1024.0,
        0,
        0,
        0,
        0
    );
    while start.elapsed() < soak {
        tokio::time::sleep(sample.min(soak.saturating_sub(start.elapsed()))).await;
        let c = counts(&scrape(&run.admin).await) - c0;
        let a = account_api_calls(&client).await - a0 - readings;
        readings += 1.0;
        let r = rss_kib(pid, "VmRSS:");
        rss.push((start.elapsed(), r));
        println!(
            "{:>7} {:>9.1} {:>11} {:>12} {:>18} {:>13}",
            start.elapsed().as_secs(),
            r as f64 / 1024.0,
            c.writes,
            c.js,
            a,
            log_problems(&run.op).len() - converge_problems
        );
    }
    let elapsed = start.elapsed();
    let m1 = scrape(&run.admin).await;
    let spent = counts(&m1) - c0;
    let apiserver = apiserver_writes(cp).await - w0;
    let account = account_api_calls(&client).await - a0 - readings;
    let problems: Vec<String> = log_problems(&run.op)
        .into_iter()
        .skip(converge_problems)
        .collect();

    let resyncs = elapsed.as_secs_f64() / resync_secs as f64;
    let all_streams = streams + kvs + objs;
    let budget = (all_streams.div_ceil(256) + streams.div_ceil(200)) as f64;
    let per_resync = spent.js / resyncs;
    let account_per_resync = account / resyncs;
    let first = rss0 as f64;
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= warmup)
        .map_or(first, |(_, r)| *r as f64);
    let last_rss = rss.last().map_or(first, |(_, r)| *r as f64);
    let max_rss = rss.iter().map(|(_, r)| *r).max().unwrap_or(0) as f64;
    let growth = (last_rss - warm) / warm * 100.0;
    let growth_all = (last_rss - first) / first * 100.0;

    println!();
    println!(
        "== soak: {:.0} s at rest, {resyncs:.0} resyncs",
        elapsed.as_secs_f64()
    );
    println!("requests by operation: {}", ops_between(&m0, &m1));
    println!(
        "log lines ERROR/WARN while converging (not checked): {converge_problems}; at rest: {}",
        problems.len()
    );
    for p in problems.iter().take(10) {
        println!("  {p}");
    }
    let checks = [
        (
            format!(
                "Kubernetes writes at rest: apiserver {apiserver}, operator {}",
                spent.writes
            ),
            apiserver == 0.0 && spent.writes == 0.0,
        ),
        (
            format!(
                "RSS: after {} s at rest {:.1} MiB, last {:.1} MiB ({growth:+.2}%); first {:.1} MiB \
                 ({growth_all:+.2}% since), max {:.1} MiB, peak (VmHWM) {:.1} MiB, heap (RssAnon) {:.1} MiB",
                warmup.as_secs(),
                warm / 1024.0,
                last_rss / 1024.0,
                first / 1024.0,
                max_rss / 1024.0,
                rss_kib(pid, "VmHWM:") as f64 / 1024.0,
                rss_kib(pid, "RssAnon:") as f64 / 1024.0
            ),
            growth < 5.0,
        ),
        (
            format!(
                "JetStream requests per resync: operator {per_resync:.2}, account {account_per_resync:.2}, \
                 budget {budget} (+10% jitter)"
            ),
            per_resync <= budget * 1.1 && account_per_resync <= budget * 1.1,
        ),
        (
            format!("ERROR/WARN log lines at rest: {}", problems.len()),
            problems.is_empty(),
        ),
    ];
    let mut failed = false;
    for (what, ok) in &checks {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
        failed |= !ok;
    }
    drop(run);
    if failed {
        std::process::exit(1);
    }
}
