//! Reading what a previous status says, building the next one, and writing it (and
//! finalizers) only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::common::AssetStatus;
use crate::api::conditions::{self, Cond, READY, STALLED, reason};
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
    }
}

/// Computes the next status from the previous one. `bound` carries the binding fields
/// (asset name, servers, ...); its conditions and generation are ignored.
pub fn next_status(
    previous: Option<&AssetStatus>,
    generation: Option<i64>,
    conds: &[Cond],
    bound: AssetStatus,
) -> AssetStatus {
    let now = Time(jiff::Timestamp::now());
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
    ctx.remember_status(&uid, Some(next.clone()));
    Ok(wrote)
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
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    });
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
