//! Wiring: one kube controller per kind and watched namespace, the drift scanner, the
//! advisory router, readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::ListParams;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::api::account::{Account, account_ref};
use crate::api::consumer::Consumer;
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::api::stream::Stream;
use crate::jetstream::connection::Pool;
use crate::metrics::Metrics;

use super::account::{self, AccountCtx};
use super::engine::{KindCtx, Managed, change_hash, error_policy, reconcile};
use super::{Context, Settings, scanner};

/// Counts watches that have finished their initial list (for /readyz).
#[derive(Default)]
pub struct Readiness {
    expected: AtomicUsize,
    synced: AtomicUsize,
}

impl Readiness {
    /// True once every watch has synced.
    pub fn is_ready(&self) -> bool {
        let e = self.expected.load(Ordering::SeqCst);
        e > 0 && self.synced.load(Ordering::SeqCst) >= e
    }
}

/// Fails with a clear message when the CRDs are not installed.
pub async fn check_crds(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<()> {
    let api: Api<Stream> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
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

    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    for scope in &scopes {
        let (c, r, d) = (&ctx, &readiness, &shutdown);
        let s = || scope.clone();
        controllers.push(Box::pin(run_kind::<Stream>(
            c.clone(),
            s(),
            r.clone(),
            d.clone(),
        )));
        controllers.push(Box::pin(run_kind::<Consumer>(
            c.clone(),
            s(),
            r.clone(),
            d.clone(),
        )));
        controllers.push(Box::pin(run_kind::<KeyValue>(
            c.clone(),
            s(),
            r.clone(),
            d.clone(),
        )));
        controllers.push(Box::pin(run_kind::<ObjectStore>(
            c.clone(),
            s(),
            r.clone(),
            d.clone(),
        )));
    }
    controllers.push(Box::pin(run_accounts(
        ctx.clone(),
        readiness.clone(),
        shutdown.clone(),
    )));
    info!(namespaces = ?settings.namespaces, resync = ?settings.resync, read_only = settings.read_only, "controllers starting");
    futures::future::join_all(controllers).await;
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
    let apis: Vec<Api<Account>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let streams = apis.into_iter().map(|api| {
        watcher(api, watcher::Config::default())
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
    let api: Api<K> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    readiness.expected.fetch_add(1, Ordering::SeqCst);
    {
        let reader = reader.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            if reader.wait_until_ready().await.is_ok() {
                readiness.synced.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(change_hash::<K>, Default::default());
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

async fn run_accounts(
    ctx: Arc<Context>,
    readiness: Arc<Readiness>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
) {
    let scopes: Vec<Api<Account>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for api in scopes {
        let (reader, writer) = reflector::store();
        readiness.expected.fetch_add(1, Ordering::SeqCst);
        {
            let reader = reader.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                if reader.wait_until_ready().await.is_ok() {
                    readiness.synced.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(change_hash::<Account>, Default::default());
        let ac = Arc::new(AccountCtx { ctx: ctx.clone() });
        let shutdown = shutdown.clone();
        runs.push(Box::pin(async move {
            Controller::for_stream(stream, reader)
                .graceful_shutdown_on(shutdown)
                .run(account::reconcile, account::error_policy, ac)
                .for_each(|res| async move {
                    if let Err(e) = res {
                        debug!(error = %e, kind = "Account", "controller event");
                    }
                })
                .await;
        }));
    }
    futures::future::join_all(runs).await;
}
