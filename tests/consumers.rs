//! Consumer scenarios end to end: a real kube-apiserver + etcd, a nats-server per test and
//! the operator binary, driven with kubectl and observed through Kubernetes and JetStream.
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use futures::StreamExt as _;
use kube::Api;
use kube::api::{DynamicObject, WatchEvent, WatchParams};
use support::*;

/// The longest a drift repair may take (resync 3s plus margin).
const REPAIR_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a drift repair driven by advisories may take: the resync of these tests is
/// an hour, so only an advisory can bring the repair this soon.
const EVENT_DEADLINE: Duration = Duration::from_secs(5);
/// A resync interval no test outlives.
const NO_RESYNC: &str = "1h";
/// Polling interval where a delay is measured.
const MEASURE_POLL: Duration = Duration::from_millis(10);

/// One test's world: its namespace, nats-server and operator (dropped in that order:
/// operator first).
struct Env {
    _op: Operator,
    nats: Nats,
    ns: TestNs,
    cp: &'static ControlPlane,
    streams: Api<DynamicObject>,
    consumers: Api<DynamicObject>,
}

impl Env {
    /// Namespace, nats-server and operator with `--resync-interval 3s`.
    async fn start(prefix: &str) -> Env {
        Self::start_with_resync(prefix, "3s").await
    }

    async fn start_with_resync(prefix: &str, resync: &str) -> Env {
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
                resync,
                "--admin-address",
                "127.0.0.1:0",
            ],
        )
        .await;
        let streams = dyn_api(cp, ns.name(), "streams");
        let consumers = dyn_api(cp, ns.name(), "consumers");
        Env {
            _op: op,
            nats,
            ns,
            cp,
            streams,
            consumers,
        }
    }

    fn ns(&self) -> &str {
        self.ns.name()
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

    async fn consumer(&self, name: &str) -> Option<DynamicObject> {
        self.consumers
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get Consumer {name}: {e}"))
    }

    /// `kubectl delete <kind> <name>`, which waits until the finalizer is released.
    fn delete(&self, kind: &str, name: &str) {
        kubectl_ok(
            self.cp,
            &["delete", kind, name, "-n", self.ns(), "--timeout=60s"],
        );
    }
}

/// A Stream manifest whose object and JetStream stream are both called `name`.
fn stream_yaml(name: &str, spec: &str) -> String {
    manifest("Stream", name, &format!("name: {name}\n{spec}"))
}

/// A Consumer manifest whose object and durable are both called `name`, on `stream`.
fn consumer_yaml(name: &str, stream: &str, spec: &str) -> String {
    manifest(
        "Consumer",
        name,
        &format!("streamName: {stream}\ndurableName: {name}\n{spec}"),
    )
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

/// Publishes `n` messages to `subject` with JetStream acks; payloads are `<prefix>-<i>`.
async fn publish_n(js: &async_nats::jetstream::Context, subject: &str, prefix: &str, n: usize) {
    for i in 0..n {
        js.publish(subject.to_owned(), format!("{prefix}-{i}").into())
            .await
            .unwrap_or_else(|e| panic!("publish {i}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("publish ack {i}: {e}"));
    }
}

/// The Ready condition's lastTransitionTime of an object.
fn ready_transition(obj: &DynamicObject) -> Option<jiff::Timestamp> {
    obj.data
        .get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))?
        .get("lastTransitionTime")?
        .as_str()?
        .parse()
        .ok()
}

fn is_ready_now(obj: &DynamicObject) -> bool {
    status_is_current(obj) && condition(obj, "Ready").is_some_and(|c| c.0 == "True")
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn consumer_create_ready_and_usable() {
    let env = Env::start("c-create").await;
    env.apply(&stream_yaml("orders", "subjects: [\"orders.>\"]"));
    env.apply(&consumer_yaml(
        "worker",
        "orders",
        "description: handles new orders\nfilterSubject: orders.new\nackWait: 10s\nmaxDeliver: 3\nmaxAckPending: 50",
    ));
    let obj = wait_ready(&env.consumers, "worker").await;
    assert_eq!(status_str(&obj, "assetName"), Some("worker"));
    assert_eq!(status_str(&obj, "streamName"), Some("orders"));
    let (_, reason, message) = condition(&obj, "Ready").expect("Ready");
    assert_eq!(reason, "Created", "{message}");

    let js = env.js().await;
    let info = consumer_info(&js, "orders", "worker")
        .await
        .expect("consumer worker is not in JetStream");
    let c = &info.config;
    assert_eq!(c.durable_name.as_deref(), Some("worker"));
    assert_eq!(c.description.as_deref(), Some("handles new orders"));
    assert_eq!(c.filter_subject, "orders.new");
    assert_eq!(c.ack_policy, AckPolicy::Explicit);
    assert_eq!(c.ack_wait, Duration::from_secs(10));
    assert_eq!(c.max_deliver, 3);
    assert_eq!(c.max_ack_pending, 50);
    assert_eq!(c.deliver_subject, None, "a pull consumer was expected");
    assert_eq!(
        owner_of(&c.metadata),
        Some(format!("{}/worker", env.ns()).as_str()),
        "{:?}",
        c.metadata
    );

    // Usable: a message published on the filter subject is fetched and acknowledged.
    js.publish("orders.other", "not for worker".into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
    js.publish("orders.new", "order-1".into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
    let stream = js.get_stream("orders").await.expect("stream orders");
    let pc: consumer::PullConsumer = stream
        .get_consumer("worker")
        .await
        .expect("get consumer worker");
    let mut batch = pc
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut got = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
        m.ack().await.expect("ack");
    }
    assert_eq!(got, vec!["order-1"]);
    let info = wait_until(WAIT, "worker to have no ack pending", || async {
        let i = consumer_info(&js, "orders", "worker").await?;
        (i.num_ack_pending == 0 && i.ack_floor.stream_sequence == 2).then_some(i)
    })
    .await;
    assert_eq!(info.num_pending, 0);
}

#[tokio::test]
async fn consumer_update_follows_spec() {
    let env = Env::start("c-update").await;
    env.apply(&stream_yaml("jobs", "subjects: [\"jobs.>\"]"));
    env.apply(&consumer_yaml(
        "runner",
        "jobs",
        "description: first\nmaxAckPending: 100\nmaxDeliver: 5",
    ));
    let obj = wait_ready(&env.consumers, "runner").await;
    assert_eq!(generation(&obj), Some(1));
    let js = env.js().await;
    let before = consumer_info(&js, "jobs", "runner")
        .await
        .expect("consumer runner");
    assert_eq!(before.config.description.as_deref(), Some("first"));
    assert_eq!(before.config.max_ack_pending, 100);
    assert_eq!(before.config.max_deliver, 5);

    env.apply(&consumer_yaml(
        "runner",
        "jobs",
        "description: second\nmaxAckPending: 20\nmaxDeliver: 7\nackWait: 45s",
    ));
    let obj = wait_ready(&env.consumers, "runner").await;
    assert_eq!(generation(&obj), Some(2));
    let after = consumer_info(&js, "jobs", "runner")
        .await
        .expect("consumer runner");
    assert_eq!(after.config.description.as_deref(), Some("second"));
    assert_eq!(after.config.max_ack_pending, 20);
    assert_eq!(after.config.max_deliver, 7);
    assert_eq!(after.config.ack_wait, Duration::from_secs(45));
    assert_eq!(
        after.created, before.created,
        "the consumer was recreated instead of updated in place"
    );

    // Fields removed from the spec go back to the server defaults.
    env.apply(&consumer_yaml("runner", "jobs", ""));
    let obj = wait_ready(&env.consumers, "runner").await;
    assert_eq!(generation(&obj), Some(3));
    let reset = consumer_info(&js, "jobs", "runner")
        .await
        .expect("consumer runner");
    assert_eq!(reset.config.description, None);
    assert_eq!(reset.config.max_ack_pending, 1000);
    assert_eq!(reset.config.max_deliver, -1);
    assert_eq!(reset.config.ack_wait, Duration::from_secs(30));
    assert_eq!(reset.created, before.created);
}

#[tokio::test]
async fn consumer_pause_until_uses_the_pause_api() {
    let env = Env::start("c-pause").await;
    env.apply(&stream_yaml("batch", "subjects: [\"batch.>\"]"));
    env.apply(&consumer_yaml(
        "nightly",
        "batch",
        "pauseUntil: '2999-01-01T00:00:00Z'",
    ));
    wait_ready(&env.consumers, "nightly").await;
    let js = env.js().await;
    let paused = consumer_info(&js, "batch", "nightly")
        .await
        .expect("consumer nightly");
    assert!(paused.paused, "created with pauseUntil but not paused");

    // Removing pauseUntil resumes it. A config update does not carry a pause (clustered
    // servers ignore it there), so only the pause API can do this.
    env.apply(&consumer_yaml("nightly", "batch", ""));
    wait_until(WAIT, "consumer nightly resumed", || async {
        let i = consumer_info(&js, "batch", "nightly").await?;
        (!i.paused).then_some(())
    })
    .await;
    let ev = wait_until(WAIT, "the resume event", || async {
        let ev = events_about(env.cp, env.ns(), "Consumer", "nightly").await;
        ev.iter()
            .any(|e| e.reason == "Updated" && e.message.contains("resumed consumer"))
            .then_some(ev)
    })
    .await;
    assert!(ev.iter().all(|e| e.type_ == "Normal"), "{ev:?}");

    // And setting it again pauses it (a standalone server already applies the pause with
    // the config update; otherwise the pause API does).
    env.apply(&consumer_yaml(
        "nightly",
        "batch",
        "pauseUntil: '2998-06-01T00:00:00Z'",
    ));
    wait_until(WAIT, "consumer nightly paused again", || async {
        let i = consumer_info(&js, "batch", "nightly").await?;
        i.paused.then_some(())
    })
    .await;
    let after = consumer_info(&js, "batch", "nightly")
        .await
        .expect("consumer nightly");
    assert_eq!(after.created, paused.created, "the consumer was recreated");
}

#[tokio::test]
async fn consumer_drift_deleted_is_recreated() {
    let env = Env::start_with_resync("c-drift-del", NO_RESYNC).await;
    env.apply(&stream_yaml("audit", "subjects: [\"audit.>\"]"));
    env.apply(&consumer_yaml("auditor", "audit", "maxAckPending: 10"));
    wait_ready(&env.consumers, "auditor").await;
    let js = env.js().await;
    let created = consumer_info(&js, "audit", "auditor")
        .await
        .expect("consumer auditor")
        .created;

    let stream = js.get_stream("audit").await.expect("stream audit");
    stream
        .delete_consumer("auditor")
        .await
        .expect("delete consumer");
    let t0 = Instant::now();
    let back = wait_until_every(
        EVENT_DEADLINE,
        MEASURE_POLL,
        "consumer auditor to be recreated (from the advisory: resync is 1h)",
        || async { consumer_info(&js, "audit", "auditor").await },
    )
    .await;
    eprintln!("DRIFT-REPAIR consumer delete ms={}", ms(t0.elapsed()));
    assert_ne!(back.created, created, "not a new consumer");
    assert_eq!(back.config.max_ack_pending, 10);
    assert_eq!(
        owner_of(&back.config.metadata),
        Some(format!("{}/auditor", env.ns()).as_str())
    );

    // A Warning says the delivery state was lost.
    let events = wait_until(WAIT, "a DriftRepaired Warning about auditor", || async {
        let ev = events_about(env.cp, env.ns(), "Consumer", "auditor").await;
        ev.iter()
            .any(|e| e.reason == "DriftRepaired" && e.type_ == "Warning")
            .then_some(ev)
    })
    .await;
    let warning = events
        .iter()
        .find(|e| e.reason == "DriftRepaired" && e.type_ == "Warning")
        .expect("DriftRepaired Warning");
    eprintln!("DRIFT-REPAIR consumer event: {}", warning.message);
    assert!(
        warning.message.contains("delivery state") && warning.message.contains("lost"),
        "the DriftRepaired Warning does not say the delivery state was lost: {}",
        warning.message
    );
    wait_ready(&env.consumers, "auditor").await;
}

/// A durable consumer whose `inactiveThreshold` passes before any client comes is deleted
/// by the server each time it appears. The operator recreates it (it is declared), five
/// times at once, then with growing waits, and says why; a changed spec starts afresh.
/// The oracle is the server's own CONSUMER.CREATED advisories.
#[tokio::test]
async fn consumer_deleted_by_inactivity_is_recreated_with_backoff() {
    let env = Env::start("c-idle").await;
    env.apply(&stream_yaml("idle", "subjects: [\"idle.>\"]"));
    wait_ready(&env.streams, "idle").await;
    env.apply(&consumer_yaml("napper", "idle", "inactiveThreshold: 250ms"));

    let t0 = Instant::now();
    let o = wait_until(WAIT, "napper: Ready=False RecreateBackOff", || async {
        let o = env.consumer("napper").await?;
        condition(&o, "Ready")
            .is_some_and(|(s, r, _)| s == "False" && r == "RecreateBackOff")
            .then_some(o)
    })
    .await;
    let (_, _, message) = condition(&o, "Ready").expect("a Ready condition");
    eprintln!("IDLE-BACKOFF after {} ms: {message}", ms(t0.elapsed()));
    assert!(
        message.contains("inactiveThreshold is 250ms"),
        "the message does not name the server's rule: {message}"
    );
    assert!(condition(&o, "Reconciling").is_some_and(|c| c.0 == "True"));

    // Creates seen by the server in a 20 s window after the waits began: the waits are
    // 1, 2, 4, 8, 16 s, so at most 5 (a tight loop made about 65).
    let client = env.nats.client().await;
    let mut creates = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.idle.napper")
        .await
        .expect("subscribe to the create advisories");
    let window = Duration::from_secs(20);
    let end = tokio::time::Instant::now() + window;
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, creates.next()).await {
        seen += 1;
    }
    eprintln!("IDLE-BACKOFF {seen} creates in {window:?} after the waits began");
    assert!(
        seen >= 2,
        "the consumer is not recreated any more ({seen} creates)"
    );
    assert!(seen <= 5, "{seen} creates in {window:?}: not backing off");

    let announced = events_about(env.cp, env.ns(), "Consumer", "napper").await;
    let backoff: i32 = announced
        .iter()
        .filter(|e| e.reason == "RecreateBackOff" && e.type_ == "Warning")
        .map(|e| e.count)
        .sum();
    assert_eq!(backoff, 1, "the waits are announced once: {announced:?}");

    // A spec without the threshold is created at once and stays.
    env.apply(&consumer_yaml("napper", "idle", ""));
    let t0 = Instant::now();
    wait_ready(&env.consumers, "napper").await;
    eprintln!(
        "IDLE-BACKOFF Ready {} ms after the spec changed",
        ms(t0.elapsed())
    );
    assert!(
        t0.elapsed() < EVENT_DEADLINE,
        "the changed spec waited out the backoff"
    );
    let js = env.js().await;
    let info = consumer_info(&js, "idle", "napper")
        .await
        .expect("consumer napper");
    assert_eq!(info.config.inactive_threshold, Duration::ZERO);
}

#[tokio::test]
async fn consumer_drift_edited_is_reverted() {
    let env = Env::start_with_resync("c-drift-edit", NO_RESYNC).await;
    env.apply(&stream_yaml("billing", "subjects: [\"billing.>\"]"));
    env.apply(&consumer_yaml(
        "biller",
        "billing",
        "description: bills\nmaxAckPending: 10",
    ));
    wait_ready(&env.consumers, "biller").await;
    let js = env.js().await;
    let before = consumer_info(&js, "billing", "biller")
        .await
        .expect("consumer biller");

    // Edited behind the operator's back.
    let mut cfg: consumer::Config = before.config.clone();
    cfg.max_ack_pending = 999;
    cfg.description = Some("edited out of band".into());
    let stream = js.get_stream("billing").await.expect("stream billing");
    // Asserted on what the server answered to the edit itself: reading it
    // back later races the operator, which may already have reverted it.
    let edited = stream
        .update_consumer(cfg)
        .await
        .expect("update consumer out of band");
    assert_eq!(
        edited.cached_info().config.max_ack_pending,
        999,
        "the edit did not land"
    );
    let t0 = Instant::now();
    // JetStream has no consumer-updated advisory: the API audit advisory tells.
    let reverted = wait_until_every(
        EVENT_DEADLINE,
        MEASURE_POLL,
        "consumer biller to be reverted (from the audit advisory: resync is 1h)",
        || async {
            let i = consumer_info(&js, "billing", "biller").await?;
            (i.config.max_ack_pending == 10).then_some(i)
        },
    )
    .await;
    eprintln!("DRIFT-REPAIR consumer edit ms={}", ms(t0.elapsed()));
    assert_eq!(reverted.config.description.as_deref(), Some("bills"));
    assert_eq!(reverted.created, before.created, "reverted by recreating");
    let events = wait_until(WAIT, "a DriftRepaired event about biller", || async {
        let ev = events_about(env.cp, env.ns(), "Consumer", "biller").await;
        ev.iter().any(|e| e.reason == "DriftRepaired").then_some(ev)
    })
    .await;
    eprintln!(
        "DRIFT-REPAIR consumer edit events: {:?}",
        events
            .iter()
            .map(|e| format!("{} {}: {}", e.type_, e.reason, e.message))
            .collect::<Vec<_>>()
    );
    wait_ready(&env.consumers, "biller").await;
}

/// Pauses (`Some` RFC 3339 time) or resumes a consumer through the plain JetStream API.
async fn pause_out_of_band(client: &async_nats::Client, stream: &str, name: &str, until: &str) {
    let reply = client
        .request(
            format!("$JS.API.CONSUMER.PAUSE.{stream}.{name}"),
            serde_json::json!({ "pause_until": until })
                .to_string()
                .into(),
        )
        .await
        .unwrap_or_else(|e| panic!("pause {stream}/{name}: {e}"));
    let answer: serde_json::Value =
        serde_json::from_slice(&reply.payload).expect("a JSON pause response");
    assert_eq!(
        answer["paused"], true,
        "the out-of-band pause did not land: {answer}"
    );
}

#[tokio::test]
async fn consumer_drift_paused_is_resumed() {
    let env = Env::start_with_resync("c-drift-pause", NO_RESYNC).await;
    env.apply(&stream_yaml("parcels", "subjects: [\"parcels.>\"]"));
    env.apply(&consumer_yaml("courier", "parcels", ""));
    wait_ready(&env.consumers, "courier").await;
    let js = env.js().await;
    let created = consumer_info(&js, "parcels", "courier")
        .await
        .expect("consumer courier")
        .created;

    let client = async_nats::connect(env.nats.url()).await.expect("connect");
    pause_out_of_band(&client, "parcels", "courier", "2999-01-01T00:00:00Z").await;
    let t0 = Instant::now();
    let resumed = wait_until_every(
        EVENT_DEADLINE,
        MEASURE_POLL,
        "consumer courier to be resumed (from the pause advisory: resync is 1h)",
        || async {
            let i = consumer_info(&js, "parcels", "courier").await?;
            (!i.paused).then_some(i)
        },
    )
    .await;
    eprintln!("DRIFT-REPAIR consumer pause ms={}", ms(t0.elapsed()));
    assert_eq!(resumed.created, created, "resumed by recreating");
    wait_ready(&env.consumers, "courier").await;
}

#[tokio::test]
async fn consumer_drift_found_by_scans_where_advisories_are_denied() {
    // The operator's user may not subscribe to advisories; an admin edits behind its back.
    let cp = control_plane().await;
    let ns = TestNs::new("c-drift-denied").await;
    let nats = Nats::start_with_config(
        "authorization {\n  users: [\n    {user: op, password: op-pw, permissions: {subscribe: {deny: [\"$JS.EVENT.ADVISORY.>\"]}}}\n    {user: admin, password: admin-pw}\n  ]\n}",
    )
    .await;
    let op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--user",
            "op",
            "--password",
            "op-pw",
            "--namespace",
            ns.name(),
            "--resync-interval",
            "2s",
            "--admin-address",
            "127.0.0.1:0",
        ],
    )
    .await;
    let consumers = dyn_api(cp, ns.name(), "consumers");
    apply_ok(
        cp,
        ns.name(),
        &stream_yaml("ledger", "subjects: [\"ledger.>\"]"),
    );
    apply_ok(
        cp,
        ns.name(),
        &consumer_yaml("clerk", "ledger", "maxAckPending: 10"),
    );
    wait_ready(&consumers, "clerk").await;
    wait_until(
        WAIT,
        "the operator to say advisories are denied",
        || async {
            op.log()
                .contains("may not subscribe to JetStream advisories")
                .then_some(())
        },
    )
    .await;

    let admin =
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin-pw".into())
            .connect(nats.url())
            .await
            .expect("connect as admin");
    let js = async_nats::jetstream::new(admin);
    let before = consumer_info(&js, "ledger", "clerk").await.expect("clerk");
    let mut cfg = before.config.clone();
    cfg.max_ack_pending = 999;
    let edited = js
        .get_stream("ledger")
        .await
        .expect("stream ledger")
        .update_consumer(cfg)
        .await
        .expect("update consumer out of band");
    assert_eq!(edited.cached_info().config.max_ack_pending, 999);
    let t0 = Instant::now();
    wait_until_every(
        REPAIR_DEADLINE,
        MEASURE_POLL,
        "consumer clerk to be reverted by the scan",
        || async {
            let i = consumer_info(&js, "ledger", "clerk").await?;
            (i.config.max_ack_pending == 10).then_some(i)
        },
    )
    .await;
    eprintln!(
        "DRIFT-REPAIR consumer edit without advisories ms={}",
        ms(t0.elapsed())
    );
    // The denial is not an error of the connection: the object stays Ready.
    wait_ready(&consumers, "clerk").await;
}

#[tokio::test]
async fn consumer_delete_removes_unless_prevent_delete() {
    let env = Env::start("c-delete").await;
    env.apply(&stream_yaml("mail", "subjects: [\"mail.>\"]"));
    env.apply(&consumer_yaml("gone", "mail", ""));
    env.apply(&consumer_yaml("kept", "mail", "preventDelete: true"));
    wait_ready(&env.consumers, "gone").await;
    wait_ready(&env.consumers, "kept").await;
    let js = env.js().await;
    assert!(consumer_info(&js, "mail", "gone").await.is_some());
    assert!(consumer_info(&js, "mail", "kept").await.is_some());

    env.delete("consumer", "gone");
    assert!(env.consumer("gone").await.is_none(), "object gone remains");
    assert!(
        consumer_info(&js, "mail", "gone").await.is_none(),
        "consumer gone is still in JetStream"
    );

    env.delete("consumer", "kept");
    assert!(env.consumer("kept").await.is_none(), "object kept remains");
    let kept = consumer_info(&js, "mail", "kept")
        .await
        .expect("consumer kept was deleted despite preventDelete");
    assert_eq!(
        owner_of(&kept.config.metadata),
        None,
        "the kept consumer still carries the ownership marker: {:?}",
        kept.config.metadata
    );
    // The stream itself is untouched.
    assert!(stream_info(&js, "mail").await.is_some());
}

#[tokio::test]
async fn consumer_immutable_change_rejected() {
    let env = Env::start("c-immutable").await;
    env.apply(&stream_yaml("ledger", "subjects: [\"ledger.>\"]"));
    let v1 = consumer_yaml(
        "reader",
        "ledger",
        "ackPolicy: explicit\ndeliverPolicy: all\nmaxAckPending: 10",
    );
    env.apply(&v1);
    let before = wait_ready(&env.consumers, "reader").await;
    let js = env.js().await;
    let info0 = consumer_info(&js, "ledger", "reader")
        .await
        .expect("consumer reader");

    for (change, spec, words) in [
        (
            "ackPolicy explicit -> none",
            "ackPolicy: none\ndeliverPolicy: all\nmaxAckPending: 10",
            "ackPolicy cannot be changed",
        ),
        (
            "deliverPolicy all -> new",
            "ackPolicy: explicit\ndeliverPolicy: new\nmaxAckPending: 10",
            "deliverPolicy cannot be changed",
        ),
        (
            "pull -> push",
            "ackPolicy: explicit\ndeliverPolicy: all\nmaxAckPending: 10\ndeliverSubject: out.reader",
            "cannot switch between push",
        ),
    ] {
        let stderr = env.apply_refused(&consumer_yaml("reader", "ledger", spec));
        assert!(
            stderr.contains(words),
            "{change}: the refusal does not say why (expected {words:?}): {stderr}"
        );
        eprintln!("IMMUTABLE {change}: {}", stderr.trim());
    }
    let after = env.consumer("reader").await.expect("object reader");
    assert_eq!(generation(&after), generation(&before));
    let info = consumer_info(&js, "ledger", "reader")
        .await
        .expect("consumer reader");
    assert_eq!(info.config, info0.config, "the consumer changed");
    assert_eq!(info.created, info0.created);
}

#[tokio::test]
async fn consumer_refused_change_stalls() {
    let env = Env::start("c-refused").await;
    env.apply(&stream_yaml(
        "tasks",
        "subjects: [\"tasks.>\"]\nretention: workqueue",
    ));
    env.apply(&consumer_yaml("alpha", "tasks", "filterSubject: tasks.a.>"));
    env.apply(&consumer_yaml("beta", "tasks", "filterSubject: tasks.b.>"));
    wait_ready(&env.consumers, "alpha").await;
    wait_ready(&env.consumers, "beta").await;

    // beta's filter now overlaps alpha's: a work queue refuses it.
    env.apply(&consumer_yaml("beta", "tasks", "filterSubject: tasks.a.x"));
    let stalled = wait_condition(&env.consumers, "beta", "Stalled", "True").await;
    let (_, reason, message) = condition(&stalled, "Stalled").expect("Stalled");
    eprintln!("REFUSED consumer: {reason}: {message}");
    assert!(
        message.contains("workqueue stream") && message.contains("not unique"),
        "the Stalled message does not carry the server's words: {reason}: {message}"
    );
    let (ready, ready_reason, _) = condition(&stalled, "Ready").expect("Ready");
    assert_eq!(ready, "False", "{}", status_summary(&stalled));
    assert_eq!(ready_reason, reason);
    assert_eq!(generation(&stalled), Some(2));
    let js = env.js().await;
    assert_eq!(
        consumer_info(&js, "tasks", "beta")
            .await
            .expect("consumer beta")
            .config
            .filter_subject,
        "tasks.b.>",
        "the refused change reached the server"
    );

    // Two unfiltered consumers on one work queue: the second is refused.
    env.apply(&consumer_yaml("gamma", "tasks", ""));
    env.apply(&consumer_yaml("delta", "tasks", "filterSubject: tasks.d.>"));
    wait_ready(&env.consumers, "delta").await;
    let gamma = wait_condition(&env.consumers, "gamma", "Stalled", "True").await;
    let (_, reason, message) = condition(&gamma, "Stalled").expect("Stalled");
    eprintln!("REFUSED consumer: {reason}: {message}");
    // alpha and beta are filtered, so an unfiltered one overlaps them.
    assert!(
        message.contains("workqueue stream"),
        "the Stalled message does not carry the server's words: {reason}: {message}"
    );
    assert_eq!(
        condition(&gamma, "Ready").map(|c| c.0),
        Some("False".into())
    );
    assert!(consumer_info(&js, "tasks", "gamma").await.is_none());
}

#[tokio::test]
async fn consumer_bad_input_rejected_at_admission() {
    let env = Env::start("c-admission").await;
    env.apply(&stream_yaml("inputs", "subjects: [\"inputs.>\"]"));
    for (field, line) in [
        ("ackWait", "ackWait: 1d"),
        ("maxDeliver", "maxDeliver: -5"),
        ("deliverPolicy", "deliverPolicy: sometimes"),
    ] {
        let name = format!("bad-{}", field.to_lowercase());
        let stderr = env.apply_refused(&consumer_yaml(&name, "inputs", line));
        eprintln!("ADMISSION {line}: {}", stderr.trim());
        assert!(
            stderr.contains(&format!("spec.{field}")),
            "{line}: stderr does not name spec.{field}: {stderr}"
        );
        assert!(env.consumer(&name).await.is_none(), "{name} was stored");
    }
    env.apply(&consumer_yaml(
        "good",
        "inputs",
        "ackWait: 1m\nmaxDeliver: -1",
    ));
    wait_ready(&env.consumers, "good").await;
    let js = env.js().await;
    let stream = js.get_stream("inputs").await.expect("stream inputs");
    let names: Vec<String> = stream
        .consumer_names()
        .map(|n| n.expect("consumer name"))
        .collect()
        .await;
    assert_eq!(names, vec!["good"]);
}

#[tokio::test]
async fn consumer_waits_for_stream() {
    // A 60s resync: only the stream becoming Ready can release the consumer in time.
    let env = Env::start_with_resync("c-waits", "60s").await;
    env.apply(&consumer_yaml(
        "early",
        "later",
        "description: applied first",
    ));
    let waiting = wait_until(WAIT, "early: WaitingForStream", || async {
        let obj = env.consumer("early").await?;
        let r = condition(&obj, "Ready")?;
        (r.1 == "WaitingForStream" && status_is_current(&obj)).then_some(obj)
    })
    .await;
    let (ready, ready_reason, ready_message) = condition(&waiting, "Ready").expect("Ready");
    let (reconciling, reconciling_reason, _) =
        condition(&waiting, "Reconciling").expect("Reconciling");
    eprintln!("WAITING {ready_reason}: {ready_message}");
    // Work in progress: Ready is Unknown (neither healthy nor failed).
    assert_eq!(ready, "Unknown", "{}", status_summary(&waiting));
    assert_eq!(ready_reason, "WaitingForStream");
    assert_eq!(reconciling, "True", "{}", status_summary(&waiting));
    assert_eq!(reconciling_reason, "WaitingForStream");
    assert!(ready_message.contains("later"), "{ready_message}");
    let js = env.js().await;
    assert!(stream_info(&js, "later").await.is_none());

    env.apply(&stream_yaml("later", "subjects: [\"later.>\"]"));
    let applied = Instant::now();
    // First time each is seen Ready (at its current generation), polled every 10 ms.
    type Seen = Option<(Instant, DynamicObject)>;
    let seen: std::sync::Mutex<(Seen, Seen)> = std::sync::Mutex::new((None, None));
    let seen = &seen;
    wait_until_every(
        WAIT,
        MEASURE_POLL,
        "the Stream and the Consumer to be Ready",
        || async {
            let (need_stream, need_consumer) = {
                let g = seen.lock().expect("lock");
                (g.0.is_none(), g.1.is_none())
            };
            // Each object is stamped when its GET returns.
            let s = if need_stream {
                let o = env.streams.get_opt("later").await.ok().flatten();
                o.map(|o| (Instant::now(), o))
            } else {
                None
            };
            let c = if need_consumer {
                let o = env.consumers.get_opt("early").await.ok().flatten();
                o.map(|o| (Instant::now(), o))
            } else {
                None
            };
            let mut g = seen.lock().expect("lock");
            if let Some(s) = s.filter(|(_, o)| is_ready_now(o)) {
                g.0.get_or_insert(s);
            }
            if let Some(c) = c.filter(|(_, o)| is_ready_now(o)) {
                g.1.get_or_insert(c);
            }
            (g.0.is_some() && g.1.is_some()).then_some(())
        },
    )
    .await;
    let (stream_seen, consumer_seen) = std::mem::take(&mut *seen.lock().expect("lock"));
    let (t_stream, s_obj) = stream_seen.expect("stream seen Ready");
    let (t_consumer, c_obj) = consumer_seen.expect("consumer seen Ready");
    // Signed: the consumer may be seen Ready first (the stream's creation advisory can
    // wake it before the Stream's status is written).
    let delay_ms = if t_consumer >= t_stream {
        ms(t_consumer - t_stream) as i128
    } else {
        -(ms(t_stream - t_consumer) as i128)
    };
    let by_conditions = match (ready_transition(&s_obj), ready_transition(&c_obj)) {
        (Some(a), Some(b)) => format!(
            "{} ms",
            (b - a).total(jiff::Unit::Millisecond).unwrap_or(f64::NAN)
        ),
        _ => "unknown".into(),
    };
    eprintln!(
        "CONSUMER-AFTER-STREAM ms={delay_ms} (stream first seen Ready {} ms after apply; lastTransitionTime difference {by_conditions}, second resolution)",
        ms(t_stream.duration_since(applied))
    );
    assert!(
        delay_ms < 3000,
        "the consumer became Ready {delay_ms} ms after its stream (resync is 60s)"
    );
    let info = consumer_info(&js, "later", "early")
        .await
        .expect("consumer early is not in JetStream");
    assert_eq!(info.config.description.as_deref(), Some("applied first"));
}

#[tokio::test]
async fn consumer_reports_stream_deletion() {
    let env = Env::start("c-stream-del").await;
    env.apply(&stream_yaml("events", "subjects: [\"events.>\"]"));
    env.apply(&consumer_yaml("listener", "events", "maxAckPending: 10"));
    wait_ready(&env.streams, "events").await;
    let ready = wait_ready(&env.consumers, "listener").await;
    let js = env.js().await;
    assert!(consumer_info(&js, "events", "listener").await.is_some());

    // Left alone, the Stream object's reconcile recreates a deleted stream within
    // milliseconds, usually before the consumer's reconcile reads it (the consumer is then
    // simply recreated). To see what the Consumer reports while its stream is gone, the
    // Stream object is paused first, so the stream stays deleted until it is resumed.
    let annotate = |value: &str| {
        kubectl_ok(
            env.cp,
            &[
                "annotate",
                "--overwrite",
                "stream/events",
                "-n",
                env.ns(),
                &format!("jetstream.nats.io/paused{value}"),
            ],
        );
    };
    annotate("=true");
    wait_until(WAIT, "Stream events to report the pause", || async {
        let obj = env.streams.get_opt("events").await.ok().flatten()?;
        condition(&obj, "Ready")?.2.contains("paused").then_some(())
    })
    .await;

    // Watch the Consumer from here on, so that no status it goes through is missed.
    let rv = ready.metadata.resource_version.clone().unwrap_or_default();
    let mut watch = env
        .consumers
        .watch(
            &WatchParams::default().fields("metadata.name=listener"),
            &rv,
        )
        .await
        .expect("watch consumer listener")
        .boxed();
    let mut seen: Vec<(u128, String, String, String)> = Vec::new();
    let t0 = Instant::now();
    let mut next_ready = async |seen: &mut Vec<(u128, String, String, String)>| {
        loop {
            let ev = match tokio::time::timeout(WAIT, watch.next()).await {
                Ok(Some(ev)) => ev.expect("watch event"),
                Ok(None) => panic!("the watch ended; statuses seen: {seen:#?}"),
                Err(_) => panic!("no status change of listener within {WAIT:?}; seen: {seen:#?}"),
            };
            let obj = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                WatchEvent::Deleted(_) => panic!("the Consumer was deleted"),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            };
            if let Some((status, reason, message)) = condition(&obj, "Ready") {
                seen.push((ms(t0.elapsed()), status, reason, message));
                return obj;
            }
        }
    };

    js.delete_stream("events")
        .await
        .expect("delete stream events");
    let deleted_at = Instant::now();
    let waiting = next_ready(&mut seen).await;
    eprintln!(
        "STREAM-DELETED listener reported it {} ms after the deletion",
        ms(deleted_at.elapsed())
    );
    let (status, reason, message) = condition(&waiting, "Ready").expect("Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "WaitingForStream"),
        "{message}\n{}",
        status_summary(&waiting)
    );
    let reconciling = condition(&waiting, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.0, "True", "{}", status_summary(&waiting));
    assert_eq!(reconciling.1, "WaitingForStream");
    assert!(
        message.contains("events") && message.contains("deleted"),
        "the message does not say the stream was deleted: {message}"
    );
    assert!(
        !message.contains("JetStream error") && !message.contains("10059"),
        "the message is an error, not an explanation: {message}"
    );
    eprintln!("STREAM-DELETED message: {message}");

    // Resumed, the Stream object's reconcile recreates the stream; the consumer follows.
    annotate("-");
    let resumed = Instant::now();
    loop {
        let obj = next_ready(&mut seen).await;
        let (status, reason, _) = condition(&obj, "Ready").expect("Ready");
        if status == "True" {
            break;
        }
        assert_eq!(
            reason,
            "WaitingForStream",
            "another failure was reported on the way back: {}",
            status_summary(&obj)
        );
    }
    eprintln!(
        "STREAM-DELETED listener Ready again {} ms after the Stream was resumed; statuses: {seen:#?}",
        ms(resumed.elapsed())
    );
    wait_ready(&env.consumers, "listener").await;
    wait_ready(&env.streams, "events").await;
    assert!(stream_info(&js, "events").await.is_some());
    let info = consumer_info(&js, "events", "listener")
        .await
        .expect("consumer listener is not in JetStream");
    assert_eq!(info.config.max_ack_pending, 10);
}

#[tokio::test]
async fn notifier_pattern() {
    let env = Env::start("c-notifier").await;
    env.apply(&example("streams.yaml"));
    env.apply(&example("consumer.yaml"));
    wait_ready(&env.streams, "notifications").await;
    wait_ready(&env.consumers, "notifier").await;

    let js = env.js().await;
    publish_n(&js, "notifications.email", "email", 30).await;
    let stream = js
        .get_stream("notifications")
        .await
        .expect("stream notifications");
    assert_eq!(
        stream.cached_info().state.messages,
        30,
        "the work queue does not hold the 30 messages"
    );

    let pc = stream
        .get_consumer::<pull::Config>("notifier")
        .await
        .expect("get consumer notifier");
    let mut received: BTreeMap<String, u32> = BTreeMap::new();
    let mut batches = 0;
    while received.values().sum::<u32>() < 30 {
        batches += 1;
        assert!(batches <= 20, "too many fetches: {received:?}");
        let mut batch = pc
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let info = m.info().expect("message info");
            assert_eq!(
                info.delivered, 1,
                "a message was delivered more than once: {:?}",
                m.payload
            );
            *received
                .entry(String::from_utf8_lossy(&m.payload).into_owned())
                .or_default() += 1;
            m.ack().await.expect("ack");
        }
    }
    let expected: BTreeMap<String, u32> = (0..30).map(|i| (format!("email-{i}"), 1)).collect();
    assert_eq!(received, expected, "not every message exactly once");
    eprintln!("NOTIFIER 30 messages in {batches} fetches");

    // Nothing more to fetch.
    let mut extra = pc
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    let mut more = 0;
    while let Some(m) = extra.next().await {
        m.expect("message");
        more += 1;
    }
    assert_eq!(more, 0, "messages were delivered again");

    // The acks land: the work queue is empty and nothing is pending.
    let (msgs, pending) = wait_until(
        Duration::from_secs(10),
        "an empty work queue and no ack pending",
        || async {
            let s = stream_info(&js, "notifications").await?;
            let c = consumer_info(&js, "notifications", "notifier").await?;
            let now = (s.state.messages, c.num_ack_pending);
            (now == (0, 0)).then_some(now)
        },
    )
    .await;
    assert_eq!((msgs, pending), (0, 0));
}

#[tokio::test]
async fn kubectl_views() {
    let env = Env::start("c-views").await;
    for file in [
        "streams.yaml",
        "consumer.yaml",
        "keyvalue.yaml",
        "objectstore.yaml",
    ] {
        env.apply(&example(file));
    }
    for name in ["sync", "notifications", "reports"] {
        wait_ready(&env.streams, name).await;
    }
    wait_ready(&env.consumers, "notifier").await;
    wait_ready(&dyn_api(env.cp, env.ns(), "keyvalues"), "settings").await;
    wait_ready(&dyn_api(env.cp, env.ns(), "objectstores"), "report-files").await;

    let text = kubectl_ok(
        env.cp,
        &["get", "consumers,kv,objectstores", "-n", env.ns()],
    );
    eprintln!("kubectl get consumers,kv,objectstores:\n{text}");
    let tables = parse_kubectl_tables(&text);
    assert_eq!(tables.len(), 3, "expected three tables:\n{text}");
    let table_with = |name: &str| {
        tables
            .iter()
            .find(|t| t.row(name).is_some())
            .unwrap_or_else(|| panic!("no table lists {name}:\n{text}"))
    };
    let expect = [
        (
            "notifier",
            "consumer.jetstream.nats.io/notifier",
            vec![("STREAM", "notifications"), ("CONSUMER", "notifier")],
        ),
        (
            "settings",
            "keyvalue.jetstream.nats.io/settings",
            vec![("BUCKET", "settings")],
        ),
        (
            "report-files",
            "objectstore.jetstream.nats.io/report-files",
            vec![("BUCKET", "report-files")],
        ),
    ];
    for (name, full, columns) in expect {
        let t = table_with(name);
        let row = t.row(name).expect("row");
        assert_eq!(row["NAME"], full, "{text}");
        for col in ["READY", "REASON"] {
            assert!(
                t.header.iter().any(|h| h == col),
                "no {col} column for {name}:\n{text}"
            );
        }
        assert_eq!(row["READY"], "True", "{name}:\n{text}");
        assert_eq!(row["REASON"], "Created", "{name}:\n{text}");
        for (col, value) in columns {
            assert!(
                t.header.iter().any(|h| h == col),
                "no {col} column for {name}:\n{text}"
            );
            assert_eq!(row[col], value, "{name} {col}:\n{text}");
        }
    }

    let text = kubectl_ok(env.cp, &["get", "jetstream", "-n", env.ns()]);
    eprintln!("kubectl get jetstream:\n{text}");
    let tables = parse_kubectl_tables(&text);
    let names: Vec<&str> = tables
        .iter()
        .flat_map(|t| t.rows.iter())
        .filter_map(|r| r.get("NAME").map(String::as_str))
        .collect();
    for full in [
        "stream.jetstream.nats.io/sync",
        "stream.jetstream.nats.io/notifications",
        "stream.jetstream.nats.io/reports",
        "consumer.jetstream.nats.io/notifier",
        "keyvalue.jetstream.nats.io/settings",
        "objectstore.jetstream.nats.io/report-files",
    ] {
        assert!(
            names.contains(&full),
            "kubectl get jetstream does not list {full}:\n{text}"
        );
    }
}
