//! KeyValue and ObjectStore scenarios end to end: a real kube-apiserver + etcd, a
//! nats-server per test and the operator binary, driven with kubectl and observed through
//! Kubernetes and JetStream (the buckets themselves and their backing streams `KV_<bucket>`
//! and `OBJ_<bucket>`).
mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::DynamicObject;
use support::*;
use tokio::io::AsyncReadExt as _;

/// The longest a drift repair may take (resync 3s plus margin).
const REPAIR_DEADLINE: Duration = Duration::from_secs(10);
/// Polling interval where a delay is measured.
const MEASURE_POLL: Duration = Duration::from_millis(10);

/// The two bucket kinds, which share every scenario but the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    KeyValue,
    ObjectStore,
}

impl Kind {
    fn kind(self) -> &'static str {
        match self {
            Kind::KeyValue => "KeyValue",
            Kind::ObjectStore => "ObjectStore",
        }
    }
    fn plural(self) -> &'static str {
        match self {
            Kind::KeyValue => "keyvalues",
            Kind::ObjectStore => "objectstores",
        }
    }
    /// The backing stream of `bucket`.
    fn stream(self, bucket: &str) -> String {
        match self {
            Kind::KeyValue => format!("KV_{bucket}"),
            Kind::ObjectStore => format!("OBJ_{bucket}"),
        }
    }
}

/// One test's world: its namespace, nats-server and operator (dropped in that order:
/// operator first).
struct Env {
    _op: Operator,
    nats: Nats,
    ns: TestNs,
    cp: &'static ControlPlane,
    kv: Api<DynamicObject>,
    obj: Api<DynamicObject>,
}

impl Env {
    /// Namespace, nats-server and operator with `--resync-interval 3s`.
    async fn start(prefix: &str) -> Env {
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let nats = Nats::start().await;
        let op = Operator::start(
            cp,
            &[
                "--servers",
                nats.url(),
                "--namespace",
                ns.name(),
                "--resync-interval",
                "3s",
                "--admin-address",
                "127.0.0.1:0",
            ],
        )
        .await;
        let kv = dyn_api(cp, ns.name(), "keyvalues");
        let obj = dyn_api(cp, ns.name(), "objectstores");
        Env {
            _op: op,
            nats,
            ns,
            cp,
            kv,
            obj,
        }
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    fn api(&self, kind: Kind) -> &Api<DynamicObject> {
        match kind {
            Kind::KeyValue => &self.kv,
            Kind::ObjectStore => &self.obj,
        }
    }

    /// `kubectl apply` of `yaml` into the namespace, asserting success.
    fn apply(&self, yaml: &str) {
        apply_ok(self.cp, self.ns(), yaml);
    }

    /// `kubectl apply` of `yaml`, asserting that it is refused; returns stderr.
    fn apply_refused(&self, yaml: &str) -> String {
        apply_refused(self.cp, self.ns(), yaml)
    }

    async fn js(&self) -> async_nats::jetstream::Context {
        self.nats.jetstream().await
    }

    async fn get(&self, kind: Kind, name: &str) -> Option<DynamicObject> {
        self.api(kind)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get {} {name}: {e}", kind.kind()))
    }

    async fn wait_ready(&self, kind: Kind, name: &str) -> DynamicObject {
        wait_ready(self.api(kind), name).await
    }

    /// `kubectl delete`, which waits until the finalizer is released.
    fn delete(&self, kind: Kind, name: &str) {
        kubectl_ok(
            self.cp,
            &[
                "delete",
                kind.plural(),
                name,
                "-n",
                self.ns(),
                "--timeout=60s",
            ],
        );
    }
}

/// A manifest of `kind` whose object and bucket are both called `name`.
fn bucket_yaml(kind: Kind, name: &str, spec: &str) -> String {
    manifest(kind.kind(), name, &format!("bucket: {name}\n{spec}"))
}

fn status_str<'a>(obj: &'a DynamicObject, field: &str) -> Option<&'a str> {
    obj.data.get("status")?.get(field)?.as_str()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn owner_of(metadata: &std::collections::HashMap<String, String>) -> Option<&str> {
    metadata.get("jetstream.nats.io/owner").map(String::as_str)
}

/// Some hundreds of KiB of bytes that are not all alike.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Scenarios shared by both kinds

/// create -> Ready, with the backing stream stamped with its owner.
async fn created_ready(env: &Env, kind: Kind, name: &str, spec: &str) -> DynamicObject {
    env.apply(&bucket_yaml(kind, name, spec));
    let obj = env.wait_ready(kind, name).await;
    let stream = kind.stream(name);
    assert_eq!(
        status_str(&obj, "assetName"),
        Some(stream.as_str()),
        "{}",
        status_summary(&obj)
    );
    let cfg = get_stream_config(&env.js().await, &stream)
        .await
        .unwrap_or_else(|| panic!("stream {stream} is not in JetStream"));
    assert_eq!(
        owner_of(&cfg.metadata),
        Some(format!("{}/{name}", env.ns()).as_str()),
        "{:?}",
        cfg.metadata
    );
    obj
}

/// Deleted behind the operator's back -> recreated.
async fn drift_deleted_is_recreated(kind: Kind, prefix: &str) {
    let env = Env::start(prefix).await;
    let name = "lost";
    created_ready(&env, kind, name, "description: will be deleted\nttl: 1h").await;
    let js = env.js().await;
    let stream = kind.stream(name);
    let created = stream_info(&js, &stream).await.expect("stream").created;

    js.delete_stream(&stream).await.expect("delete stream");
    let t0 = Instant::now();
    let back = wait_until_every(
        REPAIR_DEADLINE,
        MEASURE_POLL,
        &format!("{stream} to be recreated"),
        || async { stream_info(&js, &stream).await },
    )
    .await;
    eprintln!(
        "DRIFT-REPAIR {} delete ms={}",
        kind.kind(),
        ms(t0.elapsed())
    );
    assert_ne!(back.created, created, "not a new stream");
    assert_eq!(back.config.description.as_deref(), Some("will be deleted"));
    assert_eq!(back.config.max_age, Duration::from_secs(3600));
    let events = wait_until(WAIT, "a DriftRepaired event", || async {
        let ev = events_about(env.cp, env.ns(), kind.kind(), name).await;
        ev.iter().any(|e| e.reason == "DriftRepaired").then_some(ev)
    })
    .await;
    eprintln!(
        "DRIFT-REPAIR {} delete events: {:?}",
        kind.kind(),
        events
            .iter()
            .map(|e| format!("{} {}: {}", e.type_, e.reason, e.message))
            .collect::<Vec<_>>()
    );
    env.wait_ready(kind, name).await;
    // Usable again through the client API.
    match kind {
        Kind::KeyValue => {
            let kv = js.get_key_value(name).await.expect("get_key_value");
            kv.put("k", "v".into()).await.expect("put");
            assert_eq!(kv.get("k").await.expect("get").as_deref(), Some(&b"v"[..]));
        }
        Kind::ObjectStore => {
            let store = js.get_object_store(name).await.expect("get_object_store");
            store
                .put("o", &mut &b"object"[..])
                .await
                .expect("put object");
        }
    }
}

/// Backing stream edited behind the operator's back -> reverted.
async fn drift_edited_is_reverted(kind: Kind, prefix: &str) {
    let env = Env::start(prefix).await;
    let name = "edited";
    created_ready(&env, kind, name, "description: as specified\nttl: 1h").await;
    let js = env.js().await;
    let stream = kind.stream(name);
    let before = stream_info(&js, &stream).await.expect("stream");

    let mut cfg = before.config.clone();
    cfg.max_age = Duration::from_secs(600);
    cfg.description = Some("edited out of band".into());
    // The update's answer is what the server stored (a read after it may already see the
    // operator's repair).
    let edited = js
        .update_stream(&cfg)
        .await
        .expect("update stream out of band")
        .config;
    assert_eq!(
        edited.max_age,
        Duration::from_secs(600),
        "the edit did not land"
    );
    let t0 = Instant::now();
    let reverted = wait_until_every(
        REPAIR_DEADLINE,
        MEASURE_POLL,
        &format!("{stream} to be reverted"),
        || async {
            let i = stream_info(&js, &stream).await?;
            (i.config.max_age == Duration::from_secs(3600)
                && i.config.description.as_deref() == Some("as specified"))
            .then_some(i)
        },
    )
    .await;
    eprintln!("DRIFT-REPAIR {} edit ms={}", kind.kind(), ms(t0.elapsed()));
    assert_eq!(reverted.created, before.created, "reverted by recreating");
    env.wait_ready(kind, name).await;
}

/// delete -> gone; with preventDelete -> kept (and released).
async fn delete_removes_unless_prevent_delete(kind: Kind, prefix: &str) {
    let env = Env::start(prefix).await;
    created_ready(&env, kind, "gone", "").await;
    created_ready(&env, kind, "kept", "preventDelete: true").await;
    let js = env.js().await;

    env.delete(kind, "gone");
    assert!(env.get(kind, "gone").await.is_none(), "object gone remains");
    assert!(
        stream_info(&js, &kind.stream("gone")).await.is_none(),
        "{} is still in JetStream",
        kind.stream("gone")
    );

    env.delete(kind, "kept");
    assert!(env.get(kind, "kept").await.is_none(), "object kept remains");
    let kept = get_stream_config(&js, &kind.stream("kept"))
        .await
        .expect("the bucket was deleted despite preventDelete");
    assert_eq!(
        owner_of(&kept.metadata),
        None,
        "the kept bucket still carries the ownership marker: {:?}",
        kept.metadata
    );
    // Still a working bucket.
    match kind {
        Kind::KeyValue => {
            let kv = js.get_key_value("kept").await.expect("get_key_value kept");
            kv.put("after", "delete".into()).await.expect("put");
        }
        Kind::ObjectStore => {
            js.get_object_store("kept")
                .await
                .expect("get_object_store kept");
        }
    }
    assert_eq!(stream_names(&js).await, vec![kind.stream("kept")]);
}

/// An immutable change is refused at admission and nothing changes.
async fn immutable_change_rejected(kind: Kind, prefix: &str, changes: &[(&str, &str, &str)]) {
    let env = Env::start(prefix).await;
    let name = "fixed";
    let before = created_ready(&env, kind, name, "storage: file").await;
    let js = env.js().await;
    let info0 = stream_info(&js, &kind.stream(name)).await.expect("stream");
    for (change, yaml, words) in changes {
        let stderr = env.apply_refused(yaml);
        eprintln!("IMMUTABLE {} {change}: {}", kind.kind(), stderr.trim());
        assert!(
            stderr.contains(words),
            "{change}: the refusal does not say why (expected {words:?}): {stderr}"
        );
    }
    let after = env.get(kind, name).await.expect("object");
    assert_eq!(generation(&after), generation(&before));
    assert_eq!(
        after.data.get("spec"),
        before.data.get("spec"),
        "the spec changed"
    );
    let info = stream_info(&js, &kind.stream(name)).await.expect("stream");
    assert_eq!(info.config, info0.config, "the backing stream changed");
    assert_eq!(stream_names(&js).await, vec![kind.stream(name)]);
}

/// replicas: 3 on a standalone server: refused by the server -> Stalled with its words.
async fn refused_change_stalls(kind: Kind, prefix: &str) {
    let env = Env::start(prefix).await;
    let name = "wide";
    created_ready(&env, kind, name, "description: one replica").await;
    env.apply(&bucket_yaml(
        kind,
        name,
        "description: three replicas\nreplicas: 3",
    ));
    let stalled = wait_condition(env.api(kind), name, "Stalled", "True").await;
    let (_, reason, message) = condition(&stalled, "Stalled").expect("Stalled");
    eprintln!("REFUSED {}: {reason}: {message}", kind.kind());
    assert!(
        message.contains("replicas") && message.contains("non-clustered"),
        "the Stalled message does not carry the server's words: {reason}: {message}"
    );
    let (ready, ready_reason, _) = condition(&stalled, "Ready").expect("Ready");
    assert_eq!(ready, "False", "{}", status_summary(&stalled));
    assert_eq!(ready_reason, reason);
    assert_eq!(generation(&stalled), Some(2));
    let cfg = get_stream_config(&env.js().await, &kind.stream(name))
        .await
        .expect("stream");
    assert_eq!(cfg.num_replicas, 1);
    assert_eq!(
        cfg.description.as_deref(),
        Some("one replica"),
        "part of the refused change reached the server"
    );
}

/// Bad input is refused at admission, naming the field; nothing reaches JetStream.
async fn bad_input_rejected_at_admission(kind: Kind, prefix: &str, cases: &[(&str, &str)]) {
    let env = Env::start(prefix).await;
    for (i, (field, yaml)) in cases.iter().enumerate() {
        let stderr = env.apply_refused(yaml);
        eprintln!("ADMISSION {} case {i}: {}", kind.kind(), stderr.trim());
        assert!(
            stderr.contains(&format!("spec.{field}")),
            "case {i}: stderr does not name spec.{field}: {stderr}\n{yaml}"
        );
    }
    let listed = env.api(kind).list(&Default::default()).await.expect("list");
    assert!(listed.items.is_empty(), "something was stored");
    created_ready(&env, kind, "good", "ttl: 24h").await;
    assert_eq!(
        stream_names(&env.js().await).await,
        vec![kind.stream("good")]
    );
}

// ---------------------------------------------------------------------------------------
// KeyValue

#[tokio::test]
async fn kv_put_get() {
    let env = Env::start("kv-putget").await;
    created_ready(&env, Kind::KeyValue, "store", "history: 3").await;
    let js = env.js().await;
    let kv = js.get_key_value("store").await.expect("get_key_value");
    kv.put("a", "1".into()).await.expect("put a");
    assert_eq!(
        kv.get("a").await.expect("get a").as_deref(),
        Some(&b"1"[..])
    );
    let cfg = get_stream_config(&js, "KV_store").await.expect("KV_store");
    assert_eq!(cfg.max_messages_per_subject, 3);
    assert!(!cfg.allow_message_ttl);

    // limitMarkerTtl as a duration and as NACK's integer nanoseconds.
    created_ready(&env, Kind::KeyValue, "marker-dur", "limitMarkerTtl: 10s").await;
    created_ready(
        &env,
        Kind::KeyValue,
        "marker-ns",
        "limitMarkerTtl: 10000000000",
    )
    .await;
    for bucket in ["marker-dur", "marker-ns"] {
        let cfg = get_stream_config(&js, &format!("KV_{bucket}"))
            .await
            .expect("stream");
        assert!(cfg.allow_message_ttl, "{bucket}: allow_message_ttl is off");
        assert_eq!(
            cfg.subject_delete_marker_ttl,
            Some(Duration::from_secs(10)),
            "{bucket}"
        );
        let kv = js.get_key_value(bucket).await.expect("get_key_value");
        kv.put("k", "v".into()).await.expect("put");
        assert_eq!(kv.get("k").await.expect("get").as_deref(), Some(&b"v"[..]));
    }
}

#[tokio::test]
async fn kv_update_follows_spec() {
    let env = Env::start("kv-update").await;
    created_ready(
        &env,
        Kind::KeyValue,
        "prefs",
        "description: v1\nhistory: 5\nttl: 1h",
    )
    .await;
    let js = env.js().await;
    let before = stream_info(&js, "KV_prefs").await.expect("KV_prefs");
    assert_eq!(before.config.max_messages_per_subject, 5);
    assert_eq!(before.config.max_age, Duration::from_secs(3600));

    env.apply(&bucket_yaml(
        Kind::KeyValue,
        "prefs",
        "description: v2\nhistory: 10\nttl: 2h",
    ));
    let obj = env.wait_ready(Kind::KeyValue, "prefs").await;
    assert_eq!(generation(&obj), Some(2));
    let after = stream_info(&js, "KV_prefs").await.expect("KV_prefs");
    assert_eq!(after.config.max_messages_per_subject, 10);
    assert_eq!(after.config.max_age, Duration::from_secs(7200));
    assert_eq!(after.config.description.as_deref(), Some("v2"));
    assert_eq!(after.created, before.created, "recreated, not updated");
    // The client sees the new history.
    let kv = js.get_key_value("prefs").await.expect("get_key_value");
    let status = kv.status().await.expect("status");
    assert_eq!(status.history(), 10);
    assert_eq!(status.max_age(), Duration::from_secs(7200));
}

#[tokio::test]
async fn kv_drift_deleted_is_recreated() {
    drift_deleted_is_recreated(Kind::KeyValue, "kv-drift-del").await;
}

#[tokio::test]
async fn kv_drift_edited_is_reverted() {
    drift_edited_is_reverted(Kind::KeyValue, "kv-drift-edit").await;
}

#[tokio::test]
async fn kv_delete_removes_unless_prevent_delete() {
    delete_removes_unless_prevent_delete(Kind::KeyValue, "kv-delete").await;
}

#[tokio::test]
async fn kv_immutable_change_rejected() {
    let k = Kind::KeyValue;
    immutable_change_rejected(
        k,
        "kv-immutable",
        &[
            (
                "storage file -> memory",
                &bucket_yaml(k, "fixed", "storage: memory"),
                "storage is immutable",
            ),
            (
                "bucket rename",
                &manifest("KeyValue", "fixed", "bucket: renamed\nstorage: file"),
                "bucket is immutable",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn kv_refused_change_stalls() {
    refused_change_stalls(Kind::KeyValue, "kv-refused").await;
}

#[tokio::test]
async fn kv_bad_input_rejected_at_admission() {
    let k = Kind::KeyValue;
    bad_input_rejected_at_admission(
        k,
        "kv-admission",
        &[
            ("history", &bucket_yaml(k, "deep", "history: 100")),
            (
                "bucket",
                &manifest("KeyValue", "spaced", "bucket: \"bad name\""),
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// ObjectStore

#[tokio::test]
async fn object_store_put_get() {
    let env = Env::start("obj-putget").await;
    created_ready(&env, Kind::ObjectStore, "files", "description: test files").await;
    let js = env.js().await;
    let store = js
        .get_object_store("files")
        .await
        .expect("get_object_store");
    let data = payload(300 * 1024 + 17);
    let info = store
        .put("report.bin", &mut data.as_slice())
        .await
        .expect("put object");
    assert_eq!(info.size, data.len());
    let mut object = store.get("report.bin").await.expect("get object");
    let mut back = Vec::new();
    object.read_to_end(&mut back).await.expect("read object");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the object came back different");
    let cfg = get_stream_config(&js, "OBJ_files")
        .await
        .expect("OBJ_files");
    assert_eq!(cfg.description.as_deref(), Some("test files"));
}

#[tokio::test]
async fn object_store_update_follows_spec() {
    let env = Env::start("obj-update").await;
    created_ready(
        &env,
        Kind::ObjectStore,
        "archive",
        "description: v1\nttl: 1h",
    )
    .await;
    let js = env.js().await;
    let before = stream_info(&js, "OBJ_archive").await.expect("OBJ_archive");
    assert_eq!(before.config.max_age, Duration::from_secs(3600));

    env.apply(&bucket_yaml(
        Kind::ObjectStore,
        "archive",
        "description: v2\nttl: 48h",
    ));
    let obj = env.wait_ready(Kind::ObjectStore, "archive").await;
    assert_eq!(generation(&obj), Some(2));
    let after = stream_info(&js, "OBJ_archive").await.expect("OBJ_archive");
    assert_eq!(after.config.description.as_deref(), Some("v2"));
    assert_eq!(after.config.max_age, Duration::from_secs(48 * 3600));
    assert_eq!(after.created, before.created, "recreated, not updated");
}

#[tokio::test]
async fn object_store_drift_deleted_is_recreated() {
    drift_deleted_is_recreated(Kind::ObjectStore, "obj-drift-del").await;
}

#[tokio::test]
async fn object_store_drift_edited_is_reverted() {
    drift_edited_is_reverted(Kind::ObjectStore, "obj-drift-edit").await;
}

#[tokio::test]
async fn object_store_delete_removes_unless_prevent_delete() {
    delete_removes_unless_prevent_delete(Kind::ObjectStore, "obj-delete").await;
}

#[tokio::test]
async fn object_store_immutable_change_rejected() {
    let k = Kind::ObjectStore;
    immutable_change_rejected(
        k,
        "obj-immutable",
        &[(
            "storage file -> memory",
            &bucket_yaml(k, "fixed", "storage: memory"),
            "storage is immutable",
        )],
    )
    .await;
}

#[tokio::test]
async fn object_store_refused_change_stalls() {
    refused_change_stalls(Kind::ObjectStore, "obj-refused").await;
}

#[tokio::test]
async fn object_store_bad_input_rejected_at_admission() {
    let k = Kind::ObjectStore;
    bad_input_rejected_at_admission(
        k,
        "obj-admission",
        &[("ttl", &bucket_yaml(k, "eternal", "ttl: forever"))],
    )
    .await;
}
