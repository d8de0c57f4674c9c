//! Applying and deleting assets. One generic path ([`apply`], [`cleanup`]) over the two
//! JetStream asset types ([`StreamOps`] for streams and the streams behind buckets,
//! [`ConsumerOps`] for consumers): observe, ownership and adoption, diff, read-only and
//! preventUpdate, create or update, events.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use tracing::{debug, info, warn};

use crate::api::common::AssetStatus;
use crate::api::conditions::{self, reason};
use crate::api::consumer::ConsumerSpec;
use crate::jetstream::api::JsApi;
use crate::jetstream::consumer_config;
use crate::jetstream::error::{Disposition, JsError, code};
use crate::jetstream::owner::{CLUSTER_KEY, OWNER_KEY, Owner, Ownership};
use crate::jetstream::stream_config;
use crate::jetstream::wire::{ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo};

use super::account::ResolveError;
use super::engine::{Managed, error_state, is_paused, obj_key, resolve};
use super::registry::{AssetConfig, AssetRef, ObjKey};
use super::status::State;
use super::{AdoptionPolicy, Context};

/// The server-side operations of one asset type.
pub trait AssetOps {
    /// Identity of the asset (stream name; stream and consumer name).
    type Id: Clone + std::fmt::Display + Send + Sync;
    /// Configuration.
    type Config: Clone + Send + Sync;
    /// Info as the server returns it.
    type Info: Send + Sync;
    /// What the asset is called in messages.
    const NOUN: &'static str;

    /// The configuration inside an info.
    fn config(info: &Self::Info) -> &Self::Config;
    /// The metadata of a configuration.
    fn metadata_mut(c: &mut Self::Config) -> &mut BTreeMap<String, String>;
    /// Fields that differ (JSON names).
    fn diff(desired: &Self::Config, actual: &Self::Config) -> Vec<String>;
    /// Normalised copy for the registry.
    fn seen(c: &Self::Config) -> AssetConfig;
    /// Cluster leader and replicas.
    fn facts(info: &Self::Info) -> Facts;
    /// Reads the asset.
    fn get(
        js: &JsApi,
        id: &Self::Id,
    ) -> impl Future<Output = Result<Option<Self::Info>, JsError>> + Send;
    /// Creates it.
    fn create(
        js: &JsApi,
        id: &Self::Id,
        c: &Self::Config,
    ) -> impl Future<Output = Result<Self::Info, JsError>> + Send;
    /// Updates it in place.
    fn update(
        js: &JsApi,
        id: &Self::Id,
        c: &Self::Config,
    ) -> impl Future<Output = Result<Self::Info, JsError>> + Send;
    /// Deletes it; `false` if it was not there.
    fn delete(js: &JsApi, id: &Self::Id) -> impl Future<Output = Result<bool, JsError>> + Send;
}

/// Streams (and the backing streams of KeyValue and ObjectStore).
pub struct StreamOps;

impl AssetOps for StreamOps {
    type Id = String;
    type Config = StreamConfig;
    type Info = StreamInfo;
    const NOUN: &'static str = "stream";

    fn config(info: &StreamInfo) -> &StreamConfig {
        &info.config
    }
    fn metadata_mut(c: &mut StreamConfig) -> &mut BTreeMap<String, String> {
        &mut c.metadata
    }
    fn diff(d: &StreamConfig, a: &StreamConfig) -> Vec<String> {
        stream_config::diff(d, a)
    }
    fn seen(c: &StreamConfig) -> AssetConfig {
        AssetConfig::Stream(Box::new(stream_config::normalize(c.clone())))
    }
    fn facts(info: &StreamInfo) -> Facts {
        let (leader, replicas) = info.placement_facts();
        Facts {
            leader,
            replicas: Some(replicas),
            pause: None,
        }
    }
    async fn get(js: &JsApi, id: &String) -> Result<Option<StreamInfo>, JsError> {
        js.stream_info(id).await
    }
    async fn create(js: &JsApi, _: &String, c: &StreamConfig) -> Result<StreamInfo, JsError> {
        js.create_stream(c).await
    }
    async fn update(js: &JsApi, _: &String, c: &StreamConfig) -> Result<StreamInfo, JsError> {
        js.update_stream(c).await
    }
    async fn delete(js: &JsApi, id: &String) -> Result<bool, JsError> {
        js.delete_stream(id).await
    }
}

/// A consumer's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerId {
    /// Stream name.
    pub stream: String,
    /// Consumer name.
    pub name: String,
}

impl std::fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on stream {}", self.name, self.stream)
    }
}

/// Durable consumers.
pub struct ConsumerOps;

impl AssetOps for ConsumerOps {
    type Id = ConsumerId;
    type Config = ConsumerConfig;
    type Info = ConsumerInfo;
    const NOUN: &'static str = "consumer";

    fn config(info: &ConsumerInfo) -> &ConsumerConfig {
        &info.config
    }
    fn metadata_mut(c: &mut ConsumerConfig) -> &mut BTreeMap<String, String> {
        &mut c.metadata
    }
    fn diff(d: &ConsumerConfig, a: &ConsumerConfig) -> Vec<String> {
        consumer_config::diff(d, a)
    }
    fn seen(c: &ConsumerConfig) -> AssetConfig {
        AssetConfig::Consumer(Box::new(consumer_config::normalize(c.clone())))
    }
    fn facts(info: &ConsumerInfo) -> Facts {
        let leader = info
            .cluster
            .as_ref()
            .filter(|c| c.name.is_some())
            .and_then(|c| c.leader.clone());
        Facts {
            leader,
            replicas: None,
            pause: Some(consumer_config::actual_pause(info.paused, &info.config)),
        }
    }
    async fn get(js: &JsApi, id: &ConsumerId) -> Result<Option<ConsumerInfo>, JsError> {
        js.consumer_info(&id.stream, &id.name).await
    }
    async fn create(
        js: &JsApi,
        id: &ConsumerId,
        c: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        js.create_consumer(&id.stream, c).await
    }
    async fn update(
        js: &JsApi,
        id: &ConsumerId,
        c: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        js.update_consumer(&id.stream, c).await
    }
    async fn delete(js: &JsApi, id: &ConsumerId) -> Result<bool, JsError> {
        js.delete_consumer(&id.stream, &id.name).await
    }
}

/// Slow-moving facts read from the asset's info.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The cluster leader (clustered servers only).
    pub leader: Option<String>,
    /// The replica count.
    pub replicas: Option<i64>,
    /// A consumer's pause: `Some(None)` running, `Some(Some(t))` paused until `t`.
    pub pause: Option<Option<String>>,
}

/// The result of applying an asset.
pub struct Applied {
    /// Where the reconcile ended.
    pub state: State,
    /// The asset was adopted now.
    pub adopted: bool,
    /// Facts from the asset's latest info, when known.
    pub facts: Facts,
    /// The asset as the server holds it now, normalised.
    pub seen: Option<AssetConfig>,
    /// What the asset should be (for the drift scan).
    pub expected: Option<AssetConfig>,
    /// The NATS error that ended the attempt, if any.
    pub error: Option<JsError>,
}

impl Applied {
    fn new(state: State) -> Self {
        Self {
            state,
            adopted: false,
            facts: Facts::default(),
            seen: None,
            expected: None,
            error: None,
        }
    }

    fn failed(e: JsError, noun: &str) -> Self {
        Self {
            error: Some(e.clone()),
            ..Self::new(error_state(&e, noun))
        }
    }
}

fn was_ready_for_this_generation<K: Managed>(obj: &K, previous: Option<&AssetStatus>) -> bool {
    previous.is_some_and(|p| {
        conditions::is_ready(&p.conditions) && p.observed_generation == obj.meta().generation
    })
}

/// Desired config with the actual owner marker: what differs besides ownership.
fn diff_ignoring_marker<A: AssetOps>(desired: &A::Config, actual: &A::Config) -> Vec<String> {
    let mut d = desired.clone();
    let mut a = actual.clone();
    let theirs = A::metadata_mut(&mut a).clone();
    let md = A::metadata_mut(&mut d);
    for k in [OWNER_KEY, CLUSTER_KEY] {
        match theirs.get(k) {
            Some(v) => {
                md.insert(k.into(), v.clone());
            }
            None => {
                md.remove(k);
            }
        }
    }
    A::diff(&d, actual)
}

/// Ready, unless the server kept something other than what was asked for.
fn residual_state(noun: &str, id: &str, residual: &[String]) -> State {
    if residual.is_empty() {
        State::Ready(format!("{noun} {id} matches the spec"))
    } else {
        State::Stalled {
            reason: reason::NOT_SUPPORTED,
            message: format!(
                "JetStream accepted {noun} {id} but stored different values for {}; set them explicitly to what the server allows",
                residual.join(", ")
            ),
        }
    }
}

/// Brings one asset to `desired`: create when missing, adopt or refuse when not ours,
/// update when different (unless read-only or preventUpdate), and say what happened.
pub async fn apply<K: Managed, A: AssetOps>(
    obj: &K,
    ctx: &Context,
    js: &JsApi,
    id: &A::Id,
    desired: &A::Config,
    owner: &Owner,
    previous: Option<&AssetStatus>,
) -> Applied {
    let noun = K::NOUN;
    let read_only = ctx.settings.read_only;
    let prevent_update = obj.common().prevent_update;
    let actual = match A::get(js, id).await {
        Ok(a) => a,
        Err(e) => return Applied::failed(e, noun),
    };
    let Some(info) = actual else {
        if read_only {
            return Applied::new(State::Stalled {
                reason: reason::READ_ONLY,
                message: format!(
                    "{noun} {id} does not exist in JetStream; the operator is read-only, so it is not created"
                ),
            });
        }
        return match A::create(js, id, desired).await {
            Ok(created) => {
                let residual = A::diff(desired, A::config(&created));
                if was_ready_for_this_generation(obj, previous) {
                    ctx.event(
                        obj,
                        K::KIND,
                        true,
                        reason::DRIFT_REPAIRED,
                        format!("{noun} {id} was missing from JetStream (deleted behind the operator's back) and has been recreated; {}", K::LOST_ON_RECREATE),
                    )
                    .await;
                    info!(kind = K::KIND, %id, "recreated");
                } else {
                    ctx.event(
                        obj,
                        K::KIND,
                        false,
                        reason::CREATED,
                        format!("created {noun} {id}"),
                    )
                    .await;
                    info!(kind = K::KIND, %id, "created");
                }
                Applied {
                    state: residual_state(noun, &id.to_string(), &residual),
                    adopted: false,
                    facts: A::facts(&created),
                    seen: Some(A::seen(A::config(&created))),
                    expected: Some(A::seen(desired)),
                    error: None,
                }
            }
            Err(e) if e.is(code::STREAM_NAME_EXISTS) || e.is(code::CONSUMER_ALREADY_EXISTS) => {
                // Created concurrently by someone else: look again.
                Applied::new(State::Progressing {
                    reason: reason::PROGRESSING,
                    message: format!("{noun} {id} appeared while being created; checking it again"),
                })
            }
            Err(e) => Applied::failed(e, noun),
        };
    };

    let actual_cfg = A::config(&info).clone();
    let mut applied = Applied {
        state: State::Ready(format!("{noun} {id} matches the spec")),
        adopted: false,
        facts: A::facts(&info),
        seen: Some(A::seen(&actual_cfg)),
        expected: Some(A::seen(desired)),
        error: None,
    };
    let mut adopting = false;
    let marker = A::metadata_mut(&mut actual_cfg.clone()).clone();
    match owner.classify(&marker) {
        Ownership::Ours => {}
        Ownership::Other(who) => {
            applied.state = State::Stalled {
                reason: reason::RESOURCE_CONFLICT,
                message: format!("{noun} {id} is owned by {who}; this object leaves it untouched"),
            };
            return applied;
        }
        Ownership::Unowned => match ctx.settings.adoption {
            AdoptionPolicy::Never => {
                applied.state = State::Stalled {
                    reason: reason::RESOURCE_CONFLICT,
                    message: format!(
                        "{noun} {id} already exists and no object owns it; the adoption policy is 'never', so it is left untouched"
                    ),
                };
                return applied;
            }
            AdoptionPolicy::Adopt => adopting = true,
        },
    }

    let fields = A::diff(desired, &actual_cfg);
    if fields.is_empty() {
        return applied;
    }
    let meaningful = diff_ignoring_marker::<A>(desired, &actual_cfg);
    if read_only || prevent_update {
        let (r, why) = if read_only {
            (reason::READ_ONLY, "the operator is read-only")
        } else {
            (reason::UPDATE_PREVENTED, "spec.preventUpdate is set")
        };
        if meaningful.is_empty() {
            // Only the ownership marker is missing; nothing the spec asks for differs.
            applied.state = State::Ready(format!(
                "{noun} {id} matches the spec (not stamped with an owner: {why})"
            ));
            // Not stamped, so not adopted: deleting the object will leave it alone.
            return applied;
        }
        applied.state = State::Stalled {
            reason: r,
            message: format!(
                "{noun} {id} differs from the spec in {}; {why}, so it is not updated",
                meaningful.join(", ")
            ),
        };
        return applied;
    }

    match A::update(js, id, desired).await {
        Ok(updated) => {
            let residual = A::diff(desired, A::config(&updated));
            let (warning, why, note) = if adopting {
                let changed = if meaningful.is_empty() {
                    "nothing else changed".to_string()
                } else {
                    format!("changed to match the spec: {}", meaningful.join(", "))
                };
                (
                    false,
                    reason::ADOPTED,
                    format!(
                        "adopted existing {noun} {id} (stamped with owner {}); {changed}",
                        owner.id
                    ),
                )
            } else if was_ready_for_this_generation(obj, previous) {
                (
                    false,
                    reason::DRIFT_REPAIRED,
                    format!(
                        "{noun} {id} had been changed behind the operator's back ({}); restored to the spec",
                        fields.join(", ")
                    ),
                )
            } else {
                (
                    false,
                    reason::UPDATED,
                    format!("updated {noun} {id}: {}", fields.join(", ")),
                )
            };
            ctx.event(obj, K::KIND, warning, why, note).await;
            info!(kind = K::KIND, %id, ?fields, adopting, "updated");
            Applied {
                state: residual_state(noun, &id.to_string(), &residual),
                adopted: adopting,
                facts: A::facts(&updated),
                seen: Some(A::seen(A::config(&updated))),
                expected: Some(A::seen(desired)),
                error: None,
            }
        }
        Err(e) => {
            applied.state = error_state(&e, noun);
            applied.error = Some(e);
            applied
        }
    }
}

/// Applies a stream.
pub async fn apply_stream<K: Managed>(
    obj: &K,
    ctx: &Context,
    js: &JsApi,
    cfg: &StreamConfig,
    owner: &Owner,
    previous: Option<&AssetStatus>,
) -> Applied {
    apply::<K, StreamOps>(obj, ctx, js, &cfg.name, cfg, owner, previous).await
}

/// Applies a consumer: waits for its stream, builds the config from the spec and the
/// stream's limits, applies it, then drives the pause through the pause API.
pub async fn apply_consumer<K: Managed>(
    obj: &K,
    ctx: &Context,
    js: &JsApi,
    spec: &ConsumerSpec,
    owner: &Owner,
    previous: Option<&AssetStatus>,
) -> Applied {
    let id = ConsumerId {
        stream: spec.stream_name.clone(),
        name: spec.durable_name.clone(),
    };
    let waiting = || {
        let existed = previous.is_some_and(|p| conditions::is_ready(&p.conditions))
            || previous
                .and_then(|p| conditions::find(&p.conditions, conditions::READY))
                .is_some_and(|c| {
                    c.reason == reason::WAITING_FOR_STREAM && c.message.contains("deleted")
                });
        let message = if existed {
            format!(
                "stream {} was deleted; consumer {} comes back when the stream does",
                id.stream, id.name
            )
        } else {
            format!("waiting for stream {} to exist", id.stream)
        };
        Applied::new(State::Progressing {
            reason: reason::WAITING_FOR_STREAM,
            message,
        })
    };
    let stream = match js.stream_info(&id.stream).await {
        Ok(Some(s)) => s,
        Ok(None) => return waiting(),
        Err(e) => return Applied::failed(e, ConsumerOps::NOUN),
    };
    let cfg = match consumer_config::desired(spec, &stream.config, owner) {
        Ok(c) => c,
        Err(e) => {
            return Applied::new(State::Stalled {
                reason: reason::INVALID_SPEC,
                message: e.0,
            });
        }
    };
    let mut applied = apply::<K, ConsumerOps>(obj, ctx, js, &id, &cfg, owner, previous).await;
    if applied
        .error
        .as_ref()
        .is_some_and(|e| e.is(code::STREAM_NOT_FOUND))
    {
        return waiting();
    }
    if !applied.state.is_ready() || ctx.settings.read_only || obj.common().prevent_update {
        return applied;
    }
    // The pause is not part of the config update (clustered servers ignore it there); the
    // info the apply ended with says whether it is paused.
    let want = consumer_config::desired_pause(spec);
    let Some(have) = applied.facts.pause.clone() else {
        return applied;
    };
    if want != have {
        match js
            .pause_consumer(&id.stream, &id.name, want.as_deref())
            .await
        {
            Ok(_) => {
                let note = match &want {
                    Some(t) => format!("paused consumer {id} until {t}"),
                    None => format!("resumed consumer {id}"),
                };
                ctx.event(obj, K::KIND, false, reason::UPDATED, note).await;
            }
            Err(e) => applied.state = error_state(&e, ConsumerOps::NOUN),
        }
    }
    applied
}

/// Outcome of a deletion attempt.
pub enum Cleanup {
    /// The finalizer can go.
    Done,
    /// Try again after this long.
    Retry(Duration),
}

/// Deletes the asset of an object being deleted, if this object owns it and may.
pub async fn cleanup<K: Managed>(obj: &K, ctx: &Context) -> Cleanup {
    match obj.asset() {
        AssetRef::Stream(name) => cleanup_asset::<K, StreamOps>(obj, ctx, &name).await,
        AssetRef::Consumer { stream, name } => {
            cleanup_asset::<K, ConsumerOps>(obj, ctx, &ConsumerId { stream, name }).await
        }
    }
}

async fn cleanup_asset<K: Managed, A: AssetOps>(obj: &K, ctx: &Context, id: &A::Id) -> Cleanup {
    let key = obj_key(obj);
    let noun = K::NOUN;
    let keep = |why: String| async move {
        ctx.event(obj, K::KIND, false, reason::ORPHANED, why).await;
        Cleanup::Done
    };
    if is_paused(obj) {
        return keep(format!(
            "reconciling is paused: {noun} {id} is left in JetStream untouched"
        ))
        .await;
    }
    if ctx.settings.read_only {
        return keep(format!(
            "the operator is read-only: {noun} {id} is left in JetStream"
        ))
        .await;
    }
    let resolved = match resolve(ctx, &key.namespace, obj.common()).await {
        Ok(r) => r,
        Err(ResolveError::Transient(why)) => {
            return deletion_failed::<K, A>(
                obj,
                ctx,
                &key,
                id,
                &JsError::Connection {
                    servers: "-".into(),
                    reason: why,
                },
            )
            .await;
        }
        Err(ResolveError::Unresolved(why) | ResolveError::Forbidden(why)) => {
            ctx.event(
                obj,
                K::KIND,
                true,
                reason::ORPHANED,
                format!("cannot resolve the connection ({why}); releasing the object without deleting {noun} {id}"),
            )
            .await;
            return Cleanup::Done;
        }
    };
    let js = match ctx.pool.get(&resolved.settings).await {
        Ok(c) => JsApi::new(
            c,
            resolved.prefix.clone(),
            ctx.settings.request_timeout,
            ctx.metrics.clone(),
        ),
        Err(e) => return deletion_failed::<K, A>(obj, ctx, &key, id, &e).await,
    };
    let owner = Owner::new(
        &key.namespace,
        &key.name,
        ctx.settings.cluster_name.as_deref(),
    );
    let info = match A::get(&js, id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Cleanup::Done,
        Err(e) if e.is(code::STREAM_NOT_FOUND) => return Cleanup::Done,
        Err(e) => return deletion_failed::<K, A>(obj, ctx, &key, id, &e).await,
    };
    let mut cfg = A::config(&info).clone();
    match owner.classify(A::metadata_mut(&mut cfg)) {
        Ownership::Ours => {}
        Ownership::Other(who) => {
            return keep(format!("{noun} {id} is owned by {who}; not deleting it")).await;
        }
        Ownership::Unowned => {
            return keep(format!(
                "{noun} {id} was never taken over by this object; not deleting it"
            ))
            .await;
        }
    }
    if obj.common().prevent_delete {
        // Keep it, but release ownership so another object can adopt it.
        let md = A::metadata_mut(&mut cfg);
        md.remove(OWNER_KEY);
        md.remove(CLUSTER_KEY);
        md.retain(|k, _| !k.starts_with("_nats."));
        if let Err(e) = A::update(&js, id, &cfg).await {
            debug!(error = %e, "could not remove the ownership marker from a kept asset");
        }
        return keep(format!(
            "spec.preventDelete is set: {noun} {id} is kept in JetStream (ownership marker removed)"
        ))
        .await;
    }
    match A::delete(&js, id).await {
        Ok(_) => {
            ctx.event(
                obj,
                K::KIND,
                false,
                reason::DELETED,
                format!("deleted {noun} {id}"),
            )
            .await;
            Cleanup::Done
        }
        Err(e) => deletion_failed::<K, A>(obj, ctx, &key, id, &e).await,
    }
}

async fn deletion_failed<K: Managed, A: AssetOps>(
    obj: &K,
    ctx: &Context,
    key: &ObjKey,
    id: &A::Id,
    e: &JsError,
) -> Cleanup {
    let noun = K::NOUN;
    let age = obj
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    if e.disposition() == Disposition::Transient && age < ctx.settings.deletion_grace {
        let delay = ctx.backoff(&key.to_string());
        warn!(object = %key, error = %e, retry_in = ?delay, "cannot delete asset yet");
        return Cleanup::Retry(delay);
    }
    ctx.event(
        obj,
        K::KIND,
        true,
        reason::ORPHANED,
        format!(
            "could not delete {noun} {id} ({e}); releasing {} so its namespace is not blocked; the {noun} may remain in JetStream",
            obj.name_any()
        ),
    )
    .await;
    Cleanup::Done
}
