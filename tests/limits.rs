//! Large and hostile inputs end to end: the biggest objects the apiserver accepts (a thousand
//! subjects, a hundred sources, metadata at the server's limit, configurations past NATS'
//! max_payload and past etcd's request limit), names at the length limit, Unicode
//! descriptions, and a namespace of many objects deleted at once. The server is the oracle:
//! what JetStream stores is read back with a plain `$JS.API.STREAM.INFO` and compared field by
//! field, and "the operator does not loop" is measured on its own metrics and on the objects'
//! resourceVersions over two resyncs.
//!
//! The limits these tests run into, and where they come from:
//! - kube-apiserver refuses a request body over 3 MiB (`Request entity too large: limit is
//!   3145728`); etcd refuses a write over 1.5 MiB (`--max-request-bytes` 1572864:
//!   `etcdserver: request is too large`), and the apiserver's etcd client sends at most 2 MiB.
//! - Our CRD: `spec.name` at most 255 and `description` at most 4096 characters (OpenAPI
//!   `maxLength` counts characters, although the apiserver's message says bytes),
//!   `spec.metadata` at most 128 keys and no bound on their size.
//! - nats-server (`checkStreamCfgLocked`, server/stream.go; constants in
//!   server/jetstream_api.go): a name of at most 255 bytes (`JSMaxNameLen`), a description of
//!   at most 4096 bytes (`JSMaxDescriptionLen`), metadata keys plus values of at most 131072
//!   bytes (`JSMaxMetadataLen`, counting the operator's ownership marker and the
//!   `_nats.req.level` entry the server adds itself). A JetStream API request is one NATS
//!   message: at most `max_payload`, 1 MiB by default. The server checks every subject of a
//!   stream against every other one and against every subject of the account's other
//!   streams, so a create costs time quadratic in the number of subjects.
//!
//! `JSO_LIMITS_NS_OBJECTS` (default 300, half Streams and half Consumers) sets how many objects
//! the namespace-deletion test creates.
mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use support::*;

/// The resync interval the tests run the operator with (unless they say otherwise).
const RESYNC: &str = "2s";
/// JetStream API requests the operator made, by op and outcome.
const REQUESTS: &str = "jetstream_operator_jetstream_requests_total";
/// Writes the operator made to Kubernetes.
const KUBE_WRITES: &str = "jetstream_operator_kubernetes_writes_total";
/// nats-server's `JSMaxMetadataLen`: keys plus values of a stream's metadata, in bytes.
const JS_MAX_METADATA: usize = 128 * 1024;
/// The metadata entry nats-server adds to every stream it is asked to create before it
/// checks the metadata's size: `_nats.req.level: "0"` (for a stream using no feature newer
/// than 2.10).
const SERVER_LEVEL_ENTRY: usize = "_nats.req.level".len() + "0".len();
/// nats-server's `JSMaxNameLen`, in bytes.
const JS_MAX_NAME: usize = 255;
/// nats-server's `JSMaxDescriptionLen`, in bytes.
const JS_MAX_DESCRIPTION: usize = 4096;
/// nats-server's default `max_payload`, the largest JetStream API request.
const MAX_PAYLOAD: usize = 1024 * 1024;
/// Where the objects of the big-object tests wait to settle (creates of hundreds of
/// kilobytes, on a shared 2-core machine).
const BIG_WAIT: Duration = Duration::from_secs(90);
/// Default number of objects of the namespace-deletion test.
const NS_OBJECTS_DEFAULT: usize = 300;

// ---------------------------------------------------------------------------------------
// One test's world

/// A namespace, a nats-server and an operator (`--resync-interval 2s`, admin address fixed so
/// that /metrics can be read), dropped operator first.
struct Env {
    op: Operator,
    /// Runs as long as the test (stopped after the operator).
    _nats: Nats,
    ns: TestNs,
    cp: &'static ControlPlane,
    admin: String,
    /// A plain client with a long request timeout (a create with thousands of subjects
    /// keeps the server's JetStream API busy for seconds).
    nc: async_nats::Client,
}

impl Env {
    async fn start(prefix: &str, extra: &[&str]) -> Env {
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let nats = Nats::start().await;
        let admin = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--admin-address",
            admin.as_str(),
        ];
        if !extra.contains(&"--resync-interval") {
            args.extend(["--resync-interval", RESYNC]);
        }
        args.extend_from_slice(extra);
        let op = Operator::start(cp, &args).await;
        let nc = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(60)))
            .connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", nats.url()));
        let env = Env {
            op,
            _nats: nats,
            ns,
            cp,
            admin,
            nc,
        };
        wait_until(WAIT, "the operator's admin server to answer", || async {
            matches!(http_get(&env.admin, "/metrics").await, Ok((200, _))).then_some(())
        })
        .await;
        env
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    fn api(&self, plural: &str) -> Api<DynamicObject> {
        dyn_api(self.cp, self.ns(), plural)
    }

    fn streams(&self) -> Api<DynamicObject> {
        self.api("streams")
    }

    async fn metrics(&self) -> String {
        metrics(&self.admin).await
    }

    /// Creates `obj` (a JSON manifest) through the API, asserting success.
    async fn create(&self, plural: &str, obj: Value) {
        create_object(&self.api(plural), obj).await;
    }

    /// A JetStream API request, answered with its JSON.
    async fn js_api(&self, subject: &str) -> Value {
        let msg = self
            .nc
            .request(subject.to_owned(), "".into())
            .await
            .unwrap_or_else(|e| panic!("JetStream request {subject}: {e}"));
        serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|e| panic!("JetStream answer to {subject} is not JSON: {e}"))
    }

    /// The configuration JetStream holds for stream `name` (a plain STREAM.INFO), `None` when
    /// the stream does not exist.
    async fn stream_config(&self, name: &str) -> Option<Value> {
        let info = self.js_api(&format!("$JS.API.STREAM.INFO.{name}")).await;
        match info.get("error") {
            None => Some(info["config"].clone()),
            Some(e) if e["err_code"] == 10059 => None,
            Some(e) => panic!("STREAM.INFO {name}: {e}"),
        }
    }

    /// `(streams, consumers)` of the account, as `$JS.API.INFO` counts them.
    async fn asset_counts(&self) -> (u64, u64) {
        let info = self.js_api("$JS.API.INFO").await;
        assert!(info.get("error").is_none(), "$JS.API.INFO: {info}");
        (
            info["streams"].as_u64().unwrap_or(u64::MAX),
            info["consumers"].as_u64().unwrap_or(u64::MAX),
        )
    }

    /// Waits until `n` more drift scans have run (one `stream.list` per scan here).
    async fn wait_scans(&self, n: u32) {
        let before = metric_value(&self.metrics().await, REQUESTS, &[("op", "stream.list")]);
        let target = before + f64::from(n);
        let timeout = Duration::from_secs(2 * u64::from(n + 1) + 20);
        wait_until(timeout, &format!("{n} more drift scans"), || async {
            let now = metric_value(&self.metrics().await, REQUESTS, &[("op", "stream.list")]);
            (now >= target).then_some(())
        })
        .await;
    }

    /// `kind/name -> resourceVersion` of every Stream and Consumer of the namespace.
    async fn versions(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for plural in ["streams", "consumers"] {
            for (name, rv) in resource_versions(&self.api(plural)).await {
                all.insert(format!("{plural}/{name}"), rv);
            }
        }
        all
    }

    /// The operator has settled: over two drift scans it makes no JetStream request but its
    /// listings, writes nothing to Kubernetes, and no object changes.
    async fn assert_settled(&self, what: &str) {
        self.wait_scans(1).await;
        let (m0, v0) = (self.metrics().await, self.versions().await);
        self.wait_scans(2).await;
        let (m1, v1) = (self.metrics().await, self.versions().await);
        assert_eq!(
            activity(&m0),
            activity(&m1),
            "{what}: the operator kept working over two resyncs (JetStream requests other than \
             listings, plus Kubernetes writes)\nbefore:\n{}\nafter:\n{}",
            request_lines(&m0),
            request_lines(&m1)
        );
        assert_eq!(v0, v1, "{what}: objects were rewritten over two resyncs");
        assert!(
            !self.op.log().contains("panicked"),
            "{what}: the operator panicked"
        );
    }

    /// Waits until `name` is Stalled=True at its current generation; returns its message.
    async fn wait_stalled_message(&self, name: &str, timeout: Duration) -> String {
        let obj = wait_object(&self.streams(), name, "Stalled=True", timeout, |o| {
            condition(o, "Stalled").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
        condition(&obj, "Stalled").map(|c| c.2).unwrap_or_default()
    }
}

/// JetStream requests other than listings, plus Kubernetes writes: what an operator at rest
/// does not do.
fn activity(metrics: &str) -> f64 {
    let lists = metric_value(metrics, REQUESTS, &[("op", "stream.list")])
        + metric_value(metrics, REQUESTS, &[("op", "consumer.list")]);
    metric_value(metrics, REQUESTS, &[]) - lists + metric_value(metrics, KUBE_WRITES, &[])
}

/// The request and write counters of a /metrics text, for failure messages.
fn request_lines(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| (l.starts_with(REQUESTS) || l.starts_with(KUBE_WRITES)) && !l.ends_with(" 0"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many JetStream requests of `op` the operator made, whatever their outcome.
fn requests(metrics: &str, op: &str) -> f64 {
    metric_value(metrics, REQUESTS, &[("op", op)])
}

async fn create_object(api: &Api<DynamicObject>, obj: Value) {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let obj: DynamicObject =
        serde_json::from_value(obj).unwrap_or_else(|e| panic!("bad manifest {name}: {e}"));
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("cannot create {name}: {e}"));
}

/// Creates every `(plural, manifest)` in `ns`, `concurrency` requests in flight at once.
async fn create_all(cp: &ControlPlane, ns: &str, objs: Vec<(&str, Value)>, concurrency: usize) {
    // One client for all (a client per object would be a TLS handshake per object).
    let client = cp.client();
    let apis: BTreeMap<&str, Api<DynamicObject>> = objs
        .iter()
        .map(|(plural, _)| {
            let api = Api::namespaced_with(client.clone(), ns, &api_resource(plural));
            (*plural, api)
        })
        .collect();
    let apis = &apis;
    futures::stream::iter(objs)
        .map(|(plural, obj)| async move { create_object(&apis[plural], obj).await })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

/// A Stream manifest.
fn stream(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Stream",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A Consumer manifest.
fn consumer(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Consumer",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// `n` subjects of exactly `width` bytes each, all distinct and not overlapping, under
/// `prefix`.
fn long_subjects(prefix: &str, n: usize, width: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let head = format!("{prefix}.{i:05}.");
            assert!(
                head.len() < width,
                "subjects of {width} bytes are too short"
            );
            format!("{head}{}", "x".repeat(width - head.len()))
        })
        .collect()
}

/// Text of exactly `bytes` bytes of UTF-8: 4-, 3-, 2- and 1-byte characters, then ASCII.
fn mixed_text(bytes: usize) -> String {
    const UNIT: &str = "😀字éa";
    let mut s = UNIT.repeat(bytes / UNIT.len());
    s.push_str(&"x".repeat(bytes % UNIT.len()));
    assert_eq!(s.len(), bytes);
    s
}

/// Bytes the operator's ownership marker adds to the metadata of Stream `name` in `ns`
/// (`jetstream.nats.io/owner: <ns>/<name>`, `jetstream.nats.io/owner-kind: Stream`).
fn marker_bytes(ns: &str, name: &str) -> usize {
    "jetstream.nats.io/owner".len()
        + ns.len()
        + 1
        + name.len()
        + "jetstream.nats.io/owner-kind".len()
        + "Stream".len()
}

/// 128 entries (the schema's maximum) whose keys and values add up to exactly `bytes`.
fn metadata_of(bytes: usize) -> BTreeMap<String, String> {
    const KEYS: usize = 128;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i:03}")).collect();
    let mut left = bytes - keys.iter().map(String::len).sum::<usize>();
    let mut md = BTreeMap::new();
    for (i, k) in keys.into_iter().enumerate() {
        let len = left / (KEYS - i);
        left -= len;
        md.insert(k, mixed_text(len));
    }
    assert_eq!(
        md.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        bytes
    );
    md
}

/// The user part of a stream's metadata as the server holds it: without the keys the
/// server (`_nats.`) and the operator (`jetstream.nats.io/`) write.
fn user_metadata(config: &Value) -> BTreeMap<String, String> {
    config["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("_nats.") && !k.starts_with("jetstream.nats.io/"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The biggest objects

#[tokio::test]
async fn a_thousand_subjects_are_stored_exactly_and_the_operator_settles() {
    let env = Env::start("lim-subjects", &[]).await;
    // Not in sorted order, and of every shape the schema admits: literals, `*` and `>`
    // wildcards, tokens in Cyrillic, CJK and emoji.
    let subjects: Vec<String> = (0..1000)
        .map(|i| {
            let k = (i * 7919) % 1000;
            match k % 4 {
                0 => format!("orders.{k:04}.created"),
                1 => format!("orders.{k:04}.*.updated"),
                2 => format!("orders.{k:04}.archive.>"),
                _ => format!("заказы.{k:04}.注文.🚚"),
            }
        })
        .collect();
    env.create(
        "streams",
        stream(
            "thousand",
            json!({"name": "thousand", "subjects": subjects, "storage": "memory"}),
        ),
    )
    .await;
    wait_condition_for(&env.streams(), "thousand", "Ready", "True", BIG_WAIT).await;

    let config = env
        .stream_config("thousand")
        .await
        .expect("stream thousand");
    let stored = strings(&config["subjects"]);
    assert_eq!(
        stored.len(),
        1000,
        "the server holds {} subjects",
        stored.len()
    );
    for (i, (want, got)) in subjects.iter().zip(&stored).enumerate() {
        assert_eq!(want, got, "subject #{i} differs");
    }
    env.assert_settled("a stream with 1,000 subjects").await;
}

#[tokio::test]
async fn a_hundred_sources_are_stored_exactly_and_the_operator_settles() {
    const ORIGINS: usize = 100;
    let env = Env::start("lim-sources", &[]).await;
    let origin = |i: usize| format!("origin-{i:03}");
    // Every kind of source option, in turn: a filter, a subject transform, a start sequence,
    // nothing.
    let declared: Vec<(Value, Value)> = (0..ORIGINS)
        .map(|i| {
            let name = origin(i);
            match i % 4 {
                0 => (
                    json!({"name": name, "filterSubject": format!("origin.{i:03}.orders.>")}),
                    json!({"name": name, "filter_subject": format!("origin.{i:03}.orders.>")}),
                ),
                1 => (
                    json!({"name": name, "subjectTransforms": [
                        {"source": format!("origin.{i:03}.>"), "dest": format!("fan-in.{i:03}.>")}
                    ]}),
                    json!({"name": name, "subject_transforms": [
                        {"src": format!("origin.{i:03}.>"), "dest": format!("fan-in.{i:03}.>")}
                    ]}),
                ),
                2 => (
                    json!({"name": name, "optStartSeq": i}),
                    json!({"name": name, "opt_start_seq": i}),
                ),
                _ => (json!({"name": name}), json!({"name": name})),
            }
        })
        .collect();
    // The 100 origins and the stream that sources them, all applied at once.
    let mut objs: Vec<(&str, Value)> = (0..ORIGINS)
        .map(|i| {
            (
                "streams",
                stream(
                    &origin(i),
                    json!({"name": origin(i), "subjects": [format!("origin.{i:03}.>")], "storage": "memory"}),
                ),
            )
        })
        .collect();
    let sources: Vec<Value> = declared.iter().map(|(spec, _)| spec.clone()).collect();
    objs.push((
        "streams",
        stream(
            "fan-in",
            json!({"name": "fan-in", "sources": sources, "storage": "memory"}),
        ),
    ));
    create_all(env.cp, env.ns(), objs, 16).await;
    for name in (0..ORIGINS).map(origin).chain(["fan-in".to_owned()]) {
        wait_condition_for(&env.streams(), &name, "Ready", "True", BIG_WAIT).await;
    }

    let config = env.stream_config("fan-in").await.expect("stream fan-in");
    let stored = config["sources"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        stored.len(),
        ORIGINS,
        "the server holds {} sources",
        stored.len()
    );
    for (i, ((_, want), got)) in declared.iter().zip(&stored).enumerate() {
        assert_eq!(want, got, "source #{i} differs");
    }
    env.assert_settled("a stream with 100 sources").await;
}

#[tokio::test]
async fn metadata_up_to_the_servers_limit_is_stored_exactly_and_one_byte_more_stalls() {
    let env = Env::start("lim-metadata", &[]).await;
    // What the server allows for the user's entries: its limit, less the operator's marker,
    // less the `_nats.req.level: "0"` entry the server itself adds before it checks the size
    // (`setStaticStreamMetadata`, server/jetstream_versioning.go).
    let budget = |name: &str| JS_MAX_METADATA - marker_bytes(env.ns(), name) - SERVER_LEVEL_ENTRY;
    let at_limit = metadata_of(budget("md-at-limit"));
    let over = metadata_of(budget("md-over") + 1);
    env.create(
        "streams",
        stream(
            "md-at-limit",
            json!({"name": "md-at-limit", "metadata": at_limit, "storage": "memory"}),
        ),
    )
    .await;
    env.create(
        "streams",
        stream(
            "md-over",
            json!({"name": "md-over", "metadata": over, "storage": "memory"}),
        ),
    )
    .await;

    wait_condition_for(&env.streams(), "md-at-limit", "Ready", "True", BIG_WAIT).await;
    let config = env
        .stream_config("md-at-limit")
        .await
        .expect("stream md-at-limit");
    let stored = user_metadata(&config);
    assert_eq!(stored.len(), at_limit.len(), "number of metadata entries");
    for (k, v) in &at_limit {
        assert_eq!(stored.get(k), Some(v), "metadata entry {k} differs");
    }
    assert_eq!(
        config["metadata"]["jetstream.nats.io/owner"],
        json!(format!("{}/md-at-limit", env.ns()))
    );

    let message = env.wait_stalled_message("md-over", BIG_WAIT).await;
    assert!(
        message.contains("stream metadata exceeds maximum size of 131072 bytes"),
        "md-over is stalled without the server's reason: {message}"
    );
    assert!(env.stream_config("md-over").await.is_none());

    // More entries than the schema allows: refused at admission.
    let too_many: BTreeMap<String, String> = (0..129)
        .map(|i| (format!("key-{i:03}"), "v".into()))
        .collect();
    let stderr = apply_refused(
        env.cp,
        env.ns(),
        &stream("md-129", json!({"name": "md-129", "metadata": too_many})).to_string(),
    );
    assert!(
        stderr.contains("spec.metadata") && stderr.contains("must have at most 128 items"),
        "kubectl apply of 129 metadata entries failed without naming the limit: {stderr}"
    );
    env.assert_settled("metadata at and over the server's limit")
        .await;
}

#[tokio::test]
async fn subjects_filling_half_of_etcds_limit_are_stored_exactly() {
    // 700 KB of subjects: the spec, and the status that repeats them (`status.subjects`),
    // together just under etcd's 1.5 MiB.
    let env = Env::start("lim-half", &[]).await;
    let subjects = long_subjects("half", 700, 1000);
    env.create(
        "streams",
        stream(
            "half",
            json!({"name": "half", "subjects": subjects, "storage": "memory"}),
        ),
    )
    .await;
    wait_condition_for(&env.streams(), "half", "Ready", "True", BIG_WAIT).await;
    let config = env.stream_config("half").await.expect("stream half");
    assert!(
        strings(&config["subjects"]) == subjects,
        "the server does not hold the 700 declared subjects"
    );
    env.assert_settled("a stream with 700 KB of subjects").await;
}

#[tokio::test]
async fn subjects_too_big_to_repeat_in_the_status_end_ready_or_stalled() {
    // 800 KB of subjects: the apiserver stores the object and NATS the stream (the request is
    // under max_payload), but a status repeating the subjects would pass etcd's limit.
    let env = Env::start("lim-status", &[]).await;
    let subjects = long_subjects("status", 800, 1000);
    env.create(
        "streams",
        stream(
            "too-big-for-status",
            json!({"name": "too-big-for-status", "subjects": subjects, "storage": "memory"}),
        ),
    )
    .await;
    let obj = wait_object(
        &env.streams(),
        "too-big-for-status",
        "Ready=True or Stalled=True",
        Duration::from_secs(30),
        |o| {
            condition(o, "Ready").is_some_and(|(s, _, _)| s == "True")
                || condition(o, "Stalled").is_some_and(|(s, _, _)| s == "True")
        },
    )
    .await;
    if condition(&obj, "Ready").is_some_and(|(s, _, _)| s == "True") {
        let config = env
            .stream_config("too-big-for-status")
            .await
            .expect("stream too-big-for-status");
        assert!(
            strings(&config["subjects"]) == subjects,
            "Ready, but the server does not hold the 800 declared subjects"
        );
    } else {
        let (_, reason, message) = condition(&obj, "Stalled").unwrap_or_default();
        assert!(!message.is_empty(), "Stalled ({reason}) without a message");
    }
    env.assert_settled("a stream with 800 KB of subjects").await;
}

#[tokio::test]
async fn a_configuration_over_max_payload_stalls_with_a_clear_message() {
    // 1.1 MB of metadata: the apiserver stores the object, but the stream create, one NATS
    // message, is larger than the server's max_payload and cannot be sent at all.
    let env = Env::start("lim-payload", &[]).await;
    let metadata = metadata_of(MAX_PAYLOAD + 64 * 1024);
    env.create(
        "streams",
        stream(
            "over-max-payload",
            json!({"name": "over-max-payload", "metadata": metadata, "storage": "memory"}),
        ),
    )
    .await;
    let message = env
        .wait_stalled_message("over-max-payload", Duration::from_secs(20))
        .await;
    assert!(
        message.to_lowercase().contains("payload"),
        "over-max-payload is stalled without saying the request exceeds max_payload: {message}"
    );
    assert!(env.stream_config("over-max-payload").await.is_none());
    env.assert_settled("a stream configuration over max_payload")
        .await;
}

#[tokio::test]
async fn objects_over_the_apiservers_limits_are_refused_at_admission() {
    let cp = control_plane().await;
    let ns = TestNs::new("lim-admission").await;
    let api = dyn_api(cp, ns.name(), "streams");
    for (name, subjects, refusal) in [
        // Over etcd's 1.5 MiB request limit, under the apiserver's 3 MiB body limit.
        ("over-etcd", 1600, "etcdserver: request is too large"),
        // Over the apiserver's body limit.
        (
            "over-apiserver",
            3200,
            "Request entity too large: limit is 3145728",
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(stream(
            name,
            json!({"name": name, "subjects": long_subjects(name, subjects, 1000)}),
        ))
        .expect("manifest");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => panic!("the apiserver accepted {name} ({subjects} KB of subjects)"),
            Err(kube::Error::Api(s)) => assert!(
                s.message.contains(refusal),
                "{name} was refused without saying why ({refusal}): {} {}",
                s.code,
                s.message
            ),
            Err(e) => panic!("creating {name} failed without an API error: {e}"),
        }
        assert!(
            api.get_opt(name).await.expect("get").is_none(),
            "{name} exists after its create was refused"
        );
    }
}

#[tokio::test]
async fn a_create_slower_than_the_request_timeout_is_not_repeated_forever() {
    // The server checks each subject of a new stream against every other one, so a create
    // with 4,000 subjects takes it seconds, far longer than this operator's 300 ms request
    // timeout (with the default 10 s timeout the same happens from about 10,000 subjects).
    // The create times out but the server completes it: the stream it holds is exactly the
    // declared one, and the object must become Ready instead of repeating the create.
    let env = Env::start("lim-slow", &["--request-timeout", "300ms"]).await;
    let subjects: Vec<String> = (0..4000).map(|i| format!("slow.{i:05}")).collect();
    env.create(
        "streams",
        stream(
            "slow",
            json!({"name": "slow", "subjects": subjects, "storage": "memory"}),
        ),
    )
    .await;
    let config = wait_until(
        Duration::from_secs(60),
        "the server to finish creating stream slow",
        || env.stream_config("slow"),
    )
    .await;
    assert!(
        strings(&config["subjects"]) == subjects,
        "the server does not hold the 4,000 declared subjects"
    );
    wait_condition_for(
        &env.streams(),
        "slow",
        "Ready",
        "True",
        Duration::from_secs(30),
    )
    .await;
    env.assert_settled("a stream whose create outlasts the request timeout")
        .await;
}

// ---------------------------------------------------------------------------------------
// Names at the length limit

#[tokio::test]
async fn stream_names_at_the_length_limit_are_ready_and_one_over_is_refused() {
    let env = Env::start("lim-names", &[]).await;
    let ascii = format!("limit-{}", "x".repeat(JS_MAX_NAME - 6));
    let durable = "d".repeat(JS_MAX_NAME);
    // 85 three-byte characters: 255 bytes.
    let multibyte = "€".repeat(JS_MAX_NAME / 3);
    // 128 two-byte characters: 128 characters for the schema, 256 bytes for the server.
    let multibyte_over = "é".repeat(128);
    assert_eq!(
        (ascii.len(), multibyte.len(), multibyte_over.len()),
        (255, 255, 256)
    );

    // File storage: the name is also a directory name on the server's disk.
    env.create(
        "streams",
        stream(
            "ascii-at-limit",
            json!({"name": ascii, "subjects": ["names.ascii"]}),
        ),
    )
    .await;
    env.create(
        "streams",
        stream(
            "multibyte-at-limit",
            json!({"name": multibyte, "subjects": ["names.multibyte"]}),
        ),
    )
    .await;
    env.create(
        "consumers",
        consumer(
            "durable-at-limit",
            json!({"streamName": ascii, "durableName": durable, "ackPolicy": "explicit"}),
        ),
    )
    .await;
    env.create(
        "streams",
        stream(
            "multibyte-over",
            json!({"name": multibyte_over, "subjects": ["names.over"]}),
        ),
    )
    .await;

    for name in ["ascii-at-limit", "multibyte-at-limit"] {
        wait_condition_for(&env.streams(), name, "Ready", "True", BIG_WAIT).await;
    }
    wait_condition_for(
        &env.api("consumers"),
        "durable-at-limit",
        "Ready",
        "True",
        BIG_WAIT,
    )
    .await;
    for (stream_name, subject) in [(&ascii, "names.ascii"), (&multibyte, "names.multibyte")] {
        let config = env
            .stream_config(stream_name)
            .await
            .unwrap_or_else(|| panic!("the server has no stream named {stream_name}"));
        assert_eq!(config["name"], json!(stream_name));
        assert_eq!(config["subjects"], json!([subject]));
    }
    let info = env
        .js_api(&format!("$JS.API.CONSUMER.INFO.{ascii}.{durable}"))
        .await;
    assert_eq!(
        info["config"]["durable_name"],
        json!(durable),
        "CONSUMER.INFO of the 255-byte durable: {info}"
    );

    // One ASCII character over: refused at admission.
    let stderr = apply_refused(
        env.cp,
        env.ns(),
        &stream("ascii-over", json!({"name": "x".repeat(JS_MAX_NAME + 1)})).to_string(),
    );
    assert!(
        stderr.contains("spec.name") && stderr.contains("Too long"),
        "kubectl apply of a 256-character name failed without naming the limit: {stderr}"
    );
    // One byte over in two-byte characters: the schema counts 128 characters and admits it
    // (the apiserver's maxLength counts characters); the server refuses 256 bytes.
    let message = env.wait_stalled_message("multibyte-over", BIG_WAIT).await;
    assert!(
        message.contains("stream name is too long, maximum allowed is 255"),
        "multibyte-over is stalled without the server's reason: {message}"
    );
    assert!(env.stream_config(&multibyte_over).await.is_none());
    env.assert_settled("names at and over the length limit")
        .await;
}

// ---------------------------------------------------------------------------------------
// Unicode

#[tokio::test]
async fn unicode_descriptions_are_stored_exactly_without_drift() {
    let env = Env::start("lim-unicode", &[]).await;
    let descriptions: Vec<(&str, String)> = vec![
        (
            "emoji",
            "👩‍👩‍👧‍👦 family (ZWJ), 🏳️‍🌈 flag, 👍🏽 skin tone, 🇺🇦 regional indicators, 1️⃣ keycap, 🧑‍🚀".into(),
        ),
        (
            // Decomposed and precomposed forms side by side: nothing may normalise them.
            "combining",
            "e\u{301} vs \u{e9}; A\u{30a} vs \u{c5} vs \u{212b}; Z\u{351}\u{34a}\u{30d}a\u{35b}\u{321}l\u{300}\u{316}g\u{311}o; \u{1100}\u{1161}\u{11a8}".into(),
        ),
        (
            "rtl",
            "שלום עולם — مرحبا بالعالم \u{202e}desrever\u{202c} \u{200f}mark\u{200e} ١٢٣".into(),
        ),
        ("cjk", "流处理 ストリーム 스트림 𠜎𠜱𠝹𠱓 (CJK extension B)".into()),
        (
            "controls",
            "tab\there\nnew line\r\nCRLF \u{0} NUL \u{1b}[31m ANSI \u{2028} LS \u{feff} BOM \u{200b} ZWSP".into(),
        ),
        // The longest description the server takes: 4096 bytes of 1- to 4-byte characters.
        ("longest", mixed_text(JS_MAX_DESCRIPTION)),
    ];
    for (name, text) in &descriptions {
        env.create(
            "streams",
            stream(
                &format!("desc-{name}"),
                json!({"name": format!("desc-{name}"), "description": text, "storage": "memory"}),
            ),
        )
        .await;
    }
    // 4096 characters of CJK: within the schema's 4096 characters, three times the server's
    // 4096 bytes.
    env.create(
        "streams",
        stream(
            "desc-too-long",
            json!({"name": "desc-too-long", "description": "字".repeat(4096), "storage": "memory"}),
        ),
    )
    .await;

    for (name, text) in &descriptions {
        let stream_name = format!("desc-{name}");
        wait_condition_for(&env.streams(), &stream_name, "Ready", "True", BIG_WAIT).await;
        let config = env
            .stream_config(&stream_name)
            .await
            .unwrap_or_else(|| panic!("stream {stream_name}"));
        assert_eq!(
            config["description"].as_str(),
            Some(text.as_str()),
            "the server does not hold the declared description of {stream_name}"
        );
    }
    let message = env.wait_stalled_message("desc-too-long", BIG_WAIT).await;
    assert!(
        message.contains("stream description is too long, maximum allowed is 4096"),
        "desc-too-long is stalled without the server's reason: {message}"
    );
    // One ASCII character over the schema's limit: refused at admission.
    let stderr = apply_refused(
        env.cp,
        env.ns(),
        &stream(
            "desc-over",
            json!({"name": "desc-over", "description": "x".repeat(JS_MAX_DESCRIPTION + 1)}),
        )
        .to_string(),
    );
    assert!(
        stderr.contains("spec.description") && stderr.contains("Too long"),
        "kubectl apply of a 4097-character description failed without naming the limit: {stderr}"
    );

    env.assert_settled("Unicode descriptions").await;
    assert_eq!(
        requests(&env.metrics().await, "stream.update"),
        0.0,
        "the operator updated a stream it had just created from the same spec"
    );
}

// ---------------------------------------------------------------------------------------
// A namespace of many objects deleted at once

/// Waits until `total` Streams and Consumers of `ns` are Ready (watching, not listing).
async fn wait_all_ready(cp: &ControlPlane, ns: &str, total: usize, timeout: Duration) {
    let watches = ["streams", "consumers"].map(|plural| {
        watcher(dyn_api(cp, ns, plural), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .map(move |r| r.map(|o| (plural, o)))
            .boxed()
    });
    let mut all = futures::stream::select_all(watches);
    let mut ready: HashSet<(&str, String)> = HashSet::new();
    let done = tokio::time::timeout(timeout, async {
        while let Some(item) = all.next().await {
            let Ok((plural, obj)) = item else { continue };
            let key = (plural, obj.metadata.name.clone().unwrap_or_default());
            if condition(&obj, "Ready").is_some_and(|(s, _, _)| s == "True") {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
            if ready.len() == total {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(done, Ok(true)),
        "only {} of {total} objects became Ready within {timeout:?}",
        ready.len()
    );
}

/// How many Streams and Consumers `ns` still holds (one cheap list per kind: the first item
/// and the count of the rest).
async fn count_left(cp: &ControlPlane, ns: &str) -> usize {
    let mut left = 0;
    for plural in ["streams", "consumers"] {
        let list = dyn_api(cp, ns, plural)
            .list(&kube::api::ListParams::default().limit(1))
            .await
            .unwrap_or_else(|e| panic!("cannot list {plural} in {ns}: {e}"));
        let rest = list.metadata.remaining_item_count.unwrap_or(0);
        left += list.items.len() + usize::try_from(rest).unwrap_or(0);
    }
    left
}

#[tokio::test]
async fn deleting_a_namespace_of_many_objects_leaves_nothing_in_nats() {
    let total: usize = std::env::var("JSO_LIMITS_NS_OBJECTS")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("JSO_LIMITS_NS_OBJECTS={v}: {e}"))
        })
        .unwrap_or(NS_OBJECTS_DEFAULT);
    let n_streams = total.div_ceil(2);
    let n_consumers = total - n_streams;
    let cp = control_plane().await;
    let kcm = NamespaceController::start(cp).await;
    let env = Env::start("lim-ns", &["--resync-interval", "30s"]).await;
    let ns = env.ns().to_owned();

    // Streams `s-00000`, ..., one Consumer on each of the first ones; all applied at once.
    let objs: Vec<(&str, Value)> = (0..n_streams)
        .map(|i| {
            let name = format!("s-{i:05}");
            (
                "streams",
                stream(
                    &name,
                    json!({"name": name, "subjects": [format!("ns.{i:05}.>")], "storage": "memory"}),
                ),
            )
        })
        .chain((0..n_consumers).map(|i| {
            let name = format!("c-{i:05}");
            (
                "consumers",
                consumer(
                    &name,
                    json!({"streamName": format!("s-{i:05}"), "durableName": name, "ackPolicy": "explicit"}),
                ),
            )
        }))
        .collect();
    let t0 = Instant::now();
    create_all(cp, &ns, objs, 32).await;
    let created = t0.elapsed();
    let per_object = Duration::from_millis(100) * u32::try_from(total).unwrap_or(u32::MAX);
    wait_all_ready(cp, &ns, total, Duration::from_secs(60) + per_object).await;
    let all_ready = t0.elapsed();
    assert_eq!(
        env.asset_counts().await,
        (n_streams as u64, n_consumers as u64),
        "JetStream (streams, consumers) before the namespace is deleted"
    );

    let namespaces: Api<Namespace> = Api::all(cp.client());
    let t1 = Instant::now();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot delete namespace {ns}: {e}"));
    let deadline = Duration::from_secs(60) + per_object / 2;
    // When the last Stream and Consumer went (the operator released every finalizer), then
    // when the namespace itself went (kube-controller-manager's part).
    let emptied = std::cell::Cell::new(None);
    let gone = poll_until(deadline, || async {
        if emptied.get().is_none() && count_left(cp, &ns).await == 0 {
            emptied.set(Some(t1.elapsed()));
        }
        matches!(namespaces.get_opt(&ns).await, Ok(None)).then_some(())
    })
    .await
    .is_some();
    let deleted = t1.elapsed();
    if !gone {
        let left = count_left(cp, &ns).await;
        let phase = namespaces
            .get_opt(&ns)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.status)
            .map(|s| format!("{:?}", s.conditions))
            .unwrap_or_default();
        panic!(
            "namespace {ns} still exists {deadline:?} after its deletion, with {left} Streams \
             and Consumers; conditions: {phase}\nkube-controller-manager:\n{}",
            kcm.log()
        );
    }
    let counts = env.asset_counts().await;
    eprintln!(
        "limits: {total} objects ({n_streams} Streams, {n_consumers} Consumers): created in \
         {:.1} s, all Ready {:.1} s after the first create; after the namespace's deletion, \
         no object left after {:.1} s, namespace gone after {:.1} s; JetStream holds {} \
         streams and {} consumers",
        created.as_secs_f64(),
        all_ready.as_secs_f64(),
        emptied.get().unwrap_or(deleted).as_secs_f64(),
        deleted.as_secs_f64(),
        counts.0,
        counts.1
    );
    assert_eq!(
        counts,
        (0, 0),
        "JetStream (streams, consumers) after the namespace is gone"
    );
    assert!(!env.op.log().contains("panicked"), "the operator panicked");
}
