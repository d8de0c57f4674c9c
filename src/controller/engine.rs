//! The reconcile engine shared by every asset kind: deletion and finalizers, pause,
//! connection resolution, desired config, observe, diff, apply, status, events, backoff.
//! A kind only says how its spec maps to a desired asset ([`Managed`]).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::conditions::{self, Cond, READY, RECONCILING, STALLED, reason};
use crate::api::consumer::ConsumerSpec;
use crate::api::{PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION};
use crate::jetstream::api::JsApi;
use crate::jetstream::connection::ConnEvent;
use crate::jetstream::error::{Disposition, JsError};
use crate::jetstream::owner::Owner;
use crate::jetstream::stream_config::InvalidSpec;
use crate::jetstream::wire::StreamConfig;
use crate::metrics::{ErrorLabels, KindLabels, ReconcileLabels};

use super::account::{self, ResolveError};
use super::assets::{self, Cleanup};
use super::connect::{Layer, Resolved, Unresolved, merge};
use super::registry::{AssetConfig, AssetRef, ObjKey, Registration};
use super::status::{self, State};
use super::{Context, Error};

/// The asset an object wants, built from its spec (pure).
#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    /// A stream (also the backing stream of a bucket).
    Stream(Box<StreamConfig>),
    /// A consumer; its config also depends on its stream's limits, read at apply time.
    Consumer(Box<ConsumerSpec>),
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
    /// What is lost when the asset had to be recreated (for the Warning event).
    const LOST_ON_RECREATE: &'static str = "the messages it held are gone";
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

pub(super) fn obj_key<K: Managed>(obj: &K) -> ObjKey {
    ObjKey {
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

pub(super) fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Resolves the connection of an object in `namespace`: the operator's default, then the
/// Account it names (read with its Secrets), then its own fields (NACK's precedence).
pub async fn resolve(
    ctx: &Context,
    namespace: &str,
    common: &CommonSpec,
) -> Result<Resolved, ResolveError> {
    let unresolved = |e: Unresolved| ResolveError::Unresolved(e.0);
    let mut layers =
        vec![Layer::from_default(&ctx.settings.default_connection).map_err(unresolved)?];
    let mut account = None;
    if let Some(reference) = common.account.as_deref().filter(|a| !a.is_empty()) {
        let (layer, id) = account::resolve_for(ctx, reference, namespace).await?;
        layers.push(layer);
        account = Some(id);
    }
    layers.push(Layer::from_object(common).map_err(unresolved)?);
    merge(&layers, account).map_err(unresolved)
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
        .get_or_create(&ReconcileLabels {
            kind: K::KIND,
            outcome,
        })
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

    let uid = obj.meta().uid.clone().unwrap_or_default();
    if obj.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            ctx.registry.remove(&key);
            ctx.remember_status(&uid, None);
            return Ok((Action::await_change(), "deleted"));
        }
        return match assets::cleanup(obj.as_ref(), ctx).await {
            Cleanup::Done => {
                remove_finalizer(obj.as_ref(), ctx).await?;
                ctx.registry.remove(&key);
                ctx.remember_status(&uid, None);
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

    // The status this process wrote last is at least as new as the cached object's.
    let previous = ctx
        .written_status(&uid)
        .or_else(|| obj.asset_status().cloned());
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

    // Connection, desired config, apply; any step may end the attempt with a state.
    let attempt: Result<assets::Applied, State> = async {
        let resolved = resolve(ctx, &key.namespace, obj.common())
            .await
            .map_err(|e| {
                ctx.registry.remove(&key);
                ctx.metrics.error(K::KIND, e.category());
                e.state()
            })?;
        bound.servers = Some(resolved.settings.display_servers());
        bound.account = resolved.account.clone();
        bound.api_prefix = (resolved.prefix != crate::jetstream::api::DEFAULT_PREFIX)
            .then(|| resolved.prefix.clone());
        let conn = ctx.pool.get(&resolved.settings).await.map_err(|e| {
            ctx.registry.remove(&key);
            ctx.metrics.error(K::KIND, e.category());
            error_state(&e, K::NOUN)
        })?;
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
                expected: None,
                seen: None,
                ready: false,
                trigger,
            },
        );
        let desired = obj
            .desired(&owner)
            .map_err(|InvalidSpec(message)| State::Stalled {
                reason: reason::INVALID_SPEC,
                message,
            })?;
        Ok(match desired {
            Desired::Stream(cfg) => {
                assets::apply_stream(obj.as_ref(), ctx, &js, &cfg, &owner, previous.as_ref()).await
            }
            Desired::Consumer(spec) => {
                assets::apply_consumer(obj.as_ref(), ctx, &js, &spec, &owner, previous.as_ref())
                    .await
            }
        })
    }
    .await;
    let (state, expected) = match attempt {
        Err(state) => (state, None),
        Ok(applied) => {
            if let Some(e) = &applied.error {
                ctx.metrics.error(K::KIND, e.category());
            }
            bound.cluster_leader = applied.facts.leader.clone();
            bound.replicas = applied.facts.replicas;
            bound.adopted |= applied.adopted;
            let seen = applied.seen.clone();
            ctx.registry.update(&key, |r| r.seen = seen);
            (applied.state, applied.expected)
        }
    };
    finish(
        obj.as_ref(),
        ctx,
        &key,
        previous.as_ref(),
        state,
        bound,
        expected,
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
    expected: Option<AssetConfig>,
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
    let wrote = status::write(ctx, obj, K::KIND, previous, &next).await?;
    tracing::debug!(object = %key, ready = state.is_ready(), wrote, previous_ready = previous.is_some_and(|p| conditions::is_ready(&p.conditions)), "reconciled");

    let ready = state.is_ready();
    let was_ready = previous.is_some_and(|p| conditions::is_ready(&p.conditions));
    let mut conn_and_stream = None;
    ctx.registry.update(key, |r| {
        r.ready = ready;
        r.expected = if ready { expected } else { None };
        if let AssetRef::Stream(s) = &r.asset {
            conn_and_stream = Some((r.conn, s.clone()));
        }
    });
    // A stream that just became Ready releases the consumers waiting for it.
    if ready
        && !was_ready
        && let Some((conn, stream)) = conn_and_stream
    {
        ctx.registry
            .dispatch(&ConnEvent::StreamCreated { conn, stream });
    }
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

async fn add_finalizer<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(K::FINALIZER.to_string());
    status::patch_finalizers(ctx, obj, K::KIND, finalizers).await
}

async fn remove_finalizer<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != K::FINALIZER)
        .cloned()
        .collect();
    status::patch_finalizers(ctx, obj, K::KIND, finalizers).await
}

async fn write_paused<K: Managed>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let latest = ctx
        .written_status(&uid)
        .or_else(|| obj.asset_status().cloned());
    let previous = latest.as_ref();
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
