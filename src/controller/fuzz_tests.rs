//! Generated specs through the pure code. Specs come from each kind's own CRD schema
//! (`tests/support/specgen.rs`), observed configurations from other generated specs of the
//! same kind, sometimes with fields missing as an older server leaves them out. For every
//! case: the types read what the schema accepts; building the desired configuration and
//! planning never panic; a configuration read back from its own JSON is no change; a plan
//! that writes, once the server stores what it sent, ends Ready, and planning again on that
//! result is a no-op; the drift scan's fingerprint agrees with the plan's comparison.
//!
//! `JSO_FUZZ_CASES` cases per kind (default 2,500: 10,000 per run over the four kinds).
//! A failing case is saved under `proptest-regressions/` and replayed first on the next
//! run; fixed bugs keep their case below as a plain test.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use super::*;
use crate::api::consumer::Consumer;
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::api::stream::Stream;
use crate::controller::kinds::{ConfigOf, Managed};
use crate::jetstream::asset::AssetOps;
use crate::jetstream::config::{AssetConfig, NEWEST, drifted, fingerprint};
use crate::jetstream::owner::{MARKER_KEYS, Owner};
use crate::jetstream::wire::StreamConfig;

#[path = "../../tests/support/specgen.rs"]
mod specgen;

fn cases() -> u32 {
    std::env::var("JSO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

fn specs<K: Managed>() -> BoxedStrategy<Value> {
    let crd = serde_json::to_value(crate::api::crd::<K>()).expect("a CRD serialises");
    specgen::value(&specgen::spec_schema(&crd))
}

/// One case: the object's spec, another spec of the kind (what the server holds), a stream
/// spec (the consumer's stream, a mirror's origin), and fields the server leaves out.
type Case = (Value, Value, Value, Vec<prop::sample::Index>);

fn case<K: Managed>() -> impl Strategy<Value = Case> {
    (
        specs::<K>(),
        specs::<K>(),
        specs::<Stream>(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
}

fn fail(what: &str, spec: &Value, detail: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {detail}\nspec: {spec}"))
}

fn object<K: Managed>(spec: &Value) -> Result<K, TestCaseError> {
    serde_json::from_value(json!({
        "apiVersion": "jetstream.nats.io/v1beta2",
        "kind": K::KIND,
        "metadata": {"name": "fuzzed", "namespace": "team-a", "generation": 1},
        "spec": spec,
    }))
    .map_err(|e| fail("the schema accepts a spec the types cannot read", spec, e))
}

/// The configuration the server would hold for a stream spec named `name` (a plain stream
/// when the spec is invalid).
fn stream_config(spec: &Value, name: &str) -> StreamConfig {
    let owner = Owner::new("Stream", "team-a", name, None);
    let mut spec = spec.clone();
    spec["name"] = json!(name);
    serde_json::from_value::<crate::api::stream::StreamSpec>(spec)
        .ok()
        .and_then(|s| crate::jetstream::stream_config::desired(&s, &owner).ok())
        .unwrap_or_else(|| {
            serde_json::from_value(json!({"name": name})).expect("a plain stream config")
        })
}

fn roundtrip<C: AssetConfig>(c: &C, spec: &Value) -> Result<C, TestCaseError> {
    let v = serde_json::to_value(c).map_err(|e| fail("config does not serialise", spec, e))?;
    serde_json::from_value(v).map_err(|e| fail("config does not read back", spec, e))
}

fn check<K: Managed>((spec, other, stream, dropped): Case) -> Result<(), TestCaseError> {
    let obj: K = object(&spec)?;
    let owner = Owner::new(K::KIND, "team-a", "fuzzed", None);
    let id = obj.asset_id();
    // A consumer's stream, or a mirror's origin.
    let parent = K::Asset::stream(&id)
        .map(str::to_owned)
        .or_else(|| obj.origin())
        .map(|name| stream_config(&stream, &name));
    let desired = match obj.desired(&owner, parent.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            prop_assert!(!e.0.is_empty(), "an invalid spec without a message: {spec}");
            return Ok(());
        }
    };
    let plan_on = |observed: Option<&ConfigOf<K>>| {
        apply(&ApplyFacts {
            desired: Some(&desired),
            observed,
            owner: &owner,
            policies: Policies::default(),
            history: &History::default(),
            server: NEWEST,
        })
    };

    // What the server stores and returns is the same configuration.
    let stored: ConfigOf<K> = roundtrip(&desired, &spec)?;
    let residual = <ConfigOf<K>>::changes(&desired, &stored);
    prop_assert!(
        residual.is_empty(),
        "read back, it differs in {residual:?}: {spec}"
    );
    prop_assert_eq!(fingerprint(&desired), fingerprint(&stored));
    prop_assert!(!drifted(&desired, &stored));
    prop_assert_eq!(plan_on(Some(&stored)), Plan::Noop);
    prop_assert_eq!(
        plan_on(None),
        Plan::Create {
            recreate: false,
            streak: 0,
            announce: false
        },
        "{}",
        spec
    );

    // Another spec's configuration on the server, stamped by this object.
    let other_obj: K = object(&other)?;
    let Ok(observed) = other_obj.desired(&owner, parent.as_ref()) else {
        return Ok(());
    };
    let changes = <ConfigOf<K>>::changes(&desired, &observed);
    prop_assert_eq!(
        drifted(&desired, &observed),
        !changes.is_empty(),
        "drift and changes disagree: {:?}",
        changes
    );
    prop_assert_eq!(
        fingerprint(&desired) == fingerprint(&observed),
        changes.is_empty(),
        "the fingerprint and the changes disagree: {:?}",
        changes
    );
    let plan = plan_on(Some(&observed));
    match &plan {
        Plan::Noop => prop_assert!(changes.is_empty(), "Noop with changes {changes:?}"),
        Plan::Update {
            changes: planned, ..
        } => prop_assert_eq!(planned, &changes),
        Plan::Refuse(Refusal::Immutable(why)) => {
            prop_assert!(!why.is_empty() && !changes.is_empty(), "{plan:?}")
        }
        other => prop_assert!(false, "unexpected plan {other:?} for a stamped asset"),
    }
    if plan.writes() {
        let subject = Subject {
            noun: K::NOUN,
            id: id.to_string(),
            stream: K::Asset::stream(&id).map(str::to_string),
            object: "fuzzed".into(),
            lost_on_recreate: K::LOST_ON_RECREATE,
        };
        let done = conclude(
            &plan,
            &Executed::Stored(&stored),
            Some(&desired),
            &owner,
            &subject,
        );
        prop_assert!(done.state.is_ready(), "{:?} after {plan:?}", done.state);
        // Planned again on what it wrote: nothing left to do.
        prop_assert_eq!(plan_on(Some(&stored)), Plan::Noop);
    }

    // The same asset unstamped, with fields an older server leaves out.
    let mut v = serde_json::to_value(&observed).map_err(|e| fail("serialise", &spec, e))?;
    if let Some(m) = v.as_object_mut() {
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in MARKER_KEYS {
                md.remove(k);
            }
        }
        let keys: Vec<String> = m.keys().filter(|k| *k != "name").cloned().collect();
        if !keys.is_empty() {
            for i in &dropped {
                m.remove(&keys[i.index(keys.len())]);
            }
        }
    }
    if let Ok(older) = serde_json::from_value::<ConfigOf<K>>(v) {
        let plan = plan_on(Some(&older));
        prop_assert!(
            matches!(
                plan,
                Plan::Adopt { .. } | Plan::Refuse(Refusal::Immutable(_))
            ),
            "an unstamped asset under the default policy: {plan:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_streams(c in case::<Stream>()) {
        check::<Stream>(c)?;
    }

    #[test]
    fn generated_consumers(c in case::<Consumer>()) {
        check::<Consumer>(c)?;
    }

    #[test]
    fn generated_keyvalues(c in case::<KeyValue>()) {
        check::<KeyValue>(c)?;
    }

    #[test]
    fn generated_objectstores(c in case::<ObjectStore>()) {
        check::<ObjectStore>(c)?;
    }
}
