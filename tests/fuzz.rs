//! Generated specs against the real apiserver and nats-server. Streams and Consumers are
//! generated from their own CRD schemas (`tests/support/specgen.rs`, seeded, the seed
//! printed) with the connection fields left out; the apiserver judges them (schema and CEL
//! rules), and each one it accepts must end Ready, or Stalled with a message, with its status
//! current (or, where the server refused for want of resources or did not answer in time,
//! retrying with backoff and saying so in its status). Then, over three drift scans, the operator must write
//! nothing more (no JetStream create, update, delete or pause, no Kubernetes write) beyond
//! the backed-off retries: no object loops.
//!
//! `JSO_FUZZ_SERVER_CASES` specs (default 40 in `make test`; `make chaos` runs 200);
//! `JSO_FUZZ_SEED` replays a run (default: a fixed seed; `random` draws one).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jetstream_operator::api::consumer::Consumer;
use jetstream_operator::api::stream::Stream;
use kube::api::{DynamicObject, PostParams};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use support::*;

/// Fields that name other servers, accounts or files: the tenancy tests cover them; here
/// every object talks to the test's nats-server.
const CONNECTION_FIELDS: &[&str] = &[
    "servers", "creds", "nkey", "tls", "tlsFirst", "account", "jsDomain",
];

/// JetStream requests that change something.
const WRITES: &[&str] = &[
    "stream.create",
    "stream.update",
    "stream.delete",
    "consumer.create",
    "consumer.update",
    "consumer.delete",
    "consumer.pause",
];

fn specs<K: jetstream_operator::api::ApiKind>() -> proptest::strategy::BoxedStrategy<Value> {
    let crd = serde_json::to_value(jetstream_operator::api::crd::<K>()).expect("CRD");
    specgen::value(&specgen::spec_schema(&crd))
}

fn metric_sum(text: &str, name: &str, op: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && op.is_none_or(|o| l.contains(&format!("op=\"{o}\""))))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn writes(text: &str) -> f64 {
    WRITES
        .iter()
        .map(|op| {
            metric_sum(
                text,
                "jetstream_operator_jetstream_requests_total",
                Some(op),
            )
        })
        .sum::<f64>()
        + metric_sum(text, "jetstream_operator_kubernetes_writes_total", None)
}

/// Ready, or Stalled with a message, for the current generation; or retrying with backoff
/// with the server's words, where retrying can help (it refused for want of resources, or
/// did not answer in time).
fn settled(o: &DynamicObject) -> Option<String> {
    if !status_is_current(o) {
        return None;
    }
    if condition(o, "Ready").is_some_and(|(s, _, _)| s == "True") {
        return Some("Ready".into());
    }
    if let Some((s, reason, message)) = condition(o, "Stalled")
        && s == "True"
        && !message.is_empty()
    {
        return Some(format!("Stalled/{reason}"));
    }
    match condition(o, "Ready") {
        Some((_, reason, message))
            if (reason == "JetStreamApiError" && message.contains("insufficient"))
                || reason == "Timeout"
                // Deleted again soon after every create (a consumer whose inactiveThreshold
                // passes before any client comes): recreated with growing waits.
                || reason == "RecreateBackOff" =>
        {
            Some(format!("Retrying/{reason}"))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_specs_settle_on_a_real_server() {
    let cases: usize = std::env::var("JSO_FUZZ_SERVER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    // A fixed seed in `make test` (CI replays the same specs); `JSO_FUZZ_SEED=random`, as
    // `make chaos` sets it, draws a new one.
    let seed: u64 = match std::env::var("JSO_FUZZ_SEED").ok().as_deref() {
        Some("random") => rand::random(),
        Some(v) => v.parse().expect("JSO_FUZZ_SEED: a number or `random`"),
        None => 14_817_828_305_608_328_274,
    };
    eprintln!("FUZZ seed {seed} (replay with JSO_FUZZ_SEED={seed}), {cases} specs");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let (stream_specs, consumer_specs) = (specs::<Stream>(), specs::<Consumer>());

    let cp = control_plane().await;
    let ns = TestNs::new("fuzz").await;
    let nats = Nats::start().await;
    let admin = format!("127.0.0.1:{}", free_port());
    let op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            "5s",
            "--admin-address",
            &admin,
        ],
    )
    .await;
    let _logs = LogsOnPanic::new()
        .control_plane(cp)
        .file("operator", op.log_path())
        .file("nats-server", nats.log_path());
    let streams = dyn_api(cp, ns.name(), "streams");
    let consumers = dyn_api(cp, ns.name(), "consumers");

    // The stream the generated consumers live on.
    apply_ok(
        cp,
        ns.name(),
        &manifest(
            "Stream",
            "base",
            "name: fzbase\nsubjects: [\"fzbase.>\", \"fzbase\"]",
        ),
    );
    wait_ready(&streams, "base").await;

    let mut accepted: Vec<(&str, String, Value)> = Vec::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..cases {
        let consumer = i % 4 == 3;
        let strategy = if consumer {
            &consumer_specs
        } else {
            &stream_specs
        };
        let mut spec = strategy
            .new_tree(&mut runner)
            .expect("a generated spec")
            .current();
        let m = spec.as_object_mut().expect("a spec is an object");
        for f in CONNECTION_FIELDS {
            m.remove(*f);
        }
        let name = format!("fz{i:03}");
        let (kind, api) = if consumer {
            m.insert("streamName".into(), json!("fzbase"));
            m.insert("durableName".into(), json!(name));
            m.remove("name");
            ("Consumer", &consumers)
        } else {
            m.insert("name".into(), json!(name));
            ("Stream", &streams)
        };
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "jetstream.nats.io/v1beta2",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("an object");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                eprintln!("FUZZ accepted {kind}/{name}: {spec}");
                accepted.push((kind, name, spec))
            }
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
                assert!(!e.message.is_empty(), "refused without a message: {spec}");
                // The first rule each refusal names, for the tally.
                let why = e
                    .message
                    .split(": ")
                    .nth(1)
                    .unwrap_or(&e.message)
                    .chars()
                    .take(70)
                    .collect::<String>();
                *refused.entry(why).or_default() += 1;
            }
            Err(e) => panic!("create {name}: {e}\n{spec}"),
        }
    }
    eprintln!(
        "FUZZ {} accepted by the apiserver, {} refused at admission",
        accepted.len(),
        cases - accepted.len()
    );

    // Every accepted object settles: Ready, or Stalled with a message.
    let outcomes = wait_until(
        Duration::from_secs(120),
        "every generated object Ready or Stalled with a message",
        || async {
            let mut out: BTreeMap<String, usize> = BTreeMap::new();
            let mut retrying = BTreeSet::new();
            let mut waiting = Vec::new();
            for (kind, name, _) in &accepted {
                let api = if *kind == "Stream" {
                    &streams
                } else {
                    &consumers
                };
                let o = api.get(name).await.ok()?;
                match settled(&o) {
                    Some(s) => {
                        if s.starts_with("Retrying") {
                            retrying.insert(name.clone());
                        }
                        *out.entry(format!("{kind} {s}")).or_default() += 1
                    }
                    None => waiting.push(format!("{kind}/{name}: {}", status_summary(&o))),
                }
            }
            if !waiting.is_empty() {
                eprintln!("FUZZ waiting for {}", waiting.join("; "));
                return None;
            }
            Some((out, retrying))
        },
    )
    .await;
    let (outcomes, mut retrying) = outcomes;
    for (outcome, n) in &outcomes {
        eprintln!("FUZZ {n:>4} {outcome}");
    }
    for (why, n) in &refused {
        eprintln!("FUZZ {n:>4} refused: {why}");
    }

    // Settled means settled: three drift scans later, nothing more was written.
    let before = metrics(&admin).await;
    let lists = |t: &str| {
        metric_sum(
            t,
            "jetstream_operator_jetstream_requests_total",
            Some("stream.list"),
        )
    };
    let start = lists(&before);
    let after = wait_until(Duration::from_secs(60), "three drift scans", || async {
        let now = metrics(&admin).await;
        (lists(&now) >= start + 3.0).then_some(now)
    })
    .await;
    // Objects retrying do so with backoff (from 1 s, doubling, up to 2 min; a recreate
    // loop from 1 s after five at once, doubling, up to 5 min): at most 7 attempts each in
    // their first 2 minutes (1+2+4+...+64 s), fewer later; whatever the scans do. Those
    // retrying when the scans ended count too (a recreate loop starts after a Ready).
    for (kind, name, _) in &accepted {
        let api = if *kind == "Stream" {
            &streams
        } else {
            &consumers
        };
        if let Ok(o) = api.get(name).await
            && settled(&o).is_some_and(|s| s.starts_with("Retrying"))
        {
            retrying.insert(name.clone());
        }
    }
    let retrying = retrying.len() as f64;
    let more = writes(&after) - writes(&before);
    assert!(
        more <= 7.0 * retrying,
        "objects kept writing after they settled ({more} writes, {retrying} objects retrying): {}",
        WRITES
            .iter()
            .map(|op| format!(
                "{op} {}",
                metric_sum(
                    &after,
                    "jetstream_operator_jetstream_requests_total",
                    Some(op)
                ) - metric_sum(
                    &before,
                    "jetstream_operator_jetstream_requests_total",
                    Some(op)
                )
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "FUZZ {more} writes over three drift scans after settling ({retrying} objects retrying with backoff)"
    );
}
