//! The reconcile engine shared by every asset kind: deletion and finalizers, pause,
//! connection resolution, desired config, observe, diff, apply, status, events, backoff.
//! A kind only says how its spec maps to a desired asset ([`Managed`]).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::conditions::{self, Cond, READY, RECONCILING, STALLED, reason};
use crate::api::{PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION};
use crate::jetstream::api::JsApi;
use crate::jetstream::error::{Disposition, JsError, code};
use crate::jetstream::owner::{CLUSTER_KEY, OWNER_KEY, Owner, Ownership};
use crate::jetstream::stream_config::{self, InvalidSpec};
use crate::jetstream::wire::{StreamConfig, StreamInfo};
use crate::metrics::{ErrorLabels, KindLabels, ReconcileLabels};

use super::connect::{Layer, Resolved, Unresolved, merge};
use super::registry::{AssetRef, Expected, ObjKey, Registration};
use super::status::{self, State};
use super::{AdoptionPolicy, Context, Error};

/// The asset an object wants, built from its spec (pure).
#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    /// A stream (also the backing stream of a bucket).
    Stream(Box<StreamConfig>),
}

/// A kind the engine can reconcile.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Kind name, for metrics, logs and the registry.
    const KIND: &'static str;
    /// Finalizer (NACK's names, so migrated objects keep working).
    const FINALIZER: &'static str;
    /// What the asset is called in messages ("stream", "consumer", ...).
    const NOUN: &'static str;

    /// Connection, ownership and deletion fields.
    fn common(&self) -> &CommonSpec;
    /// The current status.
    fn asset_status(&self) -> Option<&AssetStatus>;
    /// The asset this object names.
    fn asset(&self) -> AssetRef;
    /// The desired asset.
    fn desired(&self, owner: &Owner) -> Result<Desired, InvalidSpec>;
}

/// Per-kind context handed to the kube controller.
pub struct KindCtx<K: Managed> {
    /// Shared context.
    pub ctx: Arc<Context>,
    /// Asks this kind's controller to reconcile an object.
    pub trigger: UnboundedSender<ObjectRef<K>>,
}

/// The predicate that decides which watch events reconcile an object: spec changes
/// (generation), deletion, and the pause and reconcile-now annotations. Status writes
/// and other metadata changes are ignored, so the operator's own writes never loop.
pub fn change_hash<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let m = obj.meta();
    let mut h = DefaultHasher::new();
    m.generation.hash(&mut h);
    m.deletion_timestamp.is_some().hash(&mut h);
    let ann = m.annotations.as_ref();
    ann.and_then(|a| a.get(PAUSED_ANNOTATION)).hash(&mut h);
    ann.and_then(|a| a.get(RECONCILE_REQUESTED_ANNOTATION))
        .hash(&mut h);
    Some(h.finish())
}

fn obj_key<K: Managed>(obj: &K) -> ObjKey {
    ObjKey {
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Resolves the connection of an object.
pub fn resolve(ctx: &Context, common: &CommonSpec) -> Result<Resolved, Unresolved> {
    if let Some(account) = common.account.as_deref().filter(|a| !a.is_empty()) {
        // Account objects arrive with the Account kind; until then say so plainly.
        return Err(Unresolved(format!(
            "spec.account {account:?} refers to an Account object, which this version of the operator does not read yet"
        )));
    }
    let global = Layer::from_default(&ctx.settings.default_connection)?;
    let object = Layer::from_object(common)?;
    merge(&[global, object], None)
}

/// Entry point for the kube controller.
pub async fn reconcile<K: Managed>(obj: Arc<K>, kc: Arc<KindCtx<K>>) -> Result<Action, Error> {
    let started = Instant::now();
    let ctx = &kc.ctx;
    let result = reconcile_inner(&obj, &kc).await;
    let outcome = match &result {
        Ok((_, o)) => *o,
        Err(_) => "error",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND,
            outcome,
        })
        .inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: K::KIND })
        .observe(started.elapsed().as_secs_f64());
    let (ready, all) = ctx.registry.counts(K::KIND);
    ctx.metrics
        .ready
        .get_or_create(&KindLabels { kind: K::KIND })
        .set(ready);
    ctx.metrics
        .objects
        .get_or_create(&KindLabels { kind: K::KIND })
        .set(all);
    result.map(|(a, _)| a)
}

/// Error policy: Kubernetes API failures retry with per-object backoff.
pub fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, kc: Arc<KindCtx<K>>) -> Action {
    let key = obj_key(obj.as_ref());
    kc.ctx
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            kind: K::KIND,
            category: err.category(),
        })
        .inc();
    let delay = if err.category() == "kube_conflict" {
        Duration::from_millis(200)
    } else {
        kc.ctx.backoff(&key.to_string())
    };
    warn!(object = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner<K: Managed>(
    obj: &Arc<K>,
    kc: &Arc<KindCtx<K>>,
) -> Result<(Action, &'static str), Error> {
    let ctx = &kc.ctx;
    let key = obj_key(obj.as_ref());
    let has_finalizer = obj.finalizers().iter().any(|f| f == K::FINALIZER);

    if obj.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            ctx.registry.remove(&key);
            return Ok((Action::await_change(), "deleted"));
        }
        return match cleanup(obj.as_ref(), ctx).await {
            Cleanup::Done => {
                remove_finalizer(obj.as_ref(), ctx).await?;
                ctx.registry.remove(&key);
                ctx.reset_backoff(&key.to_string());
                Ok((Action::await_change(), "deleted"))
            }
            Cleanup::Retry(delay) => Ok((Action::requeue(delay), "retry")),
        };
    }

    if is_paused(obj.as_ref()) {
        ctx.registry.remove(&key);
        write_paused(obj.as_ref(), ctx).await?;
        return Ok((Action::await_change(), "paused"));
    }

    if !has_finalizer {
        add_finalizer(obj.as_ref(), ctx).await?;
    }

    let previous = obj.asset_status().cloned();
    let owner = Owner::new(
        &key.namespace,
        &key.name,
        ctx.settings.cluster_name.as_deref(),
    );
    let asset = obj.asset();
    let mut bound = AssetStatus {
        asset_name: Some(match &asset {
            AssetRef::Stream(s) => s.clone(),
            AssetRef::Consumer { name, .. } => name.clone(),
        }),
        stream_name: match &asset {
            AssetRef::Consumer { stream, .. } => Some(stream.clone()),
            AssetRef::Stream(_) => None,
        },
        adopted: previous.as_ref().is_some_and(|p| p.adopted),
        ..Default::default()
    };

    // Connection.
    let resolved = match resolve(ctx, obj.common()) {
        Ok(r) => r,
        Err(Unresolved(message)) => {
            ctx.registry.remove(&key);
            let state = State::Stalled {
                reason: reason::CONNECTION_UNRESOLVED,
                message,
            };
            return finish(
                obj.as_ref(),
                ctx,
                &key,
                previous.as_ref(),
                state,
                bound,
                None,
            )
            .await;
        }
    };
    bound.servers = Some(resolved.settings.display_servers());
    bound.account = resolved.account.clone();
    bound.api_prefix =
        (resolved.prefix != crate::jetstream::api::DEFAULT_PREFIX).then(|| resolved.prefix.clone());
    let conn = match ctx.pool.get(&resolved.settings).await {
        Ok(c) => c,
        Err(e) => {
            ctx.registry.remove(&key);
            let state = error_state(&e, K::NOUN);
            return finish(
                obj.as_ref(),
                ctx,
                &key,
                previous.as_ref(),
                state,
                bound,
                None,
            )
            .await;
        }
    };
    let js = JsApi::new(
        conn.clone(),
        resolved.prefix.clone(),
        ctx.settings.request_timeout,
        ctx.metrics.clone(),
    );
    let trigger = {
        let tx = kc.trigger.clone();
        let r = ObjectRef::from_obj(obj.as_ref());
        Arc::new(move || {
            let _ = tx.unbounded_send(r.clone());
        })
    };
    ctx.registry.upsert(
        key.clone(),
        Registration {
            conn: conn.key,
            js: js.clone(),
            asset: asset.clone(),
            expected: Expected::Unknown,
            stalled: false,
            ready: false,
            trigger,
        },
    );

    // Desired config.
    let desired = match obj.desired(&owner) {
        Ok(d) => d,
        Err(InvalidSpec(message)) => {
            let state = State::Stalled {
                reason: reason::INVALID_SPEC,
                message,
            };
            return finish(
                obj.as_ref(),
                ctx,
                &key,
                previous.as_ref(),
                state,
                bound,
                None,
            )
            .await;
        }
    };

    let (state, expected) = match desired {
        Desired::Stream(cfg) => {
            let applied =
                apply_stream(obj.as_ref(), ctx, &js, &cfg, &owner, previous.as_ref()).await;
            if let Some(info) = &applied.info {
                let (leader, replicas) = info.placement_facts();
                bound.cluster_leader = leader;
                bound.replicas = Some(replicas);
            }
            bound.adopted |= applied.adopted;
            (applied.state, Expected::Stream(cfg))
        }
    };
    finish(
        obj.as_ref(),
        ctx,
        &key,
        previous.as_ref(),
        state,
        bound,
        Some(expected),
    )
    .await
}

/// Writes the status, records the outcome in the registry and picks the next action.
async fn finish<K: Managed>(
    obj: &K,
    ctx: &Context,
    key: &ObjKey,
    previous: Option<&AssetStatus>,
    state: State,
    bound: AssetStatus,
    expected: Option<Expected>,
) -> Result<(Action, &'static str), Error> {
    // Announce a new stall once, when it starts.
    if let State::Stalled { reason: r, message } = &state {
        let was = previous
            .and_then(|p| conditions::find(&p.conditions, STALLED))
            .is_some_and(|c| c.status == "True" && c.reason == *r)
            && previous.and_then(|p| p.observed_generation) == obj.meta().generation;
        if !was {
            ctx.event(obj, K::KIND, true, r, message.clone()).await;
        }
    }
    let next = status::next_status(previous, obj.meta().generation, &state.conditions(), bound);
    status::write(ctx, obj, K::KIND, previous, &next).await?;

    let ready = state.is_ready();
    let stalled = matches!(state, State::Stalled { .. });
    ctx.registry.update(key, |r| {
        r.ready = ready;
        r.stalled = stalled;
        if let Some(e) = expected {
            r.expected = if ready { e } else { Expected::Unknown };
        }
    });
    Ok(match state {
        State::Ready(_) => {
            ctx.reset_backoff(&key.to_string());
            (Action::await_change(), "ready")
        }
        State::Stalled { .. } => {
            ctx.reset_backoff(&key.to_string());
            (Action::await_change(), "stalled")
        }
        State::Progressing { reason: r, .. } if r == reason::WAITING_FOR_STREAM => {
            (Action::requeue(ctx.jittered_resync()), "waiting")
        }
        State::Progressing { .. } => (Action::requeue(ctx.backoff(&key.to_string())), "retry"),
    })
}

/// The state for a NATS error.
pub fn error_state(e: &JsError, noun: &str) -> State {
    match e.disposition() {
        Disposition::Transient => State::Progressing {
            reason: e.reason(),
            message: e.to_string(),
        },
        Disposition::Auth => State::Stalled {
            reason: e.reason(),
            message: e.to_string(),
        },
        Disposition::Permanent => State::Stalled {
            reason: e.reason(),
            message: format!("JetStream refused the {noun} configuration: {e}"),
        },
    }
}

/// Result of applying a stream.
struct Applied {
    state: State,
    info: Option<StreamInfo>,
    adopted: bool,
}

/// Desired config with the actual owner marker, to see whether anything but ownership
/// differs.
fn diff_ignoring_marker(desired: &StreamConfig, actual: &StreamConfig) -> Vec<String> {
    let mut d = desired.clone();
    for k in [OWNER_KEY, CLUSTER_KEY] {
        match actual.metadata.get(k) {
            Some(v) => {
                d.metadata.insert(k.into(), v.clone());
            }
            None => {
                d.metadata.remove(k);
            }
        }
    }
    stream_config::diff(&d, actual)
}

fn was_ready_for_this_generation<K: Managed>(obj: &K, previous: Option<&AssetStatus>) -> bool {
    previous.is_some_and(|p| {
        conditions::is_ready(&p.conditions) && p.observed_generation == obj.meta().generation
    })
}

async fn apply_stream<K: Managed>(
    obj: &K,
    ctx: &Context,
    js: &JsApi,
    cfg: &StreamConfig,
    owner: &Owner,
    previous: Option<&AssetStatus>,
) -> Applied {
    let name = &cfg.name;
    let noun = K::NOUN;
    let read_only = ctx.settings.read_only;
    let prevent_update = obj.common().prevent_update;
    let actual = match js.stream_info(name).await {
        Ok(a) => a,
        Err(e) => {
            return Applied {
                state: error_state(&e, noun),
                info: None,
                adopted: false,
            };
        }
    };
    let Some(info) = actual else {
        if read_only {
            return Applied {
                state: State::Stalled {
                    reason: reason::READ_ONLY,
                    message: format!(
                        "{noun} {name} does not exist in JetStream; the operator is read-only, so it is not created"
                    ),
                },
                info: None,
                adopted: false,
            };
        }
        return match js.create_stream(cfg).await {
            Ok(created) => {
                let residual = stream_config::diff(cfg, &created.config);
                let recreated = was_ready_for_this_generation(obj, previous);
                if recreated {
                    ctx.event(
                        obj,
                        K::KIND,
                        true,
                        reason::DRIFT_REPAIRED,
                        format!("{noun} {name} was missing from JetStream (deleted behind the operator's back) and has been recreated; the messages it held are gone"),
                    )
                    .await;
                } else {
                    ctx.event(
                        obj,
                        K::KIND,
                        false,
                        reason::CREATED,
                        format!("created {noun} {name}"),
                    )
                    .await;
                }
                info!(kind = K::KIND, name, recreated, "created");
                Applied {
                    state: residual_state(noun, name, &residual),
                    info: Some(created),
                    adopted: false,
                }
            }
            Err(e) if e.is(code::STREAM_NAME_EXISTS) => Applied {
                // Created concurrently by someone else: look again.
                state: State::Progressing {
                    reason: reason::PROGRESSING,
                    message: format!(
                        "{noun} {name} appeared while being created; checking it again"
                    ),
                },
                info: None,
                adopted: false,
            },
            Err(e) => Applied {
                state: error_state(&e, noun),
                info: None,
                adopted: false,
            },
        };
    };

    let mut adopting = false;
    match owner.classify(&info.config.metadata) {
        Ownership::Ours => {}
        Ownership::Other(who) => {
            return Applied {
                state: State::Stalled {
                    reason: reason::RESOURCE_CONFLICT,
                    message: format!(
                        "{noun} {name} is owned by {who}; this object leaves it untouched"
                    ),
                },
                info: Some(info),
                adopted: false,
            };
        }
        Ownership::Unowned => match ctx.settings.adoption {
            AdoptionPolicy::Never => {
                return Applied {
                    state: State::Stalled {
                        reason: reason::RESOURCE_CONFLICT,
                        message: format!(
                            "{noun} {name} already exists and no object owns it; the adoption policy is 'never', so it is left untouched"
                        ),
                    },
                    info: Some(info),
                    adopted: false,
                };
            }
            AdoptionPolicy::Adopt => adopting = true,
        },
    }

    let fields = stream_config::diff(cfg, &info.config);
    if fields.is_empty() {
        return Applied {
            state: State::Ready(format!("{noun} {name} matches the spec")),
            info: Some(info),
            adopted: false,
        };
    }
    let meaningful = diff_ignoring_marker(cfg, &info.config);
    if read_only || prevent_update {
        let (r, why) = if read_only {
            (reason::READ_ONLY, "the operator is read-only")
        } else {
            (reason::UPDATE_PREVENTED, "spec.preventUpdate is set")
        };
        if meaningful.is_empty() {
            // Only the ownership marker is missing; nothing the spec asks for differs.
            return Applied {
                state: State::Ready(format!(
                    "{noun} {name} matches the spec (not stamped with an owner: {why})"
                )),
                info: Some(info),
                adopted: adopting,
            };
        }
        return Applied {
            state: State::Stalled {
                reason: r,
                message: format!(
                    "{noun} {name} differs from the spec in {}; {why}, so it is not updated",
                    meaningful.join(", ")
                ),
            },
            info: Some(info),
            adopted: false,
        };
    }

    match js.update_stream(cfg).await {
        Ok(updated) => {
            let residual = stream_config::diff(cfg, &updated.config);
            if adopting {
                let changed = if meaningful.is_empty() {
                    "nothing else changed".to_string()
                } else {
                    format!("changed to match the spec: {}", meaningful.join(", "))
                };
                ctx.event(
                    obj,
                    K::KIND,
                    false,
                    reason::ADOPTED,
                    format!(
                        "adopted existing {noun} {name} (stamped with owner {}); {changed}",
                        owner.id
                    ),
                )
                .await;
            } else if was_ready_for_this_generation(obj, previous) {
                ctx.event(
                    obj,
                    K::KIND,
                    false,
                    reason::DRIFT_REPAIRED,
                    format!("{noun} {name} had been changed behind the operator's back ({}); restored to the spec", fields.join(", ")),
                )
                .await;
            } else {
                ctx.event(
                    obj,
                    K::KIND,
                    false,
                    reason::UPDATED,
                    format!("updated {noun} {name}: {}", fields.join(", ")),
                )
                .await;
            }
            info!(kind = K::KIND, name, ?fields, adopting, "updated");
            Applied {
                state: residual_state(noun, name, &residual),
                info: Some(updated),
                adopted: adopting,
            }
        }
        Err(e) => Applied {
            state: error_state(&e, noun),
            info: Some(info),
            adopted: false,
        },
    }
}

/// Ready, unless the server kept something other than what was asked for.
fn residual_state(noun: &str, name: &str, residual: &[String]) -> State {
    if residual.is_empty() {
        State::Ready(format!("{noun} {name} matches the spec"))
    } else {
        State::Stalled {
            reason: reason::NOT_SUPPORTED,
            message: format!(
                "JetStream accepted {noun} {name} but stored different values for {}; set them explicitly to what the server allows",
                residual.join(", ")
            ),
        }
    }
}

enum Cleanup {
    Done,
    Retry(Duration),
}

async fn cleanup<K: Managed>(obj: &K, ctx: &Context) -> Cleanup {
    let key = obj_key(obj);
    let asset = obj.asset();
    let noun = K::NOUN;
    let name = asset.stream().to_string();
    let keep = |why: String| async move {
        ctx.event(obj, K::KIND, false, reason::ORPHANED, why).await;
        Cleanup::Done
    };
    if is_paused(obj) {
        return keep(format!(
            "reconciling is paused: {noun} {name} is left in JetStream untouched"
        ))
        .await;
    }
    if ctx.settings.read_only {
        return keep(format!(
            "the operator is read-only: {noun} {name} is left in JetStream"
        ))
        .await;
    }
    let resolved = match resolve(ctx, obj.common()) {
        Ok(r) => r,
        Err(Unresolved(why)) => {
            ctx.event(
                obj,
                K::KIND,
                true,
                reason::ORPHANED,
                format!("cannot resolve the connection ({why}); releasing the object without deleting {noun} {name}"),
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
        Err(e) => return deletion_failed(obj, ctx, &key, &e).await,
    };
    let owner = Owner::new(
        &key.namespace,
        &key.name,
        ctx.settings.cluster_name.as_deref(),
    );
    let info = match js.stream_info(&name).await {
        Ok(Some(i)) => i,
        Ok(None) => return Cleanup::Done,
        Err(e) => return deletion_failed(obj, ctx, &key, &e).await,
    };
    match owner.classify(&info.config.metadata) {
        Ownership::Ours => {}
        Ownership::Other(who) => {
            return keep(format!("{noun} {name} is owned by {who}; not deleting it")).await;
        }
        Ownership::Unowned => {
            return keep(format!(
                "{noun} {name} was never taken over by this object; not deleting it"
            ))
            .await;
        }
    }
    if obj.common().prevent_delete {
        // Keep it, but release ownership so another object can adopt it.
        let mut released = info.config.clone();
        released.metadata.remove(OWNER_KEY);
        released.metadata.remove(CLUSTER_KEY);
        released.metadata.retain(|k, _| !k.starts_with("_nats."));
        if let Err(e) = js.update_stream(&released).await {
            debug!(error = %e, "could not remove the ownership marker from a kept asset");
        }
        return keep(format!("spec.preventDelete is set: {noun} {name} is kept in JetStream (ownership marker removed)")).await;
    }
    match js.delete_stream(&name).await {
        Ok(_) => {
            ctx.event(
                obj,
                K::KIND,
                false,
                reason::DELETED,
                format!("deleted {noun} {name}"),
            )
            .await;
            Cleanup::Done
        }
        Err(e) => deletion_failed(obj, ctx, &key, &e).await,
    }
}

async fn deletion_failed<K: Managed>(obj: &K, ctx: &Context, key: &ObjKey, e: &JsError) -> Cleanup {
    let noun = K::NOUN;
    let name = obj.asset().stream().to_string();
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
        format!("could not delete {noun} {name} ({e}); releasing the object so its namespace is not blocked; the {noun} may remain in JetStream"),
    )
    .await;
    Cleanup::Done
}

async fn add_finalizer<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(K::FINALIZER.to_string());
    patch_finalizers(obj, ctx, finalizers).await
}

async fn remove_finalizer<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != K::FINALIZER)
        .cloned()
        .collect();
    match patch_finalizers(obj, ctx, finalizers).await {
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => Ok(()),
        r => r,
    }
}

/// Replaces the finalizer list, guarded by resourceVersion so a concurrent change is not
/// overwritten (a conflict retries).
async fn patch_finalizers<K: Managed>(
    obj: &K,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": obj.resource_version(),
        }
    });
    ctx.metrics.kube_write(K::KIND, "finalizer");
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn write_paused<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let previous = obj.asset_status();
    let ready_status = previous
        .and_then(|p| conditions::find(&p.conditions, READY))
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown");
    let msg = format!("reconciling is paused by the {PAUSED_ANNOTATION} annotation");
    let ready = match ready_status {
        "True" => Cond::yes(READY, reason::PAUSED, msg.clone()),
        "False" => Cond::no(READY, reason::PAUSED, msg.clone()),
        _ => Cond::unknown(READY, reason::PAUSED, msg.clone()),
    };
    let conds = [
        ready,
        Cond::no(RECONCILING, reason::PAUSED, msg.clone()),
        Cond::no(STALLED, reason::PAUSED, ""),
    ];
    let mut bound = previous.cloned().unwrap_or_default();
    bound.conditions.clear();
    let generation = previous.and_then(|p| p.observed_generation);
    let next = status::next_status(previous, generation, &conds, bound);
    status::write(ctx, obj, K::KIND, previous, &next).await?;
    Ok(())
}
