//! End to end: the Helm chart on a single-node cluster with real pods (`make e2e`).
//!
//! `scripts/e2e` starts the node (`scripts/local-env node-start`, images built from the
//! repository without a registry), runs this binary inside the node's network namespace with
//! `JSO_E2E_DIR` naming the node's directory, and stops the node whatever happens. Without
//! the `e2e` feature this file is empty, so `make test` never runs it.
//!
//! One test walks through the life of an installation, in order:
//!
//! 1. README.md's `helm install` line, as it is (default values, no image overrides): the
//!    NATS pod and the operator pod Running and Ready through their probes;
//! 2. `kubectl apply -f examples/`: every object Ready through the in-cluster operator,
//!    which reaches the in-cluster NATS by its Service name; messages, a key and an object
//!    stored;
//! 3. the operator pod deleted: a new pod takes over, the objects stay Ready, nothing is
//!    recreated or written;
//! 4. the NATS pod deleted: it comes back on the same volume with the streams and messages,
//!    the operator reconnects by itself (the memory stream, lost with the server, is
//!    recreated; a new Stream becomes Ready; a stream deleted behind its back is repaired);
//! 5. `helm upgrade --set replicas=2`: the single operator stops before an elected one
//!    starts, one leader, the other a Ready follower; the leader pod deleted: another
//!    replica (the follower, or the replacement pod if it is quicker) takes over and
//!    reconciles a new Stream;
//! 6. `helm uninstall`: the CRDs, the objects (with their finalizers) and the broker's
//!    volume stay, everything else of the release goes, as the chart's README says; the same
//!    install again finds the streams and messages on that volume;
//! 7. `helm upgrade --set nats.cluster.enabled=true` of a one-node broker is refused;
//! 8. the chart's 3-node NATS cluster (a new release taking over the kept CRDs): a
//!    `replicas: 3` Stream Ready, its leader's pod deleted: the stream answers and takes
//!    messages while the pod is away, and the pod catches up when it is back.
//!
//! Each step prints its timings on lines starting with `E2E ` (printed, not asserted: the
//! machine is shared). When a step fails, the cluster's state, every pod's description and
//! logs, and the events go to `$JSO_E2E_DIR/diagnostics/`.
#![cfg(feature = "e2e")]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use support::*;
use tokio::io::AsyncReadExt as _;

/// Namespace of the examples and of every object this test creates.
const APPS: &str = "apps";
/// The second release: the chart's 3-node NATS cluster.
const HA_RELEASE: &str = "jso-ha";
const HA_NS: &str = "jetstream-ha";
/// How long pods may take to become Ready (the machine is shared with other builds).
const PODS_WAIT: Duration = Duration::from_secs(180);
/// How long objects may take to become Ready.
const OBJECTS_WAIT: Duration = Duration::from_secs(120);
/// The operator's admin port (the chart's adminPort).
const ADMIN_PORT: u16 = 8080;
/// Metric names of the operator.
const RECONCILES: &str = "jetstream_operator_reconciles_total";
const REQUESTS: &str = "jetstream_operator_jetstream_requests_total";
const KUBE_WRITES: &str = "jetstream_operator_kubernetes_writes_total";
const LEADER: &str = "jetstream_operator_leader";
/// The example objects (examples/*.yaml): plural and name.
const EXAMPLES: [(&str, &str); 6] = [
    ("streams", "sync"),
    ("streams", "notifications"),
    ("streams", "reports"),
    ("consumers", "notifier"),
    ("keyvalues", "settings"),
    ("objectstores", "report-files"),
];
/// The streams behind the examples that live on disk, and the one in memory (which a
/// restart of nats-server loses).
const FILE_STREAMS: [&str; 4] = ["sync", "notifications", "KV_settings", "OBJ_report-files"];
const MEMORY_STREAM: &str = "reports";
const CRD_PLURALS: [&str; 5] = [
    "streams",
    "consumers",
    "keyvalues",
    "objectstores",
    "accounts",
];

// ---------------------------------------------------------------------------------------
// The node, helm and the release

/// The node `scripts/e2e` started: its directory and control plane.
struct Node {
    dir: PathBuf,
    cp: ControlPlane,
    helm_home: tempfile::TempDir,
}

impl Node {
    async fn from_env() -> Node {
        let dir = std::env::var_os("JSO_E2E_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "JSO_E2E_DIR is not set: tests/e2e.rs runs on the node that `make e2e` starts \
                 (as root, after scripts/install-tools --node); run `make e2e`"
                )
            });
        let kubeconfig = dir.join("admin.kubeconfig");
        assert!(
            kubeconfig.is_file(),
            "no {} : start the node with scripts/local-env node-start (make e2e does)",
            kubeconfig.display()
        );
        let cp = ControlPlane::attach(dir.clone(), kubeconfig).await;
        let helm_home = tempfile::Builder::new()
            .prefix("jso-e2e-helm-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Node { dir, cp, helm_home }
    }

    /// `helm ARGS --kubeconfig <admin>` from the repository root, with homes of its own.
    fn helm(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool("helm"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(&self.cp.kubeconfig)
            .current_dir(repo_root())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        for (var, sub) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            cmd.env(var, self.helm_home.path().join(sub));
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run helm: {e}"))
    }

    /// `helm ARGS`, asserting success; returns stdout.
    fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "helm {} failed ({}):\nstderr: {}\nstdout: {}",
            args.join(" "),
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A release of the chart: its name and namespace, and the names the chart derives.
#[derive(Clone)]
struct Release {
    name: String,
    namespace: String,
}

impl Release {
    /// `<release>-jetstream-operator`, or the release name when it contains the chart name.
    fn fullname(&self) -> String {
        if self.name.contains("jetstream-operator") {
            self.name.clone()
        } else {
            format!("{}-jetstream-operator", self.name)
        }
    }

    fn nats(&self) -> String {
        format!("{}-nats", self.fullname())
    }

    fn selector(&self, component: &str) -> String {
        format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component={component}",
            self.name
        )
    }
}

/// The `helm install` line of README.md's "Installing" section, split into arguments:
/// what `make e2e` runs is what the README tells people to run.
fn readme_install() -> Vec<String> {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let section = readme
        .split("\n## Installing\n")
        .nth(1)
        .expect("README.md has an \"## Installing\" section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("helm install "))
        .expect("README.md's Installing section has a `helm install` line");
    assert!(
        !line.contains(['\\', '"', '\'', '$']),
        "the README's install line is no longer a plain command line: {line}"
    );
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

/// The release an install command line creates: `install NAME CHART -n NS ...`.
fn release_of(args: &[String]) -> Release {
    let ns = args
        .iter()
        .position(|a| a == "-n" || a == "--namespace")
        .and_then(|i| args.get(i + 1))
        .expect("the install line names a namespace")
        .clone();
    Release {
        name: args[1].clone(),
        namespace: ns,
    }
}

// ---------------------------------------------------------------------------------------
// Timings

/// The numbers of the run: printed as they come (`E2E <what>: <n> s`) and again at the end.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn time(&mut self, what: &str, d: Duration) {
        self.note(&format!("{what}: {:.2} s", d.as_secs_f64()));
    }

    fn note(&mut self, line: &str) {
        eprintln!("E2E {line}");
        self.lines.push(line.to_owned());
    }

    fn step(&self, title: &str) {
        eprintln!("E2E ===== {title}");
    }

    fn summary(&self) {
        eprintln!("E2E ===== summary");
        for l in &self.lines {
            eprintln!("E2E   {l}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pods

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn pod_uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| panic!("pod {} has no IP", pod_name(p)))
}

fn pod_condition(p: &Pod, type_: &str) -> Option<(String, Option<jiff::Timestamp>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
}

/// Ready (its probes pass) and not being deleted.
fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && pod_condition(p, "Ready").is_some_and(|(s, _)| s == "True")
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn describe(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "{} phase={:?} ready={} deleting={} restarts={}",
                pod_name(p),
                p.status.as_ref().and_then(|s| s.phase.clone()),
                is_ready(p),
                p.metadata.deletion_timestamp.is_some(),
                restarts(p)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn list_pods(cp: &ControlPlane, ns: &str, selector: &str) -> Vec<Pod> {
    let mut pods = Api::<Pod>::namespaced(cp.client(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("cannot list pods {selector} in {ns}: {e}"))
        .items;
    pods.sort_by_key(pod_name);
    pods
}

/// Polls the pods of `selector` in `ns` every 100 ms, handing each listing to `step`, until
/// it returns true; panics with `what` and the last listing after `timeout`.
async fn poll_pods(
    cp: &ControlPlane,
    ns: &str,
    selector: &str,
    timeout: Duration,
    what: &str,
    mut step: impl FnMut(&[Pod]) -> bool,
) -> Vec<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = list_pods(cp, ns, selector).await;
        if step(&pods) {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; pods: {}",
            describe(&pods)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the release's `nats_n` NATS pods and one operator pod are Ready (and no
/// other pod of it is left); prints when each was first seen Ready after `since` and what
/// its own status says; checks images, probes and restarts. Returns (NATS pods, operator pod).
async fn release_pods_ready(
    cp: &ControlPlane,
    release: &Release,
    nats_n: usize,
    since: (Instant, jiff::Timestamp),
    app_version: &str,
    title: &str,
    report: &mut Report,
) -> (Vec<Pod>, Pod) {
    let component = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/component").cloned())
            .unwrap_or_default()
    };
    let mut first_ready = BTreeMap::new();
    let pods = poll_pods(
        cp,
        &release.namespace,
        &format!("app.kubernetes.io/instance={}", release.name),
        PODS_WAIT,
        &format!("{nats_n} NATS pod(s) and one operator pod Ready"),
        |pods| {
            for p in pods.iter().filter(|p| is_ready(p)) {
                first_ready
                    .entry(pod_name(p))
                    .or_insert_with(|| since.0.elapsed());
            }
            let count = |c: &str| pods.iter().filter(|p| component(p) == c).count();
            count("nats") == nats_n
                && count("operator") == 1
                && pods.len() == nats_n + 1
                && pods.iter().all(is_ready)
        },
    )
    .await;
    for p in &pods {
        let name = pod_name(p);
        report.note(&format!(
            "{title}: pod {name} Ready {:.2} s after helm install ({})",
            first_ready
                .get(&name)
                .copied()
                .unwrap_or_default()
                .as_secs_f64(),
            kubelet_timeline(p, since.1)
        ));
    }
    let (nats, ops): (Vec<Pod>, Vec<Pod>) = pods.into_iter().partition(|p| component(p) == "nats");
    for p in &nats {
        assert_nats_pod(p).await;
    }
    assert_operator_pod(&ops[0], app_version).await;
    (nats, ops.into_iter().next().expect("the operator pod"))
}

/// What the pod's own status says, relative to `since` (the API's timestamps have a
/// one-second resolution).
fn kubelet_timeline(p: &Pod, since: jiff::Timestamp) -> String {
    let rel = |t: Option<jiff::Timestamp>| {
        t.map(|t| {
            format!(
                "{:+.0} s",
                (t.as_millisecond() - since.as_millisecond()) as f64 / 1e3
            )
        })
        .unwrap_or_else(|| "-".into())
    };
    let started = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0);
    format!(
        "created {}, scheduled {}, container started {}, Ready {}",
        rel(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        rel(pod_condition(p, "PodScheduled").and_then(|c| c.1)),
        rel(started),
        rel(pod_condition(p, "Ready").and_then(|c| c.1)),
    )
}

/// The container's image and probes are the chart's defaults, and the endpoints its probes
/// name answer 200 from the node's network (where kubelet probes them).
async fn assert_operator_pod(p: &Pod, app_version: &str) {
    let c = &p.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(format!("ghcr.io/jetstream-operator/jetstream-operator:{app_version}").as_str()),
        "the operator runs the chart's default image"
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/livez"));
    let addr = format!("{}:{ADMIN_PORT}", pod_ip(p));
    for probe in ["/readyz", "/livez"] {
        let got = http_get(&addr, probe).await;
        assert!(
            matches!(got, Ok((200, _))),
            "{} {probe}: {got:?}",
            pod_name(p)
        );
    }
    assert_eq!(restarts(p), 0, "{} restarted", pod_name(p));
}

async fn assert_nats_pod(p: &Pod) {
    let c = &p.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("nats:2.12-alpine"),
        "the broker runs the chart's default image"
    );
    for (probe, name) in [
        (&c.startup_probe, "startup"),
        (&c.readiness_probe, "readiness"),
        (&c.liveness_probe, "liveness"),
    ] {
        let path = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone());
        assert_eq!(
            path.as_deref(),
            Some("/healthz?js-enabled-only=true"),
            "{name} probe of {}",
            pod_name(p)
        );
    }
    let got = http_get(
        &format!("{}:8222", pod_ip(p)),
        "/healthz?js-enabled-only=true",
    )
    .await;
    assert!(matches!(got, Ok((200, _))), "{}: {got:?}", pod_name(p));
    assert_eq!(restarts(p), 0, "{} restarted", pod_name(p));
}

/// The operator's /metrics, fetched from its pod.
async fn pod_metrics(p: &Pod) -> String {
    metrics(&format!("{}:{ADMIN_PORT}", pod_ip(p))).await
}

/// Waits until the operator of pod `p` has ended at least `n` reconciles with the object
/// Ready (each of `n` objects verified once since it started).
async fn wait_reconciled(p: &Pod, n: usize) -> String {
    wait_until(
        OBJECTS_WAIT,
        &format!("{} to reconcile {n} objects", pod_name(p)),
        || async move {
            let m = http_get(&format!("{}:{ADMIN_PORT}", pod_ip(p)), "/metrics")
                .await
                .ok()?
                .1;
            (metric_value(&m, RECONCILES, &[("outcome", "ready")]) >= n as f64).then_some(m)
        },
    )
    .await
}

/// Creates and updates the operator of these metrics sent to JetStream.
fn js_writes(m: &str) -> f64 {
    [
        "stream.create",
        "stream.update",
        "consumer.create",
        "consumer.update",
    ]
    .iter()
    .map(|op| metric_value(m, REQUESTS, &[("op", op), ("outcome", "ok")]))
    .sum()
}

// ---------------------------------------------------------------------------------------
// Objects and assets

/// The objects this test declared (plural, name), all in `APPS`.
struct Objects(Vec<(&'static str, String)>);

impl Objects {
    fn examples() -> Objects {
        Objects(
            EXAMPLES
                .iter()
                .map(|(p, n)| (*p, (*n).to_owned()))
                .collect(),
        )
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn push(&mut self, plural: &'static str, name: &str) {
        self.0.push((plural, name.to_owned()));
    }

    /// Waits until every object is Ready at its current generation.
    async fn wait_ready(&self, cp: &ControlPlane) {
        for (plural, name) in &self.0 {
            wait_condition_for(
                &dyn_api(cp, APPS, plural),
                name,
                "Ready",
                "True",
                OBJECTS_WAIT,
            )
            .await;
        }
    }

    /// `plural/name -> (uid, finalizers)`.
    async fn identities(&self, cp: &ControlPlane) -> BTreeMap<String, (String, Vec<String>)> {
        let mut out = BTreeMap::new();
        for (plural, name) in &self.0 {
            let o = dyn_api(cp, APPS, plural)
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("{plural}/{name}: {e}"));
            out.insert(
                format!("{plural}/{name}"),
                (
                    o.metadata.uid.unwrap_or_default(),
                    o.metadata.finalizers.unwrap_or_default(),
                ),
            );
        }
        out
    }
}

/// A Stream manifest (file storage unless told).
fn stream_yaml(name: &str, extra: &str) -> String {
    manifest(
        "Stream",
        name,
        &format!("name: {name}\nsubjects: [\"{name}.>\"]\nstorage: file\n{extra}"),
    )
}

/// What JetStream holds of a stream that must survive: when it was created and its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StreamFacts {
    created: i128,
    messages: u64,
    last_seq: u64,
}

async fn stream_facts(
    js: &async_nats::jetstream::Context,
    names: &[&str],
) -> BTreeMap<String, StreamFacts> {
    let mut out = BTreeMap::new();
    for name in names {
        let info = stream_info(js, name)
            .await
            .unwrap_or_else(|| panic!("stream {name} is not in JetStream"));
        out.insert(
            (*name).to_owned(),
            StreamFacts {
                created: info.created.unix_timestamp_nanos(),
                messages: info.state.messages,
                last_seq: info.state.last_sequence,
            },
        );
    }
    out
}

/// The creation time of the examples' consumer.
async fn consumer_created(js: &async_nats::jetstream::Context) -> i128 {
    consumer_info(js, "notifications", "notifier")
        .await
        .expect("consumer notifier on notifications")
        .created
        .unix_timestamp_nanos()
}

/// Waits until every one of `names` is a stream in JetStream.
async fn wait_streams(js: &async_nats::jetstream::Context, names: &[String]) {
    wait_until(
        OBJECTS_WAIT,
        &format!("the streams {names:?} in JetStream"),
        || async {
            let have = stream_names(js).await;
            names.iter().all(|n| have.contains(n)).then_some(())
        },
    )
    .await;
}

/// A JetStream client on the ClusterIP of the release's NATS Service (reachable from the
/// node's network namespace). Waits until JetStream answers.
async fn jetstream(
    cp: &ControlPlane,
    release: &Release,
) -> (async_nats::Client, async_nats::jetstream::Context) {
    let svc = Api::<Service>::namespaced(cp.client(), &release.namespace)
        .get(&release.nats())
        .await
        .unwrap_or_else(|e| panic!("Service {}: {e}", release.nats()));
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the NATS Service has a ClusterIP");
    let url = format!("nats://{ip}:4222");
    let client = wait_until(PODS_WAIT, &format!("a connection to {url}"), || {
        let url = url.clone();
        async move { async_nats::connect(&url).await.ok() }
    })
    .await;
    let js = async_nats::jetstream::new(client.clone());
    wait_until(PODS_WAIT, "JetStream to answer on the Service", || {
        let js = js.clone();
        async move { js.query_account().await.ok() }
    })
    .await;
    (client, js)
}

async fn publish(js: &async_nats::jetstream::Context, subject: &str, payload: String) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("no ack for {subject}: {e}"));
}

/// The content the test stores through the examples, to find it again after restarts.
const OBJECT_NAME: &str = "q3.csv";
fn object_content() -> Vec<u8> {
    (0..64 * 1024u32).map(|i| (i % 251) as u8).collect()
}

async fn store_content(js: &async_nats::jetstream::Context) {
    for i in 0..10 {
        publish(js, &format!("sync.e2e.{i}"), format!("sync {i}")).await;
    }
    for i in 0..5 {
        publish(js, "notifications.e2e", format!("notification {i}")).await;
    }
    js.get_key_value("settings")
        .await
        .expect("bucket settings")
        .put("mode", "e2e".into())
        .await
        .expect("put settings/mode");
    js.get_object_store("report-files")
        .await
        .expect("object store report-files")
        .put(OBJECT_NAME, &mut object_content().as_slice())
        .await
        .expect("put an object");
}

async fn assert_content(js: &async_nats::jetstream::Context) {
    let value = js
        .get_key_value("settings")
        .await
        .expect("bucket settings")
        .get("mode")
        .await
        .expect("get settings/mode");
    assert_eq!(value.as_deref(), Some(&b"e2e"[..]), "the key is gone");
    let mut object = js
        .get_object_store("report-files")
        .await
        .expect("object store report-files")
        .get(OBJECT_NAME)
        .await
        .expect("get the object");
    let mut back = Vec::new();
    object
        .read_to_end(&mut back)
        .await
        .expect("read the object");
    assert!(back == object_content(), "the object came back different");
}

// ---------------------------------------------------------------------------------------
// Failure diagnostics

/// When the test fails: the cluster's state, pod descriptions and logs (with the previous
/// container's), events and helm's view into `<node dir>/diagnostics/`.
struct Diagnostics {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Diagnostics {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let out = self.dir.join("diagnostics");
        let _ = std::fs::create_dir_all(&out);
        let kubectl = |args: &[&str]| -> String {
            Command::new(tool("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map(|o| format!("{}{}", text(&o.stdout), text(&o.stderr)))
                .unwrap_or_else(|e| format!("cannot run kubectl: {e}"))
        };
        let save = |file: &str, body: String| {
            let _ = std::fs::write(out.join(file), body);
        };
        save(
            "resources.txt",
            kubectl(&[
                "get",
                "nodes,all,pvc,pv,leases,configmaps,crds",
                "-A",
                "-o",
                "wide",
            ]),
        );
        save(
            "objects.yaml",
            kubectl(&["get", "jetstream", "-A", "-o", "yaml"]),
        );
        save("pods.txt", kubectl(&["describe", "pods", "-A"]));
        save(
            "events.txt",
            kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
        );
        let pods = kubectl(&[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}",
        ]);
        for line in pods.lines() {
            let Some((ns, name)) = line.split_once(' ') else {
                continue;
            };
            let mut logs = kubectl(&["logs", "-n", ns, name, "--all-containers"]);
            let previous = kubectl(&["logs", "-n", ns, name, "--all-containers", "--previous"]);
            if !previous.contains("not found") {
                logs = format!("{previous}\n----- current container -----\n{logs}");
            }
            save(&format!("logs-{ns}-{name}.txt"), logs);
        }
        eprintln!(
            "E2E failed: cluster state, pod descriptions, logs and events in {}; the node's \
             own logs in {}/*.log",
            out.display(),
            self.dir.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The test

struct Ctx {
    node: Node,
    release: Release,
    install: Vec<String>,
    app_version: String,
    objects: Objects,
    /// What JetStream held of the streams on disk before the release was uninstalled.
    kept: BTreeMap<String, StreamFacts>,
    report: Report,
}

impl Ctx {
    fn cp(&self) -> &ControlPlane {
        &self.node.cp
    }

    fn ns(&self) -> &str {
        &self.release.namespace
    }

    /// The JetStream streams behind the objects (buckets as KV_/OBJ_ streams).
    fn stream_names(&self) -> Vec<String> {
        self.objects
            .0
            .iter()
            .filter_map(|(plural, name)| match *plural {
                "streams" => Some(name.clone()),
                "keyvalues" => Some(format!("KV_{name}")),
                "objectstores" => Some(format!("OBJ_{name}")),
                _ => None,
            })
            .collect()
    }

    async fn operator_pods(&self) -> Vec<Pod> {
        list_pods(self.cp(), self.ns(), &self.release.selector("operator")).await
    }

    /// Runs README.md's install line; waits for the operator and NATS pods (one each).
    async fn install_from_readme(&mut self, title: &str) {
        let args: Vec<&str> = self.install.iter().map(String::as_str).collect();
        let since_wall = jiff::Timestamp::now();
        let t0 = Instant::now();
        let out = self.node.helm_ok(&args);
        assert!(out.contains("STATUS: deployed"), "{out}");
        self.report
            .time(&format!("{title}: helm install returned"), t0.elapsed());
        let (release, version) = (self.release.clone(), self.app_version.clone());
        release_pods_ready(
            &self.node.cp,
            &release,
            1,
            (t0, since_wall),
            &version,
            title,
            &mut self.report,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_operator_and_nats_through_their_lifecycle() {
    let node = Node::from_env().await;
    let _diagnostics = Diagnostics {
        dir: node.dir.clone(),
        kubeconfig: node.cp.kubeconfig.clone(),
    };
    let install = readme_install();
    let release = release_of(&install);
    let app_version =
        std::fs::read_to_string(repo_root().join("charts/jetstream-operator/Chart.yaml"))
            .expect("Chart.yaml")
            .lines()
            .find_map(|l| l.strip_prefix("appVersion:"))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .expect("appVersion in Chart.yaml");
    let mut ctx = Ctx {
        node,
        release,
        install,
        app_version,
        objects: Objects::examples(),
        kept: BTreeMap::new(),
        report: Report::default(),
    };
    let t_all = Instant::now();

    install_with_defaults(&mut ctx).await;
    let js = examples_become_ready(&mut ctx).await;
    operator_pod_deleted(&mut ctx, &js).await;
    nats_pod_deleted(&mut ctx, &js).await;
    two_replicas_and_failover(&mut ctx, &js).await;
    drop(js);
    uninstall_keeps_what_the_chart_says(&mut ctx).await;
    install_again_finds_the_assets(&mut ctx).await;
    cluster_switch_of_a_running_broker_is_refused(&mut ctx).await;
    nats_cluster(&mut ctx).await;

    ctx.report.time("whole test", t_all.elapsed());
    ctx.report.summary();
}

/// README.md's `helm install`, with the chart's defaults: nothing overridden, not even the
/// images (they are built with the chart's names and found with IfNotPresent).
async fn install_with_defaults(ctx: &mut Ctx) {
    ctx.report
        .step(&format!("install: {}", ctx.install.join(" ")));
    assert!(
        !ctx.install
            .iter()
            .any(|a| a.starts_with("--set") || a == "-f" || a.starts_with("--values")),
        "the README's install line overrides values: {:?}",
        ctx.install
    );
    ctx.install_from_readme("install").await;
    let ops = ctx.operator_pods().await;
    let args = ops[0].spec.as_ref().expect("spec").containers[0]
        .args
        .clone()
        .unwrap_or_default();
    let servers = format!(
        "--servers=nats://{}.{}.svc:4222",
        ctx.release.nats(),
        ctx.ns()
    );
    assert!(
        args.contains(&servers),
        "the operator is not pointed at the NATS Service by name: {args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--leader-election")),
        "one replica runs without leader election by default: {args:?}"
    );
}

/// `kubectl apply -f examples/`: every object Ready through the in-cluster operator.
async fn examples_become_ready(ctx: &mut Ctx) -> async_nats::jetstream::Context {
    ctx.report.step("examples");
    let cp = &ctx.node.cp;
    kubectl_ok(cp, &["create", "namespace", APPS]);
    let examples = repo_root().join("examples");
    let t0 = Instant::now();
    kubectl_ok(
        cp,
        &["apply", "-n", APPS, "-f", &examples.to_string_lossy()],
    );
    ctx.objects.wait_ready(cp).await;
    ctx.report.time(
        "examples: kubectl apply -> all 6 objects Ready",
        t0.elapsed(),
    );

    let (_client, js) = jetstream(cp, &ctx.release).await;
    let mut names = stream_names(&js).await;
    names.sort();
    let mut want: Vec<String> = FILE_STREAMS
        .iter()
        .chain([&MEMORY_STREAM])
        .map(|s| (*s).to_owned())
        .collect();
    want.sort();
    assert_eq!(names, want, "the streams in the in-cluster NATS");
    let sync = get_stream_config(&js, "sync").await.expect("sync");
    assert_eq!(sync.subjects, vec!["sync.>".to_owned()]);
    let notifier = consumer_info(&js, "notifications", "notifier")
        .await
        .expect("consumer notifier");
    assert_eq!(notifier.config.max_deliver, 5);
    store_content(&js).await;
    assert_content(&js).await;
    // By the Service's name (the objects are Ready, so the connection works).
    let ops = ctx.operator_pods().await;
    let log = kubectl_ok(cp, &["logs", "-n", ctx.ns(), &pod_name(&ops[0])]);
    let url = format!(
        "servers=nats://{}.{}.svc:4222",
        ctx.release.nats(),
        ctx.ns()
    );
    assert!(
        log.lines()
            .any(|l| l.contains("connected to NATS") && l.contains(&url)),
        "the operator's log shows no connection to {url}:\n{log}"
    );
    js
}

/// The operator pod deleted: a new one takes over; the objects stay Ready and nothing is
/// created, updated or written again.
async fn operator_pod_deleted(ctx: &mut Ctx, js: &async_nats::jetstream::Context) {
    ctx.report.step("operator pod deleted");
    let cp = &ctx.node.cp;
    let ns = ctx.release.namespace.clone();
    let ops = ctx.operator_pods().await;
    assert_eq!(ops.len(), 1, "{}", describe(&ops));
    let old = pod_name(&ops[0]);
    let facts = stream_facts(js, &FILE_STREAMS).await;
    let consumer = consumer_created(js).await;
    let ids = ctx.objects.identities(cp).await;

    let t0 = Instant::now();
    kubectl_ok(cp, &["delete", "pod", &old, "-n", &ns, "--wait=false"]);
    let (mut gone, mut ready) = (None, None);
    let pods = poll_pods(
        cp,
        &ns,
        &ctx.release.selector("operator"),
        PODS_WAIT,
        "a new operator pod Ready and the old one gone",
        |pods| {
            if gone.is_none() && !pods.iter().any(|p| pod_name(p) == old) {
                gone = Some(t0.elapsed());
            }
            if ready.is_none() && pods.iter().any(|p| pod_name(p) != old && is_ready(p)) {
                ready = Some(t0.elapsed());
            }
            gone.is_some() && ready.is_some() && pods.len() == 1
        },
    )
    .await;
    let new = &pods[0];
    let m = wait_reconciled(new, ctx.objects.len()).await;
    let verified = t0.elapsed();
    ctx.objects.wait_ready(cp).await;
    ctx.report.time(
        "operator pod deleted -> old pod gone",
        gone.unwrap_or_default(),
    );
    ctx.report.time(
        "operator pod deleted -> new pod Ready",
        ready.unwrap_or_default(),
    );
    ctx.report.time(
        "operator pod deleted -> every object reconciled by the new pod",
        verified,
    );
    assert_operator_pod(new, &ctx.app_version).await;
    assert_eq!(
        js_writes(&m),
        0.0,
        "the new operator wrote to JetStream:\n{m}"
    );
    assert_eq!(
        metric_value(&m, KUBE_WRITES, &[]),
        0.0,
        "the new operator wrote to Kubernetes:\n{m}"
    );
    assert_eq!(
        stream_facts(js, &FILE_STREAMS).await,
        facts,
        "streams changed"
    );
    assert_eq!(
        consumer_created(js).await,
        consumer,
        "the consumer was recreated"
    );
    assert_eq!(
        ctx.objects.identities(cp).await,
        ids,
        "objects were recreated"
    );
}

/// The NATS pod deleted: it comes back on the same volume with every stream, message, key
/// and object; the operator reconnects by itself.
async fn nats_pod_deleted(ctx: &mut Ctx, js: &async_nats::jetstream::Context) {
    ctx.report.step("NATS pod deleted");
    let cp = &ctx.node.cp;
    let ns = ctx.release.namespace.clone();
    let pod = format!("{}-0", ctx.release.nats());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(cp.client(), &ns);
    let claim = format!("data-{pod}");
    let volume = pvcs
        .get(&claim)
        .await
        .unwrap_or_else(|e| panic!("PVC {claim}: {e}"))
        .spec
        .and_then(|s| s.volume_name)
        .expect("the broker's claim is bound");
    let facts = stream_facts(js, &FILE_STREAMS).await;
    let memory_created = stream_facts(js, &[MEMORY_STREAM]).await[MEMORY_STREAM].created;
    let consumer = consumer_created(js).await;
    let operator = pod_name(&ctx.operator_pods().await[0]);
    let old_uid = pod_uid(
        &list_pods(cp, &ns, &ctx.release.selector("nats"))
            .await
            .into_iter()
            .find(|p| pod_name(p) == pod)
            .expect("the NATS pod"),
    );

    let t0 = Instant::now();
    kubectl_ok(cp, &["delete", "pod", &pod, "-n", &ns, "--wait=false"]);
    let (mut gone, mut ready) = (None, None);
    let pods = poll_pods(
        cp,
        &ns,
        &ctx.release.selector("nats"),
        PODS_WAIT,
        "the NATS pod back and Ready",
        |pods| {
            if gone.is_none() && !pods.iter().any(|p| pod_uid(p) == old_uid) {
                gone = Some(t0.elapsed());
            }
            if gone.is_some() && ready.is_none() && pods.iter().any(is_ready) {
                ready = Some(t0.elapsed());
            }
            ready.is_some()
        },
    )
    .await;
    // The operator finds the memory stream gone with the old server and creates it again:
    // it is connected again, by itself.
    wait_until(
        OBJECTS_WAIT,
        "the operator to recreate the memory stream",
        || async {
            let info = js.get_stream(MEMORY_STREAM).await.ok()?;
            (info.cached_info().created.unix_timestamp_nanos() != memory_created).then_some(())
        },
    )
    .await;
    let repaired = t0.elapsed();
    ctx.objects.wait_ready(cp).await;
    let all_ready = t0.elapsed();
    ctx.report
        .time("NATS pod deleted -> old pod gone", gone.unwrap_or_default());
    ctx.report.time(
        "NATS pod deleted -> new pod Ready",
        ready.unwrap_or_default(),
    );
    ctx.report.time(
        "NATS pod deleted -> operator reconnected and recreated the memory stream",
        repaired,
    );
    ctx.report
        .time("NATS pod deleted -> every object Ready again", all_ready);

    assert_nats_pod(&pods[0]).await;
    let same_claim = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| {
            vs.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
        });
    assert!(same_claim, "the new NATS pod does not use {claim}");
    let volume_now = pvcs
        .get(&claim)
        .await
        .expect("the claim")
        .spec
        .and_then(|s| s.volume_name);
    assert_eq!(
        volume_now.as_deref(),
        Some(volume.as_str()),
        "another volume"
    );
    assert_eq!(
        stream_facts(js, &FILE_STREAMS).await,
        facts,
        "the streams on disk changed across the restart"
    );
    assert_eq!(
        consumer_created(js).await,
        consumer,
        "the consumer was recreated"
    );
    assert_content(js).await;
    let ops = ctx.operator_pods().await;
    assert_eq!(
        (pod_name(&ops[0]), restarts(&ops[0])),
        (operator, 0),
        "the operator pod was restarted or replaced"
    );

    // New work after the restart: a Stream becomes Ready; deleted behind the operator's back,
    // it is put back.
    let t0 = Instant::now();
    apply_ok(cp, APPS, &stream_yaml("after-restart", ""));
    wait_ready(&dyn_api(cp, APPS, "streams"), "after-restart").await;
    ctx.report
        .time("after the NATS restart: a new Stream Ready", t0.elapsed());
    ctx.objects.push("streams", "after-restart");
    let created = stream_facts(js, &["after-restart"]).await["after-restart"].created;
    let t0 = Instant::now();
    js.delete_stream("after-restart")
        .await
        .expect("delete after-restart through NATS");
    wait_until(
        OBJECTS_WAIT,
        "the deleted stream to be repaired",
        || async {
            let info = stream_info(js, "after-restart").await?;
            (info.created.unix_timestamp_nanos() != created).then_some(())
        },
    )
    .await;
    ctx.report.time(
        "after the NATS restart: a stream deleted through NATS is back",
        t0.elapsed(),
    );
}

/// `helm upgrade --set replicas=2`: the single-replica operator (no leader election) is gone
/// before an elected replica starts; one leader, one Ready follower; the leader's pod
/// deleted: another replica leads and reconciles a new Stream.
async fn two_replicas_and_failover(ctx: &mut Ctx, js: &async_nats::jetstream::Context) {
    ctx.report
        .step("helm upgrade --set replicas=2, leader failover");
    let cp = &ctx.node.cp;
    let ns = ctx.release.namespace.clone();
    let lease_api: Api<Lease> = Api::namespaced(cp.client(), &ns);
    let lease_name = ctx.release.fullname();
    let old_pod = ctx.operator_pods().await.remove(0);
    let old = pod_name(&old_pod);
    let hash = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash").cloned())
            .unwrap_or_default()
    };
    let old_hash = hash(&old_pod);
    let facts = stream_facts(js, &FILE_STREAMS).await;
    let ids = ctx.objects.identities(cp).await;
    let chart = "charts/jetstream-operator";

    let t0 = Instant::now();
    ctx.node.helm_ok(&[
        "upgrade",
        &ctx.release.name,
        chart,
        "-n",
        &ns,
        "--set",
        "replicas=2",
    ]);
    let mut old_last_seen: Option<jiff::Timestamp> = None;
    let mut old_gone = None;
    let mut old_template_pods = std::collections::BTreeSet::new();
    let mut old_template_ready = std::collections::BTreeSet::new();
    let mut first_ready = BTreeMap::new();
    let pods = poll_pods(
        cp,
        &ns,
        &ctx.release.selector("operator"),
        PODS_WAIT,
        "two elected operator pods Ready, the single one gone",
        |pods| {
            for p in pods
                .iter()
                .filter(|p| hash(p) == old_hash && pod_name(p) != old)
            {
                old_template_pods.insert(pod_name(p));
                if is_ready(p) {
                    old_template_ready.insert(pod_name(p));
                }
            }
            if pods.iter().any(|p| pod_name(p) == old) {
                old_last_seen = Some(jiff::Timestamp::now());
            } else if old_gone.is_none() {
                old_gone = Some(t0.elapsed());
            }
            for p in pods.iter().filter(|p| is_ready(p) && hash(p) != old_hash) {
                first_ready
                    .entry(pod_name(p))
                    .or_insert_with(|| t0.elapsed());
            }
            old_gone.is_some() && pods.len() == 2 && pods.iter().all(is_ready)
        },
    )
    .await;
    let lease = wait_until(PODS_WAIT, "the Lease to have a holder", || async {
        let l = lease_api.get_opt(&lease_name).await.ok()??;
        l.spec.as_ref()?.holder_identity.as_ref()?;
        Some(l)
    })
    .await;
    let spec = lease.spec.clone().expect("lease spec");
    let holder = spec.holder_identity.clone().expect("holder");
    let acquired = spec
        .acquire_time
        .as_ref()
        .map(|t| t.0)
        .expect("acquireTime");
    ctx.report.time(
        "replicas=2: the single operator pod gone",
        old_gone.unwrap_or_default(),
    );
    for (name, at) in &first_ready {
        ctx.report
            .time(&format!("replicas=2: elected pod {name} Ready"), *at);
    }
    if let Some(last) = old_last_seen {
        assert!(
            acquired > last,
            "{holder} took the Lease at {acquired} while the single-replica operator {old} \
             (without leader election) was still there at {last}: two operators reconciled \
             at once"
        );
    }
    // One upgrade changes the replicas and the pod template together: the Deployment
    // controller may scale the old ReplicaSet up before it rolls out the new one.
    ctx.report.note(&format!(
        "replicas=2: pods of the single-replica template created during the upgrade: {:?}",
        old_template_pods
    ));
    assert!(
        old_template_ready.is_empty(),
        "pods of the single-replica template (no leader election) ran beside the elected \
         ones: {old_template_ready:?}"
    );
    let names: Vec<String> = pods.iter().map(pod_name).collect();
    assert!(names.contains(&holder), "{holder} is not one of {names:?}");
    for p in &pods {
        assert_operator_pod(p, &ctx.app_version).await;
        let m = pod_metrics(p).await;
        let leads = if pod_name(p) == holder { 1.0 } else { 0.0 };
        assert_eq!(
            metric_value(&m, LEADER, &[]),
            leads,
            "{}: the leader metric (holder {holder})",
            pod_name(p)
        );
    }
    let leader = pods.iter().find(|p| pod_name(p) == holder).expect("leader");
    let m = wait_reconciled(leader, ctx.objects.len()).await;
    assert_eq!(
        js_writes(&m),
        0.0,
        "the new leader wrote to JetStream:\n{m}"
    );
    ctx.objects.wait_ready(cp).await;
    assert_eq!(
        stream_facts(js, &FILE_STREAMS).await,
        facts,
        "streams changed"
    );
    assert_eq!(
        ctx.objects.identities(cp).await,
        ids,
        "objects were recreated"
    );

    // Failover: the leader's pod deleted. The follower, or the replacement pod the
    // ReplicaSet starts at once, takes the Lease (whichever sees it released first).
    let follower = names
        .iter()
        .find(|n| **n != holder)
        .expect("a follower")
        .clone();
    let t0 = Instant::now();
    kubectl_ok(cp, &["delete", "pod", &holder, "-n", &ns, "--wait=false"]);
    let new_holder = wait_until(PODS_WAIT, "another pod to take the Lease", || async {
        let h = lease_api
            .get_opt(&lease_name)
            .await
            .ok()??
            .spec?
            .holder_identity?;
        (!h.is_empty() && h != holder).then_some(h)
    })
    .await;
    let took_over = t0.elapsed();
    apply_ok(cp, APPS, &stream_yaml("after-failover", ""));
    wait_ready(&dyn_api(cp, APPS, "streams"), "after-failover").await;
    let reconciled = t0.elapsed();
    ctx.objects.push("streams", "after-failover");
    let who = if new_holder == follower {
        "the follower"
    } else {
        "the deleted leader's replacement"
    };
    ctx.report.time(
        &format!("leader pod deleted -> {who} holds the Lease"),
        took_over,
    );
    ctx.report.time(
        "leader pod deleted -> a Stream applied after it is Ready",
        reconciled,
    );
    // Two Ready replicas again, the deleted leader not among them; one leads.
    let pods = poll_pods(
        cp,
        &ns,
        &ctx.release.selector("operator"),
        PODS_WAIT,
        "the replacement of the deleted leader Ready",
        |pods| {
            pods.len() == 2
                && pods.iter().all(is_ready)
                && !pods.iter().any(|p| pod_name(p) == holder)
        },
    )
    .await;
    ctx.report.time(
        "leader pod deleted -> two Ready replicas again",
        t0.elapsed(),
    );
    assert!(
        pods.iter().any(|p| pod_name(p) == new_holder),
        "the new leader {new_holder} is not one of {}",
        describe(&pods)
    );
    for p in &pods {
        let leads = if pod_name(p) == new_holder { 1.0 } else { 0.0 };
        assert_eq!(
            metric_value(&pod_metrics(p).await, LEADER, &[]),
            leads,
            "{}: the leader metric after the failover (leader {new_holder})",
            pod_name(p)
        );
    }
    ctx.objects.wait_ready(cp).await;
    assert_eq!(
        stream_facts(js, &FILE_STREAMS).await,
        facts,
        "streams changed"
    );
    let on_disk: Vec<String> = ctx
        .stream_names()
        .into_iter()
        .filter(|n| n != MEMORY_STREAM)
        .collect();
    let on_disk: Vec<&str> = on_disk.iter().map(String::as_str).collect();
    ctx.kept = stream_facts(js, &on_disk).await;
}

/// `helm uninstall`, as the chart's README says: the CRDs stay (helm.sh/resource-policy:
/// keep), so every object stays, with its finalizers (the operator is gone); the broker's
/// volume stays; everything else of the release goes.
async fn uninstall_keeps_what_the_chart_says(ctx: &mut Ctx) {
    ctx.report.step("helm uninstall");
    let cp = &ctx.node.cp;
    let ns = ctx.release.namespace.clone();
    let ids = ctx.objects.identities(cp).await;
    let t0 = Instant::now();
    let out = ctx
        .node
        .helm_ok(&["uninstall", &ctx.release.name, "-n", &ns]);
    for plural in CRD_PLURALS {
        assert!(
            out.contains(&format!(
                "[CustomResourceDefinition] {plural}.jetstream.nats.io"
            )),
            "helm did not keep the CRD of {plural}: {out}"
        );
    }
    poll_pods(
        cp,
        &ns,
        &format!("app.kubernetes.io/instance={}", ctx.release.name),
        PODS_WAIT,
        "the release's pods to go",
        |pods| pods.is_empty(),
    )
    .await;
    ctx.report
        .time("helm uninstall -> every pod gone", t0.elapsed());

    let crds: Api<CustomResourceDefinition> = Api::all(cp.client());
    for plural in CRD_PLURALS {
        let crd = crds
            .get(&format!("{plural}.jetstream.nats.io"))
            .await
            .unwrap_or_else(|e| panic!("the CRD of {plural} is gone: {e}"));
        let keep = crd
            .metadata
            .annotations
            .unwrap_or_default()
            .get("helm.sh/resource-policy")
            .cloned();
        assert_eq!(keep.as_deref(), Some("keep"), "{plural}");
    }
    let now = ctx.objects.identities(cp).await;
    assert_eq!(now, ids, "the objects changed");
    for (key, (_, finalizers)) in &now {
        assert!(
            !finalizers.is_empty(),
            "{key} lost its finalizer without an operator"
        );
    }
    // Nothing of the release is left but the broker's volume.
    let selector = format!("app.kubernetes.io/instance={}", ctx.release.name);
    for (kinds, scope) in [
        (
            "deployments,statefulsets,replicasets,services,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies",
            Some(ns.as_str()),
        ),
        ("clusterroles,clusterrolebindings", None),
    ] {
        let mut args = vec!["get", kinds, "-l", &selector, "-o", "name"];
        if let Some(n) = scope {
            args.extend(["-n", n]);
        }
        let left = kubectl_ok(cp, &args);
        assert!(left.trim().is_empty(), "left after uninstall: {left}");
    }
    let claims = kubectl_ok(
        cp,
        &["get", "pvc", "-n", &ns, "-l", &selector, "-o", "name"],
    );
    assert_eq!(
        claims.trim(),
        format!("persistentvolumeclaim/data-{}-0", ctx.release.nats()),
        "the broker's volume claim"
    );
}

/// The same install again: the broker starts on the kept volume, with the streams and
/// messages of before; the operator finds its objects' assets and recreates only the
/// memory stream.
async fn install_again_finds_the_assets(ctx: &mut Ctx) {
    ctx.report.step("helm install again");
    let t0 = Instant::now();
    ctx.install_from_readme("install again").await;
    let cp = &ctx.node.cp;
    let (_client, js) = jetstream(cp, &ctx.release).await;
    // The statuses still say what the old operator wrote: what counts is JetStream, and the
    // new operator's own count.
    wait_streams(&js, &ctx.stream_names()).await;
    let ops = ctx.operator_pods().await;
    let m = wait_reconciled(&ops[0], ctx.objects.len()).await;
    ctx.objects.wait_ready(cp).await;
    ctx.report.time(
        "install again: every object verified by the new operator",
        t0.elapsed(),
    );
    let creates = metric_value(&m, REQUESTS, &[("op", "stream.create"), ("outcome", "ok")]);
    assert_eq!(
        creates, 1.0,
        "only the memory stream is created again:\n{m}"
    );
    let names: Vec<&str> = ctx.kept.keys().map(String::as_str).collect();
    assert_eq!(
        stream_facts(&js, &names).await,
        ctx.kept,
        "the streams on the kept volume changed"
    );
    assert_eq!(ctx.kept["sync"].messages, 10);
    assert_content(&js).await;
}

/// A running one-node broker is not switched to a cluster by an upgrade (a new JetStream
/// cluster would not carry its streams over): helm refuses, nothing changes.
async fn cluster_switch_of_a_running_broker_is_refused(ctx: &mut Ctx) {
    ctx.report
        .step("helm upgrade --set nats.cluster.enabled=true");
    let cp = &ctx.node.cp;
    let ns = ctx.release.namespace.clone();
    let out = ctx.node.helm(&[
        "upgrade",
        &ctx.release.name,
        "charts/jetstream-operator",
        "-n",
        &ns,
        "--set",
        "nats.cluster.enabled=true",
    ]);
    assert!(
        !out.status.success(),
        "helm upgraded a one-node broker to a cluster:\n{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("nats.cluster.enabled"),
        "the refusal does not say why: {err}"
    );
    let sts = Api::<StatefulSet>::namespaced(cp.client(), &ns)
        .get(&ctx.release.nats())
        .await
        .expect("the broker's StatefulSet");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(1));
}

/// The chart's 3-node NATS cluster, as a new release that takes over the kept CRDs (the
/// chart's README: --take-ownership): the objects of before become Ready in it; a
/// `replicas: 3` Stream is Ready; its leader's pod deleted, it answers and takes messages
/// while the pod is away; the pod comes back and catches up.
async fn nats_cluster(ctx: &mut Ctx) {
    ctx.report.step("3-node NATS cluster");
    let cp = &ctx.node.cp;
    ctx.node
        .helm_ok(&["uninstall", &ctx.release.name, "-n", &ctx.release.namespace]);
    poll_pods(
        cp,
        &ctx.release.namespace,
        &format!("app.kubernetes.io/instance={}", ctx.release.name),
        PODS_WAIT,
        "the first release's pods to go",
        |pods| pods.is_empty(),
    )
    .await;
    let ha = Release {
        name: HA_RELEASE.to_owned(),
        namespace: HA_NS.to_owned(),
    };
    let since_wall = jiff::Timestamp::now();
    let t0 = Instant::now();
    ctx.node.helm_ok(&[
        "install",
        HA_RELEASE,
        "charts/jetstream-operator",
        "-n",
        HA_NS,
        "--create-namespace",
        "--take-ownership",
        "--set",
        "nats.cluster.enabled=true",
    ]);
    let (nats, _) = release_pods_ready(
        cp,
        &ha,
        3,
        (t0, since_wall),
        &ctx.app_version,
        "cluster",
        &mut ctx.report,
    )
    .await;
    let (_client, js) = jetstream(cp, &ha).await;
    ctx.report.time(
        "cluster: JetStream answers (meta leader elected)",
        t0.elapsed(),
    );
    wait_streams(&js, &ctx.stream_names()).await;
    // The operator creates the consumer once its stream is there: wait for it too.
    wait_until(OBJECTS_WAIT, "consumer notifier in JetStream", || async {
        consumer_info(&js, "notifications", "notifier").await
    })
    .await;
    ctx.objects.wait_ready(cp).await;
    ctx.report.time(
        "cluster: the kept objects Ready in the new cluster",
        t0.elapsed(),
    );

    let t1 = Instant::now();
    apply_ok(cp, APPS, &stream_yaml("orders", "replicas: 3"));
    wait_ready(&dyn_api(cp, APPS, "streams"), "orders").await;
    ctx.report
        .time("cluster: a replicas: 3 Stream Ready", t1.elapsed());
    ctx.objects.push("streams", "orders");
    let info = wait_until(OBJECTS_WAIT, "3 current replicas of orders", || async {
        let info = stream_info(&js, "orders").await?;
        let c = info.cluster.clone()?;
        (c.leader.is_some() && c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current))
            .then_some(info)
    })
    .await;
    assert_eq!(info.config.num_replicas, 3);
    for i in 0..100 {
        publish(&js, &format!("orders.{i}"), format!("order {i}")).await;
    }
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("a stream leader");
    let leader_uid = pod_uid(
        nats.iter()
            .find(|p| pod_name(p) == leader)
            .unwrap_or_else(|| panic!("the stream leader {leader} is not a pod of the release")),
    );

    // A publisher, every 50 ms, while the leader's pod goes away and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_live = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, stop, acked_live) = (js.clone(), stop.clone(), acked_live.clone());
        tokio::spawn(async move {
            let mut acks: Vec<Instant> = Vec::new();
            let mut failed = 0u32;
            let mut i = 0u32;
            let until = Instant::now() + PODS_WAIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                i += 1;
                let sent = tokio::time::timeout(Duration::from_secs(3), async {
                    js.publish(format!("orders.live.{i}"), "live".into())
                        .await
                        .ok()?
                        .await
                        .ok()
                })
                .await;
                match sent {
                    Ok(Some(_)) => {
                        acks.push(Instant::now());
                        acked_live.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (acks, failed)
        })
    };
    let t2 = Instant::now();
    kubectl_ok(cp, &["delete", "pod", &leader, "-n", HA_NS, "--wait=false"]);
    let mut gone: Option<Instant> = None;
    poll_pods(
        cp,
        HA_NS,
        &ha.selector("nats"),
        PODS_WAIT,
        "the stream leader's pod to go",
        |pods| {
            if !pods.iter().any(|p| pod_uid(p) == leader_uid) {
                gone = Some(Instant::now());
            }
            gone.is_some()
        },
    )
    .await;
    let gone = gone.expect("gone");
    // While it is away: the stream answers.
    let answered = wait_until(
        Duration::from_secs(30),
        "stream info of orders while a NATS pod is away",
        || async { stream_info(&js, "orders").await },
    )
    .await;
    let answered_at = t2.elapsed();
    let mut back: Option<Instant> = None;
    let pods = poll_pods(
        cp,
        HA_NS,
        &ha.selector("nats"),
        PODS_WAIT,
        "the deleted NATS pod back and Ready",
        |pods| {
            if back.is_none()
                && pods
                    .iter()
                    .any(|p| pod_name(p) == leader && pod_uid(p) != leader_uid && is_ready(p))
            {
                back = Some(Instant::now());
            }
            back.is_some() && pods.len() == 3 && pods.iter().all(is_ready)
        },
    )
    .await;
    let back = back.expect("back");
    wait_until(PODS_WAIT, "the returned replica to catch up", || async {
        let info = stream_info(&js, "orders").await?;
        let c = info.cluster.clone()?;
        (c.leader.is_some()
            && c.replicas.len() == 2
            && c.replicas.iter().all(|r| r.current && !r.offline))
        .then_some(())
    })
    .await;
    let caught_up_at = t2.elapsed();
    // Five more acknowledged publishes with every replica back, then the publisher stops.
    let so_far = acked_live.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(30),
        "publishes acknowledged with every replica back",
        || async { (acked_live.load(Ordering::Relaxed) >= so_far + 5).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (acks, failed) = publisher.await.expect("publisher");
    let while_away = acks.iter().filter(|a| **a > gone && **a < back).count();
    let mut longest = Duration::ZERO;
    for w in acks.windows(2) {
        longest = longest.max(w[1] - w[0]);
    }
    ctx.report.time(
        "cluster: stream leader's pod deleted -> pod gone",
        gone - t2,
    );
    ctx.report.time(
        "cluster: stream leader's pod deleted -> stream info answered (pod away)",
        answered_at,
    );
    ctx.report.time(
        "cluster: stream leader's pod deleted -> pod back and Ready",
        back - t2,
    );
    ctx.report.time(
        "cluster: stream leader's pod deleted -> all 3 replicas current",
        caught_up_at,
    );
    ctx.report.note(&format!(
        "cluster: publishes every 50 ms: {} acked ({while_away} while the pod was away), {failed} \
         refused or unanswered in 3 s, longest gap between acks {:.2} s; new stream leader {:?}",
        acks.len(),
        longest.as_secs_f64(),
        answered.cluster.as_ref().and_then(|c| c.leader.clone())
    ));
    assert!(
        while_away > 0,
        "no publish was acknowledged while the pod was away"
    );
    // Every acknowledged message is in the stream.
    let acked = 100 + acks.len() as u64;
    let stored = poll_until(Duration::from_secs(30), || async {
        let info = stream_info(&js, "orders").await?;
        (info.state.messages >= acked).then_some(info.state.messages)
    })
    .await;
    assert!(
        stored.is_some(),
        "acknowledged messages are missing: {acked} acknowledged, the stream holds {:?}",
        stream_info(&js, "orders").await.map(|i| i.state.messages)
    );
    for p in &pods {
        assert_nats_pod(p).await;
    }
    ctx.objects.wait_ready(cp).await;
}
