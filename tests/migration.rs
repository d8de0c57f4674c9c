//! Migrating from NACK: objects and assets exactly as NACK leaves them behind (NACK's
//! finalizers, `*.nats.io/state` annotations, its CRD defaults materialised in the spec, its
//! status shape, and the assets its control loop created without an owner marker) are
//! taken over in place: nothing recreated, no message or delivery state lost, the one
//! change the takeover makes named in the `Adopted` event. End to end on a real
//! kube-apiserver + etcd, a nats-server per test and the operator binary.
mod support;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const OWNER_KEY: &str = "jetstream.nats.io/owner";
/// The max age NACK's control loop gave a stream whose spec had `maxAge: ''` (jsm.go's
/// `DefaultStream` template).
const ONE_YEAR: Duration = Duration::from_secs(8760 * 3600);
/// Messages published to each stream before the takeover.
const MESSAGES: u64 = 50;
/// Messages the `billing` consumer has delivered before the takeover.
const FETCHED: u64 = 10;
/// When NACK last marked the objects Ready.
const NACK_TRANSITION: &str = "2025-03-01T10:00:00Z";

/// What JetStream held before the operator started.
struct Assets {
    orders: stream::Info,
    audit: stream::Info,
    billing: consumer::Info,
}

/// One test's world: a namespace with the objects NACK left, and the nats-server with the
/// assets NACK's control loop made.
struct World {
    cp: &'static ControlPlane,
    ns: TestNs,
    nats: Nats,
    js: jetstream::Context,
    streams: Api<DynamicObject>,
    consumers: Api<DynamicObject>,
    before: Assets,
}

impl World {
    async fn nack_left_behind(prefix: &str) -> World {
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let nats = Nats::start().await;
        let js = nats.jetstream().await;
        let before = create_assets_as_nack_did(&js).await;
        let streams = dyn_api(cp, ns.name(), "streams");
        let consumers = dyn_api(cp, ns.name(), "consumers");
        let world = World {
            cp,
            ns,
            nats,
            js,
            streams,
            consumers,
            before,
        };
        world.create_objects_as_nack_left_them().await;
        world
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    /// The objects, as NACK left them: its defaults in the spec, its finalizer, its state
    /// annotation (applied with kubectl, finalizer included on create), then its status
    /// written through the status subresource.
    async fn create_objects_as_nack_left_them(&self) {
        for (name, storage, subject, info) in [
            ("orders", "memory", "orders.>", &self.before.orders),
            ("audit", "file", "audit.>", &self.before.audit),
        ] {
            let state = serde_json::to_string(&info.config).expect("JSON");
            let obj = nack_stream(name, storage, subject, &state);
            self.apply(&obj);
        }
        let state = serde_json::to_string(&self.before.billing.config).expect("JSON");
        let obj = nack_consumer("billing", "orders", &state);
        self.apply(&obj);

        for (api, name, kind) in [
            (&self.streams, "orders", "Stream"),
            (&self.streams, "audit", "Stream"),
            (&self.consumers, "billing", "Consumer"),
        ] {
            let status = json!({
                "status": {
                    "observedGeneration": 1,
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Ready",
                        "message": format!("{kind} successfully created or updated."),
                        "lastTransitionTime": NACK_TRANSITION,
                    }],
                }
            });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap_or_else(|e| panic!("cannot write NACK's status of {kind} {name}: {e}"));
            // Stored as NACK wrote it.
            let obj = api
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("cannot read {kind} {name}: {e}"));
            assert_eq!(obj.metadata.generation, Some(1), "{kind} {name}");
            assert_eq!(
                condition(&obj, "Ready"),
                Some((
                    "True".into(),
                    "Ready".into(),
                    format!("{kind} successfully created or updated.")
                )),
                "{kind} {name}: {}",
                status_summary(&obj)
            );
            assert!(condition(&obj, "Reconciling").is_none());
        }
    }

    fn apply(&self, obj: &Value) {
        let text = serde_json::to_string_pretty(obj).expect("JSON");
        let out = kubectl_apply_yaml(self.cp, self.ns(), &text);
        assert!(
            out.status.success(),
            "kubectl apply of an object as NACK left it failed ({}):\nstderr: {}\nmanifest:\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the operator on this world's namespace and NATS, admin at a fixed address.
    async fn start_operator(&self, extra: &[&str]) -> (Operator, String) {
        let admin = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--servers",
            self.nats.url(),
            "--namespace",
            self.ns(),
            "--resync-interval",
            "3s",
            "--admin-address",
            admin.as_str(),
        ];
        args.extend_from_slice(extra);
        let op = Operator::start(self.cp, &args).await;
        wait_until(WAIT, "the operator's admin server to answer", || async {
            matches!(http_get(&admin, "/metrics").await, Ok((200, _))).then_some(())
        })
        .await;
        (op, admin)
    }

    async fn stream(&self, name: &str) -> stream::Info {
        stream_info(&self.js, name)
            .await
            .unwrap_or_else(|| panic!("stream {name} is not in JetStream"))
    }

    /// Every event in the namespace, as `type reason kind/name: message (xN)` lines.
    async fn event_lines(&self) -> Vec<String> {
        events_in(self.cp, self.ns())
            .await
            .into_iter()
            .map(|e| {
                format!(
                    "{} {} {}/{}: {} (x{})",
                    e.type_, e.reason, e.kind, e.name, e.message, e.count
                )
            })
            .collect()
    }
}

/// In JetStream, before the operator: `orders` (memory, max_age 1 year, as NACK's control
/// loop created it from `maxAge: ''`) and `audit` (file, max_age 0), 50 messages each, and
/// the durable pull consumer `billing` on `orders` with ack policy none (NACK's CRD default)
/// that has delivered 10 messages. No owner metadata anywhere.
async fn create_assets_as_nack_did(js: &jetstream::Context) -> Assets {
    for (name, storage, max_age) in [
        ("orders", stream::StorageType::Memory, ONE_YEAR),
        ("audit", stream::StorageType::File, Duration::ZERO),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            storage,
            max_age,
            retention: stream::RetentionPolicy::Limits,
            max_consumers: -1,
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            num_replicas: 1,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("cannot create stream {name}: {e}"));
        for i in 0..MESSAGES {
            js.publish(format!("{name}.event"), format!("{name}-{i}").into())
                .await
                .unwrap_or_else(|e| panic!("publish to {name}: {e}"))
                .await
                .unwrap_or_else(|e| panic!("publish ack from {name}: {e}"));
        }
    }
    let orders = js.get_stream("orders").await.expect("stream orders");
    orders
        .create_consumer(consumer::pull::Config {
            durable_name: Some("billing".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ack_wait: Duration::from_nanos(1),
            replay_policy: consumer::ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .expect("create consumer billing");
    let pc: consumer::PullConsumer = orders
        .get_consumer("billing")
        .await
        .expect("get consumer billing");
    let mut fetched = 0;
    let mut batch = pc
        .fetch()
        .max_messages(FETCHED as usize)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch from billing");
    while let Some(m) = batch.next().await {
        m.expect("message from billing");
        fetched += 1;
    }
    assert_eq!(fetched, FETCHED, "billing delivered {fetched} messages");
    let billing = wait_until(WAIT, "billing to record its deliveries", || async {
        let i = consumer_info(js, "orders", "billing").await?;
        (i.delivered.stream_sequence == FETCHED && i.num_pending == MESSAGES - FETCHED).then_some(i)
    })
    .await;
    let orders = stream_info(js, "orders").await.expect("stream orders");
    let audit = stream_info(js, "audit").await.expect("stream audit");
    for s in [&orders, &audit] {
        assert_eq!(s.state.messages, MESSAGES, "{}", s.config.name);
        assert!(
            !s.config.metadata.contains_key(OWNER_KEY),
            "{:?}",
            s.config.metadata
        );
    }
    assert_eq!(orders.config.max_age, ONE_YEAR);
    assert_eq!(billing.config.ack_policy, consumer::AckPolicy::None);
    Assets {
        orders,
        audit,
        billing,
    }
}

/// A Stream as NACK left it: every default of NACK's CRD materialised in the spec.
fn nack_stream(name: &str, storage: &str, subject: &str, state: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Stream",
        "metadata": {
            "name": name,
            "finalizers": ["stream.nats.io/finalizer"],
            "annotations": { "stream.nats.io/state": state },
        },
        "spec": {
            "name": name,
            "subjects": [subject],
            "storage": storage,
            "retention": "limits",
            "maxConsumers": -1,
            "maxMsgs": -1,
            "maxBytes": -1,
            "maxAge": "",
            "maxMsgSize": -1,
            "maxMsgsPerSubject": 0,
            "replicas": 1,
            "noAck": false,
            "discard": "old",
            "discardPerSubject": false,
            "compression": "",
            "firstSequence": 0,
            "sealed": false,
            "denyDelete": false,
            "denyPurge": false,
            "allowRollup": false,
            "allowDirect": false,
            "mirrorDirect": false,
            "allowMsgTtl": false,
            "subjectDeleteMarkerTtl": "",
            "allowMsgCounter": false,
            "allowAtomicPublish": false,
            "allowMsgSchedules": false,
            "allowBatched": false,
            "persistMode": "",
            "preventDelete": false,
            "preventUpdate": false,
            "servers": [],
            "creds": "",
            "nkey": "",
        },
    })
}

/// A Consumer as NACK left it: NACK's consumer defaults materialised in the spec.
fn nack_consumer(name: &str, stream: &str, state: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Consumer",
        "metadata": {
            "name": name,
            "finalizers": ["consumer.nats.io/finalizer"],
            "annotations": { "consumer.nats.io/state": state },
        },
        "spec": {
            "streamName": stream,
            "durableName": name,
            "deliverPolicy": "all",
            "ackPolicy": "none",
            "ackWait": "1ns",
            "replayPolicy": "instant",
            "flowControl": false,
            "headersOnly": false,
            "memStorage": false,
            "pauseUntil": "",
            "priorityPolicy": "",
            "pinnedTtl": "",
            "preventDelete": false,
            "preventUpdate": false,
            "servers": [],
            "creds": "",
            "nkey": "",
        },
    })
}

/// Server-maintained (`_nats.*`) and ownership metadata removed: what the takeover may add.
fn without_marker(md: &HashMap<String, String>) -> HashMap<String, String> {
    md.iter()
        .filter(|(k, _)| !k.starts_with("_nats.") && !k.starts_with("jetstream.nats.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn comparable_stream(c: &stream::Config) -> stream::Config {
    stream::Config {
        metadata: without_marker(&c.metadata),
        ..c.clone()
    }
}

fn comparable_consumer(c: &consumer::Config) -> consumer::Config {
    consumer::Config {
        metadata: without_marker(&c.metadata),
        ..c.clone()
    }
}

fn server_metadata_only(md: &HashMap<String, String>) -> HashMap<String, String> {
    md.iter()
        .filter(|(k, _)| !k.starts_with("_nats."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn status_bool(obj: &DynamicObject, field: &str) -> Option<bool> {
    obj.data.get("status")?.get(field)?.as_bool()
}

/// The conditions are this operator's: every lastTransitionTime with fractional seconds
/// (NACK wrote whole seconds), none of NACK's own types.
fn standard_conditions(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| {
                    c["lastTransitionTime"]
                        .as_str()
                        .is_some_and(|t| t.contains('.'))
                })
        })
}

/// Ready=True with a healthy reason, and neither Reconciling nor Stalled (they appear only
/// while True).
fn standard_ready(obj: &DynamicObject) -> bool {
    standard_conditions(obj)
        && condition(obj, "Ready").is_some_and(|c| {
            c.0 == "True" && ["Created", "Updated", "Noop", "SkipUpdate"].contains(&c.1.as_str())
        })
        && condition(obj, "Reconciling").is_none()
        && condition(obj, "Stalled").is_none()
}

/// Waits until the object carries this operator's standard conditions (whatever they say).
async fn wait_standard_status(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_object(
        api,
        name,
        "the standard conditions",
        WAIT,
        standard_conditions,
    )
    .await
}

/// Waits until the object is taken over: standard Ready and `status.adopted`.
async fn wait_taken_over(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_object(
        api,
        name,
        "taken over (Ready=True with the standard conditions, status.adopted=true)",
        WAIT,
        |o| standard_ready(o) && status_bool(o, "adopted") == Some(true),
    )
    .await
}

/// The text of README.md's "Migrating from NACK" section.
fn readme_migration_section() -> String {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = readme
        .find("## Migrating from NACK")
        .expect("README.md has no \"Migrating from NACK\" section");
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").map(|i| i + 1).unwrap_or(rest.len());
    readme[start..start + 3 + end].to_owned()
}

/// Checks that JetStream still holds exactly what NACK left (`changed` lists what the
/// takeover may have changed: `max_age` of orders, and the owner markers). Returns the
/// problems found.
async fn check_assets(w: &World, orders_max_age: Duration, stamped: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let ns = w.ns();
    let names = stream_names(&w.js).await;
    if names != ["audit", "orders"] {
        problems.push(format!("JetStream holds the streams {names:?}"));
    }
    for (name, before) in [("orders", &w.before.orders), ("audit", &w.before.audit)] {
        let now = w.stream(name).await;
        if now.created != before.created {
            problems.push(format!(
                "stream {name} was recreated (created {} -> {})",
                before.created, now.created
            ));
        }
        if now.state.messages != MESSAGES {
            problems.push(format!(
                "stream {name} holds {} messages, not {MESSAGES}",
                now.state.messages
            ));
        }
        let owner = now.config.metadata.get(OWNER_KEY).cloned();
        let want_owner = stamped.then(|| format!("{ns}/{name}"));
        if owner != want_owner {
            problems.push(format!(
                "stream {name} has owner {owner:?}, expected {want_owner:?}"
            ));
        }
        let mut expected = comparable_stream(&before.config);
        if name == "orders" {
            expected.max_age = orders_max_age;
        }
        let have = comparable_stream(&now.config);
        if have != expected {
            problems.push(format!(
                "stream {name} changed beyond what the takeover may change:\n  expected {expected:?}\n  have     {have:?}"
            ));
        }
        if !stamped
            && server_metadata_only(&now.config.metadata)
                != server_metadata_only(&before.config.metadata)
        {
            problems.push(format!(
                "stream {name}'s metadata changed: {:?} -> {:?}",
                before.config.metadata, now.config.metadata
            ));
        }
    }
    let before = &w.before.billing;
    match consumer_info(&w.js, "orders", "billing").await {
        None => problems.push("consumer billing is gone".into()),
        Some(now) => {
            if now.created != before.created {
                problems.push(format!(
                    "consumer billing was recreated (created {} -> {})",
                    before.created, now.created
                ));
            }
            if now.num_pending != before.num_pending
                || now.delivered.stream_sequence != before.delivered.stream_sequence
                || now.delivered.consumer_sequence != before.delivered.consumer_sequence
            {
                problems.push(format!(
                    "consumer billing lost its delivery state: num_pending {} -> {}, delivered {:?} -> {:?}",
                    before.num_pending, now.num_pending, before.delivered, now.delivered
                ));
            }
            if now.config.ack_policy != consumer::AckPolicy::None {
                problems.push(format!(
                    "consumer billing's ack policy is {:?}, not none (NACK's default, honoured as written)",
                    now.config.ack_policy
                ));
            }
            let owner = now.config.metadata.get(OWNER_KEY).cloned();
            let want_owner = stamped.then(|| format!("{ns}/billing"));
            if owner != want_owner {
                problems.push(format!(
                    "consumer billing has owner {owner:?}, expected {want_owner:?}"
                ));
            }
            let (expected, have) = (
                comparable_consumer(&before.config),
                comparable_consumer(&now.config),
            );
            if have != expected {
                problems.push(format!(
                    "consumer billing changed beyond the owner marker:\n  expected {expected:?}\n  have     {have:?}"
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn nack_objects_are_taken_over() {
    let w = World::nack_left_behind("nack").await;
    let _logs = LogsOnPanic::new().control_plane(w.cp);
    let ns = w.ns().to_owned();
    let (_op, _admin) = w.start_operator(&[]).await;

    let orders = wait_taken_over(&w.streams, "orders").await;
    let audit = wait_taken_over(&w.streams, "audit").await;
    let billing = wait_taken_over(&w.consumers, "billing").await;
    // The Adopted events are published before the status is written.
    let events = wait_until(WAIT, "an Adopted event for each object", || async {
        let ev = events_in(w.cp, &ns).await;
        ["orders", "audit", "billing"]
            .iter()
            .all(|n| ev.iter().any(|e| e.name == *n && e.reason == "Adopted"))
            .then_some(ev)
    })
    .await;
    for line in w.event_lines().await {
        eprintln!("MIGRATION event {line}");
    }

    let mut problems = check_assets(&w, Duration::ZERO, true).await;

    // Objects: standard status, adopted, NACK's finalizers and state annotations kept.
    for (obj, kind, finalizer, state_key) in [
        (
            &orders,
            "Stream",
            "stream.nats.io/finalizer",
            "stream.nats.io/state",
        ),
        (
            &audit,
            "Stream",
            "stream.nats.io/finalizer",
            "stream.nats.io/state",
        ),
        (
            &billing,
            "Consumer",
            "consumer.nats.io/finalizer",
            "consumer.nats.io/state",
        ),
    ] {
        let name = obj.metadata.name.clone().unwrap_or_default();
        eprintln!("MIGRATION {kind} {name}: {}", status_summary(obj));
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        if finalizers != [finalizer] {
            problems.push(format!(
                "{kind} {name} has finalizers {finalizers:?}, not [{finalizer}]"
            ));
        }
        if !obj
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(state_key))
        {
            problems.push(format!("{kind} {name} lost NACK's {state_key} annotation"));
        }
        if obj.metadata.generation != Some(1) {
            problems.push(format!(
                "{kind} {name}'s spec was changed: generation {:?}",
                obj.metadata.generation
            ));
        }
        let (_, _, message) = condition(obj, "Ready").unwrap_or_default();
        if message.ends_with("successfully created or updated.") {
            problems.push(format!(
                "{kind} {name} still carries NACK's Ready message: {message}"
            ));
        }
    }

    // Events: one Adopted per object, naming what changed; nothing else.
    let adopted = |name: &str| -> Vec<&EventSummary> {
        events
            .iter()
            .filter(|e| e.name == name && e.reason == "Adopted")
            .collect()
    };
    for (name, kind) in [
        ("orders", "Stream"),
        ("audit", "Stream"),
        ("billing", "Consumer"),
    ] {
        let ev = adopted(name);
        if ev.len() != 1 || ev[0].count != 1 || ev[0].type_ != "Normal" || ev[0].kind != kind {
            problems.push(format!(
                "expected one Normal Adopted event about {kind} {name}: {ev:#?}"
            ));
        }
    }
    let orders_note = adopted("orders")
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    if !orders_note.contains("max_age") {
        problems.push(format!(
            "the Adopted event of orders does not name max_age (1 year -> unlimited): {orders_note}"
        ));
    }
    for name in ["audit", "billing"] {
        for e in adopted(name) {
            if e.message.contains("max_age") || !e.message.contains("nothing else changed") {
                problems.push(format!(
                    "the takeover of {name} should change nothing but the owner marker: {}",
                    e.message
                ));
            }
        }
    }
    let others: Vec<String> = events
        .iter()
        .filter(|e| e.reason != "Adopted")
        .map(|e| {
            format!(
                "{} {} {}/{}: {}",
                e.type_, e.reason, e.kind, e.name, e.message
            )
        })
        .collect();
    if !others.is_empty() {
        problems.push(format!("events besides Adopted: {others:#?}"));
    }

    // README's migration table names the change too.
    let section = readme_migration_section();
    if !section.contains("max_age") {
        problems
            .push("README.md's \"Migrating from NACK\" section does not mention max_age".into());
    }

    // Deleting audit keeps its stream: it was adopted, and adopted assets are orphaned
    // unless the object says `deletionPolicy: Delete` (or the operator runs with
    // --adopted-deletion-policy=delete, as the migration guide says); orders stays too.
    kubectl_ok(
        w.cp,
        &["delete", "stream", "audit", "-n", &ns, "--timeout=60s"],
    );
    if w.streams.get_opt("audit").await.ok().flatten().is_some() {
        problems.push("object audit still exists after kubectl delete".into());
    }
    let orphaned = wait_until(WAIT, "an Orphaned event about audit", || async {
        let ev = events_about(w.cp, &ns, "Stream", "audit").await;
        ev.iter()
            .any(|e| e.reason == "Orphaned" && e.message.contains("adopted"))
            .then_some(ev)
    })
    .await;
    eprintln!("MIGRATION delete audit: {orphaned:?}");
    match stream_info(&w.js, "audit").await {
        None => problems.push("stream audit was deleted although it was adopted".into()),
        Some(kept) => {
            if kept.state.messages != MESSAGES || kept.created != w.before.audit.created {
                problems.push(format!(
                    "audit was touched by its object's deletion: {} messages, created {}",
                    kept.state.messages, kept.created
                ));
            }
            if kept.config.metadata.contains_key(OWNER_KEY) {
                problems.push("the kept stream audit still carries the owner marker".into());
            }
        }
    }
    let orders_now = w.stream("orders").await;
    if orders_now.state.messages != MESSAGES || orders_now.created != w.before.orders.created {
        problems.push(format!(
            "orders was touched by the deletion of audit: {} messages, created {}",
            orders_now.state.messages, orders_now.created
        ));
    }
    assert!(
        problems.is_empty(),
        "the takeover of NACK's objects went wrong:\n- {}",
        problems.join("\n- ")
    );
}

#[tokio::test]
async fn read_only_first_shows_what_would_change() {
    let w = World::nack_left_behind("nack-ro").await;
    let _logs = LogsOnPanic::new().control_plane(w.cp);
    let ns = w.ns().to_owned();
    let (mut op, admin) = w.start_operator(&["--read-only"]).await;

    // orders differs (max_age): Stalled/ReadOnly, naming the field.
    let orders = wait_stalled(&w.streams, "orders", &["ReadOnly"], WAIT).await;
    let (_, _, message) = condition(&orders, "Stalled").expect("Stalled");
    eprintln!("READ-ONLY orders: {message}");
    assert!(
        message.contains("max_age"),
        "the ReadOnly message does not name max_age: {message}"
    );
    assert_eq!(
        condition(&orders, "Ready").map(|c| c.0),
        Some("False".into()),
        "{}",
        status_summary(&orders)
    );
    // audit and billing match their specs (NACK's defaults honoured as written): Ready,
    // and not adopted, since nothing was stamped.
    let mut problems = Vec::new();
    for (api, name) in [(&w.streams, "audit"), (&w.consumers, "billing")] {
        let obj = wait_standard_status(api, name).await;
        eprintln!(
            "READ-ONLY {name}: {} (status.adopted={:?})",
            status_summary(&obj),
            status_bool(&obj, "adopted")
        );
        if !standard_ready(&obj) {
            problems.push(format!(
                "{name} matches its spec as NACK left it, yet the read-only preview says it would change: {}",
                status_summary(&obj)
            ));
        }
        if status_bool(&obj, "adopted") == Some(true) {
            problems.push(format!(
                "{name}: status.adopted is true in read-only mode, but nothing was taken over (the asset carries no owner marker)"
            ));
        }
    }

    // Give it two drift scans to do anything it should not, then: JetStream unchanged, no
    // write request of any kind, no Adopted event.
    let scans = |m: &str| {
        metric_value(
            m,
            "jetstream_operator_jetstream_requests_total",
            &[("op", "stream.list")],
        )
    };
    let s0 = scans(&metrics(&admin).await);
    let m = wait_until(
        WAIT,
        "two drift scans of the read-only operator",
        || async {
            let m = metrics(&admin).await;
            (scans(&m) >= s0 + 2.0).then_some(m)
        },
    )
    .await;
    problems.extend(check_assets(&w, ONE_YEAR, false).await);
    for op_name in [
        "stream.create",
        "stream.update",
        "stream.delete",
        "consumer.create",
        "consumer.update",
        "consumer.delete",
        "consumer.pause",
    ] {
        let n = metric_value(
            &m,
            "jetstream_operator_jetstream_requests_total",
            &[("op", op_name)],
        );
        if n != 0.0 {
            problems.push(format!(
                "the read-only operator sent {n} {op_name} requests"
            ));
        }
    }
    let events = w.event_lines().await;
    for line in &events {
        eprintln!("READ-ONLY event {line}");
    }
    if events.iter().any(|l| l.contains(" Adopted ")) {
        problems.push(format!("Adopted events in read-only mode: {events:#?}"));
    }
    let read_only_problems = problems;

    // Then the real takeover: the change shown is made, nothing else.
    op.stop().await;
    let (_op, _admin) = w.start_operator(&[]).await;
    for (api, name) in [
        (&w.streams, "orders"),
        (&w.streams, "audit"),
        (&w.consumers, "billing"),
    ] {
        wait_taken_over(api, name).await;
    }
    let note = wait_until(WAIT, "an Adopted event about orders", || async {
        events_about(w.cp, &ns, "Stream", "orders")
            .await
            .into_iter()
            .find(|e| e.reason == "Adopted")
            .map(|e| e.message)
    })
    .await;
    eprintln!("READ-ONLY then takeover: orders Adopted: {note}");
    let mut problems = check_assets(&w, Duration::ZERO, true).await;
    if !note.contains("max_age") {
        problems.push(format!(
            "the Adopted event of orders does not name max_age: {note}"
        ));
    }
    assert!(
        read_only_problems.is_empty() && problems.is_empty(),
        "read-only run:\n- {}\ntakeover after it:\n- {}",
        read_only_problems.join("\n- "),
        problems.join("\n- ")
    );
}
