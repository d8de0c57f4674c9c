//! Stream scenarios end to end: a real kube-apiserver + etcd, a nats-server per test and the
//! operator binary, driven with kubectl and observed through Kubernetes and JetStream.
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use kube::Api;
use kube::api::DynamicObject;
use support::*;

/// The resync interval every test runs the operator with.
const RESYNC: Duration = Duration::from_secs(3);
/// The longest a drift repair may take (resync plus margin; advisories should be faster).
const REPAIR_DEADLINE: Duration = Duration::from_secs(10);
/// Polling interval where a delay is measured (JetStream INFO requests are cheap).
const MEASURE_POLL: Duration = Duration::from_millis(10);
/// How long a started operator may take to report ready (its watches are tiny).
const READYZ_WAIT: Duration = Duration::from_secs(20);
/// The streams of examples/streams.yaml: name, subject, storage, retention.
const EXAMPLE_STREAMS: [(&str, &str, StorageType, RetentionPolicy); 3] = [
    ("sync", "sync.>", StorageType::File, RetentionPolicy::Limits),
    (
        "notifications",
        "notifications.>",
        StorageType::File,
        RetentionPolicy::WorkQueue,
    ),
    (
        "reports",
        "reports.*",
        StorageType::Memory,
        RetentionPolicy::Interest,
    ),
];

/// One test's world: its namespace, nats-server and operator (dropped in that order:
/// operator first).
struct Env {
    op: Operator,
    nats: Nats,
    ns: TestNs,
    cp: &'static ControlPlane,
    /// Streams in the test's namespace.
    api: Api<DynamicObject>,
    /// Fixed admin address (`/metrics`, `/readyz`) when the test asked for one.
    admin: Option<String>,
}

impl Env {
    /// Namespace, nats-server and operator (`--resync-interval 3s`), plus `extra` flags.
    /// With `fixed_admin`, the admin server listens on a port picked here, so that the test
    /// can read `/metrics`.
    async fn start(prefix: &str, fixed_admin: bool, extra: &[&str]) -> Env {
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let nats = Nats::start().await;
        let admin_flag = if fixed_admin {
            format!("127.0.0.1:{}", free_port())
        } else {
            "127.0.0.1:0".to_owned()
        };
        let mut args = vec![
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            "3s",
            "--admin-address",
            admin_flag.as_str(),
        ];
        args.extend_from_slice(extra);
        let op = Operator::start(cp, &args).await;
        let api = dyn_api(cp, ns.name(), "streams");
        let env = Env {
            op,
            nats,
            ns,
            cp,
            api,
            admin: fixed_admin.then_some(admin_flag),
        };
        if fixed_admin {
            env.wait_admin().await;
        }
        env
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    fn admin(&self) -> &str {
        self.admin
            .as_deref()
            .expect("this test started the operator without a fixed admin address")
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

    async fn get(&self, name: &str) -> Option<DynamicObject> {
        self.api
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get Stream {name}: {e}"))
    }

    async fn metrics(&self) -> String {
        metrics(self.admin()).await
    }

    /// Waits until the admin server answers `/metrics`.
    async fn wait_admin(&self) {
        let admin = self.admin().to_owned();
        wait_until(WAIT, "the operator's admin server to answer", || {
            let admin = admin.clone();
            async move { matches!(http_get(&admin, "/metrics").await, Ok((200, _))).then_some(()) }
        })
        .await;
    }

    /// Waits until `n` more drift scans have run (one `stream.list` request per scan and
    /// connection here; counted whatever their outcome).
    async fn wait_scans(&self, n: u32) -> f64 {
        let before = list_requests(&self.metrics().await);
        let target = before + f64::from(n);
        let timeout = RESYNC.mul_f64(1.1 * f64::from(n + 1)) + Duration::from_secs(5);
        wait_until(timeout, &format!("{n} more drift scans"), || async {
            let now = list_requests(&self.metrics().await);
            (now >= target).then_some(now)
        })
        .await
    }
}

fn list_requests(metrics: &str) -> f64 {
    metric_value(
        metrics,
        "jetstream_operator_jetstream_requests_total",
        &[("op", "stream.list")],
    )
}

fn requests(metrics: &str, op: &str) -> f64 {
    metric_value(
        metrics,
        "jetstream_operator_jetstream_requests_total",
        &[("op", op)],
    )
}

fn kube_writes(metrics: &str) -> f64 {
    metric_value(metrics, "jetstream_operator_kubernetes_writes_total", &[])
}

/// A Stream manifest whose object and JetStream stream are both called `name`; `spec` is
/// YAML for the rest of the spec, unindented.
fn stream_yaml(name: &str, spec: &str) -> String {
    let spec: String = spec
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {l}\n"))
        .collect();
    format!(
        "apiVersion: jetstream.nats.io/v1beta2\nkind: Stream\nmetadata:\n  name: {name}\nspec:\n  name: {name}\n{spec}"
    )
}

fn examples_yaml() -> String {
    let path = repo_root().join("examples").join("streams.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn status_field<'a>(obj: &'a DynamicObject, field: &str) -> Option<&'a serde_json::Value> {
    obj.data.get("status")?.get(field)
}

fn assert_current(obj: &DynamicObject) {
    assert!(
        status_is_current(obj),
        "status.observedGeneration != metadata.generation: {}",
        status_summary(obj)
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn p50(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn now_stamp() -> String {
    jiff::Timestamp::now().to_string()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn examples_become_ready() {
    let env = Env::start("examples", false, &[]).await;
    env.apply(&examples_yaml());

    for (name, ..) in EXAMPLE_STREAMS {
        let obj = wait_ready(&env.api, name).await;
        assert_current(&obj);
        assert_eq!(
            status_field(&obj, "assetName").and_then(|v| v.as_str()),
            Some(name)
        );
    }

    let js = env.js().await;
    assert_eq!(
        stream_names(&js).await,
        vec!["notifications", "reports", "sync"]
    );
    for (name, subject, storage, retention) in EXAMPLE_STREAMS {
        let cfg = get_stream_config(&js, name)
            .await
            .unwrap_or_else(|| panic!("stream {name} is not in JetStream"));
        assert_eq!(cfg.subjects, vec![subject.to_owned()], "{name} subjects");
        assert_eq!(cfg.storage, storage, "{name} storage");
        assert_eq!(cfg.retention, retention, "{name} retention");
    }

    kubectl_ok(
        env.cp,
        &[
            "wait",
            "--for=condition=Ready",
            "stream/sync",
            "-n",
            env.ns(),
            "--timeout=60s",
        ],
    );

    let table = kubectl_ok(env.cp, &["get", "streams", "-n", env.ns()]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in ["NAME", "READY", "REASON", "STREAM", "SUBJECTS"] {
        assert!(header.contains(&column), "no {column} column:\n{table}");
    }
    let col = |c: &str| header.iter().position(|h| *h == c).expect("column");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    for (name, subject, ..) in EXAMPLE_STREAMS {
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        assert_eq!(row[col("READY")], "True", "{name}:\n{table}");
        assert_eq!(row[col("REASON")], "Created", "{name}:\n{table}");
        assert_eq!(row[col("STREAM")], name, "{name}:\n{table}");
        // The subjects as written, one line.
        assert_eq!(row[col("SUBJECTS")], subject, "{name}:\n{table}");
    }

    // The category lists every kind; the NAME column is `<kind>.<group>/<name>` or `<name>`.
    let category = kubectl_ok(env.cp, &["get", "jetstream", "-n", env.ns()]);
    eprintln!("kubectl get jetstream:\n{category}");
    for (name, ..) in EXAMPLE_STREAMS {
        assert!(
            category.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|n| n == name || n == format!("stream.jetstream.nats.io/{name}"))
            }),
            "kubectl get jetstream does not list {name}:\n{category}"
        );
    }
    eprintln!("kubectl get streams:\n{table}");
}

/// A Helm template that renders an unset value writes a null (`storage:` with nothing after
/// it). NACK's CRDs drop such nulls; ours must too, not refuse them as values the enum
/// does not list (found by the spec fuzzer).
#[tokio::test]
async fn null_enum_fields_mean_unset() {
    let env = Env::start("nulls", false, &[]).await;
    env.apply(&stream_yaml(
        "nulls",
        "subjects: [\"nulls.>\"]\nstorage:\nretention:\ndiscard: ~\ncompression:",
    ));
    let obj = wait_ready(&env.api, "nulls").await;
    assert_current(&obj);
    let spec = &obj.data["spec"];
    for f in ["storage", "retention", "discard", "compression"] {
        assert!(spec.get(f).is_none(), "{f} was kept: {spec}");
    }
    let cfg = get_stream_config(&env.js().await, "nulls")
        .await
        .expect("stream nulls");
    assert_eq!(
        cfg.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        cfg.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
}

#[tokio::test]
async fn update_follows_spec() {
    let env = Env::start("update", false, &[]).await;
    let js = env.js().await;
    let v1 = stream_yaml(
        "upd",
        "description: first version\nsubjects: [\"a.>\"]\nmaxMsgs: 100\nmaxAge: 1h",
    );
    let v2 = stream_yaml("upd", "subjects: [\"a.>\", \"b.>\"]\nmaxAge: 2h");
    let v3 = stream_yaml(
        "upd",
        "subjects: [\"a.>\", \"b.>\"]\nmaxAge: 2h\nallowDirect: true",
    );

    env.apply(&v1);
    let obj = wait_ready(&env.api, "upd").await;
    assert_eq!(generation(&obj), Some(1));
    let cfg = get_stream_config(&js, "upd").await.expect("stream upd");
    assert_eq!(cfg.description.as_deref(), Some("first version"));
    assert_eq!(cfg.max_messages, 100);
    assert_eq!(cfg.max_age, Duration::from_secs(3600));
    assert_eq!(cfg.subjects, vec!["a.>"]);
    assert!(!cfg.allow_direct);

    // A field changed, a subject added, two fields removed.
    env.apply(&v2);
    let cfg = wait_until(WAIT, "the server config of upd to follow v2", || async {
        let c = get_stream_config(&js, "upd").await?;
        (c.max_age == Duration::from_secs(7200)
            && sorted(c.subjects.clone()) == ["a.>", "b.>"]
            && c.description.as_deref().unwrap_or_default().is_empty()
            && c.max_messages == -1)
            .then_some(c)
    })
    .await;
    let obj = wait_ready(&env.api, "upd").await;
    assert_eq!(generation(&obj), Some(2));
    assert_current(&obj);
    assert!(!cfg.allow_direct);

    // A bool on...
    env.apply(&v3);
    wait_until(
        WAIT,
        "allow_direct to become true on the server",
        || async {
            get_stream_config(&js, "upd")
                .await?
                .allow_direct
                .then_some(())
        },
    )
    .await;
    let obj = wait_ready(&env.api, "upd").await;
    assert_eq!(generation(&obj), Some(3));

    // ...and off again by removing it from the spec.
    env.apply(&v2);
    let cfg = wait_until(WAIT, "allow_direct to return to false", || async {
        let c = get_stream_config(&js, "upd").await?;
        (!c.allow_direct).then_some(c)
    })
    .await;
    let obj = wait_ready(&env.api, "upd").await;
    assert_eq!(generation(&obj), Some(4));
    assert_current(&obj);
    assert_eq!(cfg.max_age, Duration::from_secs(7200));
    assert_eq!(sorted(cfg.subjects), ["a.>", "b.>"]);
}

#[tokio::test]
async fn drift_is_repaired() {
    const SPEC_MAX_AGE: Duration = Duration::from_secs(3600);
    let env = Env::start("drift", false, &[]).await;
    let js = env.js().await;
    env.apply(&stream_yaml("drift", "subjects: [\"drift.>\"]\nmaxAge: 1h"));
    wait_ready(&env.api, "drift").await;

    // (a) deleted behind the operator's back.
    let mut deletes = Vec::new();
    for i in 0..5 {
        let before = stream_info(&js, "drift").await.expect("stream drift");
        js.delete_stream("drift")
            .await
            .unwrap_or_else(|e| panic!("delete #{i}: {e}"));
        let t0 = Instant::now();
        let info = wait_until_every(
            REPAIR_DEADLINE,
            MEASURE_POLL,
            &format!("stream drift to be recreated (#{i})"),
            || async { stream_info(&js, "drift").await },
        )
        .await;
        let took = t0.elapsed();
        assert!(took <= REPAIR_DEADLINE, "repair #{i} took {took:?}");
        assert!(info.created > before.created, "#{i}: not a new stream");
        assert_eq!(info.config.subjects, vec!["drift.>"]);
        assert_eq!(info.config.max_age, SPEC_MAX_AGE);
        deletes.push(took);
        wait_ready(&env.api, "drift").await;
    }

    // (b) changed behind the operator's back.
    let mut updates = Vec::new();
    for i in 0..5u64 {
        let mut cfg = get_stream_config(&js, "drift").await.expect("stream drift");
        cfg.max_age = Duration::from_secs(60 * (10 + i));
        let drifted = cfg.max_age;
        let answer = js
            .update_stream(cfg)
            .await
            .unwrap_or_else(|e| panic!("update #{i}: {e}"));
        // The server builds its answer from the stream's config after the update is applied;
        // the operator, woken by that update's own advisory, may already have restored it.
        assert!(
            [drifted, SPEC_MAX_AGE].contains(&answer.config.max_age),
            "#{i}: update answered max_age {:?}",
            answer.config.max_age
        );
        let t0 = Instant::now();
        wait_until_every(
            REPAIR_DEADLINE,
            MEASURE_POLL,
            &format!("max_age of drift to return to 1h (#{i})"),
            || async {
                let c = get_stream_config(&js, "drift").await?;
                (c.max_age == SPEC_MAX_AGE).then_some(())
            },
        )
        .await;
        let took = t0.elapsed();
        assert!(took <= REPAIR_DEADLINE, "repair #{i} took {took:?}");
        updates.push(took);
        wait_ready(&env.api, "drift").await;
    }

    for (what, samples) in [("delete", &deletes), ("update", &updates)] {
        eprintln!(
            "DRIFT-REPAIR {what} p50={}ms samples={:?}ms",
            ms(p50(samples)),
            samples.iter().map(|d| ms(*d)).collect::<Vec<_>>()
        );
    }

    // Both kinds of repair are announced: a Warning for the recreated stream (its messages
    // are gone), a Normal event for the restored configuration.
    let events = wait_until(WAIT, "DriftRepaired events for drift", || async {
        let ev = events_for(env.cp, env.ns(), "drift").await;
        (event_count(&ev, "DriftRepaired", Some("Warning")) > 0
            && event_count(&ev, "DriftRepaired", Some("Normal")) > 0)
            .then_some(ev)
    })
    .await;
    eprintln!(
        "DRIFT-REPAIR events: recreated={} restored={}",
        event_count(&events, "DriftRepaired", Some("Warning")),
        event_count(&events, "DriftRepaired", Some("Normal"))
    );
}

#[tokio::test]
async fn delete_removes_stream_unless_prevent_delete() {
    let env = Env::start("delete", false, &[]).await;
    let js = env.js().await;
    env.apply(&stream_yaml("gone", "subjects: [\"gone.>\"]"));
    env.apply(&stream_yaml(
        "kept",
        "subjects: [\"kept.>\"]\npreventDelete: true",
    ));
    wait_ready(&env.api, "gone").await;
    wait_ready(&env.api, "kept").await;
    let owner = format!("{}/kept", env.ns());
    let kept = get_stream_config(&js, "kept").await.expect("stream kept");
    assert_eq!(
        kept.metadata.get("jetstream.nats.io/owner"),
        Some(&owner),
        "{:?}",
        kept.metadata
    );

    // kubectl delete waits until the finalizer is released, which is after the stream is
    // deleted.
    kubectl_ok(
        env.cp,
        &["delete", "stream", "gone", "-n", env.ns(), "--timeout=60s"],
    );
    assert!(env.get("gone").await.is_none(), "object gone still exists");
    assert!(
        stream_info(&js, "gone").await.is_none(),
        "stream gone is still in JetStream"
    );

    kubectl_ok(
        env.cp,
        &["delete", "stream", "kept", "-n", env.ns(), "--timeout=60s"],
    );
    assert!(env.get("kept").await.is_none(), "object kept still exists");
    let kept = get_stream_config(&js, "kept")
        .await
        .expect("stream kept was deleted despite preventDelete");
    assert_eq!(kept.subjects, vec!["kept.>"]);
    // README: the kept stream is released (ownership marker removed).
    assert_eq!(
        kept.metadata.get("jetstream.nats.io/owner"),
        None,
        "the kept stream still carries the ownership marker: {:?}",
        kept.metadata
    );
    assert_eq!(stream_names(&js).await, vec!["kept"]);
}

#[tokio::test]
async fn immutable_and_refused_changes() {
    let env = Env::start("refused", true, &[]).await;
    let js = env.js().await;

    // (a) storage is immutable: refused at admission by the CEL rule.
    env.apply(&stream_yaml("imm", "subjects: [\"imm.>\"]\nstorage: file"));
    let before = wait_ready(&env.api, "imm").await;
    let stderr = env.apply_refused(&stream_yaml(
        "imm",
        "subjects: [\"imm.>\"]\nstorage: memory",
    ));
    assert!(stderr.contains("storage is immutable"), "{stderr}");
    let after = env.get("imm").await.expect("object imm");
    assert_eq!(generation(&after), generation(&before));
    assert_eq!(
        get_stream_config(&js, "imm")
            .await
            .expect("stream imm")
            .storage,
        StorageType::File
    );

    // (b) subjects that overlap another stream: the server refuses, the object stalls.
    env.apply(&stream_yaml("first", "subjects: [\"one.>\"]"));
    env.apply(&stream_yaml("second", "subjects: [\"two.>\"]"));
    wait_ready(&env.api, "first").await;
    wait_ready(&env.api, "second").await;
    env.apply(&stream_yaml("second", "subjects: [\"two.>\", \"one.x\"]"));
    let stalled = wait_condition(&env.api, "second", "Stalled", "True").await;
    let (_, reason, message) = condition(&stalled, "Stalled").expect("Stalled");
    assert!(
        message.to_lowercase().contains("overlap"),
        "the Stalled message does not carry the server's words: {reason}: {message}"
    );
    let (ready, ready_reason, _) = condition(&stalled, "Ready").expect("Ready");
    assert_eq!(ready, "False", "{}", status_summary(&stalled));
    assert_eq!(ready_reason, reason);
    assert_eq!(generation(&stalled), Some(2));
    assert_current(&stalled);
    assert_eq!(
        get_stream_config(&js, "second")
            .await
            .expect("stream second")
            .subjects,
        vec!["two.>"]
    );

    // It stays that way, without retries: no update attempts, no reconciles, no status
    // writes, no new Warning over several resyncs. (One scan first, so that the reconcile
    // that stalled has finished counting.)
    env.wait_scans(1).await;
    let m0 = env.metrics().await;
    let ev0 = events_for(env.cp, env.ns(), "second").await;
    let rv0 = resource_versions(&env.api).await;
    let warnings0 = event_count(&ev0, &reason, Some("Warning"));
    assert_eq!(warnings0, 1, "one Warning per new stall: {ev0:#?}");
    env.wait_scans(3).await;
    let m1 = env.metrics().await;
    let ev1 = events_for(env.cp, env.ns(), "second").await;
    let reconciles = |m: &str| {
        metric_value(
            m,
            "jetstream_operator_reconciles_total",
            &[("kind", "Stream")],
        )
    };
    eprintln!(
        "STALL over 3 resyncs: stream.update {} -> {}, reconciles {} -> {}, warnings {} -> {}",
        requests(&m0, "stream.update"),
        requests(&m1, "stream.update"),
        reconciles(&m0),
        reconciles(&m1),
        warnings0,
        event_count(&ev1, &reason, Some("Warning"))
    );
    assert_eq!(
        requests(&m1, "stream.update"),
        requests(&m0, "stream.update"),
        "update attempts kept growing"
    );
    assert_eq!(
        reconciles(&m1),
        reconciles(&m0),
        "reconciles kept happening"
    );
    assert_eq!(event_count(&ev1, &reason, Some("Warning")), warnings0);
    assert_eq!(resource_versions(&env.api).await, rv0);
    let still = env.get("second").await.expect("object second");
    assert_eq!(
        condition(&still, "Stalled").map(|c| c.0),
        Some("True".into())
    );
}

#[tokio::test]
async fn nats_outage_and_recovery() {
    let mut env = Env::start("outage", false, &[]).await;
    env.apply(&stream_yaml(
        "survivor",
        "subjects: [\"survivor.>\"]\nstorage: file",
    ));
    wait_ready(&env.api, "survivor").await;
    let created = stream_info(&env.js().await, "survivor")
        .await
        .expect("stream survivor")
        .created;

    env.nats.stop().await;
    let down = Instant::now();
    let not_ready = |env: &Env| {
        let api = env.api.clone();
        move || {
            let api = api.clone();
            async move {
                let obj = api.get_opt("survivor").await.ok().flatten()?;
                (condition(&obj, "Ready")?.0 == "False").then_some(obj)
            }
        }
    };
    // The operator may notice by itself (a resync); give it two.
    let noticed = poll_until(RESYNC * 2 + Duration::from_secs(1), not_ready(&env)).await;
    match &noticed {
        Some(_) => eprintln!(
            "OUTAGE noticed without a touch after {} ms",
            ms(down.elapsed())
        ),
        None => {
            eprintln!(
                "OUTAGE not noticed within {} ms without a touch (Ready stays True while NATS is down); forcing a reconcile",
                ms(down.elapsed())
            );
            kubectl_ok(
                env.cp,
                &[
                    "annotate",
                    "--overwrite",
                    "stream/survivor",
                    "-n",
                    env.ns(),
                    &format!("jetstream.nats.io/reconcile-requested-at={}", now_stamp()),
                ],
            );
        }
    }
    let obj = wait_until(WAIT, "survivor Ready=False", not_ready(&env)).await;
    let (_, ready_reason, ready_message) = condition(&obj, "Ready").expect("Ready");
    let (reconciling, reconciling_reason, _) = condition(&obj, "Reconciling").expect("Reconciling");
    assert_eq!(ready_reason, "ConnectionFailed", "{}", status_summary(&obj));
    assert_eq!(reconciling, "True", "{}", status_summary(&obj));
    assert_eq!(reconciling_reason, "ConnectionFailed");
    assert!(
        ready_message.contains(env.nats.url()),
        "the message does not name the server: {ready_message}"
    );

    // Back again: Ready without touching the object.
    let untouched = env.get("survivor").await.expect("object survivor").metadata;
    env.nats.start_again().await;
    let up = Instant::now();
    let obj = wait_ready(&env.api, "survivor").await;
    eprintln!(
        "OUTAGE Ready again {} ms after NATS restarted",
        ms(up.elapsed())
    );
    assert_eq!(obj.metadata.generation, untouched.generation);
    assert_eq!(obj.metadata.annotations, untouched.annotations);
    let js = env.js().await;
    assert_eq!(stream_names(&js).await, vec!["survivor"]);
    let info = stream_info(&js, "survivor").await.expect("stream survivor");
    assert_eq!(info.created, created, "the stream was recreated, not kept");
}

#[tokio::test]
async fn bad_input_rejected_at_admission() {
    let env = Env::start("admission", false, &[]).await;
    for (field, line) in [
        ("maxAge", "maxAge: 1d"),
        ("replicas", "replicas: -1"),
        ("retention", "retention: forever"),
        ("storage", "storage: disk"),
    ] {
        let name = format!("bad-{}", field.to_lowercase());
        let stderr = env.apply_refused(&stream_yaml(
            &name,
            &format!("subjects: [\"{name}.>\"]\n{line}"),
        ));
        assert!(
            stderr.contains(&format!("spec.{field}")),
            "{line}: stderr does not name spec.{field}: {stderr}"
        );
        assert!(env.get(&name).await.is_none(), "{name} was stored");
    }

    // The operator is running and nothing of the above reached JetStream.
    env.apply(&stream_yaml("good", "subjects: [\"good.>\"]\nmaxAge: 24h"));
    wait_ready(&env.api, "good").await;
    assert_eq!(stream_names(&env.js().await).await, vec!["good"]);
}

#[tokio::test]
async fn adoption_and_conflict() {
    let env = Env::start("adopt", true, &[]).await;
    let js = env.js().await;

    // An unowned stream is adopted.
    js.create_stream(stream::Config {
        name: "pre".into(),
        subjects: vec!["pre.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream pre");
    env.apply(&stream_yaml("pre", "subjects: [\"pre.>\"]\nmaxAge: 1h"));
    let obj = wait_ready(&env.api, "pre").await;
    assert_eq!(
        status_field(&obj, "adopted"),
        Some(&serde_json::Value::Bool(true)),
        "{}",
        status_summary(&obj)
    );
    let cfg = get_stream_config(&js, "pre").await.expect("stream pre");
    assert_eq!(
        cfg.metadata.get("jetstream.nats.io/owner"),
        Some(&format!("{}/pre", env.ns())),
        "{:?}",
        cfg.metadata
    );
    assert_eq!(cfg.max_age, Duration::from_secs(3600));
    wait_until(WAIT, "an Adopted event for pre", || async {
        let ev = events_for(env.cp, env.ns(), "pre").await;
        (event_count(&ev, "Adopted", Some("Normal")) > 0).then_some(())
    })
    .await;

    // A stream owned by another object is left alone.
    js.create_stream(stream::Config {
        name: "theirs".into(),
        subjects: vec!["theirs.>".into()],
        metadata: [(
            "jetstream.nats.io/owner".to_owned(),
            "other-ns/other".to_owned(),
        )]
        .into(),
        ..Default::default()
    })
    .await
    .expect("create stream theirs");
    let before = stream_info(&js, "theirs").await.expect("stream theirs");
    env.apply(&stream_yaml(
        "theirs",
        "subjects: [\"theirs.>\", \"mine.>\"]\nmaxAge: 1h",
    ));
    let obj = wait_condition(&env.api, "theirs", "Stalled", "True").await;
    let (_, reason, message) = condition(&obj, "Stalled").expect("Stalled");
    assert_eq!(reason, "ResourceConflict", "{message}");
    assert!(message.contains("other-ns/other"), "{message}");
    assert_eq!(condition(&obj, "Ready").map(|c| c.0), Some("False".into()));
    let after = stream_info(&js, "theirs").await.expect("stream theirs");
    assert_eq!(after.config, before.config, "theirs was changed");
    assert_eq!(after.created, before.created, "theirs was recreated");

    // Still so after a resync (the scan leaves stalled objects alone); and pre is still
    // recorded as adopted.
    env.wait_scans(1).await;
    let later = stream_info(&js, "theirs").await.expect("stream theirs");
    assert_eq!(later.config, before.config, "theirs was changed");
    let obj = env.get("pre").await.expect("object pre");
    assert_eq!(
        status_field(&obj, "adopted"),
        Some(&serde_json::Value::Bool(true)),
        "{}",
        status_summary(&obj)
    );
}

#[tokio::test]
async fn quiet_at_rest() {
    let env = Env::start("quiet", true, &[]).await;
    env.apply(&examples_yaml());
    for (name, ..) in EXAMPLE_STREAMS {
        wait_ready(&env.api, name).await;
    }
    // Start after a scan that saw everything Ready.
    env.wait_scans(1).await;

    let rv0 = resource_versions(&env.api).await;
    let ev0 = events_in(env.cp, env.ns()).await;
    let m0 = env.metrics().await;
    let ops = [
        "stream.list",
        "stream.info",
        "stream.create",
        "stream.update",
    ];
    let count_all = |m: &str| -> BTreeMap<&str, f64> {
        let mut c: BTreeMap<&str, f64> = ops.iter().map(|op| (*op, requests(m, op))).collect();
        c.insert("kube_writes", kube_writes(m));
        c
    };
    let c0 = count_all(&m0);
    let last_scan = c0.clone();
    let scans = 0u32;

    let period = RESYNC * 3;
    let started = Instant::now();
    // Poll every 500 ms until three resync intervals have passed, asserting at every poll.
    let rest = std::cell::RefCell::new((0u32, scans, last_scan));
    let (env_ref, rv0_ref, ev0_ref, c0_ref, count_ref, rest_ref) =
        (&env, &rv0, &ev0, &c0, &count_all, &rest);
    wait_until_every(
        period + Duration::from_secs(10),
        Duration::from_millis(500),
        "three resync intervals at rest",
        move || async move {
            let rv = resource_versions(&env_ref.api).await;
            let ev = events_in(env_ref.cp, env_ref.ns()).await;
            let c = count_ref(&env_ref.metrics().await);
            let mut r = rest_ref.borrow_mut();
            let (polls, scans, last_scan) = &mut *r;
            *polls += 1;
            assert_eq!(&rv, rv0_ref, "a Stream changed at rest (poll {polls})");
            assert_eq!(&ev, ev0_ref, "events changed at rest (poll {polls})");
            assert_eq!(
                c["kube_writes"], c0_ref["kube_writes"],
                "the operator wrote to Kubernetes at rest (poll {polls})"
            );
            assert_eq!(
                c["stream.info"], c0_ref["stream.info"],
                "stream.info requests at rest (poll {polls})"
            );
            if c["stream.list"] > last_scan["stream.list"] {
                *scans += 1;
                let delta: Vec<String> = c
                    .iter()
                    .map(|(k, v)| format!("{k}=+{}", v - last_scan[k]))
                    .collect();
                eprintln!(
                    "AT-REST scan {scans} at {} ms: {}",
                    ms(started.elapsed()),
                    delta.join(" ")
                );
                *last_scan = c;
            }
            (started.elapsed() >= period).then_some(())
        },
    )
    .await;
    let polls = rest.borrow().0;
    let c1 = count_all(&env.metrics().await);
    let list_delta = c1["stream.list"] - c0["stream.list"];
    eprintln!(
        "AT-REST over {} ms ({polls} polls): stream.list=+{list_delta} stream.info=+{} stream.create=+{} stream.update=+{} kube_writes=+{}",
        ms(started.elapsed()),
        c1["stream.info"] - c0["stream.info"],
        c1["stream.create"] - c0["stream.create"],
        c1["stream.update"] - c0["stream.update"],
        c1["kube_writes"] - c0["kube_writes"]
    );
    assert!(
        list_delta >= 2.0,
        "the drift scan did not run (stream.list +{list_delta} in {period:?})"
    );
    assert_eq!(c1["stream.create"], c0["stream.create"]);
    assert_eq!(c1["stream.update"], c0["stream.update"]);

    // Drift is still detected.
    let js = env.js().await;
    js.delete_stream("reports").await.expect("delete reports");
    let t0 = Instant::now();
    wait_until_every(
        REPAIR_DEADLINE,
        MEASURE_POLL,
        "reports to be recreated",
        || async { stream_info(&js, "reports").await },
    )
    .await;
    eprintln!("AT-REST reports recreated in {} ms", ms(t0.elapsed()));
}

#[tokio::test]
async fn restart_changes_nothing() {
    let mut env = Env::start("restart", true, &[]).await;
    env.apply(&examples_yaml());
    for (name, ..) in EXAMPLE_STREAMS {
        wait_ready(&env.api, name).await;
    }
    let js = env.js().await;
    let mut created = BTreeMap::new();
    for (name, ..) in EXAMPLE_STREAMS {
        created.insert(name, stream_info(&js, name).await.expect("stream").created);
    }
    // Settled first (a scan after Ready), so that what follows is the restart's doing.
    env.wait_scans(1).await;
    let before = snapshot(&env.api).await;
    let events0 = events_in(env.cp, env.ns()).await;

    let t0 = Instant::now();
    env.op.stop().await;
    let stopped_in = t0.elapsed();
    let stopped_cleanly = env.op.log().contains("controllers stopped");
    eprintln!(
        "RESTART the operator stopped in {} ms (graceful: {stopped_cleanly})",
        ms(stopped_in)
    );
    env.op.restart().await;
    env.wait_admin().await;
    // Every property is checked, and all that fail are reported together.
    let mut problems: Vec<String> = Vec::new();
    let readyz = poll_until(READYZ_WAIT, || async {
        matches!(http_get(env.admin(), "/readyz").await, Ok((200, _))).then_some(())
    })
    .await;
    if readyz.is_none() {
        problems.push(format!(
            "/readyz did not answer 200 within {READYZ_WAIT:?} of the restart; it answers {:?}",
            http_get(env.admin(), "/readyz").await.ok()
        ));
    }
    // The restarted operator has reconciled every object once and scanned once; then one
    // more scan, so that anything the first one triggered has run too.
    wait_until(
        WAIT,
        "3 reconciles and a scan after the restart",
        || async {
            let m = env.metrics().await;
            let reconciles = metric_value(
                &m,
                "jetstream_operator_reconciles_total",
                &[("kind", "Stream")],
            );
            (reconciles >= 3.0 && list_requests(&m) >= 1.0).then_some(())
        },
    )
    .await;
    env.wait_scans(1).await;
    let m = env.metrics().await;
    eprintln!(
        "RESTART requests since the restart: stream.info={} stream.list={} stream.create={} stream.update={} kube_writes={}",
        requests(&m, "stream.info"),
        requests(&m, "stream.list"),
        requests(&m, "stream.create"),
        requests(&m, "stream.update"),
        kube_writes(&m)
    );

    let after = snapshot(&env.api).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (name, (rv, status)) in &after {
        let (rv0, status0) = &before[name];
        if rv != rv0 {
            problems.push(format!(
                "Stream {name} was written (resourceVersion {rv0} -> {rv})\n  status before: {status0}\n  status after:  {status}"
            ));
        }
    }
    let events = events_in(env.cp, env.ns()).await;
    if events != events0 {
        problems.push(format!("events were written: {events0:#?} -> {events:#?}"));
    }
    if kube_writes(&m) != 0.0 {
        problems.push(format!(
            "the restarted operator made {} Kubernetes writes",
            kube_writes(&m)
        ));
    }
    for op in ["stream.create", "stream.update", "stream.delete"] {
        if requests(&m, op) != 0.0 {
            problems.push(format!("{} {op} requests", requests(&m, op)));
        }
    }
    for (name, ..) in EXAMPLE_STREAMS {
        let info = stream_info(&js, name).await.expect("stream");
        if info.created != created[name] {
            problems.push(format!(
                "{name} was recreated ({} -> {})",
                created[name], info.created
            ));
        }
    }
    let names = stream_names(&js).await;
    if names.len() != 3 {
        problems.push(format!("expected 3 streams, JetStream holds {names:?}"));
    }
    assert!(
        problems.is_empty(),
        "the restart changed things:\n- {}",
        problems.join("\n- ")
    );
}
