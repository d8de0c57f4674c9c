//! Wiring: one kube controller per kind and watched namespace, the drift scanner, the
//! advisory router, readiness.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::ListParams;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::admin::Readiness;
use crate::api::account::{Account, account_ref};
use crate::api::stream::Stream;
use crate::jetstream::connection::Pool;
use crate::metrics::Metrics;

use super::account::{self, AccountCtx};
use super::context::{Context, Settings};
use super::election::{Elector, Timings};
use super::engine::{KindCtx, change_hash, error_policy, reconcile};
use super::kinds::{self, Managed, Visitor};
use super::scanner;

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease duration: a crashed leader is replaced within it ([`Timings`]).
    pub duration: std::time::Duration,
}

/// Runs the controllers only while this replica holds the Lease. Followers keep watches
/// (so /readyz reflects them, independent of leadership) and write nothing. A leader
/// whose Lease is taken, or cannot be renewed in time, exits at once: it stops writing
/// before a follower may take over ([`super::election`]).
pub async fn run_elected(
    client: kube::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    election: LeaderElection,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_crds(&client, &settings.namespaces).await?;
    let timings = Timings::new(election.duration);
    let elector = Elector::new(
        client.clone(),
        &election.namespace,
        &election.lease_name,
        &election.identity,
        timings,
    );
    metrics.leader.set(0);
    let followers = follower_watches(&client, &settings.namespaces, &readiness);
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown) as BoxFuture<'static, ()>);
    info!(identity = %election.identity, lease = %format!("{}/{}", election.namespace, election.lease_name), duration_ms = timings.duration.as_millis() as u64, "waiting for leadership");
    let (lease, renewed) = tokio::select! {
        held = elector.acquire() => held,
        _ = shutdown.clone() => {
            for f in followers { f.abort(); }
            return Ok(());
        }
    };
    for f in followers {
        f.abort();
    }
    crate::fence::open_until(renewed + timings.fence_after);
    // The controllers' own watches count from here on.
    readiness.reset();
    info!(identity = %election.identity, "became the leader");
    metrics.leader.set(1);
    tokio::select! {
        result = run(client, settings, metrics.clone(), readiness, shutdown) => {
            metrics.leader.set(0);
            elector.release().await;
            result
        }
        lost = elector.hold(lease, renewed) => {
            // The fence: nothing of this process may write once a follower could hold
            // the Lease, and a graceful stop of the controllers could take longer than
            // the time left. Exit now; the Deployment starts a fresh follower.
            error!(identity = %election.identity, reason = %lost, "lost leadership; exiting so that only the new leader writes");
            std::process::exit(1);
        }
    }
}

/// Watches every kind (no reconciling) so a follower's readiness means what a leader's
/// does.
fn follower_watches(
    client: &kube::Client,
    namespaces: &[String],
    readiness: &Arc<Readiness>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // A follower needs no cache: only to see each watch complete its first list.
    fn watch<K>(api: Api<K>, readiness: &Arc<Readiness>) -> tokio::task::JoinHandle<()>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let synced = readiness.track();
        tokio::spawn(async move {
            watcher(api, watcher::Config::default())
                .inspect(move |ev| {
                    if matches!(ev, Ok(watcher::Event::InitDone)) {
                        synced()
                    }
                })
                .default_backoff()
                .for_each(|_| async {})
                .await;
        })
    }
    struct Watches<'a> {
        client: &'a kube::Client,
        scope: Option<String>,
        readiness: &'a Arc<Readiness>,
        out: Vec<tokio::task::JoinHandle<()>>,
    }
    impl Visitor for Watches<'_> {
        fn asset<K: Managed>(&mut self) {
            self.out
                .push(watch(scoped::<K>(self.client, &self.scope), self.readiness));
        }
        fn account(&mut self) {
            self.out.push(watch(
                scoped::<Account>(self.client, &self.scope),
                self.readiness,
            ));
        }
    }
    let mut out = Vec::new();
    for scope in scopes(namespaces) {
        let mut w = Watches {
            client,
            scope,
            readiness,
            out: Vec::new(),
        };
        kinds::visit(&mut w);
        out.extend(w.out);
    }
    out
}

/// The watch scopes: every watched namespace, or the whole cluster (`None`).
fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    }
}

/// The API of a kind in one scope.
fn scoped<K>(client: &kube::Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a clear message when the CRDs are not installed.
pub async fn check_crds(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<()> {
    let api: Api<Stream> = scoped(client, &namespaces.first().cloned());
    api.list_metadata(&ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot list Streams ({e}); are the CRDs installed? Apply them with `jetstream-operator crd | kubectl apply --server-side -f -`"
        )
    })?;
    Ok(())
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_crds(&client, &settings.namespaces).await?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let pool = Pool::new(
        events_tx,
        settings.max_connections,
        settings.request_timeout,
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        pool,
        metrics,
    ));

    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown) as BoxFuture<'static, ()>);
    let background = vec![
        tokio::spawn(scanner::run_scans(ctx.clone())),
        tokio::spawn(scanner::route_events(ctx.clone(), events_rx)),
    ];

    struct Controllers<'a> {
        ctx: &'a Arc<Context>,
        scope: Option<String>,
        readiness: &'a Arc<Readiness>,
        shutdown: &'a futures::future::Shared<BoxFuture<'static, ()>>,
        out: Vec<BoxFuture<'static, ()>>,
    }
    impl Visitor for Controllers<'_> {
        fn asset<K: Managed>(&mut self) {
            self.out.push(Box::pin(run_kind::<K>(
                self.ctx.clone(),
                self.scope.clone(),
                self.readiness.clone(),
                self.shutdown.clone(),
            )));
        }
        fn account(&mut self) {
            self.out.push(Box::pin(run_accounts(
                self.ctx.clone(),
                self.scope.clone(),
                self.readiness.clone(),
                self.shutdown.clone(),
            )));
        }
    }
    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    for scope in scopes(&settings.namespaces) {
        let mut c = Controllers {
            ctx: &ctx,
            scope,
            readiness: &readiness,
            shutdown: &shutdown,
            out: Vec::new(),
        };
        kinds::visit(&mut c);
        controllers.extend(c.out);
    }
    info!(namespaces = ?settings.namespaces, resync = ?settings.resync, read_only = settings.read_only, "controllers starting");
    // A controller asked to stop before its first list completes can wait for it forever;
    // after a shutdown request, give the controllers a bounded time to finish.
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = deadline => warn!("controllers did not stop within 3s of the shutdown request; exiting anyway"),
    }
    for b in background {
        b.abort();
    }
    info!("controllers stopped");
    Ok(())
}

/// Watches of Accounts that wake the objects using them: one per watched namespace (or
/// one cluster-wide), filtered to changes that matter (spec, settings fingerprint,
/// deletion).
fn account_changes(
    ctx: &Context,
) -> impl futures::Stream<Item = Result<Account, watcher::Error>> + Send + 'static {
    let streams = scopes(&ctx.settings.namespaces).into_iter().map(|scope| {
        watcher(
            scoped::<Account>(&ctx.client, &scope),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects()
        .boxed()
    });
    futures::stream::select_all(streams).predicate_filter(
        |a: &Account| {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            a.metadata.generation.hash(&mut h);
            a.metadata.deletion_timestamp.is_some().hash(&mut h);
            a.status
                .as_ref()
                .and_then(|s| s.settings_hash.clone())
                .hash(&mut h);
            a.status.as_ref().map(|s| s.is_ready()).hash(&mut h);
            Some(h.finish())
        },
        Default::default(),
    )
}

async fn run_kind<K>(
    ctx: Arc<Context>,
    namespace: Option<String>,
    readiness: Arc<Readiness>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) where
    K: Managed,
{
    let seen = {
        let ctx = ctx.clone();
        move |o: &K| {
            ctx.status_seen(
                o.meta().uid.as_deref().unwrap_or_default(),
                o.asset_status(),
            )
        }
    };
    let (reader, stream) = watched(scoped::<K>(&ctx.client, &namespace), &readiness, seen);
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded::<ObjectRef<K>>();
    let kc = Arc::new(KindCtx {
        ctx: ctx.clone(),
        trigger: trigger_tx,
    });
    let controller = Controller::for_stream(stream, reader);
    let store = controller.store();
    controller
        .watches_stream(account_changes(&ctx), move |account: Account| {
            let home = account.namespace().unwrap_or_default();
            let name = account.name_any();
            store
                .state()
                .into_iter()
                .filter(|o| {
                    let ons = o.namespace().unwrap_or_default();
                    o.common()
                        .account
                        .as_deref()
                        .filter(|a| !a.is_empty())
                        .is_some_and(|a| account_ref(a, &ons) == (home.as_str(), name.as_str()))
                })
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
        )
        .reconcile_on(trigger_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, kc)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, kind = K::KIND, "controller event");
            }
        })
        .await;
}

/// The cache and the event stream a controller runs on: changes that matter only
/// ([`change_hash`]), counted for readiness.
fn watched<K>(
    api: Api<K>,
    readiness: &Arc<Readiness>,
    seen: impl Fn(&K) + Send + 'static,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let synced = readiness.track();
    let stream = watcher(api, watcher::Config::default())
        .inspect(move |ev| {
            if matches!(ev, Ok(watcher::Event::InitDone)) {
                synced()
            }
        })
        .default_backoff()
        // managedFields are most of a cached object's bytes and nothing here reads them.
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        // Every version the cache gets, before changes that do not matter are dropped.
        .inspect(move |o| {
            if let Ok(o) = o {
                seen(o)
            }
        })
        .predicate_filter(change_hash::<K>, Default::default());
    (reader, stream)
}

async fn run_accounts(
    ctx: Arc<Context>,
    scope: Option<String>,
    readiness: Arc<Readiness>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) {
    let (reader, stream) = watched(scoped::<Account>(&ctx.client, &scope), &readiness, |_| {});
    let ac = Arc::new(AccountCtx { ctx: ctx.clone() });
    Controller::for_stream(stream, reader)
        .graceful_shutdown_on(shutdown)
        .run(account::reconcile, account::error_policy, ac)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, kind = "Account", "controller event");
            }
        })
        .await;
}
