//! The reconcile entry point shared by every asset kind: the object's phase (a pure
//! decision), then the executor for it, then the status, the registry and the next action.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::warn;

use crate::api::common::AssetStatus;
use crate::api::conditions::reason;
use crate::api::{PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION};
use crate::jetstream::asset::{AssetOps, AssetRef};
use crate::jetstream::connection::ConnEvent;
use crate::metrics::Outcome;

use super::assets::{self, Attempt, Cleanup};
use super::context::{Context, Error};
use super::kinds::Managed;
use super::plan::{self, History, ObjectFacts, Phase, State};
use super::registry::{Created, ObjKey};
use super::status;

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

/// True when the pause annotation is set to `true`.
pub fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Entry point for the kube controller.
pub async fn reconcile<K: Managed>(obj: Arc<K>, kc: Arc<KindCtx<K>>) -> Result<Action, Error> {
    let started = Instant::now();
    let ctx = &kc.ctx;
    let result = reconcile_inner(&obj, &kc).await;
    let outcome = match &result {
        Ok((_, o)) => *o,
        Err(_) => Outcome::Error,
    };
    ctx.metrics.reconciled(K::KIND, outcome, started.elapsed());
    let (ready, all) = ctx.registry.counts(K::KIND);
    ctx.metrics.set_counts(K::KIND, ready, all);
    result.map(|(a, _)| a)
}

/// Error policy: Kubernetes API failures retry with per-object backoff.
pub fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, kc: Arc<KindCtx<K>>) -> Action {
    let key = obj_key(obj.as_ref());
    let category = err.category();
    kc.ctx.metrics.error(K::KIND, category);
    let delay = if category == crate::metrics::ErrorCategory::KubeConflict {
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
) -> Result<(Action, Outcome), Error> {
    let ctx = &kc.ctx;
    let key = obj_key(obj.as_ref());
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let paused = is_paused(obj.as_ref());
    let facts = ObjectFacts {
        deleting: obj.meta().deletion_timestamp.is_some(),
        has_finalizer: obj.finalizers().iter().any(|f| f == K::FINALIZER),
        paused,
    };
    match plan::phase(&facts) {
        Phase::Forget => {
            ctx.registry.remove(&key);
            ctx.remember_status(&uid, None);
            ctx.resolver.forget(&key.to_string());
            Ok((Action::await_change(), Outcome::Deleted))
        }
        Phase::Finalize => match assets::delete(obj.as_ref(), ctx, &key, paused).await {
            Cleanup::Done => {
                remove_finalizer(obj.as_ref(), ctx).await?;
                ctx.registry.remove(&key);
                ctx.remember_status(&uid, None);
                ctx.resolver.forget(&key.to_string());
                ctx.reset_backoff(&key.to_string());
                Ok((Action::await_change(), Outcome::Deleted))
            }
            Cleanup::Retry(delay) => Ok((Action::requeue(delay), Outcome::Retry)),
        },
        Phase::Pause => {
            ctx.registry.remove(&key);
            write_paused(obj.as_ref(), ctx).await?;
            Ok((Action::await_change(), Outcome::Paused))
        }
        Phase::AddFinalizer => {
            add_finalizer(obj.as_ref(), ctx).await?;
            apply(obj, kc, &key, &uid).await
        }
        Phase::Apply => apply(obj, kc, &key, &uid).await,
    }
}

async fn apply<K: Managed>(
    obj: &Arc<K>,
    kc: &Arc<KindCtx<K>>,
    key: &ObjKey,
    uid: &str,
) -> Result<(Action, Outcome), Error> {
    let ctx = &kc.ctx;
    // The status this process wrote last is at least as new as the cached object's.
    let previous = ctx.latest_status(uid, obj.asset_status());
    let generation = obj.meta().generation;
    let history = status::history(previous.as_ref(), generation);
    let trigger = {
        let tx = kc.trigger.clone();
        let r = ObjectRef::from_obj(obj.as_ref());
        Arc::new(move || {
            let _ = tx.unbounded_send(r.clone());
        })
    };
    let attempt = assets::apply(obj.as_ref(), ctx, key, trigger, &history).await;
    if let Some(category) = attempt.error {
        ctx.metrics.error(K::KIND, category);
    }
    finish(obj.as_ref(), ctx, key, previous.as_ref(), &history, attempt).await
}

/// Writes the status, records the outcome in the registry and picks the next action.
async fn finish<K: Managed>(
    obj: &K,
    ctx: &Context,
    key: &ObjKey,
    previous: Option<&AssetStatus>,
    history: &History,
    attempt: Attempt,
) -> Result<(Action, Outcome), Error> {
    let state = plan::settle(attempt.state, history);
    if let Some(ev) = plan::stall_event(&state, history) {
        ctx.event(obj, K::KIND, &ev).await;
    }
    let id = obj.asset_id();
    let adopted = previous.is_some_and(|p| p.adopted) || attempt.adopted;
    let policies = ctx.settings.policies(&key.namespace, obj.common());
    let bound = AssetStatus {
        asset_name: Some(K::Asset::asset_ref(&id).name().to_string()),
        stream_name: K::Asset::stream(&id).map(str::to_string),
        servers: attempt.binding.servers,
        account: attempt.binding.account,
        api_prefix: attempt.binding.api_prefix,
        adopted,
        deletion_policy: Some(plan::deletion_rule(&policies, adopted).policy()),
        cluster_leader: attempt.facts.leader.clone(),
        replicas: attempt.facts.replicas,
        subjects: attempt
            .subjects
            .or_else(|| previous.and_then(|p| p.subjects.clone())),
        ..Default::default()
    };
    let generation = obj.meta().generation;
    let next = status::next_status(previous, generation, &state.conditions(), bound);
    status::write(ctx, obj, K::KIND, previous, &next).await?;

    let ready = state.is_ready();
    let mut became_ready_stream = None;
    let (seen, expected, facts) = (attempt.seen, attempt.expected, attempt.facts);
    let events_live = attempt.events_live;
    let (retry_after, created) = (attempt.retry_after, attempt.created);
    ctx.registry.update(key, |r| {
        if let Some(streak) = created {
            r.created = Some(Created {
                at: std::time::Instant::now(),
                streak,
                generation,
            });
        }
        r.seen = seen;
        r.facts = facts;
        r.ready = ready;
        r.expected = if ready { expected } else { None };
        if let AssetRef::Stream(s) = &r.asset {
            became_ready_stream = Some((r.conn, s.clone()));
        }
    });
    // A stream that just became Ready releases the consumers waiting for it.
    if ready
        && !history.was_ready
        && let Some((conn, stream)) = became_ready_stream
    {
        ctx.registry
            .dispatch(&ConnEvent::StreamCreated { conn, stream });
    }
    Ok(match state {
        State::Ready { .. } => {
            ctx.reset_backoff(&key.to_string());
            (Action::await_change(), Outcome::Ready)
        }
        // Refused credentials or certificates can be fixed without the object changing
        // (a file rewritten, a server's configuration): look again now and then.
        State::Stalled { reason: r, .. } if r == reason::AUTHENTICATION_FAILED => {
            ctx.reset_backoff(&key.to_string());
            (
                Action::requeue(ctx.jittered_resync().saturating_mul(5)),
                Outcome::Stalled,
            )
        }
        State::Stalled { .. } => {
            ctx.reset_backoff(&key.to_string());
            (Action::await_change(), Outcome::Stalled)
        }
        // The stream's creation wakes the object (the operator's own create, or the
        // stream-created advisory); where advisories arrive, the timer is a safety net.
        State::Progressing { reason: r, .. } if r == reason::WAITING_FOR_STREAM => {
            let wait = ctx.jittered_resync();
            let wait = if events_live {
                wait.saturating_mul(5)
            } else {
                wait
            };
            (Action::requeue(wait), Outcome::Waiting)
        }
        // A wait the plan chose (recreating with backoff) is not a failure.
        State::Retrying { .. } if retry_after.is_some() => (
            Action::requeue(retry_after.unwrap_or_default()),
            Outcome::Retry,
        ),
        State::Progressing { .. } | State::Retrying { .. } => (
            Action::requeue(ctx.backoff(&key.to_string())),
            Outcome::Retry,
        ),
    })
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
    let latest = ctx.latest_status(&uid, obj.asset_status());
    let previous = latest.as_ref();
    let next = status::paused(
        previous,
        &format!("reconciling is paused by the {PAUSED_ANNOTATION} annotation"),
    );
    status::write(ctx, obj, K::KIND, previous, &next).await?;
    Ok(())
}
