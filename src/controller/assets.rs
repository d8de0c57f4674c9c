//! The executors: they observe JetStream, ask [`super::plan`] what to do, perform exactly
//! that, publish the events the plan's conclusion names, and report. One generic path for
//! every asset kind ([`apply`], [`delete`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tracing::{debug, info, warn};

use crate::api::conditions::reason;
use crate::jetstream::api::{DEFAULT_PREFIX, JsApi};
use crate::jetstream::asset::{AssetOps, AssetRef, Facts, Snapshot};
use crate::jetstream::config::AssetConfig;
use crate::jetstream::error::code;
use crate::jetstream::owner::{self, Owner};
use crate::metrics::ErrorCategory;

use super::connect::ResolveError;
use super::context::Context;
use super::kinds::{ConfigOf, IdOf, Managed};
use super::plan::{
    self, ApplyFacts, Connection, Deletion, DeletionFacts, Executed, Failure, History, Keep,
    Observed, Plan, RecentCreate, State, Subject,
};
use super::registry::{ObjKey, Registration};

/// What the connection resolved to, for the status.
#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// Servers, without credentials.
    pub servers: Option<String>,
    /// The Account used.
    pub account: Option<String>,
    /// The API prefix, when not the default.
    pub api_prefix: Option<String>,
}

/// What an apply attempt came to.
pub struct Attempt {
    /// Where it ended.
    pub state: State,
    /// The connection it used.
    pub binding: Binding,
    /// The asset was adopted now.
    pub adopted: bool,
    /// Facts from the asset's latest info, when known.
    pub facts: Facts,
    /// Fingerprint of the asset as the server holds it now.
    pub seen: Option<Snapshot>,
    /// What the asset should be (for the drift scan).
    pub expected: Option<Snapshot>,
    /// The category of the error that ended it, if any (for metrics).
    pub error: Option<ErrorCategory>,
    /// The subjects the desired stream stores, for display.
    pub subjects: Option<String>,
    /// The connection's advisories arrive: an object waiting for its stream is woken
    /// when the stream is created, so looking again on a timer is only a safety net.
    pub events_live: bool,
    /// When to look again, where the plan says (instead of the failure backoff).
    pub retry_after: Option<Duration>,
    /// The asset was created now, making this streak of creates.
    pub created: Option<u32>,
}

impl Attempt {
    fn new(state: State) -> Self {
        Self {
            state,
            binding: Binding::default(),
            adopted: false,
            facts: Facts::default(),
            seen: None,
            expected: None,
            error: None,
            subjects: None,
            events_live: false,
            retry_after: None,
            created: None,
        }
    }
}

/// The asset of an object, for messages.
pub fn subject<K: Managed>(obj: &K, id: &IdOf<K>) -> Subject {
    Subject {
        noun: K::NOUN,
        id: id.to_string(),
        stream: K::Asset::stream(id).map(str::to_string),
        object: obj.name_any(),
        lost_on_recreate: K::LOST_ON_RECREATE,
    }
}

/// The owner marker of an object.
pub fn owner(ctx: &Context, key: &ObjKey) -> Owner {
    Owner::new(
        key.kind,
        &key.namespace,
        &key.name,
        ctx.settings.cluster_name.as_deref(),
    )
}

fn js_api(ctx: &Context, conn: Arc<crate::jetstream::connection::Conn>, prefix: &str) -> JsApi {
    JsApi::new(
        conn,
        prefix.to_string(),
        ctx.settings.request_timeout,
        ctx.metrics.clone(),
    )
}

/// Brings an object's asset to its spec: resolve the connection, read the stream it lives
/// in (consumers), build the desired configuration, read the asset, plan, perform the plan,
/// conclude; then drive a consumer's pause.
pub async fn apply<K: Managed>(
    obj: &K,
    ctx: &Context,
    key: &ObjKey,
    trigger: Arc<dyn Fn() + Send + Sync>,
    history: &History,
) -> Attempt {
    let id = obj.asset_id();
    let subject = subject(obj, &id);
    let owner = owner(ctx, key);
    let common = obj.common();
    let policies = ctx.settings.policies(&key.namespace, common);
    // Reads of this attempt are no newer than this (see `StreamReads::put`).
    let started = Instant::now();

    let resolved = match ctx.resolver.resolve(&key.namespace, common).await {
        Ok(r) => {
            ctx.resolver.remember(&key.to_string(), common, &r);
            r
        }
        Err(e) => {
            ctx.registry.remove(key);
            return Attempt {
                error: Some(e.category()),
                ..Attempt::new(e.state())
            };
        }
    };
    let binding = Binding {
        servers: Some(resolved.settings.display_servers()),
        account: resolved.account.clone(),
        api_prefix: (resolved.prefix != DEFAULT_PREFIX).then(|| resolved.prefix.clone()),
    };
    let failed = |e: &crate::jetstream::error::JsError, binding: Binding| Attempt {
        binding,
        error: Some(e.category()),
        ..Attempt::new(State::failed(&Failure::from(e), K::NOUN))
    };
    let conn = match ctx.connection(&resolved.settings).await {
        Ok(c) => c,
        Err(e) => {
            ctx.registry.remove(key);
            return failed(&e, binding);
        }
    };
    let js = js_api(ctx, conn.clone(), &resolved.prefix);
    let (seen_before, created_before) = ctx.registry.memory(key);
    ctx.registry.upsert(
        key.clone(),
        Registration {
            conn: conn.key,
            js: js.clone(),
            asset: K::Asset::asset_ref(&id),
            expected: None,
            seen: None,
            facts: Facts::default(),
            ready: false,
            created: created_before,
            trigger,
        },
    );

    let is_stream = K::Asset::stream(&id).is_none();
    let mut observe = plan::observe_first(is_stream, history, policies);
    if observe || !is_stream {
        // After a start or a reconnect: one paged listing of the connection's streams
        // serves every stream and consumer, not an INFO per object.
        ctx.stream_reads
            .ensure_listed(conn.key, js.prefix(), || async {
                js.list_streams().await.map(|(streams, _)| streams)
            })
            .await;
    }
    // The stream the asset lives in, when it has one: its limits shape the defaults. Else
    // a stream that shapes the asset when it exists (a mirror's origin).
    // Consumers of one stream share a recent read of it (see `stream_reads`).
    let stream = match K::Asset::stream(&id) {
        None => None,
        Some(name) => match ctx.stream_reads.get(conn.key, js.prefix(), name) {
            Some(info) => Some(Some(info.config.clone())),
            None => match js.stream_info(name).await {
                Ok(info) => {
                    if let Some(i) = &info {
                        ctx.stream_reads.put(conn.key, js.prefix(), i, started);
                    }
                    Some(info.map(|i| i.config))
                }
                Err(e) => return failed(&e, binding),
            },
        },
    };
    let origin = match (&stream, obj.origin()) {
        (None, Some(name)) => match js.stream_info(&name).await {
            Ok(info) => info.map(|i| i.config),
            Err(e) => return failed(&e, binding),
        },
        _ => None,
    };
    let mut desired = match &stream {
        Some(None) => None,
        parent => match obj.desired(
            &owner,
            parent.as_ref().and_then(|p| p.as_ref()).or(origin.as_ref()),
        ) {
            Ok(mut d) => {
                d.for_server(js.server_version());
                Some(d)
            }
            Err(e) => {
                return Attempt {
                    binding,
                    error: Some(ErrorCategory::InvalidSpec),
                    ..Attempt::new(State::invalid_spec(e.0))
                };
            }
        },
    };
    // A new stream is created without a read first (see `plan::observe_first`); when the
    // name turns out to be taken, it is read and planned again.
    let (info, plan, written) = loop {
        let mut stream_vanished = false;
        // A stream read recently (never its absence: a missing entry is read).
        let recent = is_stream
            .then(|| ctx.stream_reads.get(conn.key, js.prefix(), &id.to_string()))
            .flatten()
            .and_then(|i| K::Asset::from_stream_info(&i));
        let info = match &desired {
            Some(_) if observe && recent.is_some() => recent,
            Some(_) if observe => match K::Asset::get(&js, &id).await {
                Ok(i) => i,
                // The stream went away since it was read: wait for it like a missing one.
                Err(e) if e.is(code::STREAM_NOT_FOUND) => {
                    stream_vanished = true;
                    None
                }
                Err(e) => return failed(&e, binding),
            },
            _ => None,
        };
        let observed = info.as_ref().map(K::Asset::config);
        // An adopted asset keeps its adoption mark through every update.
        if let (Some(d), Some(o)) = (desired.as_mut(), observed)
            && owner::adopted(o.metadata())
        {
            owner::mark_adopted(d.metadata_mut());
        }
        let history = History {
            unchanged_since_write: seen_before.is_some()
                && observed.map(K::Asset::snapshot) == seen_before,
            recent_create: created_before
                .filter(|c| c.generation == obj.meta().generation)
                .map(|c| RecentCreate {
                    ago_ms: u64::try_from(c.at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    streak: c.streak,
                }),
            ..history.clone()
        };
        let plan = plan::apply(&ApplyFacts {
            desired: desired.as_ref().filter(|_| !stream_vanished),
            observed,
            owner: &owner,
            policies,
            history: &history,
            server: js.server_version(),
        });
        debug!(object = %key, plan = %plan.kind(), observed = observe, "planned");

        if let (Plan::Adopt { .. }, Some(d)) = (&plan, desired.as_mut()) {
            owner::mark_adopted(d.metadata_mut());
        }
        let written = match (&plan, &desired) {
            (Plan::Create { .. }, Some(d)) => Some(match d.creatable() {
                None => K::Asset::create(&js, &id, d).await,
                // Created as it can be, then brought to what the spec says (a sealed stream).
                Some(first) => match K::Asset::create(&js, &id, &first).await {
                    Ok(_) => K::Asset::update(&js, &id, d).await,
                    Err(e) => Err(e),
                },
            }),
            (Plan::Adopt { .. } | Plan::Update { .. }, Some(d)) => {
                Some(K::Asset::update(&js, &id, d).await)
            }
            _ => None,
        };
        match &written {
            Some(Err(e)) if !observe && e.is(code::STREAM_NAME_EXISTS) => observe = true,
            _ => break (info, plan, written),
        }
    };
    let mut error = None;
    let executed = match &written {
        None => Executed::Nothing,
        Some(Ok(info)) => Executed::Stored(K::Asset::config(info)),
        Some(Err(e)) if e.is(code::STREAM_NAME_EXISTS) || e.is(code::CONSUMER_ALREADY_EXISTS) => {
            Executed::AlreadyExists
        }
        // A consumer's stream deleted since it was read.
        Some(Err(e)) if e.is(code::STREAM_NOT_FOUND) && K::Asset::stream(&id).is_some() => {
            Executed::StreamMissing
        }
        Some(Err(e)) => {
            error = Some(e.category());
            Executed::Failed(Failure::from(e))
        }
    };
    let conclusion = plan::conclude(&plan, &executed, desired.as_ref(), &owner, &subject);
    if let Some(ev) = &conclusion.event {
        ctx.event(obj, K::KIND, ev).await;
        info!(kind = K::KIND, id = %subject.id, plan = %plan.kind(), "{}", ev.reason);
    }
    let latest = match &written {
        Some(Ok(i)) => Some(i),
        _ => info.as_ref(),
    };
    // A stream as the server holds it now: its consumers need not read it again.
    if let Some(info) = latest.and_then(K::Asset::stream_info) {
        ctx.stream_reads.put(conn.key, js.prefix(), info, started);
    }
    let mut attempt = Attempt {
        state: conclusion.state,
        binding,
        adopted: conclusion.adopted,
        facts: latest.map(K::Asset::facts).unwrap_or_default(),
        seen: latest.map(|i| K::Asset::snapshot(K::Asset::config(i))),
        expected: desired.as_ref().map(K::Asset::snapshot),
        error,
        subjects: desired
            .as_ref()
            .and_then(|d| d.subjects())
            .filter(|s| !s.is_empty())
            .map(display_subjects),
        events_live: conn.advisories_live(),
        retry_after: conclusion.retry_after,
        created: match (&plan, &written) {
            (Plan::Create { streak, .. }, Some(Ok(_))) => Some(*streak),
            _ => None,
        },
    };
    if attempt.state.is_ready() {
        drive_pause(obj, ctx, &js, &id, &subject, policies, &mut attempt).await;
    }
    attempt
}

/// Pauses or resumes a consumer as its spec says, through the pause API (clustered
/// servers ignore the pause in a config update). The info the apply ended with says
/// whether it is paused.
async fn drive_pause<K: Managed>(
    obj: &K,
    ctx: &Context,
    js: &JsApi,
    id: &IdOf<K>,
    subject: &Subject,
    policies: plan::Policies,
    attempt: &mut Attempt,
) {
    let (Some(have), AssetRef::Consumer { stream, name }) =
        (attempt.facts.pause.clone(), K::Asset::asset_ref(id))
    else {
        return;
    };
    let want = obj.desired_pause();
    let api = js.server_version() >= (2, 11, 0);
    let step = plan::pause(want.as_deref(), have.as_deref(), policies, api);
    let until = match &step {
        plan::PausePlan::Keep => return,
        plan::PausePlan::NotSupported => {
            attempt.state = plan::pause_not_supported(subject);
            return;
        }
        plan::PausePlan::Pause(t) => Some(t.as_str()),
        plan::PausePlan::Resume => None,
    };
    match js.pause_consumer(&stream, &name, until).await {
        Ok(_) => {
            attempt.facts.pause = Some(until.map(str::to_owned));
            if let Some(ev) = plan::pause_event(&step, subject) {
                ctx.event(obj, K::KIND, &ev).await;
            }
        }
        Err(e) => {
            attempt.error = Some(e.category());
            attempt.state = State::failed(&Failure::from(&e), K::NOUN);
        }
    }
}

/// Outcome of a deletion attempt.
pub enum Cleanup {
    /// The finalizer can go.
    Done,
    /// Try again after this long.
    Retry(Duration),
}

/// Deletes the asset of an object being deleted, if the object owns it and its deletion
/// policy says so, one step at a time as [`plan::deletion`] asks.
pub async fn delete<K: Managed>(obj: &K, ctx: &Context, key: &ObjKey, paused: bool) -> Cleanup {
    let id = obj.asset_id();
    let subject = subject(obj, &id);
    let owner = owner(ctx, key);
    let common = obj.common();
    let object = key.to_string();
    let age = obj
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    let mut facts = DeletionFacts {
        paused,
        policies: ctx.settings.policies(&key.namespace, common),
        adopted: obj.asset_status().is_some_and(|s| s.adopted),
        past_grace: age >= ctx.settings.deletion_grace,
        remembered: ctx.resolver.remembered(&object, common).is_some(),
        ..Default::default()
    };
    let mut js: Option<JsApi> = None;
    let mut observed: Option<ConfigOf<K>> = None;
    let connect = |r: crate::controller::connect::Resolved| async move {
        match ctx.connection(&r.settings).await {
            Ok(c) => (Some(js_api(ctx, c, &r.prefix)), Connection::Ready),
            Err(e) => (None, Connection::Failed(Failure::from(&e))),
        }
    };
    // Each step fills in one fact, so a handful of steps always ends the deletion.
    for _ in 0..10 {
        let step = plan::deletion(&facts);
        match (&step, &js) {
            (Deletion::Resolve, _) => {
                let (api, c) = match ctx.resolver.resolve(&key.namespace, common).await {
                    Ok(r) => connect(r).await,
                    Err(ResolveError::Transient(why)) => (
                        None,
                        Connection::Failed(Failure::transient(reason::KUBERNETES_ERROR, why)),
                    ),
                    Err(e) => (None, Connection::Unresolved(e.to_string())),
                };
                js = api;
                facts.connection = Some(c);
            }
            (Deletion::UseRemembered, _) => {
                facts.remembered = false;
                let (api, c) = match ctx.resolver.remembered(&object, common) {
                    Some(r) => {
                        info!(object = %key, "connection no longer resolves; deleting through the one it last resolved to");
                        connect(r).await
                    }
                    None => (None, Connection::Unresolved("nothing remembered".into())),
                };
                js = api;
                facts.connection = Some(c);
            }
            (Deletion::Observe, Some(js)) => {
                facts.observed = Some(match K::Asset::get(js, &id).await {
                    Ok(Some(info)) => {
                        let cfg = K::Asset::config(&info).clone();
                        let ownership = owner.classify(cfg.metadata());
                        let adopted = owner::adopted(cfg.metadata());
                        observed = Some(cfg);
                        Observed::Present { ownership, adopted }
                    }
                    Ok(None) => Observed::Missing,
                    Err(e) if e.is(code::STREAM_NOT_FOUND) => Observed::Missing,
                    Err(e) => Observed::Failed(Failure::from(&e)),
                });
            }
            (Deletion::Delete, Some(js)) => {
                facts.deleted = Some(
                    K::Asset::delete(js, &id)
                        .await
                        .map(|_| ())
                        .map_err(|e| Failure::from(&e)),
                );
            }
            (Deletion::Retry(f), _) => {
                let delay = ctx.backoff(&object);
                warn!(object = %key, error = %f.message, retry_in = ?delay, "cannot delete asset yet");
                return Cleanup::Retry(delay);
            }
            (Deletion::Keep(_) | Deletion::GiveUp(_) | Deletion::Done { .. }, _) => {
                if let (Deletion::Keep(Keep::Policy(_)), Some(js), Some(cfg)) =
                    (&step, &js, observed.take())
                {
                    release_marker::<K>(js, &id, cfg).await;
                }
                if let Some(ev) = plan::deletion_event(&step, &subject) {
                    ctx.event(obj, K::KIND, &ev).await;
                }
                return Cleanup::Done;
            }
            // Observe or Delete without a connection cannot happen: the plan resolves first.
            (Deletion::Observe | Deletion::Delete, None) => break,
        }
    }
    warn!(object = %key, "deletion did not settle; retrying");
    Cleanup::Retry(ctx.backoff(&object))
}

/// Removes the ownership marker from a kept asset, so another object can adopt it.
async fn release_marker<K: Managed>(js: &JsApi, id: &IdOf<K>, mut cfg: ConfigOf<K>) {
    owner::release(cfg.metadata_mut());
    if let Err(e) = K::Asset::update(js, id, &cfg).await {
        debug!(error = %e, "could not remove the ownership marker from a kept asset");
    }
}

/// At most this many characters of subjects go into a status (a stream may have enough
/// subjects to fill etcd's object limit twice over if they were all repeated).
pub const STATUS_SUBJECTS_MAX: usize = 1024;

/// The subjects for `status.subjects`: comma-separated, and when that runs past
/// [`STATUS_SUBJECTS_MAX`] characters, the ones that fit and how many more there are.
pub fn display_subjects(subjects: &[String]) -> String {
    let mut out = String::new();
    let mut len = 0;
    for (i, s) in subjects.iter().enumerate() {
        let n = s.chars().count() + if i == 0 { 0 } else { 2 };
        if len + n > STATUS_SUBJECTS_MAX {
            if out.is_empty() {
                return format!("({} subjects)", subjects.len());
            }
            out.push_str(&format!(", … ({} more)", subjects.len() - i));
            return out;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(s);
        len += n;
    }
    out
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn status_subjects_stay_small() {
        let few = vec!["a.>".to_string(), "b".to_string()];
        assert_eq!(display_subjects(&few), "a.>, b");
        let many: Vec<String> = (0..1000).map(|i| format!("orders.{i:04}.>")).collect();
        let shown = display_subjects(&many);
        assert!(shown.chars().count() <= STATUS_SUBJECTS_MAX + 20, "{shown}");
        assert!(shown.starts_with("orders.0000.>, orders.0001.>"));
        assert!(shown.ends_with("more)"), "{shown}");
        let huge = vec!["x".repeat(5000)];
        assert_eq!(display_subjects(&huge), "(1 subjects)");
    }
}
