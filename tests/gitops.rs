//! What GitOps tools see. Objects are driven through every situation (created, nothing to
//! do, updated, drift repaired, preventUpdate differences, waiting, transient failure,
//! stalled, paused) and their live status is judged by two oracles: kstatus itself (the
//! library Flux uses, built by scripts/install-tools as `status-check`), and Argo CD's
//! built-in health checks for `jetstream.nats.io`, as their contract reads (conditions in
//! order, the first False is Degraded; Ready is Healthy only with a healthy reason;
//! otherwise Progressing, Degraded after 30 s, from a `lastTransitionTime` that must carry
//! fractional seconds). Also: NACK's Deployment arguments start the binary unchanged, and a
//! template mistake that joins two subjects is refused at admission.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The oracles

/// What kstatus computes for each object: `(name, status)`.
fn kstatus(objects: &[&DynamicObject]) -> Vec<(String, String)> {
    let input = serde_json::to_vec(objects).expect("objects as JSON");
    let mut child = Command::new(tool("status-check"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run status-check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write objects");
    let out = child.wait_with_output().expect("status-check output");
    assert!(out.status.success(), "status-check failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let who = parts.next().unwrap_or_default();
            let status = parts.next().unwrap_or_default();
            (
                who.split('/').nth(1).unwrap_or_default().to_owned(),
                status.to_owned(),
            )
        })
        .collect()
}

/// Argo CD's health of an object, by the contract of its built-in checks for this API;
/// `Err` where the check would fail with a script error.
fn argo_health(obj: &DynamicObject) -> Result<&'static str, String> {
    const HEALTHY: [&str; 5] = ["Created", "Updated", "Noop", "SkipCreate", "SkipUpdate"];
    let time =
        regex::Regex::new(r"(\d+)-(\d+)-(\d+)[A-Za-z](\d+):(\d+):(\d+)\.\d+Z").expect("pattern");
    let Some(conditions) = obj.data["status"]["conditions"].as_array() else {
        return Ok("Progressing");
    };
    for c in conditions {
        if c["status"] == "False" {
            return Ok("Degraded");
        }
        if c["type"] != "Ready" {
            continue;
        }
        if HEALTHY.contains(&c["reason"].as_str().unwrap_or_default()) {
            return Ok("Healthy");
        }
        let t = c["lastTransitionTime"].as_str().unwrap_or_default();
        if !time.is_match(t) {
            return Err(format!(
                "lastTransitionTime {t:?} does not match Argo CD's pattern"
            ));
        }
        let at: jiff::Timestamp = t.parse().map_err(|e| format!("{t}: {e}"))?;
        let age = jiff::Timestamp::now().duration_since(at);
        return Ok(if age.as_secs() > 30 {
            "Degraded"
        } else {
            "Progressing"
        });
    }
    Ok("Progressing")
}

/// The operator's own contract on the condition list: Ready first and always there,
/// Reconciling and Stalled only while True, every time with fractional seconds.
fn assert_contract(obj: &DynamicObject) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let conditions = obj.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        conditions.first().map(|c| c["type"].clone()),
        Some(json!("Ready")),
        "{name}: {}",
        status_summary(obj)
    );
    let fractional = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$").expect("re");
    for c in &conditions {
        if c["type"] == "Reconciling" || c["type"] == "Stalled" {
            assert_eq!(c["status"], "True", "{name}: {}", status_summary(obj));
        }
        let t = c["lastTransitionTime"].as_str().unwrap_or_default();
        assert!(fractional.is_match(t), "{name}: lastTransitionTime {t}");
    }
}

/// Waits until object `name` shows `(Ready status, reason)`, then checks it with both
/// oracles.
async fn judge(
    api: &kube::Api<DynamicObject>,
    name: &str,
    ready: (&str, &str),
    argo: &str,
    flux: &str,
) -> DynamicObject {
    let obj = wait_object(
        api,
        name,
        &format!("Ready={} with reason {}", ready.0, ready.1),
        WAIT,
        |o| condition(o, "Ready").is_some_and(|(s, r, _)| s == ready.0 && r == ready.1),
    )
    .await;
    assert_contract(&obj);
    dump(&obj, ready.1);
    assert_eq!(
        argo_health(&obj),
        Ok(argo),
        "{name}: Argo CD health of {}",
        status_summary(&obj)
    );
    let k = kstatus(&[&obj]);
    assert_eq!(
        k,
        vec![(name.to_owned(), flux.to_owned())],
        "{name}: kstatus of {}",
        status_summary(&obj)
    );
    obj
}

/// With `JSO_DUMP_OBJECTS=<dir>`, writes each judged object there as JSON, so the real
/// Argo CD health scripts can be run on them outside the test.
fn dump(obj: &DynamicObject, situation: &str) {
    let Some(dir) = std::env::var_os("JSO_DUMP_OBJECTS") else {
        return;
    };
    let name = obj.metadata.name.clone().unwrap_or_default();
    let kind = obj
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default();
    let path = Path::new(&dir).join(format!("{kind}-{name}-{situation}.json"));
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(&path, serde_json::to_vec_pretty(obj).unwrap_or_default())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

async fn annotate(api: &kube::Api<DynamicObject>, name: &str, key: &str, value: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("annotate {name}: {e}"));
}

// ---------------------------------------------------------------------------------------
// 1. Every situation, as kstatus and Argo CD see it

#[tokio::test]
async fn flux_and_argo_cd_read_every_situation_right() {
    let cp = control_plane().await;
    let ns = TestNs::new("gitops").await;
    let n = ns.name();
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let admin = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            n,
            "--admin-address",
            &admin,
            "--resync-interval",
            "2s",
        ],
    )
    .await;
    let ready_reconciles = || async {
        metric_value(
            &metrics(&admin).await,
            "jetstream_operator_reconciles_total",
            &[("kind", "Stream"), ("outcome", "ready")],
        )
    };
    let streams = dyn_api(cp, n, "streams");
    let consumers = dyn_api(cp, n, "consumers");
    let stream = |name: &str, extra: &str| {
        manifest(
            "Stream",
            name,
            &format!("name: {name}\nsubjects: [\"{name}.>\"]\n{extra}"),
        )
    };

    // Created.
    apply_ok(cp, n, &stream("life", ""));
    judge(&streams, "life", ("True", "Created"), "Healthy", "Current").await;
    // Nothing to do (a forced reconcile): how it came to match stays, nothing is written.
    let before = streams.get("life").await.expect("life");
    let count = ready_reconciles().await;
    annotate(
        &streams,
        "life",
        "jetstream.nats.io/reconcile-requested-at",
        "1",
    )
    .await;
    wait_until(WAIT, "the forced reconcile of life", || async {
        (ready_reconciles().await > count).then_some(())
    })
    .await;
    let after = judge(&streams, "life", ("True", "Created"), "Healthy", "Current").await;
    assert_eq!(
        before.data["status"], after.data["status"],
        "a reconcile that changed nothing rewrote the status"
    );
    // Updated.
    apply_ok(cp, n, &stream("life", "maxMsgs: 10"));
    judge(&streams, "life", ("True", "Updated"), "Healthy", "Current").await;
    // Drift repaired (changed behind the operator's back; the advisory brings it back).
    let mut cfg = get_stream_config(&js, "life").await.expect("life");
    cfg.max_messages = 3;
    js.update_stream(cfg)
        .await
        .expect("change life behind the operator");
    judge(&streams, "life", ("True", "Updated"), "Healthy", "Current").await;
    wait_until(WAIT, "life's max_msgs back to 10", || async {
        (get_stream_config(&js, "life").await?.max_messages == 10).then_some(())
    })
    .await;

    // The other kinds, healthy.
    apply_ok(cp, n, &manifest("KeyValue", "settings", "bucket: settings"));
    apply_ok(cp, n, &manifest("ObjectStore", "files", "bucket: files"));
    apply_ok(
        cp,
        n,
        &manifest("Account", "main", &format!("servers: [\"{}\"]", nats.url())),
    );
    let (kvs, objs, accounts) = (
        dyn_api(cp, n, "keyvalues"),
        dyn_api(cp, n, "objectstores"),
        dyn_api(cp, n, "accounts"),
    );
    judge(&kvs, "settings", ("True", "Created"), "Healthy", "Current").await;
    judge(&objs, "files", ("True", "Created"), "Healthy", "Current").await;
    judge(&accounts, "main", ("True", "Noop"), "Healthy", "Current").await;

    // preventUpdate: differences reported, allowed, healthy.
    apply_ok(cp, n, &stream("held", "maxMsgs: 10\npreventUpdate: true"));
    judge(&streams, "held", ("True", "Created"), "Healthy", "Current").await;
    let mut cfg = get_stream_config(&js, "held").await.expect("held");
    cfg.max_messages = 3;
    js.update_stream(cfg)
        .await
        .expect("change held behind the operator");
    let held = judge(
        &streams,
        "held",
        ("True", "SkipUpdate"),
        "Healthy",
        "Current",
    )
    .await;
    let (_, _, message) = condition(&held, "Ready").unwrap_or_default();
    assert!(message.contains("max_msgs"), "{message}");

    // Waiting for a stream: in progress.
    apply_ok(
        cp,
        n,
        &manifest("Consumer", "early", "streamName: later\ndurableName: early"),
    );
    judge(
        &consumers,
        "early",
        ("Unknown", "WaitingForStream"),
        "Progressing",
        "InProgress",
    )
    .await;
    apply_ok(cp, n, &stream("later", ""));
    judge(
        &consumers,
        "early",
        ("True", "Created"),
        "Healthy",
        "Current",
    )
    .await;

    // A transient failure: NATS unreachable (an Account naming a port nobody listens on).
    let dead = format!("nats://127.0.0.1:{}", free_port());
    apply_ok(
        cp,
        n,
        &manifest("Account", "nowhere", &format!("servers: [\"{dead}\"]")),
    );
    apply_ok(cp, n, &stream("unreachable", "account: nowhere"));
    judge(
        &streams,
        "unreachable",
        ("False", "ConnectionFailed"),
        "Degraded",
        "InProgress",
    )
    .await;

    // Stalled: JetStream refuses (subjects overlap another stream's).
    apply_ok(
        cp,
        n,
        &manifest("Stream", "overlap", "name: overlap\nsubjects: [\"life.x\"]"),
    );
    judge(
        &streams,
        "overlap",
        ("False", "NotSupported"),
        "Degraded",
        "Failed",
    )
    .await;

    // Paused: a healthy object stays healthy.
    annotate(&streams, "life", "jetstream.nats.io/paused", "true").await;
    let paused = wait_object(
        &streams,
        "life",
        "the pause in Ready's message",
        WAIT,
        |o| condition(o, "Ready").is_some_and(|(_, _, m)| m.contains("paused")),
    )
    .await;
    assert_contract(&paused);
    assert_eq!(argo_health(&paused), Ok("Healthy"));
    assert_eq!(
        kstatus(&[&paused]),
        vec![("life".to_owned(), "Current".to_owned())]
    );

    // `kubectl get streams` reads: subjects as written, the reason of Ready.
    let table = kubectl_ok(cp, &["get", "streams", "-n", n]);
    let rows = &parse_kubectl_tables(&table)[0].rows;
    let later = rows
        .iter()
        .find(|r| r.get("NAME").map(String::as_str) == Some("later"))
        .unwrap_or_else(|| panic!("no row for later:\n{table}"));
    assert_eq!(
        later.get("SUBJECTS").map(String::as_str),
        Some("later.>"),
        "{table}"
    );
    assert_eq!(
        later.get("REASON").map(String::as_str),
        Some("Created"),
        "{table}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Objects written by earlier versions (and NACK) are rewritten once

#[tokio::test]
async fn earlier_status_is_rewritten_once() {
    let cp = control_plane().await;
    let ns = TestNs::new("gitops-old").await;
    let n = ns.name();
    let nats = Nats::start().await;
    apply_ok(
        cp,
        n,
        &manifest("Stream", "old", "name: old\nsubjects: [\"old.>\"]"),
    );
    let streams = dyn_api(cp, n, "streams");
    // The status an earlier version wrote: all three conditions, whole seconds.
    let generation = streams.get("old").await.expect("old").metadata.generation;
    let cond = |t: &str, s: &str| {
        json!({"type": t, "status": s, "reason": "Ready", "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation})
    };
    // Written as the earlier version wrote it: server-side apply, the operator's field
    // manager.
    streams
        .patch_status(
            "old",
            &PatchParams::apply("jetstream-operator").force(),
            &Patch::Apply(json!({
                "apiVersion": "jetstream.nats.io/v1beta2", "kind": "Stream",
                "status": {"observedGeneration": generation, "conditions": [
                    cond("Ready", "True"), cond("Reconciling", "False"), cond("Stalled", "False")
                ]}
            })),
        )
        .await
        .expect("write an earlier status");
    let before = streams.get("old").await.expect("old");
    // Argo CD cannot read the old shape as healthy: its pattern needs fractional seconds
    // (a C Lua stops with an error there; Argo CD's own interpreter reads it as Degraded).
    assert_ne!(
        argo_health(&before),
        Ok("Healthy"),
        "the old shape is what Argo CD misreads"
    );

    let _op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            n,
            "--admin-address",
            "127.0.0.1:0",
        ],
    )
    .await;
    let obj = judge(&streams, "old", ("True", "Created"), "Healthy", "Current").await;
    let conditions = obj.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(conditions.len(), 1, "{}", status_summary(&obj));
}

// ---------------------------------------------------------------------------------------
// 3. NACK's Deployment arguments

#[tokio::test]
async fn nack_chart_arguments_start_the_operator() {
    let cp = control_plane().await;
    let ns = TestNs::new("gitops-nack").await;
    let n = ns.name();
    let nats = Nats::start().await;
    let streams = dyn_api(cp, n, "streams");
    // Environment only keeps the test's operator to its namespace and off shared ports;
    // the argument lists are those NACK's chart renders.
    let env = [("JSO_NAMESPACES", n), ("JSO_ADMIN_ADDRESS", "127.0.0.1:0")];

    // The chart's defaults (no jetstream.nats.url): `-crd-connect`, so objects name their
    // servers.
    let mut op = Operator::start_raw(cp, &["-crd-connect"], &env).await;
    apply_ok(
        cp,
        n,
        &manifest(
            "Stream",
            "own",
            &format!(
                "name: own\nsubjects: [\"own.>\"]\nservers: [\"{}\"]",
                nats.url()
            ),
        ),
    );
    wait_ready(&streams, "own").await;
    assert!(
        op.log().contains("NACK flag -crd-connect ignored"),
        "{}",
        op.log()
    );
    op.stop().await;

    // With a URL, control-loop mode, klog verbosity and the probe address.
    let port = free_port();
    let url = format!("-s={}", nats.url());
    let probe = format!("--health-probe-bind-address=127.0.0.1:{port}");
    let env = [("JSO_NAMESPACES", n)];
    let op = Operator::start_raw(cp, &["-v=2", &url, &probe, "--control-loop"], &env).await;
    apply_ok(
        cp,
        n,
        &manifest("Stream", "global", "name: global\nsubjects: [\"global.>\"]"),
    );
    wait_ready(&streams, "global").await;
    let addr = format!("127.0.0.1:{port}");
    let (code, _) = wait_until(WAIT, "NACK's liveness probe, /healthz", || async {
        http_get(&addr, "/healthz").await.ok()
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(readyz(&addr).await, Some(200));
    assert!(
        op.log().contains("NACK flag -control-loop ignored"),
        "{}",
        op.log()
    );
}

// ---------------------------------------------------------------------------------------
// 4. A template mistake, refused at admission

#[tokio::test]
async fn two_subjects_joined_by_a_template_are_refused_naming_the_subject() {
    let cp = control_plane().await;
    let ns = TestNs::new("gitops-tpl").await;
    let chart = repo_root().join("tests/fixtures/app-chart");
    let helm = tool("helm");
    // The field report's template, given a stream with two subjects, renders them as one.
    let out = Command::new(&helm)
        .args(["template", "app"])
        .arg(&chart)
        .args([
            "--set",
            "nack.streams[0].name=emails",
            "--set",
            "nack.streams[0].subjects={emails.send,emails.bounce}",
        ])
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        rendered.contains("subjects: [emails.send emails.bounce]"),
        "{rendered}"
    );
    let refused = apply_refused(cp, ns.name(), &rendered);
    assert!(
        refused.contains("emails.send emails.bounce"),
        "the refusal does not name the subject: {refused}"
    );
    assert!(refused.contains("subjects"), "{refused}");

    // Other mistakes the same rule catches, and what it lets through.
    for bad in ["a..b", "a.>.b", ".a", "a b"] {
        let yaml = manifest(
            "Stream",
            "bad",
            &format!("name: bad\nsubjects: [\"{bad}\"]"),
        );
        let refused = apply_refused(cp, ns.name(), &yaml);
        assert!(refused.contains(bad), "{bad}: {refused}");
    }
    for good in ["a.*.c", ">", "a.>", "$KV.x.>", "orders"] {
        let yaml = manifest(
            "Stream",
            "good",
            &format!("name: good\nsubjects: [\"{good}\"]"),
        );
        apply_ok(cp, ns.name(), &yaml);
    }
}
