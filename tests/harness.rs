//! Self-test of the integration-test harness (tests/support): control plane, namespaces,
//! kubectl, and a JetStream nats-server that keeps its store across a restart.
mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::ListParams;
use support::*;

#[tokio::test]
async fn control_plane_and_nats_start() {
    let t0 = Instant::now();
    let cp = control_plane().await;
    eprintln!("control_plane() took {:.1} s", t0.elapsed().as_secs_f64());
    let _logs = LogsOnPanic::new().control_plane(cp);

    // Kubernetes: a namespace of our own, listed through kube and kubectl.
    let ns = TestNs::new("harness").await;
    let namespaces: Api<Namespace> = Api::all(cp.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
    assert!(names.iter().any(|n| n == ns.name()), "{names:?}");
    assert_eq!(
        kubectl_ok(cp, &["get", "namespace", ns.name(), "-o", "name"]).trim(),
        format!("namespace/{}", ns.name())
    );

    let out = kubectl_apply_yaml(
        cp,
        ns.name(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  hello: world\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), ns.name());
    let cm = wait_until(Duration::from_secs(10), "ConfigMap probe", || async {
        cms.get_opt("probe").await.ok().flatten()
    })
    .await;
    assert_eq!(
        cm.data.unwrap_or_default().get("hello").map(String::as_str),
        Some("world")
    );
    let failed = kubectl(cp, &["get", "configmap", "absent", "-n", ns.name()]);
    assert!(!failed.status.success());

    // NATS: a stream survives a restart on the same port and store.
    let t1 = Instant::now();
    let mut nats = Nats::start().await;
    eprintln!("Nats::start() took {:.2} s", t1.elapsed().as_secs_f64());
    let url = nats.url().to_owned();
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "HARNESS".into(),
        subjects: vec!["harness.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
    js.publish("harness.one", "hello".into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
    drop(js);

    nats.stop().await;
    assert!(
        async_nats::connect(&url).await.is_err(),
        "nats-server still answers after stop()"
    );
    let t2 = Instant::now();
    nats.start_again().await;
    eprintln!(
        "Nats::start_again() took {:.2} s",
        t2.elapsed().as_secs_f64()
    );
    assert_eq!(nats.url(), url);

    let js = nats.jetstream().await;
    let mut s = wait_until(
        Duration::from_secs(10),
        "stream HARNESS after restart",
        || {
            let js = js.clone();
            async move { js.get_stream("HARNESS").await.ok() }
        },
    )
    .await;
    let info = s.info().await.expect("stream info");
    assert_eq!(info.config.subjects, vec!["harness.>".to_owned()]);
    assert_eq!(info.state.messages, 1);
    assert!(nats.log().contains("Server is ready"), "{}", nats.log());
}
