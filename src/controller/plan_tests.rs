//! Decision tables: every YAML file under `src/controller/testdata/plans/` holds cases for
//! one decision (phase, apply, conclusion, pause, stall, deletion). Each case gives plain
//! inputs — a spec as a user writes it, what the server holds, the owner marker, the
//! policies and the previous status — and the decision expected. A final check makes sure
//! that every kind of plan, refusal and deletion step is produced by at least one case.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::api::consumer::Consumer;
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::api::stream::Stream;
use crate::controller::kinds::{ConfigOf, Managed};
use crate::jetstream::asset::AssetOps;
use crate::jetstream::config::{NEWEST, parse_version};
use crate::jetstream::owner::{CLUSTER_KEY, MARKER_KEYS, OWNER_KEY, OWNER_KIND_KEY};
use crate::jetstream::wire::StreamConfig;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/controller/testdata/plans");

/// What the cases produced, for the coverage check.
#[derive(Default)]
struct Seen {
    cases: usize,
    plans: BTreeSet<&'static str>,
    phases: BTreeSet<&'static str>,
    steps: BTreeSet<&'static str>,
    pauses: BTreeSet<&'static str>,
    stalls: BTreeSet<bool>,
}

#[derive(Deserialize)]
#[serde(tag = "decision", rename_all = "camelCase", deny_unknown_fields)]
enum File {
    Phase { cases: Vec<PhaseCase> },
    Apply { cases: Vec<ApplyCase> },
    Pause { cases: Vec<PauseCase> },
    Stall { cases: Vec<StallCase> },
    Settle { cases: Vec<SettleCase> },
    Deletion { cases: Vec<DeletionCase> },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PhaseCase {
    name: String,
    object: ObjectFacts,
    expect: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PauseCase {
    name: String,
    want: Option<String>,
    have: Option<String>,
    #[serde(default)]
    policies: Policies,
    /// The server has the pause API (default: yes).
    #[serde(default = "yes")]
    api: bool,
    expect: PausePlan,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettleCase {
    name: String,
    state: ExpectState,
    #[serde(default)]
    history: History,
    expect: ExpectState,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StallCase {
    name: String,
    state: ExpectState,
    #[serde(default)]
    history: History,
    announce: bool,
}

/// A state, as the cases write it: `{ready: Reason}`, `{progressing: Reason}`,
/// `{retrying: Reason}` or `{stalled: Reason}`, with words its message must contain.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectState {
    ready: Option<String>,
    progressing: Option<String>,
    retrying: Option<String>,
    stalled: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ExpectState {
    /// The one state the case names: its kind and reason.
    fn expected(&self, case: &str) -> (&'static str, &str) {
        let named: Vec<(&'static str, &str)> = [
            ("ready", &self.ready),
            ("progressing", &self.progressing),
            ("retrying", &self.retrying),
            ("stalled", &self.stalled),
        ]
        .into_iter()
        .filter_map(|(k, r)| r.as_deref().map(|r| (k, r)))
        .collect();
        match named.as_slice() {
            [one] => *one,
            _ => panic!("{case}: a state is one of ready, progressing, retrying or stalled"),
        }
    }

    fn to_state(&self, case: &str) -> State {
        let message = self.message.clone().unwrap_or_default();
        let (kind, reason) = self.expected(case);
        let reason: &'static str = Box::leak(reason.to_string().into_boxed_str());
        match kind {
            "ready" => State::Ready { reason, message },
            "progressing" => State::Progressing { reason, message },
            "retrying" => State::Retrying { reason, message },
            _ => State::Stalled { reason, message },
        }
    }

    fn check(&self, case: &str, state: &State) {
        let want = self.expected(case);
        let (kind, message) = match state {
            State::Ready { message, .. } => ("ready", message),
            State::Progressing { message, .. } => ("progressing", message),
            State::Retrying { message, .. } => ("retrying", message),
            State::Stalled { message, .. } => ("stalled", message),
        };
        assert_eq!(
            (kind, state.reason()),
            want,
            "{case}: state (message: {message})"
        );
        if let Some(words) = &self.message {
            assert!(
                message.contains(words.as_str()),
                "{case}: the message {message:?} does not contain {words:?}"
            );
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectEvent {
    reason: String,
    #[serde(default)]
    warning: bool,
    #[serde(default)]
    note: Option<String>,
}

fn check_event(case: &str, want: &Option<Option<ExpectEvent>>, got: Option<&Event>) {
    let Some(want) = want else { return };
    match (want, got) {
        (None, None) => {}
        (Some(w), Some(g)) => {
            assert_eq!(
                (w.reason.as_str(), w.warning),
                (g.reason, g.warning),
                "{case}: event ({})",
                g.note
            );
            if let Some(words) = &w.note {
                assert!(
                    g.note.contains(words.as_str()),
                    "{case}: the event note {:?} does not contain {words:?}",
                    g.note
                );
            }
        }
        (w, g) => panic!(
            "{case}: expected event {:?}, got {g:?}",
            w.as_ref().map(|e| &e.reason)
        ),
    }
}

/// A `Some(None)` for an explicit `event: null` (no event expected), `None` when the case
/// does not say.
fn explicit<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServerHolds {
    /// `ours` (as desired), `none`, or another marker: `<kind>/<namespace>/<name>`, or
    /// `<namespace>/<name>` as earlier versions wrote it.
    #[serde(default = "ours")]
    marker: String,
    /// The cluster in the marker (with `marker: ours` it replaces ours; empty removes it).
    #[serde(default)]
    marker_cluster: Option<String>,
    /// Fields (server JSON names) the server holds differently, merged over the desired
    /// configuration (`null` removes a field).
    #[serde(default)]
    set: Value,
}

fn ours() -> String {
    "ours".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum WriteOutcome {
    /// The server stored what was asked.
    Stored,
    /// The server stored what was asked, with these fields different.
    StoredWith(Value),
    AlreadyExists,
    StreamMissing,
    Failed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyCase {
    name: String,
    kind: String,
    #[serde(default = "object")]
    object: String,
    #[serde(default)]
    cluster: Option<String>,
    spec: Value,
    /// The consumer's stream on the server: `missing`, or fields over `{name}`.
    #[serde(default)]
    stream: Value,
    /// `missing`, or what the server holds.
    #[serde(default)]
    observed: Option<ServerHolds>,
    #[serde(default)]
    policies: Policies,
    #[serde(default)]
    history: History,
    expect: Plan,
    #[serde(default)]
    outcome: Option<WriteOutcome>,
    #[serde(default)]
    state: Option<ExpectState>,
    #[serde(default, deserialize_with = "explicit")]
    event: Option<Option<ExpectEvent>>,
    #[serde(default)]
    adopted: Option<bool>,
    /// The server's version (`2.10.0`, ...); the newest when left out.
    #[serde(default)]
    server: Option<String>,
}

fn object() -> String {
    "team-a/orders".into()
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (_, Value::Null) => {}
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(slot) = b.get_mut(k) {
                    merge(slot, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn failure(kind: &str) -> Failure {
    let (disposition, reason) = match kind {
        "transient" => (Disposition::Transient, reason::CONNECTION_FAILED),
        "permanent" => (Disposition::Permanent, reason::NOT_SUPPORTED),
        "auth" => (Disposition::Auth, reason::AUTHENTICATION_FAILED),
        other => panic!("unknown failure {other:?} (transient, permanent, auth)"),
    };
    Failure {
        disposition,
        reason,
        message: format!("a {kind} failure"),
    }
}

/// Immutable refusals carry descriptions; cases name the fields they start with.
fn same_plan(want: &Plan, got: &Plan) -> bool {
    match (want, got) {
        (Plan::Refuse(Refusal::Immutable(w)), Plan::Refuse(Refusal::Immutable(g))) => {
            w.len() == g.len() && w.iter().zip(g).all(|(w, g)| g.starts_with(w.as_str()))
        }
        _ => want == got,
    }
}

fn run_apply<K: Managed>(c: &ApplyCase, seen: &mut Seen) {
    let (ns, name) = c
        .object
        .split_once('/')
        .unwrap_or(("team-a", c.object.as_str()));
    let obj: K = serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": K::KIND,
        "metadata": {"name": name, "namespace": ns, "generation": 1},
        "spec": c.spec,
    }))
    .unwrap_or_else(|e| panic!("{}: spec: {e}", c.name));
    let owner = Owner::new(K::KIND, ns, name, c.cluster.as_deref());
    let id = obj.asset_id();
    let stream = K::Asset::stream(&id).map(|s| {
        if c.stream.as_str() == Some("missing") {
            return None;
        }
        let mut base = json!({"name": s});
        merge(&mut base, &c.stream);
        Some(serde_json::from_value::<StreamConfig>(base).unwrap())
    });
    let server = c.server.as_deref().map_or(NEWEST, parse_version);
    let desired: Option<ConfigOf<K>> = match &stream {
        Some(None) => None,
        parent => Some(
            obj.desired(&owner, parent.as_ref().and_then(|p| p.as_ref()))
                .map(|mut d| {
                    d.for_server(server);
                    d
                })
                .unwrap_or_else(|e| panic!("{}: desired: {e}", c.name)),
        ),
    };
    let observed: Option<ConfigOf<K>> = c.observed.as_ref().map(|o| {
        let base = desired
            .as_ref()
            .unwrap_or_else(|| panic!("{}: observed needs a stream", c.name));
        let mut v = serde_json::to_value(base).unwrap();
        let md = v
            .as_object_mut()
            .unwrap()
            .entry("metadata")
            .or_insert(json!({}));
        let md = md.as_object_mut().unwrap();
        match o.marker.as_str() {
            "ours" => {}
            "none" => {
                for k in MARKER_KEYS {
                    md.remove(k);
                }
            }
            // `<kind>/<namespace>/<name>`, or an earlier version's `<namespace>/<name>`.
            other => {
                md.remove(CLUSTER_KEY);
                match other.split('/').collect::<Vec<_>>().as_slice() {
                    [kind, ns, name] => {
                        md.insert(OWNER_KEY.into(), json!(format!("{ns}/{name}")));
                        md.insert(OWNER_KIND_KEY.into(), json!(kind));
                    }
                    _ => {
                        md.insert(OWNER_KEY.into(), json!(other));
                        md.remove(OWNER_KIND_KEY);
                    }
                }
            }
        }
        match o.marker_cluster.as_deref() {
            None => {}
            Some("") => {
                md.remove(CLUSTER_KEY);
            }
            Some(cl) => {
                md.insert(CLUSTER_KEY.into(), json!(cl));
            }
        }
        merge(&mut v, &o.set);
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{}: observed: {e}", c.name))
    });
    let facts = ApplyFacts {
        desired: desired.as_ref(),
        observed: observed.as_ref(),
        owner: &owner,
        policies: c.policies,
        history: &c.history,
        server,
    };
    let got = apply(&facts);
    assert!(
        same_plan(&c.expect, &got),
        "{}: expected plan {:?}, got {got:?}",
        c.name,
        c.expect
    );
    seen.plans.insert(got.kind().name());

    // What the plan and its outcome lead to.
    if c.state.is_none() && c.event.is_none() && c.adopted.is_none() {
        assert!(c.outcome.is_none(), "{}: an outcome needs a state", c.name);
        return;
    }
    let stored: Option<ConfigOf<K>> = match &c.outcome {
        Some(WriteOutcome::Stored) => desired.clone(),
        Some(WriteOutcome::StoredWith(set)) => {
            let mut v = serde_json::to_value(desired.as_ref().unwrap()).unwrap();
            merge(&mut v, set);
            Some(serde_json::from_value(v).unwrap())
        }
        None if got.writes() => desired.clone(),
        _ => None,
    };
    let executed = match &c.outcome {
        Some(WriteOutcome::AlreadyExists) => Executed::AlreadyExists,
        Some(WriteOutcome::StreamMissing) => Executed::StreamMissing,
        Some(WriteOutcome::Failed(kind)) => Executed::Failed(failure(kind)),
        _ => match &stored {
            Some(s) => Executed::Stored(s),
            None => Executed::Nothing,
        },
    };
    let subject = Subject {
        noun: K::NOUN,
        id: id.to_string(),
        stream: K::Asset::stream(&id).map(str::to_string),
        object: name.to_string(),
        lost_on_recreate: K::LOST_ON_RECREATE,
    };
    let conclusion = conclude(&got, &executed, desired.as_ref(), &owner, &subject);
    if let Some(st) = &c.state {
        st.check(&c.name, &conclusion.state);
    }
    check_event(&c.name, &c.event, conclusion.event.as_ref());
    if let Some(a) = c.adopted {
        assert_eq!(a, conclusion.adopted, "{}: adopted", c.name);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeletionCase {
    name: String,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    policies: Policies,
    #[serde(default)]
    past_grace: bool,
    /// The status says the asset was adopted.
    #[serde(default)]
    adopted: bool,
    /// A connection is remembered for the object.
    #[serde(default)]
    remembered: bool,
    /// `ready`, `unresolved`, or a failure (`transient`, `permanent`, `auth`).
    #[serde(default)]
    connection: Option<String>,
    /// Connecting with the remembered connection: `ready` or a failure.
    #[serde(default)]
    remembered_connection: Option<String>,
    /// `missing`, `ours`, `ours-outdated`, `ours-adopted` (marked adopted), `unowned`,
    /// `other`, or a failure.
    #[serde(default)]
    observed: Option<String>,
    /// `ok`, or a failure.
    #[serde(default)]
    delete: Option<String>,
    steps: Vec<String>,
    #[serde(default, deserialize_with = "explicit")]
    event: Option<Option<ExpectEvent>>,
}

fn run_deletion(c: &DeletionCase, seen: &mut Seen) {
    let mut facts = DeletionFacts {
        paused: c.paused,
        policies: c.policies,
        adopted: c.adopted,
        past_grace: c.past_grace,
        remembered: c.remembered,
        ..Default::default()
    };
    let need = |what: &Option<String>, step: &str| -> String {
        what.clone()
            .unwrap_or_else(|| panic!("{}: the plan asks to {step}; say what happens", c.name))
    };
    let subject = Subject {
        noun: "stream",
        id: "orders".into(),
        stream: None,
        object: "orders".into(),
        lost_on_recreate: "",
    };
    let mut steps = Vec::new();
    let mut event = None;
    for _ in 0..10 {
        let step = deletion(&facts);
        steps.push(step.kind().name().to_string());
        seen.steps.insert(step.kind().name());
        match &step {
            Deletion::Resolve => {
                facts.connection = Some(match need(&c.connection, "resolve").as_str() {
                    "ready" => Connection::Ready,
                    "unresolved" => Connection::Unresolved("Account x does not exist".into()),
                    f => Connection::Failed(failure(f)),
                })
            }
            Deletion::UseRemembered => {
                facts.remembered = false;
                facts.connection = Some(
                    match need(&c.remembered_connection, "use the remembered connection").as_str() {
                        "ready" => Connection::Ready,
                        f => Connection::Failed(failure(f)),
                    },
                )
            }
            Deletion::Observe => {
                let present = |ownership, adopted| Observed::Present { ownership, adopted };
                facts.observed = Some(match need(&c.observed, "observe").as_str() {
                    "missing" => Observed::Missing,
                    "ours" => present(Ownership::Ours, false),
                    "ours-outdated" => present(Ownership::OursOutdated, false),
                    "ours-adopted" => present(Ownership::Ours, true),
                    "unowned" => present(Ownership::Unowned, false),
                    "other" => present(Ownership::Other("Stream team-b/orders".into()), false),
                    f => Observed::Failed(failure(f)),
                })
            }
            Deletion::Delete => {
                facts.deleted = Some(match need(&c.delete, "delete").as_str() {
                    "ok" => Ok(()),
                    f => Err(failure(f)),
                })
            }
            _ => {
                event = deletion_event(&step, &subject);
                break;
            }
        }
    }
    assert_eq!(steps, c.steps, "{}: steps", c.name);
    check_event(&c.name, &c.event, event.as_ref());
}

fn run_file(path: &Path, seen: &mut Seen) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let file: File =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = BTreeSet::new();
    let mut check_name = |n: &str| {
        assert!(
            names.insert(n.to_string()),
            "{}: two cases are named {n:?}",
            path.display()
        )
    };
    match file {
        File::Phase { cases } => {
            for c in &cases {
                check_name(&c.name);
                let got = phase(&c.object);
                assert_eq!(got.name(), c.expect, "{}", c.name);
                seen.phases.insert(got.name());
            }
            cases.len()
        }
        File::Apply { cases } => {
            for c in &cases {
                check_name(&c.name);
                match c.kind.as_str() {
                    "Stream" => run_apply::<Stream>(c, seen),
                    "Consumer" => run_apply::<Consumer>(c, seen),
                    "KeyValue" => run_apply::<KeyValue>(c, seen),
                    "ObjectStore" => run_apply::<ObjectStore>(c, seen),
                    other => panic!("{}: unknown kind {other}", c.name),
                }
            }
            cases.len()
        }
        File::Pause { cases } => {
            for c in &cases {
                check_name(&c.name);
                let got = pause(c.want.as_deref(), c.have.as_deref(), c.policies, c.api);
                assert_eq!(got, c.expect, "{}", c.name);
                let kind = match got {
                    PausePlan::Keep => "Keep",
                    PausePlan::Pause(_) => "Pause",
                    PausePlan::Resume => "Resume",
                    PausePlan::NotSupported => "NotSupported",
                };
                seen.pauses.insert(kind);
            }
            cases.len()
        }
        File::Stall { cases } => {
            for c in &cases {
                check_name(&c.name);
                let got = stall_event(&c.state.to_state(&c.name), &c.history);
                assert_eq!(got.is_some(), c.announce, "{}", c.name);
                seen.stalls.insert(c.announce);
            }
            cases.len()
        }
        File::Settle { cases } => {
            for c in &cases {
                check_name(&c.name);
                let got = settle(c.state.to_state(&c.name), &c.history);
                c.expect.check(&c.name, &got);
            }
            cases.len()
        }
        File::Deletion { cases } => {
            for c in &cases {
                check_name(&c.name);
                run_deletion(c, seen);
            }
            cases.len()
        }
    }
}

#[test]
fn decision_tables() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no decision tables in {DIR}");
    let mut s = Seen::default();
    for f in &files {
        let n = run_file(f, &mut s);
        s.cases += n;
    }
    assert!(s.cases >= 80, "only {} decision cases", s.cases);
    let missing = |all: Vec<&'static str>, got: &BTreeSet<&'static str>| -> Vec<&'static str> {
        all.into_iter().filter(|k| !got.contains(k)).collect()
    };
    let plans = missing(PlanKind::ALL.iter().map(|k| k.name()).collect(), &s.plans);
    assert!(plans.is_empty(), "no case produces the plans {plans:?}");
    let phases = missing(Phase::ALL.iter().map(|k| k.name()).collect(), &s.phases);
    assert!(phases.is_empty(), "no case produces the phases {phases:?}");
    let steps = missing(
        DeletionKind::ALL.iter().map(|k| k.name()).collect(),
        &s.steps,
    );
    assert!(
        steps.is_empty(),
        "no case produces the deletion steps {steps:?}"
    );
    let pauses = missing(vec!["Keep", "Pause", "Resume", "NotSupported"], &s.pauses);
    assert!(
        pauses.is_empty(),
        "no case produces the pause plans {pauses:?}"
    );
    assert_eq!(
        s.stalls.len(),
        2,
        "stall cases must announce and stay quiet"
    );
}

#[test]
fn only_new_streams_are_created_without_a_read() {
    let new = History::default();
    let writable = Policies::default();
    assert!(!observe_first(true, &new, writable), "a new stream");
    assert!(
        observe_first(false, &new, writable),
        "consumers: always read first"
    );
    let read_only = Policies {
        read_only: true,
        ..writable
    };
    assert!(
        observe_first(true, &new, read_only),
        "read-only creates nothing"
    );
    for (what, h) in [
        (
            "was Ready",
            History {
                was_ready: true,
                ..History::default()
            },
        ),
        (
            "adopted",
            History {
                adopted: true,
                ..History::default()
            },
        ),
        (
            "stalled",
            History {
                stalled_for_generation: Some("ResourceConflict".into()),
                ..History::default()
            },
        ),
        (
            // A create that timed out: the server may have made the stream after all.
            "tried before",
            History {
                attempted: true,
                ..History::default()
            },
        ),
    ] {
        assert!(observe_first(true, &h, writable), "{what}");
    }
}
