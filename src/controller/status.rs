//! Turning a reconcile outcome into a status, and writing it only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::common::AssetStatus;
use crate::api::conditions::{self, Cond, READY, RECONCILING, STALLED, reason};

use super::{Context, Error, MANAGER};

/// Where a reconcile ended.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// The asset matches the spec.
    Ready(String),
    /// Work remains and will continue by itself (retry, or waiting on something).
    Progressing {
        /// Reason.
        reason: &'static str,
        /// Message.
        message: String,
    },
    /// Retrying cannot help until something changes.
    Stalled {
        /// Reason.
        reason: &'static str,
        /// Message.
        message: String,
    },
}

impl State {
    /// The three kstatus conditions for this state.
    pub fn conditions(&self) -> Vec<Cond> {
        match self {
            State::Ready(message) => vec![
                Cond::yes(READY, reason::READY, message.clone()),
                Cond::no(RECONCILING, reason::READY, ""),
                Cond::no(STALLED, reason::READY, ""),
            ],
            State::Progressing { reason: r, message } => vec![
                Cond::no(READY, r, message.clone()),
                Cond::yes(RECONCILING, r, message.clone()),
                Cond::no(STALLED, r, ""),
            ],
            State::Stalled { reason: r, message } => vec![
                Cond::no(READY, r, message.clone()),
                Cond::no(RECONCILING, r, ""),
                Cond::yes(STALLED, r, message.clone()),
            ],
        }
    }

    /// True for the Ready state.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready(_))
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
    ctx.metrics.kube_write(kind, "status");
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
    ctx.metrics.kube_write(kind, "finalizer");
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
