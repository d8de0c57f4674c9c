//! The server decides what a configuration means. Every spec of the corpus in
//! `tests/conformance/` is applied through the operator (pedantic requests, on one
//! nats-server) and its intent sent plainly to another nats-server: only the fields the
//! spec sets, in a non-pedantic create (for buckets, the official client's
//! `create_key_value` / `create_object_store`). The server's own defaults fill the rest.
//! Then, spec by spec:
//! - if the server accepted the plain request, the object must be Ready and both servers
//!   must store the same configuration (metadata aside);
//! - if it refused it, the object must be Stalled (or refused at admission).

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(120);

fn corpus(file: &str) -> Vec<Value> {
    let path = repo_root().join("tests/conformance").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `$name`, `$origin`, `$direct-origin` in every string of a spec.
fn fill(v: &Value, name: &str) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.replace("$direct-origin", "direct-origin")
                .replace("$origin", "origin")
                .replace("$name", name),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, name)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, name))).collect())
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// The plain intent: the spec's fields under the server's names, nothing more

fn nanos(v: &Value) -> Value {
    let s = v.as_str().unwrap_or_default();
    let d: kube::core::Duration = s.parse().unwrap_or_else(|e| panic!("duration {s}: {e}"));
    json!(Duration::from(d).as_nanos() as i64)
}

fn source_plain(s: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in s.as_object().into_iter().flatten() {
        match k.as_str() {
            "name" => {
                out.insert("name".into(), v.clone());
            }
            "optStartSeq" => {
                out.insert("opt_start_seq".into(), v.clone());
            }
            "optStartTime" => {
                out.insert("opt_start_time".into(), v.clone());
            }
            "filterSubject" => {
                out.insert("filter_subject".into(), v.clone());
            }
            "subjectTransforms" => {
                let t: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| json!({"src": t["source"], "dest": t["dest"]}))
                    .collect();
                out.insert("subject_transforms".into(), json!(t));
            }
            other => panic!("source field {other} has no plain mapping in the test"),
        }
    }
    Value::Object(out)
}

/// A Stream spec as a plain `STREAM.CREATE` body.
fn stream_plain(spec: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in spec.as_object().into_iter().flatten() {
        if v.is_null() {
            continue;
        }
        let (key, value) = match k.as_str() {
            "name" | "description" | "subjects" | "retention" | "discard" | "storage"
            | "sealed" | "metadata" | "compression" => (k.as_str(), v.clone()),
            "maxConsumers" => ("max_consumers", v.clone()),
            "maxMsgs" => ("max_msgs", v.clone()),
            "maxBytes" => ("max_bytes", v.clone()),
            "maxAge" => ("max_age", nanos(v)),
            "maxMsgsPerSubject" => ("max_msgs_per_subject", v.clone()),
            "maxMsgSize" => ("max_msg_size", v.clone()),
            "replicas" => ("num_replicas", v.clone()),
            "noAck" => ("no_ack", v.clone()),
            "duplicateWindow" => ("duplicate_window", nanos(v)),
            "discardPerSubject" => ("discard_new_per_subject", v.clone()),
            "denyDelete" => ("deny_delete", v.clone()),
            "denyPurge" => ("deny_purge", v.clone()),
            "allowRollup" => ("allow_rollup_hdrs", v.clone()),
            "firstSequence" => ("first_seq", v.clone()),
            "allowDirect" => ("allow_direct", v.clone()),
            "mirrorDirect" => ("mirror_direct", v.clone()),
            "allowMsgTtl" => ("allow_msg_ttl", v.clone()),
            "subjectDeleteMarkerTtl" => ("subject_delete_marker_ttl", nanos(v)),
            "allowMsgCounter" => ("allow_msg_counter", v.clone()),
            "allowAtomicPublish" => ("allow_atomic", v.clone()),
            "allowMsgSchedules" => ("allow_msg_schedules", v.clone()),
            "allowBatched" => ("allow_batched", v.clone()),
            "persistMode" => ("persist_mode", v.clone()),
            "subjectTransform" => (
                "subject_transform",
                json!({"src": v["source"], "dest": v["dest"]}),
            ),
            "republish" => (
                "republish",
                json!({"src": v.get("source").cloned().unwrap_or(json!(">")),
                       "dest": v["destination"],
                       "headers_only": v.get("headersOnly").cloned().unwrap_or(json!(false))}),
            ),
            "consumerLimits" => {
                let mut l = Map::new();
                if let Some(t) = v.get("inactiveThreshold") {
                    l.insert("inactive_threshold".into(), nanos(t));
                }
                if let Some(m) = v.get("maxAckPending") {
                    l.insert("max_ack_pending".into(), m.clone());
                }
                ("consumer_limits", Value::Object(l))
            }
            "mirror" => ("mirror", source_plain(v)),
            "sources" => (
                "sources",
                json!(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(source_plain)
                        .collect::<Vec<_>>()
                ),
            ),
            other => panic!("stream field {other} has no plain mapping in the test"),
        };
        out.insert(key.into(), value);
    }
    Value::Object(out)
}

/// A Consumer spec as a plain consumer config. An omitted `ackPolicy` means `explicit`
/// (the CRD's documented default, and every NATS client's; the bare API's zero value is
/// `none`), so the intent carries it.
fn consumer_plain(spec: &Value) -> Value {
    let mut out = Map::new();
    out.insert("ack_policy".into(), json!("explicit"));
    for (k, v) in spec.as_object().into_iter().flatten() {
        let (key, value) = match k.as_str() {
            "description" | "metadata" => (k.as_str(), v.clone()),
            "durableName" => ("durable_name", v.clone()),
            "deliverPolicy" => (
                "deliver_policy",
                json!(match v.as_str().unwrap_or_default() {
                    "byStartSequence" => "by_start_sequence",
                    "byStartTime" => "by_start_time",
                    "lastPerSubject" => "last_per_subject",
                    other => other,
                }),
            ),
            "optStartSeq" => ("opt_start_seq", v.clone()),
            "optStartTime" => ("opt_start_time", v.clone()),
            "ackPolicy" => ("ack_policy", v.clone()),
            "ackWait" => ("ack_wait", nanos(v)),
            "maxDeliver" => ("max_deliver", v.clone()),
            "backoff" => (
                "backoff",
                json!(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(nanos)
                        .collect::<Vec<_>>()
                ),
            ),
            "filterSubject" => ("filter_subject", v.clone()),
            "filterSubjects" => ("filter_subjects", v.clone()),
            "replayPolicy" => ("replay_policy", v.clone()),
            "sampleFreq" => ("sample_freq", v.clone()),
            "maxWaiting" => ("max_waiting", v.clone()),
            "maxAckPending" => ("max_ack_pending", v.clone()),
            "headersOnly" => ("headers_only", v.clone()),
            "maxRequestBatch" => ("max_batch", v.clone()),
            "maxRequestExpires" => ("max_expires", nanos(v)),
            "maxRequestMaxBytes" => ("max_bytes", v.clone()),
            "inactiveThreshold" => ("inactive_threshold", nanos(v)),
            "replicas" => ("num_replicas", v.clone()),
            "memStorage" => ("mem_storage", v.clone()),
            "pauseUntil" => ("pause_until", v.clone()),
            "priorityGroups" => ("priority_groups", v.clone()),
            "priorityPolicy" => ("priority_policy", v.clone()),
            "pinnedTtl" => ("priority_timeout", nanos(v)),
            "deliverSubject" => ("deliver_subject", v.clone()),
            "deliverGroup" => ("deliver_group", v.clone()),
            "heartbeatInterval" => ("idle_heartbeat", nanos(v)),
            "flowControl" => ("flow_control", v.clone()),
            "rateLimitBps" => ("rate_limit_bps", v.clone()),
            "streamName" => continue,
            other => panic!("consumer field {other} has no plain mapping in the test"),
        };
        out.insert(key.into(), value);
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Talking to a server plainly

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    config: Option<Value>,
}

async fn request(client: &async_nats::Client, subject: String, body: &Value) -> Answer {
    let msg = client
        .request(
            subject.clone(),
            serde_json::to_vec(body).expect("JSON").into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap_or_else(|e| panic!("{subject}: {e}"))
}

/// A plain create of a stream (a sealed one created open, then sealed, as a user would).
async fn plain_stream(client: &async_nats::Client, body: &Value) -> Result<Value, String> {
    let name = body["name"].as_str().unwrap_or_default();
    let sealed = body["sealed"] == json!(true);
    let mut first = body.clone();
    if sealed {
        first.as_object_mut().map(|o| o.remove("sealed"));
    }
    let a = request(client, format!("$JS.API.STREAM.CREATE.{name}"), &first).await;
    if let Some(e) = a.error {
        return Err(e.to_string());
    }
    if !sealed {
        return a.config.ok_or_else(|| "no config".into());
    }
    let a = request(client, format!("$JS.API.STREAM.UPDATE.{name}"), body).await;
    match a.error {
        Some(e) => Err(e.to_string()),
        None => a.config.ok_or_else(|| "no config".into()),
    }
}

/// Whether a `$JS.API.<what>` INFO request finds the asset.
async fn exists(client: &async_nats::Client, what: String) -> bool {
    request(client, format!("$JS.API.{what}"), &json!({}))
        .await
        .error
        .is_none()
}

async fn stored_stream(client: &async_nats::Client, name: &str) -> Value {
    let a = request(client, format!("$JS.API.STREAM.INFO.{name}"), &json!({})).await;
    a.config
        .unwrap_or_else(|| panic!("stream {name}: {:?}", a.error))
}

async fn stored_consumer(client: &async_nats::Client, stream: &str, name: &str) -> Value {
    let a = request(
        client,
        format!("$JS.API.CONSUMER.INFO.{stream}.{name}"),
        &json!({}),
    )
    .await;
    a.config
        .unwrap_or_else(|| panic!("consumer {name}: {:?}", a.error))
}

/// A configuration as compared: metadata (server versions, the owner marker) left out.
fn comparable(mut c: Value) -> Value {
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
    }
    c
}

// ---------------------------------------------------------------------------------------
// The server versions

/// One nats-server version of the matrix.
struct Version {
    /// Its minor, as named in reports.
    minor: &'static str,
    /// The `.tools/nats-server-<minor>` to run, or `None` for the default (newest).
    tool: Option<&'static str>,
    /// Run every spec (else a fast subset).
    full: bool,
}

/// The matrix: the newest version with the whole corpus, the older supported ones with a
/// subset (every spec with `JSO_CONFORMANCE_FULL=1`, as `make conformance` sets).
fn versions() -> Vec<Version> {
    let full = std::env::var("JSO_CONFORMANCE_FULL").is_ok_and(|v| v == "1");
    let mut out = vec![Version {
        minor: "2.15",
        tool: None,
        full: true,
    }];
    for minor in ["2.10", "2.11", "2.12", "2.14"] {
        out.push(Version {
            minor,
            tool: Some(minor),
            full,
        });
    }
    out
}

/// Whether spec `i` of `n` runs on `version`: all of them, or every fifth and the last
/// ones (the specs the server refuses).
fn runs(version: &Version, i: usize, n: usize) -> bool {
    version.full || i.is_multiple_of(5) || i + 4 >= n
}

/// The fields of a plain request the server did not store as sent: what an older server
/// drops without a word.
fn dropped(request: &Value, stored: &Value) -> Vec<String> {
    request
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| stored.get(k.as_str()) != Some(v) && !is_default(v))
        .map(|(k, _)| k.clone())
        .collect()
}

fn is_default(v: &Value) -> bool {
    matches!(v, Value::Bool(false) | Value::Null) || v == &json!(0) || v == &json!("")
}

// ---------------------------------------------------------------------------------------
// Verdicts

#[derive(Default)]
struct Verdicts {
    specs: usize,
    same: usize,
    refused_and_stalled: usize,
    /// Specs with fields this server version does not know: it dropped them from the
    /// plain request, and the object stalled naming them without writing the asset.
    unknown_to_version: usize,
    problems: Vec<String>,
}

impl Verdicts {
    fn report(&self, what: &str, started: Instant) {
        eprintln!(
            "CONFORMANCE {what}: {} specs, {} stored alike, {} refused (by the server, or the client for buckets) and stalled, {} with fields the version does not know (stalled naming them, nothing written), {} problems, {:.1} s",
            self.specs,
            self.same,
            self.refused_and_stalled,
            self.unknown_to_version,
            self.problems.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            self.problems.is_empty(),
            "{what}: {} of {} specs went wrong:\n- {}",
            self.problems.len(),
            self.specs,
            self.problems.join("\n- ")
        );
    }
}

/// Waits until the object is Ready or Stalled at its generation; returns it.
async fn settled(api: &kube::Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_object(api, name, "Ready or Stalled", WAIT, |o| {
        condition(o, "Ready").is_some_and(|(s, _, _)| s == "True")
            || condition(o, "Stalled").is_some_and(|(s, _, _)| s == "True")
    })
    .await
}

fn is_ready(o: &DynamicObject) -> bool {
    condition(o, "Ready").is_some_and(|(s, _, _)| s == "True")
}

/// The object stalled naming one of `fields`.
fn stalled_naming(o: &DynamicObject, fields: &[String]) -> bool {
    condition(o, "Stalled")
        .is_some_and(|(s, _, m)| s == "True" && fields.iter().any(|f| m.contains(f.as_str())))
}

struct Servers {
    _operated: Nats,
    _plain: Nats,
    operated: async_nats::Client,
    plain: async_nats::Client,
    _op: Operator,
    cp: &'static ControlPlane,
    ns: TestNs,
}

async fn servers(prefix: &str, version: &Version) -> Servers {
    let cp = control_plane().await;
    let ns = TestNs::new(prefix).await;
    let operated_nats = Nats::start_version(version.tool, "").await;
    let plain_nats = Nats::start_version(version.tool, "").await;
    let op = Operator::start(
        cp,
        &[
            "--servers",
            operated_nats.url(),
            "--namespace",
            ns.name(),
            "--admin-address",
            "127.0.0.1:0",
            "--concurrency",
            "8",
        ],
    )
    .await;
    Servers {
        operated: operated_nats.client().await,
        plain: plain_nats.client().await,
        _operated: operated_nats,
        _plain: plain_nats,
        _op: op,
        cp,
        ns,
    }
}

/// The origins the mirror and source specs name, the same on both servers.
async fn origins(s: &Servers) {
    for (name, direct) in [("origin", false), ("direct-origin", true)] {
        let body = json!({"name": name, "subjects": [format!("{name}.>")], "allow_direct": direct});
        for c in [&s.operated, &s.plain] {
            let a = request(c, format!("$JS.API.STREAM.CREATE.{name}"), &body).await;
            assert!(a.error.is_none(), "origin {name}: {:?}", a.error);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The corpus

#[tokio::test]
async fn streams_are_stored_as_the_server_itself_would() {
    for version in versions() {
        streams_on(&version).await;
    }
}

fn prefix(what: &str, v: &Version) -> String {
    format!("conf-{what}-{}", v.minor.replace('.', ""))
}

async fn streams_on(version: &Version) {
    let started = Instant::now();
    let s = servers(&prefix("s", version), version).await;
    origins(&s).await;
    let api = dyn_api(s.cp, s.ns.name(), "streams");
    let mut v = Verdicts::default();
    let mut cases = Vec::new();
    let all = corpus("streams.yaml");
    let n = all.len();
    for (i, raw) in all.into_iter().enumerate() {
        if !runs(version, i, n) {
            continue;
        }
        let name = format!("s{i:03}");
        let mut spec = fill(&raw, &name);
        let o = spec.as_object_mut().expect("a spec is a map");
        o.insert("name".into(), json!(name));
        if !o.contains_key("subjects") && !o.contains_key("sources") {
            o.insert("subjects".into(), json!([format!("{name}.>")]));
        }
        o.retain(|_, v| !v.is_null());
        let yaml = manifest(
            "Stream",
            &name,
            &serde_saphyr::to_string(&spec).expect("YAML"),
        );
        let out = kubectl_apply_yaml(s.cp, s.ns.name(), &yaml);
        let admitted = out.status.success();
        let sent = stream_plain(&spec);
        let plain = plain_stream(&s.plain, &sent).await;
        cases.push((
            name,
            spec,
            admitted,
            plain,
            sent,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    for (name, spec, admitted, plain, sent, stderr) in cases {
        v.specs += 1;
        match (admitted, plain) {
            (false, Err(_)) => v.refused_and_stalled += 1,
            (false, Ok(_)) => v.problems.push(format!(
                "{name} {spec}: refused at admission although the server accepts it: {stderr}"
            )),
            (true, plain) => {
                let obj = settled(&api, &name).await;
                match plain {
                    Err(e) if !is_ready(&obj) => {
                        let _ = e;
                        v.refused_and_stalled += 1
                    }
                    Err(e) => v.problems.push(format!(
                        "{name} {spec}: Ready, but the server refuses the same intent: {e}"
                    )),
                    Ok(stored) if !is_ready(&obj) => {
                        let lost = dropped(&sent, &stored);
                        let written = exists(&s.operated, format!("STREAM.INFO.{name}")).await;
                        if !lost.is_empty() && stalled_naming(&obj, &lost) && !written {
                            v.unknown_to_version += 1;
                        } else {
                            v.problems.push(format!(
                                "{name} {spec}: the server accepts it, but the object is {}",
                                status_summary(&obj)
                            ));
                        }
                    }
                    Ok(stored) => {
                        let ours = comparable(stored_stream(&s.operated, &name).await);
                        let plain = comparable(stored);
                        if ours == plain {
                            v.same += 1;
                        } else {
                            v.problems.push(format!(
                                "{name} {spec}: stored differently:\n  operator {ours}\n  plain    {plain}"
                            ));
                        }
                    }
                }
            }
        }
    }
    v.report(
        &format!("streams on nats-server {}", version.minor),
        started,
    );
}

#[tokio::test]
async fn consumers_are_stored_as_the_server_itself_would() {
    for version in versions() {
        consumers_on(&version).await;
    }
}

async fn consumers_on(version: &Version) {
    let started = Instant::now();
    let s = servers(&prefix("c", version), version).await;
    let streams = dyn_api(s.cp, s.ns.name(), "streams");
    let consumers = dyn_api(s.cp, s.ns.name(), "consumers");
    let mut v = Verdicts::default();
    let mut cases = Vec::new();
    let all = corpus("consumers.yaml");
    let n = all.len();
    for (i, raw) in all.into_iter().enumerate() {
        if !runs(version, i, n) {
            continue;
        }
        let name = format!("c{i:03}");
        let mut spec = fill(&raw, &name);
        let o = spec.as_object_mut().expect("a spec is a map");
        let stream_extra = o.remove("stream").unwrap_or(json!({}));
        // The stream, the same on both servers: through the operator, and plainly.
        let mut stream_spec = json!({"name": name, "subjects": [format!("{name}.>")]});
        for (k, x) in stream_extra.as_object().into_iter().flatten() {
            stream_spec[k] = x.clone();
        }
        let yaml = manifest(
            "Stream",
            &name,
            &serde_saphyr::to_string(&stream_spec).expect("YAML"),
        );
        apply_ok(s.cp, s.ns.name(), &yaml);
        plain_stream(&s.plain, &stream_plain(&stream_spec))
            .await
            .unwrap_or_else(|e| panic!("stream {name}: {e}"));
        o.insert("streamName".into(), json!(name));
        o.insert("durableName".into(), json!(name));
        cases.push((name, spec));
    }
    for (name, _) in &cases {
        wait_ready(&streams, name).await;
    }
    let mut pending = Vec::new();
    for (name, spec) in cases {
        let yaml = manifest(
            "Consumer",
            &name,
            &serde_saphyr::to_string(&spec).expect("YAML"),
        );
        let out = kubectl_apply_yaml(s.cp, s.ns.name(), &yaml);
        let config = consumer_plain(&spec);
        let body = json!({"stream_name": name, "config": config});
        let plain = request(
            &s.plain,
            format!("$JS.API.CONSUMER.CREATE.{name}.{name}"),
            &body,
        )
        .await;
        pending.push((
            name,
            spec,
            out.status.success(),
            plain,
            config,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    for (name, spec, admitted, plain, config, stderr) in pending {
        v.specs += 1;
        let plain: Result<(), String> = match plain.error {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        };
        match (admitted, plain) {
            (false, Err(_)) => v.refused_and_stalled += 1,
            (false, Ok(())) => v.problems.push(format!(
                "{name} {spec}: refused at admission although the server accepts it: {stderr}"
            )),
            (true, plain) => {
                let obj = settled(&consumers, &name).await;
                match plain {
                    Err(_) if !is_ready(&obj) => v.refused_and_stalled += 1,
                    Err(e) => v.problems.push(format!(
                        "{name} {spec}: Ready, but the server refuses the same intent: {e}"
                    )),
                    Ok(()) if !is_ready(&obj) => {
                        let stored = stored_consumer(&s.plain, &name, &name).await;
                        let lost = dropped(&config, &stored);
                        let written =
                            exists(&s.operated, format!("CONSUMER.INFO.{name}.{name}")).await;
                        if !lost.is_empty() && stalled_naming(&obj, &lost) && !written {
                            v.unknown_to_version += 1;
                        } else {
                            v.problems.push(format!(
                                "{name} {spec}: the server accepts it, but the object is {}",
                                status_summary(&obj)
                            ));
                        }
                    }
                    Ok(()) => {
                        let ours = comparable(stored_consumer(&s.operated, &name, &name).await);
                        let plain = comparable(stored_consumer(&s.plain, &name, &name).await);
                        if ours == plain {
                            v.same += 1;
                        } else {
                            v.problems.push(format!(
                                "{name} {spec}: stored differently:\n  operator {ours}\n  plain    {plain}"
                            ));
                        }
                    }
                }
            }
        }
    }
    v.report(
        &format!("consumers on nats-server {}", version.minor),
        started,
    );
}

#[tokio::test]
async fn buckets_are_stored_as_the_official_client_makes_them() {
    for version in versions() {
        buckets_on(&version).await;
    }
}

/// KeyValue and ObjectStore specs, each created by the operator and, plainly, by the
/// official client (async-nats): both servers must store the same stream. What the client
/// sent is recorded off the wire, so a field an older server drops is known.
async fn buckets_on(version: &Version) {
    use async_nats::jetstream::{kv, object_store, stream::StorageType};
    let started = Instant::now();
    let s = servers(&prefix("b", version), version).await;
    let js = async_nats::jetstream::new(s.plain.clone());
    let mut recorder = s
        .plain
        .subscribe("$JS.API.STREAM.CREATE.>")
        .await
        .expect("subscribe to stream creates");
    s.plain.flush().await.expect("flush");
    let mut v = Verdicts::default();
    let mut cases = Vec::new();
    let all = corpus("buckets.yaml");
    let n = all.len();
    for (i, raw) in all.into_iter().enumerate() {
        if !runs(version, i, n) {
            continue;
        }
        let kind = raw["kind"].as_str().unwrap_or_default().to_owned();
        let name = format!("b{i:03}");
        let mut spec = raw["spec"].clone();
        spec["bucket"] = json!(name);
        let yaml = manifest(&kind, &name, &serde_saphyr::to_string(&spec).expect("YAML"));
        apply_ok(s.cp, s.ns.name(), &yaml);
        let get = |k: &str| spec.get(k).cloned();
        let dur =
            |k: &str| get(k).map(|d| Duration::from_nanos(nanos(&d).as_i64().unwrap_or(0) as u64));
        let storage = match get("storage")
            .and_then(|s| s.as_str().map(str::to_owned))
            .as_deref()
        {
            Some("memory") => StorageType::Memory,
            _ => StorageType::File,
        };
        let (stream, created) = if kind == "KeyValue" {
            let stream = format!("KV_{name}");
            let created = js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    description: get("description")
                        .and_then(|d| d.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    max_value_size: get("maxValueSize").and_then(|m| m.as_i64()).unwrap_or(0)
                        as i32,
                    history: get("history").and_then(|m| m.as_i64()).unwrap_or(0),
                    max_age: dur("ttl").unwrap_or_default(),
                    max_bytes: get("maxBytes").and_then(|m| m.as_i64()).unwrap_or(0),
                    storage,
                    compression: get("compression")
                        .and_then(|c| c.as_bool())
                        .unwrap_or(false),
                    limit_markers: dur("limitMarkerTtl"),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            (stream, created)
        } else {
            let stream = format!("OBJ_{name}");
            let created = js
                .create_object_store(object_store::Config {
                    bucket: name.clone(),
                    description: get("description").and_then(|d| d.as_str().map(str::to_owned)),
                    max_age: dur("ttl").unwrap_or_default(),
                    max_bytes: get("maxBytes").and_then(|m| m.as_i64()).unwrap_or(0),
                    storage,
                    compression: get("compression")
                        .and_then(|c| c.as_bool())
                        .unwrap_or(false),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            (stream, created)
        };
        // The create request the client sent (the recorder gets a copy of each), when it
        // sent one: the client refuses some configurations itself.
        let subject = format!("$JS.API.STREAM.CREATE.{stream}");
        let mut sent = None;
        while created.is_ok() && sent.is_none() {
            let m = tokio::time::timeout(WAIT, recorder.next())
                .await
                .unwrap_or_else(|_| panic!("no create of {stream} seen from the client"))
                .expect("the recorder's subscription ended");
            if m.subject.as_str() == subject {
                sent = Some(
                    serde_json::from_slice::<Value>(&m.payload)
                        .unwrap_or_else(|e| panic!("{subject}: {e}")),
                );
            }
        }
        cases.push((kind, name, spec, stream, created, sent));
    }
    for (kind, name, spec, stream, created, sent) in cases {
        v.specs += 1;
        let api = dyn_api(
            s.cp,
            s.ns.name(),
            if kind == "KeyValue" {
                "keyvalues"
            } else {
                "objectstores"
            },
        );
        let obj = settled(&api, &name).await;
        match created {
            Err(e) if !is_ready(&obj) => {
                let (_, reason, message) = condition(&obj, "Ready").unwrap_or_default();
                eprintln!(
                    "CONFORMANCE {kind} {name} {spec} on {}: the client says {e}; the object is {reason}: {message}",
                    version.minor
                );
                v.refused_and_stalled += 1
            }
            Err(e) => v.problems.push(format!(
                "{kind} {name} {spec}: Ready, but the client could not create it: {e}"
            )),
            Ok(()) if !is_ready(&obj) => {
                let sent = sent.unwrap_or_default();
                let lost = dropped(&sent, &stored_stream(&s.plain, &stream).await);
                let written = exists(&s.operated, format!("STREAM.INFO.{stream}")).await;
                if !lost.is_empty() && stalled_naming(&obj, &lost) && !written {
                    v.unknown_to_version += 1;
                } else {
                    v.problems.push(format!(
                        "{kind} {name} {spec}: the client creates it, but the object is {}",
                        status_summary(&obj)
                    ));
                }
            }
            Ok(()) => {
                let ours = comparable(stored_stream(&s.operated, &stream).await);
                let plain = comparable(stored_stream(&s.plain, &stream).await);
                if ours == plain {
                    v.same += 1;
                } else {
                    v.problems.push(format!(
                        "{kind} {name} {spec}: stored differently:\n  operator {ours}\n  client   {plain}"
                    ));
                }
            }
        }
    }
    v.report(
        &format!("buckets on nats-server {}", version.minor),
        started,
    );
}
