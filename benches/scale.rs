//! `make bench`: N Streams + N Consumers (consumer i on stream i) on a local control plane
//! and nats-server, and what the operator does with them. A benchmark, not a test: it
//! prints numbers, in one table at the end. N from `BENCH_N` (default 1000), resync from
//! `BENCH_RESYNC` seconds (default 10), drift samples from `BENCH_SAMPLES` (default 20).
//!
//! Scenarios:
//! 1. floors: the apiserver's (N creates + N status writes by this program) and a plain
//!    NATS client's (N stream + N consumer creates);
//! 2. created while running: the operator runs, all 2N objects are created at once;
//! 3. at rest over three resync intervals;
//! 4. drift: streams and consumers deleted, edited and paused through the NATS API, time
//!    until the server holds the declared asset again (p50, p99);
//! 5. restart: the operator started again on the 2N Ready objects;
//! 6. first start: 2N objects created while no operator runs, then the operator starts.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{FutureExt, StreamExt};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;
use support::*;

fn stream_obj(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": "Stream",
        "metadata": { "name": name },
        "spec": { "name": name, "subjects": [format!("{name}.>")], "storage": "memory",
                  "description": "declared" }
    }))
    .expect("static object")
}

fn consumer_obj(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": "Consumer",
        "metadata": { "name": name },
        "spec": { "streamName": name, "durableName": name, "ackPolicy": "explicit",
                  "maxAckPending": 100, "description": "declared" }
    }))
    .expect("static object")
}

/// N creates and N status writes, `CONCURRENCY` at a time.
async fn write_floor(floor_api: &kube::Api<DynamicObject>, names: &[String]) -> Duration {
    let t = Instant::now();
    create_all(floor_api, names.iter().map(|n| stream_obj(n)).collect()).await;
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = floor_api.clone();
            async move {
                let body = json!({
                    "apiVersion": "jetstream.nats.io/v1beta2", "kind": "Stream",
                    "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True",
                        "reason": "Created", "message": "", "lastTransitionTime": "2026-01-01T00:00:00.000000Z"}]}
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

/// N streams and N consumers created by a plain client, `CONCURRENCY` at a time.
async fn nats_floor(js: &async_nats::jetstream::Context, names: &[String]) -> Duration {
    use async_nats::jetstream::{consumer, stream};
    let t = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let js = js.clone();
            async move {
                let s = js
                    .create_stream(stream::Config {
                        name: format!("floor-{name}"),
                        subjects: vec![format!("floor-{name}.>")],
                        storage: stream::StorageType::Memory,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("floor stream {name}: {e}"));
                s.create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    max_ack_pending: 100,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("floor consumer {name}: {e}"));
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    t.elapsed()
}

/// One drift kind: `samples` times, change a random declared asset behind the operator's
/// back and measure until the server holds it as declared again.
async fn drift<F, Fut, C, CFut>(
    samples: usize,
    n: usize,
    seed: &mut u64,
    mut change: F,
    mut repaired: C,
) -> Vec<Duration>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
    C: FnMut(String) -> CFut,
    CFut: std::future::Future<Output = bool>,
{
    let mut out = Vec::new();
    for _ in 0..samples {
        // xorshift: a fixed sequence, so runs are comparable.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let name = format!("bench-{:05}", (*seed as usize) % n);
        change(name.clone()).await;
        let t = Instant::now();
        loop {
            if repaired(name.clone()).await {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                panic!("{name} not repaired within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        out.push(t.elapsed());
    }
    out
}

/// NACK's jetstream-controller (control-loop mode) on `ns`, as its chart runs it.
fn start_nack(cp: &ControlPlane, nats: &Nats, ns: &str, log: &std::path::Path) -> Background {
    let exe =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/nack-jetstream-controller");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--control-loop",
        "-s",
        nats.url(),
        "--namespace",
        ns,
        "--health-probe-bind-address",
        &format!("127.0.0.1:{port}"),
    ])
    .env("KUBECONFIG", &cp.kubeconfig);
    Background::spawn("nack", cmd, log)
}

/// NACK's run of the same scenarios: created while running, restart, first start.
async fn nack_rows(cp: &ControlPlane, names: &[String], ours: &Ours) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let exe =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/nack-jetstream-controller");
    if !exe.exists() {
        rows.push((
            "NACK".into(),
            "not installed: run scripts/install-nack (make bench does)".into(),
        ));
        return rows;
    }
    let n = names.len();
    let objs = (2 * n) as f64;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("nack.log");

    // Created while running.
    let ns = TestNs::new("bench-nack").await;
    let nats = Nats::start().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut nack = start_nack(cp, &nats, ns.name(), &log);
    let pid = nack.pid().expect("nack pid");
    let (w0, a0) = (apiserver_writes(cp).await, account_api_calls(&client).await);
    let watch = watch_ready(cp, ns.name(), n);
    let t0 = Instant::now();
    let (s_api, c_api) = (
        dyn_api(cp, ns.name(), "streams"),
        dyn_api(cp, ns.name(), "consumers"),
    );
    futures::join!(
        create_all(&s_api, names.iter().map(|n| stream_obj(n)).collect()),
        create_all(&c_api, names.iter().map(|n| consumer_obj(n)).collect()),
    );
    let done = tokio::time::timeout(Duration::from_secs(3600), watch).await;
    let Ok(Ok((_, last))) = done else {
        rows.push((
            "NACK created while running".into(),
            "not all Ready within an hour".into(),
        ));
        return rows;
    };
    if let Some(status) = nack.exited() {
        rows.push((
            "NACK".into(),
            format!("exited: {status}; log {}", log.display()),
        ));
        return rows;
    }
    let all = last.duration_since(t0);
    let (w1, a1) = (apiserver_writes(cp).await, account_api_calls(&client).await);
    rows.push((
        "NACK created while running: all Ready".into(),
        format!(
            "{:.2} s (ours {:.1}x faster)",
            all.as_secs_f64(),
            all.as_secs_f64() / ours.created.as_secs_f64().max(0.001)
        ),
    ));
    rows.push((
        "NACK created while running: Kubernetes writes / JetStream requests per object".into(),
        format!(
            "{:.2} / {:.2}",
            (w1 - w0 - objs) / objs,
            (a1 - a0 - 1.0) / objs
        ),
    ));
    rows.push((
        "NACK created while running: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));
    drop(nack);

    // Restart: NACK leaves an unchanged status alone, so its re-verification is seen on
    // the server: every object needs at least one JetStream API call.
    let a0 = account_api_calls(&client).await;
    let t0 = Instant::now();
    let nack = start_nack(cp, &nats, ns.name(), &log);
    let pid = nack.pid().expect("nack pid");
    let mut verified = None;
    while t0.elapsed() < Duration::from_secs(600) {
        if account_api_calls(&client).await - a0 >= objs {
            verified = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rows.push((
        "NACK restart: every object re-verified (2N JetStream API calls) after".into(),
        match verified {
            Some(d) => format!(
                "{:.2} s (ours {:.1}x faster)",
                d.as_secs_f64(),
                d.as_secs_f64() / ours.restart.as_secs_f64().max(0.001)
            ),
            None => "not within 600 s".into(),
        },
    ));
    rows.push((
        "NACK restart: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));
    drop(nack);

    // First start.
    let cold = TestNs::new("bench-nack-cold").await;
    let cold_nats = Nats::start().await;
    let (s_api, c_api) = (
        dyn_api(cp, cold.name(), "streams"),
        dyn_api(cp, cold.name(), "consumers"),
    );
    futures::join!(
        create_all(&s_api, names.iter().map(|n| stream_obj(n)).collect()),
        create_all(&c_api, names.iter().map(|n| consumer_obj(n)).collect()),
    );
    let watch = watch_ready(cp, cold.name(), n);
    let t0 = Instant::now();
    let nack = start_nack(cp, &cold_nats, cold.name(), &log);
    let pid = nack.pid().expect("nack pid");
    match tokio::time::timeout(Duration::from_secs(3600), watch).await {
        Ok(Ok((_, last))) => {
            let d = last.duration_since(t0);
            rows.push((
                "NACK first start: all Ready after".into(),
                format!(
                    "{:.2} s (ours {:.1}x faster)",
                    d.as_secs_f64(),
                    d.as_secs_f64() / ours.first_start.as_secs_f64().max(0.001)
                ),
            ));
        }
        _ => rows.push((
            "NACK first start".into(),
            "not all Ready within an hour".into(),
        )),
    }
    rows.push((
        "NACK first start: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));
    drop(nack);
    rows
}

/// Our times, for the ratios.
struct Ours {
    created: Duration,
    restart: Duration,
    first_start: Duration,
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("BENCH_N", 1000) as usize;
    let resync_secs = env("BENCH_RESYNC", 10);
    let samples = env("BENCH_SAMPLES", 20) as usize;
    let rest_intervals: u64 = 3;
    let resync = format!("{resync_secs}s");
    println!("== jetstream-operator benchmark: N={n} streams + N consumers, resync {resync}");
    let cp = control_plane().await;
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Floors (the apiserver's twice, reporting the warm second run).
    let mut floor = Duration::ZERO;
    for round in 0..2 {
        let floor_ns = TestNs::new(&format!("bench-floor{round}")).await;
        floor = write_floor(&dyn_api(cp, floor_ns.name(), "streams"), &names).await;
    }
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let nats_floor = nats_floor(&js, &names).await;
    for name in &names {
        let _ = js.delete_stream(format!("floor-{name}")).await;
    }
    rows.push((
        "apiserver floor: N creates + N status writes".into(),
        format!("{:.2} s", floor.as_secs_f64()),
    ));
    rows.push((
        "plain NATS client floor: N stream + N consumer creates".into(),
        format!("{:.2} s", nats_floor.as_secs_f64()),
    ));

    // 2. Created while running.
    let ns = TestNs::new("bench").await;
    let run = start_operator(cp, &nats, ns.name(), &resync).await;
    let pid = run.op.pid().expect("operator pid");
    let before_text = scrape(&run.admin).await;
    let before = counts(&before_text);
    let watch = watch_ready(cp, ns.name(), n);
    let t0 = Instant::now();
    let streams_api = dyn_api(cp, ns.name(), "streams");
    let consumers_api = dyn_api(cp, ns.name(), "consumers");
    futures::join!(
        create_all(&streams_api, names.iter().map(|n| stream_obj(n)).collect()),
        create_all(
            &consumers_api,
            names.iter().map(|n| consumer_obj(n)).collect()
        ),
    );
    let applied = t0.elapsed();
    let (first, last) = tokio::time::timeout(Duration::from_secs(3600), watch)
        .await
        .expect("all Ready within an hour")
        .expect("watch task");
    let ours_created = last.duration_since(t0);
    let after_text = scrape(&run.admin).await;
    let spent = counts(&after_text) - before;
    let objs = (2 * n) as f64;
    rows.push((
        "created while running: applied in".into(),
        format!("{:.2} s", applied.as_secs_f64()),
    ));
    rows.push((
        "created while running: first / all Ready".into(),
        first_and_all(first, last, t0),
    ));
    rows.push((
        "created while running: Kubernetes writes / JetStream requests per object".into(),
        format!(
            "{:.2} / {:.2} ({})",
            spent.writes / objs,
            spent.js / objs,
            ops_between(&before_text, &after_text)
        ),
    ));
    rows.push((
        "created while running: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));

    // 3. At rest.
    let m0 = scrape(&run.admin).await;
    let rest_start = counts(&m0);
    let rest = Duration::from_secs(resync_secs * rest_intervals + resync_secs / 2);
    // A benchmark observes a window of time at rest; this is the one deliberate sleep.
    tokio::time::sleep(rest).await;
    let m1 = scrape(&run.admin).await;
    let at_rest = counts(&m1) - rest_start;
    rows.push((
        format!("at rest, {rest_intervals} resyncs: Kubernetes writes"),
        format!("{}", at_rest.writes),
    ));
    rows.push((
        format!("at rest, {rest_intervals} resyncs: JetStream requests per resync"),
        format!(
            "{:.1} ({})",
            at_rest.js / rest_intervals as f64,
            ops_between(&m0, &m1)
        ),
    ));
    rows.push((
        "at rest: RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmRSS:") as f64 / 1024.0),
    ));

    // 4. Drift repair.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let request = |subject: String, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let reply = client
                .request(subject.clone(), body.to_string().into())
                .await
                .unwrap_or_else(|e| panic!("{subject}: {e}"));
            serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap_or_default()
        }
    };
    let info = |what: String| request(format!("$JS.API.{what}"), json!({}));
    let mut stream_delete = drift(
        samples,
        n,
        &mut seed,
        |name| request(format!("$JS.API.STREAM.DELETE.{name}"), json!({})).map(|_| ()),
        |name| info(format!("STREAM.INFO.{name}")).map(|v| v.get("error").is_none()),
    )
    .await;
    // Wait for the consumers of the recreated streams too, before the next kind.
    let settle = |name: String| info(format!("CONSUMER.INFO.{name}.{name}"));
    for _ in 0..2000 {
        let mut missing = 0;
        for i in 0..n.min(2000) {
            if settle(format!("bench-{i:05}")).await.get("error").is_some() {
                missing += 1;
            }
        }
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stream_edit = drift(
        samples,
        n,
        &mut seed,
        |name| async move {
            let mut cfg = info(format!("STREAM.INFO.{name}")).await["config"].clone();
            cfg["description"] = json!("edited out of band");
            request(format!("$JS.API.STREAM.UPDATE.{name}"), cfg).await;
        },
        |name| {
            info(format!("STREAM.INFO.{name}"))
                .map(|v| v["config"]["description"] == json!("declared"))
        },
    )
    .await;
    let mut consumer_delete = drift(
        samples,
        n,
        &mut seed,
        |name| request(format!("$JS.API.CONSUMER.DELETE.{name}.{name}"), json!({})).map(|_| ()),
        |name| info(format!("CONSUMER.INFO.{name}.{name}")).map(|v| v.get("error").is_none()),
    )
    .await;
    let mut consumer_edit = drift(
        samples,
        n,
        &mut seed,
        |name| async move {
            let mut cfg = info(format!("CONSUMER.INFO.{name}.{name}")).await["config"].clone();
            cfg["description"] = json!("edited out of band");
            request(
                format!("$JS.API.CONSUMER.CREATE.{name}.{name}"),
                json!({"stream_name": name, "config": cfg, "action": "update"}),
            )
            .await;
        },
        |name| {
            info(format!("CONSUMER.INFO.{name}.{name}"))
                .map(|v| v["config"]["description"] == json!("declared"))
        },
    )
    .await;
    let mut consumer_pause = drift(
        samples,
        n,
        &mut seed,
        |name| {
            request(
                format!("$JS.API.CONSUMER.PAUSE.{name}.{name}"),
                json!({"pause_until": "2999-01-01T00:00:00Z"}),
            )
            .map(|_| ())
        },
        |name| {
            info(format!("CONSUMER.INFO.{name}.{name}"))
                .map(|v| v.get("paused").and_then(|p| p.as_bool()) != Some(true))
        },
    )
    .await;
    for (what, s) in [
        ("stream deleted", &mut stream_delete),
        ("stream edited", &mut stream_edit),
        ("consumer deleted", &mut consumer_delete),
        ("consumer edited", &mut consumer_edit),
        ("consumer paused", &mut consumer_pause),
    ] {
        rows.push((
            format!("drift repair, {what}: p50 / p99 ({samples} samples)"),
            format!("{:.1} ms / {:.1} ms", pct(s, 0.5), pct(s, 0.99)),
        ));
    }
    drop(run);

    // 5. Restart: the same 2N objects, Ready, the operator started again (an upgrade, a
    //    node drain): time until it has verified every object against the server.
    let m_before = String::new();
    let t0 = Instant::now();
    let run = start_operator(cp, &nats, ns.name(), &resync).await;
    let pid = run.op.pid().expect("operator pid");
    let restarted = loop {
        let m = scrape(&run.admin).await;
        if sum_metric(&m, "jetstream_operator_ready_objects", "") >= objs {
            break m;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            panic!("not every object verified within an hour after the restart");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let verified = t0.elapsed();
    let ours_restart = verified;
    let spent = counts(&restarted);
    rows.push((
        "restart: every object verified Ready after".into(),
        format!("{:.2} s", verified.as_secs_f64()),
    ));
    rows.push((
        "restart: Kubernetes writes / JetStream requests per object".into(),
        format!(
            "{:.2} / {:.2} ({})",
            spent.writes / objs,
            spent.js / objs,
            ops_between(&m_before, &restarted)
        ),
    ));
    rows.push((
        "restart: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));
    drop(run);

    // 6. First start: the objects were declared before any operator ran.
    let cold = TestNs::new("bench-cold").await;
    let cold_streams = dyn_api(cp, cold.name(), "streams");
    let cold_consumers = dyn_api(cp, cold.name(), "consumers");
    // Another server, so the streams' names are free.
    let cold_nats = Nats::start().await;
    futures::join!(
        create_all(&cold_streams, names.iter().map(|n| stream_obj(n)).collect()),
        create_all(
            &cold_consumers,
            names.iter().map(|n| consumer_obj(n)).collect()
        ),
    );
    let watch = watch_ready(cp, cold.name(), n);
    let t0 = Instant::now();
    let run = start_operator(cp, &cold_nats, cold.name(), &resync).await;
    let pid = run.op.pid().expect("operator pid");
    let (first, last) = tokio::time::timeout(Duration::from_secs(3600), watch)
        .await
        .expect("all Ready within an hour")
        .expect("watch task");
    let ours_first_start = last.duration_since(t0);
    let cold_text = scrape(&run.admin).await;
    let spent = counts(&cold_text);
    rows.push((
        "first start: first / all Ready after the operator started".into(),
        first_and_all(first, last, t0),
    ));
    rows.push((
        "first start: Kubernetes writes / JetStream requests per object".into(),
        format!(
            "{:.2} / {:.2} ({})",
            spent.writes / objs,
            spent.js / objs,
            ops_between("", &cold_text)
        ),
    ));
    rows.push((
        "first start: peak RSS".into(),
        format!("{:.1} MiB", rss_kib(pid, "VmHWM:") as f64 / 1024.0),
    ));
    drop(run);

    // 7. NACK, the same scenarios (built by scripts/install-nack).
    if std::env::var("BENCH_NACK").map_or(true, |v| v != "0") {
        let ours = Ours {
            created: ours_created,
            restart: ours_restart,
            first_start: ours_first_start,
        };
        rows.extend(nack_rows(cp, &names, &ours).await);
    }

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("\n| {:width$} | result |", "measure");
    println!("|{}|--------|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
}
