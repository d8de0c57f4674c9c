//! A three-node JetStream cluster on loopback: replicated streams and consumers, replica
//! changes in place, placement, the pause of a clustered consumer, the loss of a stream's
//! leader, and more replicas than nodes.

mod support;

use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use support::*;

const WAIT: Duration = Duration::from_secs(90);

struct World {
    cluster: NatsCluster,
    cp: &'static ControlPlane,
    ns: TestNs,
    _op: Operator,
}

impl World {
    async fn start(prefix: &str) -> World {
        let cluster = NatsCluster::start(3).await;
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let urls = cluster.urls();
        let op = Operator::start(
            cp,
            &[
                "--servers",
                &urls,
                "--namespace",
                ns.name(),
                "--admin-address",
                "127.0.0.1:0",
                "--resync-interval",
                "3s",
            ],
        )
        .await;
        World {
            cluster,
            cp,
            ns,
            _op: op,
        }
    }

    fn apply(&self, kind: &str, name: &str, spec: &str) {
        apply_ok(self.cp, self.ns.name(), &manifest(kind, name, spec));
    }

    fn api(&self, plural: &str) -> kube::Api<DynamicObject> {
        dyn_api(self.cp, self.ns.name(), plural)
    }

    async fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.cluster.client().await)
    }
}

fn status_i64(o: &DynamicObject, f: &str) -> Option<i64> {
    o.data["status"][f].as_i64()
}

fn status_str(o: &DynamicObject, f: &str) -> Option<String> {
    o.data["status"][f].as_str().map(str::to_owned)
}

/// Waits until the stream's info names a leader and every replica is current.
async fn settled_leader(js: &async_nats::jetstream::Context, name: &str) -> String {
    wait_until(WAIT, &format!("stream {name} to have a leader"), || async {
        // During an election a read may time out: that is "not yet".
        let c = js
            .get_stream(name)
            .await
            .ok()?
            .cached_info()
            .cluster
            .clone()?;
        c.leader.filter(|l| !l.is_empty())
    })
    .await
}

#[tokio::test]
async fn replicated_assets_replica_changes_and_placement() {
    let w = World::start("cl-repl").await;
    let js = w.js().await;
    let streams = w.api("streams");

    // Three replicas, a consumer on them; the status says what the server says.
    w.apply(
        "Stream",
        "orders",
        "name: orders\nsubjects: [\"orders.>\"]\nreplicas: 3",
    );
    w.apply(
        "Consumer",
        "worker",
        "streamName: orders\ndurableName: worker\nreplicas: 3",
    );
    wait_ready(&streams, "orders").await;
    wait_ready(&w.api("consumers"), "worker").await;
    settled_leader(&js, "orders").await;
    let obj = wait_object(
        &streams,
        "orders",
        "the cluster leader in status",
        WAIT,
        |o| status_str(o, "clusterLeader").is_some(),
    )
    .await;
    let info = stream_info(&js, "orders").await.expect("orders");
    assert_eq!(
        status_i64(&obj, "replicas"),
        Some(3),
        "{}",
        status_summary(&obj)
    );
    assert_eq!(info.config.num_replicas, 3);
    let named = status_str(&obj, "clusterLeader").expect("leader");
    let nodes: Vec<String> = (0..3).map(|i| w.cluster.name(i)).collect();
    assert!(nodes.contains(&named), "{named} is not a node: {nodes:?}");
    let consumer = consumer_info(&js, "orders", "worker")
        .await
        .expect("worker");
    assert_eq!(consumer.config.num_replicas, 3);

    // 3 -> 1 -> 3, in place: the same stream, the messages kept.
    // A stream just created on the cluster may not have its subject interest on every
    // node yet: the first publish can find no stream; it is retried until stored, with a
    // message id so that a retry never stores it twice.
    wait_until(WAIT, "a message stored in orders", || async {
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .message_id("one")
            .payload("one".into());
        js.send_publish("orders.1", msg).await.ok()?.await.ok()
    })
    .await;
    let created = info.created;
    for replicas in [1, 3] {
        w.apply(
            "Stream",
            "orders",
            &format!("name: orders\nsubjects: [\"orders.>\"]\nreplicas: {replicas}"),
        );
        wait_until(WAIT, &format!("orders at {replicas} replicas"), || async {
            let i = stream_info(&js, "orders").await?;
            (i.config.num_replicas == replicas).then_some(())
        })
        .await;
        let obj = wait_ready(&streams, "orders").await;
        assert_eq!(status_i64(&obj, "replicas"), Some(replicas as i64));
        let i = stream_info(&js, "orders").await.expect("orders");
        assert_eq!(i.created, created, "orders was recreated");
        assert_eq!(i.state.messages, 1, "orders lost messages");
    }

    // Placement by cluster and by tag: the one replica lands on node az:2.
    w.apply(
        "Stream",
        "placed",
        "name: placed\nsubjects: [\"placed.>\"]\nplacement:\n  cluster: jso\n  tags: [\"az:2\"]",
    );
    wait_ready(&streams, "placed").await;
    let leader = settled_leader(&js, "placed").await;
    assert_eq!(leader, w.cluster.name(2));

    // More replicas than nodes: the server refuses, in its words.
    w.apply(
        "Stream",
        "wide",
        "name: wide\nsubjects: [\"wide.>\"]\nreplicas: 5",
    );
    let obj = wait_stalled(&streams, "wide", &["NotSupported"], WAIT).await;
    let (_, reason, message) = condition(&obj, "Ready").unwrap_or_default();
    eprintln!("CLUSTER replicas 5 on 3 nodes: {reason}: {message}");
    assert!(
        message.contains("JetStream error"),
        "not the server's words: {message}"
    );
}

#[tokio::test]
async fn a_clustered_consumer_is_paused_through_the_pause_api() {
    let w = World::start("cl-pause").await;
    let js = w.js().await;
    w.apply(
        "Stream",
        "jobs",
        "name: jobs\nsubjects: [\"jobs.>\"]\nreplicas: 3",
    );
    w.apply(
        "Consumer",
        "later",
        "streamName: jobs\ndurableName: later\npauseUntil: \"2099-01-01T00:00:00Z\"",
    );
    wait_ready(&w.api("consumers"), "later").await;
    let info = wait_until(WAIT, "later to be paused", || async {
        let i = consumer_info(&js, "jobs", "later").await?;
        i.paused.then_some(i)
    })
    .await;
    assert!(info.paused);
    // Resumed by dropping the pause from the spec.
    w.apply("Consumer", "later", "streamName: jobs\ndurableName: later");
    wait_until(WAIT, "later to be resumed", || async {
        let i = consumer_info(&js, "jobs", "later").await?;
        (!i.paused).then_some(())
    })
    .await;
}

#[tokio::test]
async fn losing_a_streams_leader_recreates_nothing() {
    let mut w = World::start("cl-leader").await;
    let js = w.js().await;
    let streams = w.api("streams");
    w.apply(
        "Stream",
        "ledger",
        "name: ledger\nsubjects: [\"ledger.>\"]\nreplicas: 3",
    );
    wait_ready(&streams, "ledger").await;
    let leader = settled_leader(&js, "ledger").await;
    let created = stream_info(&js, "ledger").await.expect("ledger").created;
    let node = (0..3)
        .find(|i| w.cluster.name(*i) == leader)
        .expect("the leader is a node");
    let killed = Instant::now();
    w.cluster.nodes[node].stop().await;
    let elected = wait_until(WAIT, "a new leader for ledger", || async {
        // While the cluster elects, a read may time out: that is "not yet".
        let l = js
            .get_stream("ledger")
            .await
            .ok()?
            .cached_info()
            .cluster
            .clone()?
            .leader?;
        (l != leader && !l.is_empty()).then(|| killed.elapsed())
    })
    .await;

    // Watch the object until its status names the new leader and it is Ready (30 s at
    // most): it may go Reconciling, it must come back Ready.
    let mut not_ready: Option<Instant> = None;
    let mut worst = Duration::ZERO;
    let mut told: Option<(Duration, String)> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(o) = streams.get("ledger").await {
            let ready = condition(&o, "Ready").is_some_and(|(s, _, _)| s == "True");
            match status_str(&o, "clusterLeader") {
                Some(l) if told.is_none() && l != leader => told = Some((killed.elapsed(), l)),
                _ => {}
            }
            match (ready, not_ready) {
                (false, None) => not_ready = Some(Instant::now()),
                (true, Some(t)) => {
                    worst = worst.max(t.elapsed());
                    not_ready = None;
                }
                _ => {}
            }
            // Done once the status names a new leader and the object is Ready again.
            if ready && told.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(t) = not_ready {
        worst = worst.max(t.elapsed());
    }
    let new_leader = settled_leader(&js, "ledger").await;
    assert_ne!(new_leader, leader);
    let obj = wait_ready(&streams, "ledger").await;
    eprintln!(
        "CLUSTER leader {leader} killed: new leader {new_leader} elected after {elected:?}; status named it after {:?}; until then (30 s at most) the object was not Ready for {worst:?} at most; now {}",
        told.as_ref().map(|t| t.0),
        status_summary(&obj)
    );
    assert_eq!(
        told.map(|t| t.1).as_deref(),
        Some(new_leader.as_str()),
        "within 30 s of the kill the status still named the old leader: {}",
        status_summary(&obj)
    );
    assert_eq!(
        status_str(&obj, "clusterLeader").as_deref(),
        Some(new_leader.as_str())
    );
    assert_eq!(
        stream_info(&js, "ledger").await.expect("ledger").created,
        created,
        "the stream was recreated"
    );
    w.cluster.nodes[node].start_again().await;
}
