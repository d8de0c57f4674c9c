//! Policies on real components: preventUpdate, the adoption policy `never`, the pause and
//! reconcile-now annotations, the cluster name in the ownership marker, JSON logs.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::stream;
use support::*;

/// A namespace, a nats-server and an operator started with `extra` flags.
struct Env {
    op: Operator,
    admin: String,
    nats: Nats,
    ns: TestNs,
    cp: &'static ControlPlane,
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
            &admin,
        ];
        args.extend_from_slice(extra);
        let op = Operator::start(cp, &args).await;
        Env {
            op,
            admin,
            nats,
            ns,
            cp,
        }
    }

    fn streams(&self) -> kube::Api<kube::api::DynamicObject> {
        dyn_api(self.cp, self.ns.name(), "streams")
    }

    fn apply(&self, name: &str, spec: &str) {
        apply_ok(self.cp, self.ns.name(), &manifest("Stream", name, spec));
    }

    fn annotate(&self, name: &str, annotation: &str) {
        kubectl_ok(
            self.cp,
            &[
                "annotate",
                "stream",
                name,
                "-n",
                self.ns.name(),
                "--overwrite",
                annotation,
            ],
        );
    }
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos() as i64
}

#[tokio::test]
async fn prevent_update_creates_but_never_updates() {
    let env = Env::start("pol-noupdate", &["--resync-interval", "3s"]).await;
    env.apply(
        "frozen",
        "name: frozen\nsubjects: [frozen.>]\nmaxAge: 1h\npreventUpdate: true",
    );
    wait_ready(&env.streams(), "frozen").await;
    let js = env.nats.jetstream().await;
    let created = get_stream_config(&js, "frozen").await.expect("created");
    assert_eq!(created.max_age, Duration::from_secs(3600));

    // A spec change is not applied; the difference is reported (healthy: the spec asked
    // for it).
    env.apply(
        "frozen",
        "name: frozen\nsubjects: [frozen.>]\nmaxAge: 2h\npreventUpdate: true",
    );
    let obj = wait_object(
        &env.streams(),
        "frozen",
        "Ready=True, SkipUpdate",
        WAIT,
        |o| condition(o, "Ready").is_some_and(|(s, r, _)| s == "True" && r == "SkipUpdate"),
    )
    .await;
    let (_, _, message) = condition(&obj, "Ready").expect("Ready condition");
    assert!(message.contains("max_age"), "{message}");
    let kept = get_stream_config(&js, "frozen").await.expect("still there");
    assert_eq!(
        kept.max_age,
        Duration::from_secs(3600),
        "the stream was updated"
    );

    // A missing stream is still created.
    js.delete_stream("frozen")
        .await
        .expect("delete through NATS");
    let recreated = wait_until(WAIT, "frozen recreated", || async {
        get_stream_config(&js, "frozen").await
    })
    .await;
    assert_eq!(recreated.max_age, Duration::from_secs(7200));
}

#[tokio::test]
async fn adoption_policy_never_leaves_unowned_streams_alone() {
    let env = Env::start(
        "pol-noadopt",
        &["--resync-interval", "3s", "--adoption-policy", "never"],
    )
    .await;
    let js = env.nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "legacy".into(),
        subjects: vec!["legacy.>".into()],
        max_age: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .expect("create legacy stream");
    env.apply("legacy", "name: legacy\nsubjects: [legacy.>]\nmaxAge: 1h");
    let obj = wait_stalled(&env.streams(), "legacy", &["ResourceConflict"], WAIT).await;
    let (_, _, message) = condition(&obj, "Stalled").expect("Stalled condition");
    assert!(message.contains("adoption policy"), "{message}");
    let cfg = get_stream_config(&js, "legacy").await.expect("still there");
    assert_eq!(
        cfg.max_age,
        Duration::from_secs(600),
        "the stream was changed"
    );
    assert!(
        !cfg.metadata.contains_key("jetstream.nats.io/owner"),
        "the stream was stamped"
    );
}

#[tokio::test]
async fn pause_annotation_stops_and_resumes_reconciling() {
    let env = Env::start("pol-pause", &["--resync-interval", "3s"]).await;
    env.apply("held", "name: held\nsubjects: [held.>]\nmaxAge: 1h");
    wait_ready(&env.streams(), "held").await;
    let js = env.nats.jetstream().await;

    env.annotate("held", "jetstream.nats.io/paused=true");
    wait_object(&env.streams(), "held", "Ready saying paused", WAIT, |o| {
        condition(o, "Ready").is_some_and(|(s, _, m)| s == "True" && m.contains("paused"))
    })
    .await;
    // Neither a change behind its back nor a spec change is acted on while paused: the
    // operator sees the new generation (a reconcile that ends "paused") and leaves it.
    let paused_reconciles = |m: &str| {
        metric_value(
            m,
            "jetstream_operator_reconciles_total",
            &[("kind", "Stream"), ("outcome", "paused")],
        )
    };
    let before = paused_reconciles(&metrics(&env.admin).await);
    let mut cfg = get_stream_config(&js, "held").await.expect("held");
    cfg.max_age = Duration::from_secs(3 * 3600);
    js.update_stream(&cfg).await.expect("change through NATS");
    env.apply("held", "name: held\nsubjects: [held.>]\nmaxAge: 2h");
    wait_until(WAIT, "the new generation seen while paused", || async {
        (paused_reconciles(&metrics(&env.admin).await) > before).then_some(())
    })
    .await;
    let paused_cfg = get_stream_config(&js, "held").await.expect("held");
    assert_eq!(
        paused_cfg.max_age,
        Duration::from_secs(3 * 3600),
        "a paused object was reconciled"
    );

    // Removing the annotation applies the spec again.
    env.annotate("held", "jetstream.nats.io/paused-");
    let resumed = wait_until(WAIT, "held back at its spec", || async {
        let c = get_stream_config(&js, "held").await?;
        (nanos(c.max_age) == nanos(Duration::from_secs(7200))).then_some(c)
    })
    .await;
    assert_eq!(resumed.max_age, Duration::from_secs(7200));
    wait_ready(&env.streams(), "held").await;
}

#[tokio::test]
async fn reconcile_requested_at_forces_a_reconcile() {
    // A long resync, so only the annotation can make the operator look again.
    let env = Env::start("pol-now", &["--resync-interval", "10m"]).await;
    let js = env.nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "squatter".into(),
        subjects: vec!["shared.>".into()],
        ..Default::default()
    })
    .await
    .expect("create squatter");
    env.apply("wanted", "name: wanted\nsubjects: [shared.>]");
    wait_stalled(&env.streams(), "wanted", &["NotSupported"], WAIT).await;

    // The obstacle goes away; its deletion advisory names another stream, so nothing wakes
    // the stalled object but the annotation.
    js.delete_stream("squatter").await.expect("delete squatter");
    assert!(get_stream_config(&js, "wanted").await.is_none());
    env.annotate("wanted", "jetstream.nats.io/reconcile-requested-at=now-1");
    wait_ready(&env.streams(), "wanted").await;
    assert!(get_stream_config(&js, "wanted").await.is_some());
}

#[tokio::test]
async fn cluster_name_is_stamped_and_logs_are_json() {
    let env = Env::start(
        "pol-cluster",
        &[
            "--resync-interval",
            "3s",
            "--cluster-name",
            "prod-eu",
            "--log-format",
            "json",
        ],
    )
    .await;
    env.apply("tagged", "name: tagged\nsubjects: [tagged.>]");
    wait_ready(&env.streams(), "tagged").await;
    let js = env.nats.jetstream().await;
    let cfg = get_stream_config(&js, "tagged").await.expect("tagged");
    let md: &HashMap<String, String> = &cfg.metadata;
    assert_eq!(
        md.get("jetstream.nats.io/owner").map(String::as_str),
        Some(format!("{}/tagged", env.ns.name()).as_str())
    );
    assert_eq!(
        md.get("jetstream.nats.io/cluster").map(String::as_str),
        Some("prod-eu")
    );
    let log = env.op.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("=== harness"))
        .collect();
    assert!(!lines.is_empty(), "the operator logged nothing");
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
}
