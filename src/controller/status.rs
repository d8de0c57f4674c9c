//! Reading what a previous status says, building the next one, and writing it (and
//! finalizers) only when it changed.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::api::common::AssetStatus;
use crate::api::conditions::{self, Cond, READY, STALLED, Time, reason};
use crate::metrics::Write;

use super::context::{Context, Error, MANAGER};
use super::plan::History;

/// What a previous status says, as far as decisions care.
pub fn history(previous: Option<&AssetStatus>, generation: Option<i64>) -> History {
    let Some(p) = previous else {
        return History::default();
    };
    let this_generation = p.observed_generation == generation;
    let ready = conditions::find(&p.conditions, READY);
    let stalled = conditions::find(&p.conditions, STALLED).filter(|c| c.status == "True");
    History {
        ready_for_generation: this_generation && conditions::is_ready(&p.conditions),
        was_ready: conditions::is_ready(&p.conditions),
        waiting_for_deleted_stream: ready.is_some_and(|c| {
            c.reason == reason::WAITING_FOR_STREAM && c.message.contains("deleted")
        }),
        stalled_for_generation: stalled
            .filter(|_| this_generation)
            .map(|c| c.reason.clone()),
        adopted: p.adopted,
        ready_reason: ready
            .filter(|c| this_generation && c.status == "True")
            .map(|c| c.reason.clone()),
        attempted: ready.is_some(),
        recreating_with_backoff: ready.is_some_and(|c| c.reason == reason::RECREATE_BACKOFF),
        unchanged_since_write: false,
        recent_create: None,
    }
}

/// The status of a paused object: `Ready` keeps its status and reason (a healthy object
/// stays healthy while nobody looks), with a message that says why nothing moves;
/// `Reconciling` and `Stalled` go, since nothing is worked on.
pub fn paused(previous: Option<&AssetStatus>, message: &str) -> AssetStatus {
    let ready = previous.and_then(|p| conditions::find(&p.conditions, READY));
    let cond = match ready.map(|c| c.status.as_str()) {
        Some("True") => Cond::yes(
            READY,
            ready.map(|c| c.reason.as_str()).unwrap_or(reason::NOOP),
            message,
        ),
        Some("False") => Cond::no(READY, reason::PAUSED, message),
        _ => Cond::unknown(READY, reason::PAUSED, message),
    };
    let mut bound = previous.cloned().unwrap_or_default();
    bound.conditions.clear();
    let generation = previous.and_then(|p| p.observed_generation);
    next_status(previous, generation, &[cond], bound)
}

/// Computes the next status from the previous one. `bound` carries the binding fields
/// (asset name, servers, ...); its conditions and generation are ignored.
pub fn next_status(
    previous: Option<&AssetStatus>,
    generation: Option<i64>,
    conds: &[Cond],
    bound: AssetStatus,
) -> AssetStatus {
    let now = Time::now();
    let prev_conds = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    AssetStatus {
        observed_generation: generation,
        conditions: conditions::merge(prev_conds, conds, generation, &now),
        ..bound
    }
}

/// Writes the status by server-side apply to the status subresource, unless it equals the
/// current one. Returns whether it wrote.
pub async fn write<K>(
    ctx: &Context,
    obj: &K,
    kind: &'static str,
    current: Option<&AssetStatus>,
    next: &AssetStatus,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let wrote = apply_status(ctx, obj, kind, current, next).await?;
    if wrote {
        ctx.remember_status(&uid, Some(next.clone()));
    }
    Ok(wrote)
}

/// JSON that the apiserver's YAML reader takes as it is. A server-side apply body is read as
/// YAML, and YAML refuses some characters that JSON carries raw (DEL, the C1 controls but
/// NEL, U+FFFE and U+FFFF), with "control characters are not allowed". Specs may hold them
/// (a subject, a description) and statuses repeat them; written as `\uXXXX` escapes they
/// mean the same in both.
pub fn yaml_safe_json<T: Serialize>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    struct Escaping;
    impl serde_json::ser::Formatter for Escaping {
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            let mut rest = fragment;
            while let Some((i, c)) = rest.char_indices().find(|(_, c)| yaml_refuses(*c)) {
                w.write_all(&rest.as_bytes()[..i])?;
                write!(w, "\\u{:04x}", u32::from(c))?;
                rest = &rest[i + c.len_utf8()..];
            }
            w.write_all(rest.as_bytes())
        }
    }
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, Escaping,
    ))?;
    // The formatter writes UTF-8 JSON.
    RawValue::from_string(String::from_utf8_lossy(&out).into_owned())
}

/// The characters YAML's reader refuses raw that JSON writes raw.
fn yaml_refuses(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

/// Server-side applies `next` to the status subresource of any of the operator's kinds,
/// unless it equals `current`. Returns whether it wrote.
pub async fn apply_status<K, S>(
    ctx: &Context,
    obj: &K,
    kind: &'static str,
    current: Option<&S>,
    next: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(next) {
        return Ok(false);
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let body = yaml_safe_json(&serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    }))?;
    if !crate::fence::is_open() {
        return Err(Error::Fenced);
    }
    ctx.metrics.kube_write(kind, Write::Status);
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(true)
}

/// Replaces an object's finalizer list, guarded by resourceVersion so that a concurrent
/// change is not overwritten (a conflict retries). An object already gone is fine.
pub async fn patch_finalizers<K>(
    ctx: &Context,
    obj: &K,
    kind: &'static str,
    finalizers: Vec<String>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        &obj.meta().namespace.clone().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.meta().resource_version,
        }
    });
    if !crate::fence::is_open() {
        return Err(Error::Fenced);
    }
    ctx.metrics.kube_write(kind, Write::Finalizer);
    match api
        .patch(
            &obj.meta().name.clone().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        r => r.map(|_| ()).map_err(Error::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::State;

    const HEALTHY: [&str; 5] = ["Created", "Updated", "Noop", "SkipCreate", "SkipUpdate"];

    fn conditions_json(s: &AssetStatus) -> Vec<serde_json::Value> {
        serde_json::to_value(s).unwrap()["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The README's status contract, on the status built for every kind of state.
    #[test]
    fn every_state_keeps_the_status_contract() {
        let states = [
            (State::ready(reason::CREATED, "made"), "True"),
            (State::ready(reason::UPDATED, "changed"), "True"),
            (State::ready(reason::NOOP, "as is"), "True"),
            (
                State::ready(reason::SKIP_UPDATE, "differs, allowed"),
                "True",
            ),
            (
                State::Progressing {
                    reason: reason::WAITING_FOR_STREAM,
                    message: "waiting".into(),
                },
                "Unknown",
            ),
            (
                State::Retrying {
                    reason: reason::CONNECTION_FAILED,
                    message: "down".into(),
                },
                "False",
            ),
            (
                State::Stalled {
                    reason: reason::NOT_SUPPORTED,
                    message: "refused".into(),
                },
                "False",
            ),
        ];
        let fractional = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").unwrap();
        for (state, ready) in states {
            let s = next_status(None, Some(3), &state.conditions(), AssetStatus::default());
            assert_eq!(s.observed_generation, Some(3));
            let conds = conditions_json(&s);
            assert_eq!(conds[0]["type"], "Ready", "{state:?}");
            assert_eq!(conds[0]["status"], ready, "{state:?}");
            if ready == "True" {
                assert!(
                    HEALTHY.contains(&conds[0]["reason"].as_str().unwrap()),
                    "{state:?}"
                );
            }
            for c in &conds[1..] {
                assert_eq!(c["status"], "True", "{state:?}: {c}");
            }
            let abnormal: Vec<&str> = conds[1..]
                .iter()
                .map(|c| c["type"].as_str().unwrap())
                .collect();
            let want: &[&str] = match state {
                State::Ready { .. } => &[],
                State::Progressing { .. } | State::Retrying { .. } => &["Reconciling"],
                State::Stalled { .. } => &["Stalled"],
            };
            assert_eq!(abnormal, want, "{state:?}");
            for c in &conds {
                let t = c["lastTransitionTime"].as_str().unwrap();
                assert!(fractional.is_match(t), "{t}");
            }
        }
    }

    /// A status an earlier version wrote (three conditions, whole seconds) is rewritten in
    /// the current shape, keeping Ready's transition time when Ready did not flip.
    #[test]
    fn an_earlier_status_is_rewritten_once() {
        let old: AssetStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Reconciling", "status": "False", "reason": "Ready", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Stalled", "status": "False", "reason": "Ready", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        }))
        .unwrap();
        let state = State::ready(reason::NOOP, "as is");
        let next = next_status(
            Some(&old),
            Some(1),
            &state.conditions(),
            AssetStatus::default(),
        );
        let conds = conditions_json(&next);
        assert_eq!(conds.len(), 1);
        assert_eq!(
            conds[0]["lastTransitionTime"],
            "2026-01-01T00:00:00.000000Z"
        );
        assert_eq!(conds[0]["reason"], "Noop");
        // The next reconcile finds nothing to change.
        let again = next_status(
            Some(&next),
            Some(1),
            &state.conditions(),
            AssetStatus::default(),
        );
        assert_eq!(again, next);
    }

    #[test]
    fn a_paused_object_keeps_its_health() {
        let ready = next_status(
            None,
            Some(1),
            &State::ready(reason::CREATED, "made").conditions(),
            AssetStatus::default(),
        );
        let held = paused(Some(&ready), "paused");
        let c = &held.conditions[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Created"));
        assert_eq!(c.message, "paused");
        assert_eq!(
            c.last_transition_time,
            ready.conditions[0].last_transition_time
        );
        let stalled = next_status(
            None,
            Some(1),
            &State::Stalled {
                reason: reason::NOT_SUPPORTED,
                message: "no".into(),
            }
            .conditions(),
            AssetStatus::default(),
        );
        let held = paused(Some(&stalled), "paused");
        assert_eq!(held.conditions.len(), 1);
        assert_eq!(held.conditions[0].status, "False");
    }

    /// The spec fuzzer's finding: a subject with DEL and C1 controls made every status
    /// apply fail ("control characters are not allowed"), so the object never got a status.
    #[test]
    fn status_bodies_escape_what_yaml_refuses() {
        let v = serde_json::json!({"subjects": "a\u{7f}b\u{80}c\u{85}d\u{9f}\u{fffe}\u{ffff}é🕴\u{1b}\"\\"});
        let raw = yaml_safe_json(&v).unwrap();
        let text = raw.get();
        for c in ['\u{7f}', '\u{80}', '\u{9f}', '\u{fffe}', '\u{ffff}'] {
            assert!(!text.contains(c), "{c:?} left raw in {text}");
        }
        // NEL and everything printable stay as they are; the meaning is unchanged.
        assert!(text.contains("\u{85}d") && text.contains("é🕴"), "{text}");
        assert!(
            text.contains("\\u007f") && text.contains("\\uffff"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap(), v);
    }
}
