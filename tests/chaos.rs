//! A rollout under faults. Streams, Consumers, KeyValues and ObjectStores are created in
//! waves while faults hit every part at seeded random moments:
//!
//! - phase 1, one operator replica: kube-apiserver restarted, etcd paused (SIGSTOP/SIGCONT),
//!   nats-server SIGKILLed and restarted on its store, the operator SIGKILLed and restarted;
//! - phase 2, two replicas under leader election: the leader SIGKILLed and restarted,
//!   nats-server SIGKILLed, the operators' NATS connections cut (a loopback proxy between
//!   them and the server stops moving bytes, then drops them), a Stream object deleted and
//!   created again under the same name;
//! - in both, streams and consumers deleted and edited behind the operator's back.
//!
//! Then, with the faults over: every object Ready within 60 s; the server holds exactly the
//! declared assets (no missing, no extra), with the declared values field by field; streams
//! declared before the faults still hold their messages and their creation time (nothing
//! recreated that was not deleted); no operator process exited except the ones killed. It
//! prints the seed, the fault timeline and how long each fault left objects not Ready.
//!
//! `make test` runs a short version. `make chaos` runs it at size (500 Streams, 500
//! Consumers, 50 KeyValues, 20 ObjectStores; 5 nats-server and 5 operator kills) three times
//! with different seeds. `JSO_CHAOS_SEED` replays a run.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Every object Ready again this long after the last fault.
const SETTLE: Duration = Duration::from_secs(60);
/// Messages published to each stream declared before the faults.
const MESSAGES: usize = 3;

struct Size {
    streams: usize,
    kvs: usize,
    objs: usize,
    nats_kills: usize,
    op_kills: usize,
    etcd_pause: Duration,
    cut: Duration,
    out_of_band: usize,
}

fn size() -> Size {
    if std::env::var("JSO_CHAOS_FULL").is_ok_and(|v| v == "1") {
        Size {
            streams: 500,
            kvs: 50,
            objs: 20,
            nats_kills: 5,
            op_kills: 5,
            etcd_pause: Duration::from_secs(10),
            cut: Duration::from_secs(20),
            out_of_band: 12,
        }
    } else {
        Size {
            streams: 30,
            kvs: 4,
            objs: 2,
            nats_kills: 2,
            op_kills: 2,
            etcd_pause: Duration::from_secs(4),
            cut: Duration::from_secs(6),
            out_of_band: 4,
        }
    }
}

// ---------------------------------------------------------------------------------------
// A loopback TCP proxy that can cut its connections

/// Forwards `listen` to `target`. While cut, open connections move no bytes (a partition:
/// no FIN, no RST) and new ones are accepted but not forwarded; when the cut ends they are
/// all closed, and new connections are forwarded again.
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, state) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Self::forward(conn, target, state.clone()));
            }
        });
        Proxy { addr, cut, task }
    }

    async fn forward(mut a: TcpStream, target: SocketAddr, mut state: watch::Receiver<bool>) {
        if *state.borrow() {
            let _ = state.wait_for(|c| !*c).await;
            return;
        }
        let Ok(mut b) = TcpStream::connect(target).await else {
            return;
        };
        let cut = {
            let mut watching = state.clone();
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => false,
                _ = watching.wait_for(|c| *c) => true,
            }
        };
        if cut {
            // Partitioned: both ends stay open and silent until the cut ends.
            let _ = state.wait_for(|c| !*c).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The declared objects

fn stream_obj(name: &str) -> DynamicObject {
    obj(
        "Stream",
        name,
        json!({
            "name": name, "subjects": [format!("{name}.>")], "description": format!("declared {name}"),
            "maxMsgs": 1000, "maxAge": "24h", "duplicateWindow": "30s",
        }),
    )
}

fn consumer_obj(name: &str) -> DynamicObject {
    obj(
        "Consumer",
        name,
        json!({
            "streamName": name, "durableName": name, "ackPolicy": "explicit",
            "maxAckPending": 100, "description": format!("declared {name}"),
            "filterSubject": format!("{name}.a"),
        }),
    )
}

fn kv_obj(name: &str) -> DynamicObject {
    obj(
        "KeyValue",
        name,
        json!({ "bucket": name, "history": 5, "description": format!("declared {name}"),
                "maxValueSize": 4096 }),
    )
}

fn os_obj(name: &str) -> DynamicObject {
    obj(
        "ObjectStore",
        name,
        json!({ "bucket": name, "description": format!("declared {name}") }),
    )
}

fn obj(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("static object")
}

const KINDS: [&str; 4] = ["streams", "consumers", "keyvalues", "objectstores"];

/// Creates the objects, retrying through apiserver and etcd faults (an object that exists
/// already counts as created).
async fn create(api: &kube::Api<DynamicObject>, objs: Vec<DynamicObject>) {
    futures::stream::iter(objs)
        .for_each_concurrent(16, |o| {
            let api = api.clone();
            async move {
                let name = o.metadata.name.clone().unwrap_or_default();
                wait_until(Duration::from_secs(120), &format!("create {name}"), || {
                    let (api, o) = (api.clone(), o.clone());
                    async move {
                        match api.create(&PostParams::default(), &o).await {
                            Ok(_) => Some(()),
                            Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                            Err(_) => None,
                        }
                    }
                })
                .await;
            }
        })
        .await;
}

// ---------------------------------------------------------------------------------------
// Faults and how long objects were not Ready

#[derive(Clone)]
struct FaultRecord {
    what: String,
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct Timeline {
    faults: Vec<FaultRecord>,
    /// (fault index or None, object, not-Ready duration)
    not_ready: Vec<(Option<usize>, String, Duration)>,
}

/// Watches every kind in `ns`: each time an object that was Ready stops being Ready, the
/// interval until it is Ready again is charged to the last fault that began before it.
fn track_not_ready(
    cp: &ControlPlane,
    ns: &str,
    timeline: Arc<Mutex<Timeline>>,
) -> tokio::task::JoinHandle<()> {
    let apis: Vec<_> = KINDS.iter().map(|k| (*k, dyn_api(cp, ns, k))).collect();
    tokio::spawn(async move {
        let streams = apis.into_iter().map(|(kind, api)| {
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .map_ok(move |o| (kind, o))
                .boxed()
        });
        let mut all = futures::stream::select_all(streams);
        // object -> (was Ready once, not Ready since)
        let mut state: HashMap<String, (bool, Option<Instant>)> = HashMap::new();
        while let Some(item) = all.next().await {
            let Ok((kind, o)) = item else { continue };
            let key = format!("{kind}/{}", o.metadata.name.clone().unwrap_or_default());
            let ready = condition(&o, "Ready").is_some_and(|(s, _, _)| s == "True")
                && status_is_current(&o);
            let entry = state.entry(key.clone()).or_insert((false, None));
            match (ready, entry.0, entry.1) {
                (true, _, Some(since)) => {
                    let now = Instant::now();
                    let mut t = timeline.lock().expect("timeline");
                    let fault = t.faults.iter().rposition(|f| f.start <= since);
                    t.not_ready.push((fault, key, now - since));
                    *entry = (true, None);
                }
                (true, _, None) => entry.0 = true,
                (false, true, None) => entry.1 = Some(Instant::now()),
                _ => {}
            }
        }
    })
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

// ---------------------------------------------------------------------------------------
// The oracle: a plain NATS client straight to the server

async fn request(client: &async_nats::Client, subject: String, body: Value) -> Value {
    for _ in 0..50 {
        if let Ok(Ok(reply)) = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject.clone(), body.to_string().into()),
        )
        .await
        {
            return serde_json::from_slice(&reply.payload).unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{subject}: no answer from nats-server");
}

async fn stream_info(client: &async_nats::Client, name: &str) -> Value {
    request(client, format!("$JS.API.STREAM.INFO.{name}"), json!({})).await
}

async fn consumer_names(client: &async_nats::Client, stream: &str) -> BTreeSet<String> {
    let v = request(
        client,
        format!("$JS.API.CONSUMER.NAMES.{stream}"),
        json!({}),
    )
    .await;
    v["consumers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn all_stream_names(client: &async_nats::Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    loop {
        let v = request(
            client,
            "$JS.API.STREAM.NAMES".into(),
            json!({"offset": out.len()}),
        )
        .await;
        let page: Vec<String> = v["streams"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
        if out.len() as u64 >= v["total"].as_u64().unwrap_or(0) {
            return out;
        }
    }
}

/// What out-of-band changes deleted, and a line on each change.
#[derive(Default)]
struct Changed {
    streams: BTreeSet<String>,
    consumers: BTreeSet<String>,
    log: Vec<String>,
}

/// Out-of-band changes through the NATS API, as another client would make them.
async fn out_of_band(
    client: &async_nats::Client,
    rng: &mut StdRng,
    names: &[String],
    n: usize,
    changed: &mut Changed,
) -> String {
    let mut log = Vec::new();
    for _ in 0..n {
        let name = names[rng.random_range(0..names.len())].clone();
        match rng.random_range(0..4) {
            0 => {
                request(client, format!("$JS.API.STREAM.DELETE.{name}"), json!({})).await;
                log.push(format!("stream {name} deleted"));
                changed.streams.insert(name);
            }
            1 => {
                let mut c = stream_info(client, &name).await["config"].clone();
                if c.is_object() {
                    c["description"] = json!("edited behind the operator's back");
                    c["max_msgs"] = json!(7);
                    request(client, format!("$JS.API.STREAM.UPDATE.{name}"), c).await;
                    log.push(format!("stream {name} edited"));
                }
            }
            2 => {
                request(
                    client,
                    format!("$JS.API.CONSUMER.DELETE.{name}.{name}"),
                    json!({}),
                )
                .await;
                log.push(format!("consumer {name} deleted"));
                changed.consumers.insert(name);
            }
            _ => {
                let info = request(
                    client,
                    format!("$JS.API.CONSUMER.INFO.{name}.{name}"),
                    json!({}),
                )
                .await;
                let mut c = info["config"].clone();
                if c.is_object() {
                    c["description"] = json!("edited behind the operator's back");
                    c["max_ack_pending"] = json!(7);
                    request(
                        client,
                        format!("$JS.API.CONSUMER.CREATE.{name}.{name}"),
                        json!({"stream_name": name, "config": c, "action": "update"}),
                    )
                    .await;
                    log.push(format!("consumer {name} edited"));
                }
            }
        }
    }
    let line = log.join(", ");
    changed.log.extend(log);
    line
}

// ---------------------------------------------------------------------------------------

struct Replica {
    op: Operator,
    id: String,
    /// Times this test killed it.
    kills: usize,
}

/// Panics when an operator process has exited without being killed by this test.
fn no_unexpected_exit(replicas: &mut [Replica]) {
    for r in replicas.iter_mut() {
        if let Some(status) = r.op.exited() {
            panic!(
                "operator {} exited on its own ({status}) after {} kills by the test; log:\n{}",
                r.id,
                r.kills,
                tail_lines(r.op.log_path(), 60)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_under_faults() {
    let size = size();
    let seed: u64 = std::env::var("JSO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("CHAOS seed {seed} (replay with JSO_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let cp = control_plane().await;
    let ns = TestNs::new("chaos").await;
    let mut nats = Nats::start().await;
    let target: SocketAddr = nats
        .url()
        .trim_start_matches("nats://")
        .parse()
        .expect("nats address");
    let proxy = Proxy::start(target).await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .expect("oracle client");
    let _logs = LogsOnPanic::new()
        .control_plane(cp)
        .file("nats-server", nats.log_path());

    let names: Vec<String> = (0..size.streams).map(|i| format!("s{i:04}")).collect();
    let kv_names: Vec<String> = (0..size.kvs).map(|i| format!("kv{i:03}")).collect();
    let os_names: Vec<String> = (0..size.objs).map(|i| format!("os{i:03}")).collect();
    let apis: Vec<kube::Api<DynamicObject>> =
        KINDS.iter().map(|k| dyn_api(cp, ns.name(), k)).collect();

    // Phase 1 runs one replica without election, through the proxy.
    let url = proxy.url();
    let args = |id: &str, elected: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "--servers",
            url.as_str(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            "10s",
            "--pod-name",
            id,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        a.push("--admin-address".into());
        a.push(format!("127.0.0.1:{}", free_port()));
        if elected {
            a.extend(
                [
                    "--leader-election",
                    "--leader-election-namespace",
                    ns.name(),
                ]
                .iter()
                .map(|s| (*s).to_owned()),
            );
        }
        a
    };
    let start = |id: String, elected: bool| {
        let a = args(&id, elected);
        async move {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            Replica {
                op: Operator::start(cp, &refs).await,
                id,
                kills: 0,
            }
        }
    };
    let mut replicas = vec![start("solo".into(), false).await];

    // Before the faults: a fifth of the streams (with consumers) Ready, with messages.
    let pre = (size.streams / 5).max(2);
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let tracker = track_not_ready(cp, ns.name(), timeline.clone());
    create(
        &apis[0],
        names[..pre].iter().map(|n| stream_obj(n)).collect(),
    )
    .await;
    create(
        &apis[1],
        names[..pre].iter().map(|n| consumer_obj(n)).collect(),
    )
    .await;
    for n in &names[..pre] {
        wait_ready(&apis[0], n).await;
        wait_ready(&apis[1], n).await;
    }
    let mut created_at: BTreeMap<String, (String, String)> = BTreeMap::new();
    for n in &names[..pre] {
        for m in 0..MESSAGES {
            let ack = request(&client, format!("{n}.a"), json!({"message": m})).await;
            assert!(ack["seq"].is_u64(), "publish to {n}: {ack}");
        }
        let s = stream_info(&client, n).await;
        let c = request(&client, format!("$JS.API.CONSUMER.INFO.{n}.{n}"), json!({})).await;
        created_at.insert(
            n.clone(),
            (
                s["created"].as_str().unwrap_or_default().to_owned(),
                c["created"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    eprintln!("CHAOS {pre} streams and consumers Ready with {MESSAGES} messages each");

    // The rollout of everything else, in waves, while the faults run.
    let rollout = {
        let apis = apis.clone();
        let rest: Vec<String> = names[pre..].to_vec();
        let (kvs, objs) = (kv_names.clone(), os_names.clone());
        let mut wave_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        tokio::spawn(async move {
            let waves = 6;
            let chunk = rest.len().div_ceil(waves).max(1);
            for (i, part) in rest.chunks(chunk).enumerate() {
                create(&apis[0], part.iter().map(|n| stream_obj(n)).collect()).await;
                create(&apis[1], part.iter().map(|n| consumer_obj(n)).collect()).await;
                if i == 1 {
                    create(&apis[2], kvs.iter().map(|n| kv_obj(n)).collect()).await;
                }
                if i == 2 {
                    create(&apis[3], objs.iter().map(|n| os_obj(n)).collect()).await;
                }
                tokio::time::sleep(Duration::from_millis(wave_rng.random_range(1000..5000))).await;
            }
        })
    };

    // The faults, one after another at seeded random moments.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        RestartApiserver,
        PauseEtcd,
        KillNats,
        KillOperator,
        OutOfBand,
        CutNats,
        RecreateObject,
    }
    let mut phase1: Vec<Fault> = vec![Fault::RestartApiserver, Fault::PauseEtcd];
    phase1.extend(std::iter::repeat_n(Fault::KillNats, size.nats_kills / 2));
    phase1.extend(std::iter::repeat_n(Fault::KillOperator, size.op_kills / 2));
    phase1.extend([Fault::OutOfBand, Fault::OutOfBand]);
    let mut phase2: Vec<Fault> = vec![Fault::CutNats, Fault::RecreateObject];
    phase2.extend(std::iter::repeat_n(
        Fault::KillNats,
        size.nats_kills - size.nats_kills / 2,
    ));
    phase2.extend(std::iter::repeat_n(
        Fault::KillOperator,
        size.op_kills - size.op_kills / 2,
    ));
    phase2.extend([Fault::OutOfBand, Fault::OutOfBand]);
    use rand::seq::SliceRandom;
    phase1.shuffle(&mut rng);
    phase2.shuffle(&mut rng);

    let t0 = Instant::now();
    let mut changed = Changed::default();
    let mut kills = 0usize;
    let mut retired: Vec<Replica> = Vec::new();
    for (phase, faults) in [(1, phase1), (2, phase2)] {
        if phase == 2 {
            // Two replicas under leader election from here on.
            let mut solo = replicas.pop().expect("the phase-1 replica");
            no_unexpected_exit(std::slice::from_mut(&mut solo));
            solo.op.stop().await;
            retired.push(solo);
            replicas = vec![
                start("replica-a".into(), true).await,
                start("replica-b".into(), true).await,
            ];
            wait_until(Duration::from_secs(30), "a leader", || async {
                lease_holder(cp, ns.name()).await
            })
            .await;
            eprintln!(
                "CHAOS {:>6.1}s phase 2: two replicas under leader election",
                t0.elapsed().as_secs_f64()
            );
        }
        for fault in faults {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1000..6000))).await;
            no_unexpected_exit(&mut replicas);
            let began = Instant::now();
            let what = match fault {
                Fault::RestartApiserver => {
                    if cp.restart_apiserver().await {
                        "kube-apiserver restarted (SIGTERM)".to_owned()
                    } else {
                        "kube-apiserver restarted (SIGKILL after 15 s of SIGTERM)".to_owned()
                    }
                }
                Fault::PauseEtcd => {
                    let pid = cp.pid_of("etcd");
                    send_signal(pid, "STOP");
                    // The fault is the pause itself; the NATS side changes meanwhile.
                    let line = out_of_band(&client, &mut rng, &names[..pre], 1, &mut changed).await;
                    tokio::time::sleep(size.etcd_pause).await;
                    send_signal(pid, "CONT");
                    format!(
                        "etcd paused {} s; meanwhile {line}",
                        size.etcd_pause.as_secs()
                    )
                }
                Fault::KillNats => {
                    let pid = nats.pid().expect("nats-server pid");
                    send_signal(pid, "KILL");
                    nats.stop().await;
                    nats.start_again().await;
                    "nats-server SIGKILLed and restarted".to_owned()
                }
                Fault::KillOperator => {
                    let holder = lease_holder(cp, ns.name()).await;
                    let i = replicas
                        .iter()
                        .position(|r| Some(&r.id) == holder.as_ref())
                        .unwrap_or(0);
                    let r = &mut replicas[i];
                    r.op.kill().await;
                    r.kills += 1;
                    kills += 1;
                    let line = out_of_band(&client, &mut rng, &names[..pre], 1, &mut changed).await;
                    r.op.restart().await;
                    format!(
                        "operator {} SIGKILLed and restarted; meanwhile {line}",
                        r.id
                    )
                }
                Fault::CutNats => {
                    proxy.set_cut(true);
                    // The fault is the partition itself; the NATS side changes meanwhile.
                    let line = out_of_band(&client, &mut rng, &names[..pre], 1, &mut changed).await;
                    tokio::time::sleep(size.cut).await;
                    proxy.set_cut(false);
                    format!(
                        "NATS connections cut {} s; meanwhile {line}",
                        size.cut.as_secs()
                    )
                }
                Fault::OutOfBand => {
                    let line = out_of_band(
                        &client,
                        &mut rng,
                        &names[..pre],
                        size.out_of_band / 2,
                        &mut changed,
                    )
                    .await;
                    format!("out of band: {line}")
                }
                Fault::RecreateObject => {
                    let name = names[rng.random_range(0..pre)].clone();
                    let _ = apis[0].delete(&name, &DeleteParams::default()).await;
                    wait_gone(&apis[0], &name, Duration::from_secs(60)).await;
                    create(&apis[0], vec![stream_obj(&name)]).await;
                    let msg = format!("Stream {name} deleted and created again");
                    changed.streams.insert(name);
                    msg
                }
            };
            let end = Instant::now();
            eprintln!(
                "CHAOS {:>6.1}s +{:>5.1}s {what}",
                began.duration_since(t0).as_secs_f64(),
                (end - began).as_secs_f64()
            );
            timeline.lock().expect("timeline").faults.push(FaultRecord {
                what,
                start: began,
                end,
            });
        }
    }
    rollout.await.expect("rollout");
    let faults_over = Instant::now();
    eprintln!(
        "CHAOS {:>6.1}s faults over",
        faults_over.duration_since(t0).as_secs_f64()
    );

    // Every object Ready within SETTLE.
    let total = 2 * size.streams + size.kvs + size.objs;
    wait_until(SETTLE, "every object Ready after the faults", || async {
        let mut ready = 0;
        let mut missing = Vec::new();
        for api in &apis {
            let list = api.list(&Default::default()).await.ok()?;
            for o in list {
                if condition(&o, "Ready").is_some_and(|(s, _, _)| s == "True")
                    && status_is_current(&o)
                {
                    ready += 1;
                } else {
                    missing.push(status_summary(&o));
                }
            }
        }
        if ready < total && faults_over.elapsed() > SETTLE - Duration::from_secs(5) {
            eprintln!("CHAOS not Ready yet: {}", missing.join("; "));
        }
        (ready == total).then_some(())
    })
    .await;
    let settled = faults_over.elapsed();
    eprintln!(
        "CHAOS every object Ready {:.1} s after the faults",
        settled.as_secs_f64()
    );
    no_unexpected_exit(&mut replicas);

    // The server holds exactly the declared assets (statuses can be Ready before the
    // server is: a stream deleted while no operator ran is seen by the next scan).
    let mut want: BTreeSet<String> = names.iter().cloned().collect();
    want.extend(kv_names.iter().map(|b| format!("KV_{b}")));
    want.extend(os_names.iter().map(|b| format!("OBJ_{b}")));
    wait_until(
        SETTLE.saturating_sub(faults_over.elapsed()),
        "exactly the declared streams and consumers",
        || async {
            if all_stream_names(&client).await != want {
                return None;
            }
            for n in &names {
                if consumer_names(&client, n).await != BTreeSet::from([n.clone()]) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eprintln!(
        "CHAOS the server holds exactly the declared assets {:.1} s after the faults",
        faults_over.elapsed().as_secs_f64()
    );
    // Field by field, within what is left of SETTLE: the objects say Ready before a reconcile
    // after the reconnect has repaired a change made while the connection was cut.
    let mismatches = || async {
        let mut out = Vec::new();
        let mut check = |what: String, have: &Value, want: Value| {
            if *have != want {
                out.push(format!("{what}: {have} (declared {want})"));
            }
        };
        for n in &names {
            let info = stream_info(&client, n).await;
            let c = &info["config"];
            check(
                format!("stream {n} subjects"),
                &c["subjects"],
                json!([format!("{n}.>")]),
            );
            check(
                format!("stream {n} description"),
                &c["description"],
                json!(format!("declared {n}")),
            );
            check(format!("stream {n} max_msgs"), &c["max_msgs"], json!(1000));
            check(
                format!("stream {n} max_age"),
                &c["max_age"],
                json!(86_400_000_000_000i64),
            );
            check(
                format!("stream {n} duplicate_window"),
                &c["duplicate_window"],
                json!(30_000_000_000i64),
            );
            check(format!("stream {n} storage"), &c["storage"], json!("file"));
            let ci = request(&client, format!("$JS.API.CONSUMER.INFO.{n}.{n}"), json!({})).await;
            let cc = &ci["config"];
            check(
                format!("consumer {n} durable_name"),
                &cc["durable_name"],
                json!(n),
            );
            check(
                format!("consumer {n} ack_policy"),
                &cc["ack_policy"],
                json!("explicit"),
            );
            check(
                format!("consumer {n} max_ack_pending"),
                &cc["max_ack_pending"],
                json!(100),
            );
            check(
                format!("consumer {n} description"),
                &cc["description"],
                json!(format!("declared {n}")),
            );
            check(
                format!("consumer {n} filter_subject"),
                &cc["filter_subject"],
                json!(format!("{n}.a")),
            );
        }
        for b in &kv_names {
            let c = stream_info(&client, &format!("KV_{b}")).await["config"].clone();
            check(
                format!("KV {b} history"),
                &c["max_msgs_per_subject"],
                json!(5),
            );
            check(
                format!("KV {b} max value size"),
                &c["max_msg_size"],
                json!(4096),
            );
            check(
                format!("KV {b} description"),
                &c["description"],
                json!(format!("declared {b}")),
            );
        }
        for b in &os_names {
            let c = stream_info(&client, &format!("OBJ_{b}")).await["config"].clone();
            check(
                format!("OS {b} description"),
                &c["description"],
                json!(format!("declared {b}")),
            );
        }
        out
    };
    let left = SETTLE.saturating_sub(faults_over.elapsed());
    if poll_until(left, || async {
        mismatches().await.is_empty().then_some(())
    })
    .await
    .is_none()
    {
        let wrong = mismatches().await;
        panic!(
            "{} declared values still differ {SETTLE:?} after the faults: {}",
            wrong.len(),
            wrong.join("; ")
        );
    }
    for b in &kv_names {
        assert!(consumer_names(&client, &format!("KV_{b}")).await.is_empty());
    }
    let checked = 2 * names.len() + kv_names.len() + os_names.len();
    eprintln!(
        "CHAOS the declared values hold field by field {:.1} s after the faults",
        faults_over.elapsed().as_secs_f64()
    );
    eprintln!("CHAOS {checked} assets match their declarations; no extra stream or consumer");

    // Nothing recreated that was not deleted: messages and creation times kept.
    let (mut streams_kept, mut consumers_kept) = (0, 0);
    for (n, (s_created, c_created)) in &created_at {
        if changed.streams.contains(n) {
            continue;
        }
        let s = stream_info(&client, n).await;
        assert_eq!(
            s["state"]["messages"],
            json!(MESSAGES),
            "stream {n} lost messages: {}",
            s["state"]
        );
        assert_eq!(
            s["created"].as_str().unwrap_or_default(),
            s_created,
            "stream {n} was recreated"
        );
        streams_kept += 1;
        if changed.consumers.contains(n) {
            continue;
        }
        let c = request(&client, format!("$JS.API.CONSUMER.INFO.{n}.{n}"), json!({})).await;
        assert_eq!(
            c["created"].as_str().unwrap_or_default(),
            c_created,
            "consumer {n} was recreated"
        );
        consumers_kept += 1;
    }
    eprintln!(
        "CHAOS of {} streams and consumers declared before the faults, {streams_kept} streams \
         kept their messages and creation time, {consumers_kept} consumers their creation time; \
         the others were deleted out of band ({} streams, {} consumers) and recreated",
        created_at.len(),
        changed.streams.len(),
        changed.consumers.len()
    );

    // Restarts: every replica's log shows one start plus one per kill, and no replica
    // exited on its own.
    no_unexpected_exit(&mut replicas);
    replicas.extend(retired);
    let mut starts = 0;
    for r in &replicas {
        let runs = r.op.log().matches("=== harness: ").count();
        assert_eq!(
            runs,
            1 + r.kills,
            "operator {}: {runs} starts for {} kills",
            r.id,
            r.kills
        );
        starts += runs;
    }
    assert_eq!(starts, replicas.len() + kills);
    eprintln!(
        "CHAOS operator starts: {starts} ({} replicas, {kills} kills)",
        replicas.len()
    );

    // Not-Ready time per fault.
    tracker.abort();
    let t = timeline.lock().expect("timeline");
    eprintln!("CHAOS not Ready, per fault (objects, p50, p99, max):");
    for (i, f) in t.faults.iter().enumerate() {
        let mut d: Vec<Duration> = t
            .not_ready
            .iter()
            .filter(|(fi, _, _)| *fi == Some(i))
            .map(|(_, _, d)| *d)
            .collect();
        let n = d.len();
        let (p50, p99) = (pct(&mut d, 0.5), pct(&mut d, 0.99));
        let max = d.last().copied().unwrap_or_default();
        let slow: Vec<String> = t
            .not_ready
            .iter()
            .filter(|(fi, _, d)| *fi == Some(i) && *d > Duration::from_secs(1))
            .map(|(_, o, d)| format!("{o} {:.1} s", d.as_secs_f64()))
            .collect();
        if !slow.is_empty() {
            eprintln!("CHAOS            (over 1 s: {})", slow.join(", "));
        }
        eprintln!(
            "CHAOS   {:>6.1}s {:>5.1}s {:<60} {n:>4} {:>7.0} ms {:>7.0} ms {:>7.0} ms",
            f.start.duration_since(t0).as_secs_f64(),
            (f.end - f.start).as_secs_f64(),
            f.what.chars().take(60).collect::<String>(),
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0,
        );
    }
    eprintln!(
        "CHAOS seed {seed}: {kills} operator kills, {} nats-server kills, all Ready {:.1} s after the last fault",
        size.nats_kills,
        settled.as_secs_f64()
    );
}
